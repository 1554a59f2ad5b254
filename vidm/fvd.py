"""Fréchet Video Distance (Unterthiner et al. 2018) under StyleGAN-V's protocols (Skorokhodov et al. 2022).

`fvd2048_16f`, the protocol most papers report: I3D features (see i3d.py) of
- real: the first 2048 videos in sorted path order that have at least 16 frames, one random clip of
  16 consecutive frames from each (shorter videos are skipped and counted);
- fake: the first 16 frames of 2048 generated videos;
then float64 means and biased covariances, and FVD = ||mu_r - mu_g||^2 + Tr(S_r + S_g - 2 sqrtm(S_r S_g)).
Clip offsets are drawn from (seed, video index), so a number depends on the seed and the data only,
not on batch size or the number of processes. Real-set statistics are cached per dataset, protocol,
seed and detector file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import scipy.linalg
import torch
import torch.distributed as td
from tqdm import tqdm

from . import dist
from .atomic import atomic_path
from .config import save_json
from .errors import VidmError
from .i3d import ENV_VAR, INPUT_SIZE, Detector, load_detector
from . import video_io
from .video_io import VIDEO_SUFFIXES, read_video

DEFAULT_CACHE_DIR = "~/.cache/vidm/fvd"
CHECKPOINT_PARTS = ("vae", "content", "motion")  # a pipeline folder, as VIDMPipeline.save_pretrained writes
CACHE_VERSION = 1  # bump when the cached statistics would change for the same key


@dataclasses.dataclass(frozen=True)
class Protocol:
    """N videos, clips of `num_frames` frames taken every `stride` frames (StyleGAN-V's metric_main.py)."""

    name: str
    num_videos: int
    num_frames: int
    stride: int = 1

    @property
    def span(self) -> int:
        """Frames a real video needs to be kept (StyleGAN-V's discard_short_videos rule)."""
        return self.num_frames * self.stride

    @property
    def reach(self) -> int:
        """Frames from a clip's first to its last, inclusive."""
        return (self.num_frames - 1) * self.stride + 1


PROTOCOLS = {p.name: p for p in (
    Protocol("fvd2048_16f", 2048, 16),
    Protocol("fvd2048_128f", 2048, 128),
    Protocol("fvd2048_128f_subsample8f", 2048, 16, stride=8),  # 16 frames spread over 128
)}


def get_protocol(name: str) -> Protocol:
    if name not in PROTOCOLS:
        raise VidmError(f"unknown FVD protocol {name!r}: choose from {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name]


# --- the statistics ---

def feature_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> float64 mean (D,) and biased covariance (D, D), divided by N as in StyleGAN-V."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise VidmError(f"expected features (N, D) with N >= 1, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False, bias=True).reshape(x.shape[1], x.shape[1])


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 sqrtm(S1 S2)), in float64, with the real part of scipy's sqrtm."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    with warnings.catch_warnings():
        # with fewer videos than features the product is singular; StyleGAN-V silences this (disp=False)
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    return float(np.real(np.square(mu1 - mu2).sum() + np.trace(sigma1 + sigma2 - 2 * covmean)))


def fvd_from_features(real_features, fake_features) -> float:
    return frechet_distance(*feature_stats(real_features), *feature_stats(fake_features))


# --- which frames ---

def clip_start(length: int, protocol: Protocol, seed: int, index: int) -> int | None:
    """Start of the random clip of video `index` (seeded by seed and index); None if the video is too short.

    Offsets are uniform over every start whose clip fits, as StyleGAN-V's dataset draws them.
    """
    if length < protocol.span:
        return None
    return int(np.random.default_rng([seed, index]).integers(0, length - protocol.reach + 1))


def real_clip(video: np.ndarray, protocol: Protocol, seed: int, index: int) -> np.ndarray | None:
    """The protocol's clip of a real video (T, H, W, C), or None if it is too short."""
    start = clip_start(len(video), protocol, seed, index)
    return None if start is None else video[start:start + protocol.reach:protocol.stride]


