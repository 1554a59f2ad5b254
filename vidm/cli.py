"""The `vidm` command line: generate, extend, data, train, export, demo, fvd, bench."""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import __version__
from .atomic import atomic_path
from .errors import VidmError

DEFAULT_MODEL_NAME = "moving-mnist-64"


def default_model_dir() -> Path:
    """$VIDM_MODEL, else the shipped checkpoint beside the package (source or editable install)."""
    if os.environ.get("VIDM_MODEL"):
        return Path(os.environ["VIDM_MODEL"])
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "checkpoints" / DEFAULT_MODEL_NAME,
                      Path(sys.prefix) / "share" / "vidm" / "checkpoints" / DEFAULT_MODEL_NAME):
        if candidate.is_dir():
            return candidate
    raise VidmError("no shipped checkpoint found; pass --model DIR or set VIDM_MODEL")


def int_at_least(text: str, minimum: int, kind: str) -> int:
    """An argparse integer of at least `minimum`; `kind` names it in the error ("a positive integer")."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
    return value


def positive_int(text: str) -> int:
    return int_at_least(text, 1, "a positive integer")


def non_negative_int(text: str) -> int:
    return int_at_least(text, 0, "a whole number")


def checked_float(text: str, ok, requirement: str) -> float:
    """An argparse number for which ok(value) holds (NaN fails every comparison); else "must be <requirement>"."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"must be {requirement}, got {value}")
    return value


def positive_float(text: str) -> float:
    return checked_float(text, lambda v: v > 0, "positive")


def non_negative_float(text: str) -> float:
    return checked_float(text, lambda v: v >= 0, "at least 0")


def load_pipeline(args):
    import torch

    from .pipeline import VIDMPipeline

    from .threads import command_threads

    torch.set_num_threads(command_threads())  # the idle cores: see vidm/threads.py
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return VIDMPipeline.from_pretrained(args.model or default_model_dir(), device=device)


def write_streams(frames_iter, paths, fps: float, fmt: str | None, prefix=None) -> None:
    """Streams (B, H, W, 3) frames into one writer per video; on any error no partial file is kept."""
    from .video_io import VideoWriter

    writers = [VideoWriter(p, fps, fmt) for p in paths]
    try:
        if prefix is not None:
            for b, writer in enumerate(writers):
                for frame in prefix[b]:
                    writer.write(frame)
        for frames in frames_iter:
            for writer, frame in zip(writers, frames):
                writer.write(frame)
    except BaseException:
        for writer in writers:
            writer.abort()
        raise
    for writer in writers:
        writer.close()


def video_paths(out: Path, count: int, fmt: str, stem: str = "video") -> list[Path]:
    suffix = "" if fmt == "png" else f".{fmt}"
    return [out / f"{stem}_{i:03d}{suffix}" for i in range(count)]


def cmd_generate(args) -> None:
    import torch

    from .sampling import per_frame
    from .video_io import read_image

    first = read_image(args.first_frame) if args.first_frame else None
    pipe = load_pipeline(args)
    out = Path(args.out)
    paths = video_paths(out, args.num_videos, args.format)
    start = time.time()
    stream = pipe.stream(num_videos=args.num_videos, num_frames=args.frames, first_frame=first,
                         num_inference_steps=args.steps, sampler=args.sampler, seed=args.seed,
                         progress=not args.quiet, content_steps=args.content_steps, temperature=args.temperature,
                         content_sampler=args.content_sampler)
    write_streams(stream, paths, args.fps, args.format)
    took = time.time() - start
    first_steps = ("first frame given" if first is not None
                   else f"first frame {args.content_sampler} x {args.content_steps} steps")
    print(f"wrote {len(paths)} videos of {args.frames} frames to {out}/ in {took:.1f} s "
          f"({args.num_videos * args.frames / took:.1f} frames/s, "
          f"{per_frame(args.sampler, pipe.steps_per_frame(args.steps))} per frame, "
          f"{first_steps}, seed {args.seed}, {torch.get_num_threads()} threads)")


def cmd_extend(args) -> None:
    from .video_io import fit_frames, output_format, read_video

    clip = read_video(args.video)
    pipe = load_pipeline(args)
    fmt = output_format(args.out, args.format)
    fitted = fit_frames(clip, pipe.resolution, 3)
    stream = pipe.stream(num_videos=1, num_frames=args.frames, context=clip[None],
                         num_inference_steps=args.steps, sampler=args.sampler, seed=args.seed,
                         progress=not args.quiet, temperature=args.temperature)
    write_streams(stream, [Path(args.out)], args.fps, fmt, prefix=fitted[None])
    print(f"wrote {args.out}: {len(clip)} input frames + {args.frames} new frames")


