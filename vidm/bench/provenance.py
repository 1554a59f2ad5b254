"""What a number depends on: the command, the commit, the machine, torch, threads and the weights' hashes."""
from __future__ import annotations

import datetime
import hashlib
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

STAGES = ("vae", "content", "motion")
SOURCE = Path(__file__).resolve().parents[2]  # the repository root of a source checkout


def command_line(argv: list[str] | None = None) -> str:
    """This run's command as typed (`vidm bench ...`), or `python -m ...` / the script path."""
    argv = sys.argv if argv is None else argv
    name = Path(argv[0]).name
    head = "vidm" if name in ("vidm", "__main__.py") else f"python {argv[0]}"
    return " ".join([head, *argv[1:]])


def git_commit(root: Path = SOURCE) -> str | None:
    """HEAD's hash, with "+changes" when vidm/ differs from it (the number is then not HEAD's); None when vidm
    is not run from a git checkout of itself (an installed copy inside another repository included)."""
    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        if not head or not git("ls-files", "vidm/bench/provenance.py"):
            return None
        return head + ("+changes" if git("status", "--porcelain", "--", "vidm") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(device: torch.device | str = "cpu") -> dict:
    """The CPU, cores, GPU, torch build, threads and platform."""
    gpu = torch.device(device).type == "cuda"
    return {"cpu": cpu_name(), "cores": os.cpu_count(), "device": str(device),
            "gpu_name": torch.cuda.get_device_name(torch.device(device)) if gpu else None,
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "platform": platform.platform()}


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def weights_sha256(model_dir: str | os.PathLike) -> dict:
    """The sha256 of each stage's model.safetensors (None where a stage has none)."""
    out = {}
    for stage in STAGES:
        f = Path(model_dir) / stage / "model.safetensors"
        out[stage] = file_sha256(f) if f.is_file() else None
    return out


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def record(model_dir: str | os.PathLike, device, command: str | None = None) -> dict:
    """Everything a run's numbers depend on outside its settings, taken when the run starts."""
    return {"command": command or command_line(), "date": now(), "commit": git_commit(), "machine": machine(device),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "model": {"folder": str(Path(model_dir).resolve()), "sha256": weights_sha256(model_dir)}}
