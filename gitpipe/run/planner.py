"""The one decision: what `repro` does with each step, and why.

Every view reads this module: `status`, `status --check`, `why`, `repro -n`,
`repro --frozen` and `repro` itself.  For one step:

    frozen = true ─────────────────────────────────────────────> frozen
    `when` false, or upstream skipped / waiting ────────────────> skipped
    an upstream step will run ──────────────────────────────────> run (decided again
                                                                   once it has run)
    key and outputs match gitpipe.lock ─────────────────────────> up to date
    stale, key = the lock's, the lock's objects stored (or fetched) > restore (lock)
    stale, a result stored (or fetched) for the key, newest first ─> restore (result)
    asks for approval, not approved for this key ───────────────> waiting
    otherwise ──────────────────────────────────────────────────> run

The lock is the truth: when its key matches, the bytes it names are the ones
restored, whatever other results the run cache holds for that key (a step that
writes different bytes each run has one result per run).  Only where the lock does
not decide does the newest stored result serve.

:meth:`Planner.plan` decides a whole selection in order, keying each step on its
upstream's outputs as the planned restores will leave them (a :class:`Projection`),
so that a plan made before anything is restored is the plan `repro` carries out.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Protocol

from gitpipe.core.errors import PipelineError
from gitpipe.core.hashing import Digest
from gitpipe.core.records import Reason
from gitpipe.core.slotted import init_by_slots
from gitpipe.core.states import FROZEN, SKIPPED, STALE, UP_TO_DATE
from gitpipe.identity.action import KeyRecord
from gitpipe.pipeline import spec
from gitpipe.pipeline.expr import ExprError
from gitpipe.run.inputs import Check, Inputs, Projection
from gitpipe.store.lockfile import LockEntry
from gitpipe.store.runcache import OutRecord, Result, RunCache

if TYPE_CHECKING:
    from gitpipe.run.context import Workspace

# actions: what `repro` does with a step; up to date, frozen and skipped are the
# states of gitpipe.core.states by the same words
RESTORE = "restore"
RUN = "run"
WAITING = "waiting"

# where a restore's bytes come from
LOCK = "lock"
RESULT = "result"

#: actions that leave a step as gitpipe.lock names it, or never touch it
SETTLED = frozenset((UP_TO_DATE, FROZEN, SKIPPED))


@init_by_slots
@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to one step, and why."""

    step: str
    action: str  # up to date | restore | run | frozen | skipped | waiting
    reasons: tuple[Reason, ...] = ()
    source: str = ""  # restore: lock | result
    fetched: bool = False  # restore: its objects were fetched from the remote
    record: KeyRecord | None = None
    result: Result | None = None  # restore: the outputs it brings back
    check: Check | None = None
    #: selected steps upstream that run first; it is decided again once they have
    upstream: tuple[str, ...] = ()
    skip: str = ""  # skipped or waiting: why, in one phrase
    forced: bool = False
    known_key: str = ""  # up to date by a status snapshot: the key it found

    @property
    def key(self) -> str:
        return str(self.record.key) if self.record is not None else self.known_key

    @property
    def state(self) -> str:
        """The word `status` shows: up to date, stale, frozen or skipped."""
        if self.action in (UP_TO_DATE, FROZEN, SKIPPED):
            return self.action
        return STALE

    @property
    def frozen_refusal(self) -> str:
        """Why `repro --frozen` cannot take this decision ("" when it can): it restores
        only what gitpipe.lock names, and runs nothing."""
        if not refused(self.action, self.source):
            return ""
        if self.action == RESTORE:
            return "its key differs from gitpipe.lock's or the lock's objects are missing"
        if self.action == WAITING:
            return "it waits for approval"
        return "it would have to run"

    def described(self) -> str:
        """The reasons and what follows, in one line."""
        parts = [str(r) for r in self.reasons]
        if self.upstream:
            parts.append(f"upstream will run: {', '.join(self.upstream)}")
        if self.action == RESTORE:
            where = "gitpipe.lock's outputs" if self.source == LOCK else "a stored result"
            parts.append(f"restores {where}" + (" (fetched)" if self.fetched else ""))
        elif self.skip:
            parts.append(self.skip)
        return "; ".join(parts)


class Decided(Protocol):
    """What a view keeps of a decision (a :class:`Decision`, or a status line)."""

    @property
    def step(self) -> str: ...
    @property
    def action(self) -> str: ...
    @property
    def source(self) -> str: ...
    @property
    def reasons(self) -> tuple[Reason, ...]: ...
    @property
    def upstream(self) -> tuple[str, ...]: ...


