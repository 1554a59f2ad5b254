"""Where a layered model's 10 -> 10 MSE comes from: the VAE, the layers themselves, their motion, the residual.

On held-out clips (test digits, seed 5) the model sees 10 real frames and makes the next 10. Printed, as
10 -> 10 MSE per frame (summed over the 64x64 frame, pixels in [0, 1]):
- the VAE's round trip of the real future frames (the floor of anything made in latent space);
- the layers drawn where the real clip has them (registered in the future frames: perfect motion), alone
  and through the VAE;
- the layers moved by the motion model, at temperatures 0 / 0.3 / 1 (no residual);
- the whole pipeline at 0 / 1 / 2 / 5 residual steps (default temperature).

    python eval/layer_error.py --model runs/moving-mnist-64-layers/motion/step-10000
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from common import load_pipeline
from motion_probe import composite_mse
from vidm import layers as L
from vidm.checkpoint import load_model
from vidm.data.moving_mnist import MovingMNIST
from vidm.layered import LayeredState, cut_clip, render
from vidm.metrics import mse_per_frame


def as_uint8(x: torch.Tensor):
    return (x.clamp(0, 1) * 255).round().byte().numpy()


@torch.no_grad()
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a layered motion model folder, or a pipeline folder")
    p.add_argument("--num", type=int, default=128)
    p.add_argument("--out", default=None, help="write the numbers as JSON here too")
    args = p.parse_args()
    torch.set_num_threads(1)
    folder = Path(args.model)
    if (folder / "motion").is_dir():
        pipe = load_pipeline(str(folder))
    else:  # a motion snapshot: the shipped VAE and content model around it
        pipe = load_pipeline(None)
        pipe.motion = load_model(folder, "motion").eval()
    motion, vae = pipe.motion.layers, pipe.vae
    real = MovingMNIST("test", frames=20, seed=5).videos(args.num)
    x = torch.from_numpy(real).float()[:, :, None] / 255
    future = real[:, 10:]
    mse = lambda made: round(float(mse_per_frame(made, future).mean()), 1)  # noqa: E731
    through_vae = lambda f: ((vae.decode(vae.encode(f.flatten(0, 1) * 2 - 1)) + 1) / 2).reshape(f.shape)  # noqa: E731

    out = {"vae_round_trip": mse(as_uint8(through_vae(x[:, 10:])[:, :, 0]))}
    cuts = [cut_clip(clip, motion.config) for clip in x[:, :10]]
    start = LayeredState.from_cuts(cuts, motion)
    offsets = torch.stack([L.track(L.ink(c.ink), L.ink(clip), c.ref, motion.config.register_window)
                           for c, clip in zip(cuts, x)])  # registered in all 20 frames, from the reference frame
    perfect = torch.stack([render(start.ink, offsets[:, t].float(), motion.config.composite) for t in range(10, 20)], 1)
    out["layers_at_the_real_offsets"] = mse(as_uint8(perfect[:, :, 0]))
    out["layers_at_the_real_offsets_through_vae"] = mse(as_uint8(through_vae(perfect)[:, :, 0]))
    for temperature in (0.0, 0.3, 1.0):
        out[f"layers_moved_temperature_{temperature}"] = composite_mse(motion, start, future, temperature)
    for steps in (0, 1, 2, 5):
        frames = pipe(num_videos=args.num, num_frames=10, context=real[:, :10, ..., None], num_inference_steps=steps,
                      seed=0).frames[..., 0]
        out[f"pipeline_{steps}_steps"] = mse(frames)
    print(json.dumps(out, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
