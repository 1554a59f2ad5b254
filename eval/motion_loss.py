"""The motion model's training loss on held-out test videos: a cheap, sampler-free way to compare models.

The loss of vidm.train (v- or eps-prediction MSE with the training-time conditioning noise), on random
frames, diffusion times and noise drawn from a fixed seed, so that two models see exactly the same draws.
Measured on train videos too: a gap between the two says the model overfits its training set. A lower
loss is not by itself a better video model (see eval/digits.py for what the samples do).

    python eval/motion_loss.py --model runs/moving-mnist-64 --videos 256
"""
from __future__ import annotations

import numpy as np
import torch

from common import load_pipeline, log, parser, setup, write_result
from vidm.data.moving_mnist import MovingMNIST
from vidm.train import select_frames


def split_loss(pipe, split: str, data_seed: int, videos: int, frames: int, rounds: int, seed: int) -> float:
    motion = pipe.motion.float().eval()
    cfg = motion.config
    clips = MovingMNIST(split, frames=frames, seed=data_seed).videos(videos)
    z = pipe.encode_frames(clips[..., None]).float()  # (N, T, c, h, w)
    g = torch.Generator().manual_seed(seed)
    index = torch.arange(videos)
    losses = []
    for _ in range(rounds):
        k = torch.randint(1, frames, (videos,), generator=g)
        t = torch.randint(0, motion.diffusion.num_train_steps, (videos,), generator=g)
        noise = torch.randn(videos, *z.shape[2:], generator=g)
        level = torch.rand(videos, generator=g) * cfg.aug_max_level
        aug_noise = torch.randn(videos, len(motion.context_offsets), *z.shape[2:], generator=g)
        first, target, context = select_frames(z, index, k, motion.context_offsets)
        dev = pipe.device
        with torch.inference_mode():
            loss = motion.loss(target.to(dev), first.to(dev), context.to(dev), k.to(dev), t.to(dev),
                               noise.to(dev), level.to(dev), aug_noise.to(dev))
        losses.append(float(loss))
    return float(np.mean(losses))


def main() -> None:
    p = parser("Motion-model loss on held-out test videos (and on train videos)", "motion_loss.json")
    p.add_argument("--videos", type=int, default=256, help="videos per split (default 256)")
    p.add_argument("--frames", type=int, default=32, help="frames per video (default 32, as in training)")
    p.add_argument("--rounds", type=int, default=8, help="draws per video (default 8)")
    args = p.parse_args()
    setup(args)
    pipe = load_pipeline(args.model, args.device)
    result = {"videos": args.videos, "frames": args.frames, "rounds": args.rounds,
              # the training recipe's data (train digits, seed 0) and the held-out test digits (seed 5)
              "train": split_loss(pipe, "train", 0, args.videos, args.frames, args.rounds, args.seed),
              "test": split_loss(pipe, "test", 5, args.videos, args.frames, args.rounds, args.seed)}
    log(f"motion loss: train videos {result['train']:.4f}, test videos {result['test']:.4f}")
    print(write_result(args.out, result, args))


if __name__ == "__main__":
    main()
