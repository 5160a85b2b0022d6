"""Pipeline versions, derived from first-parent history of HEAD; labels, never keys.

The first commit holding the pipeline file is ``1.0.0``.  Each later commit is
compared with the previous valid pipeline on the first-parent line:

    set of steps, edges, output or input paths  -> major   (2.0.0)
    a command (cmd, wdir, env) or a step's code  -> minor   (1.1.0)
    params only                                  -> patch   (1.0.1)
    anything else (data, docs, TOML comments)    -> the version is kept

Commands are compared as written: a param (or matrix value) that reaches a command
through ``${params.X}`` is a change of params, not of the command.

Each step has its own version by the same rule, restricted to the step.  Every
field of the pipeline's fingerprint falls in one of these classes, so a commit keeps
its version exactly when its fingerprint is the one before it.

A commit's *snapshot* (the parsed pipeline, its graph and its code digests, read
from Git objects) is computed only where something it depends on changed: a
snapshot records every file and folder it looked at (a :class:`~gitpipe.history.git.Trace`)
and the next commit first checks those blob and tree ids.  Results are kept in
``.gitpipe/versions.db`` keyed by commit, so a repeated ``gitpipe versions`` (and the
version each repro writes into the lock) walks only the commits it has not seen.

In a shallow clone the commits below the cut are missing: versions there are
``unknown`` unless a commit's ``gitpipe.lock`` records a version with the very
fingerprint the commit's pipeline has, which anchors the count from there on.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import glob as _glob
import json
import posixpath
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitpipe.core.errors import GitError, LockfileError, PipelineError, UsageError
from gitpipe.core.hashing import Digest, canonical, digest_file
from gitpipe.history.git import CommitInfo, Repository, Trace, TreeSource
from gitpipe.identity import action
from gitpipe.identity.codedeps import (
    CODE_SCHEMA,
    Discoverer,
    Imported,
    Source,
    code_digest,
    commands_of,
    imports,
)
from gitpipe.pipeline import graph as graphs
from gitpipe.pipeline import spec
from gitpipe.pipeline.values import flatten
from gitpipe.store import lockfile

RULES = "gitpipe.history.versions/2"
MAJOR = "major"
MINOR = "minor"
PATCH = "patch"
_RANK = {PATCH: 1, MINOR: 2, MAJOR: 3}
FIRST = "1.0.0"
UNKNOWN = "unknown"
SHALLOW = "unknown (shallow clone; fetch more history)"
DIRTY = "+dirty"
_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")

ABSENT = "absent"
INVALID = "invalid"
VALID = "ok"


# -- snapshots: what versions track, at one commit or in the work tree -------------


@dataclass(frozen=True, slots=True)
class StepShape:
    """What a step's version depends on."""

    cmd: tuple[str, ...]  # cmd, wdir and env resolved (what runs)
    wdir: str
    env: Mapping[str, str]
    template: spec.Template  # cmd, wdir and env as written
    parents: tuple[str, ...]  # edges: the steps it reads from or runs after
    after: tuple[str, ...]  # sorted, as written
    deps: tuple[str, ...]  # sorted, as written (folders with a trailing "/")
    outs: tuple[str, ...]  # sorted, as written
    metrics: tuple[str, ...]  # sorted
    params: Mapping[str, str]  # the params it uses: dotted key -> canonical JSON
    code: Mapping[str, str]  # code file -> code digest


@dataclass(frozen=True)
class Snapshot:
    """The pipeline as versions see it: absent, invalid (with the error) or valid."""

    state: str
    params: Mapping[str, str] = field(default_factory=dict)  # [params]: dotted -> JSON
    steps: Mapping[str, StepShape] = field(default_factory=dict)  # in file order
    error: str = ""
    #: what the fingerprint is computed from, when it is asked for
    basis: tuple[spec.Pipeline, Mapping[str, Mapping[str, Digest]]] | None = field(
        default=None, compare=False, repr=False
    )

    @functools.cached_property
    def fingerprint(self) -> str:
        """The pipeline's fingerprint (as in the lock), "" without a valid pipeline."""
        return str(action.fingerprint(*self.basis)) if self.basis else ""


