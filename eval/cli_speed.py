"""How long the whole command `vidm generate --num-videos 1 --frames 256` takes at its default settings.

What a user waits for: each run is a fresh process (imports, loading the model, the first frame, 255
motion frames, writing the mp4), --repeats runs, the median counting. Beside the wall-clock time: the
frames/s that `vidm generate` prints (generation and writing alone), the threads it chose (the idle
cores, vidm/threads.py), and how much of the CPU other processes used meanwhile, since a time taken
beside a training run is not the command's. `vidm bench` times the pipeline in-process instead.

    python eval/cli_speed.py --repeats 3
    python eval/cli_speed.py --repeats 3 --steps 0 --model DIR     # one row of a steps table
"""
from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time

from common import RESULTS, ROOT, log, model_dir, write_result
from vidm.bench.cpu_load import CpuMonitor

FRAMES = 256


def parse_generate_line(stdout: str) -> dict:
    """frames/s and threads of `vidm generate`'s closing line ("wrote 1 videos ... (5.2 frames/s, ..., 2 threads)")."""
    found = re.findall(r"\(([0-9.]+) frames/s,.*?(\d+) threads?\)", stdout)
    if not found:
        raise ValueError(f"no 'frames/s ... threads' in the output of vidm generate: {stdout[-500:]!r}")
    fps, threads = found[-1]
    return {"frames_per_second": float(fps), "threads": int(threads)}


def run_once(model: str, seed: int, steps: int | None = None) -> dict:
    with tempfile.TemporaryDirectory(prefix="vidm-cli-speed-") as out:
        cmd = [sys.executable, "-m", "vidm", "generate", "--model", model, "--num-videos", "1",
               "--frames", str(FRAMES), "--seed", str(seed), "--out", out, "--quiet"]
        cmd += [] if steps is None else ["--steps", str(steps)]
        monitor, start = CpuMonitor(), time.perf_counter()
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"vidm generate failed (exit {done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    return {"seconds": seconds, **parse_generate_line(done.stdout),
            "other_processes_cpu_percent": monitor.other_percent()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="model folder (default: the shipped checkpoint)")
    p.add_argument("--repeats", type=int, default=3, help="runs; the median counts (default 3)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="steps per frame (default: the command's default)")
    p.add_argument("--out", default=str(RESULTS / "cli_speed.json"), help="JSON results")
    args = p.parse_args()
    runs = []
    for i in range(args.repeats):
        runs.append(run_once(str(model_dir(args.model)), args.seed, args.steps))
        log(f"run {i + 1}/{args.repeats}: {runs[-1]['seconds']:.1f} s ({runs[-1]['frames_per_second']:.2f} frames/s "
            f"generating, {runs[-1]['threads']} threads, other processes {runs[-1]['other_processes_cpu_percent']:.0f}%)")
    seconds = statistics.median(r["seconds"] for r in runs)
    steps = "default settings" if args.steps is None else f"--steps {args.steps}, other settings default"
    result = {"command": f"vidm generate --num-videos 1 --frames {FRAMES} --seed {args.seed} ({steps})",
              "median_seconds": seconds, "frames_per_second_end_to_end": FRAMES / seconds, "runs": runs}
    print(write_result(args.out, result, args))


if __name__ == "__main__":
    main()
