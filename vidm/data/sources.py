"""Video sources for training: len(), .frames, .video(i) -> uint8 (T, H, W, C) and .frame(i, t)."""
from __future__ import annotations

import dataclasses

import numpy as np

from ..errors import VidmError
from .moving_mnist import MovingMNIST, render


@dataclasses.dataclass
class DataConfig:
    dataset: str = "moving_mnist"
    split: str = "train"
    num_videos: int = 2000
    frames: int = 32  # clip length
    seed: int = 0


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


SOURCES = {"moving_mnist": MovingMNISTSource}


def open_source(cfg: DataConfig):
    if cfg.dataset not in SOURCES:
        raise VidmError(f"unknown dataset {cfg.dataset!r}: choose from {sorted(SOURCES)}")
    return SOURCES[cfg.dataset](cfg)
