"""The workspace lock: one `repro` (or `add`, `remove`, `checkout`) writing in a
workspace at a time.  A module of its own, so that the commands that only hold the
workspace do not import what a run needs (the runner, the planner, the session)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from gitpipe.core.errors import PathError, WorkspaceBusy, describe

if TYPE_CHECKING:  # imported when another holds the lock: `checkout` needs no events
    from gitpipe.run import events as ev


@contextlib.contextmanager
def workspace_lock(path: Path, *, wait: bool, emit: ev.Listener) -> Iterator[None]:
    """One `repro` at a time per workspace: an advisory lock on ``path``.

    The lock goes with the process, so a killed run never leaves it held."""
    import fcntl

    try:
        handle = open(path, "a+")  # noqa: SIM115 - held for the whole run
    except OSError as exc:
        raise PathError(f"cannot take the workspace lock {describe(exc)}") from exc
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            if not wait:
                raise WorkspaceBusy(
                    f"another `gitpipe repro` ({holder}) is running in this workspace; "
                    "wait for it, or run without --no-wait to queue behind it"
                ) from None
            from gitpipe.run import events as ev

            emit(ev.Waiting(f"waiting for another `gitpipe repro` ({holder}) to finish"))
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()
