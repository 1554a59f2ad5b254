"""Memory latents z_{k-o} further back than the context: config checks, training draws, warm starts, sampling."""
import json

import numpy as np
import pytest
import torch

from vidm.checkpoint import build, save_model
from vidm.config import MotionConfig, UNetConfig
from vidm.data.sources import DataConfig
from vidm.errors import VidmError
from vidm.motion_model import MotionModel
from vidm.pipeline import VIDMPipeline
from vidm.train import MotionStage, TrainConfig, select_frames, warm_start

from conftest import TINY_UNET, tiny_pipeline
from test_motion_predictor import PREDICTOR, perturb_zero_weights
from test_train_and_cli import DATA, run, write_config

# K = 2 context latents and one memory latent 3 frames back: the predictor reads z_0 + 3 latents, the
# diffusion UNet those and the predictor's mean.
MEMORY_MODEL = {"unet": {**TINY_UNET, "in_channels": 4, "cond_channels": 20},
                "predictor": {**PREDICTOR, "in_channels": 16}, "context_frames": 2, "memory_offsets": [3],
                "max_frames": 8}


def test_offsets_must_be_distinct_and_beyond_the_context():
    for bad in ((2,), (4, 4), (1, 5)):
        with pytest.raises(VidmError, match="memory_offsets"):
            MotionModel(MotionConfig(unet=UNetConfig(cond_channels=12 + 4 * len(bad), **TINY_UNET),
                                     context_frames=2, memory_offsets=bad))
    with pytest.raises(VidmError, match=r"must be 16 .*1 memory latents"):
        MotionModel(MotionConfig(unet=UNetConfig(cond_channels=12, **TINY_UNET), context_frames=2,
                                 memory_offsets=(4,)))
    model = MotionModel(MotionConfig(unet=UNetConfig(cond_channels=20, **TINY_UNET), context_frames=2,
                                     memory_offsets=(4, 8)))
    assert model.context_offsets == (2, 1, 4, 8)


def test_training_selects_frames_that_far_back_clamped_at_frame_0():
    latents = torch.arange(2 * 10, dtype=torch.float32).view(2, 10, 1, 1, 1).expand(2, 10, 4, 2, 2)
    first, target, context = select_frames(latents, torch.tensor([0, 1]), torch.tensor([9, 2]), (2, 1, 4, 8))
    assert context[:, :, 0, 0, 0].tolist() == [[7, 8, 5, 1], [10, 11, 10, 10]]
    assert target[:, 0, 0, 0].tolist() == [9, 12] and first[:, 0, 0, 0].tolist() == [0, 10]
    _, _, recent = select_frames(latents, torch.tensor([0]), torch.tensor([5]), 2)
    assert recent[:, :, 0, 0, 0].tolist() == [[3, 4]]


def test_warm_start_without_memory_computes_what_the_old_model_did(tmp_path):
    torch.manual_seed(0)
    old_cfg = {**MEMORY_MODEL, "unet": {**MEMORY_MODEL["unet"], "cond_channels": 16}, "predictor": PREDICTOR,
               "memory_offsets": []}
    old = perturb_zero_weights(build("motion", old_cfg))
    save_model(old, tmp_path / "old")
    new = build("motion", MEMORY_MODEL)
    assert warm_start(new, str(tmp_path / "old"), "motion") == []  # every weight came from the old model
    g = torch.Generator().manual_seed(1)
    first, context = torch.randn(3, 4, 8, 8, generator=g), torch.randn(3, 3, 4, 8, 8, generator=g)
    k, level = torch.tensor([1, 4, 7]), torch.full((3,), 0.1)
    x, t = torch.randn(3, 4, 8, 8, generator=g), torch.tensor([3, 300, 900])
    with torch.no_grad():
        torch.testing.assert_close(new.predict(first, context, k, level), old.predict(first, context[:, :2], k, level))
        mean = new.predict(first, context, k, level)
        torch.testing.assert_close(new(x, t, first, context, k, level, mean=mean),
                                   old(x, t, first, context[:, :2], k, level, mean=mean))
    # a model whose memory weights are not zero reads the memory latent
    fresh = perturb_zero_weights(build("motion", MEMORY_MODEL))
    moved = context.clone()
    moved[:, 2] = torch.randn(3, 4, 8, 8, generator=g)
    with torch.no_grad():
        assert not torch.allclose(fresh.predict(first, context, k, level), fresh.predict(first, moved, k, level))
        assert not torch.allclose(fresh(x, t, first, context, k, level, mean=mean),
                                  fresh(x, t, first, moved, k, level, mean=mean))


