"""The walk along HEAD's first-parent history, and its cache ``versions.db``.

    first-parent commits, oldest first
      │  snapshot (only where its trace no longer holds) ──> rules.compare ──> bump
      ▼
    Point per commit (version, step versions, changes) ──> .gitpipe/versions.db

The first commit holding the pipeline file is ``1.0.0``; each later commit is
compared with the previous valid pipeline (:mod:`gitpipe.history.rules`).  Points
are kept in ``.gitpipe/versions.db`` keyed by commit, so a repeated ``gitpipe
versions`` (and the version each repro writes into the lock) walks only the commits
it has not seen.

In a shallow clone the commits below the cut are missing: versions there are
``unknown`` unless a commit's ``gitpipe.lock`` records a version with the very
fingerprint the commit's pipeline has, which anchors the count from there on.
"""

from __future__ import annotations

import dataclasses
import json
import posixpath
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitpipe.core.errors import GitError, LockfileError
from gitpipe.core.layout import ensure_state_dir
from gitpipe.history.git import CommitInfo, Repository, Trace
from gitpipe.history.rules import (
    FIRST,
    MAJOR,
    RULES,
    UNKNOWN,
    VERSION_NAME,
    Change,
    bump,
    compare,
    level_of,
)
from gitpipe.history.shape import ABSENT, INVALID, VALID, PipelinePath, Snapshot, Snapshots
from gitpipe.identity import action
from gitpipe.identity.codedeps import CODE_SCHEMA
from gitpipe.store import lockfile


@dataclass(frozen=True, slots=True)
class Point:
    """One commit on HEAD's first-parent line, with the versions it carries.

    ``version`` is "" where the pipeline file is absent (or has never been valid)
    and ``unknown`` below the cut of a shallow clone."""

    commit: str
    parent: str | None
    time: int
    offset: int
    summary: str
    state: str  # ok | invalid | absent
    version: str
    fingerprint: str
    steps: Mapping[str, str]  # step -> version, for the steps of the last valid pipeline
    gone: Mapping[str, str]  # removed step -> the version it had
    changes: tuple[Change, ...] = ()
    note: str = ""  # "first commit holding gitpipe.toml", "gitpipe.toml removed", ...

    def to_row(self, pipeline: str) -> tuple[Any, ...]:
        return (
            pipeline,
            self.commit,
            self.parent,
            self.time,
            self.offset,
            self.summary,
            self.state,
            self.version,
            self.fingerprint,
            json.dumps({"steps": self.steps, "gone": self.gone}, sort_keys=True),
            json.dumps([[c.level, c.kind, c.step, c.detail] for c in self.changes]),
            self.note,
        )

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> Point:
        (commit, parent, time, offset, summary, state, version, fp, steps, changes, note) = row
        extra = json.loads(steps)
        return cls(
            commit=commit,
            parent=parent,
            time=time,
            offset=offset,
            summary=summary,
            state=state,
            version=version,
            fingerprint=fp,
            steps=extra["steps"],
            gone=extra["gone"],
            changes=tuple(Change(*item) for item in json.loads(changes)),
            note=note,
        )


@dataclass(frozen=True, slots=True)
class History:
    """HEAD's first-parent line, newest first, for one pipeline file."""

    pipeline: PipelinePath
    head: str | None  # None: the repository has no commits yet
    points: tuple[Point, ...]
    cut: bool = False  # a shallow clone: history stops before the first commit

    @property
    def current(self) -> Point | None:
        return self.points[0] if self.points else None

    def commit_of(self, version: str) -> str | None:
        """The newest commit carrying a version (where its lock has that version's
        results, if any was committed)."""
        match = VERSION_NAME.match(version)
        if match is None:
            return None
        wanted = ".".join(match.groups())
        return next((p.commit for p in self.points if p.version == wanted), None)

    def step_names(self) -> set[str]:
        names: set[str] = set()
        for point in self.points:
            names |= set(point.steps) | set(point.gone)
        return names