NO_PIPELINE = Snapshot(ABSENT)


class CodeCache:
    """What code discovery learnt, by content: shared between the commits of a walk
    and the work tree, so that each file is parsed and digested once."""

    def __init__(self) -> None:
        self.imports: dict[Digest, list[Imported] | None] = {}
        self.code: dict[Digest, Digest] = {}  # bytes of a .py file -> its code digest
        self.blobs: dict[str, Digest] = {}  # Git blob id -> digest of its bytes
        #: (pipeline file digest, path) -> parsed pipeline and graph, or the error
        self.pipelines: dict[tuple[Digest, str], tuple[spec.Pipeline, graphs.Graph] | str] = {}


def step_code(step: spec.Step, source: Source, cache: CodeCache | None = None) -> dict[str, Digest]:
    """A step's code, as the project keys it: the files its ``code`` globs name plus
    the Python its commands (or its ``fn`` module) run and import, each with its code
    digest (``.py`` files by syntax tree unless ``code_digest = "bytes"``)."""
    cache = cache or CodeCache()
    found = Discoverer(source, cache=cache.imports).discover(
        commands_of(step), step.wdir, step.code
    )
    code = {}
    for path in found.files:
        raw = source.digest(path)
        if step.code_digest != "ast" or not path.endswith(".py"):
            code[path] = raw
            continue
        digest = cache.code.get(raw)
        if digest is None:
            digest = cache.code[raw] = code_digest(path, source.read(path))[0]
        code[path] = digest
    return code


def shape(
    pipeline: spec.Pipeline, graph: graphs.Graph, code: Mapping[str, Mapping[str, Digest]]
) -> Snapshot:
    """A valid snapshot from a parsed pipeline, its graph and its steps' code."""
    steps = {}
    for name, step in pipeline.steps.items():
        steps[name] = StepShape(
            cmd=step.cmd,
            wdir=step.wdir,
            env=dict(step.env),
            template=step.template,
            parents=tuple(sorted(graph.parents[name])),
            after=tuple(sorted(step.after)),
            deps=tuple(sorted(str(dep) for dep in step.deps)),
            outs=tuple(sorted(str(out) for out in step.outs)),
            metrics=tuple(sorted(str(out) for out in step.metrics)),
            params=encoded(step.params),
            code={path: str(digest) for path, digest in sorted(code.get(name, {}).items())},
        )
    return Snapshot(
        VALID,
        params=encoded(pipeline.params),
        steps=steps,
        basis=(pipeline, code),
    )


def encoded(params: Mapping[str, Any]) -> dict[str, str]:
    """Params flattened to dotted keys, each value in the canonical encoding keys use,
    so that comparing them tells 1 from 1.0 as keys do (Python's == does not)."""
    return {key: canonical(value).decode("utf-8") for key, value in flatten(params).items()}


def take_snapshot(
    source: Source,
    *,
    name: str,
    file: Path,
    cache: CodeCache,
    code_of: Callable[[spec.Step], dict[str, Digest]] | None = None,
) -> Snapshot:
    """Read, parse and digest the pipeline ``name`` (relative to the source's folder);
    ``file`` is where it lives in the work tree (it names the pipeline by default).
    ``code_of`` finds a step's code (default: :func:`step_code` over ``source``)."""
    if not source.is_file(name):
        return NO_PIPELINE
    key = (source.digest(name), str(file))
    parsed = cache.pipelines.get(key)
    if parsed is None:
        folder = posixpath.dirname(name)

        def read_nested(relpath: str) -> str:  # a nested pipeline file, from the same tree
            path = posixpath.normpath(posixpath.join(folder, relpath))
            if not source.is_file(path):
                raise FileNotFoundError(path)
            return source.read(path).decode("utf-8")

        try:
            text = source.read(name).decode("utf-8")
            pipeline = spec.parse(text, file=file, read=read_nested)
            parsed = (pipeline, graphs.build(pipeline))
        except UnicodeDecodeError as exc:
            parsed = f"{name} is not UTF-8 text ({exc.reason})"
        except PipelineError as exc:
            parsed = str(exc)
        if isinstance(parsed, str) or not parsed[0].includes:  # nested files change apart
            cache.pipelines[key] = parsed
    if isinstance(parsed, str):
        return Snapshot(INVALID, error=parsed)
    pipeline, graph = parsed
    find = code_of or (lambda step: step_code(step, source, cache))
    return shape(
        pipeline, graph, {step_name: find(step) for step_name, step in pipeline.steps.items()}
    )