def test_sampling_gives_the_model_the_latents_that_far_back(tmp_path):
    torch.manual_seed(0)
    pipe = tiny_pipeline()
    cfg = MotionConfig(unet=UNetConfig(cond_channels=16, **TINY_UNET), context_frames=2, memory_offsets=(3,),
                       max_frames=16)
    pipe = VIDMPipeline(pipe.vae, pipe.content, perturb_zero_weights(MotionModel(cfg)))
    seen = []
    sample = pipe.motion.sample
    pipe.motion.sample = lambda sampler, steps, first, context, *a, **kw: (seen.append(context.clone()),
                                                                         sample(sampler, steps, first, context,
                                                                                *a, **kw))[1]
    z = pipe(num_videos=2, num_frames=6, num_inference_steps=2, seed=0, output_type="latent").frames
    for k, context in zip(range(1, 6), seen):
        expected = torch.stack([z[:, max(k - o, 0)] for o in (2, 1, 3)], dim=1)
        torch.testing.assert_close(context, expected)
    # continuing a clip: the clip's latents are the history
    clip = np.random.default_rng(0).integers(0, 255, (2, 4, 32, 32, 1), dtype=np.uint8)
    seen.clear()
    pipe(num_videos=2, num_frames=1, context=clip, num_inference_steps=2, seed=0)
    z_clip = pipe.encode_frames(clip)
    torch.testing.assert_close(seen[0], z_clip[:, [2, 3, 1]])


def test_training_with_memory_runs_and_draws_noise_for_every_context_latent(tmp_path):
    out = tmp_path / "run"
    assert run("train", "vae", "--config", write_config(tmp_path, "vae", out, steps=1)) == 0
    cfg = write_config(tmp_path, "motion", out, model=MEMORY_MODEL)
    assert run("train", "motion", "--config", cfg) == 0
    log = [json.loads(line) for line in (out / "motion" / "log.jsonl").read_text().splitlines()]
    assert log and all(np.isfinite(r["loss"]) for r in log)
    stage_cfg = TrainConfig(stage="motion", out=str(out), model=MEMORY_MODEL, data=DATA)
    stage_cfg.data = DataConfig(**DATA)
    torch.manual_seed(0)
    model = perturb_zero_weights(build("motion", MEMORY_MODEL))
    stage = MotionStage(stage_cfg, model, torch.device("cpu"))
    draws = stage.draw(2, torch.Generator().manual_seed(0))
    assert draws["aug_noise"].shape[1] == 3  # two recent latents and one memory latent
    assert torch.isfinite(stage.loss(model, np.array([0, 1]), draws))


def test_first_step_share_trains_that_share_of_a_batch_on_frame_1(tmp_path, capsys):
    out = tmp_path / "run"
    assert run("train", "vae", "--config", write_config(tmp_path, "vae", out, steps=1)) == 0
    model = build("motion", MEMORY_MODEL)
    for share in (0.0, 0.5, 1.0):
        cfg = TrainConfig(stage="motion", out=str(out), model=MEMORY_MODEL, first_step_share=share)
        cfg.data = DataConfig(**DATA)
        k = MotionStage(cfg, model, torch.device("cpu")).draw(4000, torch.Generator().manual_seed(0))["k"]
        # the share, plus the uniform draws over 1 .. frames - 1 that were 1 anyway
        expected = share + (1 - share) / (DATA["frames"] - 1)
        assert abs((k == 1).float().mean().item() - expected) < 0.03
        assert k.min() == 1 and (k.max() == DATA["frames"] - 1 or share == 1.0)
    assert run("train", "motion", "--config", write_config(tmp_path, "motion", out, model=MEMORY_MODEL,
                                                           first_step_share=1.5)) == 2
    assert "first_step_share must be in [0, 1]" in capsys.readouterr().err
