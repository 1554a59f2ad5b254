"""The command line end to end on tiny models: train all three stages, generate, extend, make data."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from vidm.cli import main
from vidm.train import TrainConfig, learning_rate, select_frames
from vidm.video_io import read_video

from conftest import TINY_UNET

DATA = {"dataset": "moving_mnist", "split": "train", "num_videos": 6, "frames": 6, "seed": 0}
MODELS = {
    "vae": {"in_channels": 1, "latent_channels": 4, "channels": [8, 16, 16], "resolution": 64},
    "content": {"unet": {**TINY_UNET, "in_channels": 4}},
    "motion": {"unet": {**TINY_UNET, "in_channels": 4, "cond_channels": 12}, "context_frames": 2, "max_frames": 8},
}


def write_config(folder, stage, out, **overrides):
    cfg = {"stage": stage, "out": str(out), "model": MODELS[stage], "data": DATA, "batch_size": 4,
           "steps": 4, "save_every": 2, "log_every": 1, "warmup_steps": 2, **overrides}
    path = folder / f"{stage}.json"
    path.write_text(json.dumps(cfg))
    return path


def run(*argv):
    """Runs the CLI in-process; returns the exit code (0 when it returns normally)."""
    try:
        main([str(a) for a in argv])
    except SystemExit as e:
        return e.code
    return 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A model folder made by `vidm train` for all three stages."""
    root = tmp_path_factory.mktemp("train")
    out = root / "run"
    for stage in ("vae", "content", "motion"):
        assert run("train", stage, "--config", write_config(root, stage, out)) == 0
    return out


def test_training_writes_loadable_stages_logs_and_scale(trained):
    for stage in ("vae", "content", "motion"):
        assert (trained / stage / "model.safetensors").is_file()
        log = [json.loads(line) for line in (trained / stage / "log.jsonl").read_text().splitlines()]
        assert [r["step"] for r in log] == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in log)
    scale = json.loads((trained / "vae" / "config.json").read_text())["config"]["scale_factor"]
    assert scale != 1.0 and scale > 0


def logged_steps(stage_dir) -> list[int]:
    return [json.loads(line)["step"] for line in (stage_dir / "log.jsonl").read_text().splitlines()]


