"""Motion designs compared per CPU-hour: the same measures for every trained motion model, and one table.

`measure` puts a trained motion model beside a VAE and the shipped content model (a pipeline folder of
symlinks) and runs the ablation's fixed measures on it, each from real frames so that only the motion
model is measured; `table` gathers every measured run with its training cost (steps and CPU-hours from
the run's log.jsonl) into a markdown table and a plot of each measure against CPU-hours.

    python eval/ablation.py measure --name plain --motion runs/ablation/plain/motion
    python eval/ablation.py measure --name layers-5000 --motion runs/moving-mnist-64-layers/motion/step-5000
    python eval/ablation.py measure --name plain-eq --motion runs/ablation/plain-eq/motion --vae runs/ablation/vae-eq/vae
    python eval/ablation.py table
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from common import RESULTS, ROOT, log
from vidm.config import save_json

OUT = RESULTS / "ablation"
SHIPPED = ROOT / "checkpoints" / "moving-mnist-64"
# (file, script, arguments): 5 sampling steps keep the cost of a measure small beside the training runs
# (trailing spacing; 5-step 10 -> 10 MSE of the shipped model 125.4 against 126.2 at 20 steps' spacing).
MEASURES = [
    ("quality", "quality.py", ["--num", "200", "--best-of", "1", "--steps", "5", "--fvd-videos", "0"]),
    ("quality_mean", "quality.py", ["--num", "200", "--best-of", "1", "--steps", "0", "--fvd-videos", "0"]),
    ("overlap", "overlap.py", ["--num", "256", "--steps", "5"]),
    ("digits", "digits.py", ["--videos", "128", "--frames", "64", "--steps", "5", "--first-frame", "real"]),
    ("identity", "identity.py", ["--num", "128", "--steps", "5"]),
]


def pipeline_folder(tmp: Path, vae: Path, content: Path, motion: Path) -> Path:
    """A model folder of symlinks to the three stages' folders."""
    folder = tmp / "model"
    folder.mkdir()
    for name, source in (("vae", vae), ("content", content), ("motion", motion)):
        (folder / name).symlink_to(source.resolve())
    return folder


def has_mean(motion: Path) -> bool:
    """Whether the motion model has a mean to sample at 0 steps: a layered model's composite."""
    return json.loads((motion / "config.json").read_text())["config"].get("layers") is not None


def training_cost(motion: Path, steps: int | None, cpu_hours: float | None) -> dict:
    """Steps, CPU-hours and wall seconds at the run's last log line (the weights' step); given ones for a
    model without its log (the shipped one)."""
    if steps is not None:
        return {"steps": steps, "cpu_hours": cpu_hours, "wall_seconds": None, "final_loss": None, "loss_curve": []}
    snapshot = re.fullmatch(r"step-(\d+)", motion.name)  # a run's snapshot: its run's log, up to its step
    log = (motion.parent if snapshot else motion) / "log.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    if snapshot:
        lines = [r for r in lines if r["step"] <= int(snapshot.group(1))]
    last = lines[-1]
    return {"steps": last["step"], "cpu_hours": last.get("cpu_hours"), "wall_seconds": last["seconds"],
            "final_loss": last["loss"], "loss_curve": [(r["step"], r.get("cpu_hours"), r["loss"]) for r in lines]}


def measure(args) -> None:
    out = OUT / args.name
    out.mkdir(parents=True, exist_ok=True)
    motion, vae = Path(args.motion), Path(args.vae)
    save_json({"name": args.name, "motion": str(motion), "vae": str(vae), **training_cost(motion, args.steps, args.cpu_hours)},
              out / "training.json")
    with tempfile.TemporaryDirectory(prefix="vidm-ablation-") as tmp:
        model = pipeline_folder(Path(tmp), vae=vae, content=SHIPPED / "content", motion=motion)
        for name, script, extra in MEASURES:
            if name == "quality_mean" and not has_mean(motion):
                continue  # the mean alone (--steps 0) needs layers
            if name in args.skip:
                continue
            cmd = [sys.executable, str(ROOT / "eval" / script), "--model", str(model), "--threads", str(args.threads),
                   "--out", str(out / f"{name}.json"), *extra]
            cmd += ["--plots", ""] if script == "quality.py" else ["--plot", ""] if script == "digits.py" else []
            log(f"{args.name}: {name}")
            subprocess.run(cmd, check=True, cwd=ROOT / "eval")


def row(folder: Path) -> dict | None:
    """The table's numbers for one measured run (None where a measure is missing)."""
    def load(name):
        path = folder / f"{name}.json"
        return json.loads(path.read_text()) if path.is_file() else None

    training, quality, mean, overlap, digits, identity = (load(n) for n in ("training", "quality", "quality_mean",
                                                                            "overlap", "digits", "identity"))
    if training is None:
        return None
    r = {"name": folder.name, "steps": training["steps"], "cpu_hours": training["cpu_hours"],
         "steps_per_cpu_hour": training["steps"] / training["cpu_hours"] if training["cpu_hours"] else None,
         "loss_curve": training.get("loss_curve", [])}
    r["mse_sample"] = quality["prediction"]["model"]["mse"]["mean"] if quality else None
    r["mse_mean"] = mean["prediction"]["model"]["mse"]["mean"] if mean else None
    for group in ("cross", "apart"):
        per = overlap["groups"][group]["model_kept_per_future_frame"] if overlap else None
        for t in (1, 10, 20):
            r[f"{group}_t{t}"] = per[t - 1] if per else None
    if digits:
        gen = digits["generated"]
        r |= {"digits_mean": gen["kept_mean_over_frames"], "digits_frame63": gen["kept_at"].get("frame_63"),
              "ink": gen.get("frames_keeping_half_the_ink")}
    if identity:
        r |= {f"identity_{f}": identity["kept"].get(str(f)) for f in (20, 63)}
    return r


