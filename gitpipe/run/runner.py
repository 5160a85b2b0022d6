"""Running steps: each command in a shell of its own process group, the steps of a run
scheduled as soon as their own parents finish, and executed through joblib.

    ready steps ──decide (main thread)──> up to date / cached / frozen   (no worker)
         │
         └──> must run ──slots free?──> executor.submit ──> joblib backend
                                                             (threading, loky, dask)
         finished <──publish (main thread)── outcome <───────────┘

There are no waves: the scheduler waits for *any* running step to finish, publishes
it, and starts whatever that made ready.  At one job on threads (the default) there
is nothing to wait for but the one step, so the scheduler runs it itself
(:attr:`Executor.inline`): no hand-off to a pool's thread and back for each step.
Deciding and publishing happen in the main process, so the store, the lock and
lineage have one writer.  The runner never prints: it calls ``emit`` with events.

A step's commands die with the process that started them, however it ends (SIGKILL
included): each process group is told to a watchdog (gitpipe/run/watchdog.py), a small
process of its own session that stops what is left of them when its pipe from this
process closes.  A loky worker ends when the scheduler, its parent, is gone
(:func:`_follow`).
"""

from __future__ import annotations

import contextlib
import heapq
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gitpipe.core import interrupts
from gitpipe.core.errors import StoreError, UsageError, describe
from gitpipe.run import events as ev
from gitpipe.run import spawn
from gitpipe.run.cluster import check_workers as check_workers
from gitpipe.run.cluster import connect_dask as connect_dask
from gitpipe.run.spawn import plain_words as plain_words
from gitpipe.run.watchdog import WATCHDOG

if TYPE_CHECKING:  # imported where used: a run that runs nothing needs neither
    import concurrent.futures as cf

BACKENDS = ("threading", "loky", "dask")


@dataclass(frozen=True, slots=True)
class Invocation:
    """Everything needed to run one step's commands; picklable for worker processes."""

    step: str
    commands: tuple[str, ...]
    cwd: str
    env: Mapping[str, str]
    log: str
    timeout: float | None = None
    #: the process that schedules the step: a command started in it is found through
    #: :data:`_GROUPS`, one started in a worker process through the pid file
    scheduler: int = 0
    #: a dask step that may run on a worker without the workspace: what that worker
    #: needs (a :class:`gitpipe.run.shipping.Shipment`), and how often a step whose
    #: worker died is tried again
    shipment: Any = None
    retries: int = 1

    @property
    def pidfile(self) -> str:
        return self.log[: -len(".log")] + ".pid" if self.log.endswith(".log") else self.log + ".pid"


@dataclass(frozen=True, slots=True)
class Outcome:
    exit_code: int
    duration: float
    message: str = ""  # why it failed, in one sentence; empty on success
    #: the system refused gitpipe a write (the step's log: no space, read-only), so the
    #: command could not run; not the command's failure
    refused: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


#: seconds a stopped command's process group has to end after SIGTERM, before SIGKILL
#: (the watchdog gives the same)
GRACE = WATCHDOG.grace


class _Groups:
    """The process groups of the commands running in this process, by log path.

    Worker threads add and remove them while the main thread reads them to stop a
    run, so every access holds the lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_log: dict[str, int] = {}

    def add(self, log: str, pgid: int) -> None:
        with self._lock:
            self._by_log[log] = pgid

    def remove(self, log: str) -> None:
        with self._lock:
            self._by_log.pop(log, None)

    def get(self, log: str) -> int | None:
        with self._lock:
            return self._by_log.get(log)

    def _forked(self) -> None:  # a forked child has no commands of its own yet
        self._lock = threading.Lock()
        self._by_log = {}


_GROUPS = _Groups()
os.register_at_fork(after_in_child=_GROUPS._forked)

#: how often a loky worker checks that the scheduler that started it still runs
POLL = 0.25


def _follow(scheduler: int) -> None:
    """In a loky worker: end this process when ``scheduler``, its parent, is gone.

    loky's workers wait for work from a pipe the scheduler holds, but a worker
    running a step does not read it, and an idle one lives on when the scheduler is
    killed; so a thread watches for the worker being handed to another parent.  Its
    exit closes its watchdog's pipe, which stops the step it was running."""

    def watch() -> None:
        while os.getppid() == scheduler:
            time.sleep(POLL)
        os._exit(1)

    threading.Thread(target=watch, name="gitpipe-follow", daemon=True).start()


