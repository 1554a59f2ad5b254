"""The Fourier shift and the equivariance losses of the VAE, on tiny models."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vidm.autoencoder import Autoencoder
from vidm.config import AutoencoderConfig
from vidm.equivariance import equivariance_losses, fourier_shift, roll_each


def tiny_vae(seed=0) -> Autoencoder:
    torch.manual_seed(seed)
    return Autoencoder(AutoencoderConfig(in_channels=1, channels=(8, 16, 16), resolution=32))


def test_fourier_shift_by_whole_pixels_is_a_roll_and_keeps_a_smooth_wave():
    z = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(fourier_shift(z, 2, -3), torch.roll(z, (2, -3), (-2, -1)))
    dy, dx = torch.tensor([0, 1, -5]), torch.tensor([3, 0, 7])  # one shift per frame
    rolled = torch.stack([torch.roll(z[i], (int(dy[i]), int(dx[i])), (-2, -1)) for i in range(3)])
    torch.testing.assert_close(fourier_shift(z, dy, dx), rolled)
    torch.testing.assert_close(roll_each(z, dy, dx), rolled, atol=0, rtol=0)
    n = torch.arange(16.0)
    wave = lambda d: torch.cos(2 * torch.pi * 3 * (n - d) / 16).expand(16, 16)  # noqa: E731  band-limited
    torch.testing.assert_close(fourier_shift(wave(0), 0, 0.3), wave(0.3), atol=1e-5, rtol=0)


def test_zero_shift_gives_the_plain_terms():
    vae = tiny_vae()
    x = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    zero = torch.zeros(4, dtype=torch.long)
    decoder, encoder = equivariance_losses(vae, x, zero, zero)
    torch.testing.assert_close(decoder, F.l1_loss(vae.decoder(vae.moments(x)[0]), x))  # reconstruction of the mean
    assert encoder.item() < 1e-10  # a frame's latent is its own latent


def test_gradients_reach_encoder_and_decoder_and_the_encoder_term_ignores_scale():
    vae = tiny_vae()
    x = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    dy, dx = torch.tensor([1, -7, 3, 0]), torch.tensor([5, 2, 0, -6])
    decoder, encoder = equivariance_losses(vae, x, dy, dx)
    assert decoder.item() > 0 and encoder.item() > 0
    (decoder + encoder).backward()
    for part in (vae.encoder, vae.decoder):
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in part.parameters())
    assert any(p.grad.abs().sum() > 0 for p in vae.encoder.parameters())
    with torch.no_grad():  # a latent scaled 10x down is no more equivariant than before
        last = vae.encoder.net[-1]
        last.weight.mul_(0.1), last.bias.mul_(0.1)
    torch.testing.assert_close(equivariance_losses(vae, x, dy, dx)[1], encoder.detach(), rtol=1e-4, atol=0)


class AveragePool(nn.Module):
    """A toy autoencoder: the latent is the frame averaged over 4x4 blocks, decoded by repeating it."""

    downsample = 4

    def __init__(self):
        super().__init__()
        self.decoder = lambda z: F.interpolate(z, scale_factor=4, mode="nearest")

    def moments(self, x):
        return F.avg_pool2d(x, 4), torch.zeros(())


def test_an_equivariant_map_gives_near_zero_losses():
    r, c = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    # Block averages of a smooth wave are the wave sampled at the block centres: the latent of the frame
    # shifted by s px is the latent shifted by s / 4, exactly, for any s (this checks scale and sign).
    wave = torch.stack([torch.cos(2 * torch.pi * (r + 2 * c) / 32 + phase) for phase in (0.0, 1.0, 2.0)])[:, None]
    _, encoder = equivariance_losses(AveragePool(), wave, torch.tensor([1, -3, 6]), torch.tensor([-7, 2, 5]))
    assert encoder.item() < 1e-10
    # Frames constant over the blocks, moved by whole blocks: the repeating decoder is exact too.
    blocks = F.interpolate(torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(3)), scale_factor=4)
    decoder, encoder = equivariance_losses(AveragePool(), blocks, torch.tensor([4, -8]), torch.tensor([-4, 0]))
    assert decoder.item() < 1e-6 and encoder.item() < 1e-10
    wrong = AveragePool()
    wrong.downsample = 2  # the latent moved by s / 2: far from the encoding of the shifted frame
    assert equivariance_losses(wrong, wave, torch.tensor([1, -3, 6]), torch.tensor([-7, 2, 5]))[1].item() > 0.1


def vae_train_config(out, **overrides):
    from vidm.data.sources import DataConfig
    from vidm.train import TrainConfig

    return TrainConfig(stage="vae", out=str(out), model={"in_channels": 1, "channels": [8, 16, 16], "resolution": 64},
                       data=DataConfig(num_videos=2, frames=3), batch_size=4, steps=2, warmup_steps=1,
                       save_every=2, log_every=1, **overrides)


def test_vae_stage_adds_the_weighted_terms_only_when_asked(tmp_path):
    from vidm.errors import VidmError
    from vidm.train import VAEStage, to_model_input

    vae = Autoencoder(AutoencoderConfig(in_channels=1, channels=(8, 16, 16), resolution=64))
    plain = VAEStage(vae_train_config(tmp_path), vae, "cpu")
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    assert set(plain.draw(4, g())) == {"noise"}  # default runs draw what they always drew
    stage = VAEStage(vae_train_config(tmp_path, equivariance_weight=0.5, equivariance_encoder_weight=0.25), vae, "cpu")
    draws = stage.draw(4, g())
    torch.testing.assert_close(draws["noise"], plain.draw(4, g())["noise"])
    assert draws["shift"].shape == (4, 2) and draws["shift"].abs().max() <= 7
    indices = np.arange(4)
    x = to_model_input(np.stack([stage.source.frame(i // 3, i % 3) for i in indices]), "cpu")
    decoder, encoder = equivariance_losses(vae, x, draws["shift"][:, 0], draws["shift"][:, 1])
    torch.testing.assert_close(stage.loss(vae, indices, draws),
                               plain.loss(vae, indices, draws) + 0.5 * decoder + 0.25 * encoder)
    with pytest.raises(VidmError, match=r"equivariance weights must be >= 0, got -1.0 and 0.0"):
        VAEStage(vae_train_config(tmp_path, equivariance_weight=-1.0), vae, "cpu")


def test_equivariant_fine_tuning_warm_starts_from_a_trained_vae(tmp_path):
    from vidm.checkpoint import load_model
    from vidm.train import train

    train(vae_train_config(tmp_path / "plain"), progress=False)
    tuned = train(vae_train_config(tmp_path / "eq", init_from=str(tmp_path / "plain" / "vae"), equivariance_weight=1.0,
                                   equivariance_encoder_weight=0.1), progress=False)
    log = [json.loads(line) for line in (tmp_path / "eq" / "vae" / "log.jsonl").read_text().splitlines()]
    assert len(log) == 2 and all(np.isfinite(r["loss"]) for r in log)
    assert isinstance(load_model(tuned, kind="autoencoder"), Autoencoder)