COLUMNS = [("name", "run", "{}"), ("steps", "steps", "{:,}"), ("cpu_hours", "CPU-h", "{:.2f}"),
           ("mse_sample", "10->10 MSE sample", "{:.1f}"), ("mse_mean", "mean", "{:.1f}"),
           ("cross_t1", "cross t+1", "{:.0%}"), ("cross_t10", "t+10", "{:.0%}"), ("cross_t20", "t+20", "{:.0%}"),
           ("apart_t1", "apart t+1", "{:.0%}"), ("apart_t10", "t+10", "{:.0%}"), ("apart_t20", "t+20", "{:.0%}"),
           ("digits_mean", "real frame 0: kept, mean of 64", "{:.1%}"), ("digits_frame63", "frame 63", "{:.1%}"),
           ("ink", "frames keeping half the ink", "{:.0%}"),
           ("identity_20", "10 real frames: own digit found at frame 20", "{:.0%}"), ("identity_63", "frame 63", "{:.0%}")]


def in_arm(name: str, arm: str) -> bool:
    """Whether a measured run is the arm itself or one of its snapshots, named ARM-STEP."""
    return name == arm or (name.startswith(arm + "-") and name[len(arm) + 1:].isdigit())


def table(args) -> None:
    """Every measured run, or with --arms each arm's snapshots (named ARM-STEP) (one line each in the plot,
    in CPU-hour order): table.md and per_cpu_hour.png, or comparison.md and comparison.png."""
    rows = [r for r in (row(f) for f in sorted(OUT.iterdir()) if f.is_dir()) if r]
    if args.arms:
        arm_of = {r["name"]: i for r in rows for i, a in enumerate(args.arms) if in_arm(r["name"], a)}
        rows = sorted((r for r in rows if r["name"] in arm_of), key=lambda r: (arm_of[r["name"]], r["cpu_hours"] or 0))
    lines = ["| " + " | ".join(title for _, title, _ in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        cells = [fmt.format(r[key]) if r.get(key) is not None else "-" for key, _, fmt in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    text = "\n".join(lines) + "\n"
    name = "comparison" if args.arms else "table"
    (OUT / f"{name}.md").write_text(text)
    print(text)
    plot(rows, OUT / ("comparison.png" if args.arms else "per_cpu_hour.png"), args.arms)


def plot(rows: list[dict], path: Path, arms: list[str] | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = [("mse_sample", "10->10 MSE (sample, 5 steps)"), ("cross_t10", "crossing digits kept at t+10"),
                ("apart_t10", "apart digits kept at t+10"), ("digits_mean", "kept over 64 frames, real frame 0"),
                ("identity_63", "own digit found at frame 63, 10 real frames")]
    fig, axes = plt.subplots(1, len(measures) + 1, figsize=(4 * (len(measures) + 1), 3.3))
    for arm in arms or []:  # each arm's snapshots as one line against CPU-hours
        own = [r for r in rows if in_arm(r["name"], arm)]
        for ax, (key, _) in zip(axes[1:], measures):
            points = [(r["cpu_hours"], r[key]) for r in own if r.get(key) is not None]
            if points:
                ax.plot(*zip(*points), marker="o", label=arm)
        curve = max(own, key=lambda r: r["cpu_hours"] or 0)["loss_curve"] if own else []
        axes[0].plot([c[1] for c in curve], [c[2] for c in curve], label=arm)
    for r in rows if not arms else []:
        curve = r["loss_curve"]
        axes[0].plot([c[1] for c in curve], [c[2] for c in curve], label=r["name"])
        for ax, (key, _) in zip(axes[1:], measures):
            if r.get(key) is not None:
                ax.scatter(r["cpu_hours"], r[key], label=r["name"])
    axes[0].set_title("training loss", fontsize=9)
    axes[0].set_yscale("log")
    for ax, (_, title) in zip(axes[1:], measures):
        ax.set_title(title, fontsize=9)
    for ax in axes:
        ax.set_xlabel("CPU-hours")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    m = sub.add_parser("measure", help="run the fixed measures on one trained motion model")
    m.add_argument("--name", required=True)
    m.add_argument("--motion", required=True, help="the run's motion folder (config.json, model.safetensors, log.jsonl)")
    m.add_argument("--vae", default=str(SHIPPED / "vae"), help="the VAE it was trained on (default: the shipped)")
    m.add_argument("--steps", type=int, help="training steps of a model without log.jsonl")
    m.add_argument("--cpu-hours", type=float, help="its training CPU-hours")
    m.add_argument("--threads", type=int, default=1)
    m.add_argument("--skip", nargs="*", default=[], help="measures to leave out")
    t = sub.add_parser("table", help="gather the measured runs into eval/results/ablation/table.md and a plot")
    t.add_argument("--arms", nargs="*", help="compare these runs' snapshots (named ARM-...): comparison.md/.png")
    args = p.parse_args()
    measure(args) if args.command == "measure" else table(args)


if __name__ == "__main__":
    main()