def execute(
    invocation: Invocation, waiting: Callable[[], object] | None = None, tick: float = 0.1
) -> Outcome:
    """Run the commands in order, stopping at the first failure.

    Each command's process group id is written to the invocation's pid file (with
    the host name) so that the main process can stop it on Ctrl-C, whichever worker
    runs it, and told to this process's watchdog, which stops it if this process
    dies.  ``waiting`` (a step run in the scheduler's own thread) is called every
    ``tick`` seconds while a command runs.
    """
    start = time.monotonic()
    env = {
        **spawn.inherited(),
        **{os.fsencode(k): os.fsencode(v) for k, v in invocation.env.items()},
    }
    deadline = None if invocation.timeout is None else start + invocation.timeout
    local = invocation.scheduler == os.getpid()
    try:
        with spawn.open_log(invocation.log) as log:
            for index, command in enumerate(invocation.commands):
                log.write(f"$ {command}\n".encode())
                log.flush()
                process = None
                try:  # in the scheduler's thread (inline), a Ctrl-C waits until the
                    with interrupts.held():  # command is known, to be stopped with it
                        process = spawn.start(command, invocation.cwd, env, log)
                        WATCHDOG.watch(process.pid)
                except OSError as exc:  # e.g. the working folder does not exist
                    log.write(f"cannot start: {exc}\n".encode())
                    return Outcome(
                        127,
                        time.monotonic() - start,
                        f"cannot start {which_of(index, invocation)}: "
                        f"{exc.strerror} ({invocation.cwd})",
                    )
                except KeyboardInterrupt:
                    if process is not None:
                        stop_group(process.pid, reap=process.poll)
                        process.wait()
                        WATCHDOG.forget(process.pid)
                    raise
                try:
                    if local:
                        _GROUPS.add(invocation.log, process.pid)
                    else:
                        Path(invocation.pidfile).write_text(f"{_host()} {process.pid}\n")
                    if waiting is not None:
                        code = spawn.wait_ticking(process, deadline, waiting, tick)
                    else:
                        left = None if deadline is None else max(0.0, deadline - time.monotonic())
                        code = process.wait(timeout=left)
                except subprocess.TimeoutExpired:
                    stop_group(process.pid, reap=process.poll)
                    process.wait()
                    return Outcome(
                        124, time.monotonic() - start, f"timed out after {invocation.timeout:g} s"
                    )
                except BaseException:  # Ctrl-C, SIGTERM: stop the whole group, then go on up
                    stop_group(process.pid, reap=process.poll)
                    process.wait()
                    raise
                finally:
                    WATCHDOG.forget(process.pid)
                if code != 0:
                    shown = f"signal {-code}" if code < 0 else f"code {code}"
                    return Outcome(
                        code if code > 0 else 128 - code,
                        time.monotonic() - start,
                        f"{which_of(index, invocation)} exited with {shown} "
                        f"(log: {invocation.log})",
                    )
    finally:
        if local:
            _GROUPS.remove(invocation.log)
        else:
            with contextlib.suppress(OSError):
                os.unlink(invocation.pidfile)
    return Outcome(0, time.monotonic() - start)


def which_of(index: int, invocation: Invocation) -> str:
    count = len(invocation.commands)
    return f"command {index + 1} of {count}" if count > 1 else "the command"


def stop_group(
    pgid: int, *, reap: Callable[[], object] = lambda: None, grace: float = GRACE
) -> None:
    """Terminate a process group, and kill what is left of it after ``grace`` (at
    once after a second Ctrl-C: :func:`gitpipe.core.interrupts.hurried`).

    The wait ends as soon as no process of the group runs.  A leader that exited
    stays in its group as a zombie until its parent reaps it, so where this process
    started the leader, ``reap`` must reap it (``Popen.poll``): otherwise a command
    that ended at once would be waited for the whole grace.
    """
    if not _signal_group(pgid, signal.SIGTERM):
        reap()
        return
    _wait_for_groups({pgid}, time.monotonic() + grace, reap=reap)
    if group_alive(pgid):
        _signal_group(pgid, signal.SIGKILL)


