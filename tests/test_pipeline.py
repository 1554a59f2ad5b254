import json

import numpy as np
import pytest
import torch

from vidm.checkpoint import load_model
from vidm.errors import VidmError
from vidm.pipeline import VIDMPipeline

from conftest import tiny_pipeline

KW = dict(num_frames=5, num_inference_steps=3)


def test_shapes_types_and_ranges(pipe):
    out = pipe(num_videos=2, seed=0, **KW)
    assert out.frames.shape == (2, 5, 32, 32, 3) and out.frames.dtype == np.uint8
    pt = pipe(num_videos=2, seed=0, output_type="pt", **KW).frames
    assert isinstance(pt, torch.Tensor) and pt.dtype == torch.uint8
    np.testing.assert_array_equal(pt.numpy(), out.frames)
    lat = pipe(num_videos=2, seed=0, output_type="latent", **KW).frames
    assert lat.shape == (2, 5, 4, 8, 8) and lat.dtype == torch.float32


def test_save_load_gives_identical_samples(pipe, pipe_dir):
    loaded = VIDMPipeline.from_pretrained(pipe_dir)
    for sampler in ("ddim", "ddpm", "dpmpp_2m"):
        a = pipe(num_videos=2, seed=7, sampler=sampler, **KW).frames
        b = loaded(num_videos=2, seed=7, sampler=sampler, **KW).frames
        np.testing.assert_array_equal(a, b)


def test_seeded_calls_are_deterministic_and_seeds_differ(pipe):
    a = pipe(num_videos=2, seed=3, sampler="ddpm", **KW).frames
    b = pipe(num_videos=2, seed=3, sampler="ddpm", **KW).frames
    c = pipe(num_videos=2, seed=4, sampler="ddpm", **KW).frames
    np.testing.assert_array_equal(a, b)
    assert np.abs(a.astype(int) - c).max() > 0


def test_results_do_not_depend_on_batch_size(pipe):
    batch = pipe(num_videos=3, seed=10, sampler="ddpm", output_type="latent", **KW).frames
    single = pipe(num_videos=1, seed=11, sampler="ddpm", output_type="latent", **KW).frames
    torch.testing.assert_close(single[0], batch[1], atol=1e-5, rtol=1e-4)


def test_streaming_and_batch_paths_give_the_same_frames(pipe):
    batch = pipe(num_videos=2, seed=5, **KW).frames
    streamed = np.stack(list(pipe.stream(num_videos=2, seed=5, **KW)), axis=1)
    assert streamed.shape == batch.shape
    assert np.abs(streamed.astype(int) - batch).max() <= 1  # batched vs per-frame decoding rounding


def record_motion_calls(pipe) -> list:
    """Records the conditioning latents and the frame position of every call of the motion UNet."""
    seen = []
    original = pipe.motion.unet.forward

    def spy(x, scalars, cond=None, labels=None, **kw):
        seen.append((cond.clone(), scalars[:, 1].clone()))
        return original(x, scalars, cond=cond, labels=labels, **kw)

    pipe.motion.unet.forward = spy
    return seen


def test_motion_model_sees_first_frame_and_previous_latents():
    """Record the conditioning of every motion call: [z_0, z_{k-2}, z_{k-1}] of the video being made."""
    pipe = tiny_pipeline(aug_sample_level=0.0, context_frames=2)
    seen = record_motion_calls(pipe)
    steps = 2
    z = pipe(num_videos=2, num_frames=5, num_inference_steps=steps, seed=0, output_type="latent").frames
    assert len(seen) == 4 * steps
    for k in range(1, 5):
        cond, position = seen[(k - 1) * steps]
        prev = [z[:, max(j, 0)] for j in (k - 2, k - 1)]
        expected = torch.cat([z[:, 0], *prev], dim=1)
        torch.testing.assert_close(cond, expected)
        torch.testing.assert_close(position, torch.full((2,), k / pipe.motion.config.max_frames))


