"""The files one demo request makes, written frame by frame as the pipeline streams them."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
from PIL import Image

from ..video_io import VideoWriter

SHEET_EVERY = 8
GAP = 2  # pixels between tiles, so that black backgrounds do not run together
GAP_VALUE = 96


def join(images: list[np.ndarray], axis: int) -> np.ndarray:
    """Images (H, W, 3) of one size joined along axis 0 (a column) or 1 (a row), with a gap between them."""
    shape = list(images[0].shape)
    shape[axis] = GAP
    gap = np.full(shape, GAP_VALUE, dtype=np.uint8)
    return np.concatenate([part for i, image in enumerate(images) for part in ([gap, image] if i else [image])],
                          axis=axis)


def tile(frames: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) -> the videos of one time step in a near-square grid (2 x 2 for 3 or 4), empty cells black."""
    columns = math.ceil(math.sqrt(len(frames)))
    rows = math.ceil(len(frames) / columns)
    cells = np.zeros((rows * columns, *frames.shape[1:]), dtype=np.uint8)
    cells[:len(frames)] = frames
    return join([join(list(cells[r * columns:(r + 1) * columns]), axis=1) for r in range(rows)], axis=0)


@dataclasses.dataclass
class Result:
    """videos: one mp4 per video; player: the mp4 shown in the page (all videos tiled); sheet: a PNG."""

    videos: list[Path]
    player: Path
    sheet: Path
    frames: int


class Recorder:
    """Writes a batch of videos as it is made: an H.264 mp4 per video, one of all tiled, a contact sheet.

    The contact sheet has one row per video and a column for every 8th frame (0, 8, 16, ...).
    """

    def __init__(self, folder: Path, num_videos: int, fps: float):
        self.folder = Path(folder)
        self.videos = [self.folder / f"video_{i:03d}.mp4" for i in range(num_videos)]
        self.player = self.videos[0] if num_videos == 1 else self.folder / "all_videos.mp4"
        self.writers = [VideoWriter(p, fps, "mp4") for p in self.videos]
        if num_videos > 1:
            self.writers.append(VideoWriter(self.player, fps, "mp4"))
        self.sheet: list[np.ndarray] = []
        self.count = 0

    def add(self, frames: np.ndarray) -> None:
        """Appends one time step, (B, H, W, 3) uint8."""
        for writer, frame in zip(self.writers, [*frames, tile(frames)]):
            writer.write(frame)
        if self.count % SHEET_EVERY == 0:
            self.sheet.append(frames.copy())
        self.count += 1

    def finish(self) -> Result:
        for writer in self.writers:
            writer.close()
        columns = np.stack(self.sheet, axis=1)  # (B, T / 8, H, W, 3)
        sheet = join([join(list(video), axis=1) for video in columns], axis=0)
        path = self.folder / "contact_sheet.png"
        Image.fromarray(sheet).save(path)
        return Result(self.videos, self.player, path, self.count)

    def abort(self) -> None:
        for writer in self.writers:
            writer.abort()
