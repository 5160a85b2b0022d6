"""Atomic file writes: a temporary file beside the target, flushed, then renamed over."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import tempfile
from pathlib import Path

#: the mode a file gets that is not asked for another: what `open` would give it
#: under this process's umask (mkstemp's own 0600 would hide a committed
#: gitpipe.lock from the other users of a shared checkout)
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_DEFAULT_MODE = 0o666 & ~_UMASK


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
        os.chmod(tmp, _DEFAULT_MODE if mode is None else mode)
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
