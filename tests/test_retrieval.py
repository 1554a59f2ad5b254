"""First-frame retrieval: fetching z_0's pixels by look, the gate, and its place in the motion model."""
import pytest
import torch

from vidm.checkpoint import load_model, save_model
from vidm.config import MotionConfig, RetrievalConfig, UNetConfig
from vidm.errors import VidmError
from vidm.motion_model import MotionModel
from vidm.retrieval import FirstFrameRetrieval

from conftest import TINY_UNET
from test_motion_predictor import inputs, perturb_zero_weights, predictor_config


def sharp_retrieval(**kw) -> FirstFrameRetrieval:
    torch.manual_seed(0)
    return FirstFrameRetrieval(RetrievalConfig(temperature=1000.0, **kw), latent_channels=4)


def test_fetching_with_the_first_latent_itself_returns_it():
    first = torch.randn(2, 4, 12, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(sharp_retrieval().fetch(first, first), first, atol=1e-4, rtol=0)


def test_a_moved_first_latent_fetches_the_moved_pixels():
    """Even an untrained (random) descriptor finds where a patch went: it is the same patch."""
    first = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(2))
    moved = first.roll(shifts=(3, -2), dims=(2, 3))
    with torch.no_grad():
        fetched = sharp_retrieval().fetch(moved, first)
    # Away from the borders, where the 7x7 descriptor of a moved pixel sees what it saw before the move.
    inner = (slice(None), slice(None), slice(6, 10), slice(6, 10))
    torch.testing.assert_close(fetched[inner], moved[inner], atol=1e-4, rtol=0)
    assert not torch.allclose(fetched[inner], first[inner])


def test_the_gate_starts_nearly_shut_and_the_output_mixes_the_mean_and_the_fetch():
    r = sharp_retrieval(gate_bias=-3.0)
    mean, first = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        out, fetched = r(mean, first)
    torch.testing.assert_close(out, mean + torch.sigmoid(torch.tensor(-3.0)) * (fetched - mean))


def test_retrieval_needs_a_predictor():
    with pytest.raises(VidmError, match="retrieval .* needs a predictor"):
        MotionModel(MotionConfig(unet=UNetConfig(cond_channels=12, **TINY_UNET), context_frames=2,
                                 retrieval=RetrievalConfig()))


def test_motion_loss_trains_the_descriptor_and_gate_and_the_model_survives_save_and_load(tmp_path):
    torch.manual_seed(0)
    model = perturb_zero_weights(MotionModel(predictor_config(retrieval=RetrievalConfig())))
    first, context, k, aug = inputs()
    g = torch.Generator().manual_seed(3)
    target, noise = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 4, 8, 8, generator=g)
    loss = model.loss(target, first, context, k, torch.tensor([5, 500, 950]), noise, aug, torch.randn_like(context))
    loss.backward()
    for name, p in model.retrieval.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    save_model(model, tmp_path / "motion")
    loaded = load_model(tmp_path / "motion", "motion").eval()
    assert loaded.config.retrieval == RetrievalConfig()
    with torch.no_grad():
        mean, guess, fetched = loaded.predict_parts(first, context, k, aug)
        torch.testing.assert_close(mean, model.eval().predict(first, context, k, aug))
    assert fetched is not None and not torch.allclose(mean, guess)
