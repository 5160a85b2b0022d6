"""What lineage says of a workspace: its runs, one run's executions, and the origin of
the bytes at a path (`gitpipe log`, `show`, `lineage`).

    Project ──> runs(limit)     ──> the latest runs, newest first
            ──> run(ref)        ──> RunDetail: one run and its executions
            ──> origin(path)    ──> Origin: who made the bytes now at a path, from what
            ──> step_log(step)  ──> the log file of a step's latest (or one run's) execution

The queries are :mod:`gitpipe.run.lineage`'s and :mod:`gitpipe.run.provenance`'s; these
open the workspace's database as it is (a missing one is not made) and find the bytes
a path names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitpipe.core.errors import UsageError

if TYPE_CHECKING:
    import sqlite_utils

    from gitpipe.run.provenance import Origin
    from gitpipe.workspace import Project


def database(project: Project) -> sqlite_utils.Database:
    """The workspace's lineage database, as it is: a missing one is not made."""
    from gitpipe.run.lineage import connect

    return connect(project.state_dir / "lineage.db", create=False)


def runs(project: Project, *, limit: int = 20) -> list[dict[str, Any]]:
    """The latest runs, newest first, each with its execution counts by state."""
    from gitpipe.run import lineage

    return lineage.runs(database(project), limit=limit)


@dataclass(frozen=True, slots=True)
class RunDetail:
    """One run as lineage recorded it, and its executions in order."""

    run_id: str
    info: dict[str, Any]
    executions: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        head = {key: self.info[key] for key in ("status", "started", "ended", "dirty", "overrides")}
        return {
            "run": self.run_id,
            **head,
            "commit": self.info["git_commit"],
            "executions": self.executions,
        }


def run(project: Project, ref: str) -> RunDetail:
    """One run, named by its id, a unique prefix of one, or ``last``."""
    from gitpipe.run import lineage

    db = database(project)
    run_id = lineage.find_run(db, ref)
    return RunDetail(run_id, lineage.run(db, run_id), lineage.executions(db, run_id))


def step_log(project: Project, step: str, run: str | None = None) -> Path:
    """The log a step wrote when it last ran, or in the run ``run`` names (an id, a
    unique prefix, or ``last``).  Raises :class:`UsageError` for a step the pipeline
    does not name or that wrote no log there (it was restored, skipped, or not in it)."""
    from gitpipe.run import lineage

    db = database(project)
    run_id = lineage.find_run(db, run) if run is not None else None
    logs = lineage.step_logs(db, step, run_id)
    if not logs:
        steps = project.graph.order
        if step not in steps:
            raise UsageError(f"there is no step named {step!r} (steps: {', '.join(steps)})")
        where = f"run {run_id}" if run_id else "any recorded run"
        raise UsageError(f"step {step} wrote no log in {where} (it did not run there)")
    log = Path(logs[0])
    if not log.is_file():
        raise UsageError(f"the log of step {step} is gone ({log})")
    return log


def origin(project: Project, path: str | os.PathLike[str]) -> Origin:
    """Which step, run and commit produced the bytes now at ``path`` (relative to the
    current folder), and from what, back to the raw inputs.  Raises
    :class:`UsageError` when no recorded step wrote those bytes."""
    from gitpipe.run.provenance import origin as walk_back
    from gitpipe.store.objects import Store

    digest, relpath = _bytes_at(project, path)
    node = walk_back(database(project), relpath, digest, store=Store(project.store_dir))
    if node.made is None:
        raise UsageError(
            f"no recorded step wrote the bytes now at {relpath}; "
            "it is a raw input or was changed by hand"
        )
    return node


def _bytes_at(project: Project, path: str | os.PathLike[str]) -> tuple[str, str]:
    """The digest of the bytes at a workspace path, and that path relative to the
    pipeline's folder.  An output linked from the store (`link = "symlink"`) keeps
    its own name: the object it points to is not where the pipeline wrote it."""
    full = Path(os.path.abspath(path))
    if not (full.is_symlink() and full.is_file()):
        return project.digest_of(path)
    from gitpipe.core.hashing import digest_file

    place = Path(os.path.realpath(full.parent)) / full.name
    relpath = Path(os.path.relpath(place, project.root.resolve())).as_posix()
    if relpath == ".." or relpath.startswith("../"):
        raise UsageError(f"{path} is not inside this workspace ({project.root})")
    return str(digest_file(full)), relpath
