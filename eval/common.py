"""Shared helpers of the scripts in eval/: arguments, model loading, test videos, timing, JSON results."""
from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as `python eval/x.py` from a source checkout
    sys.path.insert(0, str(ROOT))

from vidm.bench.generate import batches, gray  # noqa: E402,F401
from vidm.bench.provenance import machine, weights_sha256  # noqa: E402
from vidm.config import save_json  # noqa: E402
from vidm.data.moving_mnist import MovingMNIST  # noqa: E402

RESULTS = ROOT / "eval" / "results"


def parser(description: str, out: str) -> argparse.ArgumentParser:
    """The arguments every script takes: --model, --out, --threads, --seed, --device."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--model", help="model folder (default: vidm.cli.default_model_dir(), the shipped checkpoint)")
    p.add_argument("--out", default=str(RESULTS / out), help=f"JSON results (default eval/results/{out})")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default: cuda when there is one)")
    return p


def model_dir(arg: str | None) -> Path:
    if arg:
        return Path(arg)
    from vidm.cli import default_model_dir

    return default_model_dir()


def load_pipeline(arg: str | None, device: torch.device | str = "cpu"):
    from vidm.pipeline import VIDMPipeline

    return VIDMPipeline.from_pretrained(model_dir(arg), device=device)


def setup(args) -> None:
    """Threads, plot paths beside the JSON unless --plots/--plot say otherwise, args.device a torch.device."""
    torch.set_num_threads(args.threads)
    if getattr(args, "plots", "") is None:
        args.plots = str(Path(args.out).parent)
    if getattr(args, "plot", "") is None:
        args.plot = str(Path(args.out).with_suffix(".png"))
    name = getattr(args, "device", "cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    args.device = torch.device(name)
    if args.device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {name}, but torch sees no CUDA device")


def git_commit() -> str | None:
    """HEAD's short hash, with "+changes" when vidm/ or eval/ differ from it (the number is not HEAD's)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        if not head:
            return None
        return head + ("+changes" if git("status", "--porcelain", "--", "vidm", "eval/*.py") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def command_line() -> str:
    """This run's command, with the script relative to the repository root."""
    script = Path(sys.argv[0]).resolve()
    script = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
    return " ".join(["python", script.as_posix()] + sys.argv[1:])


def write_result(path: str | os.PathLike, result: dict, args=None) -> Path:
    """Writes the result with the command, machine, date and model, atomically (vidm.config.save_json)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    device = getattr(args, "device", None)  # a torch.device once setup() ran; scripts without a model skip it
    meta = {"command": command_line(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": git_commit(), "machine": machine(device if isinstance(device, torch.device) else "cpu")}
    if args is not None:
        meta["args"] = dict(vars(args))
        if "model" in vars(args):
            folder = model_dir(args.model)
            meta["model"] = {"folder": str(folder), **weights_sha256(folder)}
    save_json(to_jsonable({"meta": meta, **result}), path)
    return path


def to_jsonable(x):
    if isinstance(x, dict):
        return {str(k): to_jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [to_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return to_jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        return None if not np.isfinite(x) else round(float(x), 6)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (Path, torch.device)):
        return str(x)
    return x


@contextmanager
def timer():
    """`with timer() as t: ...; t()` -> seconds elapsed (perf_counter)."""
    start = time.perf_counter()
    end = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def test_videos(num: int, frames: int, seed: int, start: int = 0) -> np.ndarray:
    """Held-out Moving MNIST (test digits): uint8 (num, frames, 64, 64)."""
    return MovingMNIST("test", frames=frames, seed=seed).videos(num, start)


def log(*msg) -> None:
    print(time.strftime("%H:%M:%S"), *msg, file=sys.stderr, flush=True)
