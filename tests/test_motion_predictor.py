"""The predictor-plus-residual motion model, reference attention, its training and warm starts."""
import json

import numpy as np
import pytest
import torch

from vidm.checkpoint import save_model
from vidm.config import MotionConfig, UNetConfig
from vidm.errors import VidmError
from vidm.motion_model import MotionModel
from vidm.pipeline import VIDMPipeline
from vidm.train import warm_start
from vidm.unet import UNet

from conftest import TINY_UNET, tiny_pipeline
from test_train_and_cli import MODELS, run, write_config

PREDICTOR = {**TINY_UNET, "in_channels": 12, "out_channels": 4, "reference_levels": (0, 1), "reference_channels": 4}


def predictor_config(**kw) -> MotionConfig:
    return MotionConfig(unet=UNetConfig(cond_channels=16, reference_levels=(0,), reference_channels=4, **TINY_UNET),
                        predictor=UNetConfig(**PREDICTOR),
                        context_frames=2, max_frames=16, **kw)


def perturb_zero_weights(model):
    """Zero-initialised output layers make every output zero: give them small random values."""
    with torch.no_grad():
        for p in model.parameters():
            if torch.all(p == 0):
                p.normal_(0, 0.02)
    return model


def inputs(batch=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    first = torch.randn(batch, 4, 8, 8, generator=g)
    context = torch.randn(batch, 2, 4, 8, 8, generator=g)
    return first, context, torch.tensor([1, 5, 9][:batch]), torch.full((batch,), 0.1)


def test_reference_attention_added_to_a_trained_unet_starts_as_the_identity():
    torch.manual_seed(0)
    plain = perturb_zero_weights(UNet(UNetConfig(cond_channels=8, **TINY_UNET), num_scalars=2))
    with_ref = UNet(UNetConfig(cond_channels=8, reference_levels=(0, 1), reference_channels=4, **TINY_UNET),
                    num_scalars=2, num_references=2)
    missing, unexpected = with_ref.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all("reference" in k or k.startswith("up.") for k in missing)
    assert not any(type(m).__name__ == "ReferenceAttention" for m in with_ref.down.modules())
    x, cond, scalars = torch.randn(2, 4, 8, 8), torch.randn(2, 8, 8, 8), torch.rand(2, 2)
    refs = with_ref.encode_reference(torch.randn(2, 2, 4, 8, 8))
    assert refs[0].shape == (2, 2 * 64, 16) and refs[1].shape == (2, 2 * 16, 32)
    torch.testing.assert_close(with_ref(x, scalars, cond, reference=refs), plain(x, scalars, cond))


def test_reference_attention_reads_the_references():
    torch.manual_seed(0)
    unet = perturb_zero_weights(UNet(UNetConfig(reference_levels=(0,), reference_channels=4, **TINY_UNET),
                                     num_scalars=1, num_references=2))
    x, scalars = torch.randn(1, 4, 8, 8), torch.rand(1, 1)
    a = unet(x, scalars, reference=unet.encode_reference(torch.randn(1, 2, 4, 8, 8)))
    b = unet(x, scalars, reference=unet.encode_reference(torch.randn(1, 2, 4, 8, 8)))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="reference"):
        unet(x, scalars)


def test_predictor_config_is_checked():
    with pytest.raises(VidmError, match="cond_channels must be 16"):
        MotionModel(MotionConfig(unet=UNetConfig(cond_channels=12, **TINY_UNET), predictor=UNetConfig(**PREDICTOR)))
    with pytest.raises(VidmError, match="predictor: in_channels must be 12"):
        MotionModel(MotionConfig(unet=UNetConfig(cond_channels=16, **TINY_UNET),
                                 predictor=UNetConfig(**{**PREDICTOR, "in_channels": 8})))


