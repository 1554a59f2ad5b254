"""The layered predictor: exact shifts, grouping of real digits into whole layers (touching and crossing),
its motion model, and a tiny layered model trained and used end to end through the command line."""
import json

import numpy as np
import pytest
import torch

from vidm import layers as L
from vidm.checkpoint import build, load_model, save_model
from vidm.cli import main
from vidm.config import LayersConfig
from vidm.errors import VidmError
from vidm.layer_motion import LayerMotion, Track
from vidm.layered import LayeredState, cut_clip

from conftest import TINY_LAYERS, TINY_UNET, tiny_layered_pipeline

LAYERS = TINY_LAYERS
# As the shipped model: its composite alone (sample_steps 0) unless the caller asks for steps.
MOTION = {"unet": {**TINY_UNET, "in_channels": 4, "cond_channels": 16}, "context_frames": 2, "max_frames": 8,
          "sample_steps": 0, "layers": LAYERS}


def real_digits(*indices) -> list[np.ndarray]:
    """Real held-out MNIST digits (28, 28) as float in [0, 1]."""
    from vidm.data.moving_mnist import digits

    return [digits("test")[i].astype(np.float32) / 255 for i in indices]


def draw(images, corners) -> np.ndarray:
    """Digits at corners (T, D, 2) on a 64x64 canvas, combined by maximum -> (T, 64, 64) in [0, 1]."""
    out = np.zeros((len(corners), 64, 64), np.float32)
    for t, frame in enumerate(corners):
        for img, (r, c) in zip(images, frame):
            np.maximum(out[t, r:r + 28, c:c + 28], img, out=out[t, r:r + 28, c:c + 28])
    return out


def masks_of(images, corners, t) -> list[np.ndarray]:
    return [draw([img], corners[:, d:d + 1])[t] > 0.25 for d, img in enumerate(images)]


def layer_holding(labels, mask) -> tuple[int, float]:
    """The layer holding most of a digit's ink, and the share it holds."""
    share = np.bincount(labels[mask], minlength=3)[1:] / mask.sum()
    return int(share.argmax()) + 1, float(share.max())


def test_an_integer_shift_moves_every_pixel_exactly():
    layers = torch.rand(2, 3, 1, 16, 20)
    offsets = torch.tensor([[[3, -5], [0, 0], [-2, 7]], [[15, 0], [0, -19], [1, 1]]])
    out = L.shift(layers, offsets)
    for b in range(2):
        for l in range(3):
            dy, dx = offsets[b, l].tolist()
            expected = torch.zeros(16, 20)
            src = layers[b, l, 0, max(-dy, 0):16 - max(dy, 0), max(-dx, 0):20 - max(dx, 0)]
            expected[max(dy, 0):16 - max(-dy, 0), max(dx, 0):20 - max(-dx, 0)] = src
            assert torch.equal(out[b, l, 0], expected)


def test_max_composite_of_moved_digits_is_the_moving_mnist_frame():
    images = real_digits(3, 250)
    corners = np.array([[[2, 2], [34, 34]], [[6, 0], [30, 36]]])
    clip = torch.from_numpy(draw(images, corners))[:, None]
    cut = cut_clip(clip[:1], LayersConfig())
    moved = L.composite(L.shift(cut.ink[None], torch.from_numpy(corners[1] - corners[0])[None]), "max")
    assert torch.equal(moved[0], clip[1])


def test_two_digits_touching_in_every_frame_are_split_by_their_motion_and_come_apart():
    images = real_digits(10, 420)
    T = 6
    corners = np.stack([[[18, 10 + 2 * t], [20 - 2 * t, 22]] for t in range(T)])  # one moves right, one up
    clip = draw(images, corners)
    assert all(len(L.components(f, 0.25, 20)) == 1 for f in clip), "the digits must touch in every frame"
    ref, labels = L.choose_reference(clip, 2)
    one, share_one = layer_holding(labels, masks_of(images, corners, ref)[0])
    two, share_two = layer_holding(labels, masks_of(images, corners, ref)[1])
    assert one != two and share_one > 0.8 and share_two > 0.8
    # each layer follows its own digit through the clip
    cut = cut_clip(torch.from_numpy(clip)[:, None], LayersConfig())
    for d, layer in ((0, one - 1), (1, two - 1)):
        true = torch.from_numpy(corners[:, d] - corners[ref, d])
        assert (cut.offsets[:, layer] - true).abs().max() <= 1


