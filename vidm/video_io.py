"""Reading and writing videos and images, and fitting frames to a model's resolution.

Everything returns uint8 arrays, channels last: videos (T, H, W, C), images (H, W, C).
Writers put frames under a temporary name and rename on close, so a failed run leaves no file that
looks complete.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import VidmError

VIDEO_SUFFIXES = {".mp4", ".avi", ".webm", ".mkv", ".mov", ".m4v", ".gif"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
FORMATS = ("mp4", "webm", "gif", "png")


# --- reading ---

def to_uint8(array: np.ndarray) -> np.ndarray:
    """Any integer or float image data -> uint8: 16-bit keeps its top 8 bits, floats are taken as [0, 1]."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.uint16:
        return (array >> 8).astype(np.uint8)
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.integer):
        info = np.iinfo(array.dtype)
        scaled = (array.astype(np.float64) - max(info.min, 0)) / (info.max - max(info.min, 0))
        return (scaled.clip(0, 1) * 255).round().astype(np.uint8)
    if np.issubdtype(array.dtype, np.floating):
        return (np.nan_to_num(array).clip(0, 1) * 255).round().astype(np.uint8)
    raise VidmError(f"unsupported pixel type {array.dtype}")


def _pil_to_array(img: Image.Image) -> np.ndarray:
    """A PIL image of any mode -> uint8 (H, W, C) with C in {1, 3}; alpha is composited onto black."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img)
        arr = (arr.astype(np.uint32) >> 8).clip(0, 255).astype(np.uint8) if arr.max() > 255 else arr.astype(np.uint8)
        return arr[..., None]
    if img.mode in ("L", "1"):
        return np.asarray(img.convert("L"))[..., None]
    if img.mode == "F":
        return to_uint8(np.asarray(img) / max(float(np.asarray(img).max()), 1.0))[..., None]
    if img.mode in ("RGBA", "LA", "PA", "P"):
        img = img.convert("RGBA")
        rgba = np.asarray(img).astype(np.float32)
        return (rgba[..., :3] * (rgba[..., 3:] / 255.0)).round().astype(np.uint8)
    return np.asarray(img.convert("RGB"))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file of any mode or bit depth -> uint8 (H, W, C)."""
    path = Path(path)
    if not path.is_file():
        raise VidmError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            img.load()
            return _pil_to_array(img)
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise VidmError(f"{path}: not a readable image ({type(e).__name__})") from None


def _read_with_cv2(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    try:
        while cap.isOpened():
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    return frames


def _read_gif(path: Path) -> list[np.ndarray]:
    frames = []
    try:
        with Image.open(path) as img:
            for i in range(getattr(img, "n_frames", 1)):
                img.seek(i)
                frames.append(_pil_to_array(img.convert("RGBA")))
    except (UnidentifiedImageError, OSError, ValueError, EOFError) as e:
        raise VidmError(f"{path}: not a readable GIF ({type(e).__name__})") from None
    return frames


def read_video(path: str | os.PathLike) -> np.ndarray:
    """A video file, a GIF, a folder of image frames (sorted by name) or a .npy (T, H, W[, C]) -> uint8."""
    path = Path(path)
    if not path.exists():
        raise VidmError(f"video not found: {path}")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise VidmError(f"{path}: folder holds no image frames ({', '.join(sorted(IMAGE_SUFFIXES))})")
        frames = [read_image(f) for f in files]
    elif path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise VidmError(f"{path}: not a readable .npy array ({e})") from None
        if arr.ndim == 3:
            arr = arr[..., None]
        if arr.ndim != 4 or arr.shape[-1] not in (1, 3, 4):
            raise VidmError(f"{path}: expected an array (T, H, W) or (T, H, W, C), got shape {arr.shape}")
        frames = list(to_uint8(arr[..., :3]))
    elif path.suffix.lower() == ".gif":
        frames = _read_gif(path)
    elif path.suffix.lower() in VIDEO_SUFFIXES:
        frames = _read_with_cv2(path)
    else:
        raise VidmError(f"{path}: unsupported file type {path.suffix!r} "
                        f"(use {', '.join(sorted(VIDEO_SUFFIXES | {'.npy'}))} or a folder of frames)")
    if not frames:
        raise VidmError(f"{path}: no frames could be read")
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise VidmError(f"{path}: frames differ in size ({sorted(shapes)[:2]})")
    return np.stack(frames)


def is_frame_folder(path: Path) -> bool:
    return path.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in path.iterdir())


def find_videos(root: str | os.PathLike, suffixes=VIDEO_SUFFIXES | {".npy"}) -> list[Path]:
    """Video files and folders of image frames under `root`, recursively, sorted by relative path.

    Hidden entries (e.g. a writer's unfinished output) are skipped, and frame folders are not entered.
    """
    root = Path(root)

    def walk(folder: Path) -> list[Path]:
        found = []
        for entry in folder.iterdir():
            if entry.name.startswith("."):
                continue
            if entry.is_dir():
                found += [entry] if is_frame_folder(entry) else walk(entry)
            elif entry.suffix.lower() in suffixes:
                found.append(entry)
        return found

    return sorted(walk(root), key=lambda p: p.relative_to(root).as_posix())


# --- fitting to the model ---

