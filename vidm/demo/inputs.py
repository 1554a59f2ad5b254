"""What a visitor of `vidm demo` sends, checked against the server's limits before any work starts.

Uploads are read by `vidm.video_io`, the readers the command line uses; this file only looks at their
headers first, so that a file whose decoded frames would not fit in memory is refused without decoding it.
"""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..errors import VidmError
from ..sampling import SAMPLERS
from ..video_io import VIDEO_SUFFIXES, read_image, read_video

# A 48-megapixel phone photo fits; a 10,000 x 10,000 image (300 MB decoded) does not. PIL's own guard
# (Image.MAX_IMAGE_PIXELS, 89 megapixels) only warns below twice its limit.
MAX_IMAGE_PIXELS = 50_000_000
# A clip is decoded whole before it is fitted to the model: 2 GiB holds 11 s of 1080p at 30 frames/s.
MAX_CLIP_BYTES = 2 * 2**30
# The result holds the whole clip before the new frames, and the VAE encodes all of it at once.
MAX_CLIP_FRAMES = 1000
CLIP_SUFFIXES = sorted(VIDEO_SUFFIXES | {".npy"})


@dataclasses.dataclass(frozen=True)
class Limits:
    """The most one request may ask for; the defaults finish in under a minute on 2 CPU cores."""

    max_videos: int = 4
    max_frames: int = 64
    max_steps: int = 30
    max_upload_mb: float = 50.0


@dataclasses.dataclass(frozen=True)
class Request:
    """One generation request, checked: whole numbers within the limits and a known sampler."""

    num_videos: int
    frames: int
    steps: int
    sampler: str
    seed: int


def whole_number(name: str, value, low: int, high: int | None = None, flag: str = "") -> int:
    """A number from a form field as an int in [low, high]; a float must be whole (sliders send floats)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise VidmError(f"{name}: expected a whole number, got {value!r}")
    if not float(value).is_integer():
        raise VidmError(f"{name}: expected a whole number, got {value}")
    value = int(value)
    if value < low:
        raise VidmError(f"{name} must be at least {low}, got {value}")
    if high is not None and value > high:
        raise VidmError(f"{name}: {value} is above this server's limit of {high}"
                        + (f" (vidm demo {flag})" if flag else ""))
    return value


def check_request(limits: Limits, num_videos, frames, steps, sampler, seed) -> Request:
    """The form's values as a Request, or a VidmError that names the field and the limit."""
    if sampler not in SAMPLERS:
        raise VidmError(f"unknown sampler {sampler!r}: choose from {', '.join(sorted(SAMPLERS))}")
    return Request(num_videos=whole_number("videos", num_videos, 1, limits.max_videos, "--max-videos"),
                   frames=whole_number("frames", frames, 1, limits.max_frames, "--max-frames"),
                   # 0: a layered model's composite alone (the pipeline refuses it for a plain model)
                   steps=whole_number("steps", steps, 0, limits.max_steps, "--max-steps"),
                   sampler=sampler,
                   seed=whole_number("seed", seed, 0, 2**31 - 1))


def _public(error: VidmError, path: Path) -> VidmError:
    """The error with the upload's server-side path replaced by its file name."""
    return VidmError(str(error).replace(str(path), path.name))


def _uploaded(path) -> Path:
    if not path:
        raise VidmError("no file uploaded")
    return Path(path)


def load_image(path) -> np.ndarray:
    """An uploaded image as uint8 (H, W, C), refused by its header's pixel count before it is decoded."""
    path = _uploaded(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as img:  # reads the header only
                width, height = img.size
    except Image.DecompressionBombError:
        width = height = None
    except Exception:  # not an image: read_image says so in the command line's words
        width, height = 0, 0
    if width is None or width * height > MAX_IMAGE_PIXELS:
        size = "" if width is None else f" ({width} x {height})"
        raise VidmError(f"{path.name}: image too large{size}; the limit is {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels")
    try:
        return read_image(path)
    except VidmError as e:
        raise _public(e, path) from None


def clip_header(path: Path) -> tuple[int, int, int]:
    """(frames, height, width) from a clip's header, without decoding; 0 where the header does not say."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".gif":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as img:
                    return getattr(img, "n_frames", 1), img.size[1], img.size[0]
        if suffix == ".npy":
            shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
            return (shape[0], shape[1], shape[2]) if len(shape) >= 3 else (0, 0, 0)
        cap = cv2.VideoCapture(str(path))
        try:
            header = (cap.get(cv2.CAP_PROP_FRAME_COUNT), cap.get(cv2.CAP_PROP_FRAME_HEIGHT),
                      cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        finally:
            cap.release()
        return tuple(max(0, int(n)) for n in header)  # OpenCV says -1 where it does not know
    except Image.DecompressionBombError:
        return 0, 100_000, 100_000
    except Exception:  # unreadable: read_video says why
        return 0, 0, 0


def load_clip(path) -> tuple[np.ndarray, str | None]:
    """An uploaded clip (mp4, webm, avi, gif, ...) as uint8 (T, H, W, C), and a note when it looks truncated.

    The clip is refused by its header's size before it is decoded.
    """
    path = _uploaded(path)
    if path.suffix.lower() not in CLIP_SUFFIXES:
        raise VidmError(f"{path.name}: unsupported file type {path.suffix!r} (use {', '.join(CLIP_SUFFIXES)})")
    frames, height, width = clip_header(path)
    if height * width > MAX_IMAGE_PIXELS:
        raise VidmError(f"{path.name}: frames too large ({width} x {height}); "
                        f"the limit is {MAX_IMAGE_PIXELS / 1e6:.0f} megapixels")
    if frames > MAX_CLIP_FRAMES:
        raise VidmError(f"{path.name}: {frames} frames; the limit is {MAX_CLIP_FRAMES}: trim the clip")
    if frames * height * width * 3 > MAX_CLIP_BYTES:
        raise VidmError(f"{path.name}: {frames} frames of {width} x {height} would take "
                        f"{frames * height * width * 3 / 2**30:.1f} GiB decoded; the limit is "
                        f"{MAX_CLIP_BYTES / 2**30:.0f} GiB: trim the clip or scale it down")
    try:
        clip = read_video(path)
    except VidmError as e:
        raise _public(e, path) from None
    if len(clip) > MAX_CLIP_FRAMES:  # some containers do not say how many frames they hold
        raise VidmError(f"{path.name}: {len(clip)} frames; the limit is {MAX_CLIP_FRAMES}: trim the clip")
    # Headers that estimate the count from the duration can be one off; a truncated file falls far short.
    note = None
    if len(clip) < frames - 1:
        note = (f"{path.name} looks truncated or damaged: its header lists {frames} frames, {len(clip)} could be "
                f"decoded; continuing from frame {len(clip)}")
    return clip, note