def test_first_frame_is_kept_and_context_is_continued():
    pipe = tiny_pipeline(aug_sample_level=0.0)  # no context noise: the conditioning is the latents themselves
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (50, 70), dtype=np.uint8)  # grayscale, non-square, other size
    out = pipe(num_videos=2, first_frame=image[..., None], seed=0, output_type="latent", **KW).frames
    torch.testing.assert_close(out[0, 0], out[1, 0])
    torch.testing.assert_close(out[0, 0], pipe.encode_frames(image[None, ..., None])[0])
    # a clip of 6 frames is continued at frame 6: z_0 and the last two latents of the clip, then the new ones
    clip = rng.integers(0, 256, (6, 40, 40, 3), dtype=np.uint8)
    seen = record_motion_calls(pipe)
    steps = 2
    new = pipe(num_videos=1, num_frames=3, context=clip, seed=0, num_inference_steps=steps,
               output_type="latent").frames  # (1, 3, c, h, w): the new frames only
    assert new.shape[1] == 3 and len(seen) == 3 * steps
    z = torch.cat([pipe.encode_frames(clip)[None], new], dim=1)  # the clip's latents, then the new ones
    for i, k in enumerate(range(6, 9)):
        cond, position = seen[i * steps]
        torch.testing.assert_close(cond, torch.cat([z[:, 0], z[:, k - 2], z[:, k - 1]], dim=1))
        torch.testing.assert_close(position, torch.full((1,), k / pipe.motion.config.max_frames))
    frames = pipe(num_videos=1, num_frames=3, context=clip, seed=0, num_inference_steps=steps).frames
    assert frames.shape == (1, 3, 32, 32, 3)


def count_motion_calls(pipe) -> dict:
    calls = {"motion": 0}
    pipe.motion.unet.register_forward_hook(lambda *_: calls.__setitem__("motion", calls["motion"] + 1))
    return calls


def test_steps_per_frame_default_to_the_motion_models_sample_steps(pipe):
    calls = count_motion_calls(pipe)
    args = dict(num_videos=1, num_frames=3, content_steps=2, seed=0, output_type="latent")
    assert pipe.motion.config.sample_steps == 20  # the config's default
    default = pipe(**args).frames
    assert calls["motion"] == 2 * 20
    torch.testing.assert_close(pipe(**args, num_inference_steps=20).frames, default)
    pipe.motion.config.sample_steps = 3
    calls["motion"] = 0
    three = torch.stack(list(pipe.stream(**args)), dim=1)  # the stream's default too
    assert calls["motion"] == 2 * 3 and pipe.steps_per_frame() == 3 and pipe.steps_per_frame(5) == 5
    torch.testing.assert_close(three, pipe(**args, num_inference_steps=3).frames)


def test_content_steps_apply_to_the_first_frame_only(pipe):
    calls = {"content": 0, "motion": 0}

    def counter(name):
        return lambda *_: calls.__setitem__(name, calls[name] + 1)

    hooks = [getattr(pipe, name).unet.register_forward_hook(counter(name)) for name in calls]
    try:
        out = pipe(num_videos=2, num_frames=4, num_inference_steps=2, content_steps=5, seed=0).frames
    finally:
        for h in hooks:
            h.remove()
    assert calls == {"content": 5, "motion": 3 * 2}
    same = pipe(num_videos=2, num_frames=4, num_inference_steps=2, content_steps=2, seed=0).frames
    np.testing.assert_array_equal(same, pipe(num_videos=2, num_frames=4, num_inference_steps=2, seed=0).frames)
    assert not np.array_equal(out[:, 0], same[:, 0])  # a different first frame, from more content steps


def test_the_content_sampler_draws_the_first_frame_only(pipe):
    args = dict(num_videos=2, num_frames=3, num_inference_steps=2, seed=0, output_type="latent")
    ancestral = pipe(**args).frames  # the default: ddpm for the first frame
    np.testing.assert_array_equal(pipe(**args, content_sampler="ddpm").frames, ancestral)
    ode = pipe(**args, content_sampler="ddim").frames
    assert not torch.equal(ode[:, 0], ancestral[:, 0])
    # the next frames' sampler is `sampler`: from the same first frame they come out the same
    first = pipe(**args, content_sampler="ddim", sampler="ddim").frames
    np.testing.assert_array_equal(first[:, 0], ode[:, 0])


