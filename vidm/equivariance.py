"""Shift equivariance of the autoencoder's latent: sub-pixel Fourier shifts and the fine-tuning losses.

A strided-conv encoder is equivariant only to shifts by whole latent pixels (4 px with the 4x VAE): a
frame moved by 1-3 px gets a latent that is not the shifted latent, so the motion model must learn
aliased motion. The losses below ask, on random circular shifts s of the frame, that the latent shifted
by s / downsample (band-limited, through the phase of its spectrum) decode to the shifted frame and be
what the encoder gives for the shifted frame (as in EQ-VAE, Kouzelis et al. 2025, for shifts).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .autoencoder import Autoencoder


def fourier_shift(z: torch.Tensor, dy, dx) -> torch.Tensor:
    """Circular shift of z (..., h, w) by (dy, dx) pixels, fractions too; dy, dx scalars or (...,) tensors."""
    h, w = z.shape[-2:]
    dy = torch.as_tensor(dy, dtype=torch.float64, device=z.device)[..., None, None]
    dx = torch.as_tensor(dx, dtype=torch.float64, device=z.device)[..., None, None]
    fy = torch.fft.fftfreq(h, dtype=torch.float64, device=z.device)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64, device=z.device)[None, :]
    # out(n) = z(n - d)  <=>  spectrum times exp(-2 pi i f d); at an integer d this is torch.roll exactly.
    # irfft2 keeps the real part of the Nyquist bins, the band-limited choice for a real signal.
    angle = -2 * torch.pi * (fy * dy + fx * dx)
    phase = torch.polar(torch.ones_like(angle), angle)
    if phase.dim() > 2:  # one shift per leading index: line it up with z's leading dims, before (c, h, w)
        phase = phase.reshape(*phase.shape[:-2], *([1] * (z.dim() - phase.dim())), *phase.shape[-2:])
    spectrum = torch.fft.rfft2(z.double()) * phase
    return torch.fft.irfft2(spectrum, s=(h, w)).to(z.dtype)


def roll_each(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """torch.roll of each frame x[b] (B, C, H, W) by its own integer (dy[b], dx[b])."""
    b, _, h, w = x.shape
    rows = (torch.arange(h, device=x.device) - dy.to(x.device)[:, None]) % h  # (B, H): source row of each row
    cols = (torch.arange(w, device=x.device) - dx.to(x.device)[:, None]) % w
    picked = x[torch.arange(b, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
    return picked.permute(0, 3, 1, 2)  # advanced indexing put channels last: (B, H, W, C) -> (B, C, H, W)


def equivariance_losses(vae: Autoencoder, x: torch.Tensor, dy: torch.Tensor,
                        dx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(decoder term, encoder term) for frames x (B, C, H, W) in [-1, 1] and integer pixel shifts (B,).

    decoder: L1 between decode(shift(z, s / f)) and shift(x, s); encoder: squared error between
    encode(shift(x, s)) and shift(encode(x), s / f), over the variance of the shifted latent.
    """
    f = vae.downsample
    mean, _ = vae.moments(x)  # the posterior mean: the latent the diffusion models are trained on
    x_shifted = roll_each(x, dy, dx)
    z_shifted = fourier_shift(mean, dy / f, dx / f)
    decoder = F.l1_loss(vae.decoder(z_shifted), x_shifted)
    error = (vae.moments(x_shifted)[0] - z_shifted).pow(2).flatten(1).mean(1)
    # A plain squared error is lowered by shrinking the latent (that shrank it 4.6x), and dividing by a
    # detached size still rewards shrinking in every step's gradient. The ratio to the latent's own
    # variance is scale-invariant, and (centred per channel) a constant offset, equivariant for free,
    # cannot inflate the denominator either. Per frame, so the loss does not depend on the batch size.
    spread = (z_shifted - z_shifted.mean(dim=(-2, -1), keepdim=True)).pow(2).flatten(1).mean(1)
    return decoder, (error / spread.clamp(min=1e-8)).mean()
