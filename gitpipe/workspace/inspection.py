"""Looking at a workspace without changing it: `status`, `why`, `check`, `approve`
and the digest of a path.  Each reads the planner's decisions
(:mod:`gitpipe.run.planner`), the same ones `repro` acts on.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitpipe.core import collector
from gitpipe.core.errors import (
    GitError,
    RemoteError,
    StaleError,
    UsageError,
)
from gitpipe.core.hashing import Digest
from gitpipe.core.records import Reason, StepStatus, status_lines
from gitpipe.core.snapshot import Recorder
from gitpipe.core.snapshot import write as write_snapshot
from gitpipe.core.states import FROZEN, SKIPPED
from gitpipe.identity.action import fingerprint
from gitpipe.pipeline.values import jsonable
from gitpipe.run import guard, overlay
from gitpipe.run.inputs import Inputs
from gitpipe.run.plan import STALE
from gitpipe.run.planner import RESTORE, SETTLED, WAITING, Decision
from gitpipe.store.lockfile import Lock, LockEntry
from gitpipe.workspace import data

if TYPE_CHECKING:  # imported where used: a no-op run explains nothing
    from gitpipe.run import explain


if TYPE_CHECKING:
    from gitpipe.workspace import Project


@dataclass(slots=True)
class Explanation:
    """What `gitpipe why` says of a step."""

    step: str
    state: str
    action: str = ""  # what `repro` would do: see gitpipe.run.planner
    source: str = ""  # a restore's: lock | result
    reasons: tuple[str, ...] = ()
    upstream: tuple[str, ...] = ()  # steps that run first; it is decided after them
    note: str = ""  # skipped or waiting: why
    key: str = ""
    code: tuple[str, ...] = ()  # the step's code files, as discovered
    lock_key: str = ""
    against_lock: list[explain.Component] | None = None  # None: no lock entry
    nearest_key: str = ""
    nearest: list[explain.Component] | None = None  # differences; None: no stored result

    def to_json(self) -> dict[str, Any]:
        """Plain JSON: the values of a key's components as JSON holds them (a TOML
        date as its text)."""
        return jsonable(
            {
                "step": self.step,
                "state": self.state,
                "action": self.action,
                "source": self.source,
                "reasons": list(self.reasons),
                "upstream": list(self.upstream),
                "note": self.note,
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
        )


def digest_of(project: Project, path: str | os.PathLike[str]) -> tuple[str, str]:
    """The digest of a workspace path now, and the path relative to the pipeline."""
    full = Path(path)
    full = full if full.is_absolute() else Path.cwd() / full
    try:
        relpath = Path(os.path.relpath(full.resolve(), project.root)).as_posix()
    except ValueError as exc:
        raise UsageError(f"{path} is not inside this workspace") from exc
    if relpath == ".." or relpath.startswith("../"):
        raise UsageError(f"{path} is not inside this workspace ({project.root})")
    with project.inputs(readonly=True) as inputs:
        state = inputs.hasher.state(relpath)
    if state is None:
        raise UsageError(f"{path} does not exist")
    return str(state.digest), relpath + ("/" if state.is_dir else "")


def status(
    project: Project, targets: Iterable[str] = (), *, single: bool = False, downstream: bool = False
) -> list[StepStatus]:
    """Each selected step's state, what `repro` would do with it, and why; reads
    no file it has seen unchanged (see :func:`status_and_data`)."""
    return status_and_data(project, targets, single=single, downstream=downstream)[0]


def status_and_data(
    project: Project, targets: Iterable[str] = (), *, single: bool = False, downstream: bool = False
) -> tuple[list[StepStatus], list[data.DataState]]:
    """Each selected step's state, what `repro` would do with it, and why; and how
    the workspace stands to each added path (gitpipe.data).  Reads no file it has
    seen unchanged.

    When every step of the whole pipeline turns out up to date, and all added data
    too, the stamps of all it looked at are kept, so that the next `gitpipe status`
    can answer from them alone (see :mod:`gitpipe.core.snapshot`); not when a step
    has remote deps, whose fingerprints are asked of their servers each time."""
    started_ns = time.time_ns()
    names = project.select(targets, single=single, downstream=downstream)
    # an answer that rests on a url's fingerprint cannot be kept by stamps alone
    remote = any(step.urls for step in project.pipeline.steps.values())
    state = project.state_dir.is_dir()
    whole = not targets and state and not remote
    recorder = Recorder() if whole else None
    # without gitpipe's folder no check passed before, and none is kept (remember_check)
    git_check = guard.git_check_digest(project, names) if state else None
    if git_check is not None and git_check == guard.passed_git_check(project.state_dir):
        # the Git index and the outputs are as when they last passed: skip Git
        guard.check_before_run(project, names, None, run=False, git=False)
    else:
        with project.repository() as repo:
            guard.check_before_run(project, names, repo, run=False)
        guard.remember_check(project.state_dir, git_check)
    lock = project.read_lock()
    # the stat cache is kept once gitpipe has state here; status creates none
    with project.inputs(readonly=not project.state_dir.is_dir()) as inputs:
        inputs.hasher.seen = recorder
        planner = project.planner(inputs, lock)
        with collector.paused():  # keys, records and decisions for every step: kept
            statuses = [status_of(d) for d in planner.plan(names, project.graph.parents)]
        added = data.states(data.read_records(project), inputs.hasher)
        if recorder is not None and git_check is not None and not recorder.broken:
            record_inputs(project, recorder, names)
            recorder.look(str(data.records_path(project)))
            settled = all(d.state == data.IN_SYNC for d in added)
            if settled and all(s.action in SETTLED for s in statuses):
                head, current = lock_is_current(project, inputs, lock)
                write_snapshot(
                    project.state_dir,
                    project.file,
                    statuses,
                    recorder,
                    started_ns=started_ns,
                    head=head,
                    lock_current=current,
                    # with a pythonpath, `repro` tells of imports it leaves out
                    pipeline=project.pipeline.name if project.pipeline.pythonpath is None else None,
                    git_check=git_check,
                )
    project.keep_caches()
    return statuses, added


def status_report(
    statuses: list[StepStatus], added: Sequence[data.DataState], *, verbose: bool = False
) -> list[str]:
    """The lines `gitpipe status` prints: each step's (:func:`status_lines`), then
    each added path that is not up to date; "no steps" when there is neither.  The
    command and its fast path (gitpipe/__main__.py) both print these."""
    lines = status_lines(statuses, verbose=verbose) + [str(d) for d in added]
    return lines or ["no steps"]


def status_verdict(
    statuses: Sequence[StepStatus], added: Sequence[data.DataState], *, check: bool
) -> None:
    """What `gitpipe status` raises once its lines are out: the error of
    :func:`stop_if_unreachable`; with ``check``, a :class:`StaleError` (exit 3)
    unless `repro --frozen` would pass."""
    stop_if_unreachable([str(r) for s in statuses for r in s.reasons])
    if check:  # as `repro --frozen` would: restoring what gitpipe.lock names is all it may do
        from gitpipe.run.planner import refusal

        refused = "; ".join(filter(None, [refusal(statuses), data.refusal(added)]))
        if refused:
            raise StaleError(refused)


def stop_if_unreachable(reasons: Sequence[str]) -> None:
    """A :class:`RemoteError` (exit 5, once the answer is shown) when a remote dep had
    no fingerprint: whether its step is up to date could not be told
    (docs/external-deps.md).  `status` and `why` raise it."""
    if not any(" unreachable: " in r for r in reasons):
        return
    from gitpipe.identity.external import UNREACHABLE

    details = [r.removeprefix(f"{UNREACHABLE}: ") for r in reasons if r.startswith(UNREACHABLE)]
    if details:
        raise RemoteError(
            f"cannot tell whether steps are up to date: no fingerprint for the remote "
            f"dep {'; '.join(dict.fromkeys(details))}"
        )


def lock_is_current(project: Project, inputs: Inputs, lock: Lock) -> tuple[str | None, bool]:
    """HEAD's commit, and whether the lock holds exactly what a repro that runs
    nothing would write there now (so that such a repro can leave it alone)."""
    from gitpipe.history.git import Repository
    from gitpipe.history.versions import version_for_lock

    try:
        repo = Repository.find(project.root)
        if repo is None:
            return None, False
        with repo:
            head = repo.head_commit()
    except GitError:
        return None, False
    pipeline = project.pipeline
    identity = str(fingerprint(pipeline, inputs.code_of_all()))
    current = (
        lock.steps.keys() == pipeline.steps.keys()
        and (lock.name, lock.fingerprint) == (pipeline.declared_name, identity)
        and lock.version == version_for_lock(project.root, project.file, identity)
    )
    return head, current


def record_inputs(project: Project, recorder: Recorder, names: Sequence[str]) -> None:
    """Stamp what `status` read besides the files it hashed: the pipeline files,
    the lock, the Git index (and where it is found), and the folders leading to
    each output (the check that outputs stay inside the repository)."""
    root = str(project.root)
    for relpath in ("", *project.pipeline.includes, *project.pipeline.read_files):
        recorder.look(str(project.file) if not relpath else os.path.join(root, relpath))
    recorder.look(str(project.lock_path))
    dotgit = guard.dot_git(project.root)
    index = guard.git_index(project.root)
    if dotgit is None or index is None:
        recorder.broken = True
        return
    for folder in (project.root, *project.root.parents):
        if folder == dotgit.parent:
            break
        recorder.look(str(folder / ".git"), follow=False)  # still none nearer
    recorder.look(str(index))
    recorder.look(str(overlay.manifest_path(project.state_dir)))  # a killed `repro -p`
    for name in names:
        for out in project.pipeline.steps[name].all_outs:
            parts = out.path.split("/")
            for i in range(1, len(parts) + 1):
                recorder.look(os.path.join(root, *parts[:i]), follow=False)


def check_lock(project: Project) -> list[tuple[str, list[str]]]:
    """Steps whose lock entry does not match the pipeline and the files it reads
    now (outputs are not looked at): what `gitpipe check` and its pre-commit hook
    report.  The pipeline file must be valid."""
    names = project.select()
    lock = project.read_lock()
    mismatched = []
    with project.inputs(readonly=True) as inputs:
        for name in names:
            entry = lock.steps.get(name)
            # a fresh clone has no outputs: take a missing dep to be as the lock says
            assume = entry.deps if entry is not None else {}
            check = inputs.check(
                project.pipeline.steps[name],
                entry,
                assume=assume,
                # the objects behind urls are not the workspace's: the lock's stand
                assume_urls=entry.urls if entry is not None else {},
                entries=lock.steps,
            )
            reasons = [
                str(r) for r in check.reasons if r.kind not in ("out missing", "out modified")
            ]
            if check.state == STALE and reasons:
                mismatched.append((name, reasons))
    for name in sorted(set(lock.steps) - set(project.pipeline.steps)):
        mismatched.append((name, ["no longer in the pipeline"]))
    return mismatched


def why(project: Project, name: str) -> Explanation:
    """What `repro` would do with a step and why: its key, component by component,
    against the lock and the nearest stored result."""
    members = project.pipeline.groups.get(name)
    if members:
        raise UsageError(
            f"{name!r} stands for {len(members)} steps; name one of them: "
            + ", ".join(members[:5])
            + (", ..." if len(members) > 5 else "")
        )
    project.select([name], single=True)
    names = project.select([name])  # it and what it reads: the plan a repro makes
    lock = project.read_lock()
    entry = lock.steps.get(name)
    with project.inputs(readonly=not project.state_dir.is_dir()) as inputs:
        planner = project.planner(inputs, lock)
        decision = planner.plan(names, project.graph.parents)[-1]
        record = decision.record
        explanation = Explanation(
            step=name,
            state=decision.state,
            action=decision.action,
            source=decision.source,
            reasons=tuple(str(r) for r in decision.reasons),
            upstream=decision.upstream,
            note=decision.skip,
        )
        if record is None:
            return explanation
        from gitpipe.run import explain

        now = explain.comparable(record.as_record())
        explanation.key = str(record.key)
        explanation.code = tuple(record.code)
        if entry is not None:
            explanation.lock_key = str(entry.key)
            explanation.against_lock = explain.compare(now, explain.from_lock(entry))
        best: tuple[int, str, list[explain.Component]] | None = None
        for key in known_keys(project, name, entry):
            result = planner.runcache.get(Digest.parse(key))
            if result is None or not result.record:
                continue
            diffs = explain.differences(explain.compare(now, explain.comparable(result.record)))
            if best is None or len(diffs) < best[0]:
                best = (len(diffs), key, diffs)
        if best is not None:
            explanation.nearest_key, explanation.nearest = best[1], best[2]
    return explanation


def known_keys(project: Project, name: str, entry: LockEntry | None) -> list[str]:
    """Keys this step had: the lock's, then those lineage saw, newest first."""
    keys = [str(entry.key)] if entry is not None else []
    path = project.state_dir / "lineage.db"
    if path.exists():
        from gitpipe.run.lineage import LineageError, connect

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