def refused(action: str, source: str) -> bool:
    """Whether `repro --frozen` refuses a step so decided: it restores only what
    gitpipe.lock names, and runs nothing."""
    return not (action in SETTLED or (action == RESTORE and source == LOCK))


def refusal(decisions: Iterable[Decided]) -> str:
    """Why `repro --frozen` (or `status --check`) cannot pass, in one sentence; ""
    when it can: each step that would run, wait or restore other outputs than
    gitpipe.lock names, with its reasons."""
    groups: dict[str, list[str]] = {}
    for d in decisions:
        if not refused(d.action, d.source):
            continue
        if d.action == RESTORE:
            group = "would restore outputs gitpipe.lock does not name"
        elif d.action == WAITING:
            group = "wait for approval"
        else:
            group = "would have to run"
        why = "; ".join([str(r) for r in d.reasons if str(r) != "needs approval"])
        if d.upstream:
            why = "; ".join(filter(None, [why, f"upstream will run: {', '.join(d.upstream)}"]))
        groups.setdefault(group, []).append(f"{d.step} ({why})" if why else d.step)
    return "; ".join(
        f"{len(steps)} step(s) {group}: {'; '.join(steps)}" for group, steps in groups.items()
    )


def may_restore(step: spec.Step) -> bool:
    """Steps that run every time, opt out of the cache or keep their outputs never
    take a stored result."""
    return step.cache and not step.always and not step.persist


def lock_result(step: spec.Step, entry: LockEntry) -> Result | None:
    """The outputs a lock entry names, as a result (None when it names none for one
    of the step's outputs)."""
    outs = {}
    for out in step.all_outs:
        digest = entry.outs.get(str(out))
        if digest is None:
            return None
        executable = not out.is_dir and str(out) in entry.executable
        outs[out.path] = OutRecord(digest, out.is_dir, 0, executable)
    return Result(outs=outs, metrics=entry.metrics, step=step.name)


