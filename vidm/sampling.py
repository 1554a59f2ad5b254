"""Samplers as plain functions: sampler(denoise, x_T, alphas_cumprod, steps, generator, **kw) -> x_0.

`denoise(x, t)` takes a batch and integer steps (B,) and returns predicted (x0, eps); the caller closes
it over the conditioning. Every sampler makes exactly `steps` network calls, at the steps that
`timesteps(..., spacing)` gives (keyword `spacing`, DEFAULT_SPACING by default).
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from .errors import VidmError

Denoise = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


SPACINGS = ("linspace", "logsnr", "trailing")
# Trailing: with linspace, the last of few steps lands on t = 0, where the network returns its input, so
# 2 steps made one useful call (the posterior mean from pure noise, a blur); motion frames built on that
# blur faded into smears within 5 frames (docs/experiments.md, few steps). Trailing spends every call at a
# noise level where it still decides something.
DEFAULT_SPACING = "trailing"


def timesteps(num_train_steps: int, steps: int, spacing: str = DEFAULT_SPACING,
              alphas_cumprod: torch.Tensor | None = None) -> list[int]:
    """`steps` distinct integer steps from T-1 down, spaced as `spacing` says (see SPACINGS)."""
    if not 1 <= steps <= num_train_steps:
        raise VidmError(f"steps must be between 1 and {num_train_steps}, got {steps}")
    if spacing not in SPACINGS:
        raise VidmError(f"unknown spacing {spacing!r}: choose from {', '.join(SPACINGS)}")
    top = num_train_steps - 1
    if steps == 1:
        return [top]
    if spacing == "linspace":  # evenly in t, down to 0
        return [round(i * top / (steps - 1)) for i in range(steps - 1, -1, -1)]
    if spacing == "trailing":
        # Every T/steps from the top, the last at T/steps - 1 (Lin et al. 2024, "Common diffusion noise
        # schedules and sample steps are flawed", table 2); the sampler's last step goes on to the data.
        return [math.floor(num_train_steps - i * num_train_steps / steps + 0.5) - 1 for i in range(steps)]
    if alphas_cumprod is None or len(alphas_cumprod) != num_train_steps:
        raise VidmError(f"the logsnr spacing needs the schedule's alphas_cumprod ({num_train_steps} values)")
    # Evenly in log-SNR from the top step's to step 0's (DPM-Solver's "logSNR" spacing, Lu et al. 2022),
    # each point at the step of nearest log-SNR.
    a = alphas_cumprod.double().cpu()
    lam = 0.5 * torch.log(a / (1 - a))  # decreasing in t
    grid = torch.linspace(float(lam[-1]), float(lam[0]), steps, dtype=torch.float64)
    nearest = (lam[None, :] - grid[:, None]).abs().argmin(dim=1).tolist()
    out = []
    for i, t in enumerate(nearest):
        # Where log-SNR moves slowly, neighbouring points round to one step: keep the steps distinct,
        # leaving room for those still to come (the last lands on 0, the point of step 0's log-SNR).
        out.append(min(max(t, steps - 1 - i), out[-1] - 1 if out else top))
    return out


def randn_like(x: torch.Tensor, generator) -> torch.Tensor:
    """Noise shaped like x; a list of generators draws row b from generator b (batch-size independent)."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != x.shape[0]:
            raise VidmError(f"got {len(generator)} generators for a batch of {x.shape[0]}")
        return torch.stack([torch.randn(x.shape[1:], generator=g, dtype=x.dtype).to(x.device) for g in generator])
    return torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)


def _alpha(alphas_cumprod: torch.Tensor, t: int) -> float:
    return 1.0 if t < 0 else float(alphas_cumprod[t])


def _call(denoise: Denoise, x: torch.Tensor, t: int):
    return denoise(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long))


