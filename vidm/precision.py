"""Which precision to compute in: bf16 autocast where the hardware has bf16 units, float32 elsewhere."""
from __future__ import annotations

import platform
from pathlib import Path

import torch

from .errors import VidmError

PRECISIONS = ("auto", "bf16", "float32")
# x86: AVX512-BF16 or AMX do bf16 dot products in hardware; aarch64: the BF16 extension. Without them
# oneDNN emulates bf16 and a step gets slower, not faster.
CPU_BF16_FLAGS = {"avx512_bf16", "amx_bf16", "bf16"}


def cpu_bf16_flags(cpuinfo: str | None = None) -> set[str]:
    """The bf16 instruction-set flags this CPU reports in /proc/cpuinfo (empty where it cannot be read)."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.is_file() else ""
    words = set()
    for line in cpuinfo.splitlines():
        if line.split(":")[0].strip() in ("flags", "Features"):
            words.update(line.split(":", 1)[1].split())
    return words & CPU_BF16_FLAGS


def resolve(precision: str, device: torch.device) -> tuple[bool, str]:
    """(use bf16 autocast, why) for a config's precision on `device`."""
    if precision not in PRECISIONS:
        raise VidmError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "float32":
        return False, "float32: set in the config"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return True, "bf16 autocast: this GPU supports bf16"
        reason = "this GPU has no bf16 support"
    elif device.type == "cpu":
        flags = cpu_bf16_flags()
        if flags:
            return True, f"bf16 autocast: this CPU has {', '.join(sorted(flags))}"
        reason = f"this CPU ({platform.machine()}) reports no bf16 units (avx512_bf16, amx_bf16 or bf16)"
    else:
        reason = f"bf16 autocast is not set up for {device.type} devices"
    if precision == "bf16":
        return True, f"bf16 autocast: set in the config, although {reason} (emulated, likely slower)"
    return False, f"float32: {reason}"
