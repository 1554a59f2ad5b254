"""Noise augmentation of the motion model's context latents: a random level per clip in training, a fixed small
one in sampling, given to the network either way."""
import numpy as np
import torch
from einops import rearrange

from vidm.checkpoint import build
from vidm.data.sources import DataConfig
from vidm.train import MotionStage, TrainConfig, select_frames

from conftest import perturb_zero_weights, tiny_pipeline
from test_train_and_cli import DATA, MODELS, run, write_config


def mixed(context, level, noise):
    """The variance-preserving mix, written out: sqrt(1 - l^2) * context + l * noise, with each video's level."""
    l = level[:, None, None, None, None]
    return torch.sqrt(1 - l**2) * context + l * noise


def record_unet_calls(model) -> list:
    """Records the conditioning latents and the scalars of every call of the motion model's UNet."""
    seen = []
    original = model.unet.forward

    def spy(x, scalars, cond=None, labels=None, **kw):
        seen.append((cond.clone(), scalars.clone()))
        return original(x, scalars, cond=cond, labels=labels, **kw)

    model.unet.forward = spy
    return seen


def test_augment_mixes_each_videos_context_with_noise_at_its_own_level():
    model = build("motion", MODELS["motion"])
    g = torch.Generator().manual_seed(0)
    context, noise = torch.randn(3, 2, 4, 8, 8, generator=g), torch.randn(3, 2, 4, 8, 8, generator=g)
    level = torch.tensor([0.0, 0.3, 1.0])
    out = model.augment(context, level, noise)
    torch.testing.assert_close(out, mixed(context, level, noise))
    torch.testing.assert_close(out[0], context[0])  # level 0: the context itself
    torch.testing.assert_close(out[2], noise[2])  # level 1: noise alone
    big = torch.randn(2, 2, 4, 64, 64, generator=g), torch.randn(2, 2, 4, 64, 64, generator=g)
    assert abs(model.augment(big[0], torch.full((2,), 0.6), big[1]).std().item() - 1) < 0.02  # variance kept


def test_training_noises_the_context_at_a_random_level_per_clip_and_tells_the_network(tmp_path):
    out = tmp_path / "run"
    assert run("train", "vae", "--config", write_config(tmp_path, "vae", out, steps=1)) == 0
    cfg = TrainConfig(stage="motion", out=str(out), model={**MODELS["motion"], "aug_max_level": 0.3,
                                                          "aug_sample_level": 0.05})
    cfg.data = DataConfig(**DATA)
    torch.manual_seed(0)
    model = perturb_zero_weights(build("motion", cfg.model))
    stage = MotionStage(cfg, model, torch.device("cpu"))
    # uniform in [0, aug_max_level], one level per clip of the batch
    levels = stage.draw(4000, torch.Generator().manual_seed(0))["aug_level"]
    assert levels.min() >= 0 and levels.max() <= 0.3
    assert abs(levels.mean().item() - 0.15) < 0.01 and abs((levels < 0.03).float().mean().item() - 0.1) < 0.02
    # the loss gives the network the context noised at the drawn levels, and the levels as its third scalar
    draws = stage.draw(4, torch.Generator().manual_seed(1))
    seen = record_unet_calls(model)
    stage.loss(model, np.arange(4), draws)
    (cond, scalars), = seen
    first, _, context = select_frames(stage.latents, torch.arange(4), draws["k"], model.config.context_frames)
    expected = mixed(context, draws["aug_level"], draws["aug_noise"])
    torch.testing.assert_close(cond[:, :4], first)
    torch.testing.assert_close(cond[:, 4:], rearrange(expected, "b k c h w -> b (k c) h w"))
    torch.testing.assert_close(scalars[:, 2], draws["aug_level"])
    assert (draws["aug_level"] > 0.01).all()  # so the check above saw real noise


def test_sampling_noises_the_context_at_the_fixed_level_and_tells_the_network():
    pipe = tiny_pipeline(aug_sample_level=0.05)
    seen = record_unet_calls(pipe.motion)
    steps = 2
    z = pipe(num_videos=2, num_frames=3, num_inference_steps=steps, seed=0, output_type="latent").frames
    assert len(seen) == 2 * steps
    for cond, scalars in seen:
        torch.testing.assert_close(scalars[:, 2], torch.full((2,), 0.05))
    for k in (1, 2):
        cond, _ = seen[(k - 1) * steps]
        raw = torch.stack([z[:, max(k - 2, 0)], z[:, k - 1]], dim=1)  # the clean context: z_{k-2}, z_{k-1}
        given = rearrange(cond[:, 4:], "b (k c) h w -> b k c h w", k=2)
        # what the mix at level 0.05 added must be standard normal noise: not 0 (no augmentation), nor noise
        # scaled by another level
        noise = (given - np.sqrt(1 - 0.05**2) * raw) / 0.05
        assert abs(noise.mean().item()) < 0.1 and abs(noise.std().item() - 1) < 0.1, (k, noise.std().item())
        torch.testing.assert_close(cond[:, :4], z[:, 0])  # the first latent is not augmented
