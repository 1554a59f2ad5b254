"""The measures `vidm bench` runs, in order, and the run itself.

Adding a measure is one function `measure(bench: Bench) -> Section` (see context.py and report.py) and
one line in MEASURES. Every input is checked (model folder, dataset, detector, report folder) before the
first measure starts, and the report appears only when every measure has finished.
"""
from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Callable

import torch

from ..errors import VidmError
from . import digit_identity, first_frames, frechet, identity_from_context, memory, prediction, speed
from .context import FULL, QUICK, Bench, Sizes
from .datasets import MOVING_MNIST
from .report import Section, check_out, plot_prefix, report_folder, write

PREPARED = "prepared"


@dataclasses.dataclass(frozen=True)
class Measure:
    name: str
    run: Callable[[Bench], Section]
    datasets: tuple[str, ...] = (MOVING_MNIST,)
    needs_detector: bool = False  # skipped, and the report says why, without --detector


MEASURES = (
    Measure("prediction", prediction.measure),
    Measure("digit_identity", digit_identity.measure),
    Measure("identity_from_context", identity_from_context.measure),
    Measure("first_frames", first_frames.measure),
    Measure("frechet_proxy", frechet.proxy_measure),
    Measure("fvd", frechet.fvd_measure, needs_detector=True),
    Measure("fvd", frechet.prepared_fvd_measure, datasets=(PREPARED,), needs_detector=True),
    Measure("speed", speed.measure, datasets=(MOVING_MNIST, PREPARED)),
    Measure("memory", memory.measure, datasets=(MOVING_MNIST, PREPARED)),
)


def load_detector(path: str | None, device):
    """The I3D from --detector, else $VIDM_I3D, else None (FVD skipped); a path that does not load is an error."""
    from ..i3d import ENV_VAR, load_detector as load

    path = path or os.environ.get(ENV_VAR)
    return load(path, device) if path else None


def run(out: str | os.PathLike, model: str | os.PathLike | None = None, dataset: str = MOVING_MNIST,
        quick: bool = False, detector: str | None = None, steps: int | None = None, sampler: str = "dpmpp_2m",
        seed: int = 0, device: str | None = None, threads: int | None = None, sizes: Sizes | None = None,
        command: str | None = None) -> Path:
    """Measures a model folder and writes its report folder `out` (or NAME.md and NAME/); returns `out`.
    `steps` per frame of the quality measures default to the model's own (its motion config's sample_steps)."""
    from . import provenance
    from ..pipeline import VIDMPipeline
    from ..sampling import get_sampler
    from .datasets import resolve

    start = time.perf_counter()
    out = Path(out)
    check_out(out)
    get_sampler(sampler)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise VidmError("vidm bench draws plots with matplotlib: pip install 'vidm[bench]'") from None
    if threads is not None:
        torch.set_num_threads(threads)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if model is None:
        from ..cli import default_model_dir

        model = default_model_dir()
    model_dir = Path(model)
    pipe = VIDMPipeline.from_pretrained(model_dir, device=device)
    steps = pipe.steps_per_frame(steps)
    data = resolve(dataset, pipe.resolution)
    i3d = load_detector(detector, device)
    sizes = sizes or (QUICK if quick else FULL)
    meta = provenance.record(model_dir, device, command) | {
        "dataset": data.describe(), "quick": quick, "settings": {"steps": steps, "sampler": sampler, "seed": seed},
        "sizes": dataclasses.asdict(sizes)}

    with report_folder(out) as folder:
        bench = Bench(pipe=pipe, model_dir=model_dir, dataset=data, sizes=sizes, quick=quick, steps=steps,
                      sampler=sampler, seed=seed, detector=i3d, device=device, threads=torch.get_num_threads(),
                      folder=folder)
        bench.log(f"vidm bench {model_dir} on {data.kind}{' (quick)' if quick else ''} -> {out}")
        sections, skipped, seconds = [], {}, {}
        for m in MEASURES:
            if data.kind not in m.datasets:
                continue
            if m.needs_detector and i3d is None:
                skipped[m.name] = frechet.SKIPPED_FVD
                continue
            t = time.perf_counter()
            sections.append(m.run(bench))
            seconds[m.name] = time.perf_counter() - t
            bench.log(f"{m.name}: done in {seconds[m.name]:.0f} s")
        if "classifier" in bench.__dict__:  # read by a measure: say which classifier, and how well it reads
            meta["digit_classifier"] = bench.classifier[1]
        meta |= {"seconds_per_measure": seconds, "seconds": time.perf_counter() - start}
        write(folder, meta, sections, skipped, plot_prefix(out))
    return out