def first_clip(video: np.ndarray, protocol: Protocol, name: str) -> np.ndarray:
    """The protocol's clip of a generated video: its first frames (every `stride`-th)."""
    if len(video) < protocol.reach:
        raise VidmError(f"{name}: {len(video)} frames, but {protocol.name} needs {protocol.reach}")
    return video[:protocol.reach:protocol.stride]


def find_videos(root: str | os.PathLike) -> list[Path]:
    """Videos under `root` in sorted path order: video files, .npy arrays and frame folders."""
    root = Path(root)
    if not root.is_dir():
        raise VidmError(f"not a folder of videos: {root}")
    found = video_io.find_videos(root)
    if not found:
        raise VidmError(f"{root}: no videos found ({', '.join(sorted(VIDEO_SUFFIXES | {'.npy'}))} files "
                        "or folders of frames)")
    return found


def is_checkpoint(path: str | os.PathLike) -> bool:
    return all((Path(path) / part).is_dir() for part in CHECKPOINT_PARTS)


# --- features, split across processes ---

LoadBatch = Callable[[Sequence[int]], list]  # indices -> uint8 clips (T, H, W, C), None where skipped


def embed(detector: Detector, clips: list[np.ndarray]) -> list[np.ndarray]:
    """Features of clips in one batch, or one at a time where their sizes differ."""
    if len({c.shape for c in clips}) == 1:
        return list(detector.features(np.stack(clips)))
    return [detector.features(c[None])[0] for c in clips]


def embed_share(detector: Detector, indices: Sequence[int], clips: list) -> dict:
    """index -> (features, clip (H, W)) for each loaded clip, None for each skipped one."""
    out = dict.fromkeys(indices)
    kept = [(i, c) for i, c in zip(indices, clips) if c is not None]
    if kept:
        features = embed(detector, [c for _, c in kept])
        out.update({i: (f, c.shape[1:3]) for (i, c), f in zip(kept, features)})
    return out


def all_gather(obj) -> list:
    if dist.world_size() == 1:
        return [obj]
    out = [None] * dist.world_size()
    td.all_gather_object(out, obj)
    return out


def extract_features(detector: Detector, count: int, load_batch: LoadBatch, limit: int, batch_size: int,
                     desc: str = "features") -> dict:
    """Features of the first `limit` usable items among `count`, in index order, and how many were skipped.

    Each process loads and embeds its share of every chunk of batch_size * world_size items; the results
    are gathered, so every process returns the same thing whatever the number of processes.
    """
    world, rank = dist.world_size(), dist.rank()
    features, used, skipped, sizes = [], [], 0, set()
    bar = tqdm(total=limit, desc=desc, unit="video", disable=not dist.is_main())
    start = 0
    while len(used) < limit and start < count:
        chunk = range(start, min(start + batch_size * world, count))
        mine = list(chunk[rank::world])
        try:
            part = (embed_share(detector, mine, load_batch(mine) if mine else []), None)
        except VidmError as e:  # gathered, so every process stops with the message instead of hanging
            part = ({}, str(e))
        results = {}
        for result, error in all_gather(part):
            if error:
                raise VidmError(error)
            results.update(result)
        for i in chunk:
            if len(used) == limit:
                break
            if results[i] is None:
                skipped += 1
                continue
            feature, size = results[i]
            features.append(feature)
            sizes.add(tuple(int(s) for s in size))
            used.append(i)
            bar.update(1)
        start = chunk.stop
    bar.close()
    return {"features": np.stack(features) if features else np.empty((0, 0)), "used": used,
            "skipped": skipped, "sizes": sorted(sizes)}


# --- real set ---

def cache_path(cache_dir: str | os.PathLike, root: Path, paths: list[Path], protocol: Protocol,
               num_videos: int, seed: int, detector: Detector) -> Path:
    """Statistics file keyed by dataset path and listing, protocol, video count, seed and detector."""
    listing = hashlib.sha256("\n".join(p.relative_to(root).as_posix() for p in paths).encode()).hexdigest()
    key = {"version": CACHE_VERSION, "root": str(root.resolve()), "listing": listing,
           "protocol": dataclasses.asdict(protocol), "num_videos": num_videos, "seed": seed,
           "detector": detector.identity}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return Path(cache_dir).expanduser() / f"{root.resolve().name}-{protocol.name}-n{num_videos}-{digest}.npz"


