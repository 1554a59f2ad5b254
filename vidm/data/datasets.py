"""Standard video datasets in their usual on-disk layouts, listed as (path, label) and served as clips.

UCF-101     root/UCF-101/<Class>/v_<Class>_gXX_cYY.avi, split files in root/ucfTrainTestlist/
Sky         root/sky_train|sky_test/<video>/<clip>/*.jpg
TaiChi-HD   root/train|test/<name>.mp4, or <name>/ folders of frames
CLEVRER     root/video_train|video_validation|video_test/**/video_XXXXX.mp4
folder      any tree of video files and frame folders, found recursively in sorted order

A video that cannot be read, or decodes to fewer frames than its container declares, raises VidmError
naming the file: nothing is dropped without a word.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import VidmError
from .. import video_io
from ..video_io import VIDEO_SUFFIXES, fit_frames, read_video

DATASETS = ("ucf101", "sky", "taichi", "clevrer", "folder")
SPLITS = {
    "ucf101": ("train", "test", "all"),
    "sky": ("train", "test"),
    "taichi": ("train", "test"),
    "clevrer": ("train", "validation", "test"),
}
# Containers whose header states the frame count exactly; others (webm, mkv) only estimate it.
COUNTED_SUFFIXES = {".mp4", ".avi", ".mov", ".m4v"}


@dataclasses.dataclass(frozen=True)
class VideoItem:
    path: Path  # a video file or a folder of frames
    label: int = -1  # index into VideoList.classes; -1 when the dataset has no labels


@dataclasses.dataclass
class VideoList:
    dataset: str
    split: str
    root: Path  # item paths are named relative to it in prepared indexes
    items: list[VideoItem]
    classes: list[str] = dataclasses.field(default_factory=list)


# --- listing ---

def list_videos(dataset: str, root: str | os.PathLike, split: str | None = None, fold: int = 1) -> VideoList:
    """The videos of one split of a dataset; split None means train (folder: the whole tree)."""
    root = Path(root)
    if dataset not in DATASETS:
        raise VidmError(f"unknown dataset {dataset!r}: choose from {', '.join(DATASETS)}")
    if not root.is_dir():
        raise VidmError(f"dataset root not found: {root}")
    if dataset == "folder":
        listing = folder_videos(root, split)
    else:
        split = split or "train"
        if split not in SPLITS[dataset]:
            raise VidmError(f"{dataset} has no split {split!r}: choose from {', '.join(SPLITS[dataset])}")
        listing = ucf101_videos(root, split, fold) if dataset == "ucf101" else \
            {"sky": sky_videos, "taichi": taichi_videos, "clevrer": clevrer_videos}[dataset](root, split)
    if not any(item.path.exists() for item in listing.items):
        raise VidmError(f"no {dataset} videos found for split {listing.split!r} under {root}")
    return listing


def find_videos(base: Path) -> list[Path]:
    """Video files and frame folders under `base`, recursively, sorted."""
    return video_io.find_videos(base, VIDEO_SUFFIXES)


def _subfolder(root: Path, name: str, layout: str) -> Path:
    base = root / name
    if not base.is_dir():
        raise VidmError(f"{root}: expected the folder {name}/ ({layout})")
    return base


def ucf101_videos(root: Path, split: str, fold: int = 1) -> VideoList:
    """UCF-101 (Soomro et al. 2012) with the official three-fold train/test lists; labels from classInd.txt."""
    if fold not in (1, 2, 3):
        raise VidmError(f"UCF-101 has folds 1, 2 and 3, not {fold}")
    videos = root / "UCF-101" if (root / "UCF-101").is_dir() else root
    lists = next((d for d in (root / "ucfTrainTestlist", root.parent / "ucfTrainTestlist")
                  if d.is_dir()), None)
    if lists is None:
        raise VidmError(f"{root}: expected ucfTrainTestlist/ (classInd.txt, trainlist0N.txt, testlist0N.txt) "
                        f"beside UCF-101/")
    classes = [line.split()[1] for line in _lines(lists / "classInd.txt")]
    by_name = {name.lower(): i for i, name in enumerate(classes)}
    items = []
    for part in ("train", "test") if split == "all" else (split,):
        for line in _lines(lists / f"{part}list0{fold}.txt"):
            rel = line.split()[0].replace("\\", "/")
            # Test lists carry no label: take it from the class folder, ignoring case because the
            # official files spell some names differently from their folders (HandStandPushups).
            label = by_name.get(rel.split("/")[0].lower())
            if label is None:
                raise VidmError(f"{lists}: class of {rel!r} is not in classInd.txt")
            items.append(VideoItem(videos / rel, label))
    return VideoList("ucf101", split, videos, sorted(items, key=lambda item: item.path), classes)


def _lines(path: Path) -> list[str]:
    if not path.is_file():
        raise VidmError(f"missing UCF-101 split file: {path}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def sky_videos(root: Path, split: str) -> VideoList:
    """Sky Timelapse (Xiong et al. 2018): every <video>/<clip>/ folder of jpgs is one video."""
    base = _subfolder(root, f"sky_{split}", "sky_train|sky_test/<video>/<clip>/*.jpg")
    return VideoList("sky", split, root, [VideoItem(p) for p in find_videos(base)])


def taichi_videos(root: Path, split: str) -> VideoList:
    """TaiChi-HD (Siarohin et al. 2019): train|test/ holding mp4 files or folders of frames."""
    base = _subfolder(root, split, "train|test/ with .mp4 files or frame folders")
    return VideoList("taichi", split, root, [VideoItem(p) for p in find_videos(base)])


def clevrer_videos(root: Path, split: str) -> VideoList:
    """CLEVRER (Yi et al. 2020): video_XXXXX.mp4 anywhere under video_<split>/."""
    base = _subfolder(root, f"video_{split}", "video_train/video_00000-01000/video_00000.mp4")
    return VideoList("clevrer", split, root, [VideoItem(p) for p in sorted(base.rglob("video_*.mp4"))])


def folder_videos(root: Path, split: str | None = None) -> VideoList:
    """Every video file and frame folder under root (or root/<split>), recursively, sorted, unlabelled."""
    split = split or "all"
    base = root if split == "all" else _subfolder(root, split, "a subfolder named like the split")
    return VideoList("folder", split, root, [VideoItem(p) for p in find_videos(base)])


# --- reading ---

def declared_frames(path: Path) -> int:
    """The frame count a video container states in its header; 0 when it states none."""
    if path.is_dir() or path.suffix.lower() not in COUNTED_SUFFIXES:
        return 0
    cap = cv2.VideoCapture(str(path))
    try:
        return max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 0)
    finally:
        cap.release()


def read_checked(path: str | os.PathLike) -> np.ndarray:
    """read_video, plus an error when a file decodes to clearly fewer frames than it declares (truncated)."""
    path = Path(path)
    frames = read_video(path)
    declared = declared_frames(path)
    # A frame or two (or 5%) of slack: some encoders count a frame or two they never emit.
    if declared and len(frames) + max(2, declared // 20) < declared:
        raise VidmError(f"{path}: truncated or damaged, decoded {len(frames)} of {declared} frames")
    return frames


def clip_span(frames: int, stride: int) -> int:
    """Source frames a clip of `frames` frames taken every `stride` frames covers."""
    if frames < 1 or stride < 1:
        raise VidmError(f"clip length and stride must be at least 1, got {frames} and {stride}")
    return (frames - 1) * stride + 1


class VideoClips(torch.utils.data.Dataset):
    """Clips (uint8 (T, R, R, 3), label) decoded from the raw videos on every access.

    The start is random, drawn from (seed, epoch, index), unless `start` fixes it; with `flip` half
    the clips are mirrored left-right by the same draw. Call set_epoch(e) for new starts each epoch.
    """

    def __init__(self, videos: VideoList | list[VideoItem], frames: int = 16, resolution: int = 128,
                 stride: int = 1, start: int | None = None, flip: bool = False, seed: int = 0):
        self.items = videos.items if isinstance(videos, VideoList) else list(videos)
        self.frames, self.resolution, self.stride = frames, resolution, stride
        self.span = clip_span(frames, stride)
        self.start, self.flip, self.seed, self.epoch = start, flip, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        item = self.items[index]
        video = read_checked(item.path)
        rng = np.random.default_rng([self.seed, self.epoch, index])
        start = int(rng.integers(0, max(len(video) - self.span, 0) + 1)) if self.start is None else self.start
        if start + self.span > len(video):
            raise VidmError(f"{item.path}: {len(video)} frames, too few for a clip of {self.frames} "
                            f"every {self.stride} from frame {start}")
        clip = fit_frames(video[start:start + self.span:self.stride], self.resolution, 3)
        if self.flip and rng.random() < 0.5:
            clip = clip[:, :, ::-1]
        return torch.from_numpy(np.ascontiguousarray(clip)), item.label
