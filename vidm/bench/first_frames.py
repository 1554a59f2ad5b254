"""The content model alone: do its first frames show two readable digits, as real first frames do?

A video from scratch can keep its digits only if its first frame shows them. For generated first frames,
real test frames and real test frames through the VAE (what a perfect content model could give), the
share the pinned classifier reads as 0, 1, 2 and 3+ digits, and the *translation ceiling*: the share whose
digit set survives a shift by 1, 2 or 4 px (what a motion model that moved them perfectly would keep).
"""
from __future__ import annotations

import numpy as np

from ..pipeline import CONTENT_SAMPLER, CONTENT_STEPS
from .digit_classifier import digit_sets
from .digit_identity import count_shares, translation_ceiling
from .generate import batches, generate, gray
from .report import Section, markdown_table, save_montage

DATA_SEED, BATCH = 5, 64


def describe(net, frames: np.ndarray) -> dict:
    """uint8 (N, 64, 64) -> digits named and the translation ceiling."""
    return {"digits": count_shares(digit_sets(net, frames)), "translation_ceiling": translation_ceiling(net, frames)}


def through_vae(pipe, frames: np.ndarray) -> np.ndarray:
    """Frames (N, H, W) encoded and decoded: a one-frame video from a given first frame."""
    return np.concatenate([gray(pipe(first_frame=frames[lo:hi, ..., None], num_videos=hi - lo,
                                     num_frames=1).frames)[:, 0] for lo, hi in batches(len(frames), BATCH)])


def measure(bench) -> Section:
    net, _ = bench.classifier
    n = bench.sizes.first_frames
    bench.log(f"first frames: {n} from the content model, {CONTENT_SAMPLER} x {CONTENT_STEPS} steps")
    real = bench.dataset.videos(n, 1, DATA_SEED)[:, 0]
    frames = {"real": real, "real_through_vae": through_vae(bench.pipe, real),
              "generated": generate(bench.pipe, n, 1, bench.sampler, bench.steps, bench.seed, BATCH, log=bench.log,
                                    content_steps=CONTENT_STEPS, content_sampler=CONTENT_SAMPLER)[:, 0]}
    results = {"num": n, "sampler": CONTENT_SAMPLER, "steps": CONTENT_STEPS,
               "real_frames": bench.dataset.name(1, DATA_SEED, n), "seed": f"frame i uses {bench.seed} + i"}
    results |= {name: describe(net, f) for name, f in frames.items()}
    plot = "first_frames.png"
    plot_sheet(bench.folder / plot, frames)
    return Section("first_frames", f"First frames of the content model ({n})", results, table(results), [plot])


LABELS = {"real": "real test frames", "real_through_vae": "real, through the VAE",
          "generated": "generated (the content model)"}


def table(r: dict) -> str:
    rows = [[label, f"{r[k]['digits']['2']:.1%}", f"{r[k]['digits']['1']:.0%}",
             f"{r[k]['digits']['0']:.0%} / {r[k]['digits']['3+']:.0%}",
             " / ".join(f"{v:.0%}" for v in r[k]["translation_ceiling"].values())] for k, label in LABELS.items()]
    text = (f"First frames drawn by the content model ({r['sampler']} x {r['steps']} steps, `vidm generate`'s "
            f"default) against real ones ({r['real_frames']}).\n\n")
    return text + markdown_table(["first frames", "read as two digits", "one digit", "none / three or more",
                                  "translation ceiling 1 / 2 / 4 px"], rows)


def plot_sheet(path, frames: dict[str, np.ndarray], cols: int = 8) -> None:
    """A row of real first frames and a row of generated ones."""
    cols = min(cols, len(frames["real"]))
    save_montage(path, [(name, frames[name][:cols]) for name in ("real", "generated")], [""] * cols)
