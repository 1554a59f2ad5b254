"""What every measure is given: the model, the dataset, the set sizes, the settings and where plots go."""
from __future__ import annotations

import dataclasses
import functools
import sys
import time
from pathlib import Path
from typing import Any

import torch

from ..pipeline import VIDMPipeline


@dataclasses.dataclass(frozen=True)
class Sizes:
    """How many videos each measure uses: a full run, or a quick one that checks a model in minutes."""

    prediction: int  # 10 -> 10 test sequences
    identity: int  # 64-frame videos from a real first frame, and as many from scratch
    accuracy_videos: int  # real test videos (20 frames each) the classifier's accuracy is measured on
    first_frames: int  # generated and real first frames
    frechet: int  # videos per set, proxy Fréchet distance
    fvd: int  # videos per set, FVD with a real detector
    speed_frames: int  # frames per timed video
    speed_min_seconds: float  # timed runs repeat until they took this long (median reported)
    memory_lengths: tuple[int, ...]  # frames streamed, one fresh process each
    memory_steps: int | None  # most steps per frame while streaming (None: the model's default)


FULL = Sizes(prediction=1000, identity=128, accuracy_videos=500, first_frames=512, frechet=256, fvd=2048,
             speed_frames=64, speed_min_seconds=60.0, memory_lengths=(16, 1024), memory_steps=None)
# Peak memory does not depend on the steps per frame; 2 steps make streaming 1,024 frames quick.
QUICK = Sizes(prediction=16, identity=8, accuracy_videos=500, first_frames=32, frechet=8, fvd=16,
              speed_frames=16, speed_min_seconds=0.0, memory_lengths=(16, 1024), memory_steps=2)


@dataclasses.dataclass
class Bench:
    """The run's context; measures read it and write plots into `folder`."""

    pipe: VIDMPipeline
    model_dir: Path
    dataset: Any  # datasets.MovingMNISTSet or datasets.PreparedSet
    sizes: Sizes
    quick: bool
    steps: int  # denoising steps per frame of the quality measures
    sampler: str
    seed: int
    detector: Any  # vidm.i3d.Detector, or None: FVD is skipped
    device: torch.device
    threads: int
    folder: Path  # the report's temporary folder
    start: float = dataclasses.field(default_factory=time.perf_counter)

    def log(self, message: str) -> None:
        """Progress on stderr, with the time since the run started."""
        print(f"[{time.perf_counter() - self.start:6.0f} s] {message}", file=sys.stderr, flush=True)

    @functools.cached_property
    def classifier(self) -> tuple[torch.nn.Module, dict]:
        """The pinned digit classifier and what it is: weights file, sha256, accuracy on real test frames."""
        from . import digit_classifier

        net = digit_classifier.load()
        self.log(f"digit classifier: accuracy on {self.sizes.accuracy_videos * 20} real test frames")
        info = {"weights": digit_classifier.WEIGHTS.name, "sha256": digit_classifier.weights_sha256(),
                **digit_classifier.exact_set_accuracy(net, self.sizes.accuracy_videos)}
        return net, info
