"""Peak memory while streaming long videos to disk: does it stay flat from 16 to 1,024 frames?

Each length runs in a fresh process (so one run's allocations cannot hide another's), which loads the
model, streams `pipe.stream(...)` into vidm.video_io.VideoWriter (mp4 in a temporary folder) and reports
the resident set just before generation and its peak during it (sampled every 10 ms), and the peak of
the whole process (getrusage, loading included).
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

from ..errors import VidmError
from ..sampling import per_frame
from .cpu_load import CpuMonitor, busy_note
from .report import Section, markdown_table, pyplot

MiB = 2 ** 20
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    """Current resident set size, from /proc/self/statm."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


class PeakSampler(threading.Thread):
    """Samples the resident set every `interval` seconds and keeps the maximum."""

    def __init__(self, interval: float = 0.01):
        super().__init__(daemon=True)
        self.interval, self.peak = interval, rss_bytes()
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


def stream_to_disk(pipe, frames: int, batch: int, steps: int, sampler: str, seed: int) -> dict:
    """Streams `batch` videos of `frames` frames into mp4 files and measures memory meanwhile."""
    from ..video_io import VideoWriter

    device = pipe.device
    with tempfile.TemporaryDirectory() as tmp:
        writers = [VideoWriter(Path(tmp) / f"video_{i}.mp4", fps=8) for i in range(batch)]
        before = rss_bytes()
        monitor = CpuMonitor()
        sampler_thread = PeakSampler()
        sampler_thread.start()
        trace = []  # (frame, rss MiB) every few frames
        start = time.perf_counter()
        for t, out in enumerate(pipe.stream(num_videos=batch, num_frames=frames, num_inference_steps=steps,
                                            sampler=sampler, seed=seed)):
            for writer, frame in zip(writers, out):
                writer.write(frame)
            if t % max(1, frames // 64) == 0 or t == frames - 1:
                trace.append((t + 1, rss_bytes() / MiB))
        seconds = time.perf_counter() - start
        gpu_peak = torch.cuda.max_memory_allocated(device) / MiB if device.type == "cuda" else None
        for writer in writers:
            writer.close()
        peak = sampler_thread.stop()
        size = sum(f.stat().st_size for f in Path(tmp).iterdir())
    return {"frames": frames, "batch": batch, "seconds": seconds,
            "rss_before_generation_mib": before / MiB,
            "peak_rss_during_generation_mib": peak / MiB,
            "growth_during_generation_mib": (peak - before) / MiB,
            "ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MiB,  # KiB on Linux
            "cuda_peak_allocated_mib": gpu_peak, "video_bytes": size,
            "other_processes_cpu_percent": monitor.other_percent(), "rss_trace_mib": trace}


def in_fresh_process(model_dir: Path, frames: int, steps: int, sampler: str, seed: int, device, threads: int) -> dict:
    """One measurement in a new Python process (this module's main)."""
    cmd = [sys.executable, "-m", "vidm.bench.memory", str(model_dir), str(frames), str(steps), sampler, str(seed),
           str(device), str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise VidmError(f"memory measurement of {frames} frames failed: {last}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure(bench) -> Section:
    from .speed import default_settings

    settings = default_settings(bench.pipe)
    steps = settings["steps"]
    if bench.sizes.memory_steps is not None:  # a cap: a layered model's default, 0, is below a quick run's 2
        steps = min(steps, bench.sizes.memory_steps)
    rows = []
    for frames in bench.sizes.memory_lengths:
        bench.log(f"memory: streaming {frames} frames in a fresh process ({per_frame(settings['sampler'], steps)})")
        rows.append(in_fresh_process(bench.model_dir, frames, steps, settings["sampler"], bench.seed, bench.device,
                                     bench.threads))
    first, last = rows[0], rows[-1]
    results = {"setup": f"pipe.stream(num_videos=1, {per_frame(settings['sampler'], steps)}) -> VideoWriter mp4, "
                        "one fresh process per length", "rows": rows,
               "growth_percent": 100 * (last["peak_rss_during_generation_mib"]
                                        / first["peak_rss_during_generation_mib"] - 1)}
    text = (f"One video streamed frame by frame into an mp4 ({per_frame(settings['sampler'], steps)} per frame"
            + (", fewer than the default: memory does not depend on them" if steps != settings["steps"] else "")
            + "), each length in a fresh process: the resident memory of the process, the model loaded, "
            "before and during generation.\n\n")
    text += markdown_table(["frames", "before generation (MiB)", "peak during generation (MiB)", "seconds"],
                           [[f"{r['frames']:,}", f"{r['rss_before_generation_mib']:.1f}",
                             f"{r['peak_rss_during_generation_mib']:.1f}", f"{r['seconds']:.0f}"] for r in rows])
    if len(rows) > 1:
        text += (f"\n\nFrom {first['frames']:,} to {last['frames']:,} frames the peak grew by "
                 f"{results['growth_percent']:+.1f}%.")
    note = busy_note(max(r["other_processes_cpu_percent"] for r in rows))
    plot = "memory.png"
    plot_trace(bench.folder / plot, rows)
    return Section("memory", "Memory while streaming", results, text + (f" {note}" if note else ""), [plot])


def plot_trace(path, rows: list[dict]) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for r in rows:
        xs, ys = zip(*r["rss_trace_mib"])
        ax.plot(xs, ys, marker=".", ms=3, label=f"{r['frames']:,} frames")
    ax.set_xscale("log")
    ax.set_xlabel("frames generated and written")
    ax.set_ylabel("resident memory (MiB)")
    ax.set_ylim(0, 1.25 * max(y for r in rows for _, y in r["rss_trace_mib"]))  # room for the legend
    ax.set_title("Memory while streaming to mp4 (one process per length)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str]) -> None:
    """The child: MODEL FRAMES STEPS SAMPLER SEED DEVICE THREADS -> one JSON line on stdout."""
    from ..pipeline import VIDMPipeline

    model, frames, steps, sampler, seed, device, threads = argv
    torch.set_num_threads(int(threads))
    pipe = VIDMPipeline.from_pretrained(model, device=device)
    print(json.dumps(stream_to_disk(pipe, int(frames), 1, int(steps), sampler, int(seed))))


if __name__ == "__main__":
    main(sys.argv[1:])