@torch.no_grad()
def ddim(denoise: Denoise, x: torch.Tensor, alphas_cumprod: torch.Tensor, steps: int,
         generator=None, eta: float = 0.0, progress: Callable | None = None, spacing: str = DEFAULT_SPACING) -> torch.Tensor:
    """DDIM (Song et al. 2021); eta=0 is the deterministic ODE sampler, eta=1 is DDPM ancestral."""
    ts = timesteps(len(alphas_cumprod), steps, spacing, alphas_cumprod)
    for i, t in enumerate(ts):
        t_prev = ts[i + 1] if i + 1 < len(ts) else -1
        a, a_prev = _alpha(alphas_cumprod, t), _alpha(alphas_cumprod, t_prev)
        x0, eps = _call(denoise, x, t)
        sigma = eta * ((1 - a_prev) / (1 - a) * (1 - a / a_prev)) ** 0.5
        x = a_prev ** 0.5 * x0 + max(1 - a_prev - sigma ** 2, 0.0) ** 0.5 * eps
        if sigma > 0:
            x = x + sigma * randn_like(x, generator)
        if progress is not None:
            progress()
    return x


def ddpm(denoise: Denoise, x: torch.Tensor, alphas_cumprod: torch.Tensor, steps: int,
         generator=None, progress: Callable | None = None, spacing: str = DEFAULT_SPACING) -> torch.Tensor:
    """Ancestral sampling with the DDPM posterior variance (Ho et al. 2020) over any step subset."""
    return ddim(denoise, x, alphas_cumprod, steps, generator, eta=1.0, progress=progress, spacing=spacing)


@torch.no_grad()
def dpmpp_2m(denoise: Denoise, x: torch.Tensor, alphas_cumprod: torch.Tensor, steps: int,
             generator=None, progress: Callable | None = None, spacing: str = DEFAULT_SPACING) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022), multistep second order in log-SNR; deterministic."""
    ts = timesteps(len(alphas_cumprod), steps, spacing, alphas_cumprod)
    old_x0, h_last = None, None
    for i, t in enumerate(ts):
        t_next = ts[i + 1] if i + 1 < len(ts) else -1
        a, a_next = _alpha(alphas_cumprod, t), _alpha(alphas_cumprod, t_next)
        x0, _ = _call(denoise, x, t)
        if a_next >= 1.0:  # the last step lands on the data: the solver's limit is the prediction itself
            x = x0
        else:
            lam = 0.5 * torch.log(torch.tensor(a / (1 - a), dtype=torch.float64))
            lam_next = 0.5 * torch.log(torch.tensor(a_next / (1 - a_next), dtype=torch.float64))
            h = float(lam_next - lam)
            d = x0
            if old_x0 is not None:
                r = h_last / h
                d = (1 + 1 / (2 * r)) * x0 - (1 / (2 * r)) * old_x0
            sigma_ratio = ((1 - a_next) / (1 - a)) ** 0.5
            x = sigma_ratio * x - a_next ** 0.5 * torch.expm1(torch.tensor(-h)).item() * d
            h_last = h
        old_x0 = x0
        if progress is not None:
            progress()
    return x


@torch.no_grad()
def ddim_invert(denoise: Denoise, x0: torch.Tensor, alphas_cumprod: torch.Tensor, steps: int) -> torch.Tensor:
    """Runs deterministic DDIM backwards: clean x0 -> the x_T that ddim(eta=0) maps back to x0."""
    ts = timesteps(len(alphas_cumprod), steps)[::-1]
    x = x0
    for i, t in enumerate(ts):
        t_prev = ts[i - 1] if i > 0 else -1
        # The forward step t -> t_prev uses eps(x_t, t); going up we only know x_{t_prev}, so use
        # eps(x_{t_prev}, t_prev), and for the first step from clean data the lowest noise level.
        pred_x0, eps = _call(denoise, x, t_prev if t_prev >= 0 else t)
        a = _alpha(alphas_cumprod, t)
        x = a ** 0.5 * pred_x0 + (1 - a) ** 0.5 * eps
    return x


SAMPLERS = {"ddim": ddim, "ddpm": ddpm, "dpmpp_2m": dpmpp_2m}


def get_sampler(name: str):
    if name not in SAMPLERS:
        raise VidmError(f"unknown sampler {name!r}: choose from {', '.join(sorted(SAMPLERS))}")
    return SAMPLERS[name]


def per_frame(sampler: str, steps: int) -> str:
    """How each frame after the first is made, for messages and reports: at 0 steps a layered model's
    composite, which no sampler touches."""
    return "the layered composite (0 steps)" if steps == 0 else f"{sampler} x {steps} steps"
