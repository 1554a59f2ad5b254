"""Where each layer goes next: a small diffusion model over each layer's translation, given its track.

The layered predictor (vidm.layers) copies each object's ink from a reference frame; this model says how
far each layer moves from one frame to the next. It sees each layer's ink box and centre of mass in the
last `track_frames` frames (so, implicitly, its velocity and the borders it nears) and those of the other
layers, and samples the displacement (rows, cols) in pixels. Nothing of the physics is given: constant
velocity and bouncing are learned from tracks of real clips. It is a diffusion model rather than a
regression because a frame whose velocity is not yet known (a first frame alone, a bounce whose wall is
uncertain) has several right answers, and a mean would be none of them (a layer standing still).

Offsets are float (a layer's position keeps its fraction, so a speed of 3.6 px a frame does not round to 4
every frame); a layer is drawn at its rounded offset, an exact copy of its ink.
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from .config import DiffusionConfig, LayersConfig
from .diffusion import Diffusion, training_loss
from .sampling import ddim, randn_like
from .unet import sinusoidal

SCALE = 4.0  # pixels per unit of the diffused displacement (Moving MNIST moves 3.6 px a frame)


@dataclasses.dataclass
class Track:
    """The motion state of a batch of videos' layers, carried from frame to frame.

    extents: float (B, L, 6) each layer's ink box (top, left, bottom, right) and centre of mass (row, col) at
    offset 0, in pixels (vidm.layered.extents);
    present: bool (B, L) whether the layer holds ink; offsets: float (B, N, L, 2) the last N offsets
    (rows, cols), oldest first; known: bool (B, N) which of those N frames exist (a clip's start has fewer).
    """

    extents: torch.Tensor
    present: torch.Tensor
    offsets: torch.Tensor
    known: torch.Tensor

    def push(self, offset: torch.Tensor) -> "Track":
        """The track one frame on, with `offset` (B, L, 2) as the newest position."""
        known = torch.cat([self.known[:, 1:], torch.ones_like(self.known[:, :1])], dim=1)
        return Track(self.extents, self.present, torch.cat([self.offsets[:, 1:], offset[:, None]], dim=1), known)

    @property
    def last(self) -> torch.Tensor:
        return self.offsets[:, -1]


class LayerMotion(nn.Module):
    """A denoiser MLP over each layer's displacement, conditioned on the tracks (one row per layer)."""

    def __init__(self, cfg: LayersConfig):
        super().__init__()
        self.config, self.resolution = cfg, cfg.resolution
        n = cfg.track_frames
        per_layer = 7 * n + 2 * (n - 1)  # extents (6) and known (1) per frame, displacement (2) between frames
        self.time_dim = 32
        width = cfg.hidden
        layers = [nn.Linear(2 + self.time_dim + 2 * per_layer + 1, width), nn.SiLU()]
        for _ in range(cfg.depth - 1):
            layers += [nn.Linear(width, width), nn.SiLU()]
        layers.append(nn.Linear(width, 2))
        self.net = nn.Sequential(*layers)
        self.diffusion = Diffusion(DiffusionConfig(schedule="cosine", prediction="v"))

    def features(self, track: Track) -> torch.Tensor:
        """(B, L, F): each layer's extents over its track and its displacements between known frames (the
        velocity, given outright rather than left to the MLP to subtract), then the mean of the other present
        layers' same features."""
        B, N, L, _ = track.offsets.shape
        box = track.extents[:, None] + track.offsets.repeat(1, 1, 1, 3)  # (B, N, L, 6)
        box = box / self.resolution * 2 - 1
        known = (track.known[:, :, None] & track.present[:, None]).float()[..., None]  # (B, N, L, 1)
        both = known[:, 1:] * known[:, :-1]
        moves = (track.offsets[:, 1:] - track.offsets[:, :-1]) / SCALE * both  # (B, N - 1, L, 2)
        own = torch.cat([(box * known).permute(0, 2, 1, 3).reshape(B, L, -1),
                         known.permute(0, 2, 1, 3).reshape(B, L, -1),
                         moves.permute(0, 2, 1, 3).reshape(B, L, -1)], dim=-1)
        weight = track.present.float()[..., None]
        total = (own * weight).sum(1, keepdim=True)
        count = weight.sum(1, keepdim=True)
        others = (total - own * weight) / (count - weight).clamp_min(1)
        return torch.cat([own, others, (count - weight > 0).float()], dim=-1)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """x_t (B, L, 2), t (B,), features (B, L, F) -> v (B, L, 2)."""
        time = sinusoidal(self.diffusion.time_input(t), self.time_dim)[:, None].expand(-1, x_t.shape[1], -1)
        return self.net(torch.cat([x_t, time.to(x_t), features], dim=-1))

    def loss(self, track: Track, target: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Diffusion loss of the displacements `target` (B, L, 2) px after `track`, over present layers."""
        features = self.features(track)
        keep = track.present.any(dim=1)
        if not keep.any():
            return target.sum() * 0
        present = track.present[keep].float()[..., None]
        x0 = target[keep] / SCALE * present  # an empty layer's displacement is 0: nothing to learn there

        def net(x, tt):
            return self(x, tt, features[keep]) * present
        return training_loss(self.diffusion, net, x0, t[keep], noise[keep])

    @torch.no_grad()
    def sample(self, track: Track, generator, steps: int | None = None, noise: torch.Tensor | None = None,
               temperature: float = 1.0) -> torch.Tensor:
        """Displacements (B, L, 2) px for the next frame (DDIM, `steps` MLP calls, default the config's), from
        `noise` (B, L, 2) or noise drawn from `generator` (one per video, or one for all), scaled by
        `temperature`: below 1 keeps a known motion nearer its most likely next step."""
        features = self.features(track)

        def denoise(x, t):
            return self.diffusion.split(x, t, self(x, t, features))
        if noise is None:
            noise = randn_like(torch.empty(*track.present.shape, 2, device=features.device), generator)
        noise = noise * temperature
        x = ddim(denoise, noise, self.diffusion.alphas_cumprod, steps or self.config.motion_steps, generator)
        return x * SCALE * track.present[..., None].float()
