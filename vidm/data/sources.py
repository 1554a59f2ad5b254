"""Video sources for training: len(), .frames, .video(i) -> uint8 (T, H, W, C) and .frame(i, t)."""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np

from ..errors import VidmError
from .datasets import clip_span
from .moving_mnist import MovingMNIST, render
from .prepare import load_index


@dataclasses.dataclass
class DataConfig:
    dataset: str = "moving_mnist"  # moving_mnist | prepared
    split: str = "train"
    num_videos: int = 2000  # moving_mnist: clips to synthesise; prepared: the first N videos, 0 for all
    frames: int = 32  # clip length
    seed: int = 0
    root: str = ""  # prepared: the --out folder of `vidm data prepare`; the split is root/<split>/
    stride: int = 1  # prepared: take every stride-th frame


class MovingMNISTSource:
    """A fixed set of Moving MNIST clips, channels last."""

    def __init__(self, cfg: DataConfig):
        self.mnist = MovingMNIST(cfg.split, frames=cfg.frames, seed=cfg.seed)
        self.num_videos, self.frames = cfg.num_videos, cfg.frames

    def __len__(self) -> int:
        return self.num_videos

    def video(self, index: int) -> np.ndarray:
        return self.mnist.video(index)[..., None]

    def frame(self, index: int, t: int) -> np.ndarray:
        images, corners = self.mnist.sample(index)
        return render(images, corners[t:t + 1])[0, ..., None]


class PreparedSource:
    """One fixed clip per video of a prepared split, read from memory-mapped .npy files, channels last.

    Clip i starts at a frame drawn from (seed, i), so video(i) and frame(i, t) always agree. Videos
    shorter than a clip are left out with a warning that says how many.
    """

    def __init__(self, cfg: DataConfig):
        if not cfg.root:
            raise VidmError("data.root must name a folder made by `vidm data prepare`")
        folder = Path(cfg.root) / cfg.split
        index = load_index(folder)
        if not index.get("complete"):
            raise VidmError(f"{folder}: preparation did not finish; run `vidm data prepare` again")
        span = clip_span(cfg.frames, cfg.stride)
        videos = [v for v in index["videos"] if v["frames"] >= span]
        if len(videos) < len(index["videos"]):
            warnings.warn(f"{folder}: {len(index['videos']) - len(videos)} of {len(index['videos'])} videos "
                          f"are shorter than a clip ({span} frames) and are left out", stacklevel=2)
        if cfg.num_videos:
            videos = videos[:cfg.num_videos]
        if not videos:
            raise VidmError(f"{folder}: no video holds a clip of {cfg.frames} frames every {cfg.stride}")
        self.paths = [folder / v["path"] for v in videos]
        self.labels = [v["label"] for v in videos]
        self.classes, self.resolution = index["classes"], index["resolution"]
        self.starts = [int(np.random.default_rng([cfg.seed, i]).integers(0, v["frames"] - span + 1))
                       for i, v in enumerate(videos)]
        self.frames, self.stride, self.span = cfg.frames, cfg.stride, span

    def __len__(self) -> int:
        return len(self.paths)

    def _array(self, index: int) -> np.ndarray:
        # Opened per call: keeping thousands of maps open would run out of file descriptors.
        return np.load(self.paths[index], mmap_mode="r")

    def video(self, index: int) -> np.ndarray:
        start = self.starts[index]
        return np.ascontiguousarray(self._array(index)[start:start + self.span:self.stride])

    def frame(self, index: int, t: int) -> np.ndarray:
        return np.array(self._array(index)[self.starts[index] + t * self.stride])


SOURCES = {"moving_mnist": MovingMNISTSource, "prepared": PreparedSource}


def open_source(cfg: DataConfig):
    if cfg.dataset not in SOURCES:
        raise VidmError(f"unknown dataset {cfg.dataset!r}: choose from {sorted(SOURCES)}")
    return SOURCES[cfg.dataset](cfg)
