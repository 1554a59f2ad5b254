"""`vidm bench` on a tiny random 64x64 model with tiny sets: the report, its provenance, its baseline, its errors."""
import dataclasses
import hashlib
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_layered_pipeline, tiny_pipeline
from vidm import cli
from vidm.bench import context, digit_classifier, digit_identity, identity_from_context, speed, suite
from vidm.data.moving_mnist import MovingMNIST

TINY_SIZES = context.Sizes(prediction=3, identity=2, accuracy_videos=5, first_frames=2, frechet=2, fvd=2,
                           speed_frames=2, speed_min_seconds=0.0, memory_lengths=(3,), memory_steps=1)
IDENTITY_FRAMES = 16


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny layered model (sample_steps 0), so the layers' composite is measured beside a sample."""
    folder = tmp_path_factory.mktemp("bench") / "model"
    tiny_layered_pipeline().save_pretrained(folder)
    return folder


class MeanBrightness:
    """Stands in for the random I3D of the proxy Fréchet distance (seconds per video on the CPU; its own
    tests are in test_fvd.py): each frame's mean brightness as a feature."""

    name, sha256 = "mean brightness per frame", None

    def features(self, videos) -> np.ndarray:
        return np.asarray(videos, np.float64).mean(axis=(2, 3, 4))


class ProbeI3D(torch.nn.Module):
    """Called like StyleGAN-V's TorchScript I3D; its 400 features are the mean of each frame (then zeros)."""

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        x = x.float() / 127.5 - 1 if rescale else x
        x = F.interpolate(x, size=(x.shape[2], 224, 224), mode="trilinear", align_corners=False) if resize else x
        means = x.mean(dim=(1, 3, 4))  # (B, T)
        return F.pad(means, (0, 400 - means.shape[1]))