class FileSource:
    """The work tree's files under a folder, as a codedeps ``Source``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._digests: dict[str, Digest] = {}

    def is_file(self, path: str) -> bool:
        return (self.root / path).is_file()

    def read(self, path: str) -> bytes:
        return (self.root / path).read_bytes()

    def glob(self, pattern: str) -> list[str]:
        found = set()
        for match in _glob.glob(pattern, root_dir=self.root, recursive=True):
            if (self.root / match).is_file():
                found.add(posixpath.normpath(Path(match).as_posix()))
        return sorted(found)

    def digest(self, path: str) -> Digest:
        found = self._digests.get(path)
        if found is None:
            found = self._digests[path] = digest_file(self.root / path)
        return found


def worktree_snapshot(pipeline_file: Path, cache: CodeCache | None = None) -> Snapshot:
    """The pipeline as it is in the work tree now."""
    file = pipeline_file.resolve()
    return take_snapshot(
        FileSource(file.parent), name=file.name, file=file, cache=cache or CodeCache()
    )


# -- comparing snapshots -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """One reason for a bump: ``major: +evaluate``, ``minor: code of train (src/a.py)``.

    ``kind`` is one of ``+``, ``-``, edges, outputs, inputs, command, code, params."""

    level: str
    kind: str
    step: str = ""  # the step it concerns; "" for the pipeline as a whole
    detail: str = ""

    @property
    def text(self) -> str:
        return describe(self.kind, [self.step] if self.step else [], self.detail)

    def __str__(self) -> str:
        return f"{self.level}: {self.text}"


def describe(kind: str, steps: list[str], detail: str = "") -> str:
    """``code of train (src/util.py)``; many steps are named a few at a time."""
    if kind in ("+", "-"):
        return ", ".join(kind + step for step in steps)
    shown = ", ".join(steps[:3]) + (f" and {len(steps) - 3} more" if len(steps) > 3 else "")
    text = f"{kind} of {shown}" if steps else kind
    return f"{text} ({detail})" if detail else text


def summarise(changes: Iterable[Change]) -> list[str]:
    """Changes as people read them: the same change of several steps on one line."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for change in changes:
        groups.setdefault((change.level, change.kind, change.detail), []).append(change.step)
    return [
        f"{level}: {describe(kind, [s for s in steps if s], detail)}"
        for (level, kind, detail), steps in groups.items()
    ]


def _plus_minus(old: Iterable[str], new: Iterable[str]) -> str:
    before, after = set(old), set(new)
    return ", ".join(
        [f"+{item}" for item in sorted(after - before)]
        + [f"-{item}" for item in sorted(before - after)]
    )


def _same(a: Any, b: Any) -> bool:
    return canonical(a) == canonical(b)


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Keys added, removed or changed (1 and 1.0 differ, as they do in keys)."""
    return sorted(
        key
        for key in set(old) | set(new)
        if key not in old or key not in new or not _same(old[key], new[key])
    )


def code_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """Code files modified (``a.py``), renamed (``a.py -> b.py``), added, removed."""
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    renamed = []
    for path in list(removed):
        twin = next((a for a in added if new[a] == old[path]), None)
        if twin is not None:
            renamed.append(f"{path} -> {twin}")
            added.remove(twin)
            removed.remove(path)
    modified = sorted(path for path in set(old) & set(new) if old[path] != new[path])
    return modified + renamed + [f"+{p}" for p in added] + [f"-{p}" for p in removed]


@dataclass(frozen=True, slots=True)
class CommandEdits:
    """What of a step's command (``cmd``, ``wdir``, ``env``) was edited as written."""

    cmd: bool = False
    wdir: bool = False
    env: tuple[str, ...] = ()  # keys added, removed or edited

    def __bool__(self) -> bool:
        return self.cmd or self.wdir or bool(self.env)


