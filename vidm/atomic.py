"""Atomic file writes: write under a temporary name beside the target, then rename it onto the target."""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yields a temporary path to write to; when the block ends it replaces `path` in one rename.

    If the block raises, the temporary file is removed and `path` keeps its old content, so a reader sees
    either the old file or the complete new one, never a half-written one. The name `.NAME.PID.tmp` is
    hidden, in the same folder (a rename within one file system is atomic) and unique per process, so two
    processes writing the same file (training stages building one latent cache) do not collide.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
