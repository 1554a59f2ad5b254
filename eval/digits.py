"""Do the digits stay recognisable, and stay the same digits? Digit identity over time.

A small CNN trained on frames of Moving MNIST made from the *train* digits, pinned (its weights are
committed, vidm/bench/digit_classifier.safetensors, made by `python -m vidm.bench.train_classifier`),
says which of the ten classes appear in a 64x64 frame (multi-label: one sigmoid per class; global max
pooling, so it does not care where a digit is). A frame's *digit set* is the classes with probability
above 0.5. A video *keeps its digits* at frame t when the set at t is non-empty and equal to the set at
frame 0: a digit that dissolves, or morphs into another class, breaks it. The same measure on held-out
real test videos (test digits, seen by neither the classifier nor the model) is the reference, and the
classifier's exact-set accuracy on real test frames says how far to trust it.

    python eval/digits.py --videos 256 --frames 64 --steps 20
    python eval/digits.py --videos 128 --frames 64 --steps 20 --first-frame real   # the motion model alone
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common import batches, gray, load_pipeline, log, parser, setup, timer, write_result
from vidm.bench import digit_classifier
from vidm.bench.digit_classifier import DigitNet, digit_sets, labelled_frames, multi_hot, to_input  # noqa: F401
from vidm.bench.digit_identity import (INK, count_shares, ink_kept, kept, shifted, summary,  # noqa: F401
                                       translation_ceiling)
from vidm.bench.train_classifier import TRAIN_FRAMES, TRAIN_SEED, TRAIN_VIDEOS
from vidm.data.moving_mnist import MovingMNIST
from vidm.pipeline import CONTENT_SAMPLER


def load_classifier() -> DigitNet:
    """The pinned classifier (vidm/bench/digit_classifier.safetensors), the same in every clone."""
    return digit_classifier.load()


def plot(path: Path, real: np.ndarray, generated: np.ndarray, label: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    ax.plot(real.mean(axis=0), color="tab:green", label=f"real test videos ({len(real)})")
    ax.plot(generated.mean(axis=0), color="tab:blue", label=f"generated ({len(generated)}), {label}")
    ax.set_xlabel("frame")
    ax.set_ylabel("videos keeping their digits")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("Same confident digit set as frame 0 (digit classifier trained on train digits)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = parser("Digit identity over time: do videos keep two recognisable digits?", "digits.json")
    p.add_argument("--videos", type=int, default=256)
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--content-steps", type=int, help="steps for the first frame (default: --steps)")
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--data-seed", type=int, default=5, help="seed of the real reference videos")
    p.add_argument("--accuracy-videos", type=int, default=500, help="real test videos for the accuracy check")
    p.add_argument("--first-frame", choices=("generated", "real"), default="generated",
                   help="'real': each video starts from the first frame of its real reference video, so that the "
                        "measure is of the motion model alone")
    p.add_argument("--plot", help="PNG plot (default: --out with .png; '' for none)")
    args = p.parse_args()
    setup(args)
    net = load_classifier()

    x, y = labelled_frames("test", args.accuracy_videos, 20, args.data_seed + 1)
    predicted = digit_sets(net, x)
    exact = float((predicted == y.astype(bool)).all(axis=1).mean())
    log(f"classifier: exact digit set on {len(x)} real test frames: {exact:.3f}")

    real_videos = MovingMNIST("test", frames=args.frames, seed=args.data_seed).videos(args.videos)
    real_sets = digit_sets(net, real_videos)
    pipe = load_pipeline(args.model, args.device)
    frames = np.empty_like(real_videos)
    with timer() as took:
        for lo, hi in batches(args.videos, args.batch):
            first = real_videos[lo:hi, 0, ..., None] if args.first_frame == "real" else None
            frames[lo:hi] = gray(pipe(num_videos=hi - lo, num_frames=args.frames, num_inference_steps=args.steps,
                                      sampler=args.sampler, seed=args.seed + lo, first_frame=first,
                                      content_steps=args.content_steps).frames)
            log(f"  generated {hi}/{args.videos} videos")
    gen_sets = digit_sets(net, frames)
    real_kept, gen_kept = kept(real_sets), kept(gen_sets)
    label = f"{args.sampler} x {args.steps}" + (f", first frame {args.content_steps}" if args.content_steps else "")
    label += ", real first frames" if args.first_frame == "real" else ""
    result = {"videos": args.videos, "frames": args.frames, "first_frame": args.first_frame,
              "sampler": args.sampler, "steps": args.steps,
              "content_steps": args.content_steps or args.steps, "content_sampler": CONTENT_SAMPLER,
              "generation_seconds": took(),
              "classifier": {"trained_on": f"every frame of MovingMNIST('train', frames={TRAIN_FRAMES}, "
                                          f"seed={TRAIN_SEED}) videos 0..{TRAIN_VIDEOS - 1}",
                             "exact_set_accuracy_real_test_frames": exact, "test_frames": len(x),
                             "weights_sha256": digit_classifier.weights_sha256()},
              "real": summary(real_kept, real_sets, real_videos), "generated": summary(gen_kept, gen_sets, frames),
              "translation_ceiling": {"real": translation_ceiling(net, real_videos[:, 0]),
                                      "generated": translation_ceiling(net, frames[:, 0])}}
    out = write_result(args.out, result, args)
    log(f"wrote {out}: kept at frame {args.frames - 1}: real {result['real']['kept_at'].get(f'frame_{args.frames - 1}')}"
        f", generated {result['generated']['kept_at'].get(f'frame_{args.frames - 1}')}; frames keeping half the "
        f"ink: real {result['real']['frames_keeping_half_the_ink']:.3f}, "
        f"generated {result['generated']['frames_keeping_half_the_ink']:.3f}")
    if args.plot:
        plot(Path(args.plot), real_kept, gen_kept, label)


if __name__ == "__main__":
    main()
