"""Metrics over time and experiments: `gitpipe metrics --history`, `gitpipe exp`.

    Project ──> metrics_history(limit) ──> gitpipe.history.metrics ──> MetricsHistory
            ──> experiments()          ──> lineage's runs with `-p` ──> Experiment, newest first
            ──> compare(a, b)          ──> ExperimentDiff: params and metrics side by side
            ──> apply(ref)             ──> [params] written, the lock names the
                                           experiment's results, `repro --frozen` restores them

An **experiment** is a run given params of its own (`repro -p NAME=VALUE`), as
lineage recorded it.  Its id is the random part of its run id (``20260107T101500Z-
3fa2c1`` is ``3fa2c1``), or the whole run id where two share that part.  Its metrics
are those of the steps it ran or restored, and of the steps it found up to date with
the key gitpipe.lock still names (the lock's).  Its state is its run's status (``ok``,
``failed``, ``interrupted``, ``killed``, ...), and ``applied`` for a finished one whose
params the pipeline file holds now.

Applying one runs nothing.  The planner decides every step with the experiment's
params, preferring the very results the experiment left (lineage records their
digests); a step that would have to run, or whose key is no longer the one the
experiment had, refuses the whole apply before anything is written.  Then the params
are written into the pipeline file (only their values, see
:mod:`gitpipe.pipeline.paramsedit`), gitpipe.lock gets the entries of those results,
and `repro --frozen` restores them through the verified restore path: the lock is the
truth, and `status --check` then finds it up to date.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import shlex
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitpipe.core import atomic
from gitpipe.core.errors import GitError, GitpipeError, StaleError, UsageError
from gitpipe.core.hashing import Digest
from gitpipe.history.git import Repository
from gitpipe.history.metrics import MetricsHistory, VersionMetrics, committed_params
from gitpipe.history.metrics import metrics_history as read_history
from gitpipe.history.shape import PipelinePath
from gitpipe.pipeline.paramfiles import IN_PARAMS
from gitpipe.pipeline.paramsedit import ParamsSource, TomlParams, source_for, toml_value
from gitpipe.pipeline.values import flatten, jsonable, metric_delta, numbers
from gitpipe.run import events as ev
from gitpipe.run.planner import FROZEN, RESTORE, RUN, SKIPPED, WAITING, Decision, entry_for, refusal
from gitpipe.store import lockfile
from gitpipe.store.lockfile import Lock

if TYPE_CHECKING:
    from gitpipe.workspace import Project
    from gitpipe.workspace.reproduce import RunReport

__all__ = [
    "ApplyReport",
    "Experiment",
    "ExperimentDiff",
    "MetricsHistory",
    "VersionMetrics",
    "apply",
    "compare",
    "experiments",
    "find",
    "metrics_history",
]

#: what `exp diff` accepts for the committed side
HEAD = "HEAD"
#: the state of a finished experiment whose params the pipeline file holds
APPLIED = "applied"


def metrics_history(project: Project, *, limit: int | None = None) -> MetricsHistory:
    """Each step's metrics per commit along HEAD's first-parent history (each commit
    whose gitpipe.lock changed), oldest first, and the working tree's last when its
    lock records other metrics than HEAD's; the ``limit`` newest points (see
    :mod:`gitpipe.history.metrics`).  Raises :class:`GitError` outside Git."""
    if limit is not None and limit < 1:
        raise UsageError("-n takes a positive number of versions")
    return read_history(project.file, state_dir=project.state_dir, limit=limit)


@dataclass(frozen=True, slots=True)
class Experiment:
    """One `repro -p` run: its params, metrics (step -> name -> number) and state."""

    id: str
    time: float
    overrides: Mapping[str, Any]  # every -p NAME=VALUE it was given
    metrics: Mapping[str, Mapping[str, int | float]]
    state: str  # its run's status, or "applied"
    run_id: str
    commit: str | None = None  # HEAD when it ran (None outside Git)
    #: each override's param as the commit held it (absent: the commit had none)
    committed: Mapping[str, Any] = field(default_factory=dict)
    #: step -> the key it ran or was restored with in this run
    keys: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def changed(self) -> dict[str, Any]:
        """The overrides whose values differ from the committed params."""
        return {
            name: value
            for name, value in self.overrides.items()
            if name not in self.committed or not _same(self.committed[name], value)
        }

    @property
    def applied(self) -> bool:
        return self.state == APPLIED

    @property
    def date(self) -> str:
        return datetime.datetime.fromtimestamp(self.time, datetime.timezone.utc).isoformat(
            timespec="seconds"
        )

    def to_json(self) -> dict[str, Any]:
        return jsonable(
            {
                "id": self.id,
                "run": self.run_id,
                "time": self.time,
                "date": self.date,
                "commit": self.commit,
                "state": self.state,
                "overrides": dict(self.overrides),
                "changed": {
                    name: {"committed": self.committed.get(name), "value": value}
                    for name, value in self.changed.items()
                },
                "metrics": {step: dict(values) for step, values in self.metrics.items()},
            }
        )


def _same(a: Any, b: Any) -> bool:
    """Equal as TOML values: of one type (``1`` is not ``1.0``, nor ``true``)."""
    return type(a) is type(b) and a == b


def experiments(project: Project) -> tuple[Experiment, ...]:
    """The experiments lineage recorded, newest first (none without lineage)."""
    from gitpipe.run import lineage

    if not (project.state_dir / "lineage.db").exists():
        return ()  # nothing ran here yet
    rows = lineage.experiment_runs(_database(project))
    lock = project.read_lock()
    now = flatten(project.pipeline.params)
    params_at = _committed(project)
    suffixes: dict[str, int] = {}
    for row in rows:
        suffixes[_suffix(row["id"])] = suffixes.get(_suffix(row["id"]), 0) + 1
    found = []
    for row in rows:
        overrides = row["overrides"]
        state = row["status"] or "running"
        if state == "ok" and all(
            name in now and _same(now[name], value) for name, value in overrides.items()
        ):
            state = APPLIED
        suffix = _suffix(row["id"])
        found.append(
            Experiment(
                id=suffix if suffixes[suffix] == 1 else row["id"],
                time=_seconds(row["started"]),
                overrides=overrides,
                metrics=_metrics_of(row["steps"], lock),
                state=state,
                run_id=row["id"],
                commit=row["git_commit"],
                committed={
                    name: value
                    for name, value in (params_at(row["git_commit"]) or {}).items()
                    if name in overrides
                },
                keys={
                    step: ex["key"]
                    for step, ex in row["steps"].items()
                    if ex["key"] and ex["state"] in (ev.RAN, ev.CACHED)
                },
            )
        )
    return tuple(found)


def _database(project: Project) -> Any:
    """Lineage, read-only: listing experiments changes nothing."""
    from gitpipe.run.lineage import read_only

    return read_only(project.state_dir / "lineage.db")


def _suffix(run_id: str) -> str:
    """A run id's random part (after its last "-"), its short name."""
    return run_id.rpartition("-")[2] or run_id


