"""The command line's generation speed against the pipeline called in-process, idle and beside a training run.

`vidm generate` keeps OpenMP's default wait policy and takes the cores other processes leave idle
(vidm/threads.py); until 52a5ee7 every process importing vidm ran with OMP_WAIT_POLICY=PASSIVE instead.
For each batch size of --batches: --frames frames per video, --steps dpmpp_2m steps per frame, the first
frame --content-steps steps, seed 0, each run in a fresh process (OpenMP reads its environment once, at start):
- in_process: VIDMPipeline.from_pretrained, one tiny warm-up call, then one timed pipe(...) call; torch's
  default threads (all cores), no OpenMP variables.
- cli: `python -m vidm generate ... --format png --quiet` into a temporary folder, no OpenMP variables; the
  frames/s it prints (generation and PNG writing; like in_process, not imports or model loading, but
  unlike it, with the first call's warm-up).
- cli_passive_2threads: the same command with OMP_WAIT_POLICY=PASSIVE and OMP_NUM_THREADS = the usable
  cores (2 on the machine this was written for), what the old code amounted to: the reference.
Two conditions: idle (wait_for_idle_cpu before each run), and beside_training: a one-thread training run
of the motion model (configs/moving-mnist-64/motion.json with 64 videos, the model's vae/ and a temporary
out folder) holds one core, as a training run on a shared machine does; the timed runs start after its
first training step, and it is killed when they end. Each measurement is repeated --repeats times
(interleaved) and the median counts. A run still going after --run-timeout seconds is stopped and
counted at the rate it would have had had it ended then, an upper bound marked "timed_out" (a 2-thread run
beside training can slow 50-fold and would otherwise hold the benchmark for hours). Targets: idle, cli / in_process >= 0.85; beside training,
cli / cli_passive_2threads >= 1.0. The machine must be otherwise idle; --no-wait skips the waits (smoke
tests only; the JSON says so). CPU only; --threads is not used: each child picks its own threads.

    python eval/cli_speed.py
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

from common import ROOT, CpuMonitor, log, model_dir, parser, wait_for_idle_cpu, write_result
from vidm.threads import usable_cores

KINDS = ("in_process", "cli", "cli_passive_2threads")
RATIOS = {"cli_over_in_process": ("cli", "in_process"),
          "cli_over_cli_passive_2threads": ("cli", "cli_passive_2threads")}
TARGETS = {"idle": ("cli_over_in_process", 0.85), "beside_training": ("cli_over_cli_passive_2threads", 1.0)}
CONDITIONS = tuple(TARGETS)
SAMPLER = "dpmpp_2m"
MOTION_CONFIG = ROOT / "configs" / "moving-mnist-64" / "motion.json"
TRAIN_STEPS = 100_000  # more than any measurement lasts: the run is killed, never finishes
TRAIN_VIDEOS = 64  # few clips, so that the latent cache encodes quickly
OPENMP_PREFIXES = ("OMP_", "GOMP_", "KMP_")  # variables that change how OpenMP threads wait or how many run


def openmp_env(**extra: str) -> dict:
    """This process's environment without OpenMP variables (the runtime's defaults), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(OPENMP_PREFIXES)}
    return {**env, **extra}


def parse_generate_line(stdout: str) -> dict:
    """frames/s and threads of `vidm generate`'s closing line ("wrote 4 videos ... (5.2 frames/s, ..., 2 threads)")."""
    found = re.findall(r"\(([0-9.]+) frames/s,.*?(\d+) threads\)", stdout)
    if not found:
        raise ValueError(f"no 'frames/s ... threads' in the output of vidm generate: {stdout[-500:]!r}")
    fps, threads = found[-1]
    return {"frames_per_second": float(fps), "threads": int(threads)}


def steps_done(progress: str, total: int) -> int:
    """The last step count of a tqdm bar out of `total` ("... | 12/100000 [..."), 0 before the first."""
    found = re.findall(rf"\b(\d+)/{total}\b", progress)
    return int(found[-1]) if found else 0