def test_temperature_scales_the_next_frames_noise_and_defaults_to_the_models(pipe):
    args = dict(num_videos=2, num_frames=3, num_inference_steps=2, seed=0)
    plain = pipe(**args).frames
    np.testing.assert_array_equal(pipe(**args, temperature=1.0).frames, plain)
    cool = pipe(**args, temperature=0.3).frames
    np.testing.assert_array_equal(cool[:, 0], plain[:, 0])  # the content model's first frame is not touched
    assert not np.array_equal(cool[:, 1:], plain[:, 1:])
    assert not np.array_equal(pipe(**args, temperature=0.0).frames[:, 1:], cool[:, 1:])
    pipe.motion.config.sample_temperature = 0.3
    try:
        np.testing.assert_array_equal(pipe(**args).frames, cool)  # the model's default
    finally:
        pipe.motion.config.sample_temperature = 1.0


@pytest.mark.parametrize("kwargs, match", [
    (dict(num_frames=0), "num_frames"),
    (dict(num_inference_steps=0), r"num_inference_steps must be at least 1 for a motion model without layers \(0 "),
    (dict(num_inference_steps=-1), "num_inference_steps must be a positive integer"),
    (dict(content_steps=0), "content_steps"),
    (dict(num_videos=0), "num_videos"),
    (dict(sampler="euler"), "unknown sampler"),
    (dict(content_sampler="euler"), "unknown sampler"),
    (dict(output_type="pil"), "output_type"),
    (dict(first_frame=np.zeros((0, 10, 3), np.uint8)), "empty"),
    (dict(first_frame=np.zeros((10, 10, 3), np.float32)), "uint8"),
    (dict(context=np.zeros((2, 3, 10, 10, 3), np.uint8)), "expected shape"),
    (dict(temperature=-0.5), "temperature"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(temperature="hot"), "temperature"),
])
def test_bad_arguments_raise_clear_errors(pipe, kwargs, match):
    with pytest.raises(VidmError, match=match):
        pipe(**{**dict(num_videos=1, num_frames=2, num_inference_steps=1, seed=0), **kwargs})


def test_loading_rejects_broken_folders(pipe_dir):
    with pytest.raises(VidmError, match="not found"):
        VIDMPipeline.from_pretrained(pipe_dir / "nope")
    (pipe_dir / "motion" / "model.safetensors").unlink()
    with pytest.raises(VidmError, match="missing file"):
        VIDMPipeline.from_pretrained(pipe_dir)


def test_config_that_does_not_match_weights_is_rejected(pipe_dir):
    cfg_path = pipe_dir / "content" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["config"]["unet"]["channels"] = [16, 48]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(VidmError, match="does not match"):
        load_model(pipe_dir / "content")
    cfg_path.write_text("{not json")
    with pytest.raises(VidmError, match="not valid JSON"):
        load_model(pipe_dir / "content")


def test_class_conditional_models_take_labels():
    pipe = tiny_pipeline(num_classes=3)
    a = pipe(num_videos=2, seed=0, labels=[0, 2], output_type="latent", **KW).frames
    b = pipe(num_videos=2, seed=0, labels=[1, 1], output_type="latent", **KW).frames
    assert not torch.allclose(a, b)
    with pytest.raises(VidmError, match="class labels"):
        pipe(num_videos=1, seed=0, **KW)


def test_training_works_after_generation_in_the_same_process(pipe):
    """Constants cached while sampling (under inference mode) must stay usable by autograd."""
    pipe(num_videos=1, seed=0, **KW)
    z = torch.randn(2, 4, 8, 8)
    loss = pipe.content.train().loss(z, torch.tensor([10, 500]), torch.randn_like(z))
    loss.backward()
    assert all(p.grad is not None for p in pipe.content.parameters() if p.requires_grad)
