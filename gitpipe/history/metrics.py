"""What Git history records of results: each step's metrics per version, and the
params a commit held.

    first-parent commits (the versions walk, cached) ──> gitpipe.lock at each commit
        (a Git blob: nothing is checked out)  ──lockfile.metrics_of──> numbers
        ──> VersionMetrics per commit whose lock changed, oldest first
    + the working tree's gitpipe.lock, when its metrics differ from HEAD's

A point is a commit on HEAD's first-parent line whose ``gitpipe.lock`` differs from
the one before it: a commit that recorded results.  Commits without a lock, and
commits that left the lock as it was (a README edit), add no point.  A merge commit
is one point, with the lock it merged in; the merged branch's own commits are not on
the line.  Reading the locks is a scan of the tables that hold metrics
(:func:`gitpipe.store.lockfile.metrics_of`), so fifty 500-step locks take a few tens
of milliseconds; the versions come from the walk's cache (``.gitpipe/versions.db``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitpipe.core import tomlcache
from gitpipe.core.errors import GitError, LockfileError
from gitpipe.history.git import Repository
from gitpipe.history.shape import PipelinePath
from gitpipe.history.versions import DIRTY
from gitpipe.history.walk import cache_path, history
from gitpipe.pipeline.values import flatten, metric_delta, numbers
from gitpipe.store import lockfile

#: the subject of the working tree's point
WORKTREE = "working tree"

#: step -> metric name -> value (finite numbers only)
Metrics = Mapping[str, Mapping[str, int | float]]


@dataclass(frozen=True, slots=True)
class VersionMetrics:
    """One point of the history: a commit (or the working tree) and the metrics its
    ``gitpipe.lock`` records, step -> metric name -> value.

    ``version`` is the pipeline's version at that commit (`gitpipe versions`); the
    working tree's is HEAD's with ``+dirty``.  ``commit`` is None for the working
    tree, whose ``time`` is when its lock was last written."""

    version: str
    commit: str | None
    time: float
    subject: str
    metrics: Metrics

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "commit": self.commit,
            "time": self.time,
            "subject": self.subject,
            "metrics": {step: dict(values) for step, values in self.metrics.items()},
        }


@dataclass(frozen=True, slots=True)
class MetricsHistory:
    """The points, oldest first, the working tree last when it differs from HEAD."""

    points: tuple[VersionMetrics, ...]

    def names(self) -> list[tuple[str, str]]:
        """Every (step, metric) some point holds, sorted."""
        return sorted(
            {(s, n) for p in self.points for s, values in p.metrics.items() for n in values}
        )

    def deltas(self, index: int) -> dict[str, dict[str, int | float]]:
        """How far each metric of point ``index`` moved from the point before it (the
        metrics both hold; none for the first point)."""
        if index <= 0:
            return {}
        before, now = self.points[index - 1].metrics, self.points[index].metrics
        found: dict[str, dict[str, int | float]] = {}
        for step, values in now.items():
            for name, value in values.items():
                delta = metric_delta(before.get(step, {}).get(name), value)
                if delta is not None:
                    found.setdefault(step, {})[name] = delta
        return found

    def to_json(self) -> dict[str, Any]:
        """Plain dicts: each point with its metrics and its deltas from the one before."""
        return {
            "points": [
                {**point.to_json(), "deltas": self.deltas(i)} for i, point in enumerate(self.points)
            ]
        }


def metrics_history(
    pipeline_file: Path, *, state_dir: Path, limit: int | None = None
) -> MetricsHistory:
    """Each step's metrics per commit along HEAD's first-parent history (where the lock
    changed), and the working tree's when they differ from HEAD's; the ``limit``
    newest points.  Raises :class:`GitError` outside a Git repository."""
    repo = Repository.find(pipeline_file.resolve().parent)
    if repo is None:
        raise GitError(
            f"{pipeline_file.resolve().parent} is not inside a Git repository; metrics "
            "history is read from the gitpipe.lock of each commit"
        )
    points: list[VersionMetrics] = []
    with repo:
        past = history(repo, pipeline_file, cache_file=cache_path(state_dir))
        lock_path = past.pipeline.lock
        last_blob: str | None = None
        for point in reversed(past.points):  # oldest first
            blob = repo.blob_at(point.commit, lock_path)
            if blob is None or blob == last_blob:
                last_blob = blob
                continue
            last_blob = blob
            try:
                recorded = lockfile.metrics_of(repo.blob(blob).decode("utf-8"), name=lock_path)
            except (UnicodeDecodeError, LockfileError):
                continue  # a lock this gitpipe cannot read records nothing it can show
            points.append(
                VersionMetrics(
                    point.version, point.commit, point.time, point.summary, _numbers(recorded)
                )
            )
        head = past.current
    at_head = points[-1].metrics if points and last_blob is not None else None
    worktree = _worktree(lockfile.path_for(pipeline_file.resolve()), head.version if head else "")
    if worktree is not None and worktree.metrics != at_head:
        points.append(worktree)
    if limit is not None:
        points = points[-limit:] if limit > 0 else []
    return MetricsHistory(tuple(points))


def _numbers(
    recorded: Mapping[str, Mapping[str, Mapping[str, Any]]],
) -> dict[str, dict[str, int | float]]:
    """step -> metrics file -> values, as step -> name -> number (steps with none left out)."""
    found = {step: numbers(files) for step, files in sorted(recorded.items())}
    return {step: values for step, values in found.items() if values}


def _worktree(path: Path, head_version: str) -> VersionMetrics | None:
    """The working tree's point: what its gitpipe.lock records (None without one)."""
    try:
        text = path.read_text(encoding="utf-8")
        written = os.stat(path).st_mtime
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise LockfileError(f"cannot read {path.name} ({exc})") from exc
    version = f"{head_version}{DIRTY}" if head_version else ""
    return VersionMetrics(
        version, None, written, WORKTREE, _numbers(lockfile.metrics_of(text, name=path.name))
    )


def committed_params(
    repo: Repository, pipeline: PipelinePath, commit: str
) -> dict[str, Any] | None:
    """The ``[params]`` a commit's pipeline file holds, flat (dotted name -> value);
    None where the commit has no readable pipeline file."""
    data = repo.read_file(commit, pipeline.path)
    if data is None:
        return None
    try:
        table = tomlcache.loads(data.decode("utf-8")).get("params", {})
    except (UnicodeDecodeError, tomlcache.TOMLDecodeError):
        return None
    return flatten(table) if isinstance(table, Mapping) else None