def test_two_digits_that_cross_stay_two_layers_tracked_through_the_crossing():
    images = real_digits(7, 640)
    T = 9
    corners = np.stack([[[18, 2 + 4 * t], [18, 34 - 4 * t]] for t in range(T)])  # towards each other, through
    clip = draw(images, corners)
    counts = [len(L.components(f, 0.25, 20)) for f in clip]
    assert counts[0] == 2 and min(counts) == 1, "apart first, then one blob"
    cut = cut_clip(torch.from_numpy(clip)[:, None], LayersConfig())
    labels = (cut.ink[:, 0] > 0).long().argmax(0) + 1
    labels = torch.where(cut.ink[:, 0].amax(0) > 0, labels, 0).numpy()
    masks = masks_of(images, corners, cut.ref)
    (one, s1), (two, s2) = layer_holding(labels, masks[0]), layer_holding(labels, masks[1])
    assert one != two and min(s1, s2) > 0.9
    for d, layer in ((0, one - 1), (1, two - 1)):
        true = torch.from_numpy(corners[:, d] - corners[cut.ref, d])
        assert (cut.offsets[:, layer] - true).abs().max() <= 1, f"digit {d} lost in the crossing"


def test_one_blob_in_a_single_frame_is_one_layer_and_the_other_is_empty():
    images = real_digits(10, 420)
    clip = torch.from_numpy(draw(images, np.array([[[18, 10], [20, 22]]])))[:, None]
    cut = cut_clip(clip, LayersConfig())
    assert cut.present.tolist() == [True, False] and cut.ink[1].sum() == 0
    assert torch.equal(cut.ink.amax(0), clip[0])  # all the ink is in the layers


def tiny_motion() -> LayerMotion:
    torch.manual_seed(0)
    return LayerMotion(LayersConfig(**LAYERS))


def test_extents_give_the_ink_box_and_the_centre_that_places_a_digit_s_28x28_box():
    from vidm.layered import extents

    digit = real_digits(3)[0]
    frames = torch.from_numpy(np.stack([draw([digit], np.array([[[r, c]]]))[0] for r, c in ((0, 0), (10, 20))]))
    ext, present = extents(torch.stack([frames[:, None], torch.zeros_like(frames)[:, None]], dim=1), 0.25)
    assert present.tolist() == [[True, False], [True, False]] and torch.all(ext[:, 1] == 0)
    assert torch.allclose(ext[1, 0], ext[0, 0] + torch.tensor([10.0, 20] * 3), atol=1e-4)  # moves with the ink
    rows, cols = np.nonzero(digit > 0.25)
    assert ext[0, 0, :4].tolist() == [rows.min(), cols.min(), rows.max(), cols.max()]
    assert torch.all((ext[0, 0, 4:] - 13.5).abs() < 2)  # MNIST centres a digit's mass in its 28x28 box


def a_track(B=3) -> Track:
    return Track(extents=torch.tensor([[5.0, 5, 30, 20, 17, 12], [30, 30, 50, 45, 40, 37]]).expand(B, -1, -1),
                 present=torch.tensor([[True, True]] * (B - 1) + [[True, False]]),
                 offsets=torch.arange(4.0)[None, :, None, None].expand(B, 4, 2, 2) * 3,
                 known=torch.tensor([[False, True, True, True]] * B))


