"""Steps on dask workers that cannot see the workspace: inputs and outputs go through
the remote store (issue 23).

    main process                          worker (no shared file system)
    ────────────                          ──────────────────────────────
    begin:   the step's inputs (deps,
             code, params files) into the
             store, pushed to the remote ──> fetch them (verified) into a scratch
                                             folder, run the commands there, digest
                                             the outputs, push them to the remote
    publish: the outputs pulled back    <── their manifest, the log, where, how long
             (verified), checked against
             the manifest, put in place,
             then published as any step

A worker never writes the workspace; the main process stays the one writer of the
store's results, the lock and lineage.  :func:`run_anywhere` is the function a dask
worker calls: with a :class:`Shipment`, on a worker the probe found blind (or always,
with ``--transfer remote``), it goes through the remote; else it runs in place
(:func:`gitpipe.run.runner.execute`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from gitpipe.core.errors import RemoteError, StoreError
from gitpipe.core.hashing import (
    Digest,
    ManifestEntry,
    digest_bytes,
    digest_file,
    manifest_bytes,
)
from gitpipe.run.runner import Invocation, Outcome, execute
from gitpipe.store.objects import Store
from gitpipe.store.remote.transfer import Selection, pull, push

if TYPE_CHECKING:
    from gitpipe.store.remote.base import Remote

#: how a step's transfer is chosen: by the probe, per worker (``auto``), or forced
TRANSFERS = ("auto", "shared", "remote")


@dataclass(frozen=True, slots=True)
class Item:
    """One input or output of a shipped step: a path relative to the pipeline's
    folder, its digest (a folder's: its manifest's), and what it is."""

    path: str
    digest: str = ""
    is_dir: bool = False
    executable: bool = False


@dataclass(frozen=True, slots=True)
class Shipment:
    """What a worker needs to run a step away from the workspace; picklable."""

    remote: str  # the remote's address as :func:`address_of` gives it
    inputs: tuple[Item, ...]
    outs: tuple[Item, ...]  # paths and kinds only
    wdir: str  # the step's folder, relative to the pipeline's
    root: str  # the workspace's path on the main machine (GITPIPE_ROOT is rewritten)
    #: the workers that see the workspace (they run in place); forced remote: none
    sighted: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Shipped:
    """What a worker sends back of a step it ran through the remote."""

    outcome: Outcome
    outs: tuple[Item, ...]
    log: bytes
    where: str  # the worker's address, and its host name
    fetch_seconds: float
    push_seconds: float
    #: a function step's return value and failure (GITPIPE_RETURN, GITPIPE_FAILURE:
    #: the files gitpipe.run.fnstep writes) by the variable that names the file
    results: Mapping[str, bytes] = field(default_factory=dict)


#: the files a function step writes beside its log, named by these variables
FN_RESULTS = ("GITPIPE_RETURN", "GITPIPE_FAILURE")


def address_of(remote: Remote) -> str:
    """How a worker opens ``remote``: a folder by a ``file://`` url of its absolute
    path, an object store by its url (which never holds credentials: a worker takes
    them from its own environment)."""
    root = getattr(remote, "root", None)
    if isinstance(root, Path):
        return "file://" + quote(str(root.resolve()))
    return remote.url


def _open(address: str) -> Remote:
    from gitpipe.store.remote.url import open_remote

    if address.startswith("file://"):
        address = "file://" + quote(unquote(address.removeprefix("file://")))
    return open_remote(address, base=Path.cwd())


def _worker_name() -> str:
    with contextlib.suppress(ImportError, ValueError):
        from distributed import get_worker

        return str(get_worker().address)
    return ""


def run_anywhere(invocation: Invocation, shipment: Shipment | None) -> Outcome | Shipped:
    """On a dask worker: run in place when it sees the workspace, else through the
    remote (:func:`run_shipped`)."""
    if shipment is None or _worker_name() in shipment.sighted:
        return execute(invocation)
    return run_shipped(invocation, shipment)


def run_shipped(invocation: Invocation, shipment: Shipment) -> Shipped:
    """Fetch the inputs into a scratch folder, run there, push the outputs.

    The scratch folder holds a store of its own (what is fetched is verified by the
    transfer) and the step's files; it is removed afterwards, whatever happens."""
    where = f"{_worker_name() or 'local'} ({socket.gethostname()})"
    remote = _open(shipment.remote)
    scratch = Path(tempfile.mkdtemp(prefix="gitpipe-step-"))
    try:
        store = Store(scratch / "store")
        work = scratch / "work"
        work.mkdir()
        began = time.monotonic()
        _fetch(store, remote, shipment.inputs, work)
        fetched = time.monotonic() - began
        log = scratch / "step.log"
        env = dict(invocation.env)
        if env.get("GITPIPE_ROOT") == shipment.root:
            env["GITPIPE_ROOT"] = str(work)
        if "PYTHONPATH" in env:  # the key's folders, absolute on the main machine
            env["PYTHONPATH"] = env["PYTHONPATH"].replace(shipment.root, str(work))
        results = {name: scratch / f"step.{name.lower()}" for name in FN_RESULTS if name in env}
        env.update({name: str(path) for name, path in results.items()})
        here = replace(
            invocation,
            cwd=str(work / shipment.wdir),
            env=env,
            log=str(log),
            scheduler=os.getpid(),  # its process group is kept in this process
        )
        _SHIPPED[invocation.log] = str(log)
        (work / shipment.wdir).mkdir(parents=True, exist_ok=True)
        for out in shipment.outs:
            (work / out.path).parent.mkdir(parents=True, exist_ok=True)
        outcome = execute(here)
        if not outcome.ok:
            outcome = replace(outcome, message=_undeclared(log, work, shipment) or outcome.message)
        began = time.monotonic()
        outs = _store_outputs(store, work, shipment.outs) if outcome.ok else ()
        if outs:
            _push(store, remote, outs)
        pushed = time.monotonic() - began
        text = log.read_bytes() if log.exists() else b""
        brought = {name: path.read_bytes() for name, path in results.items() if path.exists()}
        return Shipped(outcome, outs, text, where, fetched, pushed, brought)
    finally:
        _SHIPPED.pop(invocation.log, None)
        shutil.rmtree(scratch, ignore_errors=True)


