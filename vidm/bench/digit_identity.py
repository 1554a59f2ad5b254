"""Digit identity over 64 frames: does a video keep the digits of its frame 0, from a real first frame and
from scratch, against real videos (the ceiling)?

The pinned classifier (digit_classifier.py) names the digits of every frame; a video *keeps its digits* at
frame t when the confident set at t is non-empty and equal to the one at frame 0: a digit that dissolves,
or morphs into another class, breaks it. Real test videos score below 100% because the classifier misreads
touching digits; that score is the ceiling.
"""
from __future__ import annotations

import numpy as np

from ..pipeline import CONTENT_SAMPLER, CONTENT_STEPS
from ..sampling import per_frame
from .digit_classifier import digit_sets
from .generate import generate
from .report import Section, markdown_table, pyplot, save_montage

FRAMES, DATA_SEED, BATCH = 64, 5, 32
INK = 128  # a pixel holds ink above this
AT = (7, 15, 31, 63)  # frames 8, 16, 32, 64


def kept(sets: np.ndarray) -> np.ndarray:
    """Digit sets (N, T, 10) -> bool (N, T): a non-empty set equal to the one of frame 0."""
    return sets.any(axis=-1) & (sets == sets[:, :1]).all(axis=-1)


def ink_kept(videos: np.ndarray) -> np.ndarray:
    """uint8 videos (N, T, H, W) -> bool (N, T - 1): frame t >= 1 holds at least half of frame 0's ink, so
    its digits have not faded into a faint smear (the first sign of a few-step sampler washing out)."""
    ink = (videos > INK).sum(axis=(2, 3))
    return ink[:, 1:] >= 0.5 * ink[:, :1]


def count_shares(sets: np.ndarray) -> dict:
    """Digit sets (N, 10) -> the share of frames in which the classifier names 0, 1, 2 and 3+ digits."""
    sizes = sets.sum(axis=-1)
    return {str(k): float((sizes == k).mean()) for k in (0, 1, 2)} | {"3+": float((sizes >= 3).mean())}


def shifted(frames: np.ndarray, s: int) -> np.ndarray:
    """uint8 frames (N, H, W) moved s px right and down, the vacated border black (digits do not wrap)."""
    out = np.zeros_like(frames)
    out[:, s:, s:] = frames[:, :-s, :-s]
    return out


def translation_ceiling(net, first: np.ndarray, shifts=(1, 2, 4)) -> dict:
    """How often frame 0, only moved by s px, still reads as its own digit set: what a motion model that
    moved the digits perfectly would score at the next frame. Below real frames' value, the first frames
    themselves (not the motion) are what the classifier cannot read stably."""
    rates = {}
    for s in shifts:
        rates[f"{s}px"] = float(kept(digit_sets(net, np.stack([first, shifted(first, s)], axis=1)))[:, 1].mean())
    return rates


def summary(keep: np.ndarray, sets: np.ndarray, videos: np.ndarray) -> dict:
    """Kept (N, T), digit sets (N, T, 10) and the videos -> the shares reported."""
    T = keep.shape[1]
    at = {f"frame_{t}": float(keep[:, t].mean()) for t in (7, 15, 31, 63, 127, 255, 511, 999) if t < T}
    return {"kept_mean_over_frames": float(keep.mean()), "kept_at": at,
            "frames_keeping_half_the_ink": float(ink_kept(videos).mean()),
            "kept_all_frames": float(keep.all(axis=1).mean()),
            "frame0_digits": count_shares(sets[:, 0]),
            "per_frame": keep.mean(axis=0).round(4)}


def measure(bench) -> Section:
    net, _ = bench.classifier
    n = bench.sizes.identity
    real = bench.dataset.videos(n, FRAMES, DATA_SEED)
    videos = {"real": real}
    bench.log(f"digit identity: {n} videos of {FRAMES} frames from real first frames")
    videos["from_real_first_frame"] = generate(bench.pipe, n, FRAMES, bench.sampler, bench.steps, bench.seed,
                                               BATCH, first=real[:, 0], log=bench.log)
    bench.log(f"digit identity: {n} videos of {FRAMES} frames from scratch")
    videos["from_scratch"] = generate(bench.pipe, n, FRAMES, bench.sampler, bench.steps, bench.seed, BATCH,
                                      log=bench.log, content_steps=CONTENT_STEPS, content_sampler=CONTENT_SAMPLER)
    results = {"videos": n, "frames": FRAMES, "real_videos": bench.dataset.name(FRAMES, DATA_SEED, n),
               "sampler": bench.sampler, "steps": bench.steps,
               "first_frame_from_scratch": f"{CONTENT_SAMPLER} x {CONTENT_STEPS}",
               "seed": f"video i uses {bench.seed} + i"}
    for name, v in videos.items():
        sets = digit_sets(net, v)
        results[name] = summary(kept(sets), sets, v)
    plots = ["identity_per_frame.png", "identity_examples.png"]
    plot_curves(bench.folder / plots[0], results)
    plot_examples(bench.folder / plots[1], videos)
    return Section("digit_identity", f"Digit identity over {FRAMES} frames ({n} videos each)", results,
                   table(results, bench), plots)


LABELS = {"real": "real test videos (the ceiling)", "from_real_first_frame": "vidm from a real first frame",
          "from_scratch": "vidm from scratch"}


def table(r: dict, bench) -> str:
    at = [t for t in AT if t < r["frames"]]
    rows = []
    for key, label in LABELS.items():
        s = r[key]
        rows.append([label, f"{s['kept_mean_over_frames']:.1%}"]
                    + [f"{s['kept_at'][f'frame_{t}']:.0%}" for t in at]
                    + [f"{s['frames_keeping_half_the_ink']:.0%}", f"{s['frame0_digits']['2']:.0%}"])
    text = (f"Share of videos whose frame shows exactly the digits the classifier reads in their frame 0 "
            f"(real: {r['real_videos']}; generated frames {per_frame(r['sampler'], r['steps'])}, the first frame "
            f"from scratch with {r['first_frame_from_scratch']}).\n\n")
    return text + markdown_table(["videos keeping the digits of frame 0", f"mean over {r['frames']} frames"]
                                 + [f"frame {t + 1}" for t in at]
                                 + ["frames keeping half of frame 0's ink", "frame 0 read as two digits"], rows)


def plot_curves(path, r: dict) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for key, color in (("real", "tab:green"), ("from_real_first_frame", "tab:blue"), ("from_scratch", "tab:orange")):
        ax.plot(np.arange(1, len(r[key]["per_frame"]) + 1), r[key]["per_frame"], color=color, label=LABELS[key])
    ax.set_xlabel("frame")
    ax.set_ylabel("videos keeping their digits")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Same confident digit set as frame 0 ({r['videos']} videos each)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_examples(path, videos: dict[str, np.ndarray], examples: int = 2, every: int = 8) -> None:
    """Two videos of each kind, every 8th frame and the last."""
    frames = list(range(0, FRAMES, every)) + [FRAMES - 1]
    short = {"real": "real", "from_real_first_frame": "real frame 0", "from_scratch": "from scratch"}
    rows = [(f"{short[name]} #{r}", v[r, frames]) for name, v in videos.items() for r in range(min(examples, len(v)))]
    save_montage(path, rows, [f"frame {t + 1}" for t in frames])
