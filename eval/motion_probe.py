"""The layer motion model alone: trained on the cached tracks of a layered run, measured by the 10 -> 10 MSE
of the layers' composite on held-out clips, against CPU-minutes of training.

The motion MLP costs a few percent of a layered training step (the residual UNet is the rest), so its
design is chosen here in CPU-minutes instead of CPU-hours: learning rate, track length, what it sees.
Each line printed is the EMA weights' composite MSE at noise temperatures 0 / 0.3 / 1 (measuring time
is not counted). Needs the layer cache that `vidm train motion --config configs/moving-mnist-64/motion.json`
makes (cache/layers-*.npz in the config's `out`).

    python eval/motion_probe.py --lr 1e-3 --minutes 4                 # the shipped design
    python eval/motion_probe.py --lr 1e-3 --minutes 4 --no-centre     # without the layers' centre of mass
    python eval/motion_probe.py --model checkpoints/moving-mnist-64/motion   # a trained model's MLP, same measure
"""
from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import time

import numpy as np
import torch

import common  # noqa: F401  (puts the source checkout on sys.path, as for every script here)
from vidm.checkpoint import load_model
from vidm.config import LayersConfig
from vidm.data.moving_mnist import MovingMNIST
from vidm.layer_motion import LayerMotion, Track
from vidm.layer_stage import LayerStage, cached_extents
from vidm.layered import LayeredState
from vidm.metrics import mse_per_frame


def composite_mse(motion: LayerMotion, start: LayeredState, future: np.ndarray, temperature: float) -> float:
    """10 -> 10 MSE of the moved layers' composite (no residual) from the held-out clips' 10 real frames."""
    state, g, frames = LayeredState(motion, start.ink, start.track), torch.Generator().manual_seed(0), []
    for _ in range(future.shape[1]):
        frames.append(state.step(g, temperature))
    made = (torch.stack(frames, 1)[:, :, 0].clamp(0, 1) * 255).round().byte().numpy()
    return round(float(mse_per_frame(made, future).mean()), 1)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/moving-mnist-64/motion.json")
    p.add_argument("--clips", type=int, default=32, help="training clips a step (every frame of each)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--minutes", type=float, default=4.0, help="CPU-minutes of training")
    p.add_argument("--track-frames", type=int, default=None)
    p.add_argument("--no-centre", action="store_true", help="withhold the layers' centre of mass (zeros)")
    p.add_argument("--num", type=int, default=128, help="held-out clips")
    p.add_argument("--model", help="measure this trained motion folder's MLP instead of training one")
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    real = MovingMNIST("test", frames=20, seed=5).videos(args.num)
    if args.model:
        trained = load_model(args.model, "motion").layers.float().eval()
        start = LayeredState.cut(torch.from_numpy(real[:, :10]).float()[:, :, None] / 255, trained)
        with torch.no_grad():
            mse = [composite_mse(trained, start, real[:, 10:], s) for s in (0.0, 0.3, 1.0)]
        print(json.dumps({"model": args.model, "mse_t0_t0.3_t1": mse}))
        return
    cfg = LayersConfig(**json.load(open(args.config))["model"]["layers"])
    if args.track_frames:
        cfg = dataclasses.replace(cfg, track_frames=args.track_frames)
    centre = (lambda e: e) if not args.no_centre else (lambda e: torch.cat([e[..., :4], 0 * e[..., 4:]], -1))

    cache = np.load(sorted(glob.glob(f"{json.load(open(args.config))['out']}/cache/layers-*.npz"))[0])
    stage = LayerStage.__new__(LayerStage)  # the stage's draws and motion loss, without a VAE or a data source
    stage.cfg, stage.device, stage.offsets = cfg, "cpu", torch.from_numpy(cache["offsets"]).float()
    stage.frames = stage.offsets.shape[1]
    stage.extents, stage.present = cached_extents(torch.from_numpy(cache["ink"]), cfg.threshold)
    stage.extents = centre(stage.extents)

    motion = LayerMotion(cfg)
    opt = torch.optim.Adam(motion.parameters(), args.lr)
    ema = torch.optim.swa_utils.AveragedModel(motion, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.999))
    start = LayeredState.cut(torch.from_numpy(real[:, :10]).float()[:, :, None] / 255, motion)
    start.track = Track(centre(start.track.extents), start.track.present, start.track.offsets, start.track.known)

    g, step, trained, next_report = torch.Generator().manual_seed(0), 0, 0.0, 0.0
    while True:
        if trained >= next_report:
            model = ema.module
            mse = [composite_mse(model, start, real[:, 10:], s) for s in (0.0, 0.3, 1.0)]
            print(json.dumps({"step": step, "cpu_minutes": round(trained / 60, 2), "mse_t0_t0.3_t1": mse}), flush=True)
            next_report += 60 * args.minutes / 6
            if trained >= 60 * args.minutes:
                break
        t0 = time.process_time()
        videos = torch.randint(0, len(stage.offsets), (args.clips,), generator=g)
        loss = stage.motion_loss(motion, videos, stage.draw(args.clips, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update_parameters(motion)
        step, trained = step + 1, trained + time.process_time() - t0


if __name__ == "__main__":
    main()