def _edited(old_written: str, new_written: str, old: str, new: str) -> bool:
    """A string edited as written: its text changed, and so did what it resolves to.
    What only the values put in through ``${params.X}`` change is a change of params;
    a rewrite that resolves to the same string runs the same thing (and keeps the
    fingerprint, so it keeps the version)."""
    return old_written != new_written and old != new


def command_edits(old: StepShape, new: StepShape) -> CommandEdits:
    """How a step's command was edited, as written (versions and diff both ask)."""
    cmd = len(old.cmd) != len(new.cmd) or any(
        _edited(*texts)
        for texts in zip(old.template.cmd, new.template.cmd, old.cmd, new.cmd, strict=True)
    )
    env = tuple(
        sorted(
            key
            for key in set(old.env) | set(new.env)
            if key not in old.env
            or key not in new.env
            or _edited(old.template.env[key], new.template.env[key], old.env[key], new.env[key])
        )
    )
    wdir = _edited(old.template.wdir, new.template.wdir, old.wdir, new.wdir)
    return CommandEdits(cmd=cmd, wdir=wdir, env=env)


def step_changes(name: str, old: StepShape | None, new: StepShape | None) -> list[Change]:
    """How one step changed, most significant first."""
    if old is None and new is None:
        return []
    if old is None:
        return [Change(MAJOR, "+", name)]
    if new is None:
        return [Change(MAJOR, "-", name)]
    if old == new:
        return []
    found = []
    if old.parents != new.parents or old.after != new.after:
        detail = _plus_minus(old.parents, new.parents) or (
            "after " + _plus_minus(old.after, new.after)
        )
        found.append(Change(MAJOR, "edges", name, detail))
    if old.outs != new.outs or old.metrics != new.metrics:
        detail = _plus_minus(old.outs + old.metrics, new.outs + new.metrics) or (
            "metrics " + _plus_minus(old.metrics, new.metrics)
        )
        found.append(Change(MAJOR, "outputs", name, detail))
    if old.deps != new.deps:
        found.append(Change(MAJOR, "inputs", name, _plus_minus(old.deps, new.deps)))
    edits = command_edits(old, new)
    details = []
    if edits.wdir:
        details.append("wdir")
    if edits.env:
        details.append("env " + ", ".join(edits.env))
    if edits:
        found.append(Change(MINOR, "command", name, "; ".join(details)))
    code = code_changes(old.code, new.code)
    if code:
        found.append(Change(MINOR, "code", name, ", ".join(code)))
    params = changed_keys(old.params, new.params)
    if params:
        found.append(Change(PATCH, "params", name, ", ".join(params)))
    return found


def compare(old: Snapshot, new: Snapshot) -> list[Change]:
    """Every change from one valid snapshot to the next, most significant first."""
    names = list(new.steps) + [name for name in old.steps if name not in new.steps]
    found: list[Change] = []
    step_params: set[str] = set()
    for name in names:
        before, after = old.steps.get(name), new.steps.get(name)
        if before is not after:
            found += step_changes(name, before, after)
        step_params |= set(before.params if before else ()) | set(after.params if after else ())
    loose = [
        key
        for key in changed_keys(old.params, new.params)
        if not any(key == used or key.startswith(used + ".") for used in step_params)
    ]
    if loose:
        found.append(Change(PATCH, "params", "", ", ".join(loose)))
    found.sort(key=lambda change: -_RANK[change.level])
    return found


def level_of(changes: Iterable[Change]) -> str | None:
    """The largest bump among changes (None: the version is kept)."""
    return max((change.level for change in changes), key=_RANK.__getitem__, default=None)


