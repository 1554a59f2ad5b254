"""Frame metrics for video prediction as the Moving MNIST literature reports them, and digit statistics.

MSE is the squared error summed over a frame with pixels in [0, 1] (Srivastava et al. 2015, PredRNN,
PhyDNet); SSIM is Wang et al. (2004) with scikit-image's defaults (7x7 uniform window, K1=0.01, K2=0.03,
sample covariance, border cropped), vectorised over any leading axes; PSNR uses a data range of 1.
Inputs are frames (..., H, W) or (..., H, W, C): uint8 in [0, 255], or floats already in [0, 1].
"""
from __future__ import annotations

import numpy as np
import scipy.ndimage

from .errors import VidmError

PSNR_CAP = 100.0  # dB for identical frames, so that averages stay finite


def as_gray01(frames) -> np.ndarray:
    """uint8 or [0, 1] float frames (..., H, W[, C]) -> float64 (..., H, W) in [0, 1]; colour is averaged."""
    x = np.asarray(frames)
    if x.dtype == np.uint8:
        x = x.astype(np.float64) / 255.0
    else:
        x = x.astype(np.float64)
    if x.ndim >= 3 and x.shape[-1] in (1, 3) and x.shape[-2] > 4:  # a channel axis (frames are wider than 4)
        x = x.mean(axis=-1)
    if x.ndim < 2:
        raise VidmError(f"expected frames (..., H, W[, C]), got shape {x.shape}")
    return x


def _pair(pred, true) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_gray01(pred), as_gray01(true)
    if a.shape != b.shape:
        raise VidmError(f"frame shapes differ: {a.shape} vs {b.shape}")
    return a, b


def mse_per_frame(pred, true) -> np.ndarray:
    """Sum over each frame's pixels of the squared error, pixels in [0, 1]: (..., H, W[, C]) -> (...)."""
    a, b = _pair(pred, true)
    return np.square(a - b).sum(axis=(-2, -1))


def psnr(pred, true) -> np.ndarray:
    """Per-frame PSNR in dB with data range 1, capped at PSNR_CAP for identical frames."""
    a, b = _pair(pred, true)
    mse = np.square(a - b).mean(axis=(-2, -1))
    with np.errstate(divide="ignore"):
        value = 10.0 * np.log10(1.0 / mse)
    return np.minimum(value, PSNR_CAP)


def ssim(pred, true, win_size: int = 7, k1: float = 0.01, k2: float = 0.03) -> np.ndarray:
    """Per-frame SSIM, equal to skimage.metrics.structural_similarity(a, b, data_range=1) on each frame."""
    a, b = _pair(pred, true)
    if min(a.shape[-2:]) < win_size:
        raise VidmError(f"frames of {a.shape[-2:]} are smaller than the {win_size}x{win_size} SSIM window")
    size = (1,) * (a.ndim - 2) + (win_size, win_size)
    filt = lambda x: scipy.ndimage.uniform_filter(x, size=size)  # noqa: E731  (reflect borders, as skimage)
    n = win_size * win_size
    cov_norm = n / (n - 1)  # sample covariance, skimage's default
    ux, uy = filt(a), filt(b)
    vx = cov_norm * (filt(a * a) - ux * ux)
    vy = cov_norm * (filt(b * b) - uy * uy)
    vxy = cov_norm * (filt(a * b) - ux * uy)
    c1, c2 = k1 ** 2, k2 ** 2  # data range 1
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    pad = (win_size - 1) // 2
    return s[..., pad:-pad, pad:-pad].mean(axis=(-2, -1))


def bright_fraction(frames, threshold: int = 128) -> np.ndarray:
    """Fraction of pixels brighter than `threshold` (of 255) per frame: (..., H, W[, C]) -> (...)."""
    x = as_gray01(frames)
    return (x > threshold / 255.0).mean(axis=(-2, -1))


def count_blobs(frames, threshold: int = 128, min_pixels: int = 10) -> np.ndarray:
    """Connected components (8-connected) of the thresholded frame with at least `min_pixels` pixels."""
    x = as_gray01(frames)
    lead = x.shape[:-2]
    flat = x.reshape(-1, *x.shape[-2:]) > threshold / 255.0
    counts = np.empty(len(flat), dtype=np.int64)
    structure = np.ones((3, 3), dtype=bool)
    for i, mask in enumerate(flat):
        labels, n = scipy.ndimage.label(mask, structure=structure)
        if n == 0:
            counts[i] = 0
            continue
        sizes = np.bincount(labels.ravel())[1:]
        counts[i] = int((sizes >= min_pixels).sum())
    return counts.reshape(lead)
