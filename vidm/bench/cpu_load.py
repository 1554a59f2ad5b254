"""How busy other processes kept the CPU while a timing ran: a number measured beside a training run is
not the model's speed, so the report says how much of the machine others used."""
from __future__ import annotations

import os
import time
from pathlib import Path

from ..threads import busy_and_total


def system_busy_jiffies() -> int:
    counts = busy_and_total()
    return counts[0] if counts else 0  # all cores, minus idle and iowait


def _own_jiffies() -> int:
    """CPU time of this process (all threads) and its waited-for children, in clock ticks."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime


class CpuMonitor:
    """Started at construction; other_percent() is the share of the machine's CPU others used since."""

    def __init__(self):
        self.start = (time.perf_counter(), system_busy_jiffies(), _own_jiffies())

    def other_percent(self) -> float:
        """Percent of the machine's total CPU capacity used by other processes since construction."""
        t0, sys0, own0 = self.start
        elapsed = max(time.perf_counter() - t0, 1e-9)
        ticks = os.sysconf("SC_CLK_TCK")
        other = (system_busy_jiffies() - sys0) - (_own_jiffies() - own0)
        return max(0.0, 100.0 * other / ticks / (elapsed * (os.cpu_count() or 1)))


def busy_note(percent: float, threshold: float = 10.0) -> str:
    """A warning for the report when others used more than `threshold` percent of the CPU, else ''."""
    if percent <= threshold:
        return ""
    return (f"Other processes used {percent:.0f}% of the machine's CPU while this was timed: the model is "
            "faster on an idle machine.")
