"""Generation speed, network calls per frame, quality vs steps, and where the time goes.

Parts (--parts, default all; each part replaces its own section of --out and keeps the others):
- timing: frames/s and counted UNet calls per frame for 64x64 unconditional generation at each batch
  size, sampler and step count (end to end: content model, motion model, VAE decode to uint8).
- curve: 10 -> 10 MSE/SSIM on held-out Moving MNIST for each sampler x steps, the fewest steps within
  5% of the 100-step quality, and the comparison with VIDM's own setting (100 ancestral steps per frame).
- profile: torch.profiler over one 16-video x 16-frame run, time by module and by operator, and
  wall-clock A/B tests: vidm's optimisations switched off and on, and candidates not (yet) adopted.

    python eval/speed.py --model runs/moving-mnist-64
"""
from __future__ import annotations

import json
import statistics
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from common import (CallCounter, CpuMonitor, load_pipeline, log, model_dir, model_identity, parser, setup,
                    test_videos, timer, to_jsonable, wait_for_idle_cpu, write_section)
from quality import frame_metrics, predict
from vidm.metrics import bright_fraction, count_blobs

MAX_OTHER_CPU = 5.0  # percent of the machine other processes may use during a timed run before it is redone

SAMPLERS = ("ddim", "ddpm", "dpmpp_2m")
VIDM_SETTING = ("ddpm", 100)  # VIDM samples every frame with 100 ancestral steps (DESIGN.md section 3)


# --- timing ---

def time_generation(pipe, batch: int, frames: int, sampler: str, steps: int, seed: int, repeats: int,
                    min_seconds: float, attempts: int = 3) -> dict:
    """Timed as below; redone (after waiting for an idle CPU) when other processes used the CPU meanwhile."""
    for attempt in range(attempts):
        monitor = CpuMonitor()
        row = _time_generation(pipe, batch, frames, sampler, steps, seed, repeats, min_seconds)
        row["other_processes_cpu_percent"] = monitor.other_percent()
        if row["other_processes_cpu_percent"] <= MAX_OTHER_CPU:
            break
        log(f"  other processes used {row['other_processes_cpu_percent']:.0f}% of the CPU: measuring again")
        wait_for_idle_cpu()
    return row


def _time_generation(pipe, batch: int, frames: int, sampler: str, steps: int, seed: int, repeats: int,
                     min_seconds: float) -> dict:
    """Median wall time of `repeats` runs (fewer if one run already takes min_seconds) and counted calls."""
    counter = CallCounter(pipe)
    times = []
    for r in range(repeats):
        counter.reset()
        with timer() as took:
            pipe(num_videos=batch, num_frames=frames, num_inference_steps=steps, sampler=sampler, seed=seed)
        times.append(took())
        if sum(times) >= min_seconds:
            break
    calls = dict(counter.counts)
    counter.remove()
    t = statistics.median(times)
    return {"batch": batch, "frames": frames, "sampler": sampler, "steps": steps, "seconds": t, "runs": len(times),
            "frames_per_second": batch * frames / t,
            # batched calls: one call advances every video of the batch by one step
            "network_calls_per_frame": (calls["content"] + calls["motion"]) / frames,
            "calls": calls}


def part_timing(pipe, args) -> dict:
    wait_for_idle_cpu()
    rows = []
    for batch in args.batches:
        pipe(num_videos=batch, num_frames=3, num_inference_steps=2, seed=0)  # warm-up (allocator, kernels)
        for sampler in args.samplers:
            for steps in args.steps:
                row = time_generation(pipe, batch, args.frames, sampler, steps, args.seed, args.repeats,
                                      args.min_seconds)
                rows.append(row)
                log(f"  batch {batch:3d} {sampler:8s} {steps:3d} steps: {row['frames_per_second']:7.2f} frames/s, "
                    f"{row['network_calls_per_frame']:.1f} calls/frame")
    return {"resolution": pipe.resolution, "frames_per_video": args.frames, "rows": rows}


# --- quality vs steps ---

