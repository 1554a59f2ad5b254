"""Noise schedules, the eps/v parameterisation and the training loss (Ho et al. 2020; Salimans & Ho 2022)."""
from __future__ import annotations

import math

import torch

from .config import DiffusionConfig
from .errors import VidmError


def linear_alphas_cumprod(num_steps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> torch.Tensor:
    """DDPM's linear beta schedule (Ho et al. 2020), scaled to num_steps as in improved DDPM."""
    scale = 1000.0 / num_steps
    betas = torch.linspace(scale * beta_start, scale * beta_end, num_steps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def cosine_alphas_cumprod(num_steps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021), betas clipped at 0.999 as in the paper."""
    t = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((t + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=max_beta)
    return torch.cumprod(1.0 - betas, dim=0)


SCHEDULES = {"linear": linear_alphas_cumprod, "cosine": cosine_alphas_cumprod}


class Diffusion:
    """Owns the schedule and the parameterisation; networks see t / num_train_steps in [0, 1)."""

    def __init__(self, cfg: DiffusionConfig):
        if cfg.schedule not in SCHEDULES:
            raise VidmError(f"unknown schedule {cfg.schedule!r}: choose from {sorted(SCHEDULES)}")
        if cfg.prediction not in ("eps", "v"):
            raise VidmError(f"unknown prediction {cfg.prediction!r}: choose eps or v")
        self.config = cfg
        self.alphas_cumprod = SCHEDULES[cfg.schedule](cfg.num_train_steps)  # float64 (T,)

    @property
    def num_train_steps(self) -> int:
        return self.config.num_train_steps

    def coefficients(self, t: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sqrt(alpha_bar_t) and sqrt(1 - alpha_bar_t) for integer steps t (B,), shaped to broadcast."""
        a = self.alphas_cumprod.to(like.device)[t].to(like.dtype)
        shape = (-1,) + (1,) * (like.dim() - 1)
        return a.sqrt().view(shape), (1 - a).sqrt().view(shape)

    def add_noise(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        alpha, sigma = self.coefficients(t, x0)
        return alpha * x0 + sigma * noise

    def target(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        if self.config.prediction == "eps":
            return noise
        alpha, sigma = self.coefficients(t, x0)
        return alpha * noise - sigma * x0  # v = alpha * eps - sigma * x0

    def split(self, x_t: torch.Tensor, t: torch.Tensor, output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Network output at (x_t, t) -> predicted (x0, eps)."""
        alpha, sigma = self.coefficients(t, x_t)
        if self.config.prediction == "eps":
            eps = output
            x0 = (x_t - sigma * eps) / alpha
        else:
            x0 = alpha * x_t - sigma * output
            eps = sigma * x_t + alpha * output
        return x0, eps

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """P2 weighting 1 / (k + SNR)^gamma of the eps-loss (Choi et al. 2022); ones when gamma is 0."""
        if self.config.p2_gamma == 0:  # each parameterisation's plain loss, as the shipped models trained
            return torch.ones(t.shape, device=t.device)
        a = self.alphas_cumprod.to(t.device)[t]
        weight = 1.0 / (self.config.p2_k + a / (1 - a)) ** self.config.p2_gamma
        if self.config.prediction == "v":
            # eps - eps_hat = sqrt(a) (v - v_hat) (from x_t = sqrt(a) x0 + sqrt(1-a) eps and
            # v = sqrt(a) eps - sqrt(1-a) x0), so the eps-loss is a times the v-loss.
            weight = weight * a
        return weight.float()

    def time_input(self, t: torch.Tensor) -> torch.Tensor:
        """Integer steps -> the network's time scalar in [0, 1)."""
        return t.float() / self.num_train_steps


def training_loss(diffusion: Diffusion, net_fn, x0: torch.Tensor, t: torch.Tensor,
                  noise: torch.Tensor) -> torch.Tensor:
    """Mean (P2-weighted) squared error of the eps/v target; net_fn(x_t, t) closes over conditioning.

    The caller draws t and noise, so that a batch split over processes sees the same random numbers.
    """
    out = net_fn(diffusion.add_noise(x0, t, noise), t)
    per_sample = (out - diffusion.target(x0, t, noise)).pow(2).flatten(1).mean(1)
    return (diffusion.loss_weight(t) * per_sample).mean()
