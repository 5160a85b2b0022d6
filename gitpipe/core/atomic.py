"""Atomic file writes: a temporary file beside the target, flushed, then renamed over."""

from __future__ import annotations

import contextlib
import errno
import itertools
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


#: numbers this process's temporary files (with its pid, so no other writer's name)
_SERIAL = itertools.count()
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


#: the longest part of a file's name its temporary files repeat: with the dot, the
#: number and `.tmp` they stay within the 255 bytes a name may have, whatever the name
STEM_BYTES = 96


def temp_stem(name: str) -> str:
    """``name``, or its first :data:`STEM_BYTES` bytes (whole characters only), for the
    name of a temporary file beside it."""
    raw = os.fsencode(name)
    if len(raw) <= STEM_BYTES:
        return name
    return os.fsdecode(raw[:STEM_BYTES].decode("utf-8", "ignore").encode("utf-8"))


def _temporary(folder: Path, name: str) -> tuple[int, str]:
    """A new, empty temporary file in ``folder`` (made when missing), open for writing.

    Named from this process's id and a counter, so that it takes one ``open``, not
    the random names and retries of ``tempfile.mkstemp``, which is kept for the name
    a killed process of the same id left behind."""
    name = temp_stem(name)
    tmp = os.path.join(folder, f".{name}.{os.getpid()}-{next(_SERIAL)}.tmp")
    for _attempt in range(2):
        try:
            return os.open(tmp, _CREATE, 0o600), tmp
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
        except FileExistsError:
            break
    return tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")


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
    ``path``'s folder, so that a crash leaves no stray file beside ``path``.
    Missing folders are made when the first write finds them missing: a file written
    into a folder that is there costs no ``mkdir``."""
    fd, tmp = _temporary(tmp_dir if tmp_dir is not None else path.parent, path.name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(fd, _DEFAULT_MODE if mode is None else mode)
            if sync:
                os.fsync(fd)
        if os.environ.get("GITPIPE_FAULT") == f"rename:{path.name}":  # crash-safety tests
            os.kill(os.getpid(), signal.SIGKILL)
        try:
            os.replace(tmp, path)
        except FileNotFoundError:
            if tmp_dir is None:
                raise
            path.parent.mkdir(parents=True, exist_ok=True)  # the target's folder, first
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