#: on a worker: the main process's log path of each step running here through the
#: remote -> its log in the scratch folder (how :func:`stop_here` finds its group)
_SHIPPED: dict[str, str] = {}


def stop_here(logs: Sequence[str]) -> int:
    """On each worker (``client.run``, on Ctrl-C): stop the commands of the steps
    with these logs that run here, shipped or in place; how many were stopped."""
    from gitpipe.run.runner import _GROUPS, group_of, stop_group

    groups = []
    for log in logs:
        shipped = _SHIPPED.get(log)
        group = _GROUPS.get(shipped) if shipped else None
        if group is None:
            group = group_of(Invocation(step="", commands=(), cwd="", env={}, log=log))
        if group is not None:
            groups.append(group)
    for group in groups:
        stop_group(group)
    return len(groups)


def _selection(items: Iterable[Item]) -> Selection:
    items = list(items)
    return Selection(
        frozenset(Digest.parse(i.digest) for i in items if not i.is_dir),
        frozenset(Digest.parse(i.digest) for i in items if i.is_dir),
    )


def _fetch(store: Store, remote: Remote, inputs: Sequence[Item], work: Path) -> None:
    """The inputs, pulled (verified) into ``store`` and put at their paths."""
    report = pull(store, remote, _selection(inputs), run_cache=False)
    if report.unavailable or report.rejected:
        what = report.unavailable[:1] or [str(r) for r in report.rejected[:1]]
        raise RemoteError(f"the remote {remote.url} lacks a step input ({what[0]})")
    for item in inputs:
        target = work / item.path.rstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if item.is_dir:
            store.restore_tree(Digest.parse(item.digest), target)
        else:
            store.restore_file(Digest.parse(item.digest), target, executable=item.executable)


def _push(store: Store, remote: Remote, items: Sequence[Item]) -> None:
    report = push(store, remote, _selection(items), run_cache=False)
    if report.unavailable or report.rejected:
        raise RemoteError(f"could not push a step's outputs to {remote.url}")


