"""The UNet's inference cache of the per-pixel positional term must never change what the network computes."""
import torch

from vidm.config import UNetConfig
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
