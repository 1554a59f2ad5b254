"""Do the digits stay recognisable, and stay the same digits? Digit identity over time.

A small CNN, trained once on frames of Moving MNIST made from the *train* digits (cached in eval/cache/),
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

import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from common import (CACHE, batches, digits_id, gray, load_pipeline, log, parser, setup, timer,
                    write_result)
from vidm.atomic import atomic_path
from vidm.data.moving_mnist import MovingMNIST
from vidm.pipeline import CONTENT_SAMPLER

VERSION = 1  # bump when the network or its training changes, so that a cached classifier is not reused
TRAIN_VIDEOS, TRAIN_FRAMES, TRAIN_SEED = 3000, 20, 100  # classifier data: every frame of these train videos
EPOCHS, BATCH, LR = 3, 128, 2e-3


class DigitNet(nn.Module):
    """64x64 grayscale frame -> logits of the ten classes being present."""

    def __init__(self):
        super().__init__()
        act = nn.ReLU()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, stride=2, padding=1), act,  # 32x32
            nn.Conv2d(16, 32, 3, padding=1), act, nn.MaxPool2d(2),  # 16x16
            nn.Conv2d(32, 64, 3, padding=1), act, nn.MaxPool2d(2),  # 8x8: receptive field about a digit
            nn.Conv2d(64, 128, 3, padding=1), act)
        self.head = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).amax(dim=(2, 3)))


def to_input(frames: np.ndarray) -> torch.Tensor:
    """uint8 (N, 64, 64) -> float (N, 1, 64, 64) in [0, 1]."""
    return torch.from_numpy(frames).float().unsqueeze(1) / 255


def multi_hot(classes: np.ndarray) -> np.ndarray:
    """Classes (N, D) -> (N, 10) with 1 where a class is present."""
    out = np.zeros((len(classes), 10), dtype=np.float32)
    np.put_along_axis(out, classes, 1.0, axis=1)
    return out


def labelled_frames(split: str, num: int, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every frame of `num` videos, (num * frames, 64, 64), and the multi-hot classes of each."""
    data = MovingMNIST(split, frames=frames, seed=seed)
    videos = data.videos(num).reshape(-1, 64, 64)
    targets = np.repeat(multi_hot(np.stack([data.classes(i) for i in range(num)])), frames, axis=0)
    return videos, targets


def train_classifier() -> DigitNet:
    torch.manual_seed(0)
    x, y = labelled_frames("train", TRAIN_VIDEOS, TRAIN_FRAMES, TRAIN_SEED)
    net = DigitNet()
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    steps = EPOCHS * (len(x) // BATCH)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps)
    g = np.random.default_rng(0)
    start = time.time()
    for epoch in range(EPOCHS):
        order = g.permutation(len(x))
        for i in range(len(x) // BATCH):
            idx = order[i * BATCH:(i + 1) * BATCH]
            loss = nn.functional.binary_cross_entropy_with_logits(net(to_input(x[idx])), torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        log(f"  classifier epoch {epoch + 1}/{EPOCHS}: loss {loss.item():.4f} ({time.time() - start:.0f} s)")
    return net.eval()


def load_classifier() -> DigitNet:
    """The cached classifier of the current train digits, trained (a few minutes on 2 cores) if missing."""
    path = CACHE / f"digitnet-v{VERSION}-{digits_id('train')}.pt"
    if path.is_file():
        net = DigitNet()
        net.load_state_dict(torch.load(path, weights_only=True))
        return net.eval()
    log(f"training the digit classifier on {TRAIN_VIDEOS * TRAIN_FRAMES} frames of train digits")
    net = train_classifier()
    CACHE.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        torch.save(net.state_dict(), tmp)
    return net


@torch.inference_mode()
def digit_sets(net: DigitNet, frames: np.ndarray, batch: int = 512) -> np.ndarray:
    """uint8 frames (..., 64, 64) -> bool (..., 10): the classes the classifier is confident about."""
    flat = frames.reshape(-1, *frames.shape[-2:])
    out = np.concatenate([(net(to_input(flat[lo:hi])) > 0).numpy() for lo, hi in batches(len(flat), batch)])
    return out.reshape(*frames.shape[:-2], 10)


def kept(sets: np.ndarray) -> np.ndarray:
    """Digit sets (N, T, 10) -> bool (N, T): a non-empty set equal to the one of frame 0."""
    return sets.any(axis=-1) & (sets == sets[:, :1]).all(axis=-1)


def shifted(frames: np.ndarray, s: int) -> np.ndarray:
    """uint8 frames (N, H, W) moved s px right and down, the vacated border black (digits do not wrap)."""
    out = np.zeros_like(frames)
    out[:, s:, s:] = frames[:, :-s, :-s]
    return out


def translation_ceiling(net: DigitNet, first: np.ndarray, shifts=(1, 2, 4)) -> dict:
    """How often frame 0, only moved by s px, still reads as its own digit set: what a motion model that
    moved the digits perfectly would score at the next frame. Below real frames' value, the first frames
    themselves (not the motion) are what the classifier cannot read stably."""
    rates = {}
    for s in shifts:
        rates[f"{s}px"] = float(kept(digit_sets(net, np.stack([first, shifted(first, s)], axis=1)))[:, 1].mean())
    return rates


def count_shares(sets: np.ndarray) -> dict:
    """Digit sets (N, 10) -> the share of frames in which the classifier names 0, 1, 2 and 3+ digits."""
    sizes = sets.sum(axis=-1)
    return {str(k): float((sizes == k).mean()) for k in (0, 1, 2)} | {"3+": float((sizes >= 3).mean())}


INK = 128  # a pixel holds ink above this (as in eval/overlap.py)


def ink_kept(videos: np.ndarray) -> np.ndarray:
    """uint8 videos (N, T, H, W) -> bool (N, T - 1): frame t >= 1 holds at least half of frame 0's ink, so
    its digits have not faded into a faint smear (the first sign of a few-step sampler washing out)."""
    ink = (videos > INK).sum(axis=(2, 3))
    return ink[:, 1:] >= 0.5 * ink[:, :1]


def summary(keep: np.ndarray, sets: np.ndarray, videos: np.ndarray) -> dict:
    T = keep.shape[1]
    at = {f"frame_{t}": float(keep[:, t].mean()) for t in (7, 15, 31, 63, 127, 255, 511, 999) if t < T}
    return {"kept_mean_over_frames": float(keep.mean()), "kept_at": at,
            "frames_keeping_half_the_ink": float(ink_kept(videos).mean()),
            "kept_all_frames": float(keep.all(axis=1).mean()),
            "frame0_digits": count_shares(sets[:, 0]),
            "per_frame": keep.mean(axis=0).round(4)}


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
                             "exact_set_accuracy_real_test_frames": exact, "test_frames": len(x)},
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