def test_predictor_learns_from_its_own_loss_only_and_both_networks_get_gradients():
    torch.manual_seed(0)
    model = perturb_zero_weights(MotionModel(predictor_config()))
    first, context, k, aug = inputs()
    target, noise, aug_noise = torch.randn(3, 4, 8, 8), torch.randn(3, 4, 8, 8), torch.randn(3, 2, 4, 8, 8)
    t = torch.tensor([10, 500, 990])
    model.loss(target, first, context, k, t, noise, aug, aug_noise).backward()
    full = {n: p.grad.clone() for n, p in model.predictor.named_parameters()}
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.unet.conv_in.parameters())
    model.zero_grad()
    ctx = model.augment(context, aug, aug_noise)
    (model.predict(first, ctx, k, aug) - target).pow(2).mean().backward()
    for n, p in model.predictor.named_parameters():
        torch.testing.assert_close(p.grad, full[n])


def test_frame_position_is_k_over_max_frames_up_to_the_last_trained_frame():
    model = MotionModel(MotionConfig(unet=UNetConfig(cond_channels=12, **TINY_UNET), max_frames=16))
    pos = model.frame_position(torch.tensor([0, 1, 15, 16, 100]))
    torch.testing.assert_close(pos, torch.tensor([0, 1, 15, 15, 15]) / 16)


def predictor_pipeline(seed=0) -> VIDMPipeline:
    base = tiny_pipeline(seed)
    torch.manual_seed(seed)
    motion = perturb_zero_weights(MotionModel(predictor_config()))
    return VIDMPipeline(base.vae, base.content, motion)


def test_predictor_pipeline_is_seeded_and_survives_save_and_load(tmp_path):
    pipe = predictor_pipeline()
    a = pipe(num_videos=2, num_frames=4, num_inference_steps=2, seed=3, output_type="latent").frames
    b = pipe(num_videos=2, num_frames=4, num_inference_steps=2, seed=3, output_type="latent").frames
    torch.testing.assert_close(a, b)
    pipe.save_pretrained(tmp_path / "m")
    loaded = VIDMPipeline.from_pretrained(tmp_path / "m")
    c = loaded(num_videos=2, num_frames=4, num_inference_steps=2, seed=3, output_type="latent").frames
    torch.testing.assert_close(a, c)
    assert json.loads((tmp_path / "m" / "motion" / "config.json").read_text())["config"]["predictor"]