def in_process(model: str, batch: int, frames: int, steps: int, content_steps: int, seed: int) -> dict:
    """One timed pipeline call in this process (a fresh one): load, warm up once, time."""
    import torch

    from vidm.pipeline import VIDMPipeline

    pipe = VIDMPipeline.from_pretrained(model, device="cpu")
    pipe(num_videos=batch, num_frames=2, num_inference_steps=1, content_steps=1, sampler=SAMPLER, seed=seed)
    start = time.perf_counter()
    pipe(num_videos=batch, num_frames=frames, num_inference_steps=steps, content_steps=content_steps,
         sampler=SAMPLER, seed=seed)
    seconds = time.perf_counter() - start
    return {"frames_per_second": batch * frames / seconds, "seconds": seconds, "threads": torch.get_num_threads()}


def measure(kind: str, args, batch: int, tmp: Path) -> dict:
    """One run of `kind` in a fresh process: its frames/s, the whole process's seconds (with imports and
    loading) and the share of the machine other processes used meanwhile."""
    model = str(model_dir(args.model))
    out = Path(tempfile.mkdtemp(dir=tmp, prefix="videos-"))
    if kind == "in_process":
        spec = {"model": model, "batch": batch, "frames": args.frames, "steps": args.steps,
                "content_steps": args.content_steps, "seed": args.seed}
        cmd, env = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)], openmp_env()
    else:
        cmd = [sys.executable, "-m", "vidm", "generate", "--model", model, "--device", "cpu",
               "--num-videos", str(batch), "--frames", str(args.frames), "--steps", str(args.steps),
               "--content-steps", str(args.content_steps), "--sampler", SAMPLER, "--seed", str(args.seed),
               "--format", "png", "--out", str(out), "--quiet"]
        env = openmp_env() if kind == "cli" else openmp_env(OMP_WAIT_POLICY="PASSIVE",
                                                           OMP_NUM_THREADS=str(usable_cores()))
    monitor = CpuMonitor()
    start = time.perf_counter()
    try:
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=args.run_timeout)
    except subprocess.TimeoutExpired:
        done = None
    seconds = time.perf_counter() - start
    other = monitor.other_percent()
    shutil.rmtree(out)
    if done is None:  # stopped: it would have been slower than ending right now
        row = {"frames_per_second": batch * args.frames / args.run_timeout, "timed_out": True}
    elif done.returncode:
        raise SystemExit(f"{kind} failed (exit {done.returncode}): {' '.join(cmd)}\n{done.stderr[-3000:]}")
    elif kind == "in_process":
        row = json.loads(done.stdout.strip().splitlines()[-1])
    else:
        row = parse_generate_line(done.stdout)
    return {**row, "process_seconds": seconds, "other_processes_cpu_percent": other}


