"""One `gitpipe repro`, from its options to the lock it writes.

    select ─> remote deps' fingerprints (none: stop, exit 5) ─> checks (guard)
          ─> --pull: fetch what the lock names
        ├─ -n ───────> plan (planner) ─> told as events; nothing written
        ├─ --frozen ─> plan ─> refused? record it, exit 3, nothing touched
        └─ run ──────> one repro per workspace (flock) ─> schedule (runner) over a
                       Session (session) ─> gitpipe.lock ─> --push

The listeners (console, summaries, lineage) hear every path, failures included.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitpipe.core import interrupts
from gitpipe.core.console import first_of
from gitpipe.core.errors import (
    ApprovalNeeded,
    GitpipeError,
    Interrupted,
    PathError,
    RemoteDepError,
    StaleError,
    StepFailed,
    StorageFailed,
    StoreError,
    UsageError,
    WorkspaceBusy,
    describe,
)
from gitpipe.core.snapshot import Snapshot
from gitpipe.core.snapshot import read as read_snapshot
from gitpipe.identity.action import fingerprint
from gitpipe.pipeline import spec
from gitpipe.pipeline.values import jsonable
from gitpipe.run import events as ev
from gitpipe.run import guard, overlay
from gitpipe.run.planner import Decision, refusal
from gitpipe.run.runner import Executor, check_workers, connect_dask, schedule
from gitpipe.run.session import HookCall, Session, _RunOptions, predicted
from gitpipe.run.shipping import TRANSFERS, Shipping
from gitpipe.store import lockfile
from gitpipe.store.lockfile import Lock, LockEntry
from gitpipe.store.objects import Store
from gitpipe.workspace.wslock import workspace_lock

if TYPE_CHECKING:
    from gitpipe.run.inputs import Inputs
    from gitpipe.workspace import Project


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

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: the run, its status, counts by state and each step's end."""
        return jsonable(
            {
                "run": self.run_id,
                "status": self.status,
                "duration": round(self.duration, 3),
                "counts": self.counts,
                "steps": [
                    {
                        "step": s.step,
                        "state": s.state,
                        "source": s.source,
                        "reasons": list(s.reasons),
                        "message": s.message,
                        "key": s.key,
                        "duration": round(s.duration, 3),
                        "exit_code": s.exit_code,
                        "log": s.log,
                        "metrics": {path: dict(v) for path, v in s.metrics.items()},
                    }
                    for s in self.steps
                ],
            }
        )