def group_alive(pgid: int) -> bool:
    """Whether a process of the group still runs.

    Zombies do not count: an orphaned one waits for the process that adopted it to
    reap it, which init in a container may do late (a second or more).
    """
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        entries = os.listdir("/proc")
    except OSError:  # no /proc: believe killpg
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces, so split after ")"
        state, _ppid, group = stat.rsplit(b")", 1)[1].split()[:3]
        if int(group) == pgid and state != b"Z":
            return True
    return False


def _wait_for_groups(
    groups: set[int], deadline: float, *, reap: Callable[[], object] = lambda: None
) -> None:
    """Wait until none of the process groups runs, or until ``deadline``."""
    pause = 0.005
    while True:
        reap()
        if not any(group_alive(pgid) for pgid in groups):
            return
        now = time.monotonic()
        if now >= deadline or interrupts.hurried():  # a second Ctrl-C: no more grace
            return
        time.sleep(min(pause, deadline - now))
        pause = min(pause * 2, 0.1)


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when there is no such group of ours."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def group_of(invocation: Invocation) -> int | None:
    """The process group of the command an invocation runs now, if on this host."""
    group = _GROUPS.get(invocation.log)
    if group is not None:
        return group
    try:
        host, pid = Path(invocation.pidfile).read_text().split()
        return int(pid) if host == _host() else None
    except (OSError, ValueError):
        return None


def _host() -> str:
    import socket

    return socket.gethostname()


def stop_all(running: Mapping[cf.Future[Outcome], Invocation], *, grace: float = GRACE) -> None:
    """Terminate every running command, then kill what is left after ``grace`` (at
    once after a second Ctrl-C: :func:`gitpipe.core.interrupts.hurried`).

    A step ends when its command's leader does (the worker that waits for it reaps
    it); what it started may live on in its group, ignoring SIGTERM, so the groups
    are watched until they are empty too.
    """
    import concurrent.futures as cf

    deadline = time.monotonic() + grace
    pending = dict(running)
    groups: set[int] = set()
    while pending and time.monotonic() < deadline and not interrupts.hurried():
        for invocation in pending.values():
            group = group_of(invocation)
            if group is not None:
                groups.add(group)
                _signal_group(group, signal.SIGTERM)
        done, _ = cf.wait(pending, timeout=0.2)
        for future in done:
            pending.pop(future)
    _wait_for_groups(groups, deadline)
    groups.update(g for g in map(group_of, pending.values()) if g is not None)
    for group in groups:
        if group_alive(group):
            _signal_group(group, signal.SIGKILL)
    deadline = time.monotonic() + grace
    while pending and time.monotonic() < deadline and not interrupts.hurried():
        done, _ = cf.wait(pending, timeout=0.2)  # killed: their workers see it end
        for future in done:
            pending.pop(future)


# -- executors -------------------------------------------------------------------


def _in_joblib(invocation: Invocation, config: dict[str, Any]) -> Outcome:
    """Run one invocation as a one-task joblib call under the given backend config
    (dask: the cluster's client, and the step's resources)."""
    import joblib

    with joblib.parallel_config(**config):
        (outcome,) = joblib.Parallel()([joblib.delayed(execute)(invocation)])
    return outcome


