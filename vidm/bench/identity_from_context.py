"""Each digit's own image over 64 frames, from 10 real ones: is a digit still itself, found by template
matching (vidm.identity), beside copy-last and copy-plus-physics (vidm.baselines) on the same clips.

Unlike the classifier's measure (digit_identity.py), this one knows which two digit images each held-out
clip holds, so a digit that turns into another of the same class, or into a blob the classifier still
reads, is not kept.
"""
from __future__ import annotations

import numpy as np

from .. import baselines
from ..data.moving_mnist import MovingMNIST
from ..identity import THRESHOLD, kept
from ..metrics import mse_per_frame
from ..sampling import per_frame
from .generate import predict
from .report import Section, markdown_table

CONTEXT, FRAMES, DATA_SEED, BATCH = 10, 64, 5, 32
AT = (10, 20, 40, 63)


def shares(videos: np.ndarray, digits: np.ndarray) -> np.ndarray:
    """Share of digits found per frame (T,)."""
    return kept(videos, digits).mean(axis=(0, 2))


def measure(bench) -> Section:
    n = bench.sizes.identity
    data = MovingMNIST("test", frames=FRAMES, seed=DATA_SEED)
    real = data.videos(n)
    digits = np.stack([data.sample(i)[0] for i in range(n)])
    context = real[:, :CONTEXT]
    bench.log(f"identity from {CONTEXT} real frames: {n} clips to frame {FRAMES}")
    made = {"model": predict(bench.pipe, context, FRAMES - CONTEXT, bench.sampler, bench.steps, bench.seed, BATCH,
                             log=bench.log),
            "copy_last": baselines.copy_last(context, FRAMES - CONTEXT),
            "copy_physics": baselines.copy_physics(context, FRAMES - CONTEXT)}
    results = {"clips": n, "context": CONTEXT, "frames": FRAMES, "threshold": THRESHOLD,
               "real_videos": bench.dataset.name(FRAMES, DATA_SEED, n), "sampler": bench.sampler,
               "steps": bench.steps, "real": {"per_frame": shares(real, digits).round(4)}}
    for name, future in made.items():
        per = shares(np.concatenate([context, future], axis=1), digits)
        results[name] = {"per_frame": per.round(4),
                         "mse_10_10": float(mse_per_frame(future[:, :10], real[:, CONTEXT:CONTEXT + 10]).mean())}
    for r in (results[k] for k in ("real", *made)):
        r["found_at"] = {f"frame_{t}": float(r["per_frame"][t]) for t in AT if t < FRAMES}
    return Section("identity_from_context", f"Each digit's own image from {CONTEXT} real frames to frame {FRAMES}",
                   results, table(results))


LABELS = {"real": "real test clips (the ceiling)", "model": "vidm", "copy_last": "copy the last real frame",
          "copy_physics": "copy plus physics (knows how Moving MNIST moves)"}


def table(r: dict) -> str:
    at = [t for t in AT if t < r["frames"]]
    rows = [[label] + [f"{r[k]['found_at'][f'frame_{t}']:.0%}" for t in at]
            + [f"{r[k]['mse_10_10']:.1f}" if "mse_10_10" in r[k] else "-"] for k, label in LABELS.items()]
    text = (f"Share of digits whose own 28x28 image is found (ZNCC >= {r['threshold']}) in the frame; frames "
            f"0-{r['context'] - 1} are real ({r['real_videos']}; {per_frame(r['sampler'], r['steps'])}). The two "
            f"baselines are Moving MNIST's, not models.\n\n")
    return text + markdown_table(["digits found"] + [f"frame {t}" for t in at] + ["10 -> 10 MSE"], rows)