def test_layer_motion_is_seeded_per_video_and_an_empty_layer_stays_put():
    motion, track = tiny_motion(), a_track()
    gens = lambda: [torch.Generator().manual_seed(s) for s in (1, 2, 3)]  # noqa: E731
    a, b = motion.sample(track, gens()), motion.sample(track, gens())
    assert torch.equal(a, b) and a.shape == (3, 2, 2)
    assert torch.all(a[2, 1] == 0)  # no ink: no motion
    # video 1 alone, with its own generator, moves as in the batch
    one = Track(*(x[1:2] for x in (track.extents, track.present, track.offsets, track.known)))
    assert torch.allclose(motion.sample(one, [torch.Generator().manual_seed(2)]), a[1:2], atol=1e-5)


def test_temperature_scales_the_motion_noise_and_zero_gives_the_noise_free_step():
    motion, track = tiny_motion(), a_track()
    gens = lambda: [torch.Generator().manual_seed(s) for s in (1, 2, 3)]  # noqa: E731
    noise = torch.randn(3, 2, 2, generator=torch.Generator().manual_seed(7))
    half = motion.sample(track, gens(), noise=noise, temperature=0.5)
    assert torch.allclose(half, motion.sample(track, gens(), noise=noise * 0.5), atol=1e-6)
    assert not torch.allclose(half, motion.sample(track, gens(), noise=noise), atol=1e-4)
    zero = motion.sample(track, gens(), temperature=0.0)
    assert torch.allclose(zero, motion.sample(track, gens(), noise=torch.zeros(3, 2, 2)), atol=1e-6)