class _Cache:
    """Points by (pipeline, commit) in SQLite; a damaged or locked file is skipped."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS points (
        pipeline TEXT NOT NULL,
        commit_id TEXT NOT NULL,
        parent TEXT,
        time INTEGER NOT NULL,
        offset INTEGER NOT NULL,
        summary TEXT NOT NULL,
        state TEXT NOT NULL,
        version TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        steps TEXT NOT NULL,
        changes TEXT NOT NULL,
        note TEXT NOT NULL,
        PRIMARY KEY (pipeline, commit_id)
    ) WITHOUT ROWID;
    """
    COLUMNS = "commit_id, parent, time, offset, summary, state, version, fingerprint, steps, "
    COLUMNS += "changes, note"
    RULES = f"{RULES} {action.FINGERPRINT_SCHEMA} {CODE_SCHEMA.decode().rstrip(chr(0))}"

    def __init__(self, path: Path | None) -> None:
        self.db: sqlite3.Connection | None = None
        if path is None:
            return
        try:
            ensure_state_dir(path.parent, parents=True)
            db = sqlite3.connect(path, timeout=30)
            with db:
                db.executescript(self.SCHEMA)
                row = db.execute("SELECT value FROM meta WHERE key = 'rules'").fetchone()
                if row is None or row[0] != self.RULES:
                    db.execute("DELETE FROM points")
                    db.execute("INSERT OR REPLACE INTO meta VALUES ('rules', ?)", (self.RULES,))
            self.db = db
        except (OSError, sqlite3.Error):
            self.db = None  # a cache only: compute without it

    def close(self) -> None:
        if self.db is not None:
            self.db.close()

    def get(self, pipeline: str, commit: str) -> Point | None:
        if self.db is None:
            return None
        try:
            row = self.db.execute(
                f"SELECT {self.COLUMNS} FROM points WHERE pipeline = ? AND commit_id = ?",
                (pipeline, commit),
            ).fetchone()
        except sqlite3.Error:
            return None
        return Point.from_row(row) if row else None

    def rows(self, pipeline: str) -> dict[str, tuple[Any, ...]]:
        if self.db is None:
            return {}
        try:
            cursor = self.db.execute(
                f"SELECT {self.COLUMNS} FROM points WHERE pipeline = ?", (pipeline,)
            )
            return {row[0]: row for row in cursor}
        except sqlite3.Error:
            return {}

    def put(self, pipeline: str, points: Iterable[Point]) -> None:
        if self.db is None:
            return
        try:
            with self.db:
                self.db.executemany(
                    "INSERT OR REPLACE INTO points VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [point.to_row(pipeline) for point in points],
                )
        except sqlite3.Error:
            pass


@dataclass
class _State:
    """What the walk carries from one commit to the next."""

    current: Snapshot | None = None  # the previous commit's snapshot
    trace: Trace | None = None  # what computing it looked at
    base: Snapshot | None = None  # the last valid snapshot
    version: str = ""  # the version of ``base``
    steps: dict[str, str] = field(default_factory=dict)  # versions of base's steps
    gone: dict[str, str] = field(default_factory=dict)


class _Walker(Snapshots):
    """Computes points along first-parent history, oldest first."""

    def __init__(self, repo: Repository, pipeline: PipelinePath) -> None:
        super().__init__(repo, pipeline)
        self._locks: dict[str, lockfile.Lock | None] = {}

    def lock_at(self, tree: str) -> lockfile.Lock | None:
        entry = self.repo.entry(tree, self.pipeline.lock)
        if entry is None:
            return None
        if entry[1] not in self._locks:
            try:
                text = self.repo.blob(entry[1]).decode("utf-8")
                self._locks[entry[1]] = lockfile.loads(text, name=self.pipeline.lock)
            except (UnicodeDecodeError, LockfileError, GitError):
                self._locks[entry[1]] = None
        return self._locks[entry[1]]

    def resume(self, anchor: Point, rows: Mapping[str, tuple[Any, ...]]) -> _State:
        """The state after a cached point: its snapshot is computed again (one commit)."""
        state = _State()
        state.current, state.trace = self.snapshot(self.repo.commit(anchor.commit).tree)
        base = anchor
        while base.state != VALID and base.parent is not None and base.parent in rows:
            base = Point.from_row(rows[base.parent])
        if base.state == VALID:
            state.base = (
                state.current
                if base is anchor
                else self.snapshot(self.repo.commit(base.commit).tree)[0]
            )
            state.version = base.version
            state.steps = dict(base.steps)
        state.gone = dict(anchor.gone)
        return state

    def walk(self, chain: list[CommitInfo], state: _State, *, known: bool) -> list[Point]:
        """Points for ``chain`` (oldest first), continuing from ``state``.

        ``known`` is False when the oldest commit's parents were cut off."""
        points = []
        name = self.pipeline.name
        newest = chain[-1].sha if chain else None
        for info in chain:
            snap: Snapshot | None = None
            if state.trace is not None and self.repo.trace_holds(info.tree, state.trace):
                snap = state.current
            else:
                snap, state.trace = self.snapshot(info.tree)
            previous = state.current
            state.current = snap
            assert snap is not None
            changes: list[Change] = []
            note = ""
            if previous is not None and snap == previous:
                pass  # nothing versions track changed here
            elif snap.state == ABSENT:
                note = f"{name} removed" if previous and previous.state != ABSENT else ""
            elif snap.state == INVALID:
                note = f"{name} is not valid here: {snap.error}"
            elif state.base is None:
                state.version = FIRST if known else UNKNOWN
                state.steps = {step: FIRST if known else UNKNOWN for step in snap.steps}
                note = f"first commit holding {name}" if known else ""
                state.base = snap
            else:
                if previous is not None and previous.state == ABSENT:
                    note = f"{name} added again"
                changes = compare(state.base, snap)
                state.version = bump(state.version, level_of(changes))
                levels: dict[str, str] = {}
                for change in changes:  # most significant first
                    levels.setdefault(change.step, change.level)
                steps = {}
                for step in snap.steps:
                    if step in state.steps:
                        steps[step] = bump(state.steps[step], levels.get(step))
                    elif step in state.gone:
                        steps[step] = bump(state.gone.pop(step), MAJOR)
                    else:
                        steps[step] = FIRST if known else UNKNOWN
                for step in state.steps:
                    if step not in snap.steps:
                        state.gone[step] = state.steps[step]
                state.steps = steps
                state.base = snap
            if state.version == UNKNOWN and snap.state == VALID:
                lock = self.lock_at(info.tree)
                if (
                    lock is not None
                    and VERSION_NAME.match(lock.version)
                    and lock.fingerprint == snap.fingerprint
                ):
                    state.version = lock.version.lstrip("v")
                    note = note or f"version from {posixpath.basename(self.pipeline.lock)}"
            valid = snap.state == VALID or (snap.state == INVALID and state.base is not None)
            point = Point(
                commit=info.sha,
                parent=info.parents[0] if info.parents else None,
                time=info.time,
                offset=info.offset,
                summary=info.summary,
                state=snap.state,
                version=state.version if valid else "",
                # the newest commit's, for `+dirty` and the lock; others on demand
                fingerprint=snap.fingerprint if info.sha == newest else "",
                steps=dict(state.steps) if valid else {},
                gone=dict(state.gone),
                changes=tuple(changes),
                note=note,
            )
            points.append(point)
        return points


