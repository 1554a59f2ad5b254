"""First-frame anchoring: every new frame is redrawn as the first frame warped by a dense optical flow.

A motion model that makes frame k from the frames before it passes small errors of shape on to every
later frame, and a digit becomes another within a few frames. Under anchoring the model still decides
where everything goes, but what is drawn there comes from the first frame: after each frame is sampled,
DIS optical flow (OpenCV) finds for every pixel where it was in frame 0, and the frame is replaced by
frame 0 warped with that flow. The flow of frame k starts from that of frame k-1, so the search is only
for the last step's motion, while the frame drawn is always a single resampling of frame 0 (no blur
accumulates). Content that the first frame lacks (a new object, a revealed background) cannot appear:
anchoring suits videos whose content stays, like Moving MNIST; `strength` below 1 mixes it with the
sampled frame.
"""
from __future__ import annotations

import cv2
import numpy as np

from .errors import VidmError


def check_strength(strength) -> float:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 <= strength <= 1:
        raise VidmError(f"anchor strength must be a number in [0, 1], got {strength!r}")
    return float(strength)


def _gray(frames: np.ndarray) -> np.ndarray:
    """uint8 (B, H, W, C) -> uint8 (B, H, W), ITU-R 601 luma for colour."""
    if frames.shape[-1] == 1:
        return np.ascontiguousarray(frames[..., 0])
    return np.ascontiguousarray(np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in frames[..., :3]]))


class FlowAnchor:
    """Tracks, per video, the flow from the newest frame back to the first, and redraws frames from it.

    first: uint8 (B, H, W, C), the frames every later one is drawn from.
    """

    def __init__(self, first: np.ndarray, strength: float = 1.0):
        self.first = np.ascontiguousarray(first)
        self.first_gray = _gray(self.first)
        self.strength = check_strength(strength)
        b, h, w = self.first_gray.shape
        self.previous = self.first_gray
        self.flow = np.zeros((b, h, w, 2), np.float32)  # frame k pixel p was at p + flow[p] in frame 0
        self.grid = np.stack(np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)), -1)
        # The medium preset with 4x4 patches down to full resolution: strokes of small frames are thin
        # (tracking real Moving MNIST clips, its warps of frame 0 are 2-3x nearer the true frames than
        # the presets' 8x8 patches at the same speed).
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self.dis.setPatchSize(4)
        self.dis.setPatchStride(2)
        self.dis.setFinestScale(0)

    def track(self, frames: np.ndarray) -> None:
        """Updates the flows to frame 0 with the next frames uint8 (B, H, W, C), without redrawing them.

        Each step's flow (to the previous frame) is small, which DIS finds from scratch; it is chained
        onto the previous flow to frame 0: F_k(p) = f(p) + F_{k-1}(p + f(p)).
        """
        gray = _gray(frames)
        for i in range(len(gray)):
            step = self.dis.calc(gray[i], self.previous[i], None)
            m = self.grid + step
            chained = cv2.remap(self.flow[i], m[..., 0], m[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            self.flow[i] = step + chained
        self.previous = gray

    def warp(self) -> np.ndarray:
        """The first frames drawn at the current flows: uint8 (B, H, W, C)."""
        out = np.empty_like(self.first)
        for i in range(len(self.first)):
            m = self.grid + self.flow[i]
            warped = cv2.remap(self.first[i], m[..., 0], m[..., 1], cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REPLICATE)
            out[i] = warped.reshape(out[i].shape)
        return out

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """The next frames uint8 (B, H, W, C) as sampled -> the same frames redrawn from the first frames."""
        self.track(frames)
        warped = self.warp()
        if self.strength < 1:
            mixed = self.strength * warped.astype(np.float32) + (1 - self.strength) * frames.astype(np.float32)
            warped = np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
        self.previous = _gray(warped)  # the next frame is made from this one: its flow leads here
        return warped