def save_stats(path: Path, stats: dict) -> None:
    """Writes the statistics npz via a temporary name, so a crash never leaves a truncated cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, mu=stats["mu"], sigma=stats["sigma"], videos=stats["videos"], skipped=stats["skipped"],
                 sizes=np.asarray(stats["sizes"], dtype=np.int64).reshape(-1, 2))


def load_stats(path: Path) -> dict:
    with np.load(path) as f:
        return {"mu": f["mu"], "sigma": f["sigma"], "videos": int(f["videos"]), "skipped": int(f["skipped"]),
                "sizes": [tuple(int(v) for v in s) for s in f["sizes"]]}


def real_loader(paths: list[Path], protocol: Protocol, seed: int) -> LoadBatch:
    return lambda indices: [real_clip(read_video(paths[i]), protocol, seed, i) for i in indices]


def real_stats(detector: Detector, root: str | os.PathLike, protocol: Protocol, num_videos: int, seed: int,
               batch_size: int, cache_dir: str | os.PathLike | None) -> dict:
    """Mean and covariance of the real set's features, from the cache when there."""
    root = Path(root)
    paths = find_videos(root)
    cache = cache_path(cache_dir, root, paths, protocol, num_videos, seed, detector) if cache_dir else None
    if cache is not None and all_gather(cache.is_file())[0]:  # rank 0 decides, so all processes agree
        return {**load_stats(cache), "cached": True, "cache": str(cache)}

    out = extract_features(detector, len(paths), real_loader(paths, protocol, seed), num_videos, batch_size,
                           desc="real videos")
    found = len(out["used"])
    if found < num_videos:
        hint = f"pass --num-videos {found} or add videos" if found >= 2 else "add longer videos"
        raise VidmError(f"{root}: only {found} of {len(paths)} videos have the {protocol.span} frames "
                        f"{protocol.name} needs ({out['skipped']} shorter ones skipped); {num_videos} "
                        f"requested: {hint}")
    mu, sigma = feature_stats(out["features"])
    stats = {"mu": mu, "sigma": sigma, "videos": found, "skipped": out["skipped"], "sizes": out["sizes"]}
    if cache is not None and dist.is_main():
        save_stats(cache, stats)
    return {**stats, "cached": False, "cache": str(cache) if cache else None}


# --- fake set ---

def video_folder_loader(paths: list[Path], protocol: Protocol) -> LoadBatch:
    return lambda indices: [first_clip(read_video(paths[i]), protocol, str(paths[i])) for i in indices]


def pipeline_loader(folder: Path, protocol: Protocol, seed: int, device, sample_kwargs: dict) -> LoadBatch:
    """Samples videos on the fly; video i uses seed + i, as VIDMPipeline does for a contiguous batch."""
    from .pipeline import VIDMPipeline  # lazy: FVD on video folders needs no model code

    pipe = VIDMPipeline.from_pretrained(folder, device=device)

    def load(indices):
        generators = [torch.Generator().manual_seed(seed + i) for i in indices]
        out = pipe(num_videos=len(indices), num_frames=protocol.reach, generator=generators, output_type="np",
                   **sample_kwargs)
        return [first_clip(video, protocol, f"generated video {i}") for i, video in zip(indices, out.frames)]

    return load


def fake_loader(fake: Path, protocol: Protocol, num_videos: int, seed: int, device,
                sample_kwargs: dict) -> tuple[LoadBatch, str]:
    """How to get the fake clips: from a folder of generated videos, or by sampling a model folder."""
    if is_checkpoint(fake):
        return pipeline_loader(fake, protocol, seed, device, sample_kwargs), "checkpoint"
    paths = find_videos(fake)
    if len(paths) < num_videos:
        raise VidmError(f"{fake}: {len(paths)} videos, but {num_videos} requested: pass --num-videos {len(paths)}")
    return video_folder_loader(paths, protocol), "videos"


# --- the metric ---