class Executor:
    """Runs invocations through a joblib backend.

    joblib's ``Parallel`` runs a fixed batch and returns when all of it is done;
    a scheduler without waves needs to start one step at a time.  So:

    - ``threading``: each step runs in a thread of a pool (the work is a subprocess,
      a thread is all it needs);
    - ``loky``: each step is submitted to a loky process pool of this executor's own
      (joblib's vendored loky), straight from the scheduler's thread.  Not one-task
      ``Parallel`` calls from many threads on joblib's process-wide reusable
      executor: there, one call's failure shuts down the workers every other call
      uses, and concurrent calls are a pattern upstream calls unsafe (joblib#1743,
      loky#458);
    - ``dask``: each step gets a coordinating thread, which makes a one-task
      ``Parallel`` call on the cluster (where ``resources`` are honoured).

    The futures of steps not finished yet are kept in :attr:`active`, registered in
    :meth:`submit` itself so that a Ctrl-C between submitting and bookkeeping cannot
    lose one; the pool's threads remove them as they finish, so every access holds
    the lock and :meth:`stop` works on a snapshot.
    """

    def __init__(
        self, backend: str, jobs: int, *, client: Any = None, direct: bool = False
    ) -> None:
        if backend not in BACKENDS:
            raise UsageError(f"unknown backend {backend!r} (choose one of {', '.join(BACKENDS)})")
        self.backend = backend
        self.jobs = jobs
        self.client = client
        #: dask tasks submitted straight to the client (steps that may be shipped
        #: through the remote: gitpipe/run/shipping.py), not through joblib
        self.direct = direct and client is not None
        self._tasks: dict[str, Any] = {}  # a step's log -> its dask future (direct)
        #: how steps go through the remote store (a gitpipe.run.shipping.Shipping)
        self.shipping: Any = None
        self._pool: Any = None  # a thread or loky process pool, started with the first step
        self._closed = False
        self._lock = threading.Lock()
        self.active: dict[cf.Future[Outcome], Invocation] = {}

    @property
    def inline(self) -> bool:
        """Whether a step runs in the scheduler's own thread: one step at a time on
        threads, where a pool would only hand each step to a thread and back."""
        return self.backend == "threading" and self.jobs == 1 and not self.direct

    def _dask_config(self, resources: Mapping[str, float]) -> dict[str, Any]:
        extra = {"resources": dict(resources)} if resources else {}
        return {"backend": "dask", "client": self.client, **extra}

    def submit(self, invocation: Invocation, resources: Mapping[str, float]) -> cf.Future[Outcome]:
        if self._closed:
            raise RuntimeError("cannot submit a step to a closed executor")
        if self._pool is None:
            self._pool = self._start_pool()
        # a Ctrl-C between the pool taking the step and its future being noted here
        # would lose the step (its command never stopped): it waits until then
        with interrupts.held():
            future = self._hand_over(invocation, resources)
            with self._lock:
                self.active[future] = invocation
        future.add_done_callback(self._forget)  # at once, here, if it is done already
        return future

    def _hand_over(self, invocation: Invocation, resources: Mapping[str, float]) -> Any:
        """The step's future, from the pool of this executor's backend."""
        if self.backend == "dask" and self.direct:
            return self._pool.submit(self._on_cluster, invocation, resources)
        if self.backend == "dask":
            return self._pool.submit(_in_joblib, invocation, self._dask_config(resources))
        if self.backend == "loky":
            from concurrent.futures.process import BrokenProcessPool

            try:
                return self._pool.submit(execute, invocation)
            except BrokenProcessPool:  # a worker died (the OOM killer): the steps after
                self._pool.shutdown(wait=False, kill_workers=True)  # its own get a new pool
                self._pool = self._start_pool()
                return self._pool.submit(execute, invocation)
        return self._pool.submit(execute, invocation)

    def _on_cluster(self, invocation: Invocation, resources: Mapping[str, float]) -> Any:
        """In a coordinating thread: the step as a dask task of its own (see
        :func:`gitpipe.run.shipping.on_cluster`)."""
        from gitpipe.run.shipping import on_cluster

        return on_cluster(self, invocation, resources)

    def _start_pool(self) -> Any:
        if self.backend == "loky":
            from joblib.externals.loky import ProcessPoolExecutor

            return ProcessPoolExecutor(
                max_workers=self.jobs, initializer=_follow, initargs=(os.getpid(),)
            )
        import concurrent.futures as cf

        return cf.ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="gitpipe")

    def _forget(self, future: cf.Future[Outcome]) -> None:
        with self._lock:
            self.active.pop(future, None)

    def running(self) -> dict[cf.Future[Outcome], Invocation]:
        """A snapshot of the steps submitted and not finished yet."""
        with self._lock:
            return dict(self.active)

    def stop(self) -> None:
        """Stop every running step's command (Ctrl-C), then stop taking work."""
        # a step not started yet is cancelled (which runs `_forget` here); the others run
        running = {f: step for f, step in self.running().items() if not f.cancel()}
        if self.direct:  # the commands on the workers, then their tasks
            from gitpipe.run.shipping import cancel_on_cluster

            cancel_on_cluster(self, list(running.values()))
        stop_all(running)
        self.close(wait=False)

    def close(self, *, wait: bool = True) -> None:
        """Stop taking work; the first call decides whether to wait for running steps
        (without waiting, loky's workers are killed: :meth:`stop` has stopped their
        commands)."""
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            if self.backend == "loky":
                self._pool.shutdown(wait=wait, kill_workers=not wait)
            else:
                self._pool.shutdown(wait=wait, cancel_futures=True)
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()