def reproduce(
    project: Project,
    targets: Iterable[str] = (),
    *,
    force: bool = False,
    dry_run: bool = False,
    single: bool = False,
    downstream: bool = False,
    jobs: int | None = None,
    backend: str | None = None,
    scheduler: str | None = None,
    transfer: str | None = None,
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

    ``frozen`` restores only what gitpipe.lock names and runs nothing: when any
    step would need more, :class:`StaleError` is raised before anything in the
    workspace changes, naming each step and why, and gitpipe.lock is never
    written.  ``pull`` fetches what gitpipe.lock names from the remote before
    anything is decided, and a stale step's results when it is decided.

    ``transfer`` (dask only) says how a worker gets a step's files: ``auto`` (by the
    probe: a worker that sees the workspace runs in place, one that does not goes
    through the remote store), ``shared`` or ``remote`` (docs/parallel.md).
    """
    targets = list(targets)
    if (single or downstream) and not targets:
        raise UsageError("--single and --downstream need the names of steps")
    if single and downstream:
        raise UsageError("--single and --downstream cannot be used together")
    if lock and not project.overrides:
        raise UsageError("--lock goes with -p: a run without overrides always writes the lock")
    if jobs is not None and jobs < 0:
        raise UsageError("--jobs takes 0 (one per CPU) or a positive number")
    names = project.select(targets, single=single, downstream=downstream)
    approved: set[str] = set()
    for name in sorted(set(approve)):  # each must be a step (or group) that asks for it
        chosen = project.select([name], single=True)
        asking = [n for n in chosen if project.pipeline.steps[n].approval]
        if not asking:
            raise UsageError(
                f"--approve {name}: step {name!r} does not ask for approval (no `approval = true`)"
            )
        approved.update(asking)
    _fingerprint_urls(project, names)
    calls = {}
    for event, given in (hooks or {}).items():
        if event not in spec.HOOK_EVENTS:
            raise UsageError(f"unknown hook {event!r} (hooks: {', '.join(spec.HOOK_EVENTS)})")
        calls[event] = tuple(given) if isinstance(given, (list, tuple)) else (given,)
    put_back: list[str] = []
    if not dry_run:  # added data the steps read, missing here (a fresh clone): put back
        from gitpipe.workspace.data import restore_missing

        put_back = restore_missing(project, names, pull=pull, remote=remote)
    git_check = guard.git_check_digest(project, names)
    checked = git_check is not None and git_check == guard.passed_git_check(
        project.state_dir
    )  # as in `status`
    with project.repository() as repo:
        guard.check_before_run(project, names, repo, git=not checked)
        current = project.read_lock()  # a damaged lock stops us before anything is written
        broadcast = ev.Broadcast(list(listeners))
        if put_back:
            broadcast(ev.Notice(f"put back added data from the store: {', '.join(put_back)}"))
        far = None
        if pull or push:
            from gitpipe.store import remote as remotes

            far = remotes.for_project(project, remote, cwd=Path.cwd())
        if pull and far is not None:  # what the lock names, before deciding anything
            _register(project, broadcast)
            _pull_lock(project, far, current, names, broadcast)
        run = _RunOptions(
            force=force,
            keep_going=keep_going,
            argv=tuple(argv),
            repo=repo,
            remote=far if pull else None,
            approve=frozenset(approved),
            write_lock=(bool(lock) if project.overrides else lock is not False) and not frozen,
            hooks=calls,
            frozen=frozen,
        )
        if dry_run:
            return _predict(project, names, broadcast, run)
        if frozen:  # restoring what the lock names is fine; anything else stops here
            _check_frozen(project, names, broadcast, run)
        backend = backend or project.environ.get("GITPIPE_BACKEND") or "threading"
        address = scheduler or project.environ.get("GITPIPE_DASK_SCHEDULER")
        transfer = transfer or project.environ.get("GITPIPE_TRANSFER") or "auto"
        if transfer not in TRANSFERS:
            raise UsageError(
                f"unknown transfer {transfer!r} (choose one of {', '.join(TRANSFERS)})"
            )
        if transfer != "auto" and backend != "dask":
            raise UsageError("--transfer goes with --backend dask")
        if backend == "dask" and not address:
            raise UsageError(
                "the dask backend needs a scheduler: pass --scheduler tcp://HOST:PORT "
                "or set GITPIPE_DASK_SCHEDULER"
            )
        through = _shipping_remote(project, far, remote, transfer) if backend == "dask" else None
        client = connect_dask(address) if backend == "dask" and names and address else None
        try:
            project.ensure_state_dir()
        except BaseException:
            if client is not None:
                client.close()
            raise
        if not checked:  # kept once the state folder is there: a new workspace's too
            guard.remember_check(project.state_dir, git_check)
        # the pipeline passed every check: its parse is kept now, and its tables let go
        # of before the run (not held to its end, nor lost with a step that fails); the
        # lock's is kept at the end, with the lock the run writes
        project.keep_caches(lock=False)
        _register(project, broadcast)
        with workspace_lock(project.state_dir / "repro.lock", wait=wait, emit=broadcast):
            _clear_scratch(project.state_dir / "tmp")
            overlay.put_back(project.root, project.state_dir)  # what a killed run left
            shipping = None
            if client is not None:
                seen = check_workers(client, project.root, blind_ok=through is not None)
                if through is not None:
                    shipping = Shipping(
                        through,
                        frozenset(worker for worker, ok in seen.items() if ok),
                        forced=transfer == "remote",
                        blind=not all(seen.values()),
                    )
                if not jobs:
                    jobs = max(1, sum(client.ncores().values()))
            if jobs is None:
                jobs = 1
            jobs = jobs if jobs > 0 else (os.cpu_count() or 1)
            executor = Executor(backend, jobs, client=client, direct=shipping is not None)
            executor.shipping = shipping
            # a second Ctrl-C while the run stops does not abandon the stop, the lock,
            # lineage or the params files put back: it only cuts the grace short
            with interrupts.stopping():
                try:
                    # with -p, the params files show the overrides while the run lasts
                    with overlay.shown(
                        project.root,
                        project.state_dir,
                        project.pipeline.params_files,
                        {} if frozen else project.pipeline.overrides,  # --frozen runs nothing
                    ):
                        report = _repro_locked(project, names, broadcast, run, executor=executor)
                finally:
                    executor.close()
            if push and far is not None:
                from gitpipe.store import remote as remotes

                selection = remotes.Selection.from_locks(project.read_lock())
                pushed = remotes.push(Store(project.store_dir), far, selection)
                broadcast(
                    ev.Notice(f"pushed {pushed.objects} object(s) and {pushed.results} result(s)")
                )
            project.keep_caches()
            return report


def _shipping_remote(project: Project, far: Any, url: str | None, transfer: str) -> Any:
    """The remote steps on blind dask workers go through: the one ``--remote``, the
    environment or the pipeline file names; None with ``--transfer shared``, or when
    none is configured (then a blind worker is an error, unless ``remote`` was asked
    for, which is one at once)."""
    if transfer == "shared":
        return None
    if far is not None:
        return far
    from gitpipe.store import remote as remotes

    try:
        return remotes.for_project(project, url, cwd=Path.cwd())
    except UsageError as exc:
        if transfer == "remote":
            raise UsageError(f"--transfer remote needs a remote store: {exc}") from exc
        return None


def _fingerprint_urls(project: Project, names: Sequence[str]) -> None:
    """Ask the servers of the selected steps' remote deps for their fingerprints, all
    at once, before anything is written: a url without one now stops every kind of
    repro (-n, --frozen, a run) with :class:`RemoteDepError`, since whether its step
    is up to date cannot be told.  Steps with ``frozen = true`` never run: theirs
    are not asked."""
    steps = [project.pipeline.steps[name] for name in names]
    urls = [url.url for step in steps if not step.frozen for url in step.urls]
    failures = project.fingerprints.failures(urls)
    if not failures:
        return
    first, *others = failures
    cause = first.cause
    if others:
        cause += f"; nor can {len(others)} more: {', '.join(other.url for other in others)}"
    raise RemoteDepError(first.url, cause)


def _register(project: Project, emit: ev.Listener) -> None:
    """Note this clone in the store it writes to, so that `gc` in any clone sharing
    the store keeps what this one needs; a store that cannot be written is a notice
    here (restoring from it still works)."""
    try:
        project.register_clone()
    except StoreError as exc:
        emit(ev.Notice(str(exc)))


def _pull_lock(
    project: Project, far: Any, lock: Lock, names: Sequence[str], emit: ev.Listener
) -> None:
    """`repro --pull`: fetch the objects and results gitpipe.lock names for the
    selected steps that the store lacks, so that the plan sees them."""
    from gitpipe.store import remote as remotes

    chosen = Lock(steps={n: e for n, e in lock.steps.items() if n in set(names)})
    selection = remotes.Selection.from_locks(chosen)
    if selection.empty:
        return
    pulled = remotes.pull(Store(project.store_dir), far, selection)
    _tell_rejected([str(r) for r in pulled.rejected], far.url, emit)
    if pulled.skipped:
        from gitpipe.workspace.transfer import skipped_line

        emit(ev.Notice(str(skipped_line(pulled)).removeprefix("gitpipe: ")))
    if pulled.objects or pulled.results:
        emit(
            ev.Notice(
                f"fetched {pulled.objects} object(s) and {pulled.results} result(s) "
                f"that gitpipe.lock names from {far.url}"
            )
        )


def put_back_params(project: Project) -> list[str]:
    """Put back the params files a killed `repro -p` left rewritten, unless a repro
    holds the workspace (it puts them back itself); see :mod:`gitpipe.run.overlay`.
    Returns the files put back."""
    try:
        with workspace_lock(project.state_dir / "repro.lock", wait=False, emit=lambda _: None):
            return overlay.put_back(project.root, project.state_dir)
    except WorkspaceBusy:
        return []


def _tell_rejected(rejected: Sequence[str], url: str, emit: ev.Listener) -> None:
    """Say what `--pull` refused: nothing of it was written, and the steps it would
    have served are planned as if the remote had nothing for them."""
    if not rejected:
        return
    shown = first_of(rejected, 3, sep="; ", more="; and {} more")
    emit(
        ev.Notice(
            f"refused {len(rejected)} item(s) from {url} that failed verification ({shown}); "
            "nothing of them was written, and the steps they would serve run instead"
        )
    )


def _clear_scratch(folder: Path) -> None:
    """Remove what a killed restore left in gitpipe's scratch folder (``.NAME.*.tmp``
    files and folders); only the repro holding the workspace builds there."""
    with contextlib.suppress(OSError):
        for item in os.scandir(folder):
            if item.name.startswith(".") and item.name.endswith(".tmp"):
                with contextlib.suppress(OSError):
                    if item.is_dir(follow_symlinks=False):
                        shutil.rmtree(item.path)
                    else:
                        os.unlink(item.path)


def _new_run() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(3).hex()


def _plan_run(
    project: Project, names: Sequence[str], run: _RunOptions, run_id: str
) -> list[Decision]:
    """The decisions a run would take, made before it takes any."""
    lock = project.read_lock()
    with project.inputs(readonly=True) as inputs:
        planner = project.planner(
            inputs,
            lock,
            force=frozenset(names) if run.force else None,
            remote=run.remote,
            approve=run.approve,
            run_id=run_id,
        )
        return planner.plan(names, project.graph.parents)


def _predict(
    project: Project, names: list[str], broadcast: ev.Broadcast, run: _RunOptions
) -> RunReport:
    """`repro -n`: the plan, told as a run's events; nothing is written."""
    run_id = _new_run()
    report = RunReport(run_id=run_id)
    broadcast.listeners.insert(0, report.listen)
    started = time.time()
    broadcast(_run_started(project, run_id, names, run, dry_run=True, started=started))
    for decision in _plan_run(project, names, run, run_id):
        broadcast(predicted(decision))
    report.duration = time.time() - started
    broadcast(ev.RunFinished(run_id, "ok", report.counts, report.duration, ended=time.time()))
    return report