def compute_fvd(real: str | os.PathLike, fake: str | os.PathLike, detector: Detector,
                protocol: str = "fvd2048_16f", num_videos: int | None = None, seed: int = 0, batch_size: int = 8,
                cache_dir: str | os.PathLike | None = DEFAULT_CACHE_DIR, sample_kwargs: dict | None = None) -> dict:
    """FVD between a folder of real videos and a folder of generated videos (or a checkpoint folder).

    Returns the number with everything needed to compare it: protocol, video counts, skipped videos,
    detector file and hash, seed, world size and resolutions.
    """
    proto = get_protocol(protocol)
    num_videos = proto.num_videos if num_videos is None else num_videos
    if num_videos < 2 or batch_size < 1:
        raise VidmError(f"need --num-videos >= 2 and --batch-size >= 1, got {num_videos} and {batch_size}")
    for name, path in (("real", real), ("fake", fake)):
        if not Path(path).exists():
            raise VidmError(f"{name} videos not found: {path}")
    sample_kwargs = dict(sample_kwargs or {})
    # the fake side is checked first: the real side may take an hour when its statistics are not cached
    load_fake, source = fake_loader(Path(fake), proto, num_videos, seed, detector.device, sample_kwargs)
    r = real_stats(detector, real, proto, num_videos, seed, batch_size, cache_dir)
    f = extract_features(detector, num_videos, load_fake, num_videos, batch_size, desc="fake videos")
    mu, sigma = feature_stats(f["features"])
    return {
        "fvd": frechet_distance(r["mu"], r["sigma"], mu, sigma),
        "protocol": dataclasses.asdict(proto),
        "real": {"path": str(real), "videos": r["videos"], "skipped_short": r["skipped"],
                 "resolutions": [list(s) for s in r["sizes"]], "stats_cached": r["cached"], "cache": r["cache"]},
        "fake": {"path": str(fake), "source": source, "videos": len(f["used"]),
                 "resolutions": [list(s) for s in f["sizes"]], "sampling": sample_kwargs},
        "detector": {"file": detector.name, "sha256": detector.sha256[:16] if detector.sha256 else None,
                     "format": "torchscript" if detector.scripted else "InceptionI3d state dict",
                     "input_resolution": INPUT_SIZE},
        "seed": seed,
        "world_size": dist.world_size(),
    }


# --- command line ---

def cmd_fvd(args) -> None:
    device = dist.init()
    try:
        detector = load_detector(args.detector, device)
        sample_kwargs = {} if args.steps is None else {"num_inference_steps": args.steps}
        result = compute_fvd(args.real, args.fake, detector, args.protocol, args.num_videos, args.seed,
                             args.batch_size, args.cache_dir, sample_kwargs)
        if dist.is_main():
            print(f"FVD ({args.protocol}, {result['real']['videos']} real / {result['fake']['videos']} fake "
                  f"videos): {result['fvd']:.4f}")
            if args.out:
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                save_json(result, Path(args.out))
    finally:
        dist.cleanup()


def register(subparsers) -> None:
    """Adds `vidm fvd` to the command line's subparsers."""
    p = subparsers.add_parser("fvd", help="Fréchet Video Distance between real and generated videos",
                              description=__doc__.splitlines()[0])
    p.add_argument("--real", required=True, help="folder of real videos (files or frame folders, searched recursively)")
    p.add_argument("--fake", required=True, help="folder of generated videos, or a model folder to sample from")
    p.add_argument("--detector", default=None,
                   help=f"I3D weights: i3d_torchscript.pt or i3d_pretrained_400.pt (default: ${ENV_VAR})")
    p.add_argument("--protocol", default="fvd2048_16f", choices=list(PROTOCOLS))
    p.add_argument("--num-videos", type=int, default=None, help="videos per set (default: the protocol's 2048)")
    p.add_argument("--seed", type=int, default=0, help="seeds the real clips' offsets and the sampled videos")
    p.add_argument("--batch-size", type=int, default=8, help="videos per I3D forward pass, per process")
    p.add_argument("--steps", type=int, default=None, help="denoising steps when sampling a model folder")
    p.add_argument("--cache-dir", default=DEFAULT_CACHE_DIR,
                   help="where real-set statistics are cached ('' for no cache)")
    p.add_argument("--out", default=None, help="write the number and its settings to this JSON file")
    p.set_defaults(func=cmd_fvd)
