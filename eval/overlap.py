"""Do digits lose their identity when they cross? Prediction from real context, split by digit overlap.

Each held-out test sequence gives the model its first --context real frames; the model makes --future
frames. The digit classifier of eval/digits.py names the digits of every frame, and a sequence keeps its
digits at the last frame when the set there is the one of frame 0 (digits.kept). Two digits *overlap* in a
frame when more than --overlap-pixels pixels hold ink of both (each digit rendered alone). Two groups, both
with the digits apart in frame 0 and in the last frame (where the classifier must name them): "cross",
the digits overlap in some predicted frame; "apart", they overlap in no frame at all. Other sequences
are only counted. The real future frames, scored the same way, are the reference.

    python eval/overlap.py --num 256 --steps 20
"""
from __future__ import annotations

import numpy as np

from common import load_pipeline, log, parser, setup, timer, write_result
from digits import digit_sets, kept, load_classifier
from quality import predict
from vidm.data.moving_mnist import MovingMNIST, render

INK = 128  # a digit's pixel counts as ink above this


def overlap_pixels(data: MovingMNIST, index: int) -> np.ndarray:
    """Per frame (T,), the pixels where both digits of sequence `index` have ink."""
    images, corners = data.sample(index)
    alone = [render(images[d:d + 1], corners[:, d:d + 1]) > INK for d in range(len(images))]
    return (alone[0] & alone[1]).sum(axis=(1, 2))


def main() -> None:
    p = parser("Digit identity through overlaps, 10 -> future prediction", "overlap.json")
    p.add_argument("--num", type=int, default=256, help="test sequences (default 256)")
    p.add_argument("--context", type=int, default=10)
    p.add_argument("--future", type=int, default=20)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--data-seed", type=int, default=5)
    p.add_argument("--overlap-pixels", type=int, default=20)
    args = p.parse_args()
    setup(args)
    data = MovingMNIST("test", frames=args.context + args.future, seed=args.data_seed)
    videos = data.videos(args.num)
    over = np.stack([overlap_pixels(data, i) for i in range(args.num)]) > args.overlap_pixels  # (N, T)
    ends_apart = ~over[:, 0] & ~over[:, -1]
    cross = ends_apart & over[:, args.context:].any(axis=1)
    apart = ~over.any(axis=1)
    pipe = load_pipeline(args.model, args.device)
    with timer() as took:
        pred = predict(pipe, videos[:, :args.context], args.future, args.sampler, args.steps, args.seed, args.batch)
    net = load_classifier()
    model_kept_all = kept(digit_sets(net, np.concatenate([videos[:, :args.context], pred], axis=1)))
    real_kept_all = kept(digit_sets(net, videos))
    model_kept, real_kept = model_kept_all[:, -1], real_kept_all[:, -1]
    groups = {}
    for name, mask in (("cross", cross), ("apart", apart)):
        groups[name] = {"sequences": int(mask.sum()),
                        "model_kept_at_last_frame": float(model_kept[mask].mean()) if mask.any() else None,
                        "real_kept_at_last_frame": float(real_kept[mask].mean()) if mask.any() else None,
                        # per predicted frame t+1 .. t+future (in "cross", frames with overlapping digits
                        # are hard for the classifier on real frames too)
                        "model_kept_per_future_frame": model_kept_all[mask, args.context:].mean(0).round(4),
                        "real_kept_per_future_frame": real_kept_all[mask, args.context:].mean(0).round(4)}
        log(f"  {name}: {groups[name]['sequences']} sequences, kept at the last frame: model "
            f"{groups[name]['model_kept_at_last_frame']}, real {groups[name]['real_kept_at_last_frame']}")
    result = {"task": f"{args.context} -> {args.future}", "sampler": args.sampler, "steps": args.steps,
              "data": f"MovingMNIST('test', frames={args.context + args.future}, seed={args.data_seed}) "
                      f"videos 0..{args.num - 1}",
              "overlap": f"more than {args.overlap_pixels} pixels where both digits have ink (> {INK}) "
                         f"in some predicted frame",
              "groups": groups, "other_sequences": int(args.num - cross.sum() - apart.sum()),
              "generation_seconds": took()}
    print(write_result(args.out, result, args))


if __name__ == "__main__":
    main()