def _check_frozen(
    project: Project, names: list[str], broadcast: ev.Broadcast, run: _RunOptions
) -> None:
    """`repro --frozen`: raise :class:`StaleError` before anything changes when a
    step would need more than restoring what gitpipe.lock names; the refusal is
    recorded in lineage and told to the listeners (summaries) as a run."""
    run_id = _new_run()
    decisions = _plan_run(project, names, run, run_id)
    refused = [d for d in decisions if d.frozen_refusal]
    if not refused:
        return
    project.ensure_state_dir()
    report = RunReport(run_id=run_id)
    broadcast.listeners.insert(0, report.listen)
    recorder = project.recorder(broadcast)
    if recorder is not None:
        broadcast.listeners.append(recorder)
    started = time.time()
    failures: list[Exception] = []
    try:
        broadcast(_run_started(project, run_id, names, run, dry_run=False, started=started))
        for decision in decisions:
            broadcast(predicted(decision))
        report.status = "stale"
        report.duration = time.time() - started
        finished = ev.RunFinished(
            run_id, "stale", report.counts, report.duration, ended=time.time()
        )
        failures = _tell_every(broadcast, finished)
    finally:
        _close_recorder(recorder, broadcast)
    _tell_failures(broadcast, failures)
    error = StaleError(f"--frozen: {refusal(decisions)}")
    error.report = report  # type: ignore[attr-defined]
    raise error


