"""Peak memory while streaming long videos to disk: does it stay flat from 16 to 1,024 frames?

Each length runs in a fresh subprocess (so one run's allocations cannot hide another's), which loads
the model, streams `pipe.stream(...)` into vidm.video_io.VideoWriter (mp4 in a temporary folder) and
reports: the peak resident set of the whole process (getrusage ru_maxrss, includes loading), the
resident set just before generation, and the peak sampled every 10 ms during generation.

    python eval/memory.py --model runs/moving-mnist-64 --lengths 16 256 1024
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from common import default_plots, load_pipeline, log, parser, setup, wait_for_idle_cpu, write_result
from vidm.bench.memory import PeakSampler, rss_bytes, stream_to_disk  # noqa: F401
from vidm.bench.memory import plot_trace as plot


def child(args) -> dict:
    """One measurement, in this (fresh) process."""
    setup(args)
    pipe = load_pipeline(args.model, args.device)
    return stream_to_disk(pipe, args.frames, args.batch, args.steps, args.sampler, args.seed)


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


if __name__ == "__main__":
    main()
