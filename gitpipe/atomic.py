"""Atomic file writes: a temporary file beside the target, flushed, then renamed over."""

from __future__ import annotations

import contextlib
import os
import signal
import tempfile
from pathlib import Path


def write_bytes(path: Path, data: bytes, *, mode: int | None = None, sync: bool = True) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new bytes only.

    ``sync=False`` skips the fsync, for caches that may be lost in a crash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if sync:
                os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        if os.environ.get("GITPIPE_FAULT") == f"rename:{path.name}":  # crash-safety tests
            os.kill(os.getpid(), signal.SIGKILL)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
