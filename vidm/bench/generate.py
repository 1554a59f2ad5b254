"""Making the videos a measure scores: sets of videos from the pipeline, in batches, as grayscale uint8.

Video (or sequence) i of a set always uses seed + i, so a number does not depend on the batch size.
"""
from __future__ import annotations

from typing import Callable

import numpy as np


def batches(total: int, size: int):
    """(lo, hi) bounds of consecutive batches of at most `size` covering range(total)."""
    for lo in range(0, total, size):
        yield lo, min(lo + size, total)


def gray(frames: np.ndarray) -> np.ndarray:
    """Pipeline output uint8 (..., H, W, 3) with equal channels -> (..., H, W)."""
    return frames[..., 0] if frames.ndim >= 3 and frames.shape[-1] in (1, 3) else frames


def predict(pipe, clips: np.ndarray, future: int, sampler: str, steps: int, seed: int, batch: int,
            log: Callable[[str], None] | None = None) -> np.ndarray:
    """uint8 clips (N, Tc, H, W) -> the `future` frames after each, uint8 (N, future, H, W); steps 0: a
    layered model's composite alone."""
    out = np.empty((len(clips), future, *clips.shape[2:]), dtype=np.uint8)
    for lo, hi in batches(len(clips), batch):
        frames = pipe(num_videos=hi - lo, num_frames=future, context=clips[lo:hi, ..., None],
                      num_inference_steps=steps, sampler=sampler, seed=seed + lo).frames
        out[lo:hi] = gray(frames)
        if log is not None and len(clips) > batch:
            log(f"  {hi}/{len(clips)} sequences")
    return out


def generate(pipe, num: int, frames: int, sampler: str, steps: int, seed: int, batch: int,
             first: np.ndarray | None = None, log: Callable[[str], None] | None = None, **kwargs) -> np.ndarray:
    """`num` videos of `frames` frames, uint8 (num, frames, H, W): from the given first frames (num, H, W),
    else from scratch (the content model; kwargs such as content_steps go to the pipeline)."""
    out = None
    for lo, hi in batches(num, batch):
        start = None if first is None else first[lo:hi, ..., None]
        video = gray(pipe(num_videos=hi - lo, num_frames=frames, first_frame=start, num_inference_steps=steps,
                          sampler=sampler, seed=seed + lo, **kwargs).frames)
        if out is None:
            out = np.empty((num, *video.shape[1:]), dtype=np.uint8)
        out[lo:hi] = video
        if log is not None and num > batch:
            log(f"  {hi}/{num} videos")
    return out