def fit_frames(frames: np.ndarray, resolution: int, channels: int) -> np.ndarray:
    """uint8 (T, H, W, C) -> (T, R, R, channels): scale the shorter side to R, center crop, convert colour.

    The rule is the one the datasets use: area interpolation when shrinking, bicubic when enlarging;
    grayscale is repeated to RGB, and RGB becomes grayscale by ITU-R 601 luma.
    """
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise VidmError(f"expected frames (T, H, W, C) with T >= 1, got shape {frames.shape}")
    t, h, w, c = frames.shape
    scale = resolution / min(h, w)
    nh, nw = max(resolution, round(h * scale)), max(resolution, round(w * scale))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    top, left = (nh - resolution) // 2, (nw - resolution) // 2
    out = np.empty((t, resolution, resolution, channels), dtype=np.uint8)
    for i, frame in enumerate(frames):
        if (h, w) != (nh, nw):
            frame = cv2.resize(frame, (nw, nh), interpolation=interp)
        frame = frame.reshape(nh, nw, -1)[top:top + resolution, left:left + resolution]
        if frame.shape[-1] == channels:
            out[i] = frame
        elif channels == 1:
            out[i, ..., 0] = cv2.cvtColor(np.ascontiguousarray(frame[..., :3]), cv2.COLOR_RGB2GRAY)
        elif frame.shape[-1] == 1:
            out[i] = np.repeat(frame, channels, axis=-1)
        else:
            raise VidmError(f"cannot convert {frame.shape[-1]} channels to {channels}")
    return out


# --- writing ---

def output_format(path: str | os.PathLike, fmt: str | None = None) -> str:
    """The format to write: the explicit one, else from the suffix; a path without a suffix is a PNG folder."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise VidmError(f"unknown format {fmt!r}: choose from {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix == "":
        return "png"
    if suffix not in FORMATS:
        raise VidmError(f"{path}: cannot write {suffix!r}; use .mp4, .webm, .gif or a folder for PNG frames")
    return suffix


def h264_available() -> bool:
    try:
        import av  # noqa: F401
        return True
    except ImportError:
        return False


class VideoWriter:
    """Streams frames (H, W, 3) uint8 to mp4 (H.264 via PyAV, else mp4v), webm (VP9), gif or a PNG folder.

    Frames go to a temporary name beside the target; `close()` renames it into place, and leaving a
    `with` block on an exception removes it instead.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 8.0, fmt: str | None = None):
        self.path = Path(path)
        self.fmt = output_format(self.path, fmt)
        self.fps = fps
        self.path.parent.mkdir(parents=True, exist_ok=True)
        suffix = "" if self.fmt == "png" else "." + self.fmt
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent)) if self.fmt == "png" \
            else self.path.with_name(f".{self.path.stem}.partial{suffix}")
        self.count = 0
        self._backend = None
        self._gif: list[Image.Image] = []

    def _open(self, h: int, w: int) -> None:
        if self.fmt == "mp4" and h264_available():
            import av

            container = av.open(str(self.tmp), mode="w")
            stream = container.add_stream("libx264", rate=int(round(self.fps)))
            stream.width, stream.height = w + (w % 2), h + (h % 2)
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": "18"}
            self._backend = ("av", container, stream)
        elif self.fmt in ("mp4", "webm"):
            fourcc = cv2.VideoWriter_fourcc(*("mp4v" if self.fmt == "mp4" else "VP90"))
            writer = cv2.VideoWriter(str(self.tmp), fourcc, self.fps, (w, h))
            if not writer.isOpened():
                raise VidmError(f"cannot open a {self.fmt} writer for {self.path}")
            self._backend = ("cv2", writer)
        else:
            self._backend = (self.fmt,)

    def write(self, frame: np.ndarray) -> None:
        if frame.ndim == 2:
            frame = frame[..., None]
        if frame.shape[-1] == 1:
            frame = np.repeat(frame, 3, axis=-1)
        frame = np.ascontiguousarray(frame, dtype=np.uint8)
        if self._backend is None:
            self._open(*frame.shape[:2])
        kind = self._backend[0]
        if kind == "av":
            import av

            _, container, stream = self._backend
            h, w = stream.height, stream.width
            if frame.shape[:2] != (h, w):  # libx264 needs even sizes: pad by edge replication
                frame = np.pad(frame, ((0, h - frame.shape[0]), (0, w - frame.shape[1]), (0, 0)), mode="edge")
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        elif kind == "cv2":
            self._backend[1].write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        elif kind == "gif":
            self._gif.append(Image.fromarray(frame))
        else:
            Image.fromarray(frame).save(self.tmp / f"frame_{self.count:05d}.png")
        self.count += 1

    def close(self) -> Path:
        if self.count == 0:
            self.abort()
            raise VidmError(f"no frames to write to {self.path}")
        kind = self._backend[0]
        if kind == "av":
            _, container, stream = self._backend
            for packet in stream.encode():
                container.mux(packet)
            container.close()
        elif kind == "cv2":
            self._backend[1].release()
        elif kind == "gif":
            self._gif[0].save(self.tmp, save_all=True, append_images=self._gif[1:],
                              duration=round(1000 / self.fps), loop=0)
        if self.fmt == "png" and self.path.is_dir():
            shutil.rmtree(self.path)
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self._backend is not None and self._backend[0] == "av":
            try:
                self._backend[1].close()
            except Exception:  # the container may be unusable already; the file goes anyway
                pass
        elif self._backend is not None and self._backend[0] == "cv2":
            self._backend[1].release()
        if self.tmp.is_dir():
            shutil.rmtree(self.tmp, ignore_errors=True)
        elif self.tmp.exists():
            self.tmp.unlink()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self.abort()
        return False


def write_video(frames: np.ndarray, path: str | os.PathLike, fps: float = 8.0, fmt: str | None = None) -> Path:
    """Writes uint8 frames (T, H, W, C) in one go."""
    with VideoWriter(path, fps, fmt) as writer:
        for frame in frames:
            writer.write(frame)
    return writer.path
