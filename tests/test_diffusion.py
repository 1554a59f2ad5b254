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
    d = Diffusion(DiffusionConfig(prediction="eps", p2_gamma=1.0, p2_k=1.0))
    t = torch.tensor([0, 500, 999])
    a = d.alphas_cumprod[t]
    torch.testing.assert_close(d.loss_weight(t), (1 / (1 + a / (1 - a))).float())
    assert torch.all(Diffusion(DiffusionConfig()).loss_weight(t) == 1)


def test_p2_with_v_prediction_weights_the_equivalent_eps_loss():
    # P2 is defined on the eps-loss (Choi et al. 2022): for the same network output, the P2-weighted
    # v-loss must equal the P2-weighted eps-loss of the eps that output implies.
    g = torch.Generator().manual_seed(0)
    x0, noise, out = (torch.randn(16, 4, 5, 5, generator=g, dtype=torch.float64) for _ in range(3))
    t = torch.randint(0, 1000, (16,), generator=g)
    mse = lambda a, b: (a - b).pow(2).flatten(1).mean(1)  # noqa: E731
    for schedule, gamma, k in (("linear", 1.0, 1.0), ("cosine", 0.5, 2.0)):
        v = Diffusion(DiffusionConfig(prediction="v", schedule=schedule, p2_gamma=gamma, p2_k=k))
        eps = Diffusion(DiffusionConfig(prediction="eps", schedule=schedule, p2_gamma=gamma, p2_k=k))
        _, eps_hat = v.split(v.add_noise(x0, t, noise), t, out)
        torch.testing.assert_close(v.loss_weight(t).double() * mse(out, v.target(x0, t, noise)),
                                   eps.loss_weight(t).double() * mse(eps_hat, noise), rtol=1e-5, atol=1e-7)
    # gamma 0 keeps each parameterisation's plain loss (the shipped configs train so)
    assert torch.all(Diffusion(DiffusionConfig(prediction="v")).loss_weight(t) == 1)