def _seconds(iso: str | None) -> float:
    if not iso:
        return 0.0
    try:
        return datetime.datetime.fromisoformat(iso).timestamp()
    except ValueError:
        return 0.0


def _metrics_of(steps: Mapping[str, Mapping[str, Any]], lock: Lock) -> dict[str, dict[str, Any]]:
    """An experiment's numbers: what the steps it ran or restored recorded, and the
    lock's for a step it found up to date with the lock's key."""
    found = {}
    for step, ex in steps.items():
        files = ex["metrics"]
        entry = lock.steps.get(step)
        if not files and entry is not None and ex["key"] == str(entry.key):
            files = entry.metrics
        values = numbers(files)
        if values:
            found[step] = values
    return dict(sorted(found.items()))


def _committed(project: Project) -> Callable[[str | None], dict[str, Any] | None]:
    """A reader of the flat params of the pipeline file at a commit, each commit read
    once; the working tree's params for a run outside Git."""
    seen: dict[str | None, dict[str, Any] | None] = {}

    def read(commit: str | None) -> dict[str, Any] | None:
        if commit not in seen:
            seen[commit] = flatten(project.pipeline.params) if commit is None else None
            repo = Repository.find(project.root) if commit is not None else None
            if repo is not None and commit is not None:
                with repo, contextlib.suppress(GitError):  # a commit a shallow clone lacks
                    seen[commit] = committed_params(
                        repo, PipelinePath.of(repo, project.file), commit
                    )
        return seen[commit]

    return read