def bump(version: str, level: str | None) -> str:
    """``1.4.2`` bumped by ``minor`` is ``1.5.0``; an unknown version stays unknown."""
    match = _VERSION.match(version)
    if level is None or match is None:
        return version
    major, minor, patch = (int(part) for part in match.groups())
    if level == MAJOR:
        return f"{major + 1}.0.0"
    if level == MINOR:
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"


# -- history -------------------------------------------------------------------------


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

    @property
    def date(self) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(
            self.time, _dt.timezone(_dt.timedelta(seconds=self.offset))
        )

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
class PipelinePath:
    """Where a pipeline file is: relative to the repository's top, and in the work tree."""

    file: Path  # absolute, in the work tree
    path: str  # relative to the top, POSIX
    folder: str  # its folder relative to the top ('' at the top)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def lock(self) -> str:
        return posixpath.splitext(self.path)[0] + ".lock"

    @classmethod
    def of(cls, repo: Repository, pipeline_file: Path) -> PipelinePath:
        file = pipeline_file.resolve()
        path = repo.relpath(file)
        if path.startswith("../"):
            raise GitError(f"{file} is outside the Git repository at {repo.top}")
        return cls(file, path, posixpath.dirname(path))


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
        match = _VERSION.match(version)
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
            _ensure_state_dir(path.parent)
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


def _ensure_state_dir(path: Path) -> None:
    """The state folder, ignored by Git (as the project makes it)."""
    path.mkdir(parents=True, exist_ok=True)
    ignore = path / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# gitpipe's local state: never commit it\n*\n", encoding="utf-8")


@dataclass
class _State:
    """What the walk carries from one commit to the next."""

    current: Snapshot | None = None  # the previous commit's snapshot
    trace: Trace | None = None  # what computing it looked at
    base: Snapshot | None = None  # the last valid snapshot
    version: str = ""  # the version of ``base``
    steps: dict[str, str] = field(default_factory=dict)  # versions of base's steps
    gone: dict[str, str] = field(default_factory=dict)


class Snapshots:
    """Snapshots of a pipeline at commits, read from Git objects.

    What one snapshot learnt serves the next: file digests by blob id, parsed
    pipelines by content, and each step's code by the trace of what finding it
    looked at (a step whose trace holds in the next tree keeps its code)."""

    def __init__(self, repo: Repository, pipeline: PipelinePath) -> None:
        self.repo = repo
        self.pipeline = pipeline
        self.cache = CodeCache()
        #: a step's (cmd, fn, wdir, code globs, digest mode) -> what finding and digesting
        #: its code looked at, and its code
        self._code: dict[tuple[Any, ...], tuple[Trace, dict[str, Digest]]] = {}
        #: a step's (cmd, fn, wdir, code globs) -> how its code files were found
        self._found: dict[tuple[Any, ...], _Found] = {}
        #: Git blob id of a .py file -> what it imports (None: it does not parse)
        self._imports: dict[str, list[Imported] | None] = {}

    def snapshot(self, tree: str) -> tuple[Snapshot, Trace]:
        """The snapshot of a tree, and everything computing it looked at."""
        source = self.repo.source(tree, self.pipeline.folder, digests=self.cache.blobs)

        def code_of(step: spec.Step) -> dict[str, Digest]:
            key = (step.cmd, step.fn, step.wdir, step.code, step.code_digest)
            known = self._code.get(key)
            if known is not None and self.repo.trace_holds(tree, known[0]):
                source.trace.merge(known[0])
                return known[1]
            with source.recording() as trace:
                code = {}
                for path in self._files(step, source):
                    raw = source.digest(path)  # recorded by content: the digest depends on it
                    if step.code_digest != "ast" or not path.endswith(".py"):
                        code[path] = raw
                        continue
                    digest = self.cache.code.get(raw)
                    if digest is None:
                        digest = code_digest(path, source.read(path))[0]
                        self.cache.code[raw] = digest
                    code[path] = digest
            self._code[key] = (trace, code)
            return code

        snap = take_snapshot(
            source,
            name=self.pipeline.name,
            file=self.pipeline.file,
            cache=self.cache,
            code_of=code_of,
        )
        return snap, source.trace

    def _imports_of(self, source: TreeSource, path: str) -> list[Imported] | None:
        blob = source.blob_id(path)
        if blob is None:
            return []
        if blob not in self._imports:
            self._imports[blob] = imports(self.repo.blob(blob))
        return self._imports[blob]

    def _files(self, step: spec.Step, source: TreeSource) -> list[str]:
        """A step's code files (as :func:`step_code` finds them).

        Which files they are depends only on which paths are files and on what the
        Python files import, so a step whose probes find the same kinds of entry and
        whose Python files import the same modules keeps the files found before."""
        key = (step.cmd, step.fn, step.wdir, step.code)
        known = self._found.get(key)
        if known is not None and self.repo.trace_holds(source.tree, known.trace):
            with source.recording(kinds=True):
                same = all(self._imports_of(source, p) == i for p, i in known.imports.items())
            if same:
                source.trace.merge(known.trace)
                return known.files
        seen: dict[str, list[Imported] | None] = {}

        def imports_of(path: str) -> list[Imported] | None:
            seen[path] = self._imports_of(source, path)
            return seen[path]

        commands = (f"python -m {step.fn.partition(':')[0]}",) if step.fn else step.cmd
        with source.recording(kinds=True) as trace:
            found = Discoverer(source, imports_of=imports_of).discover(
                commands, step.wdir, step.code
            )
        self._found[key] = _Found(trace, seen, found.files)
        return found.files


