"""Frames per second at batch 1 and 16 with the model's default settings (as `vidm generate` makes videos).

End to end: the first frame from the content model, every next frame from the motion model, the VAE
decoding to uint8. Each setting runs once to warm up, then is timed until the runs took a minimum time;
the median is reported with how much of the CPU other processes used meanwhile.
"""
from __future__ import annotations

import inspect
import statistics
import time

from ..pipeline import CONTENT_SAMPLER, CONTENT_STEPS, VIDMPipeline
from ..sampling import per_frame
from .cpu_load import CpuMonitor, busy_note
from .report import Section, markdown_table

BATCHES = (1, 16)
MAX_RUNS = 3


def default_settings(pipe: VIDMPipeline) -> dict:
    """What `vidm generate` and the pipeline use when nothing is given."""
    params = inspect.signature(VIDMPipeline.__call__).parameters
    return {"sampler": params["sampler"].default, "steps": pipe.steps_per_frame(),
            "content_sampler": CONTENT_SAMPLER, "content_steps": CONTENT_STEPS, "temperature": "the model's"}


def time_generation(pipe, batch: int, frames: int, seed: int, min_seconds: float) -> dict:
    """Median wall time of up to MAX_RUNS runs at the default settings (fewer once they took min_seconds)."""
    run = lambda: pipe(num_videos=batch, num_frames=frames, seed=seed, content_steps=CONTENT_STEPS,  # noqa: E731
                       content_sampler=CONTENT_SAMPLER)
    pipe(num_videos=batch, num_frames=2, num_inference_steps=2, content_steps=2, seed=seed)  # warm-up
    monitor, times = CpuMonitor(), []
    while len(times) < MAX_RUNS and (not times or sum(times) < min_seconds):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    t = statistics.median(times)
    return {"batch": batch, "frames": frames, "seconds": t, "runs": len(times), "frames_per_second": batch * frames / t,
            "other_processes_cpu_percent": monitor.other_percent()}


def measure(bench) -> Section:
    frames = bench.sizes.speed_frames
    rows = []
    for batch in BATCHES:
        bench.log(f"speed: batch {batch}, {frames} frames")
        rows.append(time_generation(bench.pipe, batch, frames, bench.seed, bench.sizes.speed_min_seconds))
    settings = default_settings(bench.pipe)
    results = {"settings": settings, "resolution": bench.pipe.resolution, "device": str(bench.device),
               "threads": bench.threads, "rows": rows}
    text = (f"{frames}-frame videos at {bench.pipe.resolution}x{bench.pipe.resolution} with the default settings "
            f"({per_frame(settings['sampler'], settings['steps'])} per frame, the first frame "
            f"{settings['content_sampler']} x {settings['content_steps']}), end to end, on {bench.device} with "
            f"{bench.threads} thread{'s' if bench.threads > 1 else ''}; the median of up to {MAX_RUNS} runs.\n\n")
    text += markdown_table(["batch", "frames per second", "seconds per run", "runs"],
                           [[r["batch"], f"{r['frames_per_second']:.2f}", f"{r['seconds']:.1f}", r["runs"]]
                            for r in rows])
    note = busy_note(max(r["other_processes_cpu_percent"] for r in rows))
    return Section("speed", "Generation speed", results, text + (f"\n\n{note}" if note else ""))