def approve(project: Project, name: str) -> tuple[list[tuple[str, str]], str]:
    """Approve a step (`approval = true`) to run with its key as it is now;
    returns each step approved with its key, and who approved.  A matrix step or
    nested pipeline approves each of its steps that asks for approval."""
    names = project.select([name], single=True)
    asking = [n for n in names if project.pipeline.steps[n].approval]
    if not asking:
        raise UsageError(f"step {name!r} does not ask for approval (no `approval = true`)")
    lock = project.read_lock()
    project.ensure_state_dir()
    who = project.user()
    keys = []
    with project.inputs(readonly=False) as inputs:
        for step_name in asking:
            check = inputs.check(
                project.pipeline.steps[step_name], lock.steps.get(step_name), entries=lock.steps
            )
            if check.record is None:
                why = "; ".join(str(r) for r in check.reasons)
                raise UsageError(
                    f"step {step_name!r} cannot be approved yet ({why}); run "
                    "`gitpipe repro` until it waits for approval"
                )
            keys.append((step_name, str(check.record.key)))
    from gitpipe.run.lineage import record_approval

    for step_name, key in keys:
        record_approval(project.state_dir / "lineage.db", step_name, key, who)
    project.keep_caches()
    return keys, who


def status_of(decision: Decision) -> StepStatus:
    """What `gitpipe status` shows of a decision."""
    reasons = decision.reasons
    if decision.skip and decision.action not in (WAITING, RESTORE):
        reasons = (*reasons, Reason(decision.skip))
    record = decision.record
    if record is not None:
        code, note = tuple(record.code), ""
    elif decision.upstream:
        code, note = (), f"worked out once {', '.join(decision.upstream)} has run"
    elif decision.action in (FROZEN, SKIPPED):
        code, note = (), f"not worked out ({decision.action})"
    else:
        missing = "; ".join(str(r) for r in decision.reasons) or "its inputs are incomplete"
        code, note = (), f"not worked out ({missing})"
    return StepStatus(
        step=decision.step,
        state=decision.state,
        reasons=tuple(reasons),
        cached=decision.action == RESTORE,
        upstream=decision.upstream,
        key=decision.key,
        code=code,
        action=decision.action,
        source=decision.source,
        code_note=note,
    )
