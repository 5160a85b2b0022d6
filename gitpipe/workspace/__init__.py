"""The workspace facade: a pipeline file, its store, lock and lineage.

The facade reads the working directory and the environment it is given
(``Project(environ=...)``, else the process's: the store's place, the approving
user, the signing key, hooks' environment); steps themselves inherit the process's
environment, plus their `env` table and gitpipe's variables (runner and session).
The command line reads its own few (`CI`, `NO_COLOR`, `GITHUB_STEP_SUMMARY`).  It
hands the work to the modules that do it, each passed what it needs:

    Project ──> inputs.Inputs    what steps read now (hashing, code, keys)
            ──> planner.Planner  the one decision per step, which every view reads
            ──> session.Session  one repro: restores, runs and publishes
            ──> maintenance      cache verify, gc

Beside it, one module per operation, each handed the project: reproduce (one
`repro`), inspection (status, why, check, approve), history (versions, diff),
lineage (runs, the origin of a path) and transfer (push, pull).  The command line
and the Python API (`gitpipe/__init__.py`) call the same ones.
"""

from __future__ import annotations

import contextlib
import functools
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitpipe.core import atomic, collector, layout, stamps
from gitpipe.core.errors import UsageError
from gitpipe.core.layout import STATE_DIR, locate
from gitpipe.core.records import StepStatus
from gitpipe.core.stepparams import current_params
from gitpipe.pipeline import graph as graphs
from gitpipe.pipeline import spec
from gitpipe.run import guard, overlay
from gitpipe.store import lockfile
from gitpipe.store.datafile import DataRecord
from gitpipe.store.lockfile import Lock, LockEntry

if TYPE_CHECKING:  # imported where used: `add` or `status` needs none of the runner
    from gitpipe.history.maintenance import GcReport, StoreReport
    from gitpipe.identity.external import Fingerprints
    from gitpipe.run import events as ev
    from gitpipe.run.inputs import Inputs
    from gitpipe.run.planner import Decision, Planner
    from gitpipe.run.session import HookCall
    from gitpipe.workspace import data
    from gitpipe.workspace.experiments import Experiment, MetricsHistory
    from gitpipe.workspace.inspection import Explanation
    from gitpipe.workspace.reproduce import RunReport, reproduce

__all__ = ["HookCall", "Project", "RunReport", "current_params", "fault_point"]

#: names the facade offers from the modules that define them, imported when asked
_LAZY = {
    "HookCall": "gitpipe.run.session",
    "fault_point": "gitpipe.run.session",
    "RunReport": "gitpipe.workspace.reproduce",
    "Explanation": "gitpipe.workspace.inspection",
}


def __getattr__(name: str) -> Any:
    # `gitpipe add` or `status` needs neither the runner nor the planner: a name
    # defined there is imported when first asked for (PEP 562)
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gitpipe.workspace' has no attribute {name!r}")


STARTER = """\
# A gitpipe pipeline; the fields are described in gitpipe's docs/pipeline-file.md.
# Each step's command, code, params and input bytes make its key; a step whose key
# already has a stored result is restored instead of run.  A step's code is found
# from its command: the script it runs and the modules of this repository that
# script imports (docs/code.md), so `deps` lists only the data a step reads.

[pipeline]
name = "{name}"

[params]                  # values steps may use, as ${{params.NAME}} or `params = [...]`
seed = 42

# [steps.prepare]
# cmd = "python3 src/prepare.py --seed ${{params.seed}}"
# deps = ["data/raw.csv"]
# outs = ["data/prepared/"]   # a trailing slash: a folder output
#
# [steps.train]
# cmd = "python3 src/train.py"
# deps = ["data/prepared/"]
# params = ["seed"]
# outs = ["model.pkl"]
# metrics = ["metrics.json"]
"""


def _nothing() -> None:
    return None


def _data() -> Any:
    """:mod:`gitpipe.workspace.data`, imported when first used (it needs the hasher and
    the outputs' placement, which `push` does not)."""
    from gitpipe.workspace import data

    return data