def history(repo: Repository, pipeline_file: Path, *, cache_file: Path | None = None) -> History:
    """The versions along HEAD's first-parent history, newest first."""
    pipeline = PipelinePath.of(repo, pipeline_file)
    head = repo.head_commit()
    if head is None:
        return History(pipeline, None, ())
    cache = _Cache(cache_file)
    try:
        rows = cache.rows(pipeline.path)
        chain: list[CommitInfo] = []
        anchor: Point | None = None
        for info in repo.first_parent(head):
            if info.sha in rows:
                anchor = Point.from_row(rows[info.sha])
                break
            chain.append(info)
        cut = not anchor and bool(chain) and chain[-1].cut
        chain.reverse()
        walker = _Walker(repo, pipeline)
        state = walker.resume(anchor, rows) if anchor and chain else _State()
        new = walker.walk(chain, state, known=not cut)
        if not cut:
            cache.put(pipeline.path, new)
        points = list(reversed(new))
        if anchor is not None:
            older: Point | None = anchor
            while older is not None:
                points.append(older)
                parent = older.parent
                older = Point.from_row(rows[parent]) if parent and parent in rows else None
        if points:
            points[0] = _fingerprinted(repo, pipeline, points[0], cache)
        return History(pipeline, head, tuple(points), cut=cut)
    finally:
        cache.close()


def _fingerprinted(repo: Repository, pipeline: PipelinePath, point: Point, cache: _Cache) -> Point:
    """A point with its fingerprint (computed once more if the cache has none)."""
    if point.fingerprint or point.state != VALID:
        return point
    snap, _ = Snapshots(repo, pipeline).snapshot(repo.commit(point.commit).tree)
    point = dataclasses.replace(point, fingerprint=snap.fingerprint)
    cache.put(pipeline.path, [point])
    return point


def head_point(repo: Repository, pipeline_file: Path, *, cache_file: Path | None) -> Point | None:
    """HEAD's point, from the cache when it is there (the common case after a repro)."""
    head = repo.head_commit()
    if head is None:
        return None
    pipeline = PipelinePath.of(repo, pipeline_file)
    cache = _Cache(cache_file)
    try:
        found = cache.get(pipeline.path, head)
        if found is not None:
            return _fingerprinted(repo, pipeline, found, cache)
    finally:
        cache.close()
    return history(repo, pipeline_file, cache_file=cache_file).current


def cache_path(state_dir: Path) -> Path:
    return state_dir / "versions.db"
