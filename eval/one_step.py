"""One-step prediction from real context: where does a frame's error come from?

Each held-out test sequence gives the model --context real frames; the model makes the next one. Its
error (MSE summed over the 64x64 frame, pixels in [0, 1]) is set against four references:
  - the VAE alone (decode(encode(real frame))): the floor any latent model sits on;
  - copy-last-frame;
  - the model's *posterior mean*, one DDIM step from pure noise: its best single guess of the frame, with
    no sampling noise in it (the motion of Moving MNIST is deterministic between bounces, so a model that
    has learnt it puts this mean near the truth);
  - the decoder's sensitivity: the real latent plus white noise of the same size (RMS) as the model's
    latent error. If that stays near the VAE floor while the model's error is large, the model's errors
    are not noise the decoder forgives but wrong shapes and positions.
And the digit classifier of eval/digits.py says whether the predicted frame still shows the digits of
frame 0. Minutes on the CPU, so it is the quick check of a motion model while it trains.

    python eval/one_step.py --num 256 --steps 20
"""
from __future__ import annotations

import functools
from contextlib import contextmanager

import numpy as np
import torch

from common import batches, gray, load_pipeline, log, parser, setup, test_videos, timer, write_result
from digits import digit_sets, load_classifier
from vidm.metrics import mse_per_frame
from vidm.pipeline import to_uint8
from vidm.sampling import DEFAULT_SPACING, SPACINGS


def decode(pipe, z: torch.Tensor) -> np.ndarray:
    """Latents (N, c, h, w) -> gray uint8 frames (N, H, W), rounded as the pipeline rounds its output."""
    with torch.inference_mode():
        return gray(to_uint8(pipe.vae.decode(z.to(pipe.device))).cpu().numpy())


@contextmanager
def step_spacing(spacing: str):
    """The pipeline's samplers place their steps by `spacing` (vidm.sampling.SPACINGS) inside the block."""
    # VIDMPipeline takes no spacing argument yet, so the sampler it looks up gets the keyword bound.
    import vidm.pipeline

    lookup = vidm.pipeline.get_sampler
    vidm.pipeline.get_sampler = lambda name: functools.partial(lookup(name), spacing=spacing)
    try:
        yield
    finally:
        vidm.pipeline.get_sampler = lookup


def predict_latents(pipe, clips: np.ndarray, sampler: str, steps: int, seed: int, batch: int) -> torch.Tensor:
    """Latent of the frame after each clip (N, c, h, w); sequence i uses seed + i."""
    out = []
    for lo, hi in batches(len(clips), batch):
        z = pipe(num_videos=hi - lo, num_frames=1, context=clips[lo:hi, ..., None], num_inference_steps=steps,
                 sampler=sampler, seed=seed + lo, output_type="latent").frames
        out.append(z[:, 0].cpu())
    return torch.cat(out)


def main() -> None:
    p = parser("One-step prediction from real context: model against VAE floor, copy-last and decoder "
               "sensitivity", "one_step.json")
    p.add_argument("--num", type=int, default=256, help="test sequences (default 256)")
    p.add_argument("--context", type=int, default=10, help="real frames given (default 10)")
    p.add_argument("--steps", type=int, default=20, help="steps of the sampled prediction (default 20)")
    p.add_argument("--sampler", default="dpmpp_2m", help="sampler of the sampled prediction (default dpmpp_2m)")
    p.add_argument("--spacing", default=DEFAULT_SPACING, choices=SPACINGS,
                   help="where the sampled prediction's steps lie (default linspace, the pipeline's)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--data-seed", type=int, default=1, help="seed of the test sequences (default 1)")
    args = p.parse_args()
    setup(args)
    pipe = load_pipeline(args.model, args.device)  # float32 weights, whatever the folder stores
    clips = test_videos(args.num, args.context + 1, args.data_seed)  # (N, T, H, W) uint8
    truth = clips[:, -1]
    z_true = pipe.encode_frames(truth[..., None]).cpu()

    with timer() as took:
        z_mean = predict_latents(pipe, clips[:, :-1], "ddim", 1, args.seed, args.batch)
        with step_spacing(args.spacing):
            z_sample = predict_latents(pipe, clips[:, :-1], args.sampler, args.steps, args.seed, args.batch)
    rms = lambda z: float((z - z_true).pow(2).mean().sqrt())  # noqa: E731
    g = torch.Generator().manual_seed(args.seed)
    z_noisy = z_true + rms(z_sample) * torch.randn(z_true.shape, generator=g)
    frames = {"vae_reconstruction": decode(pipe, z_true), "copy_last": clips[:, -2],
              "posterior_mean": decode(pipe, z_mean), "sample": decode(pipe, z_sample),
              "real_latent_plus_white_noise": decode(pipe, z_noisy)}
    latents = {"posterior_mean": z_mean, "sample": z_sample, "real_latent_plus_white_noise": z_noisy}

    net = load_classifier()
    first_sets = digit_sets(net, clips[:, 0])
    real_kept = (digit_sets(net, truth) == first_sets).all(axis=1)
    rows = {}
    for name, pred in frames.items():
        mse = mse_per_frame(pred, truth)
        rows[name] = {"mse": float(mse.mean()), "mse_sem": float(mse.std(ddof=1) / np.sqrt(len(mse))),
                      "digits_kept": float((digit_sets(net, pred) == first_sets).all(axis=1).mean())}
        if name in latents:
            rows[name]["latent_rms_error"] = rms(latents[name])
        log(f"{name:30s} MSE {rows[name]['mse']:7.1f}  digits of frame 0 kept {rows[name]['digits_kept']:.1%}")
    result = {"task": f"{args.context} -> 1", "sequences": args.num,
              "data": f"MovingMNIST('test', frames={args.context + 1}, seed={args.data_seed}) videos 0..{args.num - 1}",
              "sampler": args.sampler, "steps": args.steps, "spacing": args.spacing, "latent_std": float(z_true.std()),
              "real_next_frame_digits_kept": float(real_kept.mean()), "generation_seconds": took(), "rows": rows}
    print(write_result(args.out, result, args))


if __name__ == "__main__":
    main()
