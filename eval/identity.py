"""Digits kept over 64 frames from 10 real ones: each digit's own image found in every frame (vidm.identity).

Held-out clips (test digits, a fixed seed) give the model their first --context real frames; it makes the
rest up to --frames. A digit is kept in a frame when its own 28x28 image matches there (ZNCC >= the
threshold of vidm.identity). Reported: the share of digits kept at frames 10 / 20 / 40 / 63 and per
frame, with the real clips' share beside it, and the 10 -> 10 MSE of the same predictions. --baseline
measures copy-last or copy-plus-physics (vidm.baselines) on the same clips instead of a model.

    python eval/identity.py --num 128 --steps 5                    # the shipped model
    python eval/identity.py --num 128 --baseline physics
    python eval/identity.py --calibrate                            # where wrong digits score
"""
from __future__ import annotations

import numpy as np

from common import load_pipeline, log, parser, setup, test_videos, timer, write_result
from quality import predict
from vidm import baselines
from vidm.data.moving_mnist import MovingMNIST
from vidm.identity import THRESHOLD, kept, zncc_scores
from vidm.metrics import mse_per_frame

FRAMES_REPORTED = (10, 20, 40, 63)


def clip_digits(num: int, frames: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Held-out clips uint8 (num, frames, 64, 64) and each clip's digit images (num, 2, 28, 28)."""
    data = MovingMNIST("test", frames=frames, seed=seed)
    return data.videos(num), np.stack([data.sample(i)[0] for i in range(num)])


def calibrate(args) -> dict:
    """Scores of the clips' own digits and of two digits of other classes, on real frames."""
    data = MovingMNIST("test", frames=args.frames, seed=args.data_seed)
    videos, own = clip_digits(args.num, args.frames, args.data_seed)
    rng = np.random.default_rng(0)
    wrong = np.stack([data.images[rng.choice(np.flatnonzero(~np.isin(data.labels, data.classes(i))), 2)]
                      for i in range(args.num)])
    s_own, s_wrong = zncc_scores(videos, own), zncc_scores(videos, wrong)
    return {"wrong_quantiles": {q: float(np.quantile(s_wrong, q)) for q in (0.9, 0.99, 0.999)},
            "at_threshold": {"threshold": THRESHOLD, "own_kept": float((s_own >= THRESHOLD).mean()),
                             "wrong_kept": float((s_wrong >= THRESHOLD).mean())}}


def main() -> None:
    p = parser("Digits kept over 64 frames from 10 real ones (template matching)", "identity.json")
    p.add_argument("--num", type=int, default=128, help="held-out clips (default 128)")
    p.add_argument("--context", type=int, default=10)
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--steps", type=int, default=None, help="steps per frame (default: the pipeline's 20)")
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--data-seed", type=int, default=5)
    p.add_argument("--baseline", choices=("copy-last", "physics"), help="measure a baseline instead of a model")
    p.add_argument("--calibrate", action="store_true", help="where wrong digits score on real frames")
    args = p.parse_args()
    setup(args)
    if args.calibrate:
        print(write_result(args.out, calibrate(args), args))
        return
    videos, digits = clip_digits(args.num, args.frames, args.data_seed)
    context, future = videos[:, :args.context], args.frames - args.context
    with timer() as took:
        if args.baseline == "copy-last":
            pred = baselines.copy_last(context, future)
        elif args.baseline == "physics":
            pred = baselines.copy_physics(context, future)
        else:
            pipe = load_pipeline(args.model, args.device)
            pred = predict(pipe, context, future, args.sampler, 20 if args.steps is None else args.steps,
                           args.seed, args.batch)
    made = np.concatenate([context, pred], axis=1)
    model_kept, real_kept = kept(made, digits).mean(axis=(0, 2)), kept(videos, digits).mean(axis=(0, 2))
    mse = mse_per_frame(pred[:, :10], videos[:, args.context:args.context + 10]).mean()
    result = {"what": args.baseline or "model", "steps": args.steps, "sampler": args.sampler,
              "data": f"MovingMNIST('test', frames={args.frames}, seed={args.data_seed}) clips 0..{args.num - 1}, "
                      f"{args.context} real frames",
              "threshold": THRESHOLD,
              "kept": {f: float(model_kept[f]) for f in FRAMES_REPORTED if f < args.frames},
              "real_kept": {f: float(real_kept[f]) for f in FRAMES_REPORTED if f < args.frames},
              "kept_per_frame": model_kept, "real_kept_per_frame": real_kept,
              "mse_10_10": float(mse), "seconds": took()}
    log(f"kept at {FRAMES_REPORTED}: {[round(result['kept'].get(f, np.nan), 3) for f in FRAMES_REPORTED]} "
        f"(real {[round(result['real_kept'].get(f, np.nan), 3) for f in FRAMES_REPORTED]}); 10 -> 10 MSE {mse:.1f}")
    print(write_result(args.out, result, args))


if __name__ == "__main__":
    main()