def _inspection() -> Any:
    """:mod:`gitpipe.workspace.inspection`, imported when first used (it needs the
    planner, which `add` does not)."""
    from gitpipe.workspace import inspection

    return inspection


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
        #: the lock last read, with the file's stamp and when it was read
        self._lock_read: tuple[stamps.Stamp, int, Lock] | None = None
        self._fingerprints: Fingerprints | None = None
        if overlay.left_behind(self.state_dir):
            from gitpipe.workspace.reproduce import put_back_params

            put_back_params(self)

    @property
    def fingerprints(self) -> Fingerprints:
        """The remote deps' fingerprints: each url asked once in this project's life
        (one command)."""
        if self._fingerprints is None:
            from gitpipe.run.inputs import fingerprints_for

            self._fingerprints = fingerprints_for(self.environ)
        return self._fingerprints

    @property
    def store_dir(self) -> Path:
        """The store: ``GITPIPE_CACHE_DIR``, else ``.gitpipe/cache`` beside the pipeline,
        in the main work tree when this is a linked one (`git worktree add`), so that
        work trees share one store."""
        if self._store_dir is None:
            shared = None
            if (
                guard.dot_git(self.root) is not None and guard.dot_git(self.root).is_file()
            ):  # a linked work tree
                from gitpipe.history.git import shared_state_dir

                shared = shared_state_dir(self.root)
            self._store_dir = (shared or self.state_dir) / "cache"
        return self._store_dir

    @classmethod
    def init(
        cls, folder: str | os.PathLike[str], *, file: str | None = None, force: bool = False
    ) -> Project:
        """Write a commented starter pipeline in ``folder`` (inside a Git repository)."""
        from gitpipe.history.git import Repository

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
        project.ensure_state_dir()
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
            self.file,
            cache_dir=self.state_dir / "parsed",
            overrides=self.overrides,
            # never the values a `repro -p` shows its steps, even while it runs
            params_bytes=functools.partial(overlay.committed_bytes, self.root, self.state_dir),
        )
        with collector.paused():  # the graph lives as long as the pipeline: none garbage
            self._graph = graphs.build(pipeline)
        self._pipeline = pipeline
        self._keep = keep  # called by a command that went well: see keep_caches

    def read_lock(self) -> Lock:
        """gitpipe.lock, its parsed TOML cached like the pipeline file's; read again only
        when the file changed since this project last read it (as the stat cache tells)."""
        stamp = stamps.stamp(self.lock_path)
        last = self._lock_read
        if (
            stamp is not None
            and last is not None
            and stamp == last[0]
            and not stamps.racy(stamp[1], last[1])
        ):
            return last[2]
        read_ns = time.time_ns()
        lock, keep = lockfile.read_cached(self.lock_path, cache_dir=self.state_dir / "parsed")
        self._keep_lock = keep
        self._lock_read = (stamp, read_ns, lock) if stamp is not None else None
        return lock

    def keep_caches(self, *, lock: bool = True) -> None:
        """Cache the parsed pipeline (and, with ``lock``, lock) files, now that a command
        used them without error (a dry run or a refused command writes nothing)."""
        self._keep()
        self._keep = _nothing
        if lock:
            self._keep_lock()
            self._keep_lock = _nothing

    def select(
        self, targets: Iterable[str] = (), *, single: bool = False, downstream: bool = False
    ) -> list[str]:
        return graphs.select(
            self.graph, targets, file=self.file.name, single=single, downstream=downstream
        )

    def digest_of(self, path: str | os.PathLike[str]) -> tuple[str, str]:
        """The digest of a workspace path now, and the path relative to the pipeline."""
        return _inspection().digest_of(self, path)

    # -- status ---------------------------------------------------------------

    def status(
        self, targets: Iterable[str] = (), *, single: bool = False, downstream: bool = False
    ) -> list[StepStatus]:
        """Each selected step's state, what `repro` would do with it, and why (see
        :func:`gitpipe.workspace.inspection.status`)."""
        return _inspection().status(self, targets, single=single, downstream=downstream)

    def status_and_data(
        self, targets: Iterable[str] = (), *, single: bool = False, downstream: bool = False
    ) -> tuple[list[StepStatus], list[data.DataState]]:
        """:meth:`status`, and how the workspace stands to each added path."""
        return _inspection().status_and_data(self, targets, single=single, downstream=downstream)

    def plan(
        self,
        targets: Iterable[str] = (),
        *,
        single: bool = False,
        downstream: bool = False,
        force: bool = False,
    ) -> list[Decision]:
        """What `repro` would do with each selected step, and why (nothing is
        written): the decisions every view shows."""
        names = self.select(targets, single=single, downstream=downstream)
        lock = self.read_lock()
        with self.inputs(readonly=True) as inputs:
            planner = self.planner(inputs, lock, force=frozenset(names) if force else None)
            return planner.plan(names, self.graph.parents)

    def planner(
        self,
        inputs: Inputs,
        lock: Lock,
        *,
        entries: dict[str, LockEntry] | None = None,
        force: frozenset[str] | None = None,
        remote: Any = None,
        approve: frozenset[str] = frozenset(),
        run_id: str = "",
        record_approvals: bool = False,
        preferred: Mapping[Any, Mapping[str, Any]] | None = None,
    ) -> Planner:
        from gitpipe.run.planner import Planner, approver
        from gitpipe.store.objects import Store
        from gitpipe.store.runcache import RunCache, Signer

        return Planner(
            inputs,
            RunCache(Store(self.store_dir), signer=Signer.from_environ(self.environ)),
            dict(lock.steps) if entries is None else entries,
            force=force or frozenset(),
            remote=remote,
            approved=approver(self, approve, run_id=run_id, record=record_approvals),
            preferred=preferred or {},
        )

    # -- check (pre-commit) ----------------------------------------------------

    def check_lock(self) -> list[tuple[str, list[str]]]:
        """Steps whose lock entry does not match the pipeline and the files it reads
        (see :func:`gitpipe.workspace.inspection.check_lock`)."""
        return _inspection().check_lock(self)

    # -- the store -------------------------------------------------------------

    def verify_store(self, *, repair: bool = False) -> StoreReport:
        """Re-hash every object and check every result; with ``repair``, remove the
        corrupt objects and the results that name missing objects."""
        from gitpipe.history.maintenance import verify_store

        return verify_store(self.store_dir, repair=repair)

    def collect_garbage(
        self, *, workspace_only: bool = False, delete: bool = False, keep_recent: float = 3600.0
    ) -> GcReport:
        """Objects and results that no lock of any clone using the store references:
        the working tree's lock of this clone and of every clone registered in the
        store and, unless ``workspace_only``, the lock on every ref of their
        repositories (see :func:`gitpipe.history.maintenance.needed_locks`).  With ``delete``,
        raises :class:`StoreError` and deletes nothing while one of those locks
        cannot be read; without, the report lists them."""
        from gitpipe.history.maintenance import collect_garbage, needed_locks

        needs = needed_locks(self.store_dir, self.file, workspace_only=workspace_only)
        return collect_garbage(self.store_dir, needs, delete=delete, keep_recent=keep_recent)

    def register_clone(self) -> None:
        """Note in the store that this clone uses it, so that `gitpipe gc` in any
        clone sharing the store keeps what this one needs: written once, then one
        ``stat`` (see :mod:`gitpipe.store.clones`).  Raises :class:`StoreError` when the
        store cannot be written."""
        from gitpipe.store import clones

        if clones.is_registered(self.store_dir, self.file):
            return
        clones.register(self.store_dir, self.file, layout.work_tree(self.root))

    # -- added data -------------------------------------------------------------

    def add(self, paths: Sequence[str], *, link: str | None = None) -> list[data.Added]:
        """Track files and folders too big for Git (see :func:`gitpipe.workspace.data.add`)."""
        return _data().add(self, paths, link=link)

    def remove(self, paths: Sequence[str]) -> list[DataRecord]:
        """Stop tracking added paths; the files stay (:func:`gitpipe.workspace.data.remove`)."""
        return _data().remove(self, paths)

    def checkout(
        self,
        paths: Sequence[str] = (),
        *,
        pull: bool = False,
        force: bool = False,
        remote: str | None = None,
    ) -> data.CheckoutReport:
        """Put added data and the lock's outputs back as this commit records them,
        running nothing (see :func:`gitpipe.workspace.data.checkout`)."""
        return _data().checkout(self, paths, pull=pull, force=force, remote=remote)

    # -- why ------------------------------------------------------------------

    def why(self, name: str) -> Explanation:
        """What `repro` would do with a step and why: its key, component by component,
        against the lock and the nearest stored result."""
        return _inspection().why(self, name)

    # -- approvals ------------------------------------------------------------

    def user(self) -> str:
        """Who is approving: ``GITPIPE_USER``, else Git's ``user.name <user.email>``,
        else the login name."""
        if self._user is None:
            self._user = self.environ.get("GITPIPE_USER", "").strip() or self._git_user()
        return self._user

    def _git_user(self) -> str:
        with self.repository() as repo:
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
        returns each step approved with its key, and who approved."""
        return _inspection().approve(self, name)

    # -- metrics over time and experiments ---------------------------------------

    def metrics_history(self, *, limit: int | None = None) -> MetricsHistory:
        """Each step's metrics per version along HEAD's first-parent history, oldest
        first, the working tree last when it differs (see
        :func:`gitpipe.workspace.experiments.metrics_history`)."""
        from gitpipe.workspace.experiments import metrics_history

        return metrics_history(self, limit=limit)

    def experiments(self) -> tuple[Experiment, ...]:
        """The experiments (`repro -p` runs) lineage recorded, newest first (see
        :func:`gitpipe.workspace.experiments.experiments`)."""
        from gitpipe.workspace.experiments import experiments

        return experiments(self)

    # -- repro ----------------------------------------------------------------

    if TYPE_CHECKING:  # a type checker sees reproduce's own keyword-only signature
        repro = reproduce
    else:

        def repro(self, targets: Iterable[str] = (), **options: Any) -> RunReport:
            """Bring the selected steps up to date, restoring what the store has and
            running the rest: :func:`gitpipe.workspace.reproduce.reproduce`, as a
            method (imported when first called, so that `add` or `status` loads none
            of the runner)."""
            from gitpipe.workspace.reproduce import reproduce

            return reproduce(self, targets, **options)

    # -- helpers --------------------------------------------------------------

    def ensure_state_dir(self) -> None:
        """Make `.gitpipe/`, kept out of Git by its own `.gitignore`."""
        layout.ensure_state_dir(self.state_dir)

    @contextlib.contextmanager
    def repository(self) -> Iterator[Any]:
        """The Git repository around the pipeline (None outside one), opened once."""
        from gitpipe.history.git import Repository

        repo = Repository.find(self.root)
        try:
            yield repo
        finally:
            if repo is not None:
                repo.close()

    def recorder(self, emit: ev.Listener) -> Any:
        """The lineage listener; a damaged or too new database is a notice, not a stop."""
        from gitpipe.run import events as ev
        from gitpipe.run.lineage import LineageError, LineageRecorder

        try:
            return LineageRecorder(self.state_dir / "lineage.db")
        except LineageError as exc:
            emit(ev.Notice(f"{exc}; this run is not recorded in lineage"))
            return None

    @contextlib.contextmanager
    def inputs(self, *, readonly: bool) -> Iterator[Inputs]:
        """What steps read, for one command, through the stat cache."""
        from gitpipe.identity.environment import Environment
        from gitpipe.identity.statcache import Hasher, StatCache
        from gitpipe.run.inputs import Inputs

        cache = StatCache(self.state_dir / "stat.db", readonly=readonly)
        hasher = Hasher(self.root, cache)
        try:
            yield Inputs(
                self.root,
                self.pipeline,
                hasher,
                fingerprints=self.fingerprints,
                environment=Environment(self.root, self.state_dir / "environment.json"),
            )
            if not readonly:  # what a step just wrote, read again past the racy window
                hasher.settle()
        finally:
            cache.close()
