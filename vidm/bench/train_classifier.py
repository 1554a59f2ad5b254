"""Trains the pinned digit classifier and writes its weights: `python -m vidm.bench.train_classifier`.

The recipe of the classifier eval/digits.py used to retrain into eval/cache (3 epochs of Adam with a
one-cycle schedule over every frame of 3,000 Moving MNIST videos made from the *train* digits), with
fixed seeds and one thread, so that the committed weights can be remade: a second run on this project's
2-core Xeon wrote the same bytes (`pytest -m slow -k remakes`). About ten minutes on one idle core.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from .digit_classifier import WEIGHTS, DigitNet, exact_set_accuracy, labelled_frames, to_input, weights_sha256

TRAIN_VIDEOS, TRAIN_FRAMES, TRAIN_SEED = 3000, 20, 100  # every frame of these train videos
EPOCHS, BATCH, LR, SEED = 3, 128, 2e-3, 0


def train() -> DigitNet:
    torch.manual_seed(SEED)
    x, y = labelled_frames("train", TRAIN_VIDEOS, TRAIN_FRAMES, TRAIN_SEED)
    net = DigitNet()
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    steps_per_epoch = len(x) // BATCH
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=EPOCHS * steps_per_epoch)
    order_rng = np.random.default_rng(SEED)
    start = time.time()
    for epoch in range(EPOCHS):
        order = order_rng.permutation(len(x))
        for i in range(steps_per_epoch):
            idx = order[i * BATCH:(i + 1) * BATCH]
            loss = nn.functional.binary_cross_entropy_with_logits(net(to_input(x[idx])), torch.from_numpy(y[idx]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch + 1}/{EPOCHS}: loss {loss.item():.4f} ({time.time() - start:.0f} s)", file=sys.stderr)
    return net.eval()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default=str(WEIGHTS), help=f"weights file (default: the pinned one, {WEIGHTS.name})")
    args = p.parse_args(argv)
    torch.set_num_threads(1)  # one thread: the same sums in the same order on every run
    net = train()
    from safetensors.torch import save_file

    # float16 halves the committed file; the classifier is defined by these stored values
    tensors = {k: v.detach().to(torch.float16).contiguous() for k, v in net.state_dict().items()}
    with atomic_path(args.out) as tmp:
        save_file(tensors, str(tmp), metadata={"trained_by": "python -m vidm.bench.train_classifier",
                                               "train_data": f"MovingMNIST('train', frames={TRAIN_FRAMES}, "
                                                             f"seed={TRAIN_SEED}) videos 0..{TRAIN_VIDEOS - 1}"})
    from .digit_classifier import load

    accuracy = exact_set_accuracy(load(args.out))
    print(f"wrote {args.out} (sha256 {weights_sha256(args.out)[:16]}): exact digit set on "
          f"{accuracy['test_frames']} real test frames: {accuracy['exact_set_accuracy']:.3f}")


if __name__ == "__main__":
    main()