@dataclass(frozen=True, slots=True)
class _Found:
    """How a step's code files were found: the probes (by kind), the imports read."""

    trace: Trace
    imports: Mapping[str, list[Imported] | None]
    files: list[str]


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
                    and _VERSION.match(lock.version)
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


def version_for_lock(project_root: Path, pipeline_file: Path, fingerprint: str) -> str:
    """The version a repro writes into the lock: the version the pipeline it ran has
    once committed on top of HEAD.  That is HEAD's when the fingerprint is HEAD's, and
    otherwise HEAD's bumped by what the working tree changes (``1.0.0`` for a pipeline
    HEAD does not hold yet), so that committing the lock with the change it records
    gives a lock that the next repro leaves as it is.  "" outside Git, or where a
    shallow clone cannot tell.  A label only: a repository
    it cannot read gives "", it never fails a run."""
    try:
        repo = Repository.find(project_root)
        if repo is None:
            return ""
        with repo:
            point = head_point(
                repo, pipeline_file, cache_file=cache_path(project_root / ".gitpipe")
            )
            if point is None:  # no commits yet: the first commit holding it is 1.0.0
                return "1.0.0"
            if point.state == VALID and point.fingerprint == fingerprint:
                return point.version if _VERSION.match(point.version) else ""
            if point.state != VALID or not point.version:
                return "1.0.0"  # HEAD does not hold a valid pipeline: it starts here
            if not _VERSION.match(point.version):
                return ""  # unknown (shallow)
            head, _ = Snapshots(repo, PipelinePath.of(repo, pipeline_file)).snapshot(
                repo.commit(point.commit).tree
            )
    except (GitError, PipelineError):
        return ""
    return bump(point.version, level_of(compare(head, worktree_snapshot(pipeline_file))))


def resolver(
    repo: Repository, pipeline_file: Path, *, cache_file: Path | None
) -> Callable[[str], str]:
    """Resolve revisions, version names (``1.2.0``, ``v1.2.0``) included.

    Git names come first: a tag called ``1.2.0`` means the tag."""
    found: dict[str, History] = {}

    def names(name: str) -> str | None:
        if not _VERSION.match(name):
            return None
        if "history" not in found:
            found["history"] = history(repo, pipeline_file, cache_file=cache_file)
        past = found["history"]
        commit = past.commit_of(name)
        if commit is None:
            known = [p.version for p in past.points if _VERSION.match(p.version)]
            shown = f" (from {known[-1]} to {known[0]})" if known else ""
            more = "; this is a shallow clone: fetch more history" if past.cut else ""
            raise GitError(
                f"no commit on HEAD's first-parent history carries version {name}{shown}{more}"
            )
        return commit

    def resolve(rev: str) -> str:
        return repo.resolve(rev, names=names)

    return resolve


