"""`vidm data prepare`: decode a dataset once into uint8 .npy videos at the training resolution.

Layout of a prepared split, read by the `prepared` source (sources.py):
    OUT/<split>/index.json                     settings, class names, videos (path, frames, label), failures
    OUT/<split>/videos/<path in the dataset>.npy   uint8 (T, R, R, 3), resized and center-cropped once

Training then reads memory-mapped arrays instead of decoding video. The run is resumable: every array
is written under a temporary name and renamed, so an existing array is complete and is not redone;
the index is rewritten atomically at the start and the end. Videos that cannot be read are skipped,
and counted and named in the printed summary and in the index.
"""
from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..atomic import atomic_path
from ..config import load_json, save_json
from ..errors import VidmError
from ..video_io import fit_frames
from .datasets import DATASETS, VideoList, list_videos, read_checked

INDEX_NAME = "index.json"
FORMAT = 1
# Settings an existing prepared split must share with a new run that adds to it.
SETTINGS = ("dataset", "split", "fold", "resolution", "max_frames")


def array_name(listing: VideoList, path: Path) -> str:
    """Where a video's array goes, relative to the split folder; the source suffix stays, so it is unique."""
    return f"videos/{path.relative_to(listing.root).as_posix()}.npy"


def load_index(folder: str | os.PathLike) -> dict:
    """The index of a prepared split, checked to be one."""
    path = Path(folder) / INDEX_NAME
    if not path.is_file():
        raise VidmError(f"{folder} is not a prepared dataset split (no {INDEX_NAME}): run `vidm data prepare`")
    index = load_json(path)
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise VidmError(f"{path}: not a vidm index of format {FORMAT}")
    return index


def prepare_one(source: str, target: str, resolution: int, max_frames: int) -> tuple[int, str | None]:
    """Decode, fit and save one video; returns (frames, None), or (0, error) when it cannot be read."""
    try:
        frames = read_checked(source)
    except VidmError as e:
        return 0, str(e)
    if max_frames:
        frames = frames[:max_frames]
    frames = fit_frames(frames, resolution, 3)
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        np.save(f, frames)
    return len(frames), None


def _worker_init() -> None:
    cv2.setNumThreads(1)  # the pool supplies the parallelism; cv2's own threads would oversubscribe


def _run(jobs: list[tuple[str, str]], resolution: int, max_frames: int, workers: int,
         progress: bool) -> dict[str, tuple[int, str | None]]:
    """Results per source path, from `workers` processes (spawned: forking a process with torch is unsafe)."""
    bar = tqdm(total=len(jobs), desc="preparing", unit="video", disable=not progress)
    results = {}
    if workers <= 1:
        for source, target in jobs:
            results[source] = prepare_one(source, target, resolution, max_frames)
            bar.update(1)
    else:
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init) as pool:
            futures = {pool.submit(prepare_one, s, t, resolution, max_frames): s for s, t in jobs}
            for future in concurrent.futures.as_completed(futures):
                results[futures[future]] = future.result()
                bar.update(1)
    bar.close()
    return results


def _check_settings(folder: Path, settings: dict) -> None:
    """Refuse to mix a new run into a split prepared with other settings."""
    if not (folder / INDEX_NAME).exists():
        return
    old = load_index(folder)
    changed = [k for k in SETTINGS if old.get(k) != settings[k]]
    if changed:
        raise VidmError(f"{folder} was prepared with other settings "
                        f"({', '.join(f'{k}={old.get(k)!r}' for k in changed)}): choose another --out")


def prepare(dataset: str, root: str | os.PathLike, out: str | os.PathLike, resolution: int,
            split: str | None = None, fold: int = 1, workers: int = 1, max_frames: int = 0,
            progress: bool = True) -> dict:
    """Prepare one split of a dataset under out/<split>/ and return its index; prints a summary."""
    if resolution < 8:
        raise VidmError(f"resolution must be at least 8, got {resolution}")
    if max_frames < 0 or workers < 1:
        raise VidmError(f"max_frames must be >= 0 and workers >= 1, got {max_frames} and {workers}")
    listing = list_videos(dataset, root, split, fold)
    folder = Path(out) / listing.split
    settings = {"dataset": dataset, "split": listing.split, "fold": fold if dataset == "ucf101" else None,
                "resolution": resolution, "max_frames": max_frames}
    _check_settings(folder, settings)
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("videos/**/.*.tmp"):  # left by an interrupted run
        stale.unlink()
    index = {"format": FORMAT, **settings, "root": str(Path(root).resolve()), "classes": listing.classes,
             "complete": False, "videos": [], "failed": []}
    save_json(index, folder / INDEX_NAME)

    targets = {str(item.path): str(folder / array_name(listing, item.path)) for item in listing.items}
    jobs = [(s, t) for s, t in targets.items() if not Path(t).exists()]
    results = _run(jobs, resolution, max_frames, workers, progress)
    for item in listing.items:
        name = array_name(listing, item.path)
        frames, error = results.get(str(item.path), (None, None))
        if error is not None:
            index["failed"].append({"source": item.path.relative_to(listing.root).as_posix(), "error": error})
            continue
        if frames is None:  # done by an earlier run: the header says how long it is
            frames = np.load(folder / name, mmap_mode="r").shape[0]
        index["videos"].append({"path": name, "frames": frames, "label": item.label})
    index.update(complete=True, new=len(jobs) - len(index["failed"]),
                 reused=len(listing.items) - len(jobs))
    save_json(index, folder / INDEX_NAME)
    print(summary(index, folder))
    if not index["videos"]:
        raise VidmError(f"no video of {root} could be prepared; see {folder / INDEX_NAME}")
    return index


def summary(index: dict, folder: Path) -> str:
    """A few lines: what was done, and every video that was skipped and why."""
    lines = [f"prepared {len(index['videos'])} {index['dataset']} videos ({index['split']}) at "
             f"{index['resolution']}px in {folder}: {index['new']} new, {index['reused']} already done, "
             f"{len(index['failed'])} skipped as unreadable"]
    lines += [f"  skipped {f['source']}: {f['error']}" for f in index["failed"]]
    return "\n".join(lines)


# --- command line ---

def cmd_prepare(args) -> None:
    prepare(args.dataset, args.root, args.out, args.resolution, split=args.split, fold=args.fold,
            workers=args.workers, max_frames=args.max_frames)


def register(data_subparsers) -> None:
    """Adds `prepare` to the `vidm data` subcommands."""
    p = data_subparsers.add_parser(
        "prepare", help="decode a dataset once into .npy videos at a training resolution",
        description="Decode a dataset's videos once, resized and center-cropped, into OUT/<split>/; "
                    "train on it with data.dataset 'prepared' and data.root OUT. Reruns skip finished videos.")
    p.add_argument("dataset", choices=DATASETS)
    p.add_argument("--root", required=True, help="the dataset as downloaded (see docs/datasets.md for layouts)")
    p.add_argument("--out", required=True, help="output folder; the split goes to OUT/<split>/")
    p.add_argument("--resolution", type=int, required=True, help="side of the square frames, e.g. 128")
    p.add_argument("--split", default=None,
                   help="train (default) or test; UCF-101 also all, CLEVRER also validation; "
                        "folder: all (default) or a subfolder's name")
    p.add_argument("--fold", type=int, default=1, help="UCF-101 split list 1, 2 or 3 (default 1)")
    p.add_argument("--workers", type=int, default=1, help="decoding processes (default 1)")
    p.add_argument("--max-frames", type=int, default=0,
                   help="keep only each video's first N frames, to bound disk use (default 0: all)")
    p.set_defaults(func=cmd_prepare)
