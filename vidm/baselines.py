"""Moving MNIST baselines for the benchmark tables (never the product's model): copy the last frame, and
copy plus physics.

Copy plus physics knows how Moving MNIST is made: layers are cut as the layered predictor cuts them
(vidm.layers, at the latest real frame where the digits are apart), tracked through the real frames, each
given the velocity fitted on its last 4 positions, then moved at constant velocity with its 28x28 box
reflected at the borders, each frame an integer shift of the layer's own ink, composited by maximum. It
learns nothing: it is the bar a learned copying predictor should reach without being told the physics.
"""
from __future__ import annotations

import numpy as np
import torch

from . import layers as L

DIGIT, CANVAS = 28, 64


def copy_last(context: np.ndarray, future: int) -> np.ndarray:
    """uint8 clips (N, T, H, W) -> the last frame repeated (N, future, H, W)."""
    return np.repeat(context[:, -1:], future, axis=1)


def box_corner(layer_ink: np.ndarray) -> np.ndarray:
    """The top-left corner (2,) of the 28x28 box centred on a layer's ink (its bounding box's centre)."""
    rows, cols = np.nonzero(layer_ink > 0.25)
    if rows.size == 0:
        return np.zeros(2)
    centre = np.array([(rows.min() + rows.max()) / 2, (cols.min() + cols.max()) / 2])
    return centre - (DIGIT - 1) / 2


def copy_physics(context: np.ndarray, future: int, num_layers: int = 2, fit: int = 4) -> np.ndarray:
    """uint8 clips (N, T, H, W) -> predicted frames (N, future, H, W)."""
    out = np.zeros((len(context), future, *context.shape[2:]), dtype=np.uint8)
    for i, clip in enumerate(context):
        x = clip.astype(np.float32) / 255
        ref, labels = L.choose_reference(x, num_layers)
        ink = torch.stack([torch.from_numpy(np.where(labels == l + 1, x[ref], 0)) for l in range(num_layers)])
        offsets = L.track(ink, torch.from_numpy(x), ref).numpy().astype(np.float64)  # (T, L, 2)
        T = len(clip)
        span = np.arange(max(0, T - fit), T)
        start = np.empty((num_layers, 2))
        velocity = np.empty((num_layers, 2))
        for l in range(num_layers):
            for a in range(2):  # least-squares line through the last `fit` positions
                slope, intercept = np.polyfit(span, offsets[span, l, a], 1) if len(span) > 1 else (0.0, offsets[-1, l, a])
                velocity[l, a], start[l, a] = slope, intercept + slope * (T - 1)
        corner0 = np.stack([box_corner(ink[l].numpy()) for l in range(num_layers)])  # box at offset 0
        pos = corner0 + start  # box corners at the last real frame
        limit = CANVAS - DIGIT
        frames = []
        for _ in range(future):
            pos = pos + velocity
            low, high = pos < 0, pos > limit  # reflect the box at the borders
            pos = np.where(low, -pos, np.where(high, 2 * limit - pos, pos))
            velocity = np.where(low | high, -velocity, velocity)
            shift = torch.from_numpy(np.round(pos - corner0)).long()[None]
            frames.append(L.composite(L.shift(ink[None, :, None], shift), "max")[0, 0])
        out[i] = (torch.stack(frames).numpy() * 255).round().clip(0, 255).astype(np.uint8)
    return out
