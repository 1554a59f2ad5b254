"""The files one demo request makes, written frame by frame as the pipeline streams them."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from PIL import Image

from ..video_io import VideoWriter

SHEET_EVERY = 8
GAP = 2  # pixels between tiled videos, so that black backgrounds do not run together
GAP_VALUE = 96


def side_by_side(frames: np.ndarray) -> np.ndarray:
    """(B, H, W, 3) -> (H, B*W + gaps, 3): the videos of one time step in a row."""
    gap = np.full((frames.shape[1], GAP, 3), GAP_VALUE, dtype=np.uint8)
    tiles = []
    for i, frame in enumerate(frames):
        tiles += [gap, frame] if i else [frame]
    return np.concatenate(tiles, axis=1)


@dataclasses.dataclass
class Result:
    """videos: one mp4 per video; player: the mp4 shown in the page (all videos side by side); sheet: a PNG."""

    videos: list[Path]
    player: Path
    sheet: Path
    frames: int


class Recorder:
    """Writes a batch of videos as it is made: an H.264 mp4 per video, one of all side by side, a contact sheet.

    The contact sheet keeps every 8th frame (0, 8, 16, ...): one row per video.
    """

    def __init__(self, folder: Path, num_videos: int, fps: float):
        self.folder = Path(folder)
        self.videos = [self.folder / f"video_{i:03d}.mp4" for i in range(num_videos)]
        self.player = self.videos[0] if num_videos == 1 else self.folder / "side_by_side.mp4"
        self.writers = [VideoWriter(p, fps, "mp4") for p in self.videos]
        if num_videos > 1:
            self.writers.append(VideoWriter(self.player, fps, "mp4"))
        self.sheet: list[np.ndarray] = []
        self.count = 0

    def add(self, frames: np.ndarray) -> None:
        """Appends one time step, (B, H, W, 3) uint8."""
        row = side_by_side(frames)
        for writer, frame in zip(self.writers, [*frames, row]):
            writer.write(frame)
        if self.count % SHEET_EVERY == 0:
            self.sheet.append(frames.copy())
        self.count += 1

    def finish(self) -> Result:
        for writer in self.writers:
            writer.close()
        columns = np.stack(self.sheet, axis=1)  # (B, T / 8, H, W, 3)
        rows = [side_by_side(video) for video in columns]
        gap = np.full((GAP, rows[0].shape[1], 3), GAP_VALUE, dtype=np.uint8)
        sheet = np.concatenate([part for i, row in enumerate(rows) for part in ([gap, row] if i else [row])])
        path = self.folder / "contact_sheet.png"
        Image.fromarray(sheet).save(path)
        return Result(self.videos, self.player, path, self.count)

    def abort(self) -> None:
        for writer in self.writers:
            writer.abort()
