"""The layered predictor's state: layers cut from real (or first) frames, their track, and the composite.

Training and generation cut layers the same way (`cut_clip`): the reference frame is the latest where the
objects are apart (a first frame alone is its own reference), and every given frame is registered to say
where each layer was. Each generated frame then moves every layer by the displacement the layer motion
model samples, and the composite of the moved layers, encoded by the VAE, is the mean the residual
diffusion model corrects.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from . import layers as L
from .config import LayersConfig
from .layer_motion import LayerMotion, Track


@dataclasses.dataclass
class Cut:
    """Layers of one clip: ink (L, C, H, W) in [0, 1] at offset 0, offsets (T, L, 2) in every given frame,
    boxes (L, 4) of each layer's ink at offset 0, present (L,), and the reference frame's index."""

    ink: torch.Tensor
    offsets: torch.Tensor
    boxes: torch.Tensor
    present: torch.Tensor
    ref: int


def ink_box(layer_ink: np.ndarray, threshold: float) -> tuple[np.ndarray, bool]:
    """(top, left, bottom, right) of a layer's ink above `threshold`, and whether it has any."""
    rows, cols = np.nonzero(layer_ink > threshold)
    if rows.size == 0:
        return np.zeros(4, dtype=np.float32), False
    return np.array([rows.min(), cols.min(), rows.max(), cols.max()], dtype=np.float32), True


def cut_clip(clip: torch.Tensor, cfg: LayersConfig) -> Cut:
    """Layers of one clip (T, C, H, W) in [0, 1]."""
    clip_ink = L.ink(clip)
    ref, labels = L.choose_reference(clip_ink.numpy(), cfg.num_layers, cfg.threshold, cfg.min_pixels)
    layers = L.layer_stack(clip[ref], labels, cfg.num_layers)  # (L, C, H, W)
    offsets = L.track(L.ink(layers), clip_ink, ref, cfg.register_window)
    boxes, present = zip(*(ink_box(L.ink(layer).numpy(), cfg.threshold) for layer in layers))
    return Cut(layers, offsets, torch.from_numpy(np.stack(boxes)), torch.tensor(present), ref)


def track_of(cuts: list[Cut], frames: int, upto: torch.Tensor | None = None) -> Track:
    """A batch's Track of the last `frames` offsets (of frames before `upto` (B,) when given, else of all)."""
    rows, known = [], []
    for i, c in enumerate(cuts):
        end = len(c.offsets) if upto is None else int(upto[i])
        past = c.offsets[max(0, end - frames):end].float()
        pad = frames - len(past)
        rows.append(torch.cat([past[:1].expand(pad, -1, -1), past]) if pad else past)
        known.append(torch.arange(frames) >= pad)
    return Track(torch.stack([c.boxes for c in cuts]), torch.stack([c.present for c in cuts]),
                 torch.stack(rows), torch.stack(known))


def render(ink: torch.Tensor, offsets: torch.Tensor, mode: str) -> torch.Tensor:
    """Layers (B, L, C, H, W) at float offsets (B, L, 2), each drawn at its rounded offset -> (B, C, H, W)."""
    return L.composite(L.shift(ink, offsets.round().long()), mode)


class LayeredState:
    """A batch of videos' layers and tracks while they are generated: `step` moves every layer one frame on
    and returns the composite. Memory is flat in the video's length (the last `track_frames` offsets)."""

    def __init__(self, motion: LayerMotion, ink: torch.Tensor, track: Track):
        self.motion, self.ink, self.track = motion, ink, track

    @classmethod
    def cut(cls, clips: torch.Tensor, motion: LayerMotion) -> "LayeredState":
        """Layers of clips (B, T, C, H, W) in [0, 1]: real frames to extend, or a first frame (T = 1)."""
        cuts = [cut_clip(clip.cpu(), motion.config) for clip in clips]
        device = clips.device
        track = track_of(cuts, motion.config.track_frames)
        track = Track(*(x.to(device) for x in (track.boxes, track.present, track.offsets, track.known)))
        return cls(motion, torch.stack([c.ink for c in cuts]).to(device), track)

    def step(self, generator, temperature: float = 1.0) -> torch.Tensor:
        """The next frame's composite (B, C, H, W) in [0, 1]; `generator` and `temperature` as LayerMotion.sample
        takes them."""
        offset = self.track.last + self.motion.sample(self.track, generator, temperature=temperature)
        self.track = self.track.push(offset)
        return render(self.ink, offset, self.motion.config.composite)
