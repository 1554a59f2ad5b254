"""Does each layer hold one whole digit? The layered predictor's grouping measured on real frames.

Held-out Moving MNIST clips are made in code, so each digit's own mask is known in every frame. Layers are
cut as the pipeline cuts them (vidm.layers): from one frame (generation from a first frame), or from the
frame `choose_reference` picks in a clip of --context real frames (extension). A digit is *whole* when at
least --whole of its ink (pixels > 0.25 of full brightness) lies in one layer that holds at most 1 - --whole
of the other digit's ink. Reported for all digits and split by whether the two digits touch (one
8-connected blob) in the frame the layers were cut from.

    python eval/grouping.py --num 1000
"""
from __future__ import annotations

import numpy as np

from common import log, parser, write_result
from vidm.data.moving_mnist import MovingMNIST, render
from vidm.layers import choose_reference, components, cut

INK = 0.25


def whole_digits(labels: np.ndarray, masks: list[np.ndarray], whole: float) -> list[bool]:
    """For each digit mask, whether one layer holds >= `whole` of it and <= 1 - whole of every other."""
    out = []
    for d, mask in enumerate(masks):
        n = mask.sum()
        if n == 0:
            out.append(True)
            continue
        share = np.bincount(labels[mask], minlength=labels.max() + 1)[1:] / n
        if share.size == 0 or share.max() < whole:
            out.append(False)
            continue
        layer = int(share.argmax()) + 1
        others = [m for e, m in enumerate(masks) if e != d and m.sum()]
        out.append(all((labels[m] == layer).mean() <= 1 - whole for m in others))
    return out


def main() -> None:
    p = parser("Grouping of ink into whole digits, on real frames", "grouping.json")
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--context", type=int, default=10)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--whole", type=float, default=0.9)
    p.add_argument("--data-seed", type=int, default=5)
    args = p.parse_args()
    data = MovingMNIST("test", frames=args.context, seed=args.data_seed)
    rows = {"one frame": [], "clip": []}
    for i in range(args.num):
        images, corners = data.sample(i)
        clip = render(images, corners).astype(np.float32) / 255
        masks = [render(images[d:d + 1], corners[:, d:d + 1]).astype(np.float32) / 255 > INK for d in range(2)]
        ref, labels = choose_reference(clip, args.layers)
        for name, t, lab in (("one frame", 0, cut(clip[0], args.layers)), ("clip", ref, labels)):
            touching = len(components(clip[t], INK, 20)) < 2
            rows[name].append((touching, whole_digits(lab, [m[t] for m in masks], args.whole)))
        if (i + 1) % 200 == 0:
            log(f"{i + 1}/{args.num}")
    result = {"data": f"MovingMNIST('test', frames={args.context}, seed={args.data_seed}) clips 0..{args.num - 1}",
              "whole": f">= {args.whole} of a digit's ink in one layer holding <= {1 - args.whole:.2f} of the other's"}
    for name, r in rows.items():
        touch = np.array([t for t, _ in r])
        ok = np.array([w for _, w in r], dtype=float)  # (N, 2)
        result[name] = {"digits_whole": ok.mean(), "apart": {"clips": int((~touch).sum()), "digits_whole": ok[~touch].mean()},
                        "touching": {"clips": int(touch.sum()),
                                     "digits_whole": ok[touch].mean() if touch.any() else None}}
        log(f"{name}: whole {ok.mean():.3f}; apart {ok[~touch].mean():.3f} ({(~touch).sum()}), "
            f"touching {ok[touch].mean() if touch.any() else float('nan'):.3f} ({touch.sum()})")
    print(write_result(args.out, result, args))


if __name__ == "__main__":
    main()
