"""What `gitpipe status` says of a step, and the stat-only answer to a no-op status.

When `status` finds every step of the whole pipeline up to date (or frozen, or
skipped), it writes down what that answer rested on: the stamp (inode, mtime,
ctime, size, mode) of every path it looked at, found or missing: the pipeline files,
`gitpipe.lock`, the Git index, each dependency, output and code file, each folder it
listed, each import it looked for, the output folders' parents, and gitpipe's own
modules.  The next `status` stats those paths and nothing else; when every stamp is
the same, so is the answer, and it is given without parsing, hashing or keying
anything (make's answer, with gitpipe's reasons).  One stamp that differs, a stamp
within the racy window when it was written, or a damaged file, and `status` does
the whole work again.

This module is on the start-up path of every `status`: it imports nothing heavy.
"""

from __future__ import annotations

import marshal
import os
import sys

from gitpipe.core.layout import STATE_DIR
from gitpipe.core.stamps import Stamp, racy, stamp_of
from gitpipe.core.states import FROZEN, SKIPPED, UP_TO_DATE

#: ``typing.TYPE_CHECKING``, without importing `typing` on the way of a no-op status
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path
    from typing import Any

    from gitpipe.core.records import StepStatus

#: the snapshot's layout; a file of another layout is ignored
FORMAT = 5

_GLOB_CHARS = frozenset("*?[")
_STATES = (UP_TO_DATE, FROZEN, SKIPPED)  # what a snapshot may hold


class _Unknowable(Exception):
    """A path could not be stamped (permission denied, say): no snapshot."""


def _stamp(path: str, *, follow: bool = True) -> Stamp:
    """The stamp of ``path`` now; :class:`_Unknowable` when it cannot be told (a path
    that cannot be stat-ed is not a missing one)."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:
        raise _Unknowable(path) from exc
    return stamp_of(st)


class Recorder:
    """The paths one `status` looked at, each with its stamp when first looked at.

    Paths are absolute; a path looked at without following links is kept apart
    (``"L" + path``), since its own stamp is what matters there."""

    def __init__(self) -> None:
        self.stamps: dict[str, Stamp] = {}
        self.broken = False  # a path could not be stamped: write no snapshot

    def saw(self, path: str, st: os.stat_result | None) -> None:
        """``path`` was looked at, and ``st`` is what it was then."""
        self.stamps.setdefault(path, stamp_of(st))

    def look(self, path: str, *, follow: bool = True) -> None:
        """Stamp ``path`` now."""
        name = path if follow else "L" + path
        if name not in self.stamps:
            try:
                self.stamps[name] = _stamp(path, follow=follow)
            except _Unknowable:
                self.broken = True

    def look_glob(self, root: str, pattern: str) -> None:
        """Stamp the folders a glob of ``pattern`` under ``root`` lists: a new match
        changes one of them."""
        import glob

        parts = pattern.split("/")
        for i, part in enumerate(parts):
            if not _GLOB_CHARS & set(part):
                continue
            prefix = "/".join(parts[:i])
            if part == "**":  # every folder under each match of what comes before
                wanted = f"{prefix}/**/" if prefix else "**/"
                folders = [prefix] if prefix and not _GLOB_CHARS & set(prefix) else []
                folders += glob.glob(wanted, root_dir=root, recursive=True)
            elif prefix:
                folders = glob.glob(prefix, root_dir=root, recursive=True)
            else:
                folders = [""]
            for folder in folders:
                full = os.path.join(root, folder)
                if os.path.isdir(full):
                    self.look(os.path.normpath(full))


def module_paths() -> list[str]:
    """gitpipe's own modules and their folders: an upgrade or an edit of gitpipe may
    change any answer."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    paths = []
    for folder, subfolders, names in os.walk(package):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith((".", "__")))
        paths.append(folder)
        paths += [os.path.join(folder, name) for name in sorted(names) if name.endswith(".py")]
    return paths


def snapshot_path(state_dir: str | os.PathLike[str], file: str | os.PathLike[str]) -> str:
    """Where the snapshot of the pipeline ``file`` is kept in ``state_dir``."""
    return os.path.join(state_dir, "parsed", f"status-{os.path.basename(file)}.snapshot")


def _header(file: Path) -> tuple[Any, ...]:
    return (FORMAT, sys.version, str(file))


class Snapshot:
    """A kept answer whose stamps all hold now (a plain class: no `dataclasses` on the
    way of a no-op status)."""

    __slots__ = ("git_check", "head", "lock_current", "pipeline", "statuses")

    def __init__(
        self,
        statuses: list[StepStatus],
        head: str | None = None,
        lock_current: bool = False,
        pipeline: str | None = None,
        git_check: str | None = None,
    ) -> None:
        self.statuses = statuses
        #: HEAD's commit when the answer was kept, and whether `gitpipe.lock` then held
        #: exactly what a repro that runs nothing writes there on that commit
        self.head = head
        self.lock_current = lock_current
        #: what a no-op `repro` records and checks without parsing the pipeline
        #: (gitpipe/run/noop.py): the pipeline's name (None: that repro must do the
        #: whole work), and the digest of the Git check that passed
        #: (gitpipe.run.guard.git_check_digest)
        self.pipeline = pipeline
        self.git_check = git_check