# -- what `gitpipe versions` shows ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Release:
    """Where a version starts: the commit, its date and what changed."""

    version: str
    commit: str
    time: int
    offset: int
    changes: tuple[str, ...]
    summary: str = ""

    @property
    def date(self) -> str:
        return _dt.datetime.fromtimestamp(
            self.time, _dt.timezone(_dt.timedelta(seconds=self.offset))
        ).isoformat()

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "commit": self.commit,
            "date": self.date,
            "changes": list(self.changes),
            "summary": self.summary,
        }


def releases(past: History, step: str | None = None) -> list[Release]:
    """The commits where a new version starts, newest first, for the pipeline or one
    step.  In a cut shallow history the oldest commit held shows as ``unknown``."""
    found = []
    points = past.points

    def value(point: Point | None) -> str:
        if point is None:
            return ""
        return point.version if step is None else point.steps.get(step, "")

    for i, point in enumerate(points):
        now = value(point)
        before = value(points[i + 1] if i + 1 < len(points) else None)
        if not now or now == before:
            continue
        changes = summarise(c for c in point.changes if step is None or c.step == step)
        if point.note and (step is None or not changes):
            changes.insert(0, point.note)
        if not changes and not before:
            changes = (
                ["first version"] if now != UNKNOWN else ["the history of this clone starts here"]
            )
        found.append(
            Release(
                version=now,
                commit=point.commit,
                time=point.time,
                offset=point.offset,
                changes=tuple(changes),
                summary=point.summary,
            )
        )
    return found


def shown(version: str) -> str:
    """A version as people read it: ``unknown`` says why."""
    return SHALLOW if version.startswith(UNKNOWN) else version


@dataclass(frozen=True, slots=True)
class Report:
    """`gitpipe versions`: the current version (with ``+dirty``) and the releases."""

    pipeline: str  # top-relative path of the pipeline file
    head: str | None
    current: str  # "" when HEAD holds no pipeline
    dirty: bool
    shallow: bool
    releases: tuple[Release, ...]
    step: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "step": self.step,
            "head": self.head,
            "version": self.current,
            "dirty": self.dirty,
            "shallow": self.shallow,
            "versions": [release.to_json() for release in self.releases],
        }


def report(pipeline_file: Path, *, state_dir: Path, step: str | None = None) -> Report:
    """The versions of a pipeline (or one step) and whether the work tree differs."""
    repo = Repository.find(pipeline_file.resolve().parent)
    if repo is None:
        raise GitError(
            f"{pipeline_file.resolve().parent} is not inside a Git repository; versions come "
            "from Git history, so run `git init` and commit the pipeline"
        )
    with repo:
        past = history(repo, pipeline_file, cache_file=cache_path(state_dir))
        head_snapshot = None
        if step is not None and past.head is not None:
            reader = Snapshots(repo, past.pipeline)
            head_snapshot = reader.snapshot(repo.commit(past.head).tree)[0]
    if step is not None and step not in past.step_names():
        raise UsageError(
            f"there is no step named {step!r} in the history of {past.pipeline.name} "
            f"(steps: {', '.join(sorted(past.step_names())) or 'none'})"
        )
    head = past.current
    now = worktree_snapshot(pipeline_file)
    current = ""
    dirty = False
    if head is not None and head.version:
        if step is None:
            current = head.version
            dirty = now.fingerprint != head.fingerprint or now.state != head.state
        else:
            current = head.steps.get(step, "")
            before = head_snapshot.steps.get(step) if head_snapshot else None
            dirty = bool(step_changes(step, before, now.steps.get(step)))
        if current and current != UNKNOWN and dirty:
            current += DIRTY
    return Report(
        pipeline=past.pipeline.path,
        head=past.head,
        current=current,
        dirty=dirty,
        shallow=past.cut,
        releases=tuple(releases(past, step)),
        step=step,
    )
