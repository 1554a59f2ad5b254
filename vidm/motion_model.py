"""Motion model: diffusion over z_k given the first latent z_0, the previous K latents and k."""
from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from .config import MotionConfig
from .diffusion import Diffusion, training_loss
from .errors import VidmError
from .sampling import randn_like
from .unet import UNet


class MotionModel(nn.Module):
    """Conditioning latents are concatenated to the noisy input: [z_k noisy, z_0, z_{k-K}, ..., z_{k-1}]."""

    def __init__(self, cfg: MotionConfig):
        super().__init__()
        if cfg.context_frames < 1:
            raise VidmError(f"context_frames must be at least 1, got {cfg.context_frames}")
        expected = cfg.unet.in_channels * (1 + cfg.context_frames)
        if cfg.unet.cond_channels != expected:
            raise VidmError(f"motion unet.cond_channels must be {expected} (first frame + "
                            f"{cfg.context_frames} context latents), got {cfg.unet.cond_channels}")
        self.config = cfg
        # Scalars: diffusion time, frame position, conditioning augmentation level.
        self.unet = UNet(cfg.unet, num_scalars=3)
        self.diffusion = Diffusion(cfg.diffusion)

    def frame_position(self, frame_index: torch.Tensor) -> torch.Tensor:
        """Frame index k -> k / max_frames, the same in training and sampling; later frames clamp to 1."""
        return frame_index.float().clamp(max=self.config.max_frames) / self.config.max_frames

    def augment(self, context: torch.Tensor, level: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """Variance-preserving noise on the context latents, so the model learns to trust them less."""
        level = level.view(-1, *([1] * (context.dim() - 1)))
        return (1 - level.square()).sqrt() * context + level * noise

    def forward(self, x_t, t, first, context, frame_index, aug_level, labels=None) -> torch.Tensor:
        """x_t, first (B, c, h, w); context (B, K, c, h, w), already augmented; frame_index, aug_level (B,)."""
        cond = torch.cat([first, rearrange(context, "b k c h w -> b (k c) h w")], dim=1)
        scalars = torch.stack([self.diffusion.time_input(t), self.frame_position(frame_index), aug_level], dim=1)
        return self.unet(x_t, scalars, cond=cond, labels=labels)

    def loss(self, target, first, context, frame_index, t, noise, aug_level, aug_noise, labels=None):
        """Training loss for z_k = target with the given random draws (see train.py)."""
        context = self.augment(context, aug_level, aug_noise)
        net = lambda x, tt: self(x, tt, first, context, frame_index, aug_level, labels)  # noqa: E731
        return training_loss(self.diffusion, net, target, t, noise)

    def denoiser(self, first, context, frame_index, labels=None, generator=None):
        """(x_t, t) -> (x0, eps) for frame k, with the fixed sampling-time augmentation of the context."""
        level = torch.full((first.shape[0],), self.config.aug_sample_level, device=first.device)
        context = self.augment(context, level, randn_like(context, generator))
        return lambda x, t: self.diffusion.split(x, t, self(x, t, first, context, frame_index, level, labels))
