"""Layers: whole objects cut from a reference frame's ink, moved rigidly and composited in pixel space.

A digit redrawn every frame is kept at frame 63 with probability r^53; a digit that is one layer of the
reference frame's own ink, moved by a translation, keeps its exact shape for any length (docs/experiments.md,
"copying"). The hard part is grouping: one layer must hold one whole object. A per-pixel choice cuts digits
into pieces that drift apart, so layers here are whole 8-connected components of the ink, chosen in a frame
where the objects are apart, and a blob of objects that touch in every frame is split by the displacement
that explains its pixels between two frames.

Frames here are float (..., C, H, W) in [0, 1]; a frame's *ink* is its maximum over channels (Moving
MNIST's background is black). Labels are int (H, W): 0 for no layer, l + 1 for layer l.
"""
from __future__ import annotations

import numpy as np
import scipy.ndimage as ndi
import torch
import torch.nn.functional as F

EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity
SPLIT_GAP = 3  # frames between the two a blob is split by


def ink(frames: torch.Tensor) -> torch.Tensor:
    """Frames (..., C, H, W) in [0, 1] -> ink (..., H, W): the brightest channel."""
    return frames.amax(dim=-3)


def components(frame_ink: np.ndarray, threshold: float, min_pixels: int) -> list[np.ndarray]:
    """Boolean masks of the ink's 8-connected components (ink > threshold) of at least `min_pixels`, largest
    first. (Dilating the ink first joins more touching digits than broken strokes: 47% against 57% of
    digits whole on held-out frames, eval/grouping.py.)"""
    labels, n = ndi.label(frame_ink > threshold, EIGHT)
    masks = [labels == i for i in range(1, n + 1)]
    masks = [m for m in masks if (m & (frame_ink > threshold)).sum() >= min_pixels]
    return sorted(masks, key=lambda m: -float(frame_ink[m].sum()))


