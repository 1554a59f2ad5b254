"""How many CPU threads a command should use: the cores other processes leave idle.

OpenMP's default lets idle threads spin before they sleep. On an idle machine that is the fast choice
(batch-1 generation was 3.1x slower with OMP_WAIT_POLICY=PASSIVE), but when another busy process shares
the cores, threads that spin and wait for each other collapse (a 2-thread run beside a training run was
about 50x slower). So the policy stays the default, and a command takes only the cores that are idle when
it starts: beside a training run that holds every core, one thread, which never waits for another.
"""
from __future__ import annotations

import os
import time
from pathlib import Path


def busy_and_total() -> tuple[int, int] | None:
    """Busy and total jiffies of all cores since boot, from /proc/stat (None where it cannot be read)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle and iowait
    return sum(fields) - idle, sum(fields)


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def idle_cores(probe_seconds: float = 0.2) -> int:
    """The usable cores that other processes leave idle over a short probe, at least 1."""
    cores = usable_cores()
    before = busy_and_total()
    if before is None:
        return cores
    time.sleep(probe_seconds)
    after = busy_and_total()
    busy, total = after[0] - before[0], after[1] - before[1]
    if total <= 0:
        return cores
    machine = os.cpu_count() or cores
    busy_cores = machine * busy / total
    return max(1, min(cores, round(machine - busy_cores)))


def command_threads() -> int:
    """Threads for a command-line run: $OMP_NUM_THREADS when the user set it, else the idle cores."""
    text = os.environ.get("OMP_NUM_THREADS", "")
    if text.isdigit() and int(text) > 0:
        return int(text)
    return idle_cores()
