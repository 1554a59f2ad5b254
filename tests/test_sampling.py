import pytest
import torch

from vidm.config import DiffusionConfig
from vidm.diffusion import Diffusion
from vidm.errors import VidmError
from vidm.sampling import SAMPLERS, SPACINGS, ddim, ddim_invert, timesteps

MEAN, STD = 1.5, 0.5


def gaussian_denoiser(diffusion: Diffusion):
    """The exact posterior mean E[x0 | x_t] for data ~ N(MEAN, STD^2): samplers must recover that law."""
    def denoise(x, t):
        alpha, sigma = diffusion.coefficients(t, x)
        var = alpha ** 2 * STD ** 2 + sigma ** 2
        x0 = MEAN + alpha * STD ** 2 / var * (x - alpha * MEAN)
        return x0, (x - alpha * x0) / sigma
    return denoise


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_recover_a_gaussian_with_the_exact_denoiser(name):
    d = Diffusion(DiffusionConfig(schedule="cosine"))
    x = torch.randn(20000, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = SAMPLERS[name](gaussian_denoiser(d), x, d.alphas_cumprod, 200, torch.Generator().manual_seed(1))
    assert abs(out.mean().item() - MEAN) < 0.02
    assert abs(out.std().item() - STD) < 0.02


def test_timesteps():
    assert timesteps(1000, 1) == [999]
    ts = timesteps(1000, 10, "linspace")
    assert ts[0] == 999 and ts[-1] == 0 and len(set(ts)) == 10 and ts == sorted(ts, reverse=True)
    # the default: no call is spent at t = 0, where the network only returns its input
    assert timesteps(1000, 2) == [999, 499] and timesteps(1000, 10)[-1] == 99
    with pytest.raises(VidmError, match="steps must be between 1 and 1000, got 0"):
        timesteps(1000, 0)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("spacing", SPACINGS)
def test_every_spacing_gives_distinct_decreasing_steps_from_the_top(spacing, schedule):
    ac = Diffusion(DiffusionConfig(schedule=schedule)).alphas_cumprod
    for steps in (1, 2, 5, 20, 100, 999, 1000):
        ts = timesteps(1000, steps, spacing, ac)
        assert len(ts) == steps and ts[0] == 999 and all(a > b for a, b in zip(ts, ts[1:])), (steps, ts)
        assert ts[-1] == (1000 // steps - 1 if spacing == "trailing" else 0) or steps == 1, (steps, ts)
    assert timesteps(1000, 5, "trailing") == [999, 799, 599, 399, 199]  # Lin et al. 2024, table 2


def test_logsnr_spacing_is_even_in_log_snr():
    ac = Diffusion(DiffusionConfig(schedule="linear")).alphas_cumprod
    lam = 0.5 * torch.log(ac / (1 - ac))
    gaps = torch.diff(lam[timesteps(1000, 10, "logsnr", ac)])  # log-SNR rises as t falls
    assert gaps.max() / gaps.min() < 1.3, gaps  # even up to rounding t to whole steps
    lin = torch.diff(lam[timesteps(1000, 10, "linspace")])
    assert lin.max() / lin.min() > 3  # while linspace crowds the low-noise end into one big jump


def test_bad_spacing():
    with pytest.raises(VidmError, match="unknown spacing 'karras'"):
        timesteps(1000, 5, "karras")
    with pytest.raises(VidmError, match="the logsnr spacing needs the schedule's alphas_cumprod"):
        timesteps(1000, 5, "logsnr")  # needs the schedule


@pytest.mark.parametrize("name", sorted(SAMPLERS))
def test_samplers_call_the_network_at_the_spaced_steps(name):
    d = Diffusion(DiffusionConfig(schedule="cosine"))
    seen, den = [], gaussian_denoiser(d)
    x = torch.randn(256, 1, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    out = SAMPLERS[name](lambda x, t: seen.append(int(t[0])) or den(x, t), x, d.alphas_cumprod, 20,
                         torch.Generator().manual_seed(1), spacing="trailing")
    assert seen == timesteps(1000, 20, "trailing") and abs(out.mean().item() - MEAN) < 0.1


def test_ddim_eta0_is_deterministic_and_inverts():
    d = Diffusion(DiffusionConfig(schedule="linear"))
    den = gaussian_denoiser(d)
    x0 = MEAN + STD * torch.randn(64, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    noise = ddim_invert(den, x0, d.alphas_cumprod, 1000)
    assert noise.std() > 0.8  # it really went to the noise end
    back = ddim(den, noise, d.alphas_cumprod, 1000)
    torch.testing.assert_close(back, x0, atol=2e-2, rtol=0)
    torch.testing.assert_close(ddim(den, noise, d.alphas_cumprod, 1000), back, atol=0, rtol=0)


def test_seeded_ancestral_sampler_is_deterministic():
    d = Diffusion(DiffusionConfig())
    x = torch.randn(8, 2, dtype=torch.float64)
    run = lambda: SAMPLERS["ddpm"](gaussian_denoiser(d), x, d.alphas_cumprod, 20, torch.Generator().manual_seed(3))  # noqa: E731
    torch.testing.assert_close(run(), run(), atol=0, rtol=0)
