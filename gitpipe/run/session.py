"""One `repro`: carrying out the planner's decisions, step by step.

    scheduler ──decide──> Planner.decide ─> up to date / frozen / skipped / waiting
        │                               └──> restore: outputs from the store (lock first)
        │                               └──> run ──begin──> executor ──publish──┐
        └──────────────────────── finished <── objects, result, lock entry <───┘

:class:`Session` is the scheduler's :class:`gitpipe.run.runner.Work`: it asks the planner
what to do with each step once the steps before it are done, restores or hands the
step over to run, and publishes what ran: objects into the store first, then the
result, then the lock entry (lineage listens to the events).  Nothing outside a
step's declared outputs is written: each removal, restore and link re-checks its path
at the moment it writes (:func:`gitpipe.run.guard.check_write`), and what a step produced
is checked before anything of it is stored (:func:`gitpipe.run.guard.check_produced`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitpipe.core import tomlcache
from gitpipe.core.errors import (
    CorruptObject,
    PathError,
    StaleError,
    StoreError,
    UnsafePath,
    describe,
)
from gitpipe.core.hashing import Digest, digest_record
from gitpipe.core.redaction import redact
from gitpipe.identity.action import KeyRecord
from gitpipe.pipeline import spec
from gitpipe.pipeline.values import flatten, jsonable, metric_values, unflatten
from gitpipe.run import events as ev
from gitpipe.run import guard
from gitpipe.run.hooks import HookCall, Hooks
from gitpipe.run.inputs import Check, Inputs
from gitpipe.run.outputs import Outputs, link_of
from gitpipe.run.planner import (
    FROZEN,
    RESTORE,
    RUN,
    SKIPPED,
    WAITING,
    Decision,
    Planner,
    entry_for,
)
from gitpipe.run.runner import Invocation, Outcome, Pending
from gitpipe.run.shipping import Shipped, Shipping, receive, ship_step
from gitpipe.store.lockfile import LockEntry
from gitpipe.store.objects import Store, remove
from gitpipe.store.runcache import OutRecord, Result

if TYPE_CHECKING:
    from gitpipe.run.context import Workspace

#: where a function step's returned numbers go among its metrics
RETURNED = "returned"


def fault_point(name: str) -> None:
    """Crash-safety tests: with ``GITPIPE_FAULT=name`` gitpipe kills itself here
    (SIGKILL: no clean-up runs), to prove every such point leaves the store, the lock
    and lineage consistent.  Points: ``objects-stored`` (a step's outputs are in the
    store, its result is not), ``result-stored`` (its result is, the lock is not);
    ``rename:FILE`` in :func:`gitpipe.core.atomic.write_bytes` stops with FILE's new bytes
    written to a temporary file, not yet renamed over it (``rename:gitpipe.lock``);
    ``settling`` in :meth:`gitpipe.identity.statcache.Hasher.settle` stops once a row
    is taken again, before the stat cache is written."""
    if os.environ.get("GITPIPE_FAULT") == name:
        os.kill(os.getpid(), signal.SIGKILL)


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
    return metric_values(data)


@dataclass(frozen=True, slots=True)
class _RunOptions:
    """How a repro runs, once its steps are chosen."""

    force: bool = False
    keep_going: bool = False
    argv: tuple[str, ...] = ()
    repo: Any = None  # gitpipe.history.git.Repository, or None outside Git
    remote: Any = None  # a gitpipe.store.remote remote to pull stale steps' results from
    approve: frozenset[str] = frozenset()  # steps (or matrix/nested names) approved now
    write_lock: bool = True  # False for an experiment (`-p`) unless --lock was given
    hooks: Mapping[str, tuple[Callable[[HookCall], None], ...]] = field(default_factory=dict)
    frozen: bool = False  # restore what gitpipe.lock names, run nothing, write no lock


@dataclass(slots=True)
class _Run:
    """What publishing a step needs to remember from deciding it."""

    record: KeyRecord
    check: Check
    reasons: tuple[str, ...]
    step: spec.Step  # as it runs: the metrics it reads from other steps filled in
    started: float = 0.0


def predicted(decision: Decision) -> ev.StepFinished:
    """What a dry run (`repro -n`) says of a decision."""
    reasons = tuple(str(r) for r in decision.reasons)
    key = decision.key
    name = decision.step
    if decision.action == RESTORE:
        return ev.StepFinished(
            name, ev.WOULD_RESTORE, reasons=reasons, key=key, source=decision.source
        )
    if decision.action == RUN:
        if decision.upstream:
            reasons += (f"upstream would run: {', '.join(decision.upstream)}",)
            return ev.StepFinished(
                name, ev.WOULD_RUN, reasons=reasons, message="if what it reads changes"
            )
        return ev.StepFinished(name, ev.WOULD_RUN, reasons=reasons, key=key)
    if decision.action == WAITING:
        return ev.StepFinished(name, ev.WAITING, reasons=reasons, key=key, message=decision.skip)
    if decision.action == SKIPPED:
        return ev.StepFinished(name, ev.SKIPPED, message=decision.skip)
    if decision.action == FROZEN:
        return ev.StepFinished(name, ev.FROZEN, message=decision.skip)
    return ev.StepFinished(name, ev.UP_TO_DATE, reasons=reasons, key=key)


class Session:
    """One `repro`'s work on the workspace: the scheduler's :class:`Work`."""

    def __init__(
        self,
        project: Workspace,
        inputs: Inputs,
        planner: Planner,
        *,
        run_id: str,
        frozen: bool = False,
        hook_calls: Mapping[str, Sequence[Callable[[HookCall], None]]] | None = None,
        emit: ev.Listener | None = None,
        shipping: Shipping | None = None,
    ) -> None:
        self.project = project
        #: steps on dask workers without the workspace go through this remote
        self.shipping = shipping
        self.inputs = inputs
        self.hasher = inputs.hasher
        self.planner = planner
        self.entries = planner.entries  # the lock as it will be written
        self.store: Store = planner.runcache.store
        self.runcache = planner.runcache
        self.run_id = run_id
        self.frozen = frozen
        self.hooks = Hooks(project, run_id, hook_calls)
        #: the places no write may reach, resolved once per repro
        self.guarded = guard.protected(project)
        self.outputs = Outputs(project, self.store, self.hasher, self.guarded)
        self.emit: ev.Listener = emit or _ignore  # notices (a corrupt object set aside)
        #: step -> why the system refused a write the step needed (its outputs into the
        #: store, its old outputs out of the way, its log): not its command's failure
        self.storage_failures: dict[str, str] = {}
        self._shipped_in: dict[str, float] = {}  # step -> seconds its inputs took to push

    def decide(
        self, name: str, upstream_would_run: list[str], *, decision: Decision | None = None
    ) -> ev.StepFinished | Pending:
        """Up to date, restored, frozen, skipped, waiting, or a step that must run
        (``decision``: the planner's, when it has been asked already)."""
        decision = self.planner.decide(name) if decision is None else decision
        step = self.project.pipeline.steps[name]
        reasons = tuple(str(r) for r in decision.reasons)
        key = decision.key
        if self.frozen and decision.frozen_refusal:  # the plan said otherwise: never run
            return ev.StepFinished(
                name,
                ev.FAILED,
                reasons=reasons,
                key=key,
                message=f"--frozen: {decision.frozen_refusal}",
            )
        if decision.action == RESTORE:
            assert decision.result is not None and decision.record is not None
            check = decision.check
            assert check is not None
            step = check.step or step
            started = time.time()
            try:
                self.outputs.restore(step, decision.result, check)
            except UnsafePath as exc:  # nothing was written
                return ev.StepFinished(name, ev.FAILED, reasons=reasons, key=key, message=str(exc))
            except CorruptObject as exc:
                return self._set_aside(name, upstream_would_run, exc)
            except (StoreError, PathError, OSError) as exc:  # the system refused a write
                message = self._storage_failed(name, "its outputs could not be restored", exc)
                return ev.StepFinished(name, ev.FAILED, reasons=reasons, key=key, message=message)
            self.entries[name] = entry_for(step, decision.record, decision.result)
            self.hooks.run("after_step", name, ev.CACHED)
            return ev.StepFinished(
                name,
                ev.CACHED,
                reasons=reasons,
                key=key,
                duration=time.time() - started,
                started=started,
                ended=time.time(),
                source=decision.source,
                **self._provenance(step, decision.record, decision.result),
            )
        if decision.action != RUN:
            return predicted(decision)
        if decision.record is None or decision.check is None:  # a dependency is missing
            return ev.StepFinished(name, ev.FAILED, reasons=reasons, message="; ".join(reasons))
        step = decision.check.step or step
        return Pending(
            self._invocation(step, decision.record.pythonpath),
            cpus=int(step.resources.get("cpus", 1)),
            resources=step.resources,
            context=_Run(decision.record, decision.check, reasons, step),
            key=key,
        )

    def _set_aside(
        self, name: str, upstream_would_run: list[str], corrupt: CorruptObject
    ) -> ev.StepFinished | Pending:
        """A restore met an object whose bytes are not the recorded ones (nothing of
        it reached the workspace): move it to the store's quarantine, say so in one
        line, and decide the step again without it: another stored result, the remote
        (`--pull`), or a run.  Under `--frozen` that must still be gitpipe.lock's
        bytes (from the remote), else :class:`StaleError` (exit 3)."""
        digest = corrupt.digest
        assert isinstance(digest, Digest)
        where = self.store.quarantine(digest)
        root = str(self.project.root) + os.sep
        target = corrupt.target.removeprefix(root) or f"step {name!r}"
        moved = f"moved to {_shown(where, root)}" if where else "moved away already"
        what = f"object {digest} for {target} is corrupt (its bytes do not hash to its name)"
        again = self.planner.decide(name)
        if self.frozen and again.frozen_refusal:
            elsewhere = "" if self.planner.remote is not None else ", or `--pull` them"
            raise StaleError(
                f"--frozen: step {name!r} cannot restore gitpipe.lock's outputs: {what}; "
                f"{moved}; run `gitpipe repro` to make them again{elsewhere}"
            ) from corrupt
        if again.action == RESTORE:
            then = f"restoring {name!r} " + (
                "from the remote" if again.fetched else "from another stored result"
            )
        elif again.action == RUN:
            then = f"running {name!r} again"
        else:
            then = f"{name!r}: {again.action}"
        self.emit(ev.Notice(f"{what}: {moved}; {then}"))
        return self.decide(name, upstream_would_run, decision=again)

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
                out_spec = spec.PathSpec(path, state.is_dir)
                try:
                    self.outputs.check_replace(out_spec, state)
                    self.outputs.save_before_replacing(out_spec, state)
                except UnsafePath:
                    continue  # it leads out of the repository or into a protected place now
                remove(self.project.root / path)
                self.inputs.forget(path)
                removed.append(out)
            del entries[name]
        return removed

    def begin(self, name: str, pending: Pending) -> ev.StepFinished | None:
        """Clear the way for a step about to run (:meth:`_begin`), telling of any
        corrupt object found on the way (:meth:`_tell_set_aside`)."""
        try:
            return self._begin(name, pending)
        finally:
            self._tell_set_aside()

    def _begin(self, name: str, pending: Pending) -> ev.StepFinished | None:
        """Clear the way for a step about to run: its `before_step` hooks run, its old
        outputs go (into the store first, unless it already has them), their folders
        exist.  A failed hook (with ``hooks.fail``) fails the step instead."""
        step = self.project.pipeline.steps[name]
        root = self.project.root
        check = pending.context.check
        failure = self.hooks.run("before_step", name, "running", pending.invocation.log)
        if failure and self.project.pipeline.hooks.fail:
            return ev.StepFinished(
                name, ev.FAILED, key=str(pending.context.record.key), message=failure
            )
        key = str(pending.context.record.key)
        try:
            for spec_ in step.all_outs:  # every output first: a refusal leaves all as they are
                self.outputs.check_replace(spec_, check.outs_now.get(str(spec_)))
        except UnsafePath as exc:
            return ev.StepFinished(name, ev.FAILED, key=key, message=str(exc))
        for spec_ in step.all_outs:
            try:
                if not step.persist:
                    self.outputs.save_before_replacing(spec_, check.outs_now.get(str(spec_)))
                    remove(root / spec_.path)
                else:
                    refused = self.outputs.unlink_from_store(spec_, check.outs_now.get(str(spec_)))
                    if refused:  # the command would write into the store's object
                        return ev.StepFinished(name, ev.FAILED, key=key, message=refused)
                (root / spec_.path).parent.mkdir(parents=True, exist_ok=True)
            except UnsafePath as exc:
                return ev.StepFinished(name, ev.FAILED, key=key, message=str(exc))
            except (StoreError, PathError, OSError) as exc:
                what = f"its old output {spec_} could not be put aside"
                message = self._storage_failed(name, what, exc)
                return ev.StepFinished(name, ev.FAILED, key=key, message=message)
            finally:
                self.inputs.forget(spec_.path)
        if self.shipping is not None and self.shipping.needed:
            pending.invocation, took = ship_step(  # a StoreError ends the run
                self.shipping, self.store, self.hasher, self.project, step, pending
            )
            self._shipped_in[name] = took
        pending.context.started = time.time()
        return None

    def _tell_set_aside(self) -> None:
        """One notice per corrupt object the store moved to its quarantine as the same
        bytes were stored again (:meth:`gitpipe.store.objects.Store.keeps`)."""
        root = str(self.project.root) + os.sep
        while self.store.set_aside:
            found = self.store.set_aside.pop(0)
            moved = f"moved to {_shown(found.where, root)}" if found.where else "moved away"
            self.emit(
                ev.Notice(
                    f"object {found.digest} was corrupt (its bytes do not hash to its name: "
                    f"written to through a link?): {moved}; stored again from "
                    f"{found.source.removeprefix(root)}"
                )
            )

    def _storage_failed(self, name: str, what: str, exc: Exception) -> str:
        """Remember that a step failed because the system refused a write it needed
        (its outputs into the store, its old ones aside), and say so in one line with
        the path and the cause."""
        if isinstance(exc, OSError):  # a write that names no file wrote into the store
            cause = describe(exc) if exc.filename else f"{self.store.root}: {exc.strerror}"
        else:
            cause = str(exc)
        message = f"{what}: {cause}"
        self.storage_failures[name] = message
        return message

    def _invocation(self, step: spec.Step, pythonpath: Sequence[str] = ()) -> Invocation:
        """How to run a step in the workspace (:func:`invocation`)."""
        log = self.project.state_dir / "logs" / self.run_id / f"{step.name}.log"
        return invocation(step, self.project.root, log, self.run_id, pythonpath)

    def publish(self, name: str, pending: Pending, outcome: Outcome) -> ev.StepFinished:
        """Publish a finished step (:meth:`_publish`), then run its `after_step` hooks
        and, when it failed, its `on_failure` hooks."""
        where: dict[str, Any] = {}
        if isinstance(outcome, Shipped):  # it ran on a worker without the workspace
            assert self.shipping is not None
            transfer = self._shipped_in.pop(name, 0.0) + receive(
                self.shipping, self.store, self.project.root, pending.invocation, outcome
            )
            for out in outcome.outs:
                self.inputs.forget(out.path)
            where = {"worker": outcome.where, "transfer": transfer}
            outcome = outcome.outcome
        try:
            finished = self._publish(name, pending, outcome)
        finally:
            self._tell_set_aside()
        if where:
            finished = replace(finished, **where)
        self.hooks.run("after_step", name, finished.state, pending.invocation.log)
        if finished.state == ev.FAILED:
            self.hooks.run("on_failure", name, finished.state, pending.invocation.log)
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
            if outcome.refused:
                self.storage_failures[step.name] = message
            if step.fn:  # the function's own one-line reason, when it left one
                with contextlib.suppress(OSError):
                    reason = Path(invocation.log).with_suffix(".failure.txt").read_text()
                    message = f"{reason.strip()} (log: {invocation.log})"
            return ev.StepFinished(step.name, ev.FAILED, message=message, **common)
        try:  # before anything is read or stored: no link out, nothing of Git's
            for spec_ in step.all_outs:
                guard.check_produced(self.guarded, spec_.path)
        except UnsafePath as exc:
            return ev.StepFinished(step.name, ev.FAILED, message=str(exc), **common)
        outs: dict[str, OutRecord] = {}
        missing = []
        for spec_ in step.all_outs:
            try:  # what the step made cannot be read: a FIFO in a folder, say
                state = self.hasher.state(spec_.path)
            except (StoreError, PathError) as exc:
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
        result = Result(
            outs=outs,
            metrics=metrics,
            duration=outcome.duration,
            exit_code=0,
            step=step.name,
            record=record.as_record(),
        )
        link = link_of(step)
        storing = ""
        try:  # a store that cannot be written fails this step, not the run
            for spec_ in step.all_outs:
                storing = f"its output {spec_}"
                self.outputs.store_output(spec_, outs[spec_.path], link)
            storing = "its result"
            fault_point("objects-stored")
            self.runcache.put(record.key, result)
        except UnsafePath as exc:  # no result: what was stored is only objects
            return ev.StepFinished(step.name, ev.FAILED, message=str(exc), **common)
        except (StoreError, PathError, OSError) as exc:
            message = self._storage_failed(step.name, f"{storing} could not be stored", exc)
            return ev.StepFinished(step.name, ev.FAILED, message=message, **common)
        fault_point("result-stored")
        entries[step.name] = entry_for(step, record, result)
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
        for url, found in record.urls.items():  # a remote dep: the digest of its fingerprint
            reads.append(ev.Artifact(redact(url), str(digest_record(found)), role="url"))
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


def _ignore(event: ev.Event) -> None:
    """The listener of a session nobody listens to."""


def _shown(path: Path, root: str) -> str:
    """A path as a notice shows it: from the workspace's root when it lies under it."""
    return str(path).removeprefix(root)


def invocation(
    step: spec.Step, root: Path, log: Path, run_id: str, pythonpath: Sequence[str] = ()
) -> Invocation:
    """How to run a step in the pipeline folder ``root``: its commands, folder and
    environment; ``pythonpath`` (its key record's) goes first on PYTHONPATH, as
    absolute folders under ``root``.  `gitpipe audit` runs it in a scratch copy."""
    extra = {}
    if pythonpath:
        given = step.env.get("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
        folders = [os.path.normpath(root / folder) for folder in pythonpath]
        extra["PYTHONPATH"] = os.pathsep.join([*folders, *filter(None, [given])])
    env = {
        **step.env,
        **extra,
        "GITPIPE_STEP": step.name,
        "GITPIPE_RUN_ID": run_id,
        # a TOML date or time as its text, as `gitpipe.params()` documents
        "GITPIPE_PARAMS": json.dumps(jsonable(unflatten(step.params)), sort_keys=True),
        "GITPIPE_ROOT": str(root),
    }
    commands = step.cmd
    if step.fn:  # a fresh interpreter calls the function: see gitpipe/run/fnstep.py
        commands = (f"{shlex.quote(sys.executable)} -m gitpipe.run.fnstep",)
        env.update(
            GITPIPE_FN=step.fn,
            GITPIPE_RETURN=str(log.with_suffix(".return.json")),
            GITPIPE_FAILURE=str(log.with_suffix(".failure.txt")),
        )
    return Invocation(
        step=step.name,
        commands=commands,
        cwd=str(root / step.wdir),
        env=env,
        log=str(log),
        timeout=step.timeout,
        scheduler=os.getpid(),
    )
