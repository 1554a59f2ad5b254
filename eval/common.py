"""Shared helpers for the benchmarks in eval/: arguments, model loading, call counting, machine info, JSON."""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
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

from vidm.bench.cpu_load import CpuMonitor, system_busy_jiffies  # noqa: E402,F401
from vidm.bench.generate import batches, gray  # noqa: E402,F401
from vidm.config import save_json  # noqa: E402
from vidm.data.moving_mnist import MovingMNIST, digits  # noqa: E402

RESULTS = ROOT / "eval" / "results"
CACHE = ROOT / "eval" / "cache"  # git-ignored: what benchmarks compute once and reuse (detector features)


def parser(description: str, out: str) -> argparse.ArgumentParser:
    """The arguments every benchmark takes: --model, --out, --threads, --seed."""
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


def default_plots(args) -> None:
    """Plots go beside the JSON unless --plots/--plot says otherwise (so a scratch run cannot overwrite the
    published plots in eval/results/)."""
    if getattr(args, "plots", "") is None:
        args.plots = str(Path(args.out).parent)
    if getattr(args, "plot", "") is None:
        args.plot = str(Path(args.out).with_suffix(".png"))


def setup(args) -> None:
    """Threads, plot paths, and args.device resolved to a torch.device (training follows it via VIDM_DEVICE)."""
    torch.set_num_threads(args.threads)
    default_plots(args)
    name = getattr(args, "device", "cpu")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    args.device = torch.device(name)
    if args.device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {name}, but torch sees no CUDA device")
    os.environ["VIDM_DEVICE"] = args.device.type


def machine() -> dict:
    """What a number depends on: CPU, cores, threads, torch build."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "gpu": torch.cuda.is_available(),
            "gpu_name": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "platform": platform.platform()}


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


def wait_for_idle_cpu(max_busy_percent: float = 10.0, probe_seconds: float = 3.0, timeout: float = 900) -> float:
    """Blocks until the whole machine is idle (before a timing run); returns the last busy percent."""
    deadline = time.time() + timeout
    while True:
        before = system_busy_jiffies()
        time.sleep(probe_seconds)
        busy = 100.0 * (system_busy_jiffies() - before) / os.sysconf("SC_CLK_TCK") / (
            probe_seconds * (os.cpu_count() or 1))
        if busy <= max_busy_percent or time.time() > deadline:
            return busy
        log(f"waiting for an idle CPU (other processes use {busy:.0f}%)")


def command_line() -> str:
    """This run's command, with the script relative to the repository root."""
    script = Path(sys.argv[0]).resolve()
    script = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
    return " ".join(["python", script.as_posix()] + sys.argv[1:])


def write_result(path: str | os.PathLike, result: dict, args=None) -> Path:
    """Writes the result with the command, machine and date, atomically (vidm.config.save_json)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"command": command_line(),
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "commit": git_commit(), "machine": machine()}
    if args is not None:
        meta["args"] = {k: v for k, v in vars(args).items()}
        if getattr(args, "model", None) or "model" in vars(args):
            try:
                meta["model"] = model_identity(model_dir(args.model))
            except Exception as e:  # no model folder: say so rather than fail after the work is done
                meta["model"] = f"unknown ({e})"
    save_json(to_jsonable({"meta": meta, **result}), path)
    return path


def write_section(path: str | os.PathLike, name: str, value: dict, args=None) -> Path:
    """Replaces one section of a result file and keeps the others, as they are on disk now (so that
    scripts writing parts of one file in turn do not undo each other); the section records its command."""
    path = Path(path)
    result = {k: v for k, v in json.loads(path.read_text()).items() if k != "meta"} if path.is_file() else {}
    result[name] = {**value, "command": command_line()}
    return write_result(path, result, args)


def model_identity(folder: Path) -> dict:
    """The model folder and a short sha256 of each stage's weights, so a number names its checkpoint."""
    import hashlib

    out = {"folder": str(folder)}
    for stage in ("vae", "content", "motion"):
        f = Path(folder) / stage / "model.safetensors"
        out[stage] = hashlib.sha256(f.read_bytes()).hexdigest()[:12] if f.is_file() else None
    return out


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


class CallCounter:
    """Counts forward calls of the content and motion UNets (forward hooks, not assumptions)."""

    def __init__(self, pipe):
        self.counts = {"content": 0, "motion": 0}
        self.handles = [
            pipe.content.unet.register_forward_hook(lambda *_: self._add("content")),
            pipe.motion.unet.register_forward_hook(lambda *_: self._add("motion")),
        ]

    def _add(self, name: str) -> None:
        self.counts[name] += 1

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def reset(self) -> None:
        self.counts = {k: 0 for k in self.counts}

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


@contextmanager
def timer():
    """`with timer() as t: ...; t()` -> seconds elapsed (perf_counter)."""
    start = time.perf_counter()
    end = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def digits_id(split: str) -> str:
    """A short fingerprint of a split's digit images and of how its clips are drawn, for cache keys."""
    # The first clips stand for the generator: the same digits drawn into other clips (as when the test
    # split got its own random stream) must not reuse features cached from the old ones.
    clips = MovingMNIST(split, frames=4, seed=0).videos(4)
    return hashlib.sha1(digits(split).tobytes() + clips.tobytes()).hexdigest()[:8]


def test_videos(num: int, frames: int, seed: int, start: int = 0) -> np.ndarray:
    """Held-out Moving MNIST (test digits): uint8 (num, frames, 64, 64)."""
    return MovingMNIST("test", frames=frames, seed=seed).videos(num, start)


def log(*msg) -> None:
    print(time.strftime("%H:%M:%S"), *msg, file=sys.stderr, flush=True)
