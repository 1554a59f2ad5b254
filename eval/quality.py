"""10 -> 10 prediction on held-out Moving MNIST: MSE, SSIM and PSNR per future frame, one sample and the best of N.

The first `--context` frames of each test sequence go in as `context`, the model makes the next `--future`
frames, compared with the truth frame by frame: one sample, the best of N samples (per sequence the sample
with the lowest mean MSE, as stochastic-prediction papers report), and the copy-last-frame baseline.
Sequence i, sample n uses seed `seed + n * 1_000_000 + i`, so numbers do not depend on the batch size;
`--steps 0` measures a layered model's composite alone. `vidm bench` reports the same measure (and the proxy
Fréchet distance this script also made until commit c08c85d); this one serves eval/ablation.py.

    python eval/quality.py --model DIR --num 200 --best-of 1 --steps 5
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from common import load_pipeline, log, parser, setup, test_videos, timer, write_result
from vidm.bench.generate import predict
from vidm.bench.prediction import METRICS, copy_last, frame_metrics, plot_curves, plot_examples, summarise

SAMPLE_STRIDE = 1_000_000  # seed offset between the N samples of one sequence


def evaluate_prediction(pipe, videos: np.ndarray, context: int, sampler: str, steps: int, seed: int,
                        samples: int, batch: int) -> tuple[dict, np.ndarray]:
    """Metrics of the model (sample 0, best of `samples`) and copy-last on videos (N, context+future, H, W)."""
    clips, truth = videos[:, :context], videos[:, context:]
    future = truth.shape[1]
    per_sample, first_pred = [], None
    with timer() as took:
        for n in range(samples):
            pred = predict(pipe, clips, future, sampler, steps, seed + n * SAMPLE_STRIDE, batch)
            per_sample.append(frame_metrics(pred, truth))
            first_pred = pred if n == 0 else first_pred
            log(f"  sample {n + 1}/{samples}: mse {per_sample[-1]['mse'].mean():.1f}")
    stacked = {k: np.stack([m[k] for m in per_sample], axis=1) for k in METRICS}  # (N, S, T)
    best = stacked["mse"].mean(axis=2).argmin(axis=1)  # per sequence, lowest mean MSE
    pick = lambda a: a[np.arange(len(a)), best]  # noqa: E731
    result = {"model": summarise({k: v[:, 0] for k, v in stacked.items()}),
              f"best_of_{samples}": summarise({k: pick(v) for k, v in stacked.items()}),
              "copy_last": summarise(frame_metrics(copy_last(clips, future), truth)), "seconds": took()}
    copy = result["copy_last"]["mse"]["mean"]
    result["mse_improvement_over_copy_last"] = {
        key: 1 - result[key]["mse"]["mean"] / copy for key in ("model", f"best_of_{samples}")}
    return result, first_pred


def main() -> None:
    p = parser("Moving MNIST 10 -> 10 prediction quality", "quality.json")
    p.add_argument("--num", type=int, default=1000, help="test sequences for 10 -> 10 (default 1000)")
    p.add_argument("--context", type=int, default=10)
    p.add_argument("--future", type=int, default=10)
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--steps", type=int, default=20, help="steps per frame; 0: a layered model's composite alone")
    p.add_argument("--best-of", type=int, default=5, help="samples per sequence for best-of-N (default 5)")
    p.add_argument("--batch", type=int, default=100, help="sequences per pipeline call")
    p.add_argument("--data-seed", type=int, default=1, help="MovingMNIST test seed (default 1)")
    p.add_argument("--fvd-videos", type=int, choices=[0], default=0,
                   help="0: no Fréchet distance (`vidm bench` measures it; the option stays for old command lines)")
    p.add_argument("--plots", help="folder for the PNG plots (default: the folder of --out; '' for none)")
    args = p.parse_args()
    setup(args)
    pipe = load_pipeline(args.model, args.device)
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
        plot_curves(Path(args.plots) / "quality_per_frame.png", {"copy_last": r["copy_last"], "sample": r["model"]})
        plot_examples(Path(args.plots) / "quality_examples.png", videos, {"sample": pred})
    write_result(args.out, {"prediction": r}, args)
    log(f"  model mse {r['model']['mse']['mean']:.1f}, best-of-{args.best_of} "
        f"{r[f'best_of_{args.best_of}']['mse']['mean']:.1f}, copy-last {r['copy_last']['mse']['mean']:.1f}")
    print(args.out)


if __name__ == "__main__":
    main()
