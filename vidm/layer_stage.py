"""Training the layered predictor: its motion model on the tracks of real clips, and the composite it makes
for the residual diffusion model to correct.

Every training clip is cut into layers once, as generation cuts a clip it extends (vidm.layered.cut_clip),
and cached beside the latents. A step then trains the layer motion model on every frame of each clip in
the batch (a displacement after a track of 1 to `track_frames` known frames: the short ones are the start
of a video, where the motion is not yet known), and draws each layer where the clip has it at the frame the
residual model trains on: the composite of the moved layers, encoded by the VAE, is the mean whose residual
the diffusion model learns.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from . import dist
from .atomic import atomic_path
from .autoencoder import Autoencoder
from .config import LayersConfig
from .layer_motion import Track
from .layered import cut_clip, extents, render

CACHE_VERSION = 1  # bump when cutting or tracking changes, so that cached layers are made again


class LayerStage:
    def __init__(self, cfg: LayersConfig, source, vae: Autoencoder, cache_dir: Path, data_key: str, device):
        self.cfg, self.vae, self.device = cfg, vae.eval().requires_grad_(False), device
        self.ink, self.offsets = layer_cache(cfg, source, cache_dir, data_key)
        self.extents, self.present = cached_extents(self.ink, cfg.threshold)
        self.frames = self.offsets.shape[1]

    def draw(self, batch: int, g: torch.Generator) -> dict:
        n, L = self.frames - 1, self.cfg.num_layers
        return {"motion_t": torch.randint(0, 1000, (batch, n), generator=g),
                "motion_noise": torch.randn((batch, n, L, 2), generator=g),
                "motion_known": torch.randint(1, self.cfg.track_frames + 1, (batch, n), generator=g)}

    def windows(self, offsets: torch.Tensor, k: torch.Tensor, known: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The `track_frames` offsets before frame k (..., N, L, 2) of clips' offsets (B, T, L, 2) for k (B, n),
        and which are known: frames >= 0 and at most `known` (B, n) back."""
        N = self.cfg.track_frames
        index = k[..., None] - N + torch.arange(N, device=k.device)  # (B, n, N)
        mask = (index >= 0) & (index >= k[..., None] - known[..., None])
        rows = torch.arange(offsets.shape[0], device=k.device)[:, None, None]
        return offsets[rows, index.clamp(min=0)], mask

    def motion_loss(self, motion, videos: torch.Tensor, d: dict) -> torch.Tensor:
        """The layer motion model's loss on every frame 1 .. T-1 of clips `videos`."""
        offsets = self.offsets[videos].to(self.device)  # (B, T, L, 2)
        ext, present = self.extents[videos].to(self.device), self.present[videos].to(self.device)
        B, T = offsets.shape[:2]
        k = torch.arange(1, T, device=self.device).expand(B, -1)  # (B, T-1)
        past, known = self.windows(offsets, k, d["motion_known"])
        target = offsets[:, 1:] - offsets[:, :-1]  # (B, T-1, L, 2)
        track = Track(ext.repeat_interleave(T - 1, 0), present.repeat_interleave(T - 1, 0),
                      past.flatten(0, 1), known.flatten(0, 1))
        # In float32 under any autocast: the MLP is too small for bf16 to save time, and a displacement must be
        # right to a fraction of a pixel after 10 frames.
        with torch.autocast(torch.device(self.device).type, enabled=False):
            return motion.loss(track, target.flatten(0, 1), d["motion_t"].flatten(), d["motion_noise"].flatten(0, 1))

    def loss(self, motion, videos: torch.Tensor, d: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """(motion model loss, the composite's latent (B, c, h, w)) for clips `videos` at frames d["k"]."""
        motion_loss = self.motion_loss(motion, videos, d)
        # The composite at the residual's frame, with each layer where the clip has it: the residual learns
        # what layers cannot draw (overlaps, a digit a layer holds in part, the VAE's own error), not where
        # they go. Trained on sampled displacements instead, it learnt to pull a frame toward where the
        # real clip went, which a sample cannot know, and blurred digits (docs/experiments.md, the layered predictor).
        offsets = self.offsets[videos].to(self.device)
        rows = torch.arange(len(offsets), device=self.device)
        with torch.no_grad():
            frames = render(self.ink[videos].to(self.device).float() / 255, offsets[rows, d["k"]], self.cfg.composite)
            mean = self.vae.encode(frames * 2 - 1)
        return motion_loss, mean.float()


@torch.no_grad()
def cached_extents(ink: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """vidm.layered.extents of cached uint8 ink (N, L, C, H, W), a few hundred clips at a time (in float, all
    4,000 training clips' layers would take half a GiB at once)."""
    parts = [extents(part.float() / 255, threshold) for part in ink.split(256)]
    return torch.cat([e for e, _ in parts]), torch.cat([p for _, p in parts])


@torch.no_grad()
def layer_cache(cfg: LayersConfig, source, cache_dir: Path, data_key: str):
    """Layers of every training clip: ink uint8 (N, L, C, H, W) and offsets (N, T, L, 2); made once (by the main
    process) and cached, keyed by the data and how layers are cut."""
    cut_key = {k: getattr(cfg, k) for k in ("num_layers", "threshold", "min_pixels", "register_window")}
    key = hashlib.sha1((data_key + json.dumps(cut_key, sort_keys=True) + str(CACHE_VERSION)).encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"layers-{key}.npz"
    if dist.is_main() and not path.exists():
        parts = {"ink": [], "offsets": []}
        for i in tqdm(range(len(source)), desc="cutting layers", leave=False):
            clip = torch.from_numpy(source.video(i)).permute(0, 3, 1, 2).float() / 255
            c = cut_clip(clip, cfg)
            parts["ink"].append((c.ink * 255).round().to(torch.uint8).numpy())
            parts["offsets"].append(c.offsets.to(torch.int16).numpy())
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, **{n: np.stack(v) for n, v in parts.items()})
    dist.barrier()
    data = np.load(path)
    return torch.from_numpy(data["ink"]), torch.from_numpy(data["offsets"]).float()
