"""Positional group normalization: the UNet's output depends on what modulates it (the frame index, the
conditioning-noise level, the row and column), and the inference cache of its per-pixel term never changes
what the network computes."""
import pytest
import torch

from vidm import unet as unet_module
from vidm.config import MotionConfig, UNetConfig
from vidm.motion_model import MotionModel
from vidm.unet import PositionalGroupNorm, UNet

from conftest import TINY_UNET


def random_unet(seed: int) -> UNet:
    torch.manual_seed(seed)
    net = UNet(UNetConfig(**TINY_UNET), num_scalars=1)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.05)  # non-zero positional convs, so the cached term matters
    return net.eval()


def call(net, x, t, cache: bool):
    old = PositionalGroupNorm.cache_position
    PositionalGroupNorm.cache_position = cache
    try:
        with torch.inference_mode():
            return net(x, t[:, None])
    finally:
        PositionalGroupNorm.cache_position = old


def test_cached_positional_term_matches_uncached():
    net = random_unet(0)
    x, t = torch.randn(2, 4, 16, 16), torch.tensor([0.3, 0.7])
    reference = call(net, x, t, cache=False)
    first, second = call(net, x, t, cache=True), call(net, x, t, cache=True)  # fills, then reads the cache
    torch.testing.assert_close(first, reference, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(second, reference, rtol=1e-5, atol=1e-6)


def test_cache_follows_new_weights_and_training():
    net, other = random_unet(0), random_unet(1)
    x, t = torch.randn(2, 4, 16, 16), torch.tensor([0.3, 0.7])
    call(net, x, t, cache=True)  # cache filled with net's own weights
    net.load_state_dict(other.state_dict())
    torch.testing.assert_close(call(net, x, t, cache=True), call(other, x, t, cache=False), rtol=1e-5, atol=1e-6)
    # an optimiser step after inference changes the output too (training never reads the cache)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    net(x, t[:, None]).square().mean().backward()
    opt.step()
    net.eval()
    torch.testing.assert_close(call(net, x, t, cache=True), call(net, x, t, cache=False), rtol=1e-5, atol=1e-6)


# The modulation layers start at zero, so an untrained network ignores what they read: these tests randomise them.

def random_motion_model(seed: int = 0) -> MotionModel:
    torch.manual_seed(seed)
    model = MotionModel(MotionConfig(unet=UNetConfig(cond_channels=12, **TINY_UNET), context_frames=2, max_frames=16))
    with torch.no_grad():
        for p in model.parameters():
            if torch.all(p == 0):  # the modulation layers and the zero-initialised output layers
                p.normal_(0, 0.1)
    return model.eval()


def test_frame_position_is_k_over_max_frames_up_to_the_last_trained_frame():
    model = random_motion_model()
    pos = model.frame_position(torch.tensor([0, 1, 15, 16, 100]))
    torch.testing.assert_close(pos, torch.tensor([0, 1, 15, 15, 15]) / 16)


def differs_per_video(a: torch.Tensor, b: torch.Tensor) -> bool:
    return bool(((a - b).abs().amax(dim=(1, 2, 3)) > 1e-3).all())


def test_the_output_changes_with_the_frame_index_and_the_conditioning_noise_level():
    model = random_motion_model()
    g = torch.Generator().manual_seed(0)
    x, first, context = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g), \
        torch.randn(2, 2, 4, 8, 8, generator=g)
    t, k, level = torch.tensor([300, 300]), torch.tensor([3, 3]), torch.tensor([0.1, 0.1])
    with torch.no_grad():
        base = model(x, t, first, context, k, level)
        torch.testing.assert_close(model(x, t, first, context, k, level), base)  # deterministic
        assert differs_per_video(model(x, t, first, context, torch.tensor([4, 12]), level), base)
        assert differs_per_video(model(x, t, first, context, k, torch.tensor([0.0, 0.2])), base)


@pytest.mark.parametrize("axis, name", [(2, "row"), (3, "column")])
def test_the_output_changes_with_the_row_and_the_column(monkeypatch, axis, name):
    """Reversing one axis of the row/column features (row r becomes row h - 1 - r for the network) changes the
    output only where the network reads that axis's features."""
    net = random_unet(0)
    x, t = torch.randn(2, 4, 16, 16), torch.tensor([[0.3], [0.7]])
    monkeypatch.setattr(PositionalGroupNorm, "cache_position", False)  # the features are read at every call
    with torch.no_grad():
        base = net(x, t)
        features = unet_module.coordinate_features
        monkeypatch.setattr(unet_module, "coordinate_features",
                            lambda h, w, device, dtype: features(h, w, device, dtype).flip(axis))
        assert differs_per_video(net(x, t), base), name
