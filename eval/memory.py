"""Peak memory while streaming long videos to disk: does it stay flat from 16 to 1,024 frames?

Each length runs in a fresh subprocess (so one run's allocations cannot hide another's), which loads
the model, streams `pipe.stream(...)` into vidm.video_io.VideoWriter (mp4 in a temporary folder) and
reports: the peak resident set of the whole process (getrusage ru_maxrss, includes loading), the
resident set just before generation, and the peak sampled every 10 ms during generation.

    python eval/memory.py --model runs/moving-mnist-64 --lengths 16 256 1024
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

from common import CpuMonitor, default_plots, load_pipeline, log, parser, setup, wait_for_idle_cpu, write_result

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Current resident set size, from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakSampler(threading.Thread):
    """Samples the resident set every `interval` seconds and keeps the maximum."""

    def __init__(self, interval: float = 0.01):
        super().__init__(daemon=True)
        self.interval, self.peak, self.trace = interval, rss_bytes(), []
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            self.peak = max(self.peak, rss_bytes())
            time.sleep(self.interval)

    def stop(self) -> int:
        self._halt.set()
        self.join()
        self.peak = max(self.peak, rss_bytes())
        return self.peak


def child(args) -> dict:
    """One measurement, in this (fresh) process."""
    from vidm.video_io import VideoWriter

    setup(args)
    pipe = load_pipeline(args.model, args.device)
    MiB = 2 ** 20
    with tempfile.TemporaryDirectory() as tmp:
        writers = [VideoWriter(Path(tmp) / f"video_{i}.mp4", fps=8) for i in range(args.batch)]
        before = rss_bytes()
        monitor = CpuMonitor()
        sampler = PeakSampler()
        sampler.start()
        trace = []  # (frame, rss MiB) every few frames
        start = time.perf_counter()
        for t, frames in enumerate(pipe.stream(num_videos=args.batch, num_frames=args.frames,
                                               num_inference_steps=args.steps, sampler=args.sampler,
                                               seed=args.seed)):
            for writer, frame in zip(writers, frames):
                writer.write(frame)
            if t % max(1, args.frames // 64) == 0 or t == args.frames - 1:
                trace.append((t + 1, rss_bytes() / MiB))
        seconds = time.perf_counter() - start
        gpu_peak = torch.cuda.max_memory_allocated(args.device) / MiB if args.device.type == "cuda" else None
        for writer in writers:
            writer.close()
        peak = sampler.stop()
        size = sum(f.stat().st_size for f in Path(tmp).iterdir())
    return {"frames": args.frames, "batch": args.batch, "seconds": seconds,
            "rss_before_generation_mib": before / MiB,
            "peak_rss_during_generation_mib": peak / MiB,
            "growth_during_generation_mib": (peak - before) / MiB,
            "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MiB,  # KiB on Linux
            "cuda_peak_allocated_mib": gpu_peak, "video_bytes": size, "other_processes_cpu_percent": monitor.other_percent(), "rss_trace_mib": trace}


def main() -> None:
    p = parser("Peak memory while streaming 16 / 256 / 1,024 frames to disk", "memory.json")
    p.add_argument("--lengths", type=int, nargs="+", default=[16, 256, 1024])
    p.add_argument("--batch", type=int, default=1, help="videos generated together (default 1)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--sampler", default="dpmpp_2m")
    p.add_argument("--frames", type=int, help="(internal) one length, in a child process")
    p.add_argument("--child", action="store_true", help="(internal) run one measurement")
    p.add_argument("--plots", help="folder for the PNG plots (default: the folder of --out; '' for none)")
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    default_plots(args)
    rows = []
    for n in args.lengths:
        wait_for_idle_cpu()
        cmd = [sys.executable, __file__, "--child", "--frames", str(n), "--batch", str(args.batch),
               "--steps", str(args.steps), "--sampler", args.sampler, "--seed", str(args.seed),
               "--threads", str(args.threads), "--device", str(args.device)] + (["--model", args.model] if args.model else [])
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        log(f"  {n:5d} frames: peak during generation {r['peak_rss_during_generation_mib']:.1f} MiB "
            f"(+{r['growth_during_generation_mib']:.1f}), ru_maxrss {r['ru_maxrss_mib']:.1f} MiB, {r['seconds']:.0f} s")
    first, last = rows[0], rows[-1]
    result = {"setup": f"pipe.stream(num_videos={args.batch}, {args.sampler} x {args.steps} steps) -> VideoWriter mp4, "
                       "one fresh process per length",
              "rows": rows,
              "growth_percent": {
                  "peak_rss_during_generation": 100 * (last["peak_rss_during_generation_mib"]
                                                       / first["peak_rss_during_generation_mib"] - 1),
                  "ru_maxrss": 100 * (last["ru_maxrss_mib"] / first["ru_maxrss_mib"] - 1)},
              "lengths": [first["frames"], last["frames"]]}
    if args.plots:
        Path(args.plots).mkdir(parents=True, exist_ok=True)
        plot(Path(args.plots) / "memory_rss.png", rows)
    print(write_result(args.out, result, args))


def plot(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for r in rows:
        xs, ys = zip(*r["rss_trace_mib"])
        ax.plot(xs, ys, marker=".", ms=3, label=f"{r['frames']} frames")
    ax.set_xscale("log")
    ax.set_xlabel("frames generated and written")
    ax.set_ylabel("resident memory (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title("Memory while streaming to mp4 (one process per length)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