def find(project: Project, ref: str, found: Sequence[Experiment] | None = None) -> Experiment:
    """The experiment named by its id, its run id, or a unique prefix of either.
    Raises :class:`UsageError` for an unknown or ambiguous one."""
    found = experiments(project) if found is None else found
    exact = [e for e in found if ref in (e.id, e.run_id)]
    if exact:
        return exact[0]
    matches = [e for e in found if ref and (e.id.startswith(ref) or e.run_id.startswith(ref))]
    if len(matches) == 1:
        return matches[0]
    if matches:
        listed = ", ".join(e.id for e in matches[:5])
        raise UsageError(
            f"{ref!r} names {len(matches)} experiments ({listed}); give more of the id"
        )
    known = (
        f"; `gitpipe exp show` lists the {len(found)} recorded"
        if found
        else ("; none is recorded yet: run `gitpipe repro -p NAME=VALUE` to make one")
    )
    raise UsageError(f"there is no experiment {ref!r}{known}")


# -- exp diff ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Side:
    """One side of `exp diff`: an experiment, or HEAD's committed params and lock."""

    label: str
    params: Mapping[str, Any]  # flat: every param, the experiment's overrides put in
    metrics: Mapping[str, Mapping[str, int | float]]


@dataclass(frozen=True, slots=True)
class ExperimentDiff:
    """Two sides' params where they differ, and every metric of either with its delta."""

    a: Side
    b: Side
    #: (name, a's value, b's value); None where a side lacks the param
    params: tuple[tuple[str, Any, Any], ...]
    #: (step, metric, a's value, b's value, delta b - a); None where a side lacks it
    metrics: tuple[tuple[str, str, Any, Any, int | float | None], ...]

    def to_json(self) -> dict[str, Any]:
        return jsonable(
            {
                "a": self.a.label,
                "b": self.b.label,
                "params": [{"name": n, "a": a, "b": b} for n, a, b in self.params],
                "metrics": [
                    {"step": s, "name": n, "a": a, "b": b, "delta": d}
                    for s, n, a, b, d in self.metrics
                ],
            }
        )


def compare(project: Project, a: str, b: str = HEAD) -> ExperimentDiff:
    """Experiment ``a`` against ``b``: another experiment, or ``HEAD`` (its committed
    params and the metrics its gitpipe.lock records)."""
    found = experiments(project)
    left, right = _side(project, a, found), _side(project, b, found)
    names = sorted(set(left.params) | set(right.params))
    params = tuple(
        (name, left.params.get(name), right.params.get(name))
        for name in names
        if name not in left.params
        or name not in right.params
        or not _same(left.params[name], right.params[name])
    )
    keys = sorted(
        {(s, n) for side in (left, right) for s, values in side.metrics.items() for n in values}
    )
    metrics = []
    for step, name in keys:
        old = left.metrics.get(step, {}).get(name)
        new = right.metrics.get(step, {}).get(name)
        metrics.append((step, name, old, new, metric_delta(old, new)))
    return ExperimentDiff(left, right, params, tuple(metrics))


def _side(project: Project, ref: str, found: Sequence[Experiment]) -> Side:
    if ref.upper() == HEAD:
        return _head(project)
    experiment = find(project, ref, found)
    base = _committed(project)(experiment.commit) or flatten(project.pipeline.params)
    return Side(
        f"experiment {experiment.id}",
        {**base, **flatten(dict(experiment.overrides))},
        experiment.metrics,
    )