# -- scheduling ------------------------------------------------------------------


@dataclass(slots=True)
class Pending:
    """A step that must run: its invocation, the slots it takes, and what publish needs."""

    invocation: Invocation
    cpus: int = 1
    resources: Mapping[str, float] = field(default_factory=dict)
    context: Any = None
    key: str = ""  # the step's key, for what the run reports of it


class Work(Protocol):
    """What the scheduler asks of the workspace, all in the main thread."""

    def decide(self, name: str, upstream_would_run: list[str]) -> ev.StepFinished | Pending: ...

    def begin(self, name: str, pending: Pending) -> ev.StepFinished | None: ...

    def publish(self, name: str, pending: Pending, outcome: Outcome) -> ev.StepFinished: ...


@interrupts.stopping()
def schedule(
    order: Iterable[str],
    parents: Mapping[str, Iterable[str]],
    work: Work,
    *,
    executor: Executor | None,
    jobs: int,
    keep_going: bool,
    emit: Callable[[ev.Event], None],
    tick: float = 0.1,
) -> dict[str, ev.StepFinished]:
    """Run the given steps (in topological ``order``) as their parents finish.

    Without ``keep_going`` the first failure stops new steps from starting (running
    ones finish); with it, only what depends on the failed step is held back.
    A step that must run with no ``executor`` (a dry run) is a bug.

    When Ctrl-C or SIGTERM stops the run, the executor stops the running steps, each
    of them finishes as ``interrupted``, and the interrupt goes on up.  A second one
    meanwhile is not raised (:func:`gitpipe.core.interrupts.stopping`): it only kills
    what still runs without waiting out the grace.
    """
    order = list(order)
    position = {name: i for i, name in enumerate(order)}
    waiting = {name: {p for p in parents[name] if p in position} for name in order}
    children: dict[str, list[str]] = {name: [] for name in order}
    for name, ups in waiting.items():
        for up in ups:
            children[up].append(name)
    ready = [position[name] for name, ups in waiting.items() if not ups]
    heapq.heapify(ready)
    queued: list[tuple[int, str, Pending]] = []  # must run, waiting for free slots
    running: dict[cf.Future[Outcome], tuple[str, Pending, int]] = {}
    finished: dict[str, ev.StepFinished] = {}
    failed_by: dict[str, str] = {}  # step -> the failed step that holds it back
    #: step -> why what depends on it is skipped (its condition was false, or it waits
    #: for approval): not a failure, so the run goes on around it
    blocked: dict[str, str] = {}
    would_run: set[str] = set()
    stopped_by = ""
    free = jobs
    #: steps started and not finished yet, with their pending work and start time
    started: dict[str, tuple[Pending, float]] = {}

    def ticked() -> None:
        emit(ev.Tick(time.time()))

    def finish(name: str, event: ev.StepFinished, held_by: str = "") -> None:
        nonlocal stopped_by
        started.pop(name, None)
        finished[name] = event
        emit(event)
        if event.state == ev.FAILED:
            failed_by[name] = name
            if not keep_going and not stopped_by:
                stopped_by = name
        elif event.state == ev.SKIPPED and held_by:
            failed_by[name] = held_by
        elif event.state == ev.SKIPPED and not blocked.get(name):
            blocked[name] = f"upstream {name!r} was skipped"
        elif event.state == ev.WAITING:
            blocked[name] = f"upstream {name!r} waits for approval"
        elif event.state == ev.WOULD_RUN:  # a restore brings back what the lock says
            would_run.add(name)
        for child in children[name]:
            waiting[child].discard(name)
            if not waiting[child]:
                heapq.heappush(ready, position[child])

    try:
        while ready or queued or running:
            while ready:
                name = order[heapq.heappop(ready)]
                held = sorted({failed_by[p] for p in parents[name] if p in failed_by})
                if held:
                    finish(name, ev.StepFinished(name, ev.SKIPPED, message=_held(held)), held[0])
                    continue
                if stopped_by:
                    message = f"not started: the run stopped after {stopped_by!r} failed"
                    finish(name, ev.StepFinished(name, ev.SKIPPED, message=message))
                    continue
                reasons = [blocked[p] for p in parents[name] if p in blocked]
                if reasons:
                    blocked[name] = reasons[0]
                    finish(name, ev.StepFinished(name, ev.SKIPPED, message=reasons[0]))
                    continue
                decision = work.decide(name, [p for p in parents[name] if p in would_run])
                if isinstance(decision, ev.StepFinished):
                    finish(name, decision)
                else:
                    heapq.heappush(queued, (position[name], name, decision))
            while queued and not stopped_by:
                _, name, pending = queued[0]
                cost = max(1, min(pending.cpus, jobs))
                if cost > free:
                    break
                heapq.heappop(queued)
                if executor is None:
                    raise RuntimeError(f"step {name!r} must run, but there is no executor")
                refused = work.begin(name, pending)
                if refused is not None:  # e.g. a `before_step` hook failed
                    finish(name, refused)
                    continue
                free -= cost
                started[name] = (pending, time.time())
                emit(ev.StepStarted(name, log=pending.invocation.log, started=started[name][1]))
                if executor.inline:
                    outcome = _outcome(executor, pending, execute, pending.invocation, ticked, tick)
                    free += cost
                    finish(name, work.publish(name, pending, outcome))
                    break  # what it made ready is decided first: steps start in file order
                running[executor.submit(pending.invocation, pending.resources)] = (
                    name,
                    pending,
                    cost,
                )
            if stopped_by and queued and not running:
                for _, name, _pending in sorted(queued):
                    message = f"not started: the run stopped after {stopped_by!r} failed"
                    finish(name, ev.StepFinished(name, ev.SKIPPED, message=message))
                queued.clear()
                continue
            if not running:
                continue
            import concurrent.futures as cf

            done, _ = cf.wait(running, timeout=tick, return_when=cf.FIRST_COMPLETED)
            if not done:
                emit(ev.Tick(time.time()))
            for future in sorted(done, key=lambda f: position[running[f][0]]):
                name, pending, cost = running.pop(future)
                free += cost
                outcome = _outcome(executor, pending, future.result)
                finish(name, work.publish(name, pending, outcome))
    except BaseException:
        if executor is not None:
            executor.stop()
        for name in sorted(started, key=position.__getitem__):
            pending, began = started[name]
            finish(name, _interrupted(name, pending, began))
        raise
    return finished


