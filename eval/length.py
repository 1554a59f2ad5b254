"""Do digits survive 1,000 frames? Per-frame statistics of long generated videos vs real Moving MNIST.

Generates `--videos` unconditional videos of `--frames` frames with `pipe.stream` and measures per
frame: the bright pixel mass (fraction of pixels > 128), the number of digit blobs (8-connected
components of the thresholded frame with >= 10 pixels) and whether the video still shows the digits of
its first frame (eval/digits.py's classifier). The real range comes from held-out Moving MNIST test
videos of the same length (same statistics, every frame). Writes a plot over time with the real
1st-99th percentile band shaded and a strip of example frames.

    python eval/length.py --model runs/moving-mnist-64 --videos 4 --frames 1000
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common import gray, load_pipeline, log, parser, setup, test_videos, timer, write_result
from digits import digit_sets, kept, load_classifier
from vidm.metrics import bright_fraction, count_blobs

SHOW = (0, 1, 5, 10, 31, 32, 64, 100, 250, 500, 750, 999)  # frames in the example strip


def frame_stats(videos: np.ndarray, classifier) -> dict:
    """uint8 (N, T, 64, 64) -> per video and frame: bright mass, blob count, digits of frame 0 kept."""
    return {"mass": bright_fraction(videos), "blobs": count_blobs(videos),
            "kept": kept(digit_sets(classifier, videos))}


def window_means(x: np.ndarray, window: int) -> list[float]:
    """Means over consecutive windows of the last axis (all videos pooled)."""
    T = x.shape[-1]
    return [float(x[..., lo:lo + window].mean()) for lo in range(0, T, window)]


def summarise(gen: dict, real: dict, window: int) -> dict:
    lo, hi = np.percentile(real["mass"], [1, 99])
    blob_values = np.arange(0, 5)
    dist = lambda b: {str(v) if v < 4 else "4+": float((b == v).mean() if v < 4 else (b >= 4).mean())  # noqa
                      for v in blob_values}
    inside = (gen["mass"] >= lo) & (gen["mass"] <= hi)
    T = gen["mass"].shape[1]
    tail = slice(max(0, T - 100), T)
    return {
        "real": {"mass_mean": float(real["mass"].mean()), "mass_p1": float(lo), "mass_p99": float(hi),
                 "mass_min": float(real["mass"].min()), "mass_max": float(real["mass"].max()),
                 "blobs_mean": float(real["blobs"].mean()), "blobs_distribution": dist(real["blobs"]),
                 "window_mass_means": window_means(real["mass"], window),
                 "window_blob_means": window_means(real["blobs"].astype(float), window),
                 "digits_kept": float(real["kept"].mean()),
                 "window_digits_kept": window_means(real["kept"].astype(float), window)},
        "generated": {"mass_mean": float(gen["mass"].mean()),
                      "fraction_of_frames_in_real_p1_p99_mass": float(inside.mean()),
                      "fraction_in_range_first_100": float(inside[:, :100].mean()),
                      "fraction_in_range_last_100": float(inside[:, tail].mean()),
                      "mass_mean_first_100": float(gen["mass"][:, :100].mean()),
                      "mass_mean_last_100": float(gen["mass"][:, tail].mean()),
                      "blobs_mean": float(gen["blobs"].mean()),
                      "blobs_mean_first_100": float(gen["blobs"][:, :100].mean()),
                      "blobs_mean_last_100": float(gen["blobs"][:, tail].mean()),
                      "blobs_distribution": dist(gen["blobs"]),
                      "blobs_distribution_last_100": dist(gen["blobs"][:, tail]),
                      "window_mass_means": window_means(gen["mass"], window),
                      "window_blob_means": window_means(gen["blobs"].astype(float), window),
                      "digits_kept": float(gen["kept"].mean()),
                      "digits_kept_last_100": float(gen["kept"][:, tail].mean()),
                      "window_digits_kept": window_means(gen["kept"].astype(float), window)},
        "window": window,
    }


def plot(path: Path, gen: dict, real: dict, smooth: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kernel = np.ones(smooth) / smooth
    fig, axes = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True)
    for ax, key, label in ((axes[0], "mass", "bright pixel fraction (> 128)"),
                           (axes[1], "blobs", "digit blobs (components >= 10 px)"),
                           (axes[2], "kept", "digits of frame 0 still shown")):
        r = real[key].astype(float)
        lo, hi = np.percentile(r, [1, 99])
        T = gen[key].shape[1]
        if key != "kept":  # a yes/no per frame has no useful percentile band
            ax.axhspan(lo, hi, color="tab:green", alpha=0.15, label="real test videos, 1st-99th percentile")
        ax.axhline(r.mean(), color="tab:green", lw=1, ls="--", label="real mean")
        for i, series in enumerate(gen[key].astype(float)):
            sm = np.convolve(series, kernel, mode="valid")
            ax.plot(np.arange(len(sm)) + smooth // 2, sm, lw=1, label=f"generated #{i}")
        ax.set_ylabel(label, fontsize=8)
        ax.set_xlim(0, T)
        ax.grid(alpha=0.3)
    axes[2].set_xlabel(f"frame (generated curves: running mean over {smooth} frames)")
    axes[0].legend(fontsize=7, ncol=3, loc="upper right")
    axes[0].set_title("Long-video stability: do digits survive? (2 digits per real video)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def strip(path: Path, frames: np.ndarray, show: list[int]) -> None:
    """Rows: videos; columns: the frames in `show`."""
    from PIL import Image

    rows = []
    for video in frames:
        tiles = [np.pad(video[t], 1, constant_values=128) for t in show]
        rows.append(np.concatenate(tiles, axis=1))
    Image.fromarray(np.concatenate(rows, axis=0)).save(path)


def main() -> None:
    p = parser("1,000-frame videos: do digits survive?", "length.json")
    p.add_argument("--videos", type=int, default=4)
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--real-videos", type=int, default=20, help="real test videos for the reference range")
    p.add_argument("--data-seed", type=int, default=4)
    p.add_argument("--window", type=int, default=100, help="window for the per-window means")
    p.add_argument("--smooth", type=int, default=10, help="running mean in the plot")
    p.add_argument("--plots", help="folder for the PNG plots (default: the folder of --out; '' for none)")
    args = p.parse_args()
    setup(args)
    pipe = load_pipeline(args.model, args.device)
    classifier = load_classifier()
    real = frame_stats(test_videos(args.real_videos, args.frames, args.data_seed), classifier)
    frames = np.empty((args.videos, args.frames, pipe.resolution, pipe.resolution), dtype=np.uint8)
    log(f"generating {args.videos} x {args.frames} frames")
    with timer() as took:
        for t, batch in enumerate(pipe.stream(num_videos=args.videos, num_frames=args.frames,
                                              num_inference_steps=args.steps, sampler=args.sampler, seed=args.seed)):
            frames[:, t] = gray(batch)
            if (t + 1) % 100 == 0:
                log(f"  frame {t + 1}")
    gen = frame_stats(frames, classifier)
    result = {"videos": args.videos, "frames": args.frames, "sampler": args.sampler, "steps": args.steps,
              "generation_seconds": took(),
              "real_reference": f"MovingMNIST('test', frames={args.frames}, seed={args.data_seed}) "
                                f"videos 0..{args.real_videos - 1}, every frame",
              "max_frames_trained": pipe.motion.config.max_frames,
              **summarise(gen, real, args.window),
              "per_frame": {"mass": gen["mass"].round(5), "blobs": gen["blobs"], "digits_kept": gen["kept"]}}
    if args.plots:
        Path(args.plots).mkdir(parents=True, exist_ok=True)
        plot(Path(args.plots) / "length_stats.png", gen, real, args.smooth)
        strip(Path(args.plots) / "length_frames.png", frames, [t for t in SHOW if t < args.frames])
    g = result["generated"]
    log(f"  frames in real mass range: {g['fraction_of_frames_in_real_p1_p99_mass']:.2%} "
        f"(last 100: {g['fraction_in_range_last_100']:.2%}); blobs mean {g['blobs_mean']:.2f} "
        f"(real {result['real']['blobs_mean']:.2f}); digits of frame 0 kept {g['digits_kept']:.2%} "
        f"(real {result['real']['digits_kept']:.2%})")
    print(write_result(args.out, result, args))


if __name__ == "__main__":
    main()