@contextmanager
def training_beside(model: Path, tmp: Path, timeout: float):
    """A one-thread training run of the motion model in the background, from its first step to the block's end."""
    cfg = json.loads(MOTION_CONFIG.read_text())
    cfg.update(out=str(tmp / "train"), vae=str(model / "vae"), steps=TRAIN_STEPS, log_every=1000)
    cfg["data"]["num_videos"] = TRAIN_VIDEOS
    config = tmp / "motion.json"
    config.write_text(json.dumps(cfg, indent=1))
    output = tmp / "train.log"
    with open(output, "w") as f:  # its own session: killing the group takes any helper processes too
        proc = subprocess.Popen([sys.executable, "-m", "vidm", "train", "motion", "--config", str(config)],
                                env=openmp_env(OMP_NUM_THREADS="1", VIDM_DEVICE="cpu"), cwd=ROOT,
                                stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + timeout
        while steps_done(output.read_text(errors="replace"), TRAIN_STEPS) < 1:
            if proc.poll() is not None:
                raise SystemExit(f"the training run beside ended (exit {proc.returncode}):\n"
                                 f"{output.read_text(errors='replace')[-3000:]}")
            if time.time() > deadline:
                raise SystemExit(f"the training run beside took no step in {timeout:.0f} s")
            time.sleep(0.5)
        log(f"training beside (pid {proc.pid}) took its first step")
        yield
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def summarise(condition: str, batch: int, runs: dict[str, list[dict]]) -> dict:
    """The median frames/s of each kind, the ratios, and whether the condition's target is met."""
    row = {"condition": condition, "batch": batch}
    for kind, kind_runs in runs.items():
        row[kind] = {"frames_per_second": statistics.median(r["frames_per_second"] for r in kind_runs),
                     "upper_bound": any(r.get("timed_out") for r in kind_runs), "runs": kind_runs}
    for name, (num, den) in RATIOS.items():
        row[name] = row[num]["frames_per_second"] / row[den]["frames_per_second"]
    ratio, target = TARGETS[condition]
    row["target"] = {"ratio": ratio, "at_least": target, "met": row[ratio] >= target}
    return row


def main() -> None:
    p = parser("vidm generate's speed against the pipeline in-process, idle and beside a training run",
               "cli_speed.json")
    p.set_defaults(threads=None, device="cpu")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--frames", type=int, default=16, help="frames per video (default 16)")
    p.add_argument("--steps", type=int, default=20, help="steps per frame (default 20)")
    p.add_argument("--content-steps", type=int, default=20, help="steps of the first frame (default 20)")
    p.add_argument("--repeats", type=int, default=2, help="runs of each measurement; the median counts (default 2)")
    p.add_argument("--run-timeout", type=float, default=300,
                   help="seconds after which one measurement is stopped and counted as an upper bound (default 300)")
    p.add_argument("--train-timeout", type=float, default=900,
                   help="seconds the training run beside may take to its first step (default 900)")
    p.add_argument("--conditions", nargs="+", choices=CONDITIONS, default=list(CONDITIONS),
                   help="which conditions to measure (default both)")
    p.add_argument("--no-wait", action="store_true", help="do not wait for an idle CPU (smoke tests only)")
    p.add_argument("--child", help="(internal) in_process's arguments as JSON: run it and print its result")
    args = p.parse_args()
    if args.child:
        print(json.dumps(in_process(**json.loads(args.child))))
        return
    if args.run_timeout <= 0:
        p.error("--run-timeout must be positive")
    if args.threads is not None:
        p.error("--threads is not used here: each measurement runs in a child that picks its own threads")
    if args.device != "cpu":
        p.error("this benchmark measures CPU threading: --device must be cpu")
    rows = []
    with tempfile.TemporaryDirectory(prefix="vidm-cli-speed-") as tmp:
        for condition in args.conditions:
            if not args.no_wait:
                wait_for_idle_cpu()
            log(f"condition {condition}")
            beside = (training_beside(model_dir(args.model), Path(tmp), args.train_timeout)
                      if condition == "beside_training" else nullcontext())
            with beside:
                for batch in args.batches:
                    runs = {kind: [] for kind in KINDS}
                    for _ in range(args.repeats):
                        for kind in KINDS:  # interleaved, so that drift over time touches every kind alike
                            if condition == "idle" and not args.no_wait:
                                wait_for_idle_cpu()
                            runs[kind].append(measure(kind, args, batch, Path(tmp)))
                            run = runs[kind][-1]
                            bound = " at most, stopped" if run.get("timed_out") else ""
                            log(f"  batch {batch:2d} {kind:21s} {run['frames_per_second']:6.2f} frames/s{bound} "
                                f"({run.get('threads', '?')} threads; other processes: "
                                f"{run['other_processes_cpu_percent']:.0f}% of the CPU)")
                    rows.append(summarise(condition, batch, runs))
    log(f"{'condition':16s} {'batch':>5s} {'in_process':>10s} {'cli':>6s} {'passive':>7s} "
        f"{'cli/in_process':>14s} {'cli/passive':>11s}  target")
    for r in rows:
        fps = [r[kind]["frames_per_second"] for kind in KINDS]
        t = r["target"]
        log(f"{r['condition']:16s} {r['batch']:5d} {fps[0]:10.2f} {fps[1]:6.2f} {fps[2]:7.2f} "
            f"{r['cli_over_in_process']:14.2f} {r['cli_over_cli_passive_2threads']:11.2f}  "
            f"{t['ratio']} >= {t['at_least']}: {'met' if t['met'] else 'NOT met'}")
    result = {"setup": f"{args.frames} frames per video, {SAMPLER} x {args.steps} steps per frame, first frame "
                       f"{args.content_steps} steps, seed {args.seed}, CPU; each run a fresh process; median of "
                       f"{args.repeats} runs; beside_training: `vidm train motion` with OMP_NUM_THREADS=1 "
                       f"({TRAIN_VIDEOS} videos)",
              "waited_for_idle_cpu": not args.no_wait, "usable_cores": usable_cores(), "rows": rows}
    print(write_result(args.out, result, args))


if __name__ == "__main__":
    main()
