"""The layered predictor's state: layers cut from real (or first) frames, their track, and the composite.

Training and generation cut layers the same way (`cut_clip`): the reference frame is the latest where the
objects are apart (a first frame alone is its own reference), and every given frame is registered to say
where each layer was. Each generated frame then moves every layer by the displacement the layer motion
model samples, and the composite of the moved layers, encoded by the VAE, is the mean the residual
diffusion model corrects.
"""
from __future__ import annotations

import dataclasses

import torch

from . import layers as L
from .config import LayersConfig
from .layer_motion import LayerMotion, Track


@dataclasses.dataclass
class Cut:
    """Layers of one clip: ink (L, C, H, W) in [0, 1] at offset 0, offsets (T, L, 2) in every given frame,
    extents (L, 6) of each layer's ink at offset 0 (see `extents`), present (L,), and the reference frame's index."""

    ink: torch.Tensor
    offsets: torch.Tensor
    extents: torch.Tensor
    present: torch.Tensor
    ref: int


def extents(layers: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Layers (..., C, H, W) in [0, 1] -> each one's ink box above `threshold` (top, left, bottom, right) and
    centre of mass (row, col), float (..., 6) px at offset 0 (zeros without ink), and whether it has ink (...).

    The centre of mass says where a digit's 28x28 box lies (MNIST centres each digit's mass in its box), so
    when the digit will meet a border; the ink box alone does not (a 1 is narrow). Given it, the motion
    model's 10 -> 10 MSE fell from 92 to 54 at equal training (docs/experiments.md)."""
    x = L.ink(layers)
    mask = x > threshold
    rows, cols = mask.any(-1), mask.any(-2)  # (..., H), (..., W)
    r = torch.arange(x.shape[-2], dtype=torch.float32, device=x.device)
    c = torch.arange(x.shape[-1], dtype=torch.float32, device=x.device)
    present = rows.any(-1)
    total = x.sum((-2, -1)).clamp_min(1e-6)
    ext = torch.stack([torch.where(rows, r, float("inf")).amin(-1), torch.where(cols, c, float("inf")).amin(-1),
                       torch.where(rows, r, -1.0).amax(-1), torch.where(cols, c, -1.0).amax(-1),
                       (x.sum(-1) * r).sum(-1) / total, (x.sum(-2) * c).sum(-1) / total], dim=-1)
    return torch.where(present[..., None], ext, torch.zeros_like(ext)), present


def cut_clip(clip: torch.Tensor, cfg: LayersConfig) -> Cut:
    """Layers of one clip (T, C, H, W) in [0, 1]."""
    clip_ink = L.ink(clip)
    ref, labels = L.choose_reference(clip_ink.numpy(), cfg.num_layers, cfg.threshold, cfg.min_pixels)
    layers = L.layer_stack(clip[ref], labels, cfg.num_layers)  # (L, C, H, W)
    offsets = L.track(L.ink(layers), clip_ink, ref, cfg.register_window)
    return Cut(layers, offsets, *extents(layers, cfg.threshold), ref)


def track_of(cuts: list[Cut], frames: int, upto: torch.Tensor | None = None) -> Track:
    """A batch's Track of the last `frames` offsets (of frames before `upto` (B,) when given, else of all)."""
    rows, known = [], []
    for i, c in enumerate(cuts):
        end = len(c.offsets) if upto is None else int(upto[i])
        past = c.offsets[max(0, end - frames):end].float()
        pad = frames - len(past)
        rows.append(torch.cat([past[:1].expand(pad, -1, -1), past]) if pad else past)
        known.append(torch.arange(frames) >= pad)
    return Track(torch.stack([c.extents for c in cuts]), torch.stack([c.present for c in cuts]),
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
        return cls.from_cuts([cut_clip(clip.cpu(), motion.config) for clip in clips], motion, clips.device)

    @classmethod
    def from_cuts(cls, cuts: list[Cut], motion: LayerMotion, device="cpu") -> "LayeredState":
        """The state of clips already cut (cut_clip), on `device`."""
        track = track_of(cuts, motion.config.track_frames)
        track = Track(*(x.to(device) for x in (track.extents, track.present, track.offsets, track.known)))
        return cls(motion, torch.stack([c.ink for c in cuts]).to(device), track)

    def step(self, generator, temperature: float = 1.0) -> torch.Tensor:
        """The next frame's composite (B, C, H, W) in [0, 1]; `generator` and `temperature` as LayerMotion.sample
        takes them."""
        offset = self.track.last + self.motion.sample(self.track, generator, temperature=temperature)
        self.track = self.track.push(offset)
        return render(self.ink, offset, self.motion.config.composite)
