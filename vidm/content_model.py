"""Content model: diffusion over the first frame's latent z_0, optionally class-conditional."""
from __future__ import annotations

import torch
from torch import nn

from .config import ContentConfig
from .diffusion import Diffusion, training_loss
from .unet import UNet


class ContentModel(nn.Module):
    def __init__(self, cfg: ContentConfig):
        super().__init__()
        self.config = cfg
        self.unet = UNet(cfg.unet, num_scalars=1)
        self.diffusion = Diffusion(cfg.diffusion)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.unet(x_t, self.diffusion.time_input(t)[:, None], labels=labels)

    def loss(self, z0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor, labels=None) -> torch.Tensor:
        """Training loss for first-frame latents z0 (B, c, h, w) with the given steps and noise."""
        return training_loss(self.diffusion, lambda x, tt: self(x, tt, labels), z0, t, noise)

    def denoiser(self, labels: torch.Tensor | None = None):
        """(x_t, t) -> (x0, eps), for the samplers."""
        return lambda x, t: self.diffusion.split(x, t, self(x, t, labels))
