"""How shift-equivariant is the autoencoder's latent? Real test frames shifted by s = 0..8 px.

A frame x is shifted circularly by s px (torch.roll), horizontally and vertically in turn, and its latent
E(x) by s / f latent px (vidm.equivariance.fourier_shift; f = 4, the VAE's downsampling). Per shift:
  - relative latent distance ||E(shift(x, s)) - shift(E(x), s / f)|| / ||E(shift(x, s))||, pooled over the
    frames, without the outer --border latent pixels: the encoder pads with zeros, so content wrapped
    across an edge is not encoded as a true circular shift would be;
  - decoded-shift MSE: D(shift(E(x), s / f)) against shift(x, s), summed over the whole frame, pixels in
    [0, 1] (the project's MSE);
and the reconstruction MSE, D(E(x)) against x. E is the posterior mean, as the latent models see it.

    python eval/equivariance.py --num 256
    python eval/equivariance.py --model runs/moving-mnist-64-eq/vae --out /tmp/eq.json
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from common import batches, model_dir, parser, setup, test_videos, write_result
from vidm.checkpoint import WEIGHTS_NAME, load_model
from vidm.equivariance import fourier_shift
from vidm.errors import VidmError
from vidm.metrics import mse_per_frame


def vae_folder(folder: Path) -> Path:
    """A pipeline folder's vae/, or the folder itself when it holds the autoencoder (a training stage)."""
    return folder / "vae" if (folder / "vae").is_dir() else folder


def to_unit(x: torch.Tensor) -> np.ndarray:
    """Frames (N, C, H, W) in [-1, 1] -> (N, H, W) in [0, 1], channels averaged."""
    return ((x.clamp(-1, 1) + 1) / 2).mean(dim=1).cpu().double().numpy()


@torch.inference_mode()
def shift_table(vae, frames: np.ndarray, shifts: list[int], border: int, batch: int = 64) -> tuple[list[dict], float]:
    """Rows of the per-shift table and the reconstruction MSE, for uint8 frames (N, H, W)."""
    f, side = vae.downsample, vae.latent_shape()[-1]
    if not 0 <= 2 * border < side:
        raise VidmError(f"border {border} leaves nothing of a {side}x{side} latent")
    inner = (..., slice(border, side - border), slice(border, side - border))
    device = next(vae.parameters()).device
    sums = {(s, axis): np.zeros(2) for s in shifts for axis in (0, 1)}  # squared error, squared norm
    mse = {(s, axis): [] for s in shifts for axis in (0, 1)}
    recon = []
    for lo, hi in batches(len(frames), batch):
        x = torch.from_numpy(frames[lo:hi]).to(device).float().div(127.5).sub(1.0)[:, None]
        x = x.expand(-1, vae.config.in_channels, -1, -1)
        z = vae.encode(x)
        recon.append(mse_per_frame(to_unit(vae.decode(z)), to_unit(x)))
        for s in shifts:
            for axis in (0, 1):  # 0: vertical, 1: horizontal
                step = (s, 0) if axis == 0 else (0, s)
                x_s = torch.roll(x, step, dims=(-2, -1))
                z_s, z_moved = vae.encode(x_s), fourier_shift(z, step[0] / f, step[1] / f)
                sums[s, axis] += [float((z_s - z_moved)[inner].pow(2).sum()), float(z_s[inner].pow(2).sum())]
                mse[s, axis].append(mse_per_frame(to_unit(vae.decode(z_moved)), to_unit(x_s)))
    rows = []
    for s in shifts:
        rel = [float(np.sqrt(sums[s, axis][0] / sums[s, axis][1])) for axis in (0, 1)]
        err = np.concatenate(mse[s, 0] + mse[s, 1])
        rows.append({"shift_px": s, "latent_shift": s / f, "relative_distance": float(np.mean(rel)),
                     "relative_distance_vertical": rel[0], "relative_distance_horizontal": rel[1],
                     "decoded_shift_mse": float(err.mean()),
                     "decoded_shift_mse_sem": float(err.std(ddof=1) / np.sqrt(len(err))) if len(err) > 1 else 0.0})
    return rows, float(np.concatenate(recon).mean())


def main() -> None:
    p = parser("Shift equivariance of the VAE's latent: relative latent distance and decoded-shift MSE per "
               "pixel shift, and the reconstruction MSE", "equivariance.json")
    p.add_argument("--num", type=int, default=256, help="test frames, frame 0 of as many clips (default 256)")
    p.add_argument("--max-shift", type=int, default=8, help="shifts 0..N px (default 8)")
    # 3 latent px (12 px): an 8 px roll wraps up to 8 px of a digit across an edge, and the zero-padded
    # encoder sees that a few latent pixels inward (shipped VAE, 8 px: 9% with 2, 3% with 3, 2% with 4).
    p.add_argument("--border", type=int, default=3, help="latent pixels left out at each edge (default 3)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--data-seed", type=int, default=1, help="seed of the test clips (default 1)")
    args = p.parse_args()
    setup(args)
    folder = vae_folder(model_dir(args.model))
    frames = test_videos(args.num, 1, args.data_seed)[:, 0]  # (N, H, W) uint8
    try:
        vae = load_model(folder, kind="autoencoder", device=args.device).float().eval()
        if frames.shape[-1] != vae.config.resolution:
            raise VidmError(f"the VAE is for {vae.config.resolution} px frames, Moving MNIST's are {frames.shape[-1]}")
        rows, recon = shift_table(vae, frames, list(range(args.max_shift + 1)), args.border, args.batch)
    except VidmError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"{'shift px':>8} {'latent px':>9} {'rel. distance':>13} {'(vert / horiz)':>15} {'decoded-shift MSE':>17}")
    for r in rows:
        print(f"{r['shift_px']:8d} {r['latent_shift']:9.2f} {r['relative_distance']:13.1%} "
              f"{r['relative_distance_vertical']:7.1%} / {r['relative_distance_horizontal']:<6.1%}"
              f"{r['decoded_shift_mse']:17.1f}")
    print(f"reconstruction MSE {recon:.2f}")
    side = vae.latent_shape()[-1]
    result = {"vae": {"folder": str(folder),
                      "sha256": hashlib.sha256((folder / WEIGHTS_NAME).read_bytes()).hexdigest()},
              "frames": args.num, "data": f"frame 0 of MovingMNIST('test', frames=1, seed={args.data_seed}) "
                                          f"videos 0..{args.num - 1}",
              "downsample": vae.downsample,
              "inside": f"the inner {side - 2 * args.border}x{side - 2 * args.border} of the {side}x{side} latent",
              "shifts": "circular (torch.roll) in pixels, vertical and horizontal; the latent by Fourier phase; "
                        "relative_distance is the mean of the two directions",
              "reconstruction_mse": recon, "rows": rows}
    print(write_result(args.out, result, args))


if __name__ == "__main__":
    main()