def cmd_data_moving_mnist(args) -> None:
    import numpy as np

    from .data.moving_mnist import MovingMNIST
    from .video_io import write_video

    data = MovingMNIST(args.split, frames=args.frames, seed=args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(args.num):
        video = data.video(i)
        name = out / f"{args.split}_{i:05d}"
        if args.format == "npy":
            with atomic_path(name.with_suffix(".npy")) as tmp, open(tmp, "wb") as f:
                np.save(f, video)
        else:
            write_video(video[..., None], name if args.format == "png" else name.with_suffix("." + args.format),
                        fps=args.fps, fmt=args.format)
    print(f"wrote {args.num} {args.split} clips of {args.frames} frames to {out}/ ({args.format})")


def cmd_train(args) -> None:
    from .train import load_train_config, train

    cfg = load_train_config(args.config)
    if cfg.stage != args.stage:
        raise VidmError(f"{args.config} is a '{cfg.stage}' config, not '{args.stage}'")
    folder = train(cfg, resume=args.resume, continue_from=args.continue_from or "")
    print(f"trained {args.stage}: {folder}")


def cmd_export(args) -> None:
    import torch

    from .pipeline import VIDMPipeline

    pipe = VIDMPipeline.from_pretrained(args.run)
    pipe.save_pretrained(args.out, dtype=torch.float16 if args.half else None)
    size = sum(f.stat().st_size for f in Path(args.out).rglob("*") if f.is_file())
    print(f"exported {args.run} to {args.out} ({size / 2**20:.1f} MiB{', float16 weights' if args.half else ''})")


def cmd_demo(args) -> None:
    from .demo.server import serve

    serve(args, load_pipeline, Path(args.model or default_model_dir()).name)


def cmd_bench(args) -> None:
    from .bench.report import locations
    from .bench.suite import run
    from .threads import command_threads

    out = run(args.out, model=args.model, dataset=args.dataset, quick=args.quick, detector=args.detector,
              steps=args.steps, sampler=args.sampler, seed=args.seed, device=args.device,
              threads=args.threads or command_threads())
    folder, markdown = locations(out)
    print(f"wrote {markdown} and {folder / 'results.json'}")


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_sampling_args(p) -> None:
    from .sampling import SAMPLERS

    p.add_argument("--model", help="model folder (default: the shipped moving-mnist-64 checkpoint)")
    p.add_argument("--steps", type=non_negative_int,
                   help="denoising steps per frame (default: the model's own, sample_steps in its config); "
                        "0: a layered model's composite alone")
    p.add_argument("--sampler", choices=sorted(SAMPLERS), default="dpmpp_2m", help="default dpmpp_2m")
    p.add_argument("--temperature", type=non_negative_float,
                   help="scale of the noise each frame after the first starts from (default: the model's); "
                        "lower keeps digits their own shape longer, with less variety")
    p.add_argument("--seed", type=int, default=0, help="video i uses seed + i (default 0)")
    p.add_argument("--fps", type=positive_float, default=8.0, help="frames per second of the written video (default 8)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    from .pipeline import CONTENT_SAMPLER, CONTENT_STEPS
    from .sampling import SAMPLERS
    from .video_io import FORMATS

    parser = Parser(prog="vidm", description="Video implicit diffusion models: generate, extend, train.")
    parser.add_argument("--version", action="version", version=f"vidm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)

    p = sub.add_parser("generate", help="generate videos from scratch or from a first frame")
    p.add_argument("--num-videos", type=positive_int, default=4, help="default 4")
    p.add_argument("--frames", type=positive_int, default=64, help="frames per video, the first included (default 64)")
    p.add_argument("--first-frame", help="an image to start from (any size or mode; resized + center-cropped)")
    p.add_argument("--out", default="samples", help="output folder (default ./samples)")
    p.add_argument("--format", choices=FORMATS, default="mp4", help="default mp4; png writes a folder of frames per video")
    # The first frame comes from noise alone and gets more steps than the frames after it (CONTENT_STEPS).
    p.add_argument("--content-steps", type=positive_int, default=CONTENT_STEPS,
                   help=f"denoising steps for the generated first frame (default {CONTENT_STEPS})")
    p.add_argument("--content-sampler", choices=sorted(SAMPLERS), default=CONTENT_SAMPLER,
                   help=f"sampler of the generated first frame (default {CONTENT_SAMPLER}: more of its "
                        "first frames show readable digits than with a deterministic one)")
    add_sampling_args(p)
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("extend", help="continue a clip frame by frame")
    p.add_argument("video", help="mp4/avi/webm/gif, a folder of PNG frames, or a .npy (T,H,W[,3]) uint8 array")
    p.add_argument("--frames", type=positive_int, default=32, help="new frames to add (default 32)")
    p.add_argument("--out", required=True, help="output file (.mp4, .webm, .gif) or folder (PNG frames)")
    p.add_argument("--format", choices=FORMATS, help="default: from the --out suffix")
    add_sampling_args(p)
    p.set_defaults(func=cmd_extend)

    p = sub.add_parser("data", help="make or prepare datasets")
    data_sub = p.add_subparsers(dest="data_command", required=True, parser_class=Parser)
    d = data_sub.add_parser("moving-mnist", help="write Moving MNIST clips made from real MNIST digits")
    d.add_argument("--out", required=True)
    d.add_argument("--split", choices=["train", "test"], default="test")
    d.add_argument("--num", type=positive_int, default=100)
    d.add_argument("--frames", type=positive_int, default=20)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--format", choices=("npy",) + FORMATS, default="npy")
    d.add_argument("--fps", type=positive_float, default=8.0)
    d.set_defaults(func=cmd_data_moving_mnist)

    from .data import prepare

    prepare.register(data_sub)

    p = sub.add_parser("train", help="train one stage (vae, content or motion) from a JSON config")
    p.add_argument("stage", choices=["vae", "content", "motion"])
    p.add_argument("--config", required=True, help="training config (JSON), e.g. configs/moving-mnist-64/vae.json")
    p.add_argument("--resume", action="store_true", help="continue from the stage's last checkpoint")
    p.add_argument("--continue-from", metavar="DIR",
                   help="go on from an exported model of this run (e.g. the shipped one) at its recorded step, "
                        "with a fresh optimizer: for when the run folder is gone")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="copy a training run's EMA models into a model folder (no training state)")
    p.add_argument("run", help="the training run's folder (the 'out' of its configs)")
    p.add_argument("out", help="model folder to write")
    p.add_argument("--half", action="store_true", help="store weights as float16 (half the size)")
    p.set_defaults(func=cmd_export)

    from .demo.inputs import Limits

    limits = Limits()
    p = sub.add_parser("demo", help="a web page for generating and extending videos, served on this machine")
    p.add_argument("--model", help="model folder (default: the shipped moving-mnist-64 checkpoint)")
    p.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=positive_int, default=7860, help="default 7860")
    p.add_argument("--max-videos", type=positive_int, default=limits.max_videos,
                   help=f"most videos per request (default {limits.max_videos})")
    p.add_argument("--max-frames", type=positive_int, default=limits.max_frames,
                   help=f"most frames per video (default {limits.max_frames})")
    p.add_argument("--max-steps", type=positive_int, default=limits.max_steps,
                   help=f"most denoising steps per frame (default {limits.max_steps})")
    p.add_argument("--max-upload-mb", type=positive_float, default=limits.max_upload_mb,
                   help=f"largest upload in MiB (default {limits.max_upload_mb:g})")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.set_defaults(func=cmd_demo)

    from . import fvd

    fvd.register(sub)

    p = sub.add_parser("bench", help="measure a model folder and write its report (report.md, results.json, plots)")
    p.add_argument("--model", help="model folder (default: the shipped moving-mnist-64 checkpoint)")
    p.add_argument("--dataset", default="moving-mnist",
                   help="moving-mnist (default: made from the held-out test digits), or a split folder made by "
                        "`vidm data prepare` (speed, memory and FVD)")
    p.add_argument("--out", default="bench", help="report folder (default ./bench; an earlier report there is replaced); "
                                                  "NAME.md: the report as NAME.md, its results.json and plots in NAME/")
    p.add_argument("--quick", action="store_true",
                   help="small sets: every part in a few minutes on 2 cores, to check a model while it trains")
    p.add_argument("--detector", help="I3D weights for FVD, as `vidm fvd` takes them (default: $VIDM_I3D; "
                                      "without either, FVD is skipped and the report says why)")
    p.add_argument("--steps", type=non_negative_int,
                   help="denoising steps per frame of the quality measures (default: the model's own, sample_steps "
                        "in its config); speed and memory use the defaults")
    p.add_argument("--sampler", choices=sorted(SAMPLERS), default="dpmpp_2m", help="default dpmpp_2m")
    p.add_argument("--seed", type=int, default=0, help="video i uses seed + i (default 0)")
    p.add_argument("--threads", type=positive_int,
                   help="torch threads (default: $OMP_NUM_THREADS, else the cores idle when it starts)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except VidmError as e:
        print(f"vidm: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("vidm: interrupted", file=sys.stderr)
        sys.exit(130)