def test_training_logs_the_ema_decay_and_keeps_snapshots(tmp_path):
    out = tmp_path / "run"
    assert run("train", "vae", "--config", write_config(tmp_path, "vae", out, steps=1)) == 0
    cfg = write_config(tmp_path, "motion", out, ema_warmup_power=0.75, snapshot_every=2)
    assert run("train", "motion", "--config", cfg) == 0
    assert sorted(p.name for p in (out / "motion").glob("step-*")) == ["step-2", "step-4"]
    log = [json.loads(line) for line in (out / "motion" / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in log)
    # timm's warm-up: the update of step s uses 1 - s^-power, and 0 for the first two
    expected = [0.0, 0.0, 1 - 2 ** -0.75, 1 - 3 ** -0.75]
    assert [r["ema_decay"] for r in log] == pytest.approx(expected, abs=1e-6)


def test_training_clips_must_fit_max_frames(tmp_path, capsys):
    out = tmp_path / "run"
    assert run("train", "vae", "--config", write_config(tmp_path, "vae", out, steps=1)) == 0
    short = {**MODELS["motion"], "max_frames": 4}  # the clips have 6 frames
    cfg = write_config(tmp_path, "motion", out, model=short)
    capsys.readouterr()
    assert run("train", "motion", "--config", cfg) == 2
    last = capsys.readouterr().err.splitlines()[-1]  # after the progress bar of encoding the latents
    assert last == "vidm: error: training clips have 6 frames: the motion model's max_frames (4) must be at least that"


def test_training_takes_the_k_latents_before_frame_k_clamped_at_frame_0():
    latents = torch.arange(2 * 10, dtype=torch.float32).view(2, 10, 1, 1, 1).expand(2, 10, 4, 2, 2)
    first, target, context = select_frames(latents, torch.tensor([0, 1]), torch.tensor([9, 2]), 3)
    assert context[:, :, 0, 0, 0].tolist() == [[6, 7, 8], [10, 10, 11]]  # oldest first
    assert target[:, 0, 0, 0].tolist() == [9, 12] and first[:, 0, 0, 0].tolist() == [0, 10]


def test_resume_runs_only_the_remaining_steps_and_ends_with_the_uninterrupted_weights(tmp_path):
    straight = tmp_path / "a"
    assert run("train", "vae", "--config", write_config(tmp_path, "vae", straight)) == 0
    split = tmp_path / "b"
    assert run("train", "vae", "--config", write_config(tmp_path, "vae", split, steps=2)) == 0
    assert run("train", "vae", "--config", write_config(tmp_path, "vae", split), "--resume") == 0
    # the log is appended to: steps 3 and 4 once each (a run restarted from step 0 would log 1, 2, 1, 2, 3, 4)
    assert logged_steps(split / "vae") == logged_steps(straight / "vae") == [1, 2, 3, 4]
    a = torch.load(straight / "vae" / "train_state.pt", weights_only=True)
    b = torch.load(split / "vae" / "train_state.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for part in ("model", "ema"):
        for name in a[part]:
            torch.testing.assert_close(a[part][name], b[part][name], atol=0, rtol=0)


def test_a_run_saved_before_optimizer_groups_had_lr_scales_resumes_to_the_same_weights(tmp_path):
    straight, split = tmp_path / "a", tmp_path / "b"
    assert run("train", "vae", "--config", write_config(tmp_path, "vae", straight)) == 0
    assert run("train", "vae", "--config", write_config(tmp_path, "vae", split, steps=2)) == 0
    state = torch.load(split / "vae" / "train_state.pt", weights_only=True)
    for group in state["optimizer"]["param_groups"]:
        del group["lr_scale"]  # as written before optimizer groups had scales
    torch.save(state, split / "vae" / "train_state.pt")
    assert run("train", "vae", "--config", write_config(tmp_path, "vae", split), "--resume") == 0
    a = torch.load(straight / "vae" / "train_state.pt", weights_only=True)
    b = torch.load(split / "vae" / "train_state.pt", weights_only=True)
    for name in a["model"]:
        torch.testing.assert_close(a["model"][name], b["model"][name], atol=0, rtol=0)


def test_two_accumulation_steps_make_the_update_of_one_batch_twice_their_size(tmp_path):
    """batch_size is the global batch: 4 in one pass, or 2 + 2 accumulated, gives the same step in float32.
    Without gradient clipping, so Adam's moments show the gradients' scale as well as their direction."""
    states, losses = {}, {}
    for accum in (1, 2):
        out = tmp_path / f"accum{accum}"
        assert run("train", "vae", "--config", write_config(tmp_path, "vae", out, steps=2, batch_size=4,
                                                             accum_steps=accum, grad_clip=0.0,
                                                             precision="float32")) == 0
        states[accum] = torch.load(out / "vae" / "train_state.pt", weights_only=True)
        losses[accum] = [json.loads(line)["loss"] for line in (out / "vae" / "log.jsonl").read_text().splitlines()]
    one, two = states[1], states[2]
    for k, moments in one["optimizer"]["state"].items():  # the gradients: the same, up to the order of the sums
        for moment in ("exp_avg", "exp_avg_sq"):
            a, b = two["optimizer"]["state"][k][moment], moments[moment]
            assert (a - b).abs().max() <= 1e-4 * b.abs().max(), (k, moment)
    for name in one["model"]:  # an update moves a weight by about the learning rate (1e-4, then 2e-4)
        torch.testing.assert_close(two["model"][name], one["model"][name], rtol=0, atol=1e-6)
    assert losses[2] == pytest.approx(losses[1], rel=1e-5)  # the logged loss is the mean over the whole batch


def test_cosine_learning_rate_warms_up_then_decays_to_its_floor_and_is_logged(tmp_path):
    cfg = TrainConfig(lr=1e-3, steps=101, warmup_steps=10, lr_schedule="cosine", min_lr_ratio=0.1)
    assert learning_rate(cfg, 0) == pytest.approx(1e-4)  # warm-up: (step + 1) / warmup_steps
    assert learning_rate(cfg, 9) == pytest.approx(1e-3)
    assert learning_rate(cfg, 55) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # half way
    assert learning_rate(cfg, 100) == pytest.approx(1e-4)  # the last step
    lrs = [learning_rate(cfg, s) for s in range(9, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    constant = TrainConfig(lr=1e-3, steps=101, warmup_steps=10)
    assert learning_rate(constant, 100) == learning_rate(constant, 9) == pytest.approx(1e-3)
    out = tmp_path / "r"
    assert run("train", "vae", "--config", write_config(tmp_path, "vae", out, lr_schedule="cosine", lr=1e-3,
                                                         steps=6, warmup_steps=1)) == 0
    logged = [json.loads(line) for line in (out / "vae" / "log.jsonl").read_text().splitlines()]
    logged = [r["lr"] for r in logged if "lr" in r]
    assert logged[0] > logged[-1] and logged[-1] == pytest.approx(0.0, abs=1e-12)


def test_decay_steps_hold_the_rate_until_the_last_steps_then_decay_them():
    cfg = TrainConfig(lr=1e-3, steps=101, warmup_steps=10, lr_schedule="cosine", min_lr_ratio=0.0, decay_steps=41)
    assert learning_rate(cfg, 9) == learning_rate(cfg, 59) == pytest.approx(1e-3)  # stable until step 60
    assert learning_rate(cfg, 80) == pytest.approx(1e-3 * 0.5)  # half way through the decay
    assert learning_rate(cfg, 100) == pytest.approx(0.0, abs=1e-12)
    longer = TrainConfig(lr=1e-3, steps=201, warmup_steps=10, lr_schedule="cosine", decay_steps=41)
    assert [learning_rate(longer, s) for s in range(60)] == [learning_rate(cfg, s) for s in range(60)]


def test_negative_decay_steps_and_decay_steps_without_a_decay_are_errors(tmp_path, capsys):
    assert run("train", "vae", "--config", write_config(tmp_path, "vae", tmp_path / "r", decay_steps=-1)) == 2
    assert "decay_steps must be at least 0" in capsys.readouterr().err
    assert run("train", "vae", "--config", write_config(tmp_path, "vae", tmp_path / "r", decay_steps=10)) == 2
    assert "decay_steps needs lr_schedule cosine" in capsys.readouterr().err


def test_an_unknown_learning_rate_schedule_is_an_error(tmp_path, capsys):
    assert run("train", "vae", "--config", write_config(tmp_path, "vae", tmp_path / "r", lr_schedule="step")) == 2
    assert "lr_schedule must be constant or cosine" in capsys.readouterr().err


def test_training_refuses_to_overwrite_or_resume_nothing(tmp_path, capsys):
    cfg = write_config(tmp_path, "vae", tmp_path / "r", steps=1)
    assert run("train", "vae", "--config", cfg, "--resume") == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert run("train", "vae", "--config", cfg) == 0
    assert run("train", "vae", "--config", cfg) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert run("train", "content", "--config", cfg) == 2
    assert f"{cfg} is a 'vae' config, not 'content'" in capsys.readouterr().err


@pytest.mark.parametrize("fmt, name", [("mp4", "video_000.mp4"), ("gif", "video_000.gif"),
                                        ("webm", "video_000.webm"), ("png", "video_000")])
def test_generate_writes_videos(trained, tmp_path, fmt, name):
    out = tmp_path / "samples"
    assert run("generate", "--model", trained, "--num-videos", 2, "--frames", 5, "--steps", 2,
               "--format", fmt, "--out", out, "--quiet") == 0
    video = read_video(out / name)
    assert video.shape == (5, 64, 64, 3)
    assert len(list(out.iterdir())) == 2


def test_generate_and_extend_take_the_models_own_steps_per_frame_by_default(trained, tmp_path, capsys):
    import shutil

    from vidm.pipeline import CONTENT_STEPS, VIDMPipeline

    model = tmp_path / "model"
    shutil.copytree(trained, model)
    meta = json.loads((model / "motion" / "config.json").read_text())
    assert meta["config"]["sample_steps"] == 20  # the config's default
    meta["config"]["sample_steps"] = 3
    (model / "motion" / "config.json").write_text(json.dumps(meta))
    capsys.readouterr()
    assert run("generate", "--model", model, "--num-videos", 1, "--frames", 3, "--format", "png", "--seed", 2,
               "--out", tmp_path / "g", "--quiet") == 0
    assert ", dpmpp_2m x 3 steps per frame," in capsys.readouterr().out
    pipe = VIDMPipeline.from_pretrained(model)
    expected = np.stack(list(pipe.stream(num_videos=1, num_frames=3, num_inference_steps=3, seed=2,
                                         content_steps=CONTENT_STEPS)), axis=1)[0]
    np.testing.assert_array_equal(png_frames(tmp_path / "g" / "video_000"), expected)
    clip = np.random.default_rng(1).integers(0, 255, (4, 64, 64), dtype=np.uint8)
    np.save(tmp_path / "clip.npy", clip)
    assert run("extend", tmp_path / "clip.npy", "--model", model, "--frames", 2, "--seed", 3,
               "--out", tmp_path / "ext", "--quiet") == 0
    new = np.stack(list(pipe.stream(num_videos=1, num_frames=2, context=clip[None, ..., None], num_inference_steps=3,
                                    seed=3)), axis=1)[0]
    np.testing.assert_array_equal(png_frames(tmp_path / "ext")[4:], new)


def png_frames(folder) -> np.ndarray:
    """A folder of PNG frames (lossless) as uint8 (T, H, W, 3)."""
    return np.stack([np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.iterdir())])


def test_generate_from_a_first_frame_starts_with_the_fitted_image(trained, tmp_path):
    from vidm.pipeline import VIDMPipeline, to_uint8
    from vidm.video_io import fit_frames, read_image

    image = np.random.default_rng(0).integers(0, 65535, (300, 200), dtype=np.uint16)  # 16-bit, portrait
    Image.fromarray(image).save(tmp_path / "f.png")
    assert run("generate", "--model", trained, "--num-videos", 1, "--frames", 3, "--steps", 2, "--format", "png",
               "--first-frame", tmp_path / "f.png", "--seed", 5, "--out", tmp_path / "g", "--quiet") == 0
    frames = png_frames(tmp_path / "g" / "video_000")
    assert frames.shape == (3, 64, 64, 3)
    # frame 0 is the image fitted by the README's rule, through the VAE (not a generated frame)
    pipe = VIDMPipeline.from_pretrained(trained)
    fitted = fit_frames(read_image(tmp_path / "f.png")[None], 64, 1)  # (1, 64, 64, 1)
    x = torch.from_numpy(fitted).permute(0, 3, 1, 2).float() / 127.5 - 1
    with torch.no_grad():
        frame0 = to_uint8(pipe.vae.decode(pipe.vae.encode(x)))[0].numpy()
    np.testing.assert_array_equal(frames[0], frame0)
    # the next frames are the pipeline's from that frame, with the same seed
    expected = np.stack(list(pipe.stream(num_videos=1, num_frames=3, first_frame=read_image(tmp_path / "f.png"),
                                         num_inference_steps=2, seed=5)), axis=1)[0]
    np.testing.assert_array_equal(frames, expected)


def test_extend_writes_the_fitted_clip_then_its_continuation(trained, tmp_path):
    from vidm.pipeline import VIDMPipeline
    from vidm.video_io import fit_frames

    clip = np.random.default_rng(1).integers(0, 255, (7, 48, 80), dtype=np.uint8)
    np.save(tmp_path / "clip.npy", clip)
    assert run("extend", tmp_path / "clip.npy", "--model", trained, "--frames", 4, "--steps", 2, "--seed", 3,
               "--out", tmp_path / "ext", "--quiet") == 0  # no suffix: a folder of PNG frames
    frames = png_frames(tmp_path / "ext")
    assert frames.shape == (11, 64, 64, 3)
    np.testing.assert_array_equal(frames[:7], fit_frames(clip[..., None], 64, 3))  # the clip itself, first
    pipe = VIDMPipeline.from_pretrained(trained)
    new = np.stack(list(pipe.stream(num_videos=1, num_frames=4, context=clip[None, ..., None], num_inference_steps=2,
                                    seed=3)), axis=1)[0]
    np.testing.assert_array_equal(frames[7:], new)  # then the pipeline's continuation of it


def test_data_command_writes_clips(tmp_path):
    assert run("data", "moving-mnist", "--out", tmp_path, "--split", "test", "--num", 3, "--frames", 7) == 0
    clips = sorted(tmp_path.glob("*.npy"))
    assert len(clips) == 3 and np.load(clips[0]).shape == (7, 64, 64)


def bad_inputs(tmp_path, trained):
    (tmp_path / "notimage.png").write_text("hello")
    (tmp_path / "notimage.mp4").write_text("hello")
    (tmp_path / "empty").mkdir()
    broken = tmp_path / "broken"
    broken.mkdir()
    for stage in ("vae", "content"):
        (broken / stage).symlink_to(trained / stage)
    return [
        (["generate", "--model", trained, "--first-frame", tmp_path / "nope.png"], "image not found"),
        (["generate", "--model", trained, "--first-frame", tmp_path / "notimage.png"], "not a readable image"),
        (["generate", "--model", trained, "--frames", "0"], "--frames"),
        (["generate", "--model", trained, "--steps", "-1"], "--steps"),
        (["generate", "--model", trained, "--steps", "0"], "at least 1 for a motion model without layers"),
        (["generate", "--model", trained, "--temperature", "-1"], "--temperature"),
        (["generate", "--model", tmp_path / "nomodel"], "model folder not found"),
        (["generate", "--model", broken], "missing motion"),
        (["extend", tmp_path / "empty", "--model", trained, "--out", tmp_path / "o.mp4"], "no image frames"),
        (["extend", tmp_path / "notimage.png", "--model", trained, "--out", tmp_path / "o.mp4"], "unsupported file type"),
        (["extend", tmp_path / "notimage.mp4", "--model", trained, "--out", tmp_path / "o.mp4"], "no frames"),
    ]


def test_bad_inputs_give_one_line_errors_and_no_output(trained, tmp_path, capsys):
    for argv, match in bad_inputs(tmp_path, trained):
        out = tmp_path / "out"
        code = run(*argv, *([] if "extend" in argv else ["--out", out]), "--quiet")
        err = capsys.readouterr().err.strip()
        assert code == 2, argv
        assert len(err.splitlines()) == 1 and match in err, (argv, err)
        assert not out.exists() and not (tmp_path / "o.mp4").exists()


def test_the_installed_command_reports_errors_without_a_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "vidm", "extend", str(tmp_path / "missing.avi"), "--out",
                           str(tmp_path / "x.mp4")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"vidm: error: video not found: {tmp_path / 'missing.avi'}"


def test_version(capsys):
    import vidm

    assert run("--version") == 0
    assert capsys.readouterr().out.strip() == f"vidm {vidm.__version__}"


def test_export_copies_the_models_without_training_state(trained, tmp_path):
    from vidm.pipeline import VIDMPipeline

    assert run("export", trained, tmp_path / "full") == 0
    assert run("export", trained, tmp_path / "half", "--half") == 0
    assert not list((tmp_path / "full").rglob("train_state.pt"))
    full, half = (sum(f.stat().st_size for f in (tmp_path / d).rglob("*.safetensors")) for d in ("full", "half"))
    assert half < 0.6 * full
    a = VIDMPipeline.from_pretrained(trained)(num_videos=1, num_frames=3, num_inference_steps=2, seed=0).frames
    b = VIDMPipeline.from_pretrained(tmp_path / "full")(num_videos=1, num_frames=3, num_inference_steps=2,
                                                        seed=0).frames
    np.testing.assert_array_equal(a, b)
    for stage in ("vae", "content", "motion"):  # the training record goes along, so the run can continue
        record = json.loads((tmp_path / "half" / stage / "config.json").read_text())["trained"]
        assert record["step"] == 4


def test_init_from_starts_a_larger_model_as_the_trained_one(trained, tmp_path):
    """A motion model with attention added at a new level, warm-started, computes what the trained one does."""
    from vidm.checkpoint import build, load_model
    from vidm.train import warm_start
    from vidm.unet import Attention

    source = load_model(trained / "motion", "motion")
    wider = {**MODELS["motion"], "unet": {**MODELS["motion"]["unet"], "attention_levels": [0, 1]}}
    torch.manual_seed(0)
    model = build("motion", wider).eval()
    new = warm_start(model, str(trained / "motion"), "motion")
    attention = [name for name, m in model.named_modules() if isinstance(m, Attention)]
    assert new and all(any(name.startswith(a + ".") for a in attention) for name in new)  # only attention is new
    g = torch.Generator().manual_seed(0)
    x, first = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 4, 16, 16, generator=g)
    context = torch.randn(2, 2, 4, 16, 16, generator=g)
    args = (x, torch.tensor([10, 900]), first, context, torch.tensor([1, 5]), torch.tensor([0.05, 0.05]))
    with torch.no_grad():
        torch.testing.assert_close(model(*args), source(*args))

    cfg = write_config(tmp_path, "motion", tmp_path / "ft", model=wider, steps=1,
                       init_from=str(trained / "motion"), vae=str(trained / "vae"))
    assert run("train", "motion", "--config", cfg) == 0
    assert (tmp_path / "ft" / "motion" / "model.safetensors").is_file()


def test_init_from_a_model_that_does_not_fit_is_an_error(trained, tmp_path, capsys):
    narrower = {**MODELS["motion"], "unet": {**MODELS["motion"]["unet"], "channels": [8, 16]}}
    cfg = write_config(tmp_path, "motion", tmp_path / "ft", model=narrower, init_from=str(trained / "motion"),
                       vae=str(trained / "vae"))
    assert run("train", "motion", "--config", cfg) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "do not fit the configured model (wrong shape" in err[0]
    assert not (tmp_path / "ft" / "motion").exists()


def test_a_lost_run_continues_from_its_exported_weights_at_their_step(tmp_path, capsys):
    import shutil

    out = tmp_path / "run"
    assert run("train", "vae", "--config", write_config(tmp_path, "vae", out, steps=4, warmup_steps=2)) == 0
    record = json.loads((out / "vae" / "config.json").read_text())["trained"]
    assert record["step"] == 4 and record["cpu_hours"] > 0 and record["continued_at"] == []
    shutil.copytree(out / "vae", tmp_path / "exported")
    shutil.rmtree(out)  # the run folder is gone; the exported weights remain
    config = write_config(tmp_path, "vae", out, steps=7, warmup_steps=2)
    assert run("train", "vae", "--config", config, "--continue-from", tmp_path / "exported") == 0
    log = [json.loads(line) for line in (out / "vae" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [5, 6, 7]
    assert log[0]["lr"] < log[1]["lr"] == log[2]["lr"]  # the fresh optimizer warms up again
    assert log[0]["cpu_hours"] > record["cpu_hours"]  # the CPU time goes on from the record's
    record = json.loads((out / "vae" / "config.json").read_text())["trained"]
    assert record["step"] == 7 and record["continued_at"] == [4]
    assert run("train", "vae", "--config", config, "--resume", "--continue-from", tmp_path / "exported") == 2
    assert "choose one of --resume" in capsys.readouterr().err
    bare = tmp_path / "bare"  # weights without a record (made before records were kept) cannot continue
    shutil.copytree(tmp_path / "exported", bare)
    meta = json.loads((bare / "config.json").read_text())
    (bare / "config.json").write_text(json.dumps({"kind": meta["kind"], "config": meta["config"]}))
    shutil.rmtree(out)
    assert run("train", "vae", "--config", config, "--continue-from", bare) == 2
    assert "no training record" in capsys.readouterr().err
