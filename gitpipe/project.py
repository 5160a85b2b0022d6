"""The composition root: a pipeline file in a workspace, its store, lock and lineage.

Only this module reads the working directory and the environment; everything it
composes is passed in explicitly.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitpipe import atomic, lockfile, spec, tomlcache
from gitpipe import events as ev
from gitpipe import graph as graphs
from gitpipe.action import KeyRecord, fingerprint, key_record
from gitpipe.errors import (
    ApprovalNeeded,
    GitError,
    GitpipeError,
    Interrupted,
    PipelineError,
    StaleError,
    StepFailed,
    StoreError,
    UsageError,
    WorkspaceBusy,
)
from gitpipe.expr import ExprError
from gitpipe.hashing import Digest, digest_record
from gitpipe.lockfile import Lock, LockEntry
from gitpipe.plan import FROZEN, STALE, assess, flatten
from gitpipe.runcache import OutRecord, Result, RunCache
from gitpipe.runner import (
    Executor,
    Invocation,
    Outcome,
    Pending,
    check_workers,
    connect_dask,
    schedule,
)
from gitpipe.statcache import Hasher, PathState, StatCache
from gitpipe.status import STATE_DIR, Reason, Recorder, Snapshot, StepStatus, locate
from gitpipe.status import read as read_snapshot
from gitpipe.status import write as write_snapshot
from gitpipe.store import Store, remove

if TYPE_CHECKING:  # imported where used: a no-op run discovers no code, explains nothing
    from gitpipe import codedeps, explain

#: where a function step's returned numbers go among its metrics
RETURNED = "returned"
_GLOB_CHARS = frozenset("*?[")
STARTER = """\
# A gitpipe pipeline; the fields are described in gitpipe's docs/pipeline-file.md.
# Each step's command, code, params and input bytes make its key; a step whose key
# already has a stored result is restored instead of run.

[pipeline]
name = "{name}"

[params]                  # values steps may use, as ${{params.NAME}} or `params = [...]`
seed = 42

# [steps.prepare]
# cmd = "python src/prepare.py --seed ${{params.seed}}"
# deps = ["src/prepare.py", "data/raw.csv"]
# outs = ["data/prepared/"]   # a trailing slash: a folder output
#
# [steps.train]
# cmd = "python src/train.py"
# deps = ["src/train.py", "data/prepared/"]
# params = ["seed"]
# outs = ["model.pkl"]
# metrics = ["metrics.json"]
"""


@dataclass(frozen=True, slots=True)
class HookCall:
    """What a hook is told: the event, the step, its state and log, the run."""

    event: str  # before_step | after_step | on_failure
    step: str
    state: str  # running (before_step) | ran | cached | failed
    log: str = ""
    run_id: str = ""

    def environ(self) -> dict[str, str]:
        """The same, as the environment a hook command runs with."""
        return {
            "GITPIPE_HOOK": self.event,
            "GITPIPE_STEP": self.step,
            "GITPIPE_STATE": self.state,
            "GITPIPE_LOG": self.log,
            "GITPIPE_RUN_ID": self.run_id,
        }


@dataclass(slots=True)
class StoreReport:
    """What `gitpipe cache verify` found."""

    objects: int = 0
    results: int = 0
    corrupt: list[str] = field(default_factory=list)  # objects whose bytes do not match
    broken_results: list[str] = field(default_factory=list)  # unreadable or incomplete

    def to_json(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "results": self.results,
            "corrupt_objects": self.corrupt,
            "broken_results": self.broken_results,
        }


@dataclass(slots=True)
class GcReport:
    """What `gitpipe gc` found (and, when ``deleted``, removed)."""

    locks: int = 0  # lock files read: the working tree's and each branch's and tag's
    kept: int = 0  # objects some lock needs
    objects: int = 0  # unreferenced objects
    results: int = 0  # unreferenced results
    bytes: int = 0  # size of the unreferenced objects
    recent: int = 0  # unreferenced, but too new to remove
    deleted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "locks": self.locks,
            "kept": self.kept,
            "objects": self.objects,
            "results": self.results,
            "bytes": self.bytes,
            "recent": self.recent,
            "deleted": self.deleted,
        }


@dataclass(slots=True)
class Explanation:
    """What `gitpipe why` says of a step."""

    step: str
    state: str
    reasons: tuple[str, ...] = ()
    key: str = ""
    code: tuple[str, ...] = ()  # the step's code files, as discovered
    lock_key: str = ""
    against_lock: list[explain.Component] | None = None  # None: no lock entry
    nearest_key: str = ""
    nearest: list[explain.Component] | None = None  # differences; None: no stored result

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "state": self.state,
            "reasons": list(self.reasons),
            "key": self.key,
            "code": list(self.code),
            "lock": None
            if self.against_lock is None
            else {"key": self.lock_key, "components": [c.to_json() for c in self.against_lock]},
            "nearest_result": None
            if self.nearest is None
            else {
                "key": self.nearest_key,
                "differences": [c.to_json() for c in self.nearest],
            },
        }


@dataclass(slots=True)
class RunReport:
    """What a `repro` did: each step's final event, in order."""

    run_id: str
    steps: list[ev.StepFinished] = field(default_factory=list)
    status: str = "ok"
    duration: float = 0.0

    def listen(self, event: ev.Event) -> None:
        if isinstance(event, ev.StepFinished):
            self.steps.append(event)

    def count(self, state: str) -> int:
        return sum(1 for step in self.steps if step.state == state)

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for step in self.steps:
            counts[step.state] = counts.get(step.state, 0) + 1
        return counts


@contextlib.contextmanager
def workspace_lock(path: Path, *, wait: bool, emit: ev.Listener) -> Iterator[None]:
    """One `repro` at a time per workspace: an advisory lock on ``path``.

    The lock goes with the process, so a killed run never leaves it held."""
    import fcntl

    handle = open(path, "a+")  # noqa: SIM115 - held for the whole run
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
            emit(ev.Waiting(f"waiting for another `gitpipe repro` ({holder}) to finish"))
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


def _nothing() -> None:
    return None


