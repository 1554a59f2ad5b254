import math

import numpy as np
import torch

from vidm.config import DiffusionConfig
from vidm.diffusion import Diffusion, cosine_alphas_cumprod, linear_alphas_cumprod


def test_linear_schedule_matches_closed_form():
    ac = linear_alphas_cumprod(1000).numpy()
    betas = np.linspace(1e-4, 0.02, 1000)
    np.testing.assert_allclose(ac, np.cumprod(1 - betas), rtol=1e-12)


def test_cosine_schedule_matches_closed_form_where_unclipped():
    ac = cosine_alphas_cumprod(1000).numpy()
    f = lambda t: math.cos((t / 1000 + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for t in (0, 10, 250, 500, 900):
        assert abs(ac[t] - f(t + 1) / f(0)) < 1e-9
    assert np.all(np.diff(ac) < 0) and 0 < ac[-1] < 1e-4


def test_eps_and_v_parameterisations_invert_their_targets():
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(8, 4, 5, 5, generator=g), torch.randn(8, 4, 5, 5, generator=g)
    t = torch.randint(0, 1000, (8,), generator=g)
    for prediction in ("eps", "v"):
        d = Diffusion(DiffusionConfig(prediction=prediction, schedule="linear"))
        x_t = d.add_noise(x0, t, noise)
        pred_x0, pred_eps = d.split(x_t, t, d.target(x0, t, noise))
        torch.testing.assert_close(pred_x0, x0, atol=2e-3, rtol=1e-3)
        torch.testing.assert_close(pred_eps, noise, atol=1e-4, rtol=1e-4)


def test_p2_weighting():
    d = Diffusion(DiffusionConfig(p2_gamma=1.0, p2_k=1.0))
    t = torch.tensor([0, 500, 999])
    a = d.alphas_cumprod[t]
    torch.testing.assert_close(d.loss_weight(t), (1 / (1 + a / (1 - a))).float())
    assert torch.all(Diffusion(DiffusionConfig()).loss_weight(t) == 1)