def assign_rest(frame_ink: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Every pixel with any ink joins the layer of its nearest labelled pixel: faint edges and small pieces
    belong to the object beside them, not to no layer."""
    if not labels.any():
        return labels
    _, (rows, cols) = ndi.distance_transform_edt(labels == 0, return_indices=True)
    nearest = labels[rows, cols]
    return np.where(frame_ink > 0, nearest, 0)


def cut(frame_ink: np.ndarray, num_layers: int, threshold: float = 0.25, min_pixels: int = 20) -> np.ndarray:
    """Labels (H, W) of one frame: its `num_layers` largest components, one layer each."""
    labels = np.zeros(frame_ink.shape, dtype=np.int64)
    for i, mask in enumerate(components(frame_ink, threshold, min_pixels)[:num_layers]):
        labels[mask] = i + 1
    return assign_rest(frame_ink, labels)


def shifted_np(x: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """x (H, W) moved by (dy, dx) pixels, zeros where nothing moved in."""
    out = np.zeros_like(x)
    H, W = x.shape
    ys, xs = slice(max(dy, 0), H + min(dy, 0)), slice(max(dx, 0), W + min(dx, 0))
    yd, xd = slice(max(-dy, 0), H + min(-dy, 0)), slice(max(-dx, 0), W + min(-dx, 0))
    out[ys, xs] = x[yd, xd]
    return out


def split_by_motion(a: np.ndarray, b: np.ndarray, blob: np.ndarray, search: int = 8, tol: float = 0.2,
                    min_share: float = 0.2) -> tuple[np.ndarray, np.ndarray] | None:
    """Two masks splitting `blob` of ink frame `a` by the two displacements to frame `b` that explain most
    of its ink (each pixel a[p] matched by b[p + d]), or None when a second motion explains too little."""
    solid = blob & (a > 0.25)
    total = solid.sum()
    if total == 0:
        return None
    explained = {}
    for dy in range(-search, search + 1):
        for dx in range(-search, search + 1):
            moved_b = shifted_np(b, -dy, -dx)  # moved_b[p] = b[p + d]
            explained[(dy, dx)] = solid & (np.abs(moved_b - a) < tol) & (moved_b > 0.25)
    first = max(explained, key=lambda d: explained[d].sum())
    rest = solid & ~explained[first]
    second = max(explained, key=lambda d: (explained[d] & rest).sum())
    if (explained[second] & rest).sum() < min_share * total or \
            max(abs(first[0] - second[0]), abs(first[1] - second[1])) < 2:
        return None
    # Seeds are the pixels that only one of the two motions explains; the rest of the blob (explained by
    # both, or by neither where the two objects overlap) joins the nearest seed.
    labels = np.zeros(a.shape, dtype=np.int64)
    labels[explained[first] & ~explained[second]] = 1
    labels[explained[second] & ~explained[first]] = 2
    labels = np.where(blob, assign_rest(np.where(blob, a, 0), labels), 0)
    return labels == 1, labels == 2


def choose_reference(clip_ink: np.ndarray, num_layers: int, threshold: float = 0.25,
                     min_pixels: int = 20) -> tuple[int, np.ndarray]:
    """(index, labels) of the frame of a clip (T, H, W) to cut layers from: the latest frame where the most
    objects are apart (up to `num_layers`); where fewer are apart than there are layers, the largest blob is
    split by its motion to the next (or previous) frame when two motions explain it."""
    counts = [min(len(components(f, threshold, min_pixels)), num_layers) for f in clip_ink]
    ref = max(range(len(counts)), key=lambda t: (counts[t], t))
    labels = cut(clip_ink[ref], num_layers, threshold, min_pixels)
    if counts[ref] < num_layers and len(clip_ink) > 1 and labels.any():
        # Frames further apart separate two motions by more pixels (3.6 px a frame in Moving MNIST).
        gap = min(SPLIT_GAP, max(ref, len(clip_ink) - 1 - ref))
        other = ref - gap if ref >= gap else ref + gap
        sizes = np.bincount(labels.ravel(), minlength=num_layers + 1)[1:]
        biggest = int(np.argmax(sizes)) + 1
        parts = split_by_motion(clip_ink[ref], clip_ink[other], labels == biggest, search=5 * gap)
        if parts is not None:
            free = next(i for i in range(1, num_layers + 1) if not (labels == i).any())
            labels[parts[1]] = free
    return ref, labels


def layer_stack(frame: torch.Tensor, labels: np.ndarray, num_layers: int) -> torch.Tensor:
    """One frame (C, H, W) cut into layers (L, C, H, W): each layer the frame where its label is."""
    masks = torch.stack([torch.from_numpy(labels == i + 1) for i in range(num_layers)]).to(frame)
    return masks[:, None] * frame[None]


def shift(layers: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Layers (B, L, C, H, W) moved by integer offsets (B, L, 2) as (rows, cols): an exact copy of each
    pixel, zeros where nothing moved in."""
    B, L, C, H, W = layers.shape
    dy, dx = offsets[..., 0].long(), offsets[..., 1].long()
    rows = torch.arange(H, device=layers.device)[None, None, :] - dy[..., None]  # (B, L, H) source rows
    cols = torch.arange(W, device=layers.device)[None, None, :] - dx[..., None]
    valid = ((rows >= 0) & (rows < H))[..., :, None] & ((cols >= 0) & (cols < W))[..., None, :]  # (B, L, H, W)
    r = rows.clamp(0, H - 1)[..., :, None].expand(B, L, H, W)
    c = cols.clamp(0, W - 1)[..., None, :].expand(B, L, H, W)
    flat = (r * W + c).reshape(B, L, 1, H * W).expand(B, L, C, H * W)
    out = layers.reshape(B, L, C, H * W).gather(-1, flat).reshape(B, L, C, H, W)
    return out * valid[:, :, None].to(out)


def composite(layers: torch.Tensor, mode: str = "max") -> torch.Tensor:
    """Moved layers (B, L, C, H, W) -> frames (B, C, H, W). "max": pixel-wise maximum, how Moving MNIST is
    drawn; "over": layer 0 in front, each layer's ink covering the ones behind it (occluding scenes)."""
    if mode == "max":
        return layers.amax(dim=1)
    if mode == "over":
        out = torch.zeros_like(layers[:, 0])
        for l in reversed(range(layers.shape[1])):
            alpha = (ink(layers[:, l]) > 0).to(out)[:, None]
            out = alpha * layers[:, l] + (1 - alpha) * out
        return out
    raise ValueError(f"unknown composite {mode!r}")


def register(layers: torch.Tensor, frames: torch.Tensor, start: torch.Tensor, window: int = 6) -> torch.Tensor:
    """Where each layer is in each frame: integer offsets (B, L, 2) within `window` pixels of `start`
    (B, L, 2) minimising the squared difference between the layer's ink and the frame over the layer's own
    pixels. layers (B, L, H, W) ink at offset 0; frames (B, H, W) ink."""
    B, L, H, W = layers.shape
    w = window
    size = 2 * w + 1
    mask = (layers > 0.02).float()
    # Pre-move each layer to its start, then search the window around it with one convolution per term.
    moved = shift(layers[:, :, None], start)[:, :, 0]
    moved_mask = shift(mask[:, :, None], start)[:, :, 0]
    f = F.pad(frames, (w, w, w, w))[:, None]  # (B, 1, H + 2w, W + 2w)
    # SSD(d) = sum m f(p+d)^2 - 2 sum m l f(p+d) + const, for every d in the window, per (b, l)
    f_sq = F.conv2d(f.square().reshape(1, B, H + 2 * w, W + 2 * w), moved_mask.reshape(B * L, 1, H, W), groups=B)
    cross = F.conv2d(f.reshape(1, B, H + 2 * w, W + 2 * w), (moved * moved_mask).reshape(B * L, 1, H, W), groups=B)
    ssd = (f_sq - 2 * cross).reshape(B, L, size * size)
    best = ssd.argmin(dim=-1)
    d = torch.stack([best // size - w, best % size - w], dim=-1)
    return start + d


def track(layers: torch.Tensor, clip: torch.Tensor, ref: int, window: int = 6) -> torch.Tensor:
    """Offsets (T, L, 2) of each layer (L, H, W ink, cut at frame `ref`) in every frame of a clip (T, H, W)
    ink: from the reference frame forwards and backwards, each frame searched around the one before."""
    T, L = clip.shape[0], layers.shape[0]
    out = torch.zeros(T, L, 2, dtype=torch.long)
    for order in (range(ref + 1, T), range(ref - 1, -1, -1)):
        prev = torch.zeros(L, 2, dtype=torch.long)
        for t in order:
            prev = register(layers[None], clip[t][None], prev[None], window)[0]
            out[t] = prev
    return out