class Plain:
    """What a no-op `status` prints, kept with the snapshot: its lines (as
    :func:`gitpipe.core.records.status_lines` makes them of the kept statuses), each
    step's state, whether a reason says a remote dep was unreachable, and the rows
    the statuses are made of (:func:`statuses_of`), for a `status` that needs more."""

    __slots__ = ("lines", "rows", "states", "unreachable")

    def __init__(
        self, lines: list[str], states: list[str], unreachable: bool, rows: list[Any]
    ) -> None:
        self.lines = lines
        self.states = states
        self.unreachable = unreachable
        self.rows = rows


def write(
    state_dir: Path,
    file: Path,
    statuses: Iterable[StepStatus],
    recorder: Recorder,
    *,
    started_ns: int,
    head: str | None = None,
    lock_current: bool = False,
    pipeline: str | None = None,
    git_check: str | None = None,
) -> bool:
    """Keep ``statuses`` as the answer while no stamp ``recorder`` took changes.
    Nothing is written when a stamp is missing, or within the racy window of
    ``started_ns`` (the path could change again without its stamp changing), or
    when a step would have to run."""
    rows = []
    for s in statuses:
        if s.state not in _STATES or s.upstream or s.cached:
            return False
        reasons = [(r.kind, r.detail) for r in s.reasons]
        rows.append((s.step, s.state, reasons, s.key, list(s.code), s.code_note))
    if recorder.broken or not state_dir.is_dir():
        return False
    for path in module_paths():
        recorder.look(path)
    stamps = recorder.stamps
    if any(s is not None and racy(max(s[1], s[2]), started_ns) for s in stamps.values()):
        return False
    from pathlib import Path

    from gitpipe.core import atomic
    from gitpipe.core.records import status_lines

    kept = statuses_of(rows)  # what a read gives back: the lines are made of those
    lines = status_lines(kept)
    unreachable = any(" unreachable: " in str(r) for s in kept for r in s.reasons)
    plain = (lines, [s.state for s in kept], unreachable)
    data = (_header(file), stamps, rows, head, lock_current, pipeline, git_check, plain)
    try:  # a cache: never a reason to fail
        (state_dir / "parsed").mkdir(exist_ok=True)
        atomic.write_bytes(Path(snapshot_path(state_dir, file)), marshal.dumps(data), sync=False)
    except (OSError, ValueError):
        return False
    return True


def answer(file: Path) -> list[StepStatus] | None:
    """The statuses of the pipeline ``file``'s snapshot if its stamps all hold now,
    else None."""
    snapshot = read(file)
    return snapshot.statuses if snapshot is not None else None


def plain(file: str) -> Plain | None:
    """What a no-op `status` of the pipeline ``file`` prints, if its snapshot's stamps
    all hold now, else None: stat calls and one small file read, nothing else
    imported (the console script's fast path, gitpipe/__main__.py)."""
    kept = _kept(file)
    return Plain(*kept[7], kept[2]) if kept is not None else None


def read(file: Path) -> Snapshot | None:
    """The pipeline ``file``'s snapshot if its stamps all hold now, else None."""
    kept = _kept(os.fspath(file))
    if kept is None:
        return None
    _header, _stamps, rows, head, lock_current, pipeline, git_check, _plain = kept
    return Snapshot(statuses_of(rows), head, bool(lock_current), pipeline, git_check)


def _kept(file: str) -> tuple[Any, ...] | None:
    """The fields of the pipeline ``file``'s snapshot if its stamps all hold now."""
    file = os.path.realpath(file)
    try:
        with open(
            snapshot_path(os.path.join(os.path.dirname(file), STATE_DIR), file), "rb"
        ) as handle:
            kept = marshal.loads(handle.read())
        if kept[0] != _header(file) or len(kept) != 8:
            return None
        for path, then in kept[1].items():
            now = _stamp(path[1:], follow=False) if path.startswith("L") else _stamp(path)
            if now != then:
                return None
    except (OSError, ValueError, EOFError, TypeError, _Unknowable, AttributeError, IndexError):
        return None
    return kept


def statuses_of(rows: list[Any]) -> list[StepStatus]:
    """The statuses kept as ``rows``."""
    from gitpipe.core.records import Reason, StepStatus

    return [
        StepStatus(
            step=step,
            state=state,
            reasons=tuple(Reason(kind, detail) for kind, detail in reasons),
            key=key,
            code=tuple(code),
            action=state,
            code_note=note,
        )
        for step, state, reasons, key, code, note in rows
    ]
