"""Writes a contact sheet (PNG) and an animated GIF of generated videos, for looking at and for the README.

    python eval/sample_sheet.py --model checkpoints/moving-mnist-64 --frames 64 --out docs/samples
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import common  # noqa: F401  (puts the source checkout on sys.path, as for every script here)
from vidm.cli import default_model_dir
from vidm.pipeline import CONTENT_SAMPLER, CONTENT_STEPS, VIDMPipeline
from vidm.video_io import write_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--num-videos", type=int, default=8)
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--steps", type=int, help="steps per frame (default: the model's own, vidm generate's)")
    parser.add_argument("--sampler", default="dpmpp_2m")
    parser.add_argument("--content-steps", type=int, default=CONTENT_STEPS, help="vidm generate's default")
    parser.add_argument("--content-sampler", default=CONTENT_SAMPLER, help="vidm generate's default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=4, help="sheet shows every n-th frame")
    parser.add_argument("--out", default="docs/samples", help="writes OUT.png and OUT.gif")
    args = parser.parse_args()

    pipe = VIDMPipeline.from_pretrained(args.model or default_model_dir())
    with torch.inference_mode():
        frames = pipe(num_videos=args.num_videos, num_frames=args.frames, num_inference_steps=args.steps,
                      sampler=args.sampler, seed=args.seed, progress=True, content_steps=args.content_steps,
                      content_sampler=args.content_sampler).frames  # (B, T, H, W, 3)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet = np.concatenate([np.concatenate(list(video[::args.every]), axis=1) for video in frames], axis=0)
    tmp = out.with_name(out.name + ".partial.png")
    Image.fromarray(sheet).save(tmp)
    tmp.replace(out.with_suffix(".png"))
    # The GIF tiles the videos side by side, one row, so all play at once.
    tiled = np.concatenate(list(frames), axis=2)  # (T, H, B*W, 3)
    write_video(tiled, out.with_suffix(".gif"), fps=8)
    print(f"wrote {out.with_suffix('.png')} and {out.with_suffix('.gif')}")


if __name__ == "__main__":
    main()