@pytest.fixture(scope="module")
def detector(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("detector") / "i3d_torchscript.pt"
    with warnings.catch_warnings():  # torch deprecates TorchScript; the StyleGAN-V detector is one
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(ProbeI3D()).save(str(path))
    return path


def bench(*args: str, steps: tuple[str, ...] = ("--steps", "1")) -> None:
    """`vidm bench --quick --threads 1 --steps 1 ...` in this process, with the tiny sets."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(context, "QUICK", TINY_SIZES)
        mp.setattr(suite, "QUICK", TINY_SIZES)
        mp.setattr("vidm.i3d.random_detector", lambda seed=0, device="cpu": MeanBrightness())
        mp.setattr(digit_identity, "FRAMES", IDENTITY_FRAMES)  # 64 in a real run
        mp.setattr(identity_from_context, "FRAMES", IDENTITY_FRAMES)
        mp.setattr(speed, "BATCHES", (1, 2))  # 1 and 16 in a real run
        mp.delenv("VIDM_I3D", raising=False)
        cli.main(["bench", "--quick", "--threads", "1", *steps, *args])


@pytest.fixture(scope="module")
def report(model_dir):
    out = model_dir.parent / "report"
    bench("--model", str(model_dir), "--out", str(out))
    return out, json.loads((out / "results.json").read_text())


def test_the_report_names_what_its_numbers_depend_on(report, model_dir):
    out, r = report
    assert r["command"] and r["date"] and r["torch"] == torch.__version__ and r["threads"] == 1
    assert r["machine"]["threads"] == 1 and r["machine"]["cpu"]
    assert r["commit"] is None or len(r["commit"].split("+")[0]) == 40
    for stage in ("vae", "content", "motion"):
        weights = (model_dir / stage / "model.safetensors").read_bytes()
        assert r["model"]["sha256"][stage] == hashlib.sha256(weights).hexdigest()
    assert r["quick"] and r["sizes"] == json.loads(json.dumps(dataclasses.asdict(TINY_SIZES)))
    assert set(r["measures"]) == {"prediction", "digit_identity", "identity_from_context", "first_frames",
                                  "frechet_proxy", "speed", "memory"}
    text = (out / "report.md").read_text()
    for plot in ("prediction_per_frame.png", "identity_per_frame.png", "first_frames.png", "memory.png"):
        assert (out / plot).stat().st_size > 0 and f"]({plot})" in text
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_fvd_without_a_detector_is_skipped_and_the_report_says_why(report):
    out, r = report
    assert "fvd" not in r["measures"] and "--detector" in r["skipped"]["fvd"]
    assert "## Skipped" in (out / "report.md").read_text()


def test_copy_last_baseline_is_the_hand_computed_error_on_the_same_clips(report):
    out, r = report
    p = r["measures"]["prediction"]
    videos = MovingMNIST("test", frames=20, seed=1).videos(TINY_SIZES.prediction).astype(np.float64) / 255
    # squared error of frame 10 against each of frames 11..20, summed over the 64x64 frame
    by_hand = ((videos[:, 10:] - videos[:, 9:10]) ** 2).sum(axis=(2, 3))
    assert p["copy_last"]["mse"]["mean"] == pytest.approx(by_hand.mean(), rel=1e-9)
    assert p["copy_last"]["mse"]["per_frame"] == pytest.approx(by_hand.mean(axis=0).tolist(), rel=1e-9)
    assert set(p) >= {"sample", "mean"} and len(p["sample"]["ssim"]["per_frame"]) == 10
    assert p["steps"] == 1 and "layered composite" in (out / "report.md").read_text()


def test_without_steps_the_quality_measures_and_speed_use_the_models_own(model_dir, tmp_path, monkeypatch):
    """The tiny model's sample_steps is 0: its one sample is the layers' composite, not measured twice."""
    monkeypatch.setattr(suite, "MEASURES", [m for m in suite.MEASURES if m.name in ("prediction", "speed")])
    out = tmp_path / "report"
    bench("--model", str(model_dir), "--out", str(out), steps=())
    r = json.loads((out / "results.json").read_text())
    assert r["settings"]["steps"] == 0 and r["measures"]["speed"]["settings"]["steps"] == 0
    p = r["measures"]["prediction"]
    assert p["steps"] == 0 and "sample" in p and "mean" not in p


def test_identity_scores_real_videos_as_the_ceiling_with_the_pinned_classifier(report):
    _, r = report
    c = r["digit_classifier"]
    assert c["weights"] == "digit_classifier.safetensors"
    assert c["sha256"] == hashlib.sha256(digit_classifier.WEIGHTS.read_bytes()).hexdigest()
    assert 0 <= c["exact_set_accuracy"] <= 1 and c["test_frames"] == TINY_SIZES.accuracy_videos * 20
    d = r["measures"]["digit_identity"]
    assert len(d["real"]["per_frame"]) == IDENTITY_FRAMES and d["real"]["per_frame"][0] in (0.0, 0.5, 1.0)
    assert set(d) >= {"from_real_first_frame", "from_scratch"}


def test_the_pinned_classifier_reads_real_test_frames():
    net = digit_classifier.load()
    acc = digit_classifier.exact_set_accuracy(net, videos=20)
    assert acc["test_frames"] == 400 and acc["exact_set_accuracy"] > 0.6  # about 0.7: touching digits fool it


def expect_error(capsys, *args: str, **kwargs) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        bench(*args, **kwargs)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("vidm: error: ") and err.count("\n") == 1, err
    return err


def test_bad_input_is_a_one_line_error_and_no_report(model_dir, tmp_path, capsys):
    out = tmp_path / "report"
    args = ["--model", str(model_dir), "--out", str(out)]
    assert "not found" in expect_error(capsys, *args, "--detector", str(tmp_path / "missing.pt"))
    junk = tmp_path / "junk.pt"
    junk.write_text("not weights")
    assert "junk.pt" in expect_error(capsys, *args, "--detector", str(junk))
    assert "unknown dataset" in expect_error(capsys, *args, "--dataset", "kinetics")
    assert "model folder" in expect_error(capsys, "--model", str(tmp_path / "nope"), "--out", str(out))
    assert list(tmp_path.iterdir()) == [junk]  # nothing written, not even a temporary folder
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    assert "other than a vidm bench report" in expect_error(capsys, "--model", str(model_dir),
                                                            "--out", str(tmp_path / "notes"))
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"


def test_zero_steps_for_a_model_without_layers_is_an_error_before_any_measure(tmp_path, capsys):
    tiny_pipeline().save_pretrained(tmp_path / "plain")
    err = expect_error(capsys, "--model", str(tmp_path / "plain"), "--out", str(tmp_path / "report"),
                       steps=("--steps", "0"))
    assert "at least 1 for a motion model without layers" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]


def test_a_measure_is_one_registered_function_and_a_failed_run_writes_nothing(model_dir, tmp_path, monkeypatch):
    def extra(b):
        return suite.Section("extra", "An extra measure", {"frames": b.sizes.speed_frames}, "It measured.")

    def broken(b):
        raise RuntimeError("a measure failed")

    out = tmp_path / "report"
    fast = [m for m in suite.MEASURES if m.name == "speed"]
    monkeypatch.setattr(suite, "MEASURES", (*fast, suite.Measure("extra", extra)))
    bench("--model", str(model_dir), "--out", str(out))
    r = json.loads((out / "results.json").read_text())
    assert r["measures"]["extra"] == {"frames": 2} and "## An extra measure" in (out / "report.md").read_text()
    assert "digit_classifier" not in r  # no measure read digits
    before = (out / "results.json").read_bytes()
    monkeypatch.setattr(suite, "MEASURES", (*fast, suite.Measure("broken", broken)))
    with pytest.raises(RuntimeError):
        bench("--model", str(model_dir), "--out", str(out))
    assert (out / "results.json").read_bytes() == before  # the earlier report stands
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_out_as_a_markdown_file_is_the_report_with_its_plots_in_the_folder_of_its_name(model_dir, tmp_path,
                                                                                       monkeypatch, capsys):
    def drawn(b):
        (b.folder / "drawn.png").write_bytes(b"png")
        return suite.Section("drawn", "A measure with a plot", {}, "It drew.", ["drawn.png"])

    monkeypatch.setattr(suite, "MEASURES", (suite.Measure("drawn", drawn),))
    docs = tmp_path / "docs"
    for _ in range(2):  # the second run replaces the first report
        bench("--model", str(model_dir), "--out", str(docs / "benchmarks.md"))
        text = (docs / "benchmarks.md").read_text()
        assert text.startswith("# vidm bench:") and "](benchmarks/drawn.png)" in text
        assert sorted(p.name for p in docs.iterdir()) == ["benchmarks", "benchmarks.md"]
        assert sorted(p.name for p in (docs / "benchmarks").iterdir()) == ["drawn.png", "results.json"]
    (docs / "notes.md").write_text("# Notes\n")
    assert "other than a vidm bench report" in expect_error(capsys, "--model", str(model_dir),
                                                            "--out", str(docs / "notes.md"))
    assert (docs / "notes.md").read_text() == "# Notes\n" and not (docs / "notes").exists()


def prepared_split(folder: Path, resolution: int, videos: int = 2, frames: int = 20) -> Path:
    """A split as `vidm data prepare` writes it: index.json and uint8 (T, R, R, 3) arrays."""
    (folder / "videos").mkdir(parents=True)
    entries = []
    for i in range(videos):
        np.save(folder / "videos" / f"v{i}.npy", np.full((frames, resolution, resolution, 3), 40 * i, np.uint8))
        entries.append({"path": f"videos/v{i}.npy", "frames": frames, "label": None})
    index = {"format": 1, "dataset": "folder", "split": folder.name, "fold": None, "resolution": resolution,
             "max_frames": 0, "root": str(folder), "classes": [], "complete": True, "videos": entries, "failed": []}
    (folder / "index.json").write_text(json.dumps(index))
    return folder


def test_fvd_with_a_detector_on_moving_mnist(model_dir, detector, tmp_path, monkeypatch):
    monkeypatch.setattr(suite, "MEASURES", [m for m in suite.MEASURES if m.name == "fvd"])
    out = tmp_path / "report"
    bench("--model", str(model_dir), "--out", str(out), "--detector", str(detector))
    r = json.loads((out / "results.json").read_text())
    fvd = r["measures"]["fvd"]
    assert fvd["detector_sha256"] == hashlib.sha256(detector.read_bytes()).hexdigest() and not r["skipped"]
    assert fvd["videos_per_set"] == TINY_SIZES.fvd and "with 2 videos per set" in fvd["protocol"]
    assert fvd["static_vs_test"] >= 0 and fvd["real_vs_real_floor"] >= 0


def test_a_prepared_dataset_gets_speed_memory_and_fvd(model_dir, detector, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("vidm.bench.frechet.DEFAULT_CACHE_DIR", str(tmp_path / "cache"))
    data = prepared_split(tmp_path / "data" / "test", 64)
    out = tmp_path / "report"
    bench("--model", str(model_dir), "--out", str(out), "--dataset", str(data.parent), "--detector", str(detector))
    r = json.loads((out / "results.json").read_text())
    assert set(r["measures"]) == {"speed", "memory", "fvd"} and not r["skipped"]
    assert r["dataset"]["kind"] == "prepared" and r["dataset"]["resolution"] == 64
    fvd = r["measures"]["fvd"]
    assert fvd["real"]["videos"] == fvd["fake"]["videos"] == 2 and fvd["fvd"] >= 0
    other = prepared_split(tmp_path / "data128" / "test", 128)
    assert "128px" in expect_error(capsys, "--model", str(model_dir), "--out", str(out), "--dataset", str(other))


@pytest.mark.slow
def test_the_committed_command_remakes_the_pinned_classifier(tmp_path):
    """About ten minutes on one core: the training is seeded and single-threaded, so the weights come out the same."""
    from vidm.bench import train_classifier

    train_classifier.main(["--out", str(tmp_path / "classifier.safetensors")])
    assert (tmp_path / "classifier.safetensors").read_bytes() == digit_classifier.WEIGHTS.read_bytes()


def test_identity_from_context_scores_the_real_frames_it_was_given_and_copy_last_keeps_its_last(report):
    _, results = report
    r = results["measures"]["identity_from_context"]
    real, copy = np.array(r["real"]["per_frame"]), np.array(r["copy_last"]["per_frame"])
    assert len(copy) == IDENTITY_FRAMES and r["clips"] == TINY_SIZES.identity
    np.testing.assert_array_equal(copy[:10], real[:10])  # the context is real in every row
    np.testing.assert_array_equal(np.array(r["model"]["per_frame"])[:10], real[:10])
    assert np.all(copy[10:] == real[9])  # the last real frame, repeated
    assert r["copy_physics"]["mse_10_10"] < r["copy_last"]["mse_10_10"]
