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
    clips_per_video: int = 1  # prepared: clips drawn from each video, for datasets of few long videos


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
    """Fixed clips of a prepared split, read straight from its .npy files, channels last.

    Clip c of video v (item v * clips_per_video + c) starts at a frame drawn from (seed, v, c), so
    video(i) and frame(i, t) always agree. Videos shorter than a clip are left out with a warning.
    """

    def __init__(self, cfg: DataConfig):
        if not cfg.root:
            raise VidmError("data.root must name a folder made by `vidm data prepare`")
        folder = Path(cfg.root) / cfg.split
        index = load_index(folder)
        if not index.get("complete"):
            raise VidmError(f"{folder}: preparation did not finish; run `vidm data prepare` again")
        span = clip_span(cfg.frames, cfg.stride)
        if cfg.clips_per_video < 1:
            raise VidmError(f"clips_per_video must be at least 1, got {cfg.clips_per_video}")
        videos = [v for v in index["videos"] if v["frames"] >= span]
        if not videos:
            raise VidmError(f"{folder}: no video holds a clip of {cfg.frames} frames every {cfg.stride}")
        if len(videos) < len(index["videos"]):
            warnings.warn(f"{folder}: {len(index['videos']) - len(videos)} of {len(index['videos'])} videos "
                          f"are shorter than a clip ({span} frames) and are left out", stacklevel=3)
        if cfg.num_videos:
            videos = videos[:cfg.num_videos]
        clips = [(v, int(np.random.default_rng([cfg.seed, i, c]).integers(0, v["frames"] - span + 1)))
                 for i, v in enumerate(videos) for c in range(cfg.clips_per_video)]
        self.paths = [folder / v["path"] for v, _ in clips]
        self.labels = [v["label"] for v, _ in clips]
        self.starts = [start for _, start in clips]
        self.classes, self.resolution = index["classes"], index["resolution"]
        self.frames, self.stride, self.span = cfg.frames, cfg.stride, span
        self._layouts: dict[Path, tuple[int, tuple[int, ...]]] = {}

    def __len__(self) -> int:
        return len(self.starts)

    def _layout(self, path: Path) -> tuple[int, tuple[int, ...]]:
        """(byte offset of the data, shape) of a prepared array, read from its header once."""
        if path not in self._layouts:
            with open(path, "rb") as f:
                version = np.lib.format.read_magic(f)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else \
                    np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read(f)
                if dtype != np.uint8 or len(shape) != 4 or fortran:
                    raise VidmError(f"{path}: not a prepared video (uint8 (T, H, W, C)), got {dtype} {shape}")
                self._layouts[path] = (f.tell(), shape)
        return self._layouts[path]

    def _read(self, index: int, first: int, count: int) -> np.ndarray:
        # Reading the bytes at an offset costs a sixth of opening a memory map per call, and keeping
        # thousands of maps open would run out of file descriptors.
        offset, shape = self._layout(self.paths[index])
        size = shape[1] * shape[2] * shape[3]
        data = np.fromfile(self.paths[index], dtype=np.uint8, count=count * size, offset=offset + first * size)
        return data.reshape(count, *shape[1:])

    def video(self, index: int) -> np.ndarray:
        clip = self._read(index, self.starts[index], self.span)
        return clip if self.stride == 1 else np.ascontiguousarray(clip[::self.stride])

    def frame(self, index: int, t: int) -> np.ndarray:
        return self._read(index, self.starts[index] + t * self.stride, 1)[0]


SOURCES = {"moving_mnist": MovingMNISTSource, "prepared": PreparedSource}


def open_source(cfg: DataConfig):
    if cfg.dataset not in SOURCES:
        raise VidmError(f"unknown dataset {cfg.dataset!r}: choose from {sorted(SOURCES)}")
    return SOURCES[cfg.dataset](cfg)
