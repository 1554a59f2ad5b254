"""Quality on held-out Moving MNIST: 10 -> 10 prediction (MSE/SSIM/PSNR) and a proxy Fréchet distance.

Prediction: the first `--context` frames of each test sequence go in as `context`, the model makes the
next `--future` frames, compared with the truth frame by frame: one sample, best of N samples (per
sequence the sample with the lowest mean MSE, as stochastic-prediction papers report), and the
copy-last-frame baseline. Sequence i, sample n uses seed `seed + n * 1_000_000 + i`, so numbers do not
depend on the batch size.

Fréchet distance: unconditional 16-frame videos vs held-out test videos in the feature space of a
*randomly initialised* I3D (vidm.i3d.random_detector) -- a proxy, NOT comparable with published FVD,
reported with its real-vs-real floor and a static (first frame repeated) baseline.

    python eval/quality.py --model runs/moving-mnist-64 --num 1000 --best-of 5 --fvd-videos 1000
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common import (CACHE, CallCounter, RESULTS, batches, digits_id, load_pipeline, log, parser, setup,
                    test_videos, timer, write_section)
from vidm.atomic import atomic_path
from vidm.bench.generate import predict
from vidm.bench.prediction import METRICS, copy_last, frame_metrics, summarise

SAMPLE_STRIDE = 1_000_000  # seed offset between the N samples of one sequence


def evaluate_prediction(pipe, videos: np.ndarray, context: int, sampler: str, steps: int, seed: int,
                        samples: int, batch: int) -> tuple[dict, np.ndarray]:
    """Metrics of the model (sample 0, best of `samples`) and copy-last on videos (N, context+future, H, W)."""
    clips, truth = videos[:, :context], videos[:, context:]
    future = truth.shape[1]
    counter = CallCounter(pipe)
    per_sample, first_pred = [], None
    with timer() as took:
        for n in range(samples):
            pred = predict(pipe, clips, future, sampler, steps, seed + n * SAMPLE_STRIDE, batch)
            per_sample.append(frame_metrics(pred, truth))
            if n == 0:
                first_pred = pred
            log(f"  sample {n + 1}/{samples}: mse {per_sample[-1]['mse'].mean():.1f}")
    counter.remove()
    stacked = {k: np.stack([m[k] for m in per_sample], axis=1) for k in METRICS}  # (N, S, T)
    best = stacked["mse"].mean(axis=2).argmin(axis=1)  # per sequence, lowest mean MSE
    pick = lambda a: a[np.arange(len(a)), best]  # noqa: E731
    result = {
        "model": summarise({k: v[:, 0] for k, v in stacked.items()}),
        f"best_of_{samples}": summarise({k: pick(v) for k, v in stacked.items()}),
        "copy_last": summarise(frame_metrics(copy_last(clips, future), truth)),
        # batched calls: each pipeline call makes this many per frame, whatever its batch size
        "network_calls_per_frame": counter.total / (samples * future * batch_count(len(clips), batch)),
        "seconds": took(),
    }
    copy = result["copy_last"]["mse"]["mean"]
    result["mse_improvement_over_copy_last"] = {
        "model": 1 - result["model"]["mse"]["mean"] / copy,
        f"best_of_{samples}": 1 - result[f"best_of_{samples}"]["mse"]["mean"] / copy,
    }
    return result, first_pred


def batch_count(n: int, batch: int) -> int:
    return -(-n // batch)


# --- Fréchet distance in the feature space of a random I3D ---



def features(detector, videos_fn, num: int, batch: int, what: str, cache_key: str | None = None) -> np.ndarray:
    """Detector features of `num` videos made by videos_fn(lo, hi) -> uint8 (B, T, H, W[, C]).

    With a cache_key the features are kept in eval/cache/, so that the real sets (about 10 minutes
    per 1,000 videos on 2 CPU cores) are computed once, not for every model or step count. Video i of a
    test set depends only on its seed and i, so a cached larger set also serves a smaller one.
    """
    path = CACHE / f"{cache_key}.npy" if cache_key else None
    if path is not None and path.is_file():
        cached = np.load(path)
        if len(cached) >= num:
            log(f"  {what}: features from {path.relative_to(RESULTS.parent.parent)}")
            return cached[:num]
    out = []
    with timer() as took:
        for lo, hi in batches(num, batch):
            v = videos_fn(lo, hi)
            if v.ndim == 4:
                v = v[..., None]
            out.append(detector.features(v))
    log(f"  {what}: {num} videos in {took():.0f} s")
    feats = np.concatenate(out)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, feats)
    return feats


def sampler_steps(entry: str, default_sampler: str) -> tuple[str, int, int]:
    """'20' -> (default_sampler, 20, 20); 'ddpm:100' -> ('ddpm', 100, 100); '5/20': 20 steps for frame 0."""
    sampler, _, steps = entry.rpartition(":")
    steps, _, content = steps.partition("/")
    return sampler or default_sampler, int(steps), int(content or steps)


def evaluate_fvd(pipe, num: int, frames: int, settings: list[tuple[str, int, int]], seed: int,
                 data_seeds: tuple[int, int], detector_seed: int, batch: int, gen_batch: int) -> dict:
    """Proxy Fréchet distances: generated (per (sampler, steps)), real-vs-real floor and static baseline."""
    from vidm.fvd import feature_stats, frechet_distance
    from vidm.i3d import random_detector

    detector = random_detector(seed=detector_seed)
    real_a = test_videos(num, frames, data_seeds[0])
    real_b = test_videos(num, frames, data_seeds[1])
    with timer() as probe:  # I3D speed on this machine, reported so that others can size their run
        detector.features(real_a[:batch, ..., None])
    sec_per_video_i3d = probe() / batch

    test_id = digits_id("test")
    key = lambda what, data_seed: f"i3d{detector_seed}-{what}-seed{data_seed}-t{frames}-{test_id}"  # noqa: E731
    stats = {
        "real_a": feature_stats(features(detector, lambda lo, hi: real_a[lo:hi], num, batch, "real A",
                                         key("real", data_seeds[0]))),
        "real_b": feature_stats(features(detector, lambda lo, hi: real_b[lo:hi], num, batch, "real B",
                                         key("real", data_seeds[1]))),
        "static": feature_stats(features(detector, lambda lo, hi: np.repeat(real_a[lo:hi, :1], frames, axis=1),
                                         num, batch, "static", key("static", data_seeds[0]))),
    }
    fd = lambda a, b: frechet_distance(*stats[a], *stats[b])  # noqa: E731
    generated = {}
    for sampler, steps, content_steps in settings:
        def make(lo, hi, sampler=sampler, steps=steps, content_steps=content_steps):
            return pipe(num_videos=hi - lo, num_frames=frames, num_inference_steps=steps, sampler=sampler,
                        seed=seed + lo, content_steps=content_steps).frames[..., :1]

        name = f"{sampler} x {steps}" + (f" (first frame {content_steps})" if content_steps != steps else "")
        with timer() as gen_took:
            fake = np.concatenate([make(lo, hi) for lo, hi in batches(num, gen_batch)])
        log(f"  generated {num} videos, {name}, in {gen_took():.0f} s")
        stats["generated"] = feature_stats(features(detector, lambda lo, hi: fake[lo:hi], num, batch,
                                                    f"generated ({name})"))
        generated[name] = {"sampler": sampler, "steps": steps, "content_steps": content_steps,
                           "generated_vs_test": fd("generated", "real_a"),
                           "generated_vs_second_test": fd("generated", "real_b"), "generation_seconds": gen_took()}
        log(f"  {name}: generated vs test {generated[name]['generated_vs_test']:.2f}")
    return {
        "label": "PROXY: Fréchet distance in the features of a randomly initialised I3D (random_detector(seed="
                 f"{detector_seed})); not comparable with published FVD, which needs Kinetics-400 I3D weights",
        "videos_per_set": num, "frames": frames,
        "real_sets": {"reference": f"MovingMNIST('test', frames={frames}, seed={data_seeds[0]}) videos 0..{num - 1}",
                      "second": f"MovingMNIST('test', frames={frames}, seed={data_seeds[1]}) videos 0..{num - 1}"},
        "real_vs_real_floor": fd("real_b", "real_a"),
        "static_vs_test": fd("static", "real_a"),
        "generated": generated,
        "i3d_seconds_per_video": sec_per_video_i3d,
    }


def save_examples(path, videos, pred, context: int, rows: int = 4) -> None:
    """A PNG: per example a row of context frames, truth and prediction (every other frame)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    future, rows = pred.shape[1], min(rows, len(pred))
    show = list(range(0, context, 2)), list(range(0, future, 1))
    fig, axes = plt.subplots(2 * rows, len(show[1]), figsize=(len(show[1]) * 0.9, 2 * rows * 0.95), squeeze=False)
    for r in range(rows):
        for c, t in enumerate(show[1]):
            for k, (img, label) in enumerate(((videos[r, context + t], "truth"), (pred[r, t], "model"))):
                ax = axes[2 * r + k, c]
                ax.imshow(img, cmap="gray", vmin=0, vmax=255)
                ax.set_xticks([]), ax.set_yticks([])
                if c == 0:
                    ax.set_ylabel(f"#{r} {label}", fontsize=7)
                if r == 0 and k == 0:
                    ax.set_title(f"t+{t + 1}", fontsize=7)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def save_curves(path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, metric in zip(axes, ("mse", "ssim", "psnr")):
        for key in [k for k in result if isinstance(result[k], dict) and metric in result[k]]:
            ys = result[key][metric]["per_frame"]
            ax.plot(range(1, len(ys) + 1), ys, marker="o", ms=3, label=key)
        ax.set_xlabel("future frame")
        ax.set_title({"mse": "MSE per frame (lower is better)", "ssim": "SSIM (higher is better)",
                      "psnr": "PSNR dB (higher is better)"}[metric], fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    p = parser("Moving MNIST 10 -> 10 prediction quality and a proxy Fréchet distance", "quality.json")
    p.add_argument("--num", type=int, default=1000, help="test sequences for 10 -> 10 (default 1000)")
    p.add_argument("--context", type=int, default=10)
    p.add_argument("--future", type=int, default=10)
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--best-of", type=int, default=5, help="samples per sequence for best-of-N (default 5)")
    p.add_argument("--batch", type=int, default=100, help="sequences per pipeline call")
    p.add_argument("--data-seed", type=int, default=1, help="MovingMNIST test seed for 10 -> 10 (default 1)")
    p.add_argument("--fvd-videos", type=int, default=1000, help="videos per set for the Fréchet distance; 0 skips")
    p.add_argument("--fvd-steps", nargs="+", default=None,
                   help="generated sets as [SAMPLER:]STEPS[/FIRST_FRAME_STEPS], e.g. 20 ddpm:100 5/20 "
                        "(default: --steps)")
    p.add_argument("--fvd-frames", type=int, default=16)
    p.add_argument("--fvd-batch", type=int, default=8, help="videos per I3D call")
    p.add_argument("--fvd-data-seeds", type=int, nargs=2, default=(2, 3), help="the two disjoint real test sets")
    p.add_argument("--detector-seed", type=int, default=0)
    p.add_argument("--skip-predict", action="store_true")
    p.add_argument("--plots", help="folder for the PNG plots (default: the folder of --out; '' for none)")
    args = p.parse_args()
    setup(args)
    pipe = load_pipeline(args.model, args.device)
    if not args.skip_predict:
        log(f"10 -> 10 on {args.num} test sequences, {args.sampler} x {args.steps} steps, best of {args.best_of}")
        videos = test_videos(args.num, args.context + args.future, args.data_seed)
        pred_result, pred = evaluate_prediction(pipe, videos, args.context, args.sampler, args.steps, args.seed,
                                                args.best_of, args.batch)
        r = {"task": f"{args.context} -> {args.future}", "sequences": args.num,
             "data": f"MovingMNIST('test', frames={args.context + args.future}, seed={args.data_seed}) "
                     f"videos 0..{args.num - 1}",
             "sampler": args.sampler, "steps": args.steps,
             "mse_definition": "sum of squared errors over the 64x64 frame, pixels in [0, 1]", **pred_result}
        if args.plots:
            Path(args.plots).mkdir(parents=True, exist_ok=True)
            save_curves(Path(args.plots) / "quality_per_frame.png", r)
            save_examples(Path(args.plots) / "quality_examples.png", videos, pred, args.context)
        # each part replaces its own section of --out and keeps the other's
        write_section(args.out, "prediction", r, args)
        log(f"  model mse {r['model']['mse']['mean']:.1f}, best-of-{args.best_of} "
            f"{r[f'best_of_{args.best_of}']['mse']['mean']:.1f}, copy-last {r['copy_last']['mse']['mean']:.1f}")
    if args.fvd_videos > 0:
        log(f"proxy Fréchet distance on {args.fvd_videos} videos per set")
        settings = [sampler_steps(e, args.sampler) for e in args.fvd_steps or [str(args.steps)]]
        fvd = evaluate_fvd(pipe, args.fvd_videos, args.fvd_frames, settings, args.seed, tuple(args.fvd_data_seeds),
                           args.detector_seed, args.fvd_batch, args.batch)
        write_section(args.out, "frechet_proxy", fvd, args)
        log(f"  floor {fvd['real_vs_real_floor']:.2f}, static {fvd['static_vs_test']:.2f}")
    print(args.out)


if __name__ == "__main__":
    main()