def _head(project: Project) -> Side:
    repo = Repository.find(project.root)
    if repo is None:
        raise GitError(f"{project.root} is not inside a Git repository: there is no HEAD")
    with repo:
        head = repo.head_commit()
        if head is None:
            raise UsageError("HEAD has no commit yet; commit the pipeline and its lock first")
        pipeline = PipelinePath.of(repo, project.file)
        params = committed_params(repo, pipeline, head) or {}
        text = repo.read_file(head, pipeline.lock)
    recorded = lockfile.metrics_of(text.decode("utf-8")) if text is not None else {}
    metrics = {step: numbers(files) for step, files in sorted(recorded.items())}
    return Side(f"HEAD ({head[:7]})", params, {s: v for s, v in metrics.items() if v})


# -- exp apply --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApplyReport:
    """What `exp apply` did: the params it wrote, where, and the run that restored."""

    experiment: Experiment
    files: tuple[Path, ...]  # where the params were written, each file once
    params: Mapping[str, Any]
    restored: tuple[str, ...]  # steps whose lock entry now names the experiment's results
    run: RunReport | None = None

    def to_json(self) -> dict[str, Any]:
        return jsonable(
            {
                "experiment": self.experiment.id,
                "files": [path.name for path in self.files],
                "params": dict(self.params),
                "restored": list(self.restored),
                "run": self.run.run_id if self.run is not None else None,
            }
        )


def params_sources(project: Project, dotted: Iterable[str]) -> dict[ParamsSource, list[str]]:
    """Where each of those params is written: the ``[params]`` table of the pipeline
    file, or the params file that defines it (YAML, JSON or TOML, edited in place)."""
    files = {f.written: f for f in project.pipeline.params_files}
    sources: dict[ParamsSource, list[str]] = {}
    for name in dotted:
        origin = project.pipeline.params_origin.get(name, IN_PARAMS)
        if origin == IN_PARAMS:
            source: ParamsSource = TomlParams(project.file, ("params",))
        else:
            file = files[origin]
            source = source_for(project.root / file.path, file.format)
        sources.setdefault(source, []).append(name)
    return sources


def apply(
    project: Project,
    ref: str,
    *,
    listeners: Sequence[ev.Listener] = (),
    argv: Sequence[str] = (),
) -> ApplyReport:
    """Make an experiment the pipeline's state, running nothing: its params into the
    pipeline file, its results into gitpipe.lock and the workspace (see the module's
    docstring).  Raises :class:`UsageError` for an unknown id, an experiment that did
    not finish, or params that cannot be written safely, and :class:`StaleError` when
    a step would have to run; then nothing is written."""
    from gitpipe.run.lineage import execution_outputs
    from gitpipe.workspace import Project as Workspace

    experiment = find(project, ref)
    if experiment.state not in ("ok", APPLIED):
        raise UsageError(
            f"experiment {experiment.id} is {experiment.state}: only one that finished "
            "(state ok) can be applied"
        )
    overrides = experiment.overrides
    edits = {
        source: source.edited({name: overrides[name] for name in names})
        for source, names in params_sources(project, overrides).items()
    }
    preferred = {
        Digest.parse(experiment.keys[step]): {path: Digest.parse(d) for path, d in outs.items()}
        for step, outs in execution_outputs(_database(project), experiment.run_id).items()
        if step in experiment.keys
    }

    def opened(overrides: Mapping[str, Any] | None) -> Project:
        return Workspace(
            project.file,
            cache_dir=project.store_dir,
            environ=project.environ,
            overrides=overrides,
        )

    _settled(opened(experiment.overrides), experiment, preferred, lock=False)
    before = {path: _bytes(path) for path in (*(s.path for s in edits), project.lock_path)}
    try:
        for source, edited in edits.items():
            if before[source.path] != edited:
                atomic.write_bytes(source.path, edited, mode=_mode(source.path))
        applied = opened(None)
        lock, restored = _settled(applied, experiment, preferred, lock=True)
        applied.ensure_state_dir()
        lockfile.write(applied.lock_path, lock, tmp_dir=applied.state_dir / "tmp")
        report = applied.repro(frozen=True, listeners=listeners, argv=argv)
    except BaseException:
        for path, data in before.items():
            with contextlib.suppress(OSError):
                if data is None:
                    path.unlink(missing_ok=True)
                elif _bytes(path) != data:
                    atomic.write_bytes(path, data, mode=_mode(path))
        raise
    files = tuple(source.path for source in edits)
    return ApplyReport(experiment, files, dict(experiment.overrides), restored, report)


