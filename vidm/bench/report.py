"""The report folder: report.md (tables, and the plots it shows) and results.json (every number).

`--out NAME.md` writes the report as NAME.md and its folder, without report.md, as NAME/ beside it
(so that a doc page such as docs/benchmarks.md can be the report itself). Everything is written into a
hidden temporary folder beside the target and renamed onto it at the end, so a run that fails or is
stopped leaves no half-written report, and a finished one replaces the last.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import VidmError

FORMAT = 1  # of results.json
TITLE = "# vidm bench:"  # report.md's first line, which marks a file --out may replace


@dataclasses.dataclass
class Section:
    """What one measure contributes: its numbers, its part of report.md, and the plots it wrote."""

    name: str  # key in results.json
    title: str  # heading in report.md
    results: dict
    markdown: str
    plots: list[str] = dataclasses.field(default_factory=list)  # file names in the report folder


def jsonable(x):
    """numpy, paths and non-finite floats -> plain JSON values (NaN and inf -> null)."""
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return jsonable(x.tolist())
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, (np.integer, np.bool_)):
        return x.item()
    if isinstance(x, os.PathLike):
        return str(x)
    return x


def locations(out: str | os.PathLike) -> tuple[Path, Path]:
    """(the folder of results.json and the plots, the report's markdown file) for --out."""
    out = Path(out)
    return (out.with_suffix(""), out) if out.suffix == ".md" else (out, out / "report.md")


def plot_prefix(out: str | os.PathLike) -> str:
    """How report.md reaches the plots: beside them in the folder, or from NAME.md into NAME/."""
    folder, markdown = locations(out)
    return "" if markdown.parent == folder else f"{folder.name}/"


def check_out(out: Path) -> None:
    """The targets may be new, empty, or an earlier report (which is replaced); nothing else is overwritten."""
    folder, markdown = locations(out)
    if folder.exists() and not folder.is_dir():
        raise VidmError(f"--out {folder} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not (folder / "results.json").is_file():
        raise VidmError(f"--out {folder} is a folder that holds something other than a vidm bench report: "
                        "choose a new or empty folder")
    if markdown.parent != folder and markdown.exists() and not is_report(markdown):
        raise VidmError(f"--out {markdown} holds something other than a vidm bench report: choose a new file name")


def is_report(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, errors="replace") as f:
        return f.readline().startswith(TITLE)


@contextmanager
def report_folder(out: Path) -> Iterator[Path]:
    """Yields a temporary folder to write the report into; when the block ends it becomes `out` (or NAME/,
    its report.md then moved to NAME.md)."""
    check_out(out)
    out, markdown = locations(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            old = out.with_name(f".{out.name}.old.{os.getpid()}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old)
        else:
            tmp.rename(out)
        if markdown.parent != out:
            os.replace(out / "report.md", markdown)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_montage(path, rows: list[tuple[str, np.ndarray]], columns: list[str], gap: int = 2) -> None:
    """A grid of grayscale frames, one labelled row per (label, uint8 frames (C, H, W)), in one image."""
    plt = pyplot()
    h, w = rows[0][1].shape[1:]
    grid = np.full((len(rows) * (h + gap) - gap, len(columns) * (w + gap) - gap), 255, np.uint8)
    for r, (_, frames) in enumerate(rows):
        for c, frame in enumerate(frames):
            grid[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = frame
    fig, ax = plt.subplots(figsize=(0.75 * len(columns) + 1.2, 0.75 * len(rows) + 0.4))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    ax.set_xticks([c * (w + gap) + w / 2 for c in range(len(columns))], columns, fontsize=7)
    ax.set_yticks([r * (h + gap) + h / 2 for r in range(len(rows))], [label for label, _ in rows], fontsize=7)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.savefig(path, dpi=100, bbox_inches="tight", pad_inches=0.05)  # room for the row labels
    plt.close(fig)


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write(folder: Path, meta: dict, sections: list[Section], skipped: dict[str, str], plots: str = "") -> None:
    """results.json and report.md into `folder` (the temporary report folder); `plots` prefixes the plots' links."""
    results = {"format": FORMAT, **meta, "measures": {s.name: s.results for s in sections}, "skipped": skipped}
    (folder / "results.json").write_text(json.dumps(jsonable(results), indent=2) + "\n")
    (folder / "report.md").write_text(render(meta, sections, skipped, plots))


def render(meta: dict, sections: list[Section], skipped: dict[str, str], plots: str = "") -> str:
    model = meta["model"]
    lines = [f"{TITLE} {Path(model['folder']).name}", ""]
    if meta["quick"]:
        lines += ["**Quick run** (`--quick`): small sets, to check a model while it trains; the numbers are "
                  "noisy and not comparable with a full run's.", ""]
    hashes = ", ".join(f"{k} `{v[:12]}`" if v else f"{k} -" for k, v in model["sha256"].items())
    m = meta["machine"]
    lines += [markdown_table(["", ""], [
        ["command", f"`{meta['command']}`"],
        ["model", f"`{model['folder']}` (sha256 of the weights: {hashes})"],
        ["dataset", meta["dataset"]["description"]],
        ["commit", f"`{meta['commit']}`" if meta["commit"] else "not a git checkout"],
        ["machine", f"{m['cpu']}, {m['cores']} cores, {m['device']}"
                    + (f" ({m['gpu_name']})" if m["gpu_name"] else "")],
        ["torch, threads", f"{m['torch']}, {meta['threads']} thread{'s' if meta['threads'] > 1 else ''}"],
        ["date", meta["date"]],
        ["took", f"{meta['seconds']:.0f} s"],
    ]), ""]
    if "digit_classifier" in meta:
        c = meta["digit_classifier"]
        lines += [f"Digits are read by the pinned classifier `vidm/bench/{c['weights']}` (sha256 "
                  f"`{c['sha256'][:12]}`), which names exactly the digits drawn in "
                  f"**{c['exact_set_accuracy']:.1%}** of {c['test_frames']:,} real test frames "
                  "(touching digits are its main error): real videos are the ceiling of every identity score.", ""]
    for s in sections:
        lines += [f"## {s.title}", "", s.markdown.strip(), ""]
        lines += [f"![{s.title}]({plots}{p})" for p in s.plots]
        lines += [""] if s.plots else []
    if skipped:
        lines += ["## Skipped", ""] + [f"- **{name}**: {why}" for name, why in skipped.items()] + [""]
    return "\n".join(lines)
