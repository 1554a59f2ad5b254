"""The content model alone: do its first frames show two clear digits, as real first frames do?

A from-scratch video can keep its digits only if its first frame shows them. For generated first frames,
real test frames and real test frames through the VAE (what a perfect content model could give), this
reports how many digits the classifier of eval/digits.py names, and the *translation ceiling*: the
share of frames whose digit set survives a shift by 1, 2 or 4 px, i.e. what a motion model that moved
the digits perfectly would keep at the next frame.

    python eval/first_frames.py --num 512
"""
from __future__ import annotations

import numpy as np

from common import batches, gray, load_pipeline, log, parser, setup, test_videos, timer, write_result
from digits import count_shares, digit_sets, load_classifier
from vidm.bench.first_frames import describe, through_vae
from vidm.pipeline import CONTENT_SAMPLER, CONTENT_STEPS


def digit_counts(net, frames: np.ndarray) -> dict:
    """uint8 (N, 64, 64) -> the share of frames in which the classifier names 0, 1, 2 and 3+ digits."""
    return count_shares(digit_sets(net, frames))


def main() -> None:
    p = parser("First frames: digits named and translation ceiling, generated against real.", "first_frames.json")
    p.add_argument("--num", type=int, default=512, help="first frames of each kind")
    p.add_argument("--steps", type=int, default=CONTENT_STEPS,
                   help=f"denoising steps of the content model (default {CONTENT_STEPS}, vidm generate's)")
    p.add_argument("--sampler", default=CONTENT_SAMPLER, help=f"of the first frame (default {CONTENT_SAMPLER})")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--data-seed", type=int, default=5, help="seed of the real test videos")
    args = p.parse_args()
    if args.num < 1 or args.steps < 1:
        raise SystemExit("error: --num and --steps must be at least 1")
    setup(args)
    net = load_classifier()
    pipe = load_pipeline(args.model, args.device)

    real = test_videos(args.num, 1, args.data_seed)[:, 0]
    generated = np.empty_like(real)
    with timer() as took:
        for lo, hi in batches(args.num, args.batch):
            generated[lo:hi] = gray(pipe(num_videos=hi - lo, num_frames=1, content_steps=args.steps,
                                         content_sampler=args.sampler, seed=args.seed + lo).frames)[:, 0]
    result = {"num": args.num, "steps": args.steps, "sampler": args.sampler, "generation_seconds": took(),
              "real": describe(net, real), "real_through_vae": describe(net, through_vae(pipe, real)),
              "generated": describe(net, generated)}
    out = write_result(args.out, result, args)
    log(f"wrote {out}: two digits: generated {result['generated']['digits']['2']:.3f}, "
        f"real {result['real']['digits']['2']:.3f}, through the VAE {result['real_through_vae']['digits']['2']:.3f}")


if __name__ == "__main__":
    main()
