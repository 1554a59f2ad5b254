"""Is each digit still itself? Template matching of each digit's own 28x28 image in every frame.

A held-out Moving MNIST clip is made in code, so its two digit images are known. A digit is *kept* in a
frame when its image matches some 28x28 window there with zero-normalised cross-correlation (ZNCC) of at
least THRESHOLD: a digit that dissolves, morphs into another or merges with the other one falls under it.
THRESHOLD is set so that wrong digits stay under it: on real held-out frames, the images of other test
digits of other classes than the clip's reach it in 0.01% of frames (`python eval/identity.py
--calibrate`). Real frames do not keep every digit either (two digits that overlap hide each other's
strokes), so the real clips' share is the ceiling beside every score.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

# On 64 held-out clips x 64 real frames, 2 wrong digits each: wrong digits reach it in 0.01% of frames (their
# 99th percentile is 0.64), the clip's own digits in 89% (overlaps hide the rest).
THRESHOLD = 0.7


@torch.no_grad()
def zncc_scores(frames: np.ndarray, templates: np.ndarray, batch: int = 256) -> np.ndarray:
    """Best ZNCC of each template over every 28x28 window of each frame.

    frames uint8 (N, T, H, W); templates uint8 (N, D, h, w) -> float (N, T, D).
    """
    N, T, H, W = frames.shape
    D, h, w = templates.shape[1:]
    n = h * w
    out = np.empty((N, T, D), dtype=np.float32)
    t = torch.from_numpy(templates).float().reshape(N * D, 1, h, w)
    t = t - t.mean(dim=(2, 3), keepdim=True)
    t = t / t.flatten(1).norm(dim=1).clamp_min(1e-6)[:, None, None, None]
    ones = torch.ones(1, 1, h, w)
    per = max(1, batch // T)  # videos per batch
    for lo in range(0, N, per):
        hi = min(N, lo + per)
        x = torch.from_numpy(frames[lo:hi]).float().reshape((hi - lo) * T, 1, H, W)
        s1, s2 = F.conv2d(x, ones), F.conv2d(x.square(), ones)
        std = (s2 - s1.square() / n).clamp_min(0).sqrt()[:, 0]  # (v * T, H - h + 1, W - w + 1)
        for d in range(D):
            # every frame of a video against that video's own template: one group per frame
            tmpl = t.reshape(N, D, 1, h, w)[lo:hi, d].repeat_interleave(T, 0)  # (v * T, 1, h, w)
            cross = F.conv2d(x.reshape(1, -1, H, W), tmpl, groups=(hi - lo) * T)[0]
            z = torch.where(std > 1e-3, cross / std.clamp_min(1e-3), torch.zeros_like(cross))
            out[lo:hi, :, d] = z.flatten(1).amax(1).reshape(hi - lo, T).numpy()
    return out


def kept(frames: np.ndarray, templates: np.ndarray, threshold: float = THRESHOLD) -> np.ndarray:
    """Boolean (N, T, D): digit d of video n found in frame t."""
    return zncc_scores(frames, templates) >= threshold
