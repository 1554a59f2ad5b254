"""The context blur of the motion model: what it removes, and that every way into the model applies it."""
import pytest
import torch

from vidm.config import MotionConfig
from vidm.errors import VidmError
from vidm.motion_model import MotionModel, gaussian_kernel
from vidm.sampling import dpmpp_2m

from test_motion_predictor import inputs, perturb_zero_weights, predictor_config


def checkerboard(shape) -> torch.Tensor:
    h, w = shape[-2:]
    return ((torch.arange(h)[:, None] + torch.arange(w)[None, :]) % 2 * 2 - 1).float().expand(shape)


def test_kernel_is_normalised_and_sigma_zero_is_the_identity():
    assert gaussian_kernel(0).tolist() == [[1.0]]
    k = gaussian_kernel(1.0)
    assert k.shape == (7, 7) and abs(k.sum().item() - 1) < 1e-6
    torch.testing.assert_close(k, k.T)
    model = MotionModel(predictor_config())
    context = torch.randn(2, 2, 4, 8, 8)
    assert torch.equal(model.blur(context), context)


def test_blur_keeps_constants_and_position_and_removes_fine_detail():
    model = MotionModel(predictor_config(context_blur=1.0))
    constant = torch.full((1, 2, 4, 8, 8), 0.7)
    torch.testing.assert_close(model.blur(constant), constant)  # mirrored edges: no dark border
    assert model.blur(checkerboard((1, 2, 4, 8, 8))).abs().max() < 0.02  # the finest pattern is gone
    blob = torch.zeros(1, 1, 1, 8, 8)
    blob[..., 2, 5] = 1
    assert divmod(int(model.blur(blob).flatten().argmax()), 8) == (2, 5)  # where things are survives


def test_negative_blur_or_one_wider_than_the_latent_is_an_error():
    with pytest.raises(VidmError, match="context_blur"):
        MotionModel(predictor_config(context_blur=-1.0))
    with pytest.raises(VidmError, match="too wide for 8x8"):
        MotionModel(predictor_config(context_blur=3.0)).blur(torch.zeros(1, 2, 4, 8, 8))


@pytest.mark.parametrize("blur", [0.0, 1.0])
def test_training_and_sampling_see_the_context_blurred(blur):
    """A checkerboard added to the context changes the loss and the sample without the blur, not with it."""
    torch.manual_seed(0)
    model = perturb_zero_weights(MotionModel(predictor_config(context_blur=blur))).eval()
    first, context, index, level = inputs()
    detailed = context + 0.5 * checkerboard(context.shape)
    draws = dict(t=torch.tensor([10, 400, 900]), noise=torch.randn(3, 4, 8, 8), aug_level=level,
                 aug_noise=torch.randn_like(context))
    with torch.no_grad():
        losses = [model.loss(first.clone(), first, c, index, **draws) for c in (context, detailed)]
        samples = [model.sample(dpmpp_2m, 2, first, c, index, generator=torch.Generator().manual_seed(1))
                   for c in (context, detailed)]
    loss_gap, sample_gap = (losses[0] - losses[1]).abs().item(), (samples[0] - samples[1]).abs().max().item()
    if blur:
        assert loss_gap < 1e-3 and sample_gap < 0.02
    else:
        assert loss_gap > 1e-3 and sample_gap > 0.05


def test_folders_without_the_key_load_with_the_blur_off():
    assert MotionConfig().context_blur == 0.0