def _tell_every(broadcast: ev.Broadcast, event: ev.Event) -> list[Exception]:
    """Send the event that ends a run to every listener, even when one of them fails
    (a summary that cannot be written): lineage hears it all the same.  The failures,
    to be told once the run's own outcome is decided."""
    failures = []
    for listener in list(broadcast.listeners):
        try:
            listener(event)
        except Exception as exc:  # any listener's: the run's outcome comes first
            failures.append(exc)
    return failures


def _close_recorder(recorder: Any, broadcast: ev.Broadcast) -> None:
    """Close the lineage recorder; what it could not record is a notice."""
    if recorder is None:
        return
    try:
        recorder.close()
    except Exception as exc:  # sqlite3.Error: lineage is never fatal to a run
        recorder.error = recorder.error or f"lineage was not recorded ({exc})"
    if recorder.error:
        _tell_every(broadcast, ev.Notice(recorder.error))


def _failure_text(exc: Exception) -> str:
    return describe(exc) if isinstance(exc, OSError) else str(exc) or type(exc).__name__


def _tell_failures(broadcast: ev.Broadcast, failures: Sequence[Exception]) -> None:
    """Listeners' failures at the end of a run whose own error wins: one notice each."""
    for exc in failures:
        _tell_every(broadcast, ev.Notice(f"after the run: {_failure_text(exc)}"))