def fault_point(name: str) -> None:
    """Crash-safety tests: with ``GITPIPE_FAULT=name`` gitpipe kills itself here
    (SIGKILL: no clean-up runs), to prove every such point leaves the store, the lock
    and lineage consistent.  Points: ``objects-stored`` (a step's outputs are in the
    store, its result is not), ``result-stored`` (its result is, the lock is not);
    ``rename:FILE`` in :func:`gitpipe.atomic.write_bytes` stops with FILE's new bytes
    written to a temporary file, not yet renamed over it (``rename:gitpipe.lock``)."""
    if os.environ.get("GITPIPE_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


def unflatten(params: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train.lr": 1}`` -> ``{"train": {"lr": 1}}``."""
    nested: dict[str, Any] = {}
    for dotted, value in params.items():
        node = nested
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return nested


def _parse_metrics(path: Path) -> dict[str, Any]:
    """A metrics file's scalar values, flattened to dotted keys (JSON or TOML)."""
    try:
        text = path.read_text(encoding="utf-8")
        data = tomlcache.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise StoreError(
            f"metrics file {path.name} is not valid {'TOML' if path.suffix == '.toml' else 'JSON'}"
            f" ({exc})"
        ) from exc
    if not isinstance(data, dict):
        return {}
    return {
        key: value
        for key, value in sorted(flatten(data).items())
        if isinstance(value, (int, float, str, bool))
    }


class Project:
    """A pipeline file and everything around it.

    >>> project = Project.open("path/to/repo")          # doctest: +SKIP
    >>> [s.state for s in project.status()]              # doctest: +SKIP
    """

    def __init__(
        self,
        file: Path,
        *,
        cache_dir: Path | None = None,
        environ: Mapping[str, str] | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> None:
        self.file = file.resolve()
        #: `repro -p NAME=VALUE`: params for this run only (an experiment)
        self.overrides = dict(overrides or {})
        self.root = self.file.parent
        self.environ = dict(os.environ if environ is None else environ)
        self.state_dir = self.root / STATE_DIR
        self.lock_path = lockfile.path_for(self.file)
        configured = cache_dir or self.environ.get("GITPIPE_CACHE_DIR")
        self._store_dir = Path(configured).resolve() if configured else None
        self._pipeline: spec.Pipeline | None = None
        self._graph: graphs.Graph | None = None
        self._keep: Callable[[], None] = _nothing
        self._keep_lock: Callable[[], None] = _nothing
        self._user: str | None = None  # who approves, found once
        #: the lock last read, with the file's (inode, mtime_ns, size) and when it was read
        self._lock_read: tuple[tuple[int, int, int], int, Lock] | None = None

    @property
    def store_dir(self) -> Path:
        """The store: ``GITPIPE_CACHE_DIR``, else ``.gitpipe/cache`` beside the pipeline,
        in the main work tree when this is a linked one (`git worktree add`), so that
        work trees share one store."""
        if self._store_dir is None:
            shared = None
            if self._dot_git() is not None and self._dot_git().is_file():  # a linked work tree
                from gitpipe.git import shared_state_dir

                shared = shared_state_dir(self.root)
            self._store_dir = (shared or self.state_dir) / "cache"
        return self._store_dir

    def _dot_git(self) -> Path | None:
        """The nearest `.git` (a folder, or a file in a linked work tree), found
        without Git."""
        for folder in (self.root, *self.root.parents):
            if (folder / ".git").exists():
                return folder / ".git"
        return None

    @classmethod
    def init(
        cls, folder: str | os.PathLike[str], *, file: str | None = None, force: bool = False
    ) -> Project:
        """Write a commented starter pipeline in ``folder`` (inside a Git repository)."""
        from gitpipe.git import Repository

        here = Path(folder).resolve()
        repo = Repository.find(here)
        if repo is None:
            raise UsageError(
                f"{here} is not inside a Git repository; run `git init` first, then `gitpipe init`"
            )
        repo.close()
        target = here / (file or spec.DEFAULT_FILE)
        if target.exists() and not force:
            raise UsageError(f"{target.name} exists already; pass --force to overwrite it")
        atomic.write_bytes(target, STARTER.format(name=here.name).encode())
        project = cls(target)
        project._ensure_state_dir()
        return project

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] = ".",
        *,
        file: str | None = None,
        overrides: Mapping[str, Any] | None = None,
    ) -> Project:
        """Open the pipeline in ``path`` (``gitpipe.toml``, or ``file`` relative to it);
        ``overrides`` replace params by dotted name, as `repro -p` does."""
        return cls(locate(path, file), overrides=overrides)

    # -- reading the pipeline -------------------------------------------------

    @property
    def pipeline(self) -> spec.Pipeline:
        if self._pipeline is None:
            self._load()
        assert self._pipeline is not None
        return self._pipeline

    @property
    def graph(self) -> graphs.Graph:
        if self._graph is None:
            self._load()
        assert self._graph is not None
        return self._graph

    def _load(self) -> None:
        pipeline, keep = spec.load_cached(
            self.file, cache_dir=self.state_dir / "parsed", overrides=self.overrides
        )
        self._graph = graphs.build(pipeline)
        self._pipeline = pipeline
        self._keep = keep  # called by a command that went well: see _keep_caches

    def _read_lock(self) -> Lock:
        """gitpipe.lock, its parsed TOML cached like the pipeline file's; read again only
        when the file changed since this project last read it (as the stat cache tells)."""
        try:
            st = self.lock_path.stat()
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        last = self._lock_read
        if last is not None and stamp == last[0] and not tomlcache.racy(last[0][1], last[1]):
            return last[2]
        read_ns = time.time_ns()
        lock, keep = lockfile.read_cached(self.lock_path, cache_dir=self.state_dir / "parsed")
        self._keep_lock = keep
        self._lock_read = (stamp, read_ns, lock) if stamp is not None else None
        return lock

    def _keep_caches(self) -> None:
        """Cache the parsed pipeline and lock files, now that a command used them
        without error (a dry run or a refused command writes nothing)."""
        self._keep()
        self._keep_lock()
        self._keep = self._keep_lock = _nothing

    def select(
        self, targets: Iterable[str] = (), *, single: bool = False, downstream: bool = False
    ) -> list[str]:
        return graphs.select(
            self.graph, targets, file=self.file.name, single=single, downstream=downstream
        )

    def digest_of(self, path: str | os.PathLike[str]) -> tuple[str, str]:
        """The digest of a workspace path now, and the path relative to the pipeline."""
        full = Path(path)
        full = full if full.is_absolute() else Path.cwd() / full
        try:
            relpath = Path(os.path.relpath(full.resolve(), self.root)).as_posix()
        except ValueError as exc:
            raise UsageError(f"{path} is not inside this workspace") from exc
        if relpath == ".." or relpath.startswith("../"):
            raise UsageError(f"{path} is not inside this workspace ({self.root})")
        with self._session(readonly=True) as session:
            state = session.hasher.state(relpath)
        if state is None:
            raise UsageError(f"{path} does not exist")
        return str(state.digest), relpath + ("/" if state.is_dir else "")

    # -- status ---------------------------------------------------------------

    def status(
        self, targets: Iterable[str] = (), *, single: bool = False, downstream: bool = False
    ) -> list[StepStatus]:
        """Each selected step's state and why; reads no file it has seen unchanged.

        When every step of the whole pipeline turns out up to date, the stamps of all
        it looked at are kept, so that the next `gitpipe status` can answer from them
        alone (see :mod:`gitpipe.status`)."""
        started_ns = time.time_ns()
        names = self.select(targets, single=single, downstream=downstream)
        whole = not targets and self.state_dir.is_dir()
        recorder = Recorder() if whole else None
        stamp = self._index_stamp(names)
        if stamp is not None and stamp == self._checked_stamp():
            # the Git index and the outputs are as when they last passed: skip Git
            self._check_before_run(names, None, run=False, git=False)
        else:
            with self._repository() as repo:
                self._check_before_run(names, repo, run=False)
            self._remember_check(stamp)
        lock = self._read_lock()
        # the stat cache is kept once gitpipe has state here; status creates none
        with self._session(readonly=not self.state_dir.is_dir()) as session:
            session.hasher.seen = recorder
            session.entries = dict(lock.steps)
            statuses = []
            stale: set[str] = set()
            skipped: set[str] = set()
            for name in names:
                step = self.pipeline.steps[name]
                upstream = tuple(p for p in self.graph.parents[name] if p in stale)
                skip = self._skipped(session, step, skipped)
                if skip:
                    skipped.add(name)
                    statuses.append(StepStatus(name, ev.SKIPPED, (Reason(skip),)))
                    continue
                check = session.check(step, lock.steps.get(name), entries=lock.steps)
                if check.state == STALE:
                    stale.add(name)
                cached = check.state == STALE and session.restorable(step, check) is not None
                reasons = list(check.reasons)
                if (
                    step.approval
                    and check.state == STALE
                    and check.record is not None
                    and not cached
                    and not session.approval(step, check.record)
                ):
                    reasons.append(Reason("needs approval"))
                statuses.append(
                    StepStatus(
                        step=name,
                        state=check.state,
                        reasons=tuple(reasons),
                        cached=cached,
                        upstream=upstream,
                        key=str(check.record.key) if check.record else "",
                        code=tuple(check.record.code) if check.record else (),
                    )
                )
                if upstream and check.state != STALE:
                    stale.add(name)  # it will run if what it reads changes
            if recorder is not None and stamp is not None and not recorder.broken:
                self._record_inputs(recorder, names)
                if all(s.state in (ev.UP_TO_DATE, ev.FROZEN, ev.SKIPPED) for s in statuses):
                    head, current = self._lock_is_current(session, lock)
                    write_snapshot(
                        self.state_dir,
                        self.file,
                        statuses,
                        recorder,
                        started_ns=started_ns,
                        head=head,
                        lock_current=current,
                    )
        self._keep_caches()
        return statuses

    def _lock_is_current(self, session: _Session, lock: Lock) -> tuple[str | None, bool]:
        """HEAD's commit, and whether the lock holds exactly what a repro that runs
        nothing would write there now (so that such a repro can leave it alone)."""
        from gitpipe.git import Repository
        from gitpipe.versions import version_for_lock

        try:
            repo = Repository.find(self.root)
            if repo is None:
                return None, False
            with repo:
                head = repo.head_commit()
        except GitError:
            return None, False
        pipeline = self.pipeline
        identity = str(fingerprint(pipeline, session.code_of_all()))
        current = (
            lock.steps.keys() == pipeline.steps.keys()
            and (lock.name, lock.fingerprint) == (pipeline.declared_name, identity)
            and lock.version == version_for_lock(self.root, self.file, identity)
        )
        return head, current

    def _record_inputs(self, recorder: Recorder, names: Sequence[str]) -> None:
        """Stamp what `status` read besides the files it hashed: the pipeline files,
        the lock, the Git index (and where it is found), and the folders leading to
        each output (the check that outputs stay inside the repository)."""
        root = str(self.root)
        for relpath in ("", *self.pipeline.includes):
            recorder.look(str(self.file) if not relpath else os.path.join(root, relpath))
        recorder.look(str(self.lock_path))
        dotgit = self._dot_git()
        index = self._git_index()
        if dotgit is None or index is None:
            recorder.broken = True
            return
        for folder in (self.root, *self.root.parents):
            if folder == dotgit.parent:
                break
            recorder.look(str(folder / ".git"), follow=False)  # still none nearer
        recorder.look(str(index))
        for name in names:
            for out in self.pipeline.steps[name].all_outs:
                parts = out.path.split("/")
                for i in range(1, len(parts) + 1):
                    recorder.look(os.path.join(root, *parts[:i]), follow=False)

    def _skipped(self, session: _Session, step: spec.Step, skipped: set[str]) -> str:
        """Why `status` shows a step as skipped: its condition is false on the metrics
        the lock holds, or a step it depends on is skipped; "" otherwise."""
        held = [p for p in self.graph.parents[step.name] if p in skipped]
        if held:
            return f"upstream {held[0]!r} is skipped"
        if step.when is None:
            return ""
        try:
            return session.condition_false(step)
        except PipelineError:  # no value yet: the run decides
            return ""

    # -- check (pre-commit) ----------------------------------------------------

    def check_lock(self) -> list[tuple[str, list[str]]]:
        """Steps whose lock entry does not match the pipeline and the files it reads
        now (outputs are not looked at): what `gitpipe check` and its pre-commit hook
        report.  The pipeline file must be valid."""
        names = self.select()
        lock = self._read_lock()
        mismatched = []
        with self._session(readonly=True) as session:
            for name in names:
                entry = lock.steps.get(name)
                # a fresh clone has no outputs: take a missing dep to be as the lock says
                assume = entry.deps if entry is not None else {}
                check = session.check(
                    self.pipeline.steps[name], entry, assume=assume, entries=lock.steps
                )
                reasons = [
                    str(r) for r in check.reasons if r.kind not in ("out missing", "out modified")
                ]
                if check.state == STALE and reasons:
                    mismatched.append((name, reasons))
        for name in sorted(set(lock.steps) - set(self.pipeline.steps)):
            mismatched.append((name, ["no longer in the pipeline"]))
        return mismatched

    # -- the store -------------------------------------------------------------

    def verify_store(self, *, repair: bool = False) -> StoreReport:
        """Re-hash every object and check every result; with ``repair``, remove the
        corrupt objects and the results that name missing objects."""
        store = Store(self.store_dir)
        runcache = RunCache(store)
        report = StoreReport()
        for digest in store.iter_objects():
            report.objects += 1
            if not store.verify(digest):
                report.corrupt.append(str(digest))
                if repair:
                    store.discard(digest)
        for key in runcache.stored_keys():
            report.results += 1
            if runcache.get(key) is None:
                report.broken_results.append(str(key))
                if repair:
                    runcache.discard(key)
        return report

    def collect_garbage(
        self, *, workspace_only: bool = False, delete: bool = False, keep_recent: float = 3600.0
    ) -> GcReport:
        """Objects and results that no lock references: the working tree's lock and,
        unless ``workspace_only``, the lock on every branch and tag.  With ``delete``
        they are removed; objects and results younger than ``keep_recent`` seconds are
        always kept (another clone sharing the store may be about to commit a lock
        that names them)."""
        locks = [self._read_lock()]
        if not workspace_only:
            with self._repository() as repo:
                if repo is not None:
                    path = repo.relpath(self.lock_path)
                    for commit in sorted(set(repo.ref_commits().values())):
                        data = repo.read_file(commit, path)
                        if data is not None:
                            with contextlib.suppress(GitpipeError, UnicodeDecodeError):
                                locks.append(lockfile.loads(data.decode("utf-8"), name=path))
        store = Store(self.store_dir)
        runcache = RunCache(store)
        live_objects: set[Digest] = set()
        live_results: set[Digest] = set()

        def keep_object(digest: Digest, is_dir: bool) -> None:
            live_objects.add(digest)
            if is_dir and digest in store:
                with contextlib.suppress(StoreError):
                    live_objects.update(entry.digest for entry in store.manifest(digest))

        for lock in locks:
            for entry in lock.steps.values():
                live_results.add(entry.key)
                for path, digest in entry.outs.items():
                    keep_object(digest, path.endswith("/"))
        for key in list(live_results):
            result = runcache.get(key)
            if result is not None:
                for out in result.outs.values():
                    keep_object(out.digest, out.is_dir)
        report = GcReport(locks=len(locks), deleted=delete)
        cutoff = time.time() - keep_recent
        for key in runcache.stored_keys():
            if key in live_results:
                continue
            if runcache.path_of(key).stat().st_mtime > cutoff:
                report.recent += 1
                continue
            report.results += 1
            if delete:
                runcache.discard(key)
        for digest in store.iter_objects():
            if digest in live_objects:
                report.kept += 1
                continue
            path = store.object_path(digest)
            st = path.stat()
            if st.st_mtime > cutoff:
                report.recent += 1
                continue
            report.objects += 1
            report.bytes += st.st_size
            if delete:
                store.discard(digest)
        return report

    # -- why ------------------------------------------------------------------

    def why(self, name: str) -> Explanation:
        """A step's key, component by component, against the lock and the nearest
        stored result."""
        members = self.pipeline.groups.get(name)
        if members:
            raise UsageError(
                f"{name!r} stands for {len(members)} steps; name one of them: "
                + ", ".join(members[:5])
                + (", ..." if len(members) > 5 else "")
            )
        self.select([name], single=True)
        step = self.pipeline.steps[name]
        lock = self._read_lock()
        entry = lock.steps.get(name)
        with self._session(readonly=not self.state_dir.is_dir()) as session:
            check = session.check(step, entry, entries=lock.steps)
            explanation = Explanation(
                step=name, state=check.state, reasons=tuple(str(r) for r in check.reasons)
            )
            if check.record is None:
                return explanation
            from gitpipe import explain

            now = explain.comparable(check.record.as_record())
            explanation.key = str(check.record.key)
            explanation.code = tuple(check.record.code)
            if entry is not None:
                explanation.lock_key = str(entry.key)
                explanation.against_lock = explain.compare(now, explain.from_lock(entry))
            best: tuple[int, str, list[explain.Component]] | None = None
            for key in self._known_keys(name, entry):
                result = session.runcache.get(Digest.parse(key))
                if result is None or not result.record:
                    continue
                diffs = explain.differences(explain.compare(now, explain.comparable(result.record)))
                if best is None or len(diffs) < best[0]:
                    best = (len(diffs), key, diffs)
            if best is not None:
                explanation.nearest_key, explanation.nearest = best[1], best[2]
        return explanation

    def _known_keys(self, name: str, entry: LockEntry | None) -> list[str]:
        """Keys this step had: the lock's, then those lineage saw, newest first."""
        keys = [str(entry.key)] if entry is not None else []
        path = self.state_dir / "lineage.db"
        if path.exists():
            from gitpipe.lineage import LineageError, connect

            with contextlib.suppress(LineageError):
                db = connect(path, create=False)
                try:
                    keys += [
                        row["key"]
                        for row in db.query(
                            "SELECT key, max(id) AS last FROM executions WHERE step = ? AND"
                            " key IS NOT NULL AND state IN ('ran', 'cached') GROUP BY key"
                            " ORDER BY last DESC LIMIT 200",
                            [name],
                        )
                    ]
                finally:
                    db.conn.close()
        return list(dict.fromkeys(keys))

    # -- approvals ------------------------------------------------------------

    def user(self) -> str:
        """Who is approving: ``GITPIPE_USER``, else Git's ``user.name <user.email>``,
        else the login name."""
        if self._user is None:
            self._user = self.environ.get("GITPIPE_USER", "").strip() or self._git_user()
        return self._user

    def _git_user(self) -> str:
        with self._repository() as repo:
            found = repo.user() if repo is not None else None
        if found:
            return found
        import getpass

        try:
            return getpass.getuser()
        except (OSError, KeyError):
            return "unknown"

    def approve(self, name: str) -> tuple[list[tuple[str, str]], str]:
        """Approve a step (`approval = true`) to run with its key as it is now;
        returns each step approved with its key, and who approved.  A matrix step or
        nested pipeline approves each of its steps that asks for approval."""
        names = self.select([name], single=True)
        asking = [n for n in names if self.pipeline.steps[n].approval]
        if not asking:
            raise UsageError(f"step {name!r} does not ask for approval (no `approval = true`)")
        lock = self._read_lock()
        self._ensure_state_dir()
        who = self.user()
        keys = []
        with self._session(readonly=False) as session:
            for step_name in asking:
                check = session.check(
                    self.pipeline.steps[step_name], lock.steps.get(step_name), entries=lock.steps
                )
                if check.record is None:
                    why = "; ".join(str(r) for r in check.reasons)
                    raise UsageError(
                        f"step {step_name!r} cannot be approved yet ({why}); run "
                        "`gitpipe repro` until it waits for approval"
                    )
                keys.append((step_name, str(check.record.key)))
        from gitpipe.lineage import record_approval

        for step_name, key in keys:
            record_approval(self.state_dir / "lineage.db", step_name, key, who)
        self._keep_caches()
        return keys, who

    # -- repro ----------------------------------------------------------------

    def repro(
        self,
        targets: Iterable[str] = (),
        *,
        force: bool = False,
        dry_run: bool = False,
        single: bool = False,
        downstream: bool = False,
        jobs: int | None = None,
        backend: str | None = None,
        scheduler: str | None = None,
        keep_going: bool = False,
        wait: bool = True,
        frozen: bool = False,
        pull: bool = False,
        push: bool = False,
        remote: str | None = None,
        approve: Iterable[str] = (),
        lock: bool | None = None,
        hooks: Mapping[str, Callable[[HookCall], None] | Sequence[Callable[[HookCall], None]]]
        | None = None,
        listeners: Sequence[ev.Listener] = (),
        argv: Sequence[str] = (),
    ) -> RunReport:
        """Bring the selected steps up to date: restore what the store has, run the rest.

        ``jobs`` steps run at once through the joblib ``backend`` (``threading`` by
        default; ``dask`` with a ``scheduler`` address).  Raises :class:`StepFailed`
        (after recording the run) when a step failed, :class:`Interrupted` on Ctrl-C,
        :class:`ApprovalNeeded` when steps wait for approval (``approve`` names steps
        to approve on the way).  ``hooks`` maps ``before_step``, ``after_step`` and
        ``on_failure`` to callables taking a :class:`HookCall`, run after the pipeline
        file's own hook commands.  With params overridden (:attr:`overrides`) the run is
        an experiment: `gitpipe.lock` is written only when ``lock`` is true.
        """
        names = self.select(targets, single=single, downstream=downstream)
        approved: set[str] = set()
        for name in sorted(set(approve)):  # each must be a step (or group) that asks for it
            chosen = self.select([name], single=True)
            asking = [n for n in chosen if self.pipeline.steps[n].approval]
            if not asking:
                raise UsageError(
                    f"--approve {name}: step {name!r} does not ask for approval "
                    "(no `approval = true`)"
                )
            approved.update(asking)
        calls = {}
        for event, given in (hooks or {}).items():
            if event not in spec.HOOK_EVENTS:
                raise UsageError(f"unknown hook {event!r} (hooks: {', '.join(spec.HOOK_EVENTS)})")
            calls[event] = tuple(given) if isinstance(given, (list, tuple)) else (given,)
        stamp = self._index_stamp(names)
        checked = stamp is not None and stamp == self._checked_stamp()  # as in `status`
        with self._repository() as repo:
            self._check_before_run(names, repo, git=not checked)
            if not checked and not dry_run:  # a dry run writes nothing
                self._remember_check(stamp)
            self._read_lock()  # a damaged lock stops us before anything is written
            broadcast = ev.Broadcast(list(listeners))
            far = None
            if pull or push:
                from gitpipe import remote as remotes

                far = remotes.for_project(self, remote, cwd=Path.cwd())
            run = _RunOptions(
                force=force,
                keep_going=keep_going,
                argv=tuple(argv),
                repo=repo,
                remote=far if pull else None,
                approve=frozenset(approved),
                write_lock=bool(lock) if self.overrides else lock is not False,
                hooks=calls,
            )
            if dry_run:
                return self._repro_locked(names, broadcast, run, executor=None)
            if frozen:  # restoring is fine; anything that would have to run is an error
                plan = self._repro_locked(names, ev.Broadcast(), run, executor=None)
                must_run = [s for s in plan.steps if s.state == ev.WOULD_RUN]
                if must_run:
                    listed = "; ".join(
                        f"{s.step} ({', '.join(s.reasons) or s.message})" for s in must_run
                    )
                    raise StaleError(
                        f"--frozen: {len(must_run)} step(s) would have to run: {listed}"
                    )
            backend = backend or self.environ.get("GITPIPE_BACKEND") or "threading"
            address = scheduler or self.environ.get("GITPIPE_DASK_SCHEDULER")
            if backend == "dask" and not address:
                raise UsageError(
                    "the dask backend needs a scheduler: pass --scheduler tcp://HOST:PORT "
                    "or set GITPIPE_DASK_SCHEDULER"
                )
            client = connect_dask(address) if backend == "dask" and names and address else None
            try:
                self._ensure_state_dir()
            except BaseException:
                if client is not None:
                    client.close()
                raise
            with workspace_lock(self.state_dir / "repro.lock", wait=wait, emit=broadcast):
                if client is not None:
                    check_workers(client, self.root)
                    if not jobs:
                        jobs = max(1, sum(client.ncores().values()))
                if jobs is None:
                    jobs = 1
                jobs = jobs if jobs > 0 else (os.cpu_count() or 1)
                executor = Executor(backend, jobs, client=client)
                try:
                    report = self._repro_locked(names, broadcast, run, executor=executor)
                finally:
                    executor.close()
                if push and far is not None:
                    from gitpipe import remote as remotes

                    selection = remotes.Selection.from_locks(self._read_lock())
                    pushed = remotes.push(Store(self.store_dir), far, selection)
                    broadcast(
                        ev.Notice(
                            f"pushed {pushed.objects} object(s) and {pushed.results} result(s)"
                        )
                    )
                self._keep_caches()
                return report

    def _repro_locked(
        self,
        names: list[str],
        broadcast: ev.Broadcast,
        run: _RunOptions,
        *,
        executor: Executor | None,
    ) -> RunReport:
        dry_run = executor is None
        jobs = executor.jobs if executor is not None else 1
        pipeline = self.pipeline
        lock = self._read_lock()
        run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(3).hex()
        report = RunReport(run_id=run_id)
        recorder = None
        checkout = None
        broadcast.listeners.insert(0, report.listen)  # counts steps even if the run stops
        if not dry_run:
            checkout = run.repo.checkout() if run.repo is not None else None
            recorder = self._recorder(broadcast)
            if recorder is not None:
                broadcast.listeners.append(recorder)
        started = time.time()
        broadcast(
            ev.RunStarted(
                run_id=run_id,
                steps=tuple(names),
                dry_run=dry_run,
                commit=checkout.commit if checkout else None,
                dirty=checkout.dirty if checkout else None,
                argv=run.argv,
                started=started,
                pipeline=pipeline.name,
                jobs=jobs,
                backend=executor.backend if executor is not None else "",
                overrides=dict(pipeline.overrides),
            )
        )
        status = "ok"
        entries: dict[str, LockEntry] = dict(lock.steps)
        try:
            with self._session(readonly=dry_run) as session:
                session.run_id = run_id
                session.entries = entries
                session.force = run.force
                session.remote = run.remote
                session.approve = run.approve
                session.hook_calls = run.hooks
                snapshot: Snapshot | None = None
                if not run.force and not pipeline.overrides:
                    snapshot = read_snapshot(self.file)
                if snapshot is not None:
                    session.known = {
                        s.step: s
                        for s in snapshot.statuses
                        if s.state in (ev.UP_TO_DATE, ev.FROZEN)
                    }
                if not dry_run and len(names) == len(pipeline.steps):
                    removed = session.prune(entries)
                    if removed:
                        broadcast(
                            ev.Notice(
                                f"removed {len(removed)} output(s) of steps no longer in the "
                                f"pipeline (kept in the store): {', '.join(removed)}"
                            )
                        )
                schedule(
                    names,
                    self.graph.parents,
                    session,
                    executor=executor,
                    jobs=jobs,
                    keep_going=run.keep_going,
                    emit=broadcast,
                )
                hook_failures = list(session.hook_failures)
                live = {name: entry for name, entry in entries.items() if name in pipeline.steps}
                # nothing ran, nothing was restored, and the snapshot found the lock as
                # this run would write it, on this commit: leave it as it is
                untouched = (
                    snapshot is not None
                    and snapshot.lock_current
                    and checkout is not None
                    and checkout.commit == snapshot.head
                    and entries.keys() == lock.steps.keys()
                    and all(entry is lock.steps[name] for name, entry in entries.items())
                )
                if (
                    not dry_run
                    and not untouched
                    and run.write_lock
                    and (live or self.lock_path.exists())
                ):
                    from gitpipe.versions import version_for_lock

                    identity = str(fingerprint(pipeline, session.code_of_all()))
                    lockfile.write(
                        self.lock_path,
                        Lock(
                            name=pipeline.declared_name,
                            fingerprint=identity,
                            steps=live,
                            version=version_for_lock(self.root, self.file, identity),
                        ),
                        tmp_dir=self.state_dir / "tmp",
                        previous=lock,
                        cache_dir=self.state_dir / "parsed",
                    )
            if hook_failures and not pipeline.hooks.fail:
                for failure in hook_failures:
                    broadcast(ev.Notice(f"{failure} (hooks.fail = false: the run goes on)"))
                hook_failures = []
            if report.count(ev.FAILED) or hook_failures:
                status = "failed"
            elif report.count(ev.WAITING):
                status = "waiting"
        except KeyboardInterrupt as exc:
            status = "interrupted"
            self._save_partial_lock(dry_run or not run.write_lock, entries, lock)
            raise Interrupted("interrupted; finished steps were kept, run again to go on") from exc
        except BaseException:
            status = "error"
            self._save_partial_lock(dry_run or not run.write_lock, entries, lock)
            raise
        finally:
            report.status = status
            report.duration = time.time() - started
            broadcast(
                ev.RunFinished(run_id, status, report.counts, report.duration, ended=time.time())
            )
            if recorder is not None:
                recorder.close()
                if recorder.error:
                    broadcast(ev.Notice(recorder.error))
        if status == "failed" and not report.count(ev.FAILED):  # only hooks failed
            error = StepFailed(hook_failures[0])
            error.report = report  # type: ignore[attr-defined]
            raise error
        if status == "waiting":
            waiting = tuple(s.step for s in report.steps if s.state == ev.WAITING)
            listed = ", ".join(waiting)
            raise ApprovalNeeded(
                f"{len(waiting)} step(s) wait for approval: {listed}; approve with "
                f"`gitpipe approve {waiting[0]}` or run `gitpipe repro --approve "
                f"{waiting[0]}`",
                waiting,
            )
        if status == "failed":
            failed = [s.step for s in report.steps if s.state == ev.FAILED]
            held = [s.step for s in report.steps if s.state == ev.SKIPPED]
            message = (
                f"step {failed[0]!r} failed"
                if len(failed) == 1
                else (f"steps {', '.join(repr(f) for f in failed)} failed")
            )
            if held:
                message += f"; held back: {', '.join(held)}"
            error = StepFailed(message)
            error.report = report  # type: ignore[attr-defined]
            raise error
        return report

    def _save_partial_lock(
        self, dry_run: bool, entries: Mapping[str, LockEntry], lock: Lock
    ) -> None:
        """Keep what finished before a failure or interrupt in the lock."""
        if dry_run or dict(entries) == dict(lock.steps):
            return
        with contextlib.suppress(GitpipeError, OSError):
            live = {n: e for n, e in entries.items() if n in self.pipeline.steps}
            lockfile.write(
                self.lock_path,
                Lock(
                    name=self.pipeline.declared_name,
                    fingerprint=lock.fingerprint,
                    steps=live,
                    version=lock.version,
                ),
                tmp_dir=self.state_dir / "tmp",
            )

    # -- helpers --------------------------------------------------------------

    def _ensure_state_dir(self) -> None:
        self.state_dir.mkdir(exist_ok=True)
        ignore = self.state_dir / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# gitpipe's local state: never commit it\n*\n", encoding="utf-8")

    @contextlib.contextmanager
    def _repository(self) -> Iterator[Any]:
        """The Git repository around the pipeline (None outside one), opened once."""
        from gitpipe.git import Repository

        repo = Repository.find(self.root)
        try:
            yield repo
        finally:
            if repo is not None:
                repo.close()

    def _recorder(self, emit: ev.Listener) -> Any:
        """The lineage listener; a damaged or too new database is a notice, not a stop."""
        from gitpipe.lineage import LineageError, LineageRecorder

        try:
            return LineageRecorder(self.state_dir / "lineage.db")
        except LineageError as exc:
            emit(ev.Notice(f"{exc}; this run is not recorded in lineage"))
            return None

    def _index_stamp(self, names: Sequence[str]) -> str | None:
        """What the check for outputs tracked by Git depends on: the Git index file's
        (inode, mtime, size) and the outputs checked; None when it cannot be told
        without Git (no `.git` found, or a Git index changed within the racy window).
        """
        index = self._git_index()
        if index is None:
            return None
        try:
            st = index.stat()
        except OSError:
            return None
        if tomlcache.racy(st.st_mtime_ns, time.time_ns()):
            return None
        outs = sorted(str(o) for n in names for o in self.pipeline.steps[n].all_outs)
        return str(digest_record([str(index), st.st_ino, st.st_mtime_ns, st.st_size, outs]))

    def _git_index(self) -> Path | None:
        """The Git index file of the repository around the pipeline, found without
        Git; None outside Git."""
        dotgit = self._dot_git()
        if dotgit is None:
            return None
        if dotgit.is_dir():
            return dotgit / "index"
        with contextlib.suppress(OSError):
            text = dotgit.read_text(errors="replace").strip()
            if text.startswith("gitdir:"):
                return (dotgit.parent / text.removeprefix("gitdir:").strip()) / "index"
        return None

    def _checked_stamp(self) -> str | None:
        with contextlib.suppress(OSError):
            return (self.state_dir / "parsed" / "git-check").read_text()
        return None

    def _links_to_object(
        self, relpath: str, real: str, folders: dict[str, str], inside: str
    ) -> bool:
        """Whether an output is a symbolic link, in a folder inside the repository, to
        one of the store's objects: what `link = "symlink"` makes."""
        folder = folders.get(relpath.rpartition("/")[0])
        if folder is None or not os.path.join(folder, "").startswith(inside):
            return False
        if not os.path.islink(self.root / relpath):
            return False
        objects = os.path.realpath(self.store_dir / "objects")
        return _OBJECT_PATH.fullmatch(os.path.relpath(real, objects)) is not None

    def _remember_check(self, stamp: str | None) -> None:
        if stamp is not None and self.state_dir.is_dir():
            with contextlib.suppress(OSError):
                (self.state_dir / "parsed").mkdir(exist_ok=True)
                atomic.write_bytes(
                    self.state_dir / "parsed" / "git-check", stamp.encode(), sync=False
                )

    def _check_before_run(
        self, names: Sequence[str], repo: Any, *, run: bool = True, git: bool = True
    ) -> None:
        """Errors that must stop a command before anything changes on disk.

        A missing source dependency stops a run; `status` reports it as a reason."""
        pipeline = self.pipeline
        name_of = pipeline.file.name
        top = repo.top if repo is not None else self.root
        real_top = os.path.realpath(top)
        inside = real_top.rstrip(os.sep) + os.sep
        folders: dict[str, str] = {}  # each output's folder, resolved once
        for name in names:
            step = pipeline.steps[name]
            for i, dep in enumerate(step.deps):
                if not run or self.graph.producers_of(dep):
                    continue
                if not (self.root / dep.path).exists():
                    raise PipelineError(
                        f"dependency {str(dep)!r} of step {name!r} does not exist and no "
                        "step produces it",
                        file=name_of,
                        key=f"steps.{name}.deps[{i}]",
                    )
            for out, key in spec.out_places(step):
                real = _real_path(self.root, out.path, folders)
                if real != real_top and not real.startswith(inside):
                    if self._links_to_object(out.path, real, folders, inside):
                        continue  # `link = "symlink"` made it
                    raise PipelineError(
                        f"output {str(out)!r} of step {name!r} leads outside the "
                        f"repository (to {real})",
                        file=name_of,
                        key=key,
                    )
        if repo is not None and git:
            prefix = repo.relpath(self.root)
            wanted = {}
            for name in names:
                for out, key in spec.out_places(pipeline.steps[name]):
                    path = f"{prefix}/{out.path}" if prefix else out.path
                    wanted[path] = (name, out, key)
            tracked = repo.tracked_under(wanted)
            for path, example in tracked.items():
                name, out, key = wanted[path]
                raise PipelineError(
                    f"output {str(out)!r} of step {name!r} is tracked by Git ({example}); "
                    f"untrack it with `git rm -r --cached {path}` and commit",
                    file=name_of,
                    key=key,
                )

    @contextlib.contextmanager
    def _session(self, *, readonly: bool) -> Any:
        cache = StatCache(self.state_dir / "stat.db", readonly=readonly)
        session = _Session(self, Hasher(self.root, cache), readonly=readonly)
        try:
            yield session
        finally:
            cache.close()


def _real_path(root: Path, relpath: str, folders: dict[str, str]) -> str:
    """``os.path.realpath(root / relpath)``, resolving each parent folder once (in
    ``folders``): a path whose last part is no link resolves to its folder's real path
    joined with that part."""
    parent, _, leaf = relpath.rpartition("/")
    if leaf in ("", ".", ".."):
        return os.path.realpath(root / relpath)
    if parent not in folders:
        folders[parent] = os.path.realpath(root / parent if parent else root)
    full = os.path.join(folders[parent], leaf)
    return os.path.realpath(full) if os.path.islink(full) else full


#: an object's path inside the store's objects/ folder
_OBJECT_PATH = re.compile(r"b3/[0-9a-f]{2}/[0-9a-f]{62}")


def _link(step: spec.Step) -> str:
    """How a step's outputs are put in the workspace: as it asks, except that a step
    keeping its outputs (`persist`) may write into them, so they are never the
    store's own objects."""
    return "copy" if step.persist else step.link


def may_restore(step: spec.Step) -> bool:
    """Steps that run every time, opt out of the cache or keep their outputs never
    take a stored result."""
    return step.cache and not step.always and not step.persist


class _WorkTree:
    """The working tree as a :class:`codedeps.Source`, digests from the stat cache."""

    def __init__(self, root: Path, hasher: Hasher) -> None:
        self.root = root
        self.hasher = hasher
        self._is_file: dict[str, bool] = {}

    def is_file(self, path: str) -> bool:
        if path not in self._is_file:
            self._is_file[path] = not path.startswith("/") and (self.root / path).is_file()
            if self.hasher.seen is not None and not path.startswith("/"):
                self.hasher.seen.look(str(self.root / path))
        return self._is_file[path]

    def forget(self, path: str) -> None:
        """``path`` (a file or a folder) is about to be rewritten."""
        prefix = path + "/"
        for known in [p for p in self._is_file if p == path or p.startswith(prefix)]:
            del self._is_file[known]

    def read(self, path: str) -> bytes:
        if self.hasher.seen is not None:
            self.hasher.seen.look(str(self.root / path))
        return (self.root / path).read_bytes()

    def glob(self, pattern: str) -> list[str]:
        if not (_GLOB_CHARS & set(pattern)):
            return [Path(pattern).as_posix()] if self.is_file(pattern) else []
        if self.hasher.seen is not None:
            self.hasher.seen.look_glob(str(self.root), pattern)
        return sorted(
            Path(match).as_posix()
            for match in glob.glob(pattern, root_dir=self.root, recursive=True)
            if (self.root / match).is_file()
        )

    def digest(self, path: str) -> Digest:
        state = self.hasher.state(path)
        if state is None:
            raise StoreError(f"code file {path} disappeared while it was read")
        return state.digest


@dataclass(frozen=True, slots=True)
class _RunOptions:
    """How a repro runs, once its steps are chosen."""

    force: bool = False
    keep_going: bool = False
    argv: tuple[str, ...] = ()
    repo: Any = None  # gitpipe.git.Repository, or None outside Git
    remote: Any = None  # a gitpipe.remote remote to pull stale steps' results from
    approve: frozenset[str] = frozenset()  # steps (or matrix/nested names) approved now
    write_lock: bool = True  # False for an experiment (`-p`) unless --lock was given
    hooks: Mapping[str, tuple[Callable[[HookCall], None], ...]] = field(default_factory=dict)


@dataclass(slots=True)
class _Run:
    """What publishing a step needs to remember from deciding it."""

    record: KeyRecord
    check: _Check
    reasons: tuple[str, ...]
    step: spec.Step  # as it runs: the metrics it reads from other steps filled in
    started: float = 0.0


@dataclass(slots=True)
class _Check:
    state: str
    reasons: list[Reason]
    record: KeyRecord | None
    outs_now: dict[str, PathState | None]
    step: spec.Step | None = None  # the step as checked: metrics it reads filled in


class _Session:
    """One command's view of the workspace: hashing, store and run cache."""

    def __init__(self, project: Project, hasher: Hasher, *, readonly: bool) -> None:
        self.project = project
        self.hasher = hasher
        self.readonly = readonly
        self.store = Store(project.store_dir)
        self.runcache = RunCache(self.store)
        self.run_id = ""
        self.entries: dict[str, LockEntry] = {}
        self.force = False
        self.dry_run = readonly
        self.remote: Any = None  # `repro --pull`: fetch a stale step's result first
        self.approve: frozenset[str] = frozenset()  # `repro --approve STEP`
        #: steps a still-valid status snapshot found up to date or frozen, by name
        self.known: dict[str, StepStatus] = {}
        self.hook_calls: Mapping[str, Sequence[Callable[[HookCall], None]]] = {}
        self.hook_failures: list[str] = []
        self._code: dict[str, dict[str, Digest]] = {}
        self._unreadable: dict[str, list[str]] = {}
        self._code_info: dict[str, tuple[Digest, Digest, list[codedeps.Imported] | None]] = {}
        self.worktree = _WorkTree(project.root, hasher)
        self._discoverer: codedeps.Discoverer | None = None

    # digests ------------------------------------------------------------------

    @property
    def discoverer(self) -> codedeps.Discoverer:
        if self._discoverer is None:
            from gitpipe import codedeps

            self._discoverer = codedeps.Discoverer(
                self.worktree, imports_of=lambda path: self.code_info(path)[2]
            )
        return self._discoverer

    def code_files(self, step: spec.Step) -> codedeps.Discovery:
        """The step's code: its `code` globs, and the Python its commands run and import."""
        root = self.project.root
        for i, pattern in enumerate(step.code):
            if not (_GLOB_CHARS & set(pattern)) and not (root / pattern).is_file():
                raise PipelineError(
                    f"code file {pattern!r} of step {step.name!r} does not exist",
                    file=self.project.file.name,
                    key=f"steps.{step.name}.code[{i}]",
                )
        from gitpipe import codedeps

        return self.discoverer.discover(codedeps.commands_of(step), step.wdir, step.code)

    def code_info(self, path: str) -> tuple[Digest, Digest, list[codedeps.Imported] | None]:
        """A code file's raw digest, normalised digest and imports (None: it does not
        parse), from the stat cache's code table when these bytes were seen before."""
        if path not in self._code_info:
            self._code_info[path] = self._read_code_info(path)
        return self._code_info[path]

    def _forget_code(self, path: str) -> None:
        """A step is about to rewrite ``path``: what was learnt of code there is void
        (generated code is code too)."""
        prefix = path + "/"
        stale = [p for p in self._code_info if p == path or p.startswith(prefix)]
        for p in stale:
            del self._code_info[p]
        self.worktree.forget(path)
        if stale and self._discoverer is not None:
            self._discoverer.forget()

    def _read_code_info(self, path: str) -> tuple[Digest, Digest, list[codedeps.Imported] | None]:
        from gitpipe import codedeps

        state = self.hasher.state(path)
        if state is None or state.is_dir:
            raise StoreError(f"code file {path} is not a readable file")
        if not path.endswith(".py"):  # other code is digested as bytes, and imports nothing
            return state.digest, state.digest, []
        row = self.hasher.cache.code(state.digest)  # what these bytes are *as Python*
        if row is None:
            data = (self.project.root / path).read_bytes()
            normal, parses = codedeps.code_digest(path, data)
            found = codedeps.imports(data) if path.endswith(".py") else []
            encoded = (
                json.dumps([[i.module, i.level, list(i.names)] for i in found])
                if found is not None
                else None
            )
            row = (normal.hex, int(parses), encoded)
            self.hasher.cache.record_code(state.digest, row)
        imports = (
            None
            if row[2] is None
            else [codedeps.Imported(m, lvl, tuple(n)) for m, lvl, n in json.loads(row[2])]
        )
        return state.digest, Digest(row[0]), imports

    def code_of(self, step: spec.Step) -> dict[str, Digest]:
        """Each code file of a step with its code digest (normalised unless
        ``code_digest = "bytes"``)."""
        if step.name not in self._code:
            discovery = self.code_files(step)
            code = {}
            for path in discovery.files:
                raw, normal, _ = self.code_info(path)
                code[path] = normal if step.code_digest == "ast" else raw
            self._code[step.name] = code
            self._unreadable[step.name] = discovery.unreadable
        return self._code[step.name]

    def code_of_all(self) -> dict[str, dict[str, Digest]]:
        return {name: self.code_of(step) for name, step in self.project.pipeline.steps.items()}

    def metric_value(self, ref: spec.MetricRef, entries: Mapping[str, LockEntry]) -> Any:
        """The value of ``${steps.S.metrics.M}``: S's metric M as its lock entry (the
        last time it ran or was restored) recorded it."""
        file = self.project.file.name
        entry = entries.get(ref.step)
        if entry is None:
            raise PipelineError(
                f"${{{ref.ref}}} has no value yet: step {ref.step!r} has not run",
                file=file,
                key=ref.key,
            )
        found = [values[ref.metric] for values in entry.metrics.values() if ref.metric in values]
        if not found:
            known = sorted({name for values in entry.metrics.values() for name in values})
            raise PipelineError(
                f"${{{ref.ref}}}: the metrics of step {ref.step!r} have no {ref.metric!r}"
                f" (they have: {', '.join(known) or 'none'})",
                file=file,
                key=ref.key,
            )
        if len(found) > 1:
            raise PipelineError(
                f"${{{ref.ref}}}: several metrics files of step {ref.step!r} have "
                f"{ref.metric!r}; keep one",
                file=file,
                key=ref.key,
            )
        return found[0]

    def resolved(self, step: spec.Step, entries: Mapping[str, LockEntry]) -> spec.Step:
        """The step with the metrics it reads from other steps filled in."""
        return spec.resolve(step, lambda ref: self.metric_value(ref, entries))

    def check(
        self,
        step: spec.Step,
        entry: LockEntry | None,
        *,
        assume: Mapping[str, Digest] | None = None,
        entries: Mapping[str, LockEntry] | None = None,
    ) -> _Check:
        """A step's key record and state now; ``assume`` gives digests for deps that
        are missing (the lock's, for `gitpipe check` in a clone without outputs).
        Metrics the step reads from other steps come from ``entries`` (default: this
        session's lock entries)."""
        if step.metric_refs:
            try:
                step = self.resolved(step, self.entries if entries is None else entries)
            except PipelineError as exc:
                outs_now = {str(o): self.hasher.state(o.path) for o in step.all_outs}
                reason = Reason("metric unknown", str(exc).split(": ", 1)[-1])
                return _Check(STALE, [reason], None, outs_now, step)
        deps: dict[str, Digest] = {}
        missing: list[Reason] = []
        for dep in step.deps:
            state = self.hasher.state(dep.path)
            if state is not None:
                deps[str(dep)] = state.digest
            elif assume and str(dep) in assume:
                deps[str(dep)] = assume[str(dep)]
            else:
                missing.append(Reason("dep missing", str(dep)))
        outs_now = {str(o): self.hasher.state(o.path) for o in step.all_outs}
        if step.frozen:
            return _Check(FROZEN, [], None, outs_now, step)
        if missing:
            return _Check(STALE, missing, None, outs_now, step)
        code = self.code_of(step)
        # a dependency that is also code is keyed by its code digest, not its bytes
        deps = {path: digest for path, digest in deps.items() if path not in code}
        record = key_record(step, deps=deps, code=code)
        digests = {path: (s.digest if s else None) for path, s in outs_now.items()}
        state, reasons = assess(step, record, entry, digests)
        if state == STALE:
            reasons += [Reason("code unreadable", path) for path in self._unreadable[step.name]]
        return _Check(state, reasons, record, outs_now, step)

    def restorable(self, step: spec.Step, check: _Check) -> Result | None:
        """A stored result that can stand in for running the step, if any."""
        if not may_restore(step) or check.record is None:
            return None
        return self.runcache.get(check.record.key)

    # running --------------------------------------------------------------------

    def decide(self, name: str, upstream_would_run: list[str]) -> ev.StepFinished | Pending:
        """Up to date, restored, frozen, or a step that must run (for the scheduler)."""
        step = self.project.pipeline.steps[name]
        entries = self.entries
        entry = entries.get(name)
        if step.when is not None:
            try:
                skip = self.condition_false(step)
            except PipelineError as exc:
                return ev.StepFinished(name, ev.FAILED, message=str(exc))
            if skip:
                return ev.StepFinished(name, ev.SKIPPED, message=skip)
        known = self.known.get(name)
        if known is not None and not self.force and not upstream_would_run:
            # nothing it reads changed since `status` found it so (gitpipe/status.py)
            if known.state == ev.FROZEN:
                return ev.StepFinished(name, ev.FROZEN, message="frozen: never runs")
            return ev.StepFinished(name, ev.UP_TO_DATE, key=known.key)
        # a dry run restores nothing: an upstream output it would restore is missing
        # now, and will be what the lock recorded
        assume = entry.deps if self.dry_run and entry is not None else None
        check = self.check(step, entry, assume=assume)
        step = check.step or step  # with the metrics it reads from other steps
        reasons = [str(r) for r in check.reasons]
        key = str(check.record.key) if check.record else ""
        if check.state == FROZEN:
            return ev.StepFinished(name, ev.FROZEN, message="frozen: never runs")
        if self.force:
            reasons = ["forced", *reasons]
        stale = check.state == STALE or self.force
        if self.dry_run:
            if not stale:
                if upstream_would_run:
                    return ev.StepFinished(
                        name,
                        ev.WOULD_RUN,
                        reasons=(f"upstream would run: {', '.join(upstream_would_run)}",),
                        message="if what it reads changes",
                    )
                return ev.StepFinished(name, ev.UP_TO_DATE, key=key)
            if not self.force and self.restorable(step, check) is not None:
                return ev.StepFinished(name, ev.WOULD_RESTORE, reasons=tuple(reasons), key=key)
            if step.approval and not (check.record and self.approval(step, check.record)):
                reasons.append("needs approval")
            return ev.StepFinished(name, ev.WOULD_RUN, reasons=tuple(reasons), key=key)
        if not stale:
            return ev.StepFinished(name, ev.UP_TO_DATE, key=key)
        if check.record is None:  # a dependency is missing
            return ev.StepFinished(
                name, ev.FAILED, reasons=tuple(reasons), message="; ".join(reasons)
            )
        record = check.record
        if not self.force:
            if (
                self.remote is not None
                and may_restore(step)
                and self.runcache.get(record.key) is None
            ):
                from gitpipe import remote as remotes

                remotes.fetch_for_keys(self.store, self.remote, [record.key])
            result = self.restorable(step, check) or self._result_from_lock(step, entry, record)
            if result is not None:
                started = time.time()
                self._restore(step, result, check)
                entries[name] = self._entry(step, record, result)
                self.hook("after_step", name, ev.CACHED)
                return ev.StepFinished(
                    name,
                    ev.CACHED,
                    reasons=tuple(reasons),
                    key=key,
                    duration=time.time() - started,
                    started=started,
                    ended=time.time(),
                    **self._provenance(step, record, result),
                )
        if step.approval and not self.approval(step, record):
            return ev.StepFinished(
                name,
                ev.WAITING,
                reasons=tuple(reasons),
                key=key,
                message=f"approve it with `gitpipe approve {name}`, then run again",
            )
        return Pending(
            self._invocation(step),
            cpus=int(step.resources.get("cpus", 1)),
            resources=step.resources,
            context=_Run(record, check, tuple(reasons), step),
        )

    def prune(self, entries: dict[str, LockEntry]) -> list[str]:
        """Remove the outputs of steps the lock knows and the pipeline no longer has
        (a matrix value taken out, a step deleted), so that no step reads them by
        accident: only outputs whose bytes are still those gitpipe recorded, and only
        once the store holds them.  Their lock entries go with them."""
        pipeline = self.project.pipeline
        owned = {o.path for step in pipeline.steps.values() for o in step.all_outs}
        removed = []
        for name in [n for n in entries if n not in pipeline.steps]:
            for out, digest in sorted(entries[name].outs.items()):
                path = out.rstrip("/")
                if path in owned:  # a step of the pipeline writes it now
                    continue
                state = self.hasher.state(path)
                if state is None or state.digest != digest:
                    continue  # gone already, or changed by hand: not ours to remove
                self._save_before_replacing(spec.PathSpec(path, state.is_dir), state)
                remove(self.project.root / path)
                self.hasher.forget(path)
                removed.append(out)
            del entries[name]
        return removed

    def condition_false(self, step: spec.Step) -> str:
        """Why the step is skipped: its `when` condition, with the values it read, when
        that is false; "" when it holds."""
        assert step.when is not None
        refs = {ref.ref: ref for ref in step.metric_refs}
        values = {ref: self.metric_value(refs[ref], self.entries) for ref in step.when.refs}
        try:
            holds = step.when.evaluate(values)
        except ExprError as exc:
            raise PipelineError(
                f"the condition cannot be evaluated: {exc}",
                file=self.project.file.name,
                key=f"steps.{step.group or step.name}.when",
            ) from exc
        if holds:
            return ""
        return f"condition false: {step.when.shown(values)} (when = {step.when.source!r})"

    def approval(self, step: spec.Step, record: KeyRecord) -> bool:
        """Whether someone approved this step to run with this key (``--approve``
        approves it now, on this run's record)."""
        from gitpipe.lineage import approval_of, record_approval

        path = self.project.state_dir / "lineage.db"
        if step.name in self.approve:
            if not self.dry_run:
                record_approval(
                    path, step.name, str(record.key), self.project.user(), run_id=self.run_id
                )
            return True
        return approval_of(path, step.name, str(record.key)) is not None

    def hook(self, event: str, step: str, state: str, log: str = "") -> str:
        """Run the pipeline's ``[hooks]`` commands and the API's callables for
        ``event``; the first failure's message ("" when all went well)."""
        commands = getattr(self.project.pipeline.hooks, event)
        calls = self.hook_calls.get(event, ())
        if self.dry_run or not (commands or calls):
            return ""
        project = self.project
        logs = project.state_dir / "logs" / self.run_id
        logs.mkdir(parents=True, exist_ok=True)
        call = HookCall(event, step, state, log, self.run_id)
        env = {**project.environ, **call.environ(), "GITPIPE_ROOT": str(project.root)}
        for command in commands:
            with open(logs / "hooks.log", "ab") as out:
                out.write(f"== {event} {step} ({state}): {command}\n".encode())
                out.flush()
                done = subprocess.run(
                    command,
                    shell=True,
                    cwd=project.root,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    check=False,
                )
            if done.returncode != 0:
                return self._hook_failed(
                    f"{event} hook `{command}` failed for step {step!r} (exit "
                    f"{done.returncode}; see {logs / 'hooks.log'})"
                )
        for function in calls:
            try:
                function(call)
            except Exception as exc:  # a user's callable: any failure is its failure
                return self._hook_failed(
                    f"{event} hook {getattr(function, '__name__', function)!r} failed for "
                    f"step {step!r}: {exc}"
                )
        return ""

    def _hook_failed(self, message: str) -> str:
        self.hook_failures.append(message)
        return message

    def begin(self, name: str, pending: Pending) -> ev.StepFinished | None:
        """Clear the way for a step about to run: its `before_step` hooks run, its old
        outputs go (into the store first, unless it already has them), their folders
        exist.  A failed hook (with ``hooks.fail``) fails the step instead."""
        step = self.project.pipeline.steps[name]
        root = self.project.root
        check = pending.context.check
        failure = self.hook("before_step", name, "running", pending.invocation.log)
        if failure and self.project.pipeline.hooks.fail:
            return ev.StepFinished(
                name, ev.FAILED, key=str(pending.context.record.key), message=failure
            )
        for spec_ in step.all_outs:
            if not step.persist:
                self._save_before_replacing(spec_, check.outs_now.get(str(spec_)))
                remove(root / spec_.path)
            else:
                self._unlink_from_store(spec_, check.outs_now.get(str(spec_)))
            (root / spec_.path).parent.mkdir(parents=True, exist_ok=True)
            self.hasher.forget(spec_.path)
            self._forget_code(spec_.path)
        pending.context.started = time.time()
        return None

    def _result_from_lock(
        self, step: spec.Step, entry: LockEntry | None, record: KeyRecord
    ) -> Result | None:
        """The lock's own record of the outputs, when its key matches and the store has them."""
        if entry is None or entry.key != record.key or not may_restore(step):
            return None
        outs = {}
        for spec_ in step.all_outs:
            digest = entry.outs.get(str(spec_))
            if digest is None:
                return None
            outs[spec_.path] = OutRecord(digest, spec_.is_dir)
        result = Result(outs=outs, metrics=entry.metrics, step=step.name)
        return result if self.runcache.complete(result) else None

    def _restore(self, step: spec.Step, result: Result, check: _Check) -> None:
        root = self.project.root
        link = _link(step)
        for spec_ in step.all_outs:
            out = result.outs[spec_.path]
            now = check.outs_now.get(str(spec_))
            if now is not None and now.digest == out.digest:
                continue
            self._save_before_replacing(spec_, now)
            self._materialise(root / spec_.path, out, link)
            self.hasher.forget(spec_.path)
            if link != "copy":
                self._learn(spec_.path, out)

    def _materialise(self, target: Path, out: OutRecord, link: str) -> None:
        """Put a stored output at ``target``, copied or linked as ``link`` says."""
        if out.is_dir:
            self.store.restore_tree(out.digest, target, link=link)
        else:
            self.store.restore_file(out.digest, target, executable=out.executable, link=link)

    def _link_output(self, relpath: str, out: OutRecord, link: str) -> None:
        """Make the files of a just-stored output the store's own objects, as ``link``
        asks, one by one (each renamed over its copy), except executable files."""
        if out.is_dir:
            files = [
                (f"{relpath}/{entry.path}", entry.digest)
                for entry in self.store.manifest(out.digest)
                if not entry.executable
            ]
        else:
            files = [] if out.executable else [(relpath, out.digest)]
        for path, digest in files:
            if self._link_file(path, digest, link):
                self.hasher.learn(path, digest)

    def _link_file(self, relpath: str, digest: Digest, link: str) -> bool:
        """Make one output file the store's object, unless it is one already (linked in
        as it was added); False where it stays a copy (a hard link to another device)."""
        target = self.project.root / relpath
        here = os.stat(target)
        there = os.stat(self.store.object_path(digest))
        if (here.st_ino, here.st_dev) == (there.st_ino, there.st_dev):
            if link == "hardlink" or target.is_symlink():
                return True
        elif link == "hardlink" and here.st_dev != there.st_dev:
            return False
        self.store.restore_file(digest, target, link=link)
        return True

    def _learn(self, relpath: str, out: OutRecord) -> None:
        """Tell the stat cache the digests of an output just linked from the store."""
        if out.is_dir:
            for entry in self.store.manifest(out.digest):
                self.hasher.learn(f"{relpath}/{entry.path}", entry.digest)
        else:
            self.hasher.learn(relpath, out.digest)

    def _unlink_from_store(self, out: spec.PathSpec, now: PathState | None) -> None:
        """A `persist` step writes into its outputs: any file of them that is still one
        of the store's objects (the step had `link` set before) becomes a copy first."""
        if now is None:
            return
        if now.is_dir:
            files = [
                (f"{out.path}/{entry.path}", entry.digest)
                for entry in self.hasher.manifest(out.path)
            ]
        else:
            files = [(out.path, now.digest)]
        for relpath, digest in files:
            target = self.project.root / relpath
            with contextlib.suppress(OSError):
                if os.path.samefile(target, self.store.object_path(digest)):
                    self.store.restore_file(digest, target, executable=os.access(target, os.X_OK))

    def _save_before_replacing(self, out: spec.PathSpec, now: PathState | None) -> None:
        """Keep a copy in the store of output bytes gitpipe is about to replace, so
        that nothing a user made by hand is lost."""
        if now is None:
            return
        target = self.project.root / out.path
        if now.is_dir:
            if now.digest not in self.store:
                self.store.add_tree(target, self.hasher.manifest(out.path))
        else:
            self.store.add_file(target, now.digest)

    def _invocation(self, step: spec.Step) -> Invocation:
        project = self.project
        log = project.state_dir / "logs" / self.run_id / f"{step.name}.log"
        env = {
            **step.env,
            "GITPIPE_STEP": step.name,
            "GITPIPE_RUN_ID": self.run_id,
            "GITPIPE_PARAMS": json.dumps(unflatten(step.params), sort_keys=True),
            "GITPIPE_ROOT": str(project.root),
        }
        commands = step.cmd
        if step.fn:  # a fresh interpreter calls the function: see gitpipe/fnstep.py
            commands = (f"{shlex.quote(sys.executable)} -m gitpipe.fnstep",)
            env.update(
                GITPIPE_FN=step.fn,
                GITPIPE_RETURN=str(log.with_suffix(".return.json")),
                GITPIPE_FAILURE=str(log.with_suffix(".failure.txt")),
            )
        return Invocation(
            step=step.name,
            commands=commands,
            cwd=str(project.root / step.wdir),
            env=env,
            log=str(log),
            timeout=step.timeout,
            scheduler=os.getpid(),
        )

    def publish(self, name: str, pending: Pending, outcome: Outcome) -> ev.StepFinished:
        """Publish a finished step (:meth:`_publish`), then run its `after_step` hooks
        and, when it failed, its `on_failure` hooks."""
        finished = self._publish(name, pending, outcome)
        self.hook("after_step", name, finished.state, pending.invocation.log)
        if finished.state == ev.FAILED:
            self.hook("on_failure", name, finished.state, pending.invocation.log)
        return finished

    def _publish(self, name: str, pending: Pending, outcome: Outcome) -> ev.StepFinished:
        """Check a finished step's outputs and publish them: objects into the store,
        then the result into the run cache, then the lock entry."""
        step = pending.context.step
        root = self.project.root
        run: _Run = pending.context
        record = run.record
        invocation = pending.invocation
        common = {
            "reasons": run.reasons,
            "key": str(record.key),
            "duration": outcome.duration,
            "exit_code": outcome.exit_code,
            "log": invocation.log,
            "started": run.started,
            "ended": time.time(),
        }
        entries = self.entries
        if not outcome.ok:
            message = outcome.message
            if step.fn:  # the function's own one-line reason, when it left one
                with contextlib.suppress(OSError):
                    reason = Path(invocation.log).with_suffix(".failure.txt").read_text()
                    message = f"{reason.strip()} (log: {invocation.log})"
            return ev.StepFinished(step.name, ev.FAILED, message=message, **common)
        outs: dict[str, OutRecord] = {}
        missing = []
        for spec_ in step.all_outs:
            try:
                state = self.hasher.state(spec_.path)
            except StoreError as exc:
                return ev.StepFinished(step.name, ev.FAILED, message=str(exc), **common)
            if state is None:
                missing.append(str(spec_))
            elif state.is_dir != spec_.is_dir and spec_.is_dir:
                missing.append(f"{spec_} (a file, not a folder)")
            else:
                outs[spec_.path] = OutRecord(
                    state.digest, state.is_dir, state.size, state.executable
                )
        if missing:
            return ev.StepFinished(
                step.name,
                ev.FAILED,
                message=f"did not produce its declared output {', '.join(missing)}",
                **common,
            )
        try:
            metrics = {spec_.path: _parse_metrics(root / spec_.path) for spec_ in step.metrics}
        except StoreError as exc:
            return ev.StepFinished(step.name, ev.FAILED, message=str(exc), **common)
        if step.fn:
            with contextlib.suppress(OSError, ValueError):
                returned = json.loads(Path(invocation.log).with_suffix(".return.json").read_text())
                metrics[RETURNED] = dict(sorted(flatten(returned).items()))
        # publish last: objects, then the result, then the lock entry (lineage listens)
        link = _link(step)
        for spec_ in step.all_outs:
            out = outs[spec_.path]
            target = root / spec_.path
            if out.is_dir:
                self.store.add_tree(target, self.hasher.manifest(spec_.path), link=link != "copy")
            else:
                self.store.add_file(target, out.digest, link=link != "copy" and not out.executable)
            if link != "copy":
                self._link_output(spec_.path, out, link)
        result = Result(
            outs=outs,
            metrics=metrics,
            duration=outcome.duration,
            exit_code=0,
            step=step.name,
            record=record.as_record(),
        )
        fault_point("objects-stored")
        self.runcache.put(record.key, result)
        fault_point("result-stored")
        entries[step.name] = self._entry(step, record, result)
        return ev.StepFinished(
            step.name, ev.RAN, **common, **self._provenance(step, record, result)
        )

    def _provenance(self, step: spec.Step, record: KeyRecord, result: Result) -> dict[str, Any]:
        """What lineage records of a step that ran or was restored."""
        reads = []
        for role, paths in (("dep", record.deps), ("code", record.code)):
            for path in paths:
                # lineage records bytes: a code file's raw digest, not its normalised one
                state = self.hasher.state(path.rstrip("/"))
                if state is not None:
                    reads.append(
                        ev.Artifact(path, str(state.digest), state.size, state.is_dir, role)
                    )
        writes = [
            ev.Artifact(str(spec_), str(out.digest), out.size, out.is_dir, "out")
            for spec_ in step.all_outs
            for out in [result.outs[spec_.path]]
        ]
        return {
            "reads": tuple(reads),
            "writes": tuple(writes),
            "params": dict(record.params),
            "metrics": dict(result.metrics),
        }

    def _entry(self, step: spec.Step, record: KeyRecord, result: Result) -> LockEntry:
        return LockEntry(
            key=record.key,
            cmd=record.cmd,
            wdir=record.wdir,
            deps=record.deps,
            code=record.code,
            params=record.params,
            env=record.env,
            outs={str(s): result.outs[s.path].digest for s in step.all_outs},
            metrics=dict(result.metrics),
        )


def current_params() -> dict[str, Any]:
    """The params of the step this process runs for (``GITPIPE_PARAMS``); {} outside one."""
    raw = os.environ.get("GITPIPE_PARAMS")
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise UsageError("GITPIPE_PARAMS is not valid JSON") from exc
    return value if isinstance(value, dict) else {}
