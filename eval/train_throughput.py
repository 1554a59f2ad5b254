"""Training throughput per stage (vae, content, motion) with the real Moving MNIST configs.

Runs vidm.train.train on each config of --configs with a temporary `out` folder, `--steps` steps and a
small data.num_videos (so that the content/motion latent cache encodes quickly; the VAE is the model's
vae/ folder). Timing comes from the run's own log: log_every = --warmup, and the time between the
first log line and the last covers only the steps after warm-up (the final checkpoint is written
after the last log line, so it is not counted). Samples are frames (vae, content) or frame pairs
(motion) of the global batch. With --profile, a second short run per stage under torch.profiler splits
a training step into its phases (the train/* ranges of vidm.train: draw, forward, backward, optimizer,
EMA). Each stage is timed in every precision of --precisions ("auto" is bf16 autocast where the CPU has
bf16 units, float32 elsewhere: the training default).

    python eval/train_throughput.py --model runs/moving-mnist-64 --profile
    python eval/train_throughput.py --configs configs/moving-mnist-64/motion.json --precisions bf16 float32
"""
from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path

from common import ROOT, CpuMonitor, log, model_dir, parser, setup, wait_for_idle_cpu, write_result
import torch

from vidm.precision import PRECISIONS, resolve
from vidm.train import load_train_config, train


def short_run(config: Path, vae: Path, out: str, steps: int, log_every: int, num_videos: int,
              precision: str = "auto"):
    """The stage's config with a temporary out folder, few steps and few videos."""
    cfg = load_train_config(str(config))
    return dataclasses.replace(cfg, out=out, steps=steps, log_every=log_every, save_every=steps, precision=precision,
                               data=dataclasses.replace(cfg.data, num_videos=num_videos),
                               vae=str(vae) if cfg.stage != "vae" else "")


def measure(config: Path, vae: Path, steps: int, warmup: int, num_videos: int, precision: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="vidm-throughput-") as tmp:
        cfg = short_run(config, vae, tmp, steps, warmup, num_videos, precision)
        wait_for_idle_cpu()
        monitor = CpuMonitor()
        train(cfg, progress=False)
        other = monitor.other_percent()
        lines = [json.loads(line) for line in (Path(tmp) / cfg.stage / "log.jsonl").read_text().splitlines()]
    first, last = lines[0], lines[-1]
    seconds = last["seconds"] - first["seconds"]
    measured = last["step"] - first["step"]
    return {"stage": cfg.stage, "config": str(config.relative_to(ROOT) if config.is_relative_to(ROOT) else config),
            "precision": precision, "bf16": resolve(precision, torch.device("cpu"))[0], "batch_size": cfg.batch_size, "steps_timed": measured, "warmup_steps": first["step"],
            "seconds": seconds, "steps_per_second": measured / seconds,
            "samples_per_second": measured * cfg.batch_size / seconds,
            "seconds_per_step": seconds / measured, "num_videos": num_videos,
            "other_processes_cpu_percent_during_run": other}


def profile_phases(config: Path, vae: Path, steps: int, num_videos: int) -> dict:
    """Share of a training step spent in each train/* range (inclusive CPU time, all steps pooled)."""
    from torch.profiler import ProfilerActivity, profile

    with tempfile.TemporaryDirectory(prefix="vidm-profile-") as tmp:
        cfg = short_run(config, vae, tmp, steps, steps, num_videos)
        wait_for_idle_cpu()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            train(cfg, progress=False)
    phases = {e.key.removeprefix("train/"): e.cpu_time_total for e in prof.key_averages()
              if e.key.startswith("train/")}
    total = sum(phases.values())
    return {"stage": cfg.stage, "steps": steps, "ms_per_step": total / steps / 1000,
            "percent": {k: 100 * v / total for k, v in sorted(phases.items(), key=lambda kv: -kv[1])}}


def main() -> None:
    p = parser("Training samples per second per stage on this machine", "train_throughput.json")
    p.add_argument("--configs", nargs="+", default=[str(ROOT / "configs/moving-mnist-64" / f"{s}.json")
                                                    for s in ("vae", "content", "motion")])
    p.add_argument("--steps", type=int, default=40, help="steps per stage, warm-up included (default 40)")
    p.add_argument("--warmup", type=int, default=10, help="steps before timing starts (default 10)")
    p.add_argument("--num-videos", type=int, default=64, help="data.num_videos (default 64)")
    p.add_argument("--precisions", nargs="+", default=["auto"], choices=PRECISIONS,
                   help="time each stage in each of these (default: auto)")
    p.add_argument("--profile", action="store_true", help="also split a step into its phases (profiler)")
    p.add_argument("--profile-steps", type=int, default=10)
    args = p.parse_args()
    setup(args)
    vae = model_dir(args.model) / "vae"
    rows = []
    for config in args.configs:
        for precision in args.precisions:
            row = measure(Path(config).resolve(), vae, args.steps, args.warmup, args.num_videos, precision)
            rows.append(row)
            log(f"  {row['stage']:8s} {precision:8s}: {row['samples_per_second']:.0f} samples/s "
                f"({row['seconds_per_step']:.3f} s per step of {row['batch_size']})")
    result = {"rows": rows}
    if args.profile:
        result["profile"] = [profile_phases(Path(c).resolve(), vae, args.profile_steps, args.num_videos)
                             for c in args.configs]
        for row in result["profile"]:
            log(f"  {row['stage']:8s}: {row['ms_per_step']:.0f} ms per step: "
                + ", ".join(f"{k} {v:.0f}%" for k, v in row["percent"].items()))
    print(write_result(args.out, result, args))


if __name__ == "__main__":
    main()