def part_curve(pipe, args) -> dict:
    videos = test_videos(args.curve_num, 20, args.data_seed)
    clips, truth = videos[:, :10], videos[:, 10:]
    rows = []
    grid = [(sampler, steps) for sampler in args.samplers for steps in args.curve_steps]
    grid += [(e.split(":")[0], int(e.split(":")[1])) for e in args.curve_extra]
    # rows already measured for this model and data are kept in a side file, so an interrupted run resumes
    rows_file = Path(args.out).with_name(Path(args.out).stem + ".curve_rows.jsonl")
    key = {"model": model_identity(model_dir(args.model)), "num": args.curve_num, "seed": args.seed,
           "data_seed": args.data_seed, "batch": args.curve_batch, "fields": 2}
    done = {}
    if rows_file.is_file():
        for line in rows_file.read_text().splitlines():
            entry = json.loads(line)
            if entry["key"] == to_jsonable(key):
                done[(entry["row"]["sampler"], entry["row"]["steps"])] = entry["row"]
    for sampler, steps in dict.fromkeys(grid):
        if (sampler, steps) in done:
            rows.append(done[(sampler, steps)])
            log(f"  {sampler:8s} {steps:3d} steps: mse {rows[-1]['mse']:.1f} (from {rows_file.name})")
            continue
        counter = CallCounter(pipe)
        with timer() as took:
            pred = predict(pipe, clips, 10, sampler, steps, args.seed, args.curve_batch)
        m = frame_metrics(pred, truth)
        rows.append({"sampler": sampler, "steps": steps, "mse": float(m["mse"].mean()),
                     "mse_sem": float(m["mse"].mean(1).std(ddof=1) / np.sqrt(len(pred))),
                     "ssim": float(m["ssim"].mean()), "psnr": float(m["psnr"].mean()),
                     **sharpness(pred, truth),
                     "network_calls_per_frame": counter.total / (10 * -(-len(clips) // args.curve_batch)),
                     "seconds": took()})
        counter.remove()
        with open(rows_file, "a") as f:
            f.write(json.dumps(to_jsonable({"key": key, "row": rows[-1]})) + "\n")
        log(f"  {sampler:8s} {steps:3d} steps: mse {rows[-1]['mse']:.1f}, ssim {rows[-1]['ssim']:.3f}")
    copy = frame_metrics(np.repeat(clips[:, -1:], 10, axis=1), truth)
    return {"task": "10 -> 10", "sequences": args.curve_num,
            "data": f"MovingMNIST('test', frames=20, seed={args.data_seed}) videos 0..{args.curve_num - 1}",
            "copy_last": {"mse": float(copy["mse"].mean()), "ssim": float(copy["ssim"].mean())},
            "rows": rows, "summary": curve_summary(rows, args.tolerance)}


def sharpness(pred: np.ndarray, truth: np.ndarray) -> dict:
    """What MSE cannot see: a blurred or thinned digit lowers MSE but also the mass of bright pixels."""
    return {"bright_mass_ratio": float(bright_fraction(pred).mean() / bright_fraction(truth).mean()),
            "frames_with_3plus_blobs": float((count_blobs(pred) >= 3).mean())}


def matches(row: dict, ref: dict, tolerance: float) -> bool:
    """Equal quality: MSE at most (1 + tolerance) x the reference's, and (where measured) bright-pixel
    mass within tolerance of the reference's, so that a blurrier sampler does not win on MSE alone."""
    if row["mse"] > ref["mse"] * (1 + tolerance):
        return False
    if "bright_mass_ratio" in row and "bright_mass_ratio" in ref:
        return abs(row["bright_mass_ratio"] - ref["bright_mass_ratio"]) <= tolerance * ref["bright_mass_ratio"]
    return True


def curve_summary(rows: list[dict], tolerance: float) -> dict:
    """Fewest steps of equal quality (`matches`) to the sampler's own most-steps row and to VIDM's ddpm x 100."""
    by = {(r["sampler"], r["steps"]): r for r in rows}
    out = {"tolerance": tolerance}
    ref = by.get(VIDM_SETTING)
    if ref is not None:
        out["vidm_setting"] = {"sampler": VIDM_SETTING[0], "steps": VIDM_SETTING[1], "mse": ref["mse"],
                               "ssim": ref["ssim"], "bright_mass_ratio": ref.get("bright_mass_ratio")}
    for sampler in sorted({r["sampler"] for r in rows}):
        mine = sorted((r for r in rows if r["sampler"] == sampler), key=lambda r: r["steps"])
        own = by.get((sampler, max(r["steps"] for r in mine)))
        entry = {"reference_steps": own["steps"], "reference_mse": own["mse"]}
        ok = [r for r in mine if matches(r, own, tolerance)]
        entry["fewest_steps_within_tolerance_of_own_reference"] = ok[0]["steps"] if ok else None
        if ref is not None:
            ok = [r for r in mine if matches(r, ref, tolerance)]
            if ok:
                entry["fewest_steps_matching_vidm_setting"] = ok[0]["steps"]
                entry["call_reduction_vs_vidm_setting"] = ref["network_calls_per_frame"] / ok[0]["network_calls_per_frame"]
                entry["ssim_at_those_steps"] = ok[0]["ssim"]
        out[sampler] = entry
    return out


def plot_curve(path: Path, curve: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ["mse", "ssim"] + (["bright_mass_ratio"] if "bright_mass_ratio" in curve["rows"][0] else [])
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.5 * len(metrics), 3.4))
    for ax, metric in zip(axes, metrics):
        for sampler in sorted({r["sampler"] for r in curve["rows"]}):
            rows = sorted((r for r in curve["rows"] if r["sampler"] == sampler), key=lambda r: r["steps"])
            ax.plot([r["steps"] for r in rows], [r[metric] for r in rows], marker="o", ms=3, label=sampler)
        if metric in curve["copy_last"]:
            ax.axhline(curve["copy_last"][metric], color="gray", ls="--", lw=1, label="copy last frame")
        else:
            ax.axhline(1.0, color="gray", ls="--", lw=1, label="ground truth")
        ax.set_xscale("log")
        steps = sorted({r["steps"] for r in curve["rows"]})
        ax.set_xticks(steps, [str(s) for s in steps])
        ax.minorticks_off()
        ax.set_xlabel("denoising steps (= network calls) per frame")
        better = {"mse": "lower is better", "ssim": "higher is better", "bright_mass_ratio": "1 = as real"}[metric]
        ax.set_title(f"10 -> 10 {metric.replace('_', ' ')} on {curve['sequences']} test sequences ({better})",
                     fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_timing(path: Path, timing: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4))
    for batch in sorted({r["batch"] for r in timing["rows"]}):
        for sampler in sorted({r["sampler"] for r in timing["rows"]}):
            rows = sorted((r for r in timing["rows"] if r["batch"] == batch and r["sampler"] == sampler),
                          key=lambda r: r["steps"])
            ax.plot([r["steps"] for r in rows], [r["frames_per_second"] for r in rows], marker="o", ms=3,
                    ls="-" if batch > 1 else ":", label=f"batch {batch}, {sampler}")
    ax.set_xscale("log"), ax.set_yscale("log")
    steps = sorted({r["steps"] for r in timing["rows"]})
    ax.set_xticks(steps, [str(s) for s in steps])
    ax.set_yticks([1, 2, 5, 10, 20, 50], ["1", "2", "5", "10", "20", "50"])
    ax.minorticks_off()
    ax.set_xlabel("denoising steps per frame")
    ax.set_ylabel("generated frames / s")
    ax.set_title("64x64 generation speed, 2-core CPU", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# --- profile ---

LABELS = {  # module class name -> profiler label
    "PositionalGroupNorm": "unet/positional group norm (all)",
    "Attention": "unet/attention block",
    "Conv2d": "other conv2d (3x3, strided, skip; UNet and VAE)",
    "Linear": "linear",
    "GroupNorm": "groupnorm (plain)",
    "Decoder": "vae/decode",
    "Encoder": "vae/encode",
    "UNet": "unet/forward (total)",
}


@contextmanager
def labelled(pipe):
    """Wraps module forwards in profiler record_function ranges named by LABELS (inclusive times)."""
    patched = []
    for model in (pipe.vae, pipe.content, pipe.motion):
        for name, module in model.named_modules():
            kind = type(module).__name__
            label = LABELS.get(kind)
            if name.endswith("from_position"):
                label = "unet/positional norm: 1x1 conv on row/col features"
            elif name.endswith("from_embedding"):
                label = "unet/positional norm: linear on embedding"
            elif name.endswith(".qkv") or name.endswith(".out"):
                label = "unet/attention 1x1 convs"
            if label is None:
                continue
            orig = module.forward

            def wrapped(*a, __orig=orig, __label=label, **k):
                with torch.profiler.record_function(__label):
                    return __orig(*a, **k)

            module.forward = wrapped
            patched.append(module)
    try:
        yield
    finally:
        for module in patched:
            del module.forward


@contextmanager
def positional_cache(enabled: bool):
    """Turns vidm's inference cache of the per-pixel positional term on or off (an A/B of a real code path)."""
    from vidm.unet import PositionalGroupNorm

    old = PositionalGroupNorm.cache_position
    PositionalGroupNorm.cache_position = enabled
    try:
        yield
    finally:
        PositionalGroupNorm.cache_position = old


@contextmanager
def threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def part_profile(pipe, args) -> dict:
    from torch.profiler import ProfilerActivity, profile

    B, F, S = args.profile_batch, args.profile_frames, args.profile_steps
    run = lambda: pipe(num_videos=B, num_frames=F, num_inference_steps=S, sampler="dpmpp_2m", seed=args.seed)  # noqa
    run()  # warm-up
    wait_for_idle_cpu()
    monitor = CpuMonitor()
    with timer() as plain:
        run()
    # on a GPU the kernels run asynchronously: operators are timed by their device time, and the module
    # ranges (host time) then say where the host waits, not where the GPU works
    gpu = args.device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if gpu else [])
    with labelled(pipe), profile(activities=activities) as prof:
        with timer() as profiled:
            run()
    events = prof.key_averages()
    total_us = profiled() * 1e6
    self_time = "self_device_time_total" if gpu else "self_cpu_time_total"
    modules = sorted(((e.key, e.cpu_time_total) for e in events if "/" in e.key or e.key in LABELS.values()),
                     key=lambda kv: -kv[1])
    ops = sorted(((e.key, getattr(e, self_time), e.count) for e in events
                  if not ("/" in e.key or e.key in LABELS.values())), key=lambda kv: -kv[1])
    table = prof.key_averages().table(sort_by=self_time, row_limit=30)
    Path(args.profile_table).write_text(table)
    result = {
        "run": f"{B} videos x {F} frames, dpmpp_2m x {S} steps, unconditional, batch {B}, {args.device}",
        "operator_time": self_time,
        "wall_seconds_unprofiled": plain(), "wall_seconds_profiled": profiled(),
        "by_module_inclusive_percent": {k: 100 * v / total_us for k, v in modules},
        "by_operator_self_percent": {k: {"percent": 100 * v / total_us, "calls": c} for k, v, c in ops[:25]},
        "table": str(args.profile_table),
    }
    # A/B wall-clock tests of candidate optimisations, each against a fresh baseline (median of 3)
    def wall(fn, reps=3):
        ts = []
        for _ in range(reps):
            with timer() as t:
                fn()
            ts.append(t())
        return statistics.median(ts)

    ab = {}
    with positional_cache(False):
        base = wall(run)
    cached = wall(run)
    ab["positional term cached at inference (vidm default) vs recomputed each call"] = {
        "baseline_s": base, "patched_s": cached, "speedup": base / cached}
    run1 = lambda: pipe(num_videos=1, num_frames=F, num_inference_steps=S, sampler="dpmpp_2m", seed=args.seed)  # noqa
    run1()
    with positional_cache(False):
        base1 = wall(run1)
    cached1 = wall(run1)
    ab["batch 1: positional term cached vs recomputed"] = {"baseline_s": base1, "patched_s": cached1,
                                                           "speedup": base1 / cached1}
    with threads(1):
        one = wall(run1)
    ab["batch 1: 1 thread instead of 2"] = {"baseline_s": cached1, "patched_s": one, "speedup": cached1 / one}
    # channels_last weights (the pipeline's default) against contiguous ones
    models = (pipe.vae, pipe.content, pipe.motion)
    for m in models:
        m.to(memory_format=torch.contiguous_format)
    try:
        base = wall(run)
    finally:
        for m in models:
            m.to(memory_format=torch.channels_last)
    cl = wall(run)
    ab["channels_last weights (vidm default) vs contiguous"] = {"baseline_s": base, "patched_s": cl,
                                                                "speedup": base / cl}
    # bfloat16 autocast (this CPU has avx512_bf16 when /proc/cpuinfo says so), and how much the output moves
    base = wall(run)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf = wall(run)
        low = pipe(num_videos=B, num_frames=F, num_inference_steps=S, sampler="dpmpp_2m", seed=args.seed).frames
    ref = pipe(num_videos=B, num_frames=F, num_inference_steps=S, sampler="dpmpp_2m", seed=args.seed).frames
    ab["bfloat16 autocast"] = {"baseline_s": base, "patched_s": bf, "speedup": base / bf,
                               "mean_abs_pixel_difference_0_255": float(np.abs(low.astype(float) - ref).mean()),
                               "cpu_has_avx512_bf16": "avx512_bf16" in Path("/proc/cpuinfo").read_text()}
    if args.ab_compile:  # torch.compile of both UNets (inductor, needs a C++ compiler on the CPU)
        unets = [pipe.content.unet, pipe.motion.unet]
        originals = [u.forward for u in unets]
        for u in unets:
            u.forward = torch.compile(u.forward, dynamic=False)
        try:
            with timer() as compile_took:
                run()  # compiles for this batch size
            base = wall(run)  # still compiled: measure, then restore and measure the baseline
        finally:
            for u, f in zip(unets, originals):
                u.forward = f
        plain_s = wall(run)
        ab["torch.compile both UNets"] = {"baseline_s": plain_s, "patched_s": base, "speedup": plain_s / base,
                                          "first_run_with_compile_s": compile_took()}
    result["ab_tests"] = ab
    result["other_processes_cpu_percent"] = monitor.other_percent()
    for k, v in ab.items():
        log(f"  {k}: {v['speedup']:.2f}x")
    return result


def main() -> None:
    p = parser("Generation speed, calls per frame, quality vs steps, profile", "speed.json")
    p.add_argument("--parts", nargs="+", default=["timing", "curve", "profile"],
                   choices=["timing", "curve", "profile"])
    p.add_argument("--samplers", nargs="+", default=list(SAMPLERS))
    p.add_argument("--steps", type=int, nargs="+", default=[5, 10, 20, 50, 100], help="timing step counts")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--frames", type=int, default=16, help="frames per video for timing (default 16)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--min-seconds", type=float, default=5.0, help="stop repeating once runs took this long")
    p.add_argument("--curve-steps", type=int, nargs="+", default=[3, 5, 10, 20, 50])
    p.add_argument("--curve-extra", nargs="*", default=[f"{VIDM_SETTING[0]}:{VIDM_SETTING[1]}"],
                   help="extra sampler:steps points (default: VIDM's setting, ddpm:100, the reference)")
    p.add_argument("--curve-num", type=int, default=200, help="test sequences for the quality curve")
    p.add_argument("--curve-batch", type=int, default=100)
    p.add_argument("--data-seed", type=int, default=1)
    p.add_argument("--tolerance", type=float, default=0.05)
    p.add_argument("--profile-batch", type=int, default=16)
    p.add_argument("--profile-frames", type=int, default=16)
    p.add_argument("--profile-steps", type=int, default=20)
    p.add_argument("--ab-compile", action="store_true", help="also A/B-test torch.compile (slow to compile)")
    p.add_argument("--profile-table", help="profiler table (default: profile.txt beside --out)")
    p.add_argument("--plots", help="folder for the PNG plots (default: the folder of --out; '' for none)")
    args = p.parse_args()
    setup(args)
    if args.profile_table is None:
        args.profile_table = str(Path(args.out).with_name("profile.txt"))
    pipe = load_pipeline(args.model, args.device)
    out = Path(args.out)
    for part in args.parts:
        log(f"part {part}")
        value = {"timing": part_timing, "curve": part_curve, "profile": part_profile}[part](pipe, args)
        if args.plots and part in ("timing", "curve"):
            Path(args.plots).mkdir(parents=True, exist_ok=True)
            (plot_timing if part == "timing" else plot_curve)(Path(args.plots) / f"speed_{part}.png", value)
        write_section(out, part, value, args)
    print(out)


if __name__ == "__main__":
    main()