@dataclass(slots=True)
class Planner:
    """Decides steps of one pipeline against one workspace, store and lock."""

    inputs: Inputs
    runcache: RunCache
    #: lock entries as the run goes (a restore or a run replaces its step's)
    entries: dict[str, LockEntry]
    #: steps to run even when up to date (`repro --force`)
    force: frozenset[str] = frozenset()
    #: `repro --pull`: where to fetch a stale step's lock objects or results from
    remote: Any = None
    #: whether a step may run with this key (`approval = true`)
    approved: Callable[[spec.Step, KeyRecord], bool] = field(default=lambda step, record: True)
    #: steps a still-valid status snapshot found up to date or frozen (see gitpipe.core.snapshot)
    known: Mapping[str, Any] = field(default_factory=dict)
    #: key -> the outputs (path -> digest) of the stored result to take first among
    #: the key's results: `exp apply` restores the experiment's own, where a step
    #: that writes other bytes each run has several
    preferred: Mapping[Digest, Mapping[str, Digest]] = field(default_factory=dict)
    #: what `repro --pull` fetched and refused (failed verification), for the run to
    #: say: a refused result is as if the remote had none, and the step runs
    rejected: list[str] = field(default_factory=list)
    #: `repro --pull`: the remote's pack indexes, read by the first fetch, kept for the rest
    indexes: Any = None

    @property
    def pipeline(self) -> spec.Pipeline:
        return self.inputs.pipeline

    def plan(self, names: Sequence[str], parents: Mapping[str, Iterable[str]]) -> list[Decision]:
        """Decide ``names`` (in topological order) as a run would, before it runs:
        a step after a planned restore is keyed on the outputs that restore brings."""
        entries = dict(self.entries)
        projection = Projection(self.runcache.store)
        steps = [self.pipeline.steps[name] for name in names]
        # the remote deps of all of them at once (each asked once per command)
        self.inputs.fingerprints.prefetch(u.url for s in steps if not s.frozen for u in s.urls)
        decided: dict[str, Decision] = {}
        for name in names:
            held = None  # the first selected parent skipped or waiting
            running = []  # the selected parents that will run
            for parent in parents[name]:
                up = decided.get(parent)
                if up is None:
                    continue
                if held is None and up.action in (SKIPPED, WAITING):
                    held = up
                if up.action == RUN:
                    running.append(up.step)
            decision = self.decide(
                name,
                entries=entries,
                projection=projection,
                held=held,
                running=tuple(running),
            )
            decided[name] = decision
            if decision.action == RESTORE and decision.result is not None:
                check = decision.check
                assert check is not None and decision.record is not None
                for out in check.step.all_outs if check.step else ():
                    planned = decision.result.outs[out.path]
                    now = check.outs_now.get(str(out))
                    if (
                        now is None
                        or now.digest != planned.digest
                        or now.is_dir != planned.is_dir
                        or (not out.is_dir and now.executable != planned.executable)
                    ):
                        projection.put(out.path, planned)
                        # imports the discoverer learnt may change only where Python may be
                        python = out.is_dir or out.path.endswith(".py")
                        self.inputs.forget(out.path, projected=python)
                entries[name] = entry_for(
                    check.step or self.pipeline.steps[name], decision.record, decision.result
                )
        return [decided[name] for name in names]

    def decide(
        self,
        name: str,
        *,
        entries: Mapping[str, LockEntry] | None = None,
        projection: Projection | None = None,
        held: Decision | None = None,
        running: Sequence[str] = (),
    ) -> Decision:
        """Decide one step.  ``held`` is an upstream step skipped or waiting;
        ``running`` names upstream steps that will run first (in a plan)."""
        entries = self.entries if entries is None else entries
        step = self.pipeline.steps[name]
        if held is not None:
            why = "waits for approval" if held.action == WAITING else "is skipped"
            return Decision(name, SKIPPED, skip=f"upstream {held.step!r} {why}")
        known = self.known.get(name)
        if known is not None and name not in self.force and not running:
            # nothing it reads changed since `status` found it so (gitpipe/core/snapshot.py)
            if known.state == FROZEN:
                return Decision(name, FROZEN, skip="frozen: never runs")
            return Decision(name, UP_TO_DATE, known_key=known.key)
        if step.when is not None and not running:
            try:
                skip = self.condition_false(step, entries)
            except PipelineError as exc:
                return Decision(name, RUN, reasons=(Reason("condition", str(exc)),))
            if skip:
                return Decision(name, SKIPPED, skip=skip)
        if step.frozen:
            return Decision(name, FROZEN, skip="frozen: never runs")
        if running:  # its key (and its condition) wait for what those steps write
            return Decision(name, RUN, upstream=tuple(running))
        check = self.inputs.check(step, entries.get(name), entries=entries, projection=projection)
        return self._decide_checked(step, check, entries.get(name))

    def _decide_checked(self, step: spec.Step, check: Check, entry: LockEntry | None) -> Decision:
        name = step.name
        reasons = tuple(check.reasons)
        forced = name in self.force
        record = check.record
        if check.state == FROZEN:
            return Decision(name, FROZEN, check=check, skip="frozen: never runs")
        if forced:
            reasons = (Reason("forced"), *reasons)
        elif check.state != STALE:
            return Decision(name, UP_TO_DATE, reasons, record=record, check=check)
        if record is None:  # a dependency, or a metric it reads, is missing
            return Decision(name, RUN, reasons, check=check, forced=forced)
        runnable = check.step or step
        if not forced and may_restore(runnable):
            found = self._restorable(runnable, record, entry)
            if found is not None:
                source, result, fetched = found
                return Decision(name, RESTORE, reasons, source, fetched, record, result, check)
        if runnable.approval and not self.approved(runnable, record):
            return Decision(
                name,
                WAITING,
                (*reasons, Reason("needs approval")),
                record=record,
                check=check,
                skip=f"approve it with `gitpipe approve {name}`",
                forced=forced,
            )
        return Decision(name, RUN, reasons, record=record, check=check, forced=forced)

    def _restorable(
        self, step: spec.Step, record: KeyRecord, entry: LockEntry | None
    ) -> tuple[str, Result, bool] | None:
        """Where a restore of this step comes from: the lock's objects when its key is
        the lock's, else the newest stored result; fetched from the remote when only
        it has them. A result is a claim: one that does not cover exactly the step's
        declared outputs, each a file or folder as declared, never serves."""
        wanted = lock_result(step, entry) if entry is not None and entry.key == record.key else None
        if wanted is not None and entry is not None and not entry.modes:
            # a lock of an older gitpipe names no executable bits: a stored result of
            # the same bytes knows them
            same = [r for r in self._results(step, record.key) if _same_bytes(r, wanted)]
            wanted = same[0] if same else wanted
        if wanted is not None:
            found = self._lock_objects(record.key, wanted)
            if found is not None:
                return LOCK, found, False
            if self.remote is not None:
                self._fetch(record.key, exact=wanted.id)
                found = self._lock_objects(record.key, wanted)
                if found is not None:
                    return LOCK, found, True
        results = self._results(step, record.key)
        if results:
            return RESULT, results[0], False
        if self.remote is not None:
            self._fetch(record.key)
            results = self._results(step, record.key)
            if results:
                return RESULT, results[0], True
        return None

    def _results(self, step: spec.Step, key: Digest) -> list[Result]:
        """The stored results of ``key`` that may serve ``step``, newest first (the
        preferred one, if stored, before all)."""
        found = [result for result in self.runcache.results(key) if serves(step, result)]
        wanted = self.preferred.get(key)
        if wanted is not None:  # a stable sort: the rest stay newest first
            found.sort(key=lambda result: _digests(result) != wanted)
        return found

    def _lock_objects(self, key: Digest, wanted: Result) -> Result | None:
        """The lock's outputs as a result, when the store holds every object: the run
        cache's record of them when it has one (sizes, metrics), else the lock's."""
        stored = self.runcache.get_exact(key, wanted.id)
        if stored is not None:  # its id covers its outputs, not its metrics: the lock's win
            return replace(stored, metrics=wanted.metrics)
        if not self.runcache.complete(wanted):
            return None
        store = self.runcache.store
        outs = {
            path: OutRecord(out.digest, out.is_dir, _size(store, out), out.executable)
            for path, out in wanted.outs.items()
        }
        return Result(outs=outs, metrics=wanted.metrics, step=wanted.step)

    def _fetch(self, key: Digest, *, exact: Digest | None = None) -> None:
        from gitpipe.store import remote as remotes

        if self.indexes is None:
            self.indexes = remotes.Indexes()
        store = self.runcache.store
        if exact is not None:
            selection = remotes.Selection(results=frozenset({(key, exact)}))
            report = remotes.pull(store, self.remote, selection, indexes=self.indexes)
        else:
            report = remotes.fetch_for_keys(store, self.remote, [key], indexes=self.indexes)
        # an index refused is said once a run, not once a key
        said = set(self.rejected)
        self.rejected += [str(r) for r in report.rejected if str(r) not in said]

    def condition_false(self, step: spec.Step, entries: Mapping[str, LockEntry]) -> str:
        """Why the step is skipped: its `when` condition, with the values it read, when
        that is false; "" when it holds."""
        assert step.when is not None
        refs = {ref.ref: ref for ref in step.metric_refs}
        values = {ref: self.inputs.metric_value(refs[ref], entries) for ref in step.when.refs}
        try:
            holds = step.when.evaluate(values)
        except ExprError as exc:
            raise PipelineError(
                f"the condition cannot be evaluated: {exc}",
                file=self.inputs.file_name,
                key=f"steps.{step.group or step.name}.when",
            ) from exc
        if holds:
            return ""
        return f"condition false: {step.when.shown(values)} (when = {step.when.source!r})"