def _settled(
    project: Project,
    experiment: Experiment,
    preferred: Mapping[Digest, Mapping[str, Digest]],
    *,
    lock: bool,
) -> tuple[Lock, tuple[str, ...]]:
    """Decide every step with the experiment's params: each must be up to date or
    restore the experiment's results, else :class:`StaleError`.  With ``lock``, the
    lock naming them, and the steps that restore."""
    from gitpipe.workspace.reproduce import new_lock

    current = project.read_lock()
    names = project.select()
    with project.inputs(readonly=True) as inputs:
        planner = project.planner(inputs, current, preferred=preferred)
        decisions = planner.plan(names, project.graph.parents)
        _refuse(experiment, decisions, preferred)
        entries = dict(current.steps)
        restored = []
        for d in decisions:
            if d.action == RESTORE and d.record is not None and d.result is not None:
                step = (d.check.step if d.check else None) or project.pipeline.steps[d.step]
                entries[d.step] = entry_for(step, d.record, d.result)
                restored.append(d.step)
        live = {name: entry for name, entry in entries.items() if name in project.pipeline.steps}
        return (new_lock(project, inputs, live) if lock else current), tuple(restored)


def _refuse(
    experiment: Experiment,
    decisions: Sequence[Decision],
    preferred: Mapping[Digest, Mapping[str, Digest]],
) -> None:
    """Raise :class:`StaleError` unless every step is up to date or restores what the
    experiment made."""
    rerun = (
        "; run `gitpipe repro "
        + " ".join(f"-p {name}={_shown(value)}" for name, value in experiment.overrides.items())
        + "` to make them again"
    )
    stuck = [d for d in decisions if d.action in (RUN, WAITING)]
    if stuck:
        raise StaleError(
            f"experiment {experiment.id} cannot be applied without running: {refusal(stuck)}{rerun}"
        )
    for d in decisions:
        key = experiment.keys.get(d.step)
        if key is None or d.action in (SKIPPED, FROZEN):
            continue
        if d.key != key:
            raise StaleError(
                f"experiment {experiment.id} cannot be applied: step {d.step} now has "
                f"another key than it had then (its code, data or pipeline changed){rerun}"
            )
        wanted = preferred.get(Digest.parse(key))
        made = {p.rstrip("/"): o.digest for p, o in d.result.outs.items()} if d.result else None
        if d.action == RESTORE and wanted is not None and made != wanted:
            raise StaleError(
                f"experiment {experiment.id} cannot be applied: the store no longer holds "
                f"the outputs of step {d.step} it made (`gitpipe gc` removed them?){rerun}"
            )


def _shown(value: Any) -> str:
    """A param's value as `-p NAME=VALUE` takes it, quoted for a shell where needed."""
    return shlex.quote(toml_value(value))


def _bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _mode(path: Path) -> int | None:
    try:
        return os.stat(path).st_mode & 0o7777
    except OSError:
        return None


def holding(project: Project, held: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> str:
    """The id of the newest experiment whose metrics the work tree's metrics files hold
    (step -> file -> values), "" when none matches."""
    wanted = {step: numbers(files) for step, files in held.items()}
    try:
        found = experiments(project)
    except (GitpipeError, sqlite3.Error):
        return ""  # naming it is a courtesy: the diff stands without
    for experiment in found:
        if all(
            experiment.metrics.get(step, {}) == values for step, values in wanted.items() if values
        ):
            return experiment.id
    return ""
