"""Content models compared per CPU-hour: first frames read as two digits, translation ceiling, speed.

`measure` puts a trained content model beside its VAE (default: the shipped one) and the shipped motion model (a pipeline folder of
symlinks) and runs `eval/first_frames.py` on it (512 first frames, 20 ancestral ddpm steps); `speed` times
each measured model's first frames alone (batch 64, 20 steps, one thread, the models interleaved, on an
idle machine); `table` gathers them with each run's training cost (steps and CPU-hours from its
log.jsonl) into eval/results/content/table.md. `video` times whole 64-frame videos (first frame, 63 motion
frames at `vidm generate`'s defaults, VAE decode) with a candidate content model against a baseline (default: the shipped one),
at batch 1 and 16, all cores, the settings interleaved on an idle machine (eval/results/content/video_speed.json).

    python eval/content_variants.py measure --name attn8 --content runs/content/attn8/content
    python eval/content_variants.py speed
    python eval/content_variants.py table
    python eval/content_variants.py video --content runs/moving-mnist-64/content
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ablation import SHIPPED, pipeline_folder, training_cost
from common import RESULTS, ROOT, CpuMonitor, log, wait_for_idle_cpu, write_result
from vidm.config import save_json

OUT = RESULTS / "content"
FIRST_FRAMES = ["--num", "512", "--steps", "20", "--sampler", "ddpm"]
SPEED = {"batch": 64, "steps": 20, "sampler": "ddpm", "threads": 1}


def measure(args) -> None:
    out = OUT / args.name
    out.mkdir(parents=True, exist_ok=True)
    content = Path(args.content)
    save_json({"name": args.name, "content": str(content), "vae": args.vae,
               **training_cost(content, args.steps, args.cpu_hours)}, out / "training.json")
    with tempfile.TemporaryDirectory(prefix="vidm-content-") as tmp:
        model = pipeline_folder(Path(tmp), vae=Path(args.vae), content=content, motion=SHIPPED / "motion")
        cmd = [sys.executable, str(ROOT / "eval" / "first_frames.py"), "--model", str(model),
               "--threads", str(args.threads), "--out", str(out / "first_frames.json"), *FIRST_FRAMES]
        log(f"{args.name}: first frames")
        subprocess.run(cmd, check=True, cwd=ROOT / "eval")


def first_frame_seconds(content: Path, repeats: int) -> list[float]:
    """Seconds for SPEED's batch of first latents (no VAE: the content model's own cost), `repeats` times."""
    import torch

    from vidm.checkpoint import load_model
    from vidm.sampling import get_sampler

    torch.set_num_threads(SPEED["threads"])
    model = load_model(content, "content", "cpu").eval()
    shape = (SPEED["batch"], model.config.unet.in_channels, 16, 16)
    sampler = get_sampler(SPEED["sampler"])
    times = []
    for i in range(repeats + 1):  # the first call warms up
        x = torch.randn(shape, generator=torch.Generator().manual_seed(i))
        start = time.perf_counter()
        with torch.inference_mode():
            sampler(model.denoiser(), x, model.diffusion.alphas_cumprod, SPEED["steps"])
        times.append(time.perf_counter() - start)
    return times[1:]


def speed(args) -> None:
    """Each measured model in turn, --rounds times over, each round after the machine is idle."""
    runs = {}
    for folder in sorted(OUT.iterdir()):
        training = folder / "training.json"
        if training.is_file():
            # recorded as given to `measure`, which runs in eval/
            runs[folder.name] = ROOT / "eval" / json.loads(training.read_text())["content"]
    seconds = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, content in runs.items():
            wait_for_idle_cpu()
            monitor = CpuMonitor()
            seconds[name] += first_frame_seconds(content, 2)
            log(f"{name}: {SPEED['batch'] / min(seconds[name][-2:]):.1f} first frames/s "
                f"(other processes {monitor.other_percent():.0f}% of the CPU)")
    result = {"setup": SPEED, "first_frames_per_second": {n: SPEED["batch"] / statistics.median(s)
                                                          for n, s in seconds.items()}, "seconds": seconds}
    print(write_result(OUT / "speed.json", result, args))


def row(folder: Path, speeds: dict) -> dict | None:
    training, first = (folder / "training.json"), (folder / "first_frames.json")
    if not (training.is_file() and first.is_file()):
        return None
    training, first = json.loads(training.read_text()), json.loads(first.read_text())
    ceiling = first["generated"]["translation_ceiling"]
    return {"name": folder.name, "steps": training["steps"], "cpu_hours": training["cpu_hours"],
            "two_digits": first["generated"]["digits"]["2"], "one_digit": first["generated"]["digits"]["1"],
            "ceiling": "{:.0%} / {:.0%} / {:.0%}".format(ceiling["1px"], ceiling["2px"], ceiling["4px"]),
            "speed": speeds.get(folder.name)}


COLUMNS = [("name", "run", "{}"), ("steps", "steps", "{:,}"), ("cpu_hours", "CPU-h", "{:.2f}"),
           ("two_digits", "two digits", "{:.1%}"), ("one_digit", "one digit", "{:.1%}"),
           ("ceiling", "ceiling 1 / 2 / 4 px", "{}"), ("speed", "first frames/s", "{:.1f}")]


def video_settings(baseline: Path, candidate: Path) -> dict:
    """The first-frame settings timed by `video`: the baseline content model at 100 dpmpp_2m steps (`vidm
    generate`'s first frame before CONTENT_SAMPLER x CONTENT_STEPS) and at today's default, and the candidate."""
    from vidm.pipeline import CONTENT_SAMPLER, CONTENT_STEPS

    return {"baseline, 100 dpmpp_2m": (baseline, "dpmpp_2m", 100),
            f"baseline, {CONTENT_STEPS} {CONTENT_SAMPLER}": (baseline, CONTENT_SAMPLER, CONTENT_STEPS),
            f"candidate, {CONTENT_STEPS} {CONTENT_SAMPLER}": (candidate, CONTENT_SAMPLER, CONTENT_STEPS)}


def video(args) -> None:
    """Frames/s of whole videos, each setting in turn, --rounds times over, each run after the machine is idle."""
    import torch

    from vidm.pipeline import VIDMPipeline

    settings = video_settings(Path(args.baseline), Path(args.content))
    pipes = {}
    with tempfile.TemporaryDirectory(prefix="vidm-video-speed-") as tmp:
        for i, (name, (content, _, _)) in enumerate(settings.items()):
            (Path(tmp) / str(i)).mkdir()
            folder = pipeline_folder(Path(tmp) / str(i), vae=SHIPPED / "vae", content=content, motion=SHIPPED / "motion")
            pipes[name] = VIDMPipeline.from_pretrained(folder)
    seconds, fps = {}, {}
    for b in args.batches:
        for name, pipe in pipes.items():  # warm-up: the first call of a shape pays for allocations
            pipe(num_videos=b, num_frames=2, content_sampler=settings[name][1], content_steps=2, seed=0)
        keys = {name: f"{name} @ batch {b}" for name in pipes}
        for _ in range(args.rounds):
            for name, pipe in pipes.items():
                _, sampler, steps = settings[name]
                if not args.no_wait:
                    wait_for_idle_cpu()
                monitor = CpuMonitor()
                start = time.perf_counter()
                pipe(num_videos=b, num_frames=args.frames, content_sampler=sampler, content_steps=steps, seed=0)
                seconds.setdefault(keys[name], []).append(time.perf_counter() - start)
                log(f"{keys[name]}: {b * args.frames / seconds[keys[name]][-1]:.2f} frames/s "
                    f"(other processes {monitor.other_percent():.0f}% of the CPU)")
        fps.update({key: b * args.frames / statistics.median(seconds[key]) for key in keys.values()})
    result = {"frames": args.frames, "waited_for_idle": not args.no_wait, "threads": torch.get_num_threads(),
              "baseline": str(args.baseline), "candidate": str(args.content), "frames_per_second": fps,
              "seconds": seconds}
    print(write_result(OUT / "video_speed.json", result, args))


def table(args) -> None:
    speed_file = OUT / "speed.json"
    speeds = json.loads(speed_file.read_text())["first_frames_per_second"] if speed_file.is_file() else {}
    rows = [r for r in (row(f, speeds) for f in sorted(OUT.iterdir()) if f.is_dir()) if r]
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        lines.append("| " + " | ".join(fmt.format(r[key]) if r.get(key) is not None else "-"
                                       for key, _, fmt in COLUMNS) + " |")
    text = "\n".join(lines) + "\n"
    (OUT / "table.md").write_text(text)
    print(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="first frames of one trained content model")
    m.add_argument("--name", required=True)
    m.add_argument("--content", required=True, help="the run's content folder (config.json, model.safetensors)")
    m.add_argument("--vae", default=str(SHIPPED / "vae"), help="the VAE it was trained on (default: the shipped)")
    m.add_argument("--steps", type=int, help="training steps of a model without log.jsonl")
    m.add_argument("--cpu-hours", type=float, help="its training CPU-hours")
    m.add_argument("--threads", type=int, default=1)
    s = sub.add_parser("speed", help="time every measured model's first frames (needs an idle machine)")
    s.add_argument("--rounds", type=int, default=2)
    sub.add_parser("table", help="gather the measured runs into eval/results/content/table.md")
    v = sub.add_parser("video", help="whole videos with a candidate content model against a baseline (idle machine)")
    v.add_argument("--content", required=True, help="the candidate's content folder")
    v.add_argument("--baseline", default=str(SHIPPED / "content"), help="the content folder it is timed against "
                   "(default: the shipped one)")
    v.add_argument("--frames", type=int, default=64)
    v.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    v.add_argument("--rounds", type=int, default=2)
    v.add_argument("--no-wait", action="store_true", help="do not wait for an idle CPU (smoke tests only)")
    args = p.parse_args()
    {"measure": measure, "speed": speed, "table": table, "video": video}[args.command](args)


if __name__ == "__main__":
    main()