def serves(step: spec.Step, result: Result) -> bool:
    """Whether a result covers exactly the step's declared outputs (outs and metrics),
    each a folder or a file as the step declares it."""
    kinds = {out.path: out.is_dir for out in step.all_outs}
    return len(result.outs) == len(kinds) and all(
        kinds.get(path) is out.is_dir for path, out in result.outs.items()
    )


def _digests(result: Result) -> dict[str, Digest]:
    """A result's outputs, path -> digest (folders without their trailing "/")."""
    return {path.rstrip("/"): out.digest for path, out in result.outs.items()}


def _same_bytes(a: Result, b: Result) -> bool:
    return _digests(a) == _digests(b)


def _size(store: Any, out: OutRecord) -> int:
    try:
        if out.is_dir:
            return sum(entry.size for entry in store.manifest(out.digest))
        return os.stat(store.object_path(out.digest)).st_size
    except (OSError, ValueError):
        return 0


def entry_for(step: spec.Step, record: KeyRecord, result: Result) -> LockEntry:
    """The lock entry of a step that ran or was restored with this result."""
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
        executable=frozenset(
            str(s) for s in step.all_outs if not s.is_dir and result.outs[s.path].executable
        ),
        urls=record.urls,
        environment=record.environment,
    )


def approver(
    project: Workspace, approve: frozenset[str], *, run_id: str = "", record: bool = False
) -> Callable[[spec.Step, KeyRecord], bool]:
    """Whether someone approved a step to run with a key; a step named in ``approve``
    (`repro --approve`) is approved now, and with ``record`` that is written down."""
    path = project.state_dir / "lineage.db"

    def approved(step: spec.Step, key_record: KeyRecord) -> bool:
        from gitpipe.run.lineage import approval_of, record_approval

        if step.name in approve:
            if record:
                record_approval(path, step.name, str(key_record.key), project.user(), run_id=run_id)
            return True
        return approval_of(path, step.name, str(key_record.key)) is not None

    return approved