def _raise_failure(broadcast: ev.Broadcast, failures: Sequence[Exception]) -> None:
    """A run that went well, but a listener failed at its end (a summary that cannot
    be written): the first failure is the command's error, the others notices."""
    if not failures:
        return
    first, *rest = failures
    _tell_failures(broadcast, rest)
    if isinstance(first, (GitpipeError, OSError)):
        raise PathError(f"the run went well, but after it: {_failure_text(first)}") from first
    raise first  # a listener's own bug


def _tell_unresolved(
    pipeline: spec.Pipeline, names: Sequence[str], inputs: Any, emit: ev.Listener
) -> None:
    """Before any step runs: a notice for each import that a step's command cannot
    make, since ``[pipeline] pythonpath`` leaves out the folder holding it (not
    code, see docs/code.md).  Only a written pythonpath can leave one out."""
    if pipeline.pythonpath is None:
        return
    for name in names:
        step = pipeline.steps[name]
        if step.frozen:
            continue
        for what in inputs.unresolved_of(step):
            emit(ev.Notice(f"step {name!r}: import outside pythonpath: {what}"))


def _run_started(
    project: Project,
    run_id: str,
    names: Sequence[str],
    run: _RunOptions,
    *,
    dry_run: bool,
    started: float,
    executor: Executor | None = None,
) -> ev.RunStarted:
    checkout = run.repo.checkout() if run.repo is not None and not dry_run else None
    return ev.RunStarted(
        run_id=run_id,
        steps=tuple(names),
        dry_run=dry_run,
        commit=checkout.commit if checkout else None,
        dirty=checkout.dirty if checkout else None,
        argv=run.argv,
        started=started,
        pipeline=project.pipeline.name,
        jobs=executor.jobs if executor is not None else 1,
        backend=executor.backend if executor is not None else "",
        overrides=dict(project.pipeline.overrides),
    )