def test_predictor_sample_is_mean_plus_scaled_residual_and_references_are_made_once():
    torch.manual_seed(0)
    model = perturb_zero_weights(MotionModel(predictor_config(aug_sample_level=0.0))).eval()
    first, context, k, _ = inputs(batch=2)
    calls = {"encode": 0}
    encode = model.unet.encode_reference

    def counting(refs):
        calls["encode"] += 1
        return encode(refs)

    model.unet.encode_reference = counting
    zero_residual = lambda denoise, x, ac, steps, g, progress=None: [denoise(x, torch.zeros(2, dtype=torch.long))  # noqa: E731
                                                                     for _ in range(steps)] and torch.zeros_like(x)
    with torch.no_grad():
        z = model.sample(zero_residual, 3, first, context, k, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(z, model.predict(first, context, k, torch.zeros(2)))
    assert calls["encode"] == 1  # once per frame, not once per denoising step


@pytest.mark.parametrize("temperature", [None, 0.0, 0.5])
def test_sampling_starts_from_noise_scaled_by_the_temperature(temperature):
    torch.manual_seed(0)
    model = perturb_zero_weights(MotionModel(predictor_config(aug_sample_level=0.0, sample_temperature=0.25))).eval()
    first, context, k, _ = inputs(batch=2)
    start = lambda denoise, x, ac, steps, g, progress=None: x  # noqa: E731  (returns the noise it starts from)
    with torch.no_grad():
        z = model.sample(start, 1, first, context, k, generator=torch.Generator().manual_seed(0),
                         temperature=temperature)
        mean = model.predict(first, context, k, torch.zeros(2))
    context_noise = torch.Generator().manual_seed(0)
    torch.randn(context.shape, generator=context_noise)  # the augmentation noise is drawn first
    noise = torch.randn(2, 4, 8, 8, generator=context_noise)
    scale = 0.25 if temperature is None else temperature
    torch.testing.assert_close(z, mean + model.config.residual_scale * scale * noise)


def test_warm_start_adds_zero_inputs_so_the_new_model_computes_what_the_old_one_did(tmp_path):
    torch.manual_seed(0)
    old = perturb_zero_weights(MotionModel(MotionConfig(unet=UNetConfig(cond_channels=12, **TINY_UNET),
                                                        context_frames=2, max_frames=16)))
    save_model(old, tmp_path / "old")
    new = MotionModel(predictor_config())
    new_names = warm_start(new, str(tmp_path / "old"), "motion")
    assert any(n.startswith("predictor.") for n in new_names)
    assert all(n.startswith(("predictor.", "unet.reference_encoder.", "unet.up.")) for n in new_names)
    first, context, k, aug = inputs()
    x, t = torch.randn(3, 4, 8, 8), torch.tensor([3, 300, 900])
    with torch.no_grad():
        torch.testing.assert_close(new(x, t, first, context, k, aug, mean=torch.randn(3, 4, 8, 8)),
                                   old(x, t, first, context, k, aug))


def test_training_clips_must_fit_max_frames(tmp_path, capsys):
    out = tmp_path / "run"
    assert run("train", "vae", "--config", write_config(tmp_path, "vae", out, steps=1)) == 0
    short = {**MODELS["motion"], "max_frames": 4}  # the clips have 6 frames
    cfg = write_config(tmp_path, "motion", out, model=short)
    capsys.readouterr()
    assert run("train", "motion", "--config", cfg) == 2
    last = capsys.readouterr().err.splitlines()[-1]  # after the progress bar of encoding the latents
    assert last == "vidm: error: training clips have 6 frames: the motion model's max_frames (4) must be at least that"


def test_training_with_a_predictor_runs_and_logs_the_ema_decay(tmp_path):
    out = tmp_path / "run"
    assert run("train", "vae", "--config", write_config(tmp_path, "vae", out, steps=1)) == 0
    model_cfg = {"unet": {**TINY_UNET, "in_channels": 4, "cond_channels": 16}, "predictor": PREDICTOR,
                 "context_frames": 2, "max_frames": 8}
    cfg = write_config(tmp_path, "motion", out, model=model_cfg, ema_warmup_power=0.75,
                       snapshot_every=2)
    assert run("train", "motion", "--config", cfg) == 0
    assert sorted(p.name for p in (out / "motion").glob("step-*")) == ["step-2", "step-4"]
    log = [json.loads(line) for line in (out / "motion" / "log.jsonl").read_text().splitlines()]
    assert all(np.isfinite(r["loss"]) for r in log)
    # timm's warm-up: the update of step s uses 1 - s^-power, and 0 for the first two
    expected = [0.0, 0.0, 1 - 2 ** -0.75, 1 - 3 ** -0.75]
    assert [r["ema_decay"] for r in log] == pytest.approx(expected, abs=1e-6)
    from vidm.checkpoint import load_model
    assert load_model(out / "motion", "motion").predictor is not None


def test_zero_steps_give_the_predictors_mean_and_need_a_predictor():
    base = tiny_pipeline(0)
    torch.manual_seed(0)
    motion = perturb_zero_weights(MotionModel(predictor_config(aug_sample_level=0.0)))
    pipe = VIDMPipeline(base.vae, base.content, motion)
    z = pipe(num_videos=2, num_frames=3, num_inference_steps=0, content_steps=2, seed=1, output_type="latent").frames
    with torch.no_grad():
        zero = torch.zeros(2)
        first_mean = motion.predict(z[:, 0], torch.stack([z[:, 0], z[:, 0]], dim=1), torch.ones(2), zero)
        second_mean = motion.predict(z[:, 0], torch.stack([z[:, 0], z[:, 1]], dim=1), torch.full((2,), 2), zero)
    torch.testing.assert_close(z[:, 1], first_mean)
    torch.testing.assert_close(z[:, 2], second_mean)
    with pytest.raises(VidmError, match="needs a motion model with a predictor"):
        tiny_pipeline()(num_videos=1, num_frames=2, num_inference_steps=0, content_steps=2)
