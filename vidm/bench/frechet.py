"""Fréchet distances of generated videos: a proxy always, FVD when an I3D detector is given.

On Moving MNIST both use the same four sets of 16-frame videos: generated from scratch, held-out test
videos (the reference), a second disjoint test set (the real-vs-real floor) and the reference's first
frame repeated (a static baseline). The proxy's features are those of vidm's I3D at a fixed random
initialisation (vidm.i3d.random_detector): not comparable with published FVD, but with its floor and
baseline it ranks models on this machine. With `--detector` (Kinetics-400 I3D weights) the same sets give
FVD under StyleGAN-V's protocol (vidm.fvd): uint8 to [-1, 1], 224x224, logits, float64 biased statistics.
On a prepared dataset FVD is vidm.fvd.compute_fvd exactly as `vidm fvd` runs it, model folder as the fake set.
"""
from __future__ import annotations

import numpy as np

from ..fvd import DEFAULT_CACHE_DIR, compute_fvd, feature_stats, frechet_distance
from ..pipeline import CONTENT_SAMPLER, CONTENT_STEPS
from ..sampling import per_frame
from .generate import batches, generate
from .report import Section, markdown_table

FRAMES, DATA_SEEDS, DETECTOR_SEED = 16, (2, 3), 0
I3D_BATCH, GEN_BATCH = 8, 32
SKIPPED_FVD = ("no `--detector` given (nor $VIDM_I3D): FVD needs Kinetics-400 I3D weights, StyleGAN-V's "
               "`i3d_torchscript.pt` or the `i3d_pretrained_400.pt` of TATS/PVDM, which vidm cannot download; "
               "see the README's FVD section")


def features(detector, videos: np.ndarray, log=None, what: str = "") -> np.ndarray:
    """uint8 videos (N, T, H, W) -> (N, D) detector features, in batches."""
    out = []
    for lo, hi in batches(len(videos), I3D_BATCH):
        out.append(detector.features(videos[lo:hi, ..., None]))
        if log is not None and hi % 64 == 0:
            log(f"  {what}: features of {hi}/{len(videos)} videos")
    return np.concatenate(out)


def distances(bench, detector, num: int, what: str) -> dict:
    """Generated, floor and static distances to the reference test set, in `detector`'s features."""
    data = bench.dataset
    real = data.videos(num, FRAMES, DATA_SEEDS[0])
    bench.log(f"{what}: generating {num} videos of {FRAMES} frames")
    sets = {"generated": generate(bench.pipe, num, FRAMES, bench.sampler, bench.steps, bench.seed, GEN_BATCH,
                                  log=bench.log, content_steps=CONTENT_STEPS, content_sampler=CONTENT_SAMPLER),
            "second_test": data.videos(num, FRAMES, DATA_SEEDS[1]),
            "static": np.repeat(real[:, :1], FRAMES, axis=1)}
    bench.log(f"{what}: features of {num} videos x 4 sets")
    ref = feature_stats(features(detector, real, bench.log, "test set"))
    fd = {name: frechet_distance(*ref, *feature_stats(features(detector, v, bench.log, name.replace("_", " "))))
          for name, v in sets.items()}
    return {"videos_per_set": num, "frames": FRAMES, "detector": detector.name,
            "reference": data.name(FRAMES, DATA_SEEDS[0], num), "second_test": data.name(FRAMES, DATA_SEEDS[1], num),
            "generated": f"from scratch, {per_frame(bench.sampler, bench.steps)} per frame, the first frame "
                         f"{CONTENT_SAMPLER} x {CONTENT_STEPS}; video i uses seed {bench.seed} + i",
            "generated_vs_test": fd["generated"], "real_vs_real_floor": fd["second_test"],
            "static_vs_test": fd["static"]}


def table(r: dict, name: str) -> str:
    return markdown_table(
        [f"{r['videos_per_set']:,} videos of {r['frames']} frames per set", f"{name} to the test set (lower is better)"],
        [["real: a second, disjoint test set (the floor)", f"{r['real_vs_real_floor']:.2f}"],
         ["vidm, generated from scratch", f"**{r['generated_vs_test']:.2f}**"],
         ["static: the test set's first frames repeated", f"{r['static_vs_test']:.2f}"]])


def proxy_measure(bench) -> Section:
    from ..i3d import random_detector

    r = distances(bench, random_detector(seed=DETECTOR_SEED, device=bench.device), bench.sizes.frechet,
                  "proxy Fréchet distance")
    r["label"] = ("PROXY: features of a randomly initialised I3D; not comparable with published FVD, and "
                  "only with numbers of the same set size")
    text = (f"In the features of vidm's I3D at a fixed random initialisation (`random_detector(seed={DETECTOR_SEED})`): "
            "a **proxy, not comparable with published FVD**. A Fréchet distance grows as the sets shrink: compare "
            f"only numbers of equal set size. Generated: {r['generated']}.\n\n")
    return Section("frechet_proxy", "Proxy Fréchet distance", r, text + table(r, "proxy Fréchet distance"))


def fvd_measure(bench) -> Section:
    """FVD on Moving MNIST with the given detector (the suite skips this without one)."""
    n = bench.sizes.fvd
    r = distances(bench, bench.detector, n, "FVD")
    r |= {"protocol": "fvd2048_16f" if n == 2048 else f"fvd2048_16f's rules with {n} videos per set",
          "detector_sha256": bench.detector.sha256}
    text = (f"StyleGAN-V's protocol ({r['protocol']}): I3D (`{bench.detector.name}`, sha256 "
            f"`{(bench.detector.sha256 or '')[:12]}`) logits of 16-frame clips, resized to 224x224. The real "
            f"videos are 16 frames long, so each real clip is a whole video. Generated: {r['generated']}.\n\n")
    return Section("fvd", "FVD", r, text + table(r, "FVD"))


def prepared_fvd_measure(bench) -> Section:
    """FVD between a prepared split and videos sampled from the model, as `vidm fvd` computes it."""
    available = len(bench.dataset.index["videos"])
    n = min(bench.sizes.fvd, available)
    bench.log(f"FVD: {n} real and {n} generated videos")
    sampling = {"num_inference_steps": bench.steps, "sampler": bench.sampler, "content_steps": CONTENT_STEPS,
                "content_sampler": CONTENT_SAMPLER}
    r = compute_fvd(bench.dataset.folder, bench.model_dir, bench.detector, "fvd2048_16f", n, bench.seed,
                    I3D_BATCH, DEFAULT_CACHE_DIR, sampling)
    text = (f"StyleGAN-V's fvd2048_16f{'' if n == 2048 else f' with {n} videos per set'}: "
            f"{r['real']['videos']} real videos of `{bench.dataset.folder}` (one random 16-frame clip each, "
            f"{r['real']['skipped_short']} shorter ones skipped) against {r['fake']['videos']} generated "
            f"({per_frame(bench.sampler, bench.steps)} per frame), I3D `{r['detector']['file']}` "
            f"(sha256 `{r['detector']['sha256']}`).\n\n")
    text += markdown_table(["", "FVD (lower is better)"], [[f"{r['fake']['videos']:,} videos per set", f"**{r['fvd']:.1f}**"]])
    return Section("fvd", "FVD", r, text)
