"""Per-frame KL autoencoder shared by the content and motion models (Rombach et al. 2022, small)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import AutoencoderConfig


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4), channels)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.body = nn.Sequential(
            _norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1),
            _norm(cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1),
        )
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x):
        return self.skip(x) + self.body(x)


class Encoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        ch = cfg.channels
        layers = [nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)]
        for i, c in enumerate(ch):
            cin = ch[max(i - 1, 0)]
            if i > 0:  # halve the resolution on the way into every level but the first
                layers.append(nn.Conv2d(cin, cin, 3, stride=2, padding=1))
            for b in range(cfg.blocks_per_level):
                layers.append(ResBlock(cin if b == 0 else c, c))
        layers += [_norm(ch[-1]), nn.SiLU(), nn.Conv2d(ch[-1], 2 * cfg.latent_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


class Decoder(nn.Module):
    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        ch = cfg.channels[::-1]
        layers = [nn.Conv2d(cfg.latent_channels, ch[0], 3, padding=1)]
        for i, c in enumerate(ch):
            cin = ch[max(i - 1, 0)]
            if i > 0:
                layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cin, 3, padding=1)]
            for b in range(cfg.blocks_per_level):
                layers.append(ResBlock(cin if b == 0 else c, c))
        layers += [_norm(ch[-1]), nn.SiLU(), nn.Conv2d(ch[-1], cfg.in_channels, 3, padding=1)]
        self.net = nn.Sequential(*layers)

    def forward(self, z):
        return self.net(z)


class Autoencoder(nn.Module):
    """Maps frames in [-1, 1] to scaled latents and back; video tensors are (B, T, C, H, W)."""

    def __init__(self, cfg: AutoencoderConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.config.channels) - 1)

    def latent_shape(self) -> tuple[int, int, int]:
        side = self.config.resolution // self.downsample
        return (self.config.latent_channels, side, side)

    def moments(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance (unscaled) for a batch of frames (N, C, H, W)."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, x: torch.Tensor, sample: bool = False, generator=None) -> torch.Tensor:
        """Frames (..., C, H, W) in [-1, 1] -> scaled latents (..., c, h, w); posterior mean by default."""
        lead = x.shape[:-3]
        mean, logvar = self.moments(x.reshape(-1, *x.shape[-3:]))
        z = mean
        if sample:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + torch.exp(0.5 * logvar) * noise
        z = z * self.config.scale_factor
        return z.reshape(*lead, *z.shape[1:])

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Scaled latents (..., c, h, w) -> frames (..., C, H, W) in [-1, 1]."""
        lead = z.shape[:-3]
        x = self.decoder(z.reshape(-1, *z.shape[-3:]) / self.config.scale_factor)
        return x.clamp(-1, 1).reshape(*lead, *x.shape[1:])

    def loss(self, x: torch.Tensor, noise: torch.Tensor, kl_weight: float = 1e-4) -> torch.Tensor:
        """L1 reconstruction plus a small KL term (per element) for frames (N, C, H, W) in [-1, 1].

        `noise` (N, c, h, w) draws the posterior sample; the caller draws it (see train.py).
        """
        mean, logvar = self.moments(x)
        recon = self.decoder(mean + torch.exp(0.5 * logvar) * noise)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        return F.l1_loss(recon, x) + kl_weight * kl