def _repro_locked(
    project: Project,
    names: list[str],
    broadcast: ev.Broadcast,
    run: _RunOptions,
    *,
    executor: Executor,
) -> RunReport:
    pipeline = project.pipeline
    lock = project.read_lock()
    run_id = _new_run()
    report = RunReport(run_id=run_id)
    broadcast.listeners.insert(0, report.listen)  # counts steps even if the run stops
    recorder = project.recorder(broadcast)
    if recorder is not None:
        broadcast.listeners.append(recorder)
    started = time.time()
    begun = _run_started(
        project, run_id, names, run, dry_run=False, started=started, executor=executor
    )
    broadcast(begun)
    status = "ok"
    storage_failures: dict[str, str] = {}
    failures: list[Exception] = []
    entries: dict[str, LockEntry] = dict(lock.steps)
    try:
        with project.inputs(readonly=False) as inputs:
            planner = project.planner(
                inputs,
                lock,
                entries=entries,
                force=frozenset(names) if run.force else None,
                remote=run.remote,
                approve=run.approve,
                run_id=run_id,
                record_approvals=True,
            )
            snapshot: Snapshot | None = None
            if not run.force and not pipeline.overrides:
                snapshot = read_snapshot(project.file)
            if snapshot is not None:
                planner.known = {
                    s.step: s for s in snapshot.statuses if s.state in (ev.UP_TO_DATE, ev.FROZEN)
                }
            session = Session(
                project,
                inputs,
                planner,
                run_id=run_id,
                frozen=run.frozen,
                hook_calls=run.hooks,
                emit=broadcast,
                shipping=executor.shipping,
            )
            if len(names) == len(pipeline.steps) and not run.frozen:
                removed = session.prune(entries)
                if removed:
                    broadcast(
                        ev.Notice(
                            f"removed {len(removed)} output(s) of steps no longer in the "
                            f"pipeline (kept in the store): {', '.join(removed)}"
                        )
                    )
            _tell_unresolved(pipeline, names, inputs, broadcast)
            schedule(
                names,
                project.graph.parents,
                session,
                executor=executor,
                jobs=executor.jobs,
                keep_going=run.keep_going,
                emit=broadcast,
            )
            if run.remote is not None:
                _tell_rejected(planner.rejected, run.remote.url, broadcast)
            hook_failures = list(session.hooks.failures)
            storage_failures = dict(session.storage_failures)
            live = {name: entry for name, entry in entries.items() if name in pipeline.steps}
            # nothing ran, nothing was restored, and the snapshot found the lock as
            # this run would write it, on this commit: leave it as it is
            untouched = (
                snapshot is not None
                and snapshot.lock_current
                and begun.commit == snapshot.head
                and entries.keys() == lock.steps.keys()
                and all(entry is lock.steps[name] for name, entry in entries.items())
            )
            if not untouched and run.write_lock and (live or project.lock_path.exists()):
                lockfile.write(
                    project.lock_path,
                    new_lock(project, inputs, live),
                    tmp_dir=project.state_dir / "tmp",
                    previous=lock,
                    cache_dir=project.state_dir / "parsed",
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
        _save_partial_lock(project, run.write_lock, entries, lock)
        raise Interrupted("interrupted; finished steps were kept, run again to go on") from exc
    except BaseException:
        status = "error"
        _save_partial_lock(project, run.write_lock, entries, lock)
        raise
    finally:
        report.status = status
        report.duration = time.time() - started
        finished = ev.RunFinished(run_id, status, report.counts, report.duration, ended=time.time())
        try:  # every listener hears the end, and lineage gets the run's status, whatever fails
            failures = _tell_every(broadcast, finished)
        finally:
            _close_recorder(recorder, broadcast)
        if status in ("error", "interrupted"):  # the error on its way up wins
            _tell_failures(broadcast, failures)
    if status == "ok":
        _raise_failure(broadcast, failures)
    else:
        _tell_failures(broadcast, failures)
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
        refused = [step for step in failed if step in storage_failures]
        if refused:  # the system refused a write, no command failed: exit 5
            message += f" ({refused[0]}: {storage_failures[refused[0]]})"
            error = StorageFailed(message)
        else:
            error = StepFailed(message)
        error.report = report  # type: ignore[attr-defined]
        raise error
    return report


def new_lock(project: Project, inputs: Inputs, steps: Mapping[str, LockEntry]) -> Lock:
    """The lock a repro writes with these entries: the pipeline's name, fingerprint
    and version (the version it has once committed on top of HEAD)."""
    from gitpipe.history.versions import version_for_lock

    pipeline = project.pipeline
    identity = str(fingerprint(pipeline, inputs.code_of_all()))
    return Lock(
        name=pipeline.declared_name,
        fingerprint=identity,
        steps=steps,
        version=version_for_lock(project.root, project.file, identity),
    )


def _save_partial_lock(
    project: Project, write_lock: bool, entries: Mapping[str, LockEntry], lock: Lock
) -> None:
    """Keep what finished before a failure or interrupt in the lock, when the run
    writes one."""
    if not write_lock or dict(entries) == dict(lock.steps):
        return
    with contextlib.suppress(GitpipeError, OSError):
        live = {n: e for n, e in entries.items() if n in project.pipeline.steps}
        lockfile.write(
            project.lock_path,
            Lock(
                name=project.pipeline.declared_name,
                fingerprint=lock.fingerprint,
                steps=live,
                version=lock.version,
            ),
            tmp_dir=project.state_dir / "tmp",
        )
