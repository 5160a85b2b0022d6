"""Pipeline versions, derived from first-parent history of HEAD; labels, never keys.

    shape.py   a pipeline at a commit or in the work tree (Snapshot)
    rules.py   how one snapshot differs from the next, and the bump it makes
    walk.py    the first-parent walk, and its cache .gitpipe/versions.db
    versions   what is asked of them: the version a repro writes into the lock,
               version names as revisions, and `gitpipe versions`

The first commit holding the pipeline file is ``1.0.0``; each later commit bumps
the major, minor or patch number by what changed (see :mod:`gitpipe.history.rules`),
and each step has its own version by the same rule.  A work tree that differs from
HEAD shows ``+dirty``.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gitpipe.core.errors import GitError, PipelineError, UsageError
from gitpipe.history.git import Repository
from gitpipe.history.rules import (
    UNKNOWN,
    VERSION_NAME,
    bump,
    compare,
    level_of,
    step_changes,
    summarise,
)
from gitpipe.history.shape import VALID, PipelinePath, Snapshots, worktree_snapshot
from gitpipe.history.walk import History, Point, cache_path, head_point, history

SHALLOW = "unknown (shallow clone; fetch more history)"
DIRTY = "+dirty"


def version_for_lock(project_root: Path, pipeline_file: Path, fingerprint: str) -> str:
    """The version a repro writes into the lock: the version the pipeline it ran has
    once committed on top of HEAD.  That is HEAD's when the fingerprint is HEAD's, and
    otherwise HEAD's bumped by what the working tree changes (``1.0.0`` for a pipeline
    HEAD does not hold yet), so that committing the lock with the change it records
    gives a lock that the next repro leaves as it is.  "" outside Git, or where a
    shallow clone cannot tell.  A label only: a repository
    it cannot read gives "", it never fails a run."""
    try:
        repo = Repository.find(project_root)
        if repo is None:
            return ""
        with repo:
            point = head_point(
                repo, pipeline_file, cache_file=cache_path(project_root / ".gitpipe")
            )
            if point is None:  # no commits yet: the first commit holding it is 1.0.0
                return "1.0.0"
            if point.state == VALID and point.fingerprint == fingerprint:
                return point.version if VERSION_NAME.match(point.version) else ""
            if point.state != VALID or not point.version:
                return "1.0.0"  # HEAD does not hold a valid pipeline: it starts here
            if not VERSION_NAME.match(point.version):
                return ""  # unknown (shallow)
            head, _ = Snapshots(repo, PipelinePath.of(repo, pipeline_file)).snapshot(
                repo.commit(point.commit).tree
            )
    except (GitError, PipelineError):
        return ""
    return bump(point.version, level_of(compare(head, worktree_snapshot(pipeline_file))))


def resolver(
    repo: Repository, pipeline_file: Path, *, cache_file: Path | None
) -> Callable[[str], str]:
    """Resolve revisions, version names (``1.2.0``, ``v1.2.0``) included.

    Git names come first: a tag called ``1.2.0`` means the tag."""
    found: dict[str, History] = {}

    def names(name: str) -> str | None:
        if not VERSION_NAME.match(name):
            return None
        if "history" not in found:
            found["history"] = history(repo, pipeline_file, cache_file=cache_file)
        past = found["history"]
        commit = past.commit_of(name)
        if commit is None:
            known = [p.version for p in past.points if VERSION_NAME.match(p.version)]
            shown = f" (from {known[-1]} to {known[0]})" if known else ""
            more = "; this is a shallow clone: fetch more history" if past.cut else ""
            raise GitError(
                f"no commit on HEAD's first-parent history carries version {name}{shown}{more}"
            )
        return commit

    def resolve(rev: str) -> str:
        return repo.resolve(rev, names=names)

    return resolve


# -- what `gitpipe versions` shows ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Release:
    """Where a version starts: the commit, its date and what changed."""

    version: str
    commit: str
    time: int
    offset: int
    changes: tuple[str, ...]
    summary: str = ""

    @property
    def date(self) -> str:
        return _dt.datetime.fromtimestamp(
            self.time, _dt.timezone(_dt.timedelta(seconds=self.offset))
        ).isoformat()

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "commit": self.commit,
            "date": self.date,
            "changes": list(self.changes),
            "summary": self.summary,
        }


def releases(past: History, step: str | None = None) -> list[Release]:
    """The commits where a new version starts, newest first, for the pipeline or one
    step.  In a cut shallow history the oldest commit held shows as ``unknown``."""
    found = []
    points = past.points

    def value(point: Point | None) -> str:
        if point is None:
            return ""
        return point.version if step is None else point.steps.get(step, "")

    for i, point in enumerate(points):
        now = value(point)
        before = value(points[i + 1] if i + 1 < len(points) else None)
        if not now or now == before:
            continue
        changes = summarise(c for c in point.changes if step is None or c.step == step)
        if point.note and (step is None or not changes):
            changes.insert(0, point.note)
        if not changes and not before:
            changes = (
                ["first version"] if now != UNKNOWN else ["the history of this clone starts here"]
            )
        found.append(
            Release(
                version=now,
                commit=point.commit,
                time=point.time,
                offset=point.offset,
                changes=tuple(changes),
                summary=point.summary,
            )
        )
    return found


def shown(version: str) -> str:
    """A version as people read it: ``unknown`` says why."""
    return SHALLOW if version.startswith(UNKNOWN) else version


@dataclass(frozen=True, slots=True)
class Report:
    """`gitpipe versions`: the current version (with ``+dirty``) and the releases."""

    pipeline: str  # top-relative path of the pipeline file
    head: str | None
    current: str  # "" when HEAD holds no pipeline
    dirty: bool
    shallow: bool
    releases: tuple[Release, ...]
    step: str | None = None
    #: why HEAD's pipeline cannot be read ("" when it can, or HEAD holds none)
    invalid: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline,
            "step": self.step,
            "head": self.head,
            "version": self.current,
            "dirty": self.dirty,
            "shallow": self.shallow,
            "versions": [release.to_json() for release in self.releases],
            "invalid": self.invalid,
        }


def report(pipeline_file: Path, *, state_dir: Path, step: str | None = None) -> Report:
    """The versions of a pipeline (or one step) and whether the work tree differs."""
    repo = Repository.find(pipeline_file.resolve().parent)
    if repo is None:
        raise GitError(
            f"{pipeline_file.resolve().parent} is not inside a Git repository; versions come "
            "from Git history, so run `git init` and commit the pipeline"
        )
    with repo:
        past = history(repo, pipeline_file, cache_file=cache_path(state_dir))
        head_snapshot = None
        if step is not None and past.head is not None:
            reader = Snapshots(repo, past.pipeline)
            head_snapshot = reader.snapshot(repo.commit(past.head).tree)[0]
    if step is not None and step not in past.step_names():
        raise UsageError(
            f"there is no step named {step!r} in the history of {past.pipeline.name} "
            f"(steps: {', '.join(sorted(past.step_names())) or 'none'})"
        )
    head = past.current
    now = worktree_snapshot(pipeline_file)
    current = ""
    dirty = False
    if head is not None and head.version:
        if step is None:
            current = head.version
            dirty = now.fingerprint != head.fingerprint or now.state != head.state
        else:
            current = head.steps.get(step, "")
            before = head_snapshot.steps.get(step) if head_snapshot else None
            dirty = bool(step_changes(step, before, now.steps.get(step)))
        if current and current != UNKNOWN and dirty:
            current += DIRTY
    return Report(
        pipeline=past.pipeline.path,
        head=past.head,
        current=current,
        dirty=dirty,
        shallow=past.cut,
        releases=tuple(releases(past, step)),
        step=step,
        invalid=head.note.partition(": ")[2] if head and head.state == "invalid" else "",
    )
