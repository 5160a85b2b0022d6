"""Atomic file writes: a temporary file beside the target, flushed, then renamed over."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import tempfile
from pathlib import Path


def write_bytes(
    path: Path,
    data: bytes,
    *,
    mode: int | None = None,
    sync: bool = True,
    tmp_dir: Path | None = None,
) -> None:
    """Replace ``path`` with ``data`` so that readers see the old or the new bytes only.

    ``sync=False`` skips the fsync, for caches that may be lost in a crash.
    ``tmp_dir`` (on the same file system) holds the temporary file instead of
    ``path``'s folder, so that a crash leaves no stray file beside ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    folder = tmp_dir if tmp_dir is not None else path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
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
        try:
            os.replace(tmp, path)
        except OSError as exc:
            if exc.errno != errno.EXDEV or tmp_dir is None:
                raise
            os.unlink(tmp)  # tmp_dir is on another file system: beside the target, then
            write_bytes(path, data, mode=mode, sync=sync)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
