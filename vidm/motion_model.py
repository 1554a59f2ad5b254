"""Motion model: diffusion over z_k given the first latent z_0, the previous K latents and k.

A layered model (config `layers`, vidm.layered) first moves layers cut from a real frame; their composite,
encoded, is z_k's mean mu, and the diffusion model generates only the residual (RVD, Yang, Srivastava &
Mandt 2022): the layers carry the motion, and the diffusion model adds what a copy cannot have. Sampling it
from noise scaled below 1 (`sample_temperature`) keeps a frame nearer that mean, so the residual invents
fewer strokes that later frames would build on.
"""
from __future__ import annotations

from typing import Callable

import torch
from einops import rearrange
from torch import nn

from .config import MotionConfig
from .diffusion import Diffusion, training_loss
from .errors import VidmError
from .layer_motion import LayerMotion
from .sampling import randn_like
from .unet import UNet


class MotionModel(nn.Module):
    """Conditioning latents are concatenated to the noisy input: [x noisy, z_0, z_{k-K}, ..., z_{k-1}(, mu)]."""

    def __init__(self, cfg: MotionConfig):
        super().__init__()
        if cfg.context_frames < 1:
            raise VidmError(f"context_frames must be at least 1, got {cfg.context_frames}")
        c, K, layered = cfg.unet.in_channels, cfg.context_frames, cfg.layers is not None
        expected = c * (1 + K) + (c if layered else 0)
        if cfg.unet.cond_channels != expected:
            raise VidmError(f"motion unet.cond_channels must be {expected} (first frame + {K} context latents"
                            f"{' + the composite of the layers' if layered else ''}), got {cfg.unet.cond_channels}")
        if not cfg.sample_temperature >= 0:
            raise VidmError(f"sample_temperature must be at least 0, got {cfg.sample_temperature}")
        if cfg.residual_scale <= 0:
            raise VidmError(f"residual_scale must be positive, got {cfg.residual_scale}")
        minimum = 0 if layered else 1  # 0 steps give the layers' composite alone: a plain model has no mean
        if not isinstance(cfg.sample_steps, int) or cfg.sample_steps < minimum:
            raise VidmError(f"sample_steps must be at least {minimum} for a {'layered' if layered else 'plain'} "
                            f"motion model, got {cfg.sample_steps!r}")
        self.config = cfg
        # Scalars: diffusion time, frame position, conditioning augmentation level.
        self.unet = UNet(cfg.unet, num_scalars=3)
        self.layers = LayerMotion(cfg.layers) if layered else None
        self.diffusion = Diffusion(cfg.diffusion)

    def frame_position(self, frame_index: torch.Tensor) -> torch.Tensor:
        """Frame index k -> k / max_frames, the same in training and sampling.

        Training sees k = 1 .. max_frames - 1 at most, so later frames take the last trained position.
        """
        return frame_index.float().clamp(max=self.config.max_frames - 1) / self.config.max_frames

    def augment(self, context: torch.Tensor, level: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Variance-preserving noise on the context latents (B, K, c, h, w), so the model learns to trust them
        less. Every way into the model (training, sampling) passes its context through here."""
        level = level.view(-1, *([1] * (context.dim() - 1)))
        return (1 - level.square()).sqrt() * context + level * noise

    def forward(self, x_t, t, first, context, frame_index, aug_level, labels=None, mean=None) -> torch.Tensor:
        """x_t, first (B, c, h, w); context (B, K, c, h, w), oldest first, already augmented;
        frame_index, aug_level (B,); mean: the layers' encoded composite (a layered model only)."""
        parts = [first, rearrange(context, "b k c h w -> b (k c) h w")] + ([mean] if mean is not None else [])
        scalars = torch.stack([self.diffusion.time_input(t), self.frame_position(frame_index), aug_level], dim=1)
        return self.unet(x_t, scalars, cond=torch.cat(parts, dim=1), labels=labels)

    def loss(self, target, first, context, frame_index, t, noise, aug_level, aug_noise, labels=None, mean=None):
        """Training loss for z_k = target with the given random draws (see train.py); with layers, `mean` is
        the encoded composite the layers made (their motion model's loss is the stage's to add)."""
        context = self.augment(context, aug_level, aug_noise)
        x0 = target
        if self.layers is not None:
            if mean is None:
                raise VidmError("a layered motion model's loss needs the layers' composite as `mean`")
            x0 = (target - mean) / self.config.residual_scale
        net = lambda x, tt: self(x, tt, first, context, frame_index, aug_level, labels, mean)  # noqa: E731
        return training_loss(self.diffusion, net, x0, t, noise)

    def sample(self, sampler: Callable, steps: int, first, context, frame_index, labels=None, generator=None,
               progress: Callable | None = None, temperature: float | None = None, mean=None) -> torch.Tensor:
        """z_k (B, c, h, w) by `sampler` in `steps` network calls, context augmented at the fixed sampling level.

        The starting noise is scaled by `temperature` (default: the config's sample_temperature). A layered
        model is given its mean (the encoded composite of the moved layers, vidm.layered) and generates the
        residual from it; `steps` 0 gives the mean alone.
        """
        if (self.layers is not None) != (mean is not None):
            raise VidmError("a layered motion model samples from the layers' composite (`mean`), no other does")
        level = torch.full((first.shape[0],), self.config.aug_sample_level, device=first.device)
        context = self.augment(context, level, randn_like(context, generator))
        noise = randn_like(first, generator)  # drawn after the augmentation noise, per video generator
        noise = noise * (self.config.sample_temperature if temperature is None else temperature)
        if steps == 0 and mean is not None:
            return mean

        def denoise(x, t):
            return self.diffusion.split(x, t, self(x, t, first, context, frame_index, level, labels, mean))

        x = sampler(denoise, noise, self.diffusion.alphas_cumprod, steps, generator, progress=progress)
        return x if mean is None else mean + self.config.residual_scale * x