def _outcome(
    executor: Executor | None, pending: Pending, call: Callable[..., Outcome], *args: Any
) -> Outcome:
    """What ``call(*args)`` (a step run here, or its future's result) says of the
    step; an exception that is not the command's becomes a failed outcome."""
    try:
        return call(*args)
    except OSError as exc:  # its log could not be written: the system refused
        cause = describe(exc) if exc.filename else exc.strerror or str(exc)
        where = "" if exc.filename else f" (log: {pending.invocation.log})"
        return Outcome(1, 0.0, f"could not be run{where}: {cause}", refused=True)
    except StoreError:  # the remote a shipped step goes through: ends the run
        raise
    except Exception as exc:  # the backend failed, not the command
        return Outcome(1, 0.0, f"the {_backend(executor)} backend failed: {exc}")


def _interrupted(name: str, pending: Pending, began: float) -> ev.StepFinished:
    """A step that was running when Ctrl-C or SIGTERM stopped the run."""
    now = time.time()
    return ev.StepFinished(
        name,
        ev.INTERRUPTED,
        message=f"interrupted after {now - began:.2f} s; nothing it made was published",
        key=pending.key,
        duration=now - began,
        log=pending.invocation.log,
        started=began,
        ended=now,
    )


def _held(failed: list[str]) -> str:
    names = ", ".join(repr(name) for name in failed)
    return f"held back by failed step {names}"


def _backend(executor: Executor | None) -> str:
    return executor.backend if executor is not None else "no"