def test_the_motion_mlp_has_its_own_learning_rate_and_every_weight_one_group():
    from vidm.train import param_groups

    model = build("motion", MOTION)
    groups = param_groups(model)
    assert [g["lr_scale"] for g in groups] == [1.0, model.layers.config.lr_scale]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in model.layers.parameters()}
    grouped = [id(p) for g in groups for p in g["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each weight once
    plain = {**{k: v for k, v in MOTION.items() if k not in ("layers", "sample_steps")},
             "unet": {**MOTION["unet"], "cond_channels": 12}}
    assert [g["lr_scale"] for g in param_groups(build("motion", plain))] == [1.0]


def test_the_motion_model_sees_the_track_not_only_the_noise():
    motion, track = tiny_motion(), a_track()
    for p in motion.parameters():
        torch.nn.init.normal_(p, 0, 0.3)
    x, t = torch.zeros(3, 2, 2), torch.full((3,), 500)
    faster = Track(track.extents, track.present, track.offsets * 2, track.known)
    assert not torch.allclose(motion(x, t, motion.features(track)), motion(x, t, motion.features(faster)))


def test_a_stream_keeps_only_the_last_track_frames():
    motion = tiny_motion()
    clips = torch.from_numpy(draw(real_digits(1, 2), np.array([[[2, 2], [30, 30]]] * 5)))[None, :, None]
    state = LayeredState.cut(clips, motion)
    for _ in range(7):
        frame = state.step([torch.Generator().manual_seed(0)])
    assert frame.shape == (1, 1, 64, 64) and state.track.offsets.shape == (1, 4, 2, 2)


def test_a_layered_model_is_checked_and_loads_strictly(tmp_path):
    with pytest.raises(VidmError, match=r"cond_channels must be 16 \(first frame \+ 2 context latents \+ the composite"):
        build("motion", {**MOTION, "unet": {**MOTION["unet"], "cond_channels": 12}})
    with pytest.raises(VidmError, match="sample_steps must be at least 0 for a layered motion model, got -1"):
        build("motion", {**MOTION, "sample_steps": -1})
    plain = {**{k: v for k, v in MOTION.items() if k != "layers"}, "unet": {**MOTION["unet"], "cond_channels": 12}}
    with pytest.raises(VidmError, match="sample_steps must be at least 1 for a plain motion model, got 0"):
        build("motion", plain)  # 0 steps would give a mean it does not have
    model = build("motion", MOTION)
    save_model(model, tmp_path / "layered")
    loaded = load_model(tmp_path / "layered", "motion")
    assert loaded.layers is not None and all(torch.equal(a, b) for a, b in
                                             zip(model.state_dict().values(), loaded.state_dict().values()))
    config = json.loads((tmp_path / "layered" / "config.json").read_text())
    config["config"]["layers"]["hidden"] = 64  # a config that does not match its weights
    (tmp_path / "layered" / "config.json").write_text(json.dumps(config))
    with pytest.raises(VidmError):
        load_model(tmp_path / "layered", "motion")


def test_a_folder_saved_with_the_deleted_predictor_options_switched_off_loads(tmp_path):
    """As the shipped checkpoint was saved: predictor null, no memory latents, no reference attention."""
    model = build("motion", MOTION)
    save_model(model, tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "config.json").read_text())
    meta["config"] |= {"predictor": None, "memory_offsets": []}
    meta["config"]["unet"] |= {"reference_levels": [], "reference_channels": 0}
    (tmp_path / "old" / "config.json").write_text(json.dumps(meta))
    loaded = load_model(tmp_path / "old", "motion")
    assert loaded.config == model.config
    meta["config"]["memory_offsets"] = [3]  # a model that used one cannot be built any more
    (tmp_path / "old" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(VidmError, match="memory_offsets is an option of the deleted UNet-predictor motion model"):
        load_model(tmp_path / "old", "motion")


def record_motion(pipe) -> dict:
    """Counts the motion UNet's calls, and records each frame's mean (the layers' composite) and sample."""
    seen = {"unet": 0, "means": [], "samples": []}
    pipe.motion.unet.register_forward_hook(lambda *_: seen.__setitem__("unet", seen["unet"] + 1))
    sample = pipe.motion.sample

    def spy(*args, mean=None, **kwargs):
        z = sample(*args, mean=mean, **kwargs)
        seen["means"].append(mean)
        seen["samples"].append(z)
        return z

    pipe.motion.sample = spy
    return seen


def test_by_default_a_layered_model_with_sample_steps_0_gives_its_composite_without_the_unet():
    pipe = tiny_layered_pipeline(sample_steps=0)
    seen = record_motion(pipe)
    args = dict(num_videos=2, num_frames=3, content_steps=2, seed=0, output_type="latent")
    z = pipe(**args).frames
    assert seen["unet"] == 0 and len(seen["means"]) == 2
    for k, (mean, sample) in enumerate(zip(seen["means"], seen["samples"]), start=1):
        torch.testing.assert_close(sample, mean)  # the encoded composite of the moved layers, itself
        torch.testing.assert_close(z[:, k], mean)
    torch.testing.assert_close(pipe(**args, num_inference_steps=0).frames, z)
    pipe.motion.config.sample_steps = 2  # a model whose default is 2 steps: the residual UNet runs
    seen["unet"] = 0
    with_steps = pipe(**args).frames
    assert seen["unet"] == 2 * 2 and not torch.allclose(with_steps[:, 1:], z[:, 1:])
    torch.testing.assert_close(pipe(**args, num_inference_steps=2).frames, with_steps)


@pytest.mark.parametrize("temperature", [None, 0.0, 0.5])
def test_the_residual_starts_from_noise_scaled_by_the_temperature(temperature):
    model = tiny_layered_pipeline().motion
    model.config.sample_temperature, model.config.aug_sample_level = 0.25, 0.0
    g = torch.Generator().manual_seed(0)
    first, context, mean = torch.randn(2, 4, 16, 16, generator=g), torch.randn(2, 2, 4, 16, 16, generator=g), \
        torch.randn(2, 4, 16, 16, generator=g)
    start = lambda denoise, x, ac, steps, g, progress=None: x  # noqa: E731  (returns the noise it starts from)
    with torch.no_grad():
        z = model.sample(start, 1, first, context, torch.tensor([1, 5]), generator=torch.Generator().manual_seed(0),
                         temperature=temperature, mean=mean)
    draws = torch.Generator().manual_seed(0)
    torch.randn(context.shape, generator=draws)  # the augmentation noise is drawn first
    noise = torch.randn(2, 4, 16, 16, generator=draws)
    scale = 0.25 if temperature is None else temperature
    torch.testing.assert_close(z, mean + model.config.residual_scale * scale * noise)


def run(*argv):
    try:
        main([str(a) for a in argv])
    except SystemExit as e:
        return e.code
    return 0


@pytest.fixture(scope="module")
def layered_model(tmp_path_factory):
    """A tiny layered model trained by `vidm train` (VAE, content, motion with layers)."""
    from test_train_and_cli import MODELS, write_config

    root = tmp_path_factory.mktemp("layered")
    out = root / "run"
    for stage in ("vae", "content"):
        assert run("train", stage, "--config", write_config(root, stage, out)) == 0
    cfg = write_config(root, "motion", out, model=MOTION)
    assert run("train", "motion", "--config", cfg) == 0
    return out


def test_a_layered_model_trains_and_logs_its_losses(layered_model):
    log = [json.loads(line) for line in (layered_model / "motion" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and all(np.isfinite(r["loss"]) for r in log)
    assert any((layered_model / "cache").glob("layers-*.npz"))


def test_a_layered_model_generates_and_extends_through_the_command_line(layered_model, tmp_path, capsys):
    from vidm.pipeline import VIDMPipeline

    assert run("generate", "--model", layered_model, "--num-videos", 2, "--frames", 5, "--steps", 1,
               "--format", "png", "--out", tmp_path / "g", "--quiet") == 0
    assert sorted(p.name for p in (tmp_path / "g").iterdir()) == ["video_000", "video_001"]
    assert len(list((tmp_path / "g" / "video_000").iterdir())) == 5
    capsys.readouterr()
    assert run("generate", "--model", layered_model, "--num-videos", 1, "--frames", 3, "--format", "png",
               "--out", tmp_path / "own", "--quiet") == 0
    assert ", the layered composite (0 steps) per frame," in capsys.readouterr().out  # no --steps: the model's own sample_steps
    clip = (draw(real_digits(3, 4), np.stack([[[5 + 3 * t, 5], [30, 30 - 3 * t]] for t in range(4)])) * 255)
    np.save(tmp_path / "clip.npy", clip.astype(np.uint8))
    assert run("extend", tmp_path / "clip.npy", "--model", layered_model, "--frames", 3, "--steps", 0, "--seed", 1,
               "--out", tmp_path / "ext", "--quiet") == 0
    frames = sorted((tmp_path / "ext").iterdir())
    assert len(frames) == 7
    # with 0 steps each new frame is the encoded composite of the moved layers, decoded
    pipe = VIDMPipeline.from_pretrained(layered_model)
    new = np.stack(list(pipe.stream(num_videos=1, num_frames=3, context=clip.astype(np.uint8)[None, ..., None],
                                    num_inference_steps=0, seed=1)), axis=1)[0]
    from PIL import Image
    np.testing.assert_array_equal(np.stack([np.asarray(Image.open(p).convert("RGB")) for p in frames[4:]]), new)


def test_training_windows_hold_the_frames_before_k_and_mark_the_unknown_ones():
    from vidm.layer_stage import LayerStage

    stage = LayerStage.__new__(LayerStage)
    stage.cfg = LayersConfig(track_frames=3)
    offsets = torch.arange(6.0)[None, :, None, None].expand(1, 6, 1, 2)  # frame t at offset (t, t)
    past, known = stage.windows(offsets, torch.tensor([[1, 4, 5]]), torch.tensor([[3, 3, 1]]))
    assert past[0, :, :, 0, 0].tolist() == [[0, 0, 0], [1, 2, 3], [2, 3, 4]]
    assert known[0].tolist() == [[False, False, True], [True, True, True], [False, False, True]]
