"""How well can first-frame anchoring (vidm/anchor.py) redraw real frames? Its ceiling on Moving MNIST.

Real held-out sequences are tracked frame by frame with the anchor's optical flow (DIS, chained back to
frame 0), and each frame is redrawn as frame 0 warped by its flow. Reported per frame: the MSE of the
redrawn frame against the real one (sum over the 64x64 frame, pixels in [0, 1], as eval/quality.py), that of
copying frame 0 unchanged, and the share of sequences whose redrawn frame still shows the digits of frame 0
(the classifier of eval/digits.py), beside the real frames' share. A generated video can only be anchored
as well as the real one is tracked.

    python eval/flow_tracking.py --num 256 --frames 20
"""
from __future__ import annotations

import numpy as np

from common import log, parser, setup, timer, write_result
from digits import digit_sets, kept, load_classifier
from vidm.anchor import FlowAnchor
from vidm.data.moving_mnist import MovingMNIST


def mse_per_frame(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Videos uint8 (N, T, H, W) -> (T,) mean over videos of the per-frame sum of squared errors in [0, 1]."""
    return ((a.astype(np.float64) / 255 - b.astype(np.float64) / 255) ** 2).sum(axis=(2, 3)).mean(0)


def main() -> None:
    p = parser("First-frame anchoring on real frames: the flow tracking ceiling", "flow_tracking.json")
    p.add_argument("--num", type=int, default=256, help="test sequences (default 256)")
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--data-seed", type=int, default=5)
    args = p.parse_args()
    setup(args)
    videos = MovingMNIST("test", frames=args.frames, seed=args.data_seed).videos(args.num)  # (N, T, 64, 64)
    redrawn = np.empty_like(videos)
    redrawn[:, 0] = videos[:, 0]
    with timer() as took:
        anchor = FlowAnchor(videos[:, 0, ..., None])
        for t in range(1, args.frames):
            anchor.track(videos[:, t, ..., None])
            redrawn[:, t] = anchor.warp()[..., 0]
    net = load_classifier()
    real_kept, redrawn_kept = kept(digit_sets(net, videos)), kept(digit_sets(net, redrawn))
    at = [t for t in (1, 2, 5, 10, 19, 39, 63) if t < args.frames]
    result = {"data": f"MovingMNIST('test', frames={args.frames}, seed={args.data_seed}) videos 0..{args.num - 1}",
              "mse_definition": "sum of squared errors over the 64x64 frame, pixels in [0, 1]",
              "redrawn_mse_per_frame": mse_per_frame(redrawn, videos).round(2),
              "copy_first_mse_per_frame": mse_per_frame(np.repeat(videos[:, :1], args.frames, 1), videos).round(2),
              "redrawn_kept_per_frame": redrawn_kept.mean(0).round(4),
              "real_kept_per_frame": real_kept.mean(0).round(4),
              "tracking_seconds": took()}
    for t in at:
        log(f"  frame {t}: redrawn MSE {result['redrawn_mse_per_frame'][t]:.1f} (copy frame 0 "
            f"{result['copy_first_mse_per_frame'][t]:.1f}), kept {result['redrawn_kept_per_frame'][t]:.2f} "
            f"(real {result['real_kept_per_frame'][t]:.2f})")
    print(write_result(args.out, result, args))


if __name__ == "__main__":
    main()