def _store_outputs(store: Store, work: Path, outs: Sequence[Item]) -> tuple[Item, ...]:
    """Each output that exists into ``store``, with its digest (a missing one is left
    out: the main process names it, as for a local run)."""
    made = []
    for out in outs:
        path = work / out.path
        if out.is_dir and path.is_dir():
            entries = list(_entries(path))
            store.add_tree(path, entries)
            made.append(Item(out.path, str(digest_bytes(manifest_bytes(entries))), True))
        elif path.is_file():
            executable = os.access(path, os.X_OK)
            made.append(Item(out.path, str(store.ingest(path)), False, executable))
    return tuple(made)


def _entries(folder: Path) -> Iterable[ManifestEntry]:
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            full = Path(dirpath) / name
            relative = PurePosixPath(full.relative_to(folder).as_posix())
            st = full.stat()
            yield ManifestEntry(
                str(relative), digest_file(full), st.st_size, bool(st.st_mode & 0o100)
            )


#: how programs say a file is missing, most telling first: Python's `[Errno 2] No
#: such file or directory: 'data/x'`, `sh: 1: cannot open data/x: No such file`,
#: `python3: can't open file '/w/x.py'`, `cat: data/x: No such file or directory`,
#: and a quoted path that `does not exist` or was `not found`
_MISSING = tuple(
    re.compile(pattern)
    for pattern in (
        r"No such file or directory: '(?P<path>[^'\n]+)'",
        r"can(?:not|'t) open (?:file )?'?(?P<path>[^\s':]+)'?",
        r"(?:^|: )(?P<path>[^\s':\[][^\s':]*): No such file",
        r"'(?P<path>[^'\n]+)'[^\n]*?(?:does not exist|not found)",
    )
)


