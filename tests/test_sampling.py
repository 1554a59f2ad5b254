import pytest
import torch

from vidm.config import DiffusionConfig
from vidm.diffusion import Diffusion
from vidm.errors import VidmError
from vidm.sampling import SAMPLERS, ddim, ddim_invert, timesteps

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
    ts = timesteps(1000, 10)
    assert ts[0] == 999 and ts[-1] == 0 and len(set(ts)) == 10 and ts == sorted(ts, reverse=True)
    with pytest.raises(VidmError):
        timesteps(1000, 0)


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
