"""Typed errors raised by the library.

The library never prints or exits; the CLI alone maps these to exit codes and
one-sentence messages.  Each class carries the exit code the CLI uses for it.
"""

from __future__ import annotations

import os
import sys


class GitpipeError(Exception):
    """Base class of every error gitpipe raises on purpose."""

    exit_code = 2


class PipelineError(GitpipeError):
    """The pipeline file is invalid: syntax, fields, types, graph or paths."""

    exit_code = 2

    def __init__(self, message: str, *, file: str = "", key: str = "") -> None:
        self.file = file
        self.key = key
        where = ", ".join(part for part in (file, key and f"at {key}") if part)
        super().__init__(f"{where}: {message}" if where else message)


class UsageError(GitpipeError):
    """The command was asked for something that cannot be done (unknown step, ...)."""

    exit_code = 2


class StaleError(GitpipeError):
    """Steps are stale where the caller asked for none (``--frozen``, ``--check``)."""

    exit_code = 3


class ApprovalNeeded(GitpipeError):
    """Steps wait for a person's approval (`approval = true`); raised after the run
    has done everything else it could and has been recorded."""

    exit_code = 3

    def __init__(self, message: str, steps: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.steps = steps


class GitError(GitpipeError):
    """The Git repository could not be read."""

    exit_code = 4


class StoreError(GitpipeError):
    """The store or the run cache is missing, unreadable or corrupt."""

    exit_code = 5


class CorruptObject(StoreError):
    """An object in the store does not hash to its name: its bytes are not the ones
    recorded.  Raised before any of them reaches the workspace; ``digest`` names the
    object (a :class:`gitpipe.core.hashing.Digest`), ``target`` what it was read for."""

    exit_code = 5

    def __init__(
        self,
        digest: object,
        *,
        target: str = "",
        hint: str = "`gitpipe repro` moves it aside and runs its step again",
    ) -> None:
        self.digest = digest
        self.target = target
        what = f"object {digest}" + (f" (for {target})" if target else "")
        super().__init__(
            f"{what} in the store is corrupt: its bytes do not hash to its name; {hint}"
        )


class PathError(GitpipeError):
    """A file or folder gitpipe must read or write cannot be: the system refused (the
    disk is full, the file system is read-only, no permission, a loop of symbolic
    links), or it is not a regular file or folder (a FIFO, a device, a socket), or it
    changed while gitpipe read it.  The message names the path and the cause."""

    exit_code = 5


def describe(exc: OSError) -> str:
    """An :class:`OSError` in one line: the path (or paths) it names, then the cause
    as the system says it (``strerror``), as in ``/x/y: No space left on device``."""
    cause = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    text = f"{' -> '.join(paths)}: {cause}" if paths else cause
    return text.replace("\r", "\\r").replace("\n", "\\n")  # one line, whatever the path


class LockfileError(GitpipeError):
    """``gitpipe.lock`` could not be read or written."""

    exit_code = 5


class WorkspaceBusy(GitpipeError):
    """Another `gitpipe repro` holds the workspace and waiting was not wanted."""

    exit_code = 5


class StepFailed(GitpipeError):
    """One or more steps failed; raised after the run has been recorded."""

    exit_code = 1


class StorageFailed(StepFailed):
    """Steps failed because the system refused gitpipe a write it needed for them (their
    outputs into the store, their old outputs out of the way, their logs): no space, a
    read-only file system.  Not their commands' failure, so not exit 1.  Raised after
    the run has been recorded, like :class:`StepFailed`."""

    exit_code = 5


class Interrupted(GitpipeError):
    """The run was interrupted (Ctrl-C or SIGTERM)."""

    exit_code = 130


class RemoteError(StoreError):
    """A remote store is not configured right, cannot be reached, refused access, or
    sent something that is not what it claims to be."""

    exit_code = 5


class RemoteDepError(RemoteError):
    """A url a step depends on has no fingerprint now: its server cannot be reached,
    refused access, has no such object, or tells nothing that would show a change
    (neither an ETag nor a Last-Modified with a Content-Length).  ``url`` is the url
    fit to show (its credentials and query values hidden), ``cause`` why, in a phrase."""

    exit_code = 5

    def __init__(self, url: str, cause: str) -> None:
        self.url = url
        self.cause = cause
        super().__init__(f"cannot fingerprint the remote dep {url} ({cause})")


class UnsafePath(GitpipeError):
    """gitpipe was about to remove, replace, link or chmod a path that leads outside
    the repository or into a protected place (`.git`, `.gitpipe`, the store, the lock,
    a pipeline file); nothing was written.  A step it concerns fails (exit 1)."""

    exit_code = 1


#: the exit code of an error gitpipe did not expect: a bug
INTERNAL_ERROR = 70


def boundary(exc: BaseException) -> tuple[str, int]:
    """The one sentence and the exit code the command line ends with for ``exc`` (the
    console's error boundary: ``handled`` in gitpipe/cli, and the fast paths in
    gitpipe/__main__.py): a gitpipe error's own, "interrupted" for Ctrl-C, an
    ``OSError``'s path and cause and a SQLite error as store errors, else a bug."""
    if isinstance(exc, GitpipeError):
        return str(exc), exc.exit_code
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted", Interrupted.exit_code
    if isinstance(exc, OSError):
        if isinstance(exc, FileNotFoundError) and exc.filename is None and _no_cwd():
            return (
                "the current folder no longer exists (removed while this shell was in it); "
                "`cd` into the repository again",
                UsageError.exit_code,
            )
        return describe(exc), StoreError.exit_code
    sqlite3 = sys.modules.get("sqlite3")  # imported by whatever raised it, if so
    if sqlite3 is not None and isinstance(exc, sqlite3.Error):
        message = f"a SQLite database of gitpipe's could not be used ({exc})"
        return " ".join(message.split()), StoreError.exit_code
    message = f"internal error ({type(exc).__name__}: {exc})"
    return (
        f"{' '.join(message.split())}; this is a bug in gitpipe: run again with "
        "--debug for the traceback, and report it",
        INTERNAL_ERROR,
    )


def _no_cwd() -> bool:
    """Whether the process's current folder has been removed."""
    try:
        os.getcwd()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return False