def _undeclared(log: Path, work: Path, shipment: Shipment) -> str:
    """When a failed command's log names a missing file of the workspace that the
    step does not declare: say so (the scratch folder holds only declared inputs)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return ""
    declared = {i.path.rstrip("/") for i in (*shipment.inputs, *shipment.outs)}
    for match in (m for pattern in _MISSING for m in pattern.finditer(text)):
        raw = match.group("path")
        base = work / shipment.wdir
        candidate = Path(raw) if os.path.isabs(raw) else base / raw
        for prefix in (str(work), shipment.root):
            if str(candidate).startswith(prefix + os.sep):
                relative = str(candidate)[len(prefix) + 1 :]
                if relative not in declared and not (work / relative).exists():
                    return (
                        f"reads {relative}, which it does not declare (on a worker "
                        "without the workspace only declared deps are there; add it to deps)"
                    )
    return ""


# -- the main process's side ---------------------------------------------------------


def ship_inputs(
    store: Store, remote: Remote, root: Path, inputs: Mapping[str, tuple[bool, bool]]
) -> tuple[Item, ...]:
    """The step's inputs (path -> is_dir, executable) into the local store and onto
    the remote: what a worker will fetch.  Raises :class:`RemoteError` (exit 5)."""
    items = []
    for path, (is_dir, executable) in sorted(inputs.items()):
        full = root / path
        if is_dir:
            entries = list(_entries(full))
            digest = store.add_tree(full, entries)
        else:
            digest = store.ingest(full)
        items.append(Item(path, str(digest), is_dir, executable))
    report = push(store, remote, _selection(items), run_cache=False)
    if report.unavailable or report.rejected:
        raise StoreError(f"could not push the inputs of a step to {remote.url}")
    return tuple(items)


def bring_back(store: Store, remote: Remote, root: Path, shipped: Shipped) -> None:
    """Pull a shipped step's outputs (verified) and put them in the workspace.
    Raises :class:`RemoteError` when the remote lacks any: nothing is recorded then."""
    report = pull(store, remote, _selection(shipped.outs), run_cache=False)
    if report.unavailable or report.rejected:
        what = (report.unavailable or [str(r) for r in report.rejected])[0]
        raise RemoteError(f"the remote {remote.url} lacks an output the worker reported ({what})")
    for out in shipped.outs:
        target = root / out.path
        if out.is_dir:
            store.restore_tree(Digest.parse(out.digest), target)
        else:
            store.restore_file(Digest.parse(out.digest), target, executable=out.executable)


@dataclass(frozen=True, slots=True)
class Shipping:
    """How a run ships steps: through ``remote``, to every worker but the ``sighted``
    ones (``forced``: to every worker)."""

    remote: Remote
    sighted: frozenset[str]
    forced: bool = False
    blind: bool = False  # the probe found a worker that cannot see the workspace

    @property
    def needed(self) -> bool:
        return self.forced or self.blind

    def shipment(
        self, items: tuple[Item, ...], outs: tuple[Item, ...], wdir: str, root: Path
    ) -> Shipment:
        return Shipment(
            address_of(self.remote),
            items,
            outs,
            wdir,
            str(root),
            frozenset() if self.forced else self.sighted,
        )


def ship_step(
    shipping: Shipping, store: Store, hasher: Any, project: Any, step: Any, pending: Any
) -> tuple[Invocation, float]:
    """Put a step's inputs on the remote for a worker without the workspace (its
    deps, its code files and the pipeline's params files, added to the store first),
    and return its invocation carrying the :class:`Shipment`, and the seconds taken."""
    record = pending.context.record
    wanted: dict[str, tuple[bool, bool]] = {}
    params_files = [f.path for f in project.pipeline.params_files]
    for path in [*record.deps, *record.code, *params_files]:
        state = hasher.state(path.rstrip("/"))
        if state is not None:
            wanted[path.rstrip("/")] = (state.is_dir, state.executable)
    began = time.monotonic()
    items = ship_inputs(store, shipping.remote, project.root, wanted)
    outs = tuple(Item(o.path, is_dir=o.is_dir) for o in step.all_outs)
    shipment = shipping.shipment(items, outs, step.wdir, project.root)
    invocation = replace(pending.invocation, shipment=shipment, retries=step.retries)
    return invocation, time.monotonic() - began


def receive(
    shipping: Shipping, store: Store, root: Path, invocation: Invocation, shipped: Shipped
) -> float:
    """A step that ran through the remote: its log written here, its outputs pulled
    and put in place (a remote lacking any raises :class:`RemoteError`: nothing of
    it is recorded).  Returns the seconds its transfers took, both ways."""
    log = Path(invocation.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(shipped.log)
    for name, data in shipped.results.items():  # where the main process reads them
        Path(invocation.env[name]).write_bytes(data)
    began = time.monotonic()
    if shipped.outcome.ok:
        bring_back(store, shipping.remote, root, shipped)
    return time.monotonic() - began + shipped.fetch_seconds + shipped.push_seconds


def on_cluster(executor: Any, invocation: Invocation, resources: Mapping[str, float]) -> Any:
    """In an :class:`~gitpipe.run.runner.Executor`'s coordinating thread: one step as a
    dask task of its own (:func:`run_anywhere`), tried again ``invocation.retries``
    times when the cluster fails it (its worker died more often than the scheduler's
    ``allowed-failures``), never when its command failed or the remote did."""
    from gitpipe.core.errors import GitpipeError

    tries = 0
    while True:
        with executor._lock:
            if executor._closed:
                raise RuntimeError("the run was stopped")
            task = executor.client.submit(
                run_anywhere,
                invocation,
                invocation.shipment,
                resources=dict(resources) or None,
                pure=False,
                key=f"gitpipe-{invocation.step}-{os.urandom(6).hex()}",
            )
            executor._tasks[invocation.log] = task
        try:
            return task.result()
        except GitpipeError:
            raise
        except Exception:
            if executor._closed or tries >= invocation.retries:
                raise
            tries += 1
        finally:
            with executor._lock:
                executor._tasks.pop(invocation.log, None)


def cancel_on_cluster(executor: Any, running: Sequence[Invocation]) -> None:
    """Ctrl-C: stop the commands of the running steps on every worker
    (:func:`stop_here`), then cancel their tasks; no new task is submitted."""
    with executor._lock:
        executor._closed = True
        tasks = list(executor._tasks.values())
    with contextlib.suppress(Exception):
        executor.client.run(stop_here, [i.log for i in running], wait=True)
    with contextlib.suppress(Exception):
        executor.client.cancel(tasks, force=True)
    executor._closed = False  # close() follows, and does its part
