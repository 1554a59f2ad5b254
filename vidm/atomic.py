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
        # A writer may create the file private (safetensors does, 0600): give it the mode of any new file.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _umask() -> int:
    """The process's umask (reading it means setting it, so it is set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
