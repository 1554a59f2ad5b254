"""The pinned digit classifier: which of the ten digit classes a 64x64 Moving MNIST frame shows.

A small CNN with one sigmoid per class and global max pooling (it does not care where a digit is). A
frame's *digit set* is the classes with probability above 0.5. The weights are committed beside this
file (`digit_classifier.safetensors`, made by `python -m vidm.bench.train_classifier`), so that every
clone scores the same videos the same way; a classifier retrained on another machine moved a score by
more than a point. Its exact-set accuracy on real test frames says how far to trust it.
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import VidmError

WEIGHTS = Path(__file__).with_name("digit_classifier.safetensors")


class DigitNet(nn.Module):
    """64x64 grayscale frame -> logits of the ten classes being present."""

    def __init__(self):
        super().__init__()
        act = nn.ReLU()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1), act,  # 32x32
            nn.Conv2d(16, 32, 3, padding=1), act, nn.MaxPool2d(2),  # 16x16
            nn.Conv2d(32, 64, 3, padding=1), act, nn.MaxPool2d(2),  # 8x8: receptive field about a digit
            nn.Conv2d(64, 128, 3, padding=1), act)
        self.head = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).amax(dim=(2, 3)))


def to_input(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, 64, 64) -> float (N, 1, 64, 64) in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).float().unsqueeze(1) / 255


def multi_hot(classes: np.ndarray) -> np.ndarray:
    """Classes (N, D) -> (N, 10) with 1 where a class is present."""
    out = np.zeros((len(classes), 10), dtype=np.float32)
    np.put_along_axis(out, classes, 1.0, axis=1)
    return out


def labelled_frames(split: str, num: int, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every frame of `num` Moving MNIST videos, (num * frames, 64, 64), and the multi-hot classes of each."""
    from ..data.moving_mnist import MovingMNIST

    data = MovingMNIST(split, frames=frames, seed=seed)
    videos = data.videos(num).reshape(-1, 64, 64)
    targets = np.repeat(multi_hot(np.stack([data.classes(i) for i in range(num)])), frames, axis=0)
    return videos, targets


def weights_sha256(path: Path = WEIGHTS) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@functools.lru_cache(maxsize=None)
def load(path: Path = WEIGHTS) -> DigitNet:
    """The pinned classifier, in eval mode (float32 on the CPU)."""
    from safetensors.torch import load_file

    if not Path(path).is_file():
        raise VidmError(f"the digit classifier's weights are missing: {path} (reinstall vidm, or make them with "
                        "`python -m vidm.bench.train_classifier`)")
    net = DigitNet()
    net.load_state_dict({k: v.float() for k, v in load_file(str(path)).items()}, strict=True)
    return net.eval()


@torch.inference_mode()
def digit_sets(net: nn.Module, frames: np.ndarray, batch: int = 512) -> np.ndarray:
    """uint8 frames (..., 64, 64) -> bool (..., 10): the classes the classifier is confident about."""
    flat = frames.reshape(-1, *frames.shape[-2:])
    out = [(net(to_input(flat[lo:lo + batch])) > 0).numpy() for lo in range(0, len(flat), batch)]
    return np.concatenate(out).reshape(*frames.shape[:-2], 10)


# Real test frames its accuracy is reported on: every frame of these held-out videos (test digits).
ACCURACY_VIDEOS, ACCURACY_FRAMES, ACCURACY_SEED = 500, 20, 6


def exact_set_accuracy(net: nn.Module, videos: int = ACCURACY_VIDEOS) -> dict:
    """The share of real test frames whose confident digit set is exactly the digits drawn in them."""
    x, y = labelled_frames("test", videos, ACCURACY_FRAMES, ACCURACY_SEED)
    exact = float((digit_sets(net, x) == y.astype(bool)).all(axis=1).mean())
    return {"exact_set_accuracy": exact, "test_frames": len(x),
            "frames": f"every frame of MovingMNIST('test', frames={ACCURACY_FRAMES}, seed={ACCURACY_SEED}) "
                      f"videos 0..{videos - 1}"}
