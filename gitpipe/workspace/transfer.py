"""`push` and `pull`: the store's objects and results to and from a remote.

    Project ──> prepare(direction)  the remote the project uses, and what to move:
                                    what gitpipe.lock names, or the whole store
            ──> transfer(plan)      the store layer's push or pull, with a progress
                                    listener ──> TransferReport
            ──> verified(report)    RemoteError when anything failed verification

The moving itself is :mod:`gitpipe.store.remote`'s; this chooses the remote and the
selection and, for a pull, notes the clone in the store so that `gc` keeps it.  The
words the command says of it are here too (:func:`nothing_named`,
:func:`report_line`, :func:`unavailable_line`, :func:`skipped_line`,
:class:`ProgressLines`), written
through the writer a view hands in: the command line and its fast path
(gitpipe/__main__.py) say the same.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gitpipe.core.console import first_of, size
from gitpipe.core.errors import PipelineError, RemoteError, UsageError

if TYPE_CHECKING:
    from gitpipe.store.remote import (
        Progress,
        ProgressListener,
        Remote,
        Selection,
        TransferReport,
    )
    from gitpipe.workspace import Project

DIRECTIONS = ("push", "pull")


@dataclass(frozen=True, slots=True)
class Plan:
    """One push or pull, ready to go: where to, and what (None: the whole store)."""

    direction: str  # push | pull
    remote: Remote
    selection: Selection | None
    jobs: int | None = None

    @property
    def empty(self) -> bool:
        """True when gitpipe.lock names nothing to move."""
        return self.selection is not None and self.selection.empty


def prepare(
    project: Project,
    direction: str,
    *,
    remote: str | None = None,
    everything: bool = False,
    jobs: int | None = None,
) -> Plan:
    """The remote (``remote``: a folder, ``file://PATH`` or ``s3://BUCKET/PREFIX``;
    default: ``$GITPIPE_REMOTE``, then the pipeline file's remote url) and what
    gitpipe.lock and gitpipe.data name, or, with ``everything``, the whole store."""
    from gitpipe.store import lockfile
    from gitpipe.store import remote as remotes

    if direction not in DIRECTIONS:
        raise UsageError(f"unknown direction {direction!r} (push or pull)")
    if not project.file.is_file():  # no pipeline: no lock to name outputs, no store
        raise PipelineError(
            f"no pipeline file here, so there is nothing to {direction}; run `gitpipe "
            "init` to create one, or pass -f FILE",
            file=project.file.name,
        )
    if jobs is not None and jobs < 1:
        raise UsageError("--jobs takes a positive number")
    far = remotes.for_project(project, remote, cwd=Path.cwd())
    chosen = None
    if not everything:
        from gitpipe.store import datafile

        chosen = remotes.Selection.from_locks(lockfile.read(project.lock_path))
        added = datafile.read(datafile.path_for(project.file))
        chosen = chosen | remotes.Selection.from_records(added)
    return Plan(direction, far, chosen, jobs)


def transfer(
    project: Project,
    plan: Plan,
    *,
    run_cache: bool = True,
    progress: ProgressListener | None = None,
) -> TransferReport:
    """Move what ``plan`` names, only what the other side lacks, every byte verified;
    ``run_cache``: the steps' run-cache results too.  The report lists what failed
    verification (see :func:`verified`)."""
    from gitpipe.store import remote as remotes
    from gitpipe.store.objects import Store

    if plan.direction == "pull":  # so that `gc` in any clone sharing the store keeps it
        project.register_clone()
    move = remotes.push if plan.direction == "push" else remotes.pull
    return move(
        Store(project.store_dir),
        plan.remote,
        plan.selection,
        run_cache=run_cache,
        jobs=plan.jobs,
        progress=progress or remotes.ignore_progress,
    )


def verified(report: TransferReport, *, placing: bool = False) -> TransferReport:
    """The report, unless something failed verification: then :class:`RemoteError`
    saying what, what did come (a pull takes in everything that passed), and what to
    do, with the report as its ``report``.  ``placing``: the pull was to put outputs
    in the workspace (`checkout --pull`), which is then left as it was."""
    if not report.rejected:
        return report
    shown = first_of([str(r) for r in report.rejected], 3, sep="; ", more="; and {} more")
    if report.direction == "pull":
        came = f"the {report.objects} object(s)"
        came += f" and {report.results} result(s)" if report.results else ""
        came += " that passed are in the store"
        if placing:
            came += ", and nothing in the workspace was changed"
        advice = (
            f"nothing rejected was written here ({came}); the copies on {report.url} "
            "are damaged or forged: delete them there and push again from a clone "
            "that has them"
        )
    else:
        advice = "the damaged local objects were not pushed"
    error = RemoteError(f"{len(report.rejected)} item(s) failed verification: {shown}; {advice}")
    error.report = report  # type: ignore[attr-defined]
    raise error


# -- what the command says ----------------------------------------------------------------


def nothing_named(project: Project, direction: str) -> str:
    """The warning of a push or pull whose lock and data records name nothing."""
    return (
        f"gitpipe: {project.lock_path.name} names no outputs and no data is added yet; "
        f"run `gitpipe repro` or `gitpipe add` first, or pass --all to {direction} the "
        "whole store"
    )


def report_line(report: TransferReport, *, run_cache: bool) -> str:
    """The one line saying what moved, where to, and what was there already."""
    pushed = report.direction == "push"
    moved, where, here = ("pushed", "to", "there") if pushed else ("pulled", "from", "here")
    line = f"{moved} {report.objects} object(s) ({size(report.bytes)})"
    if run_cache:
        line += f" and {report.results} result(s)"
    line += f" {where} {report.url} in {report.duration:.2f} s"
    if report.objects_present or report.results_present:
        line += f"; {report.objects_present} object(s)"
        if run_cache:
            line += f" and {report.results_present} result(s)"
        line += f" were {here} already"
    return line


def unavailable_line(report: TransferReport) -> str | None:
    """The warning naming what was wanted and the sending side lacks, if anything."""
    if not report.unavailable:
        return None
    side = "the local store" if report.direction == "push" else "the remote"
    shown = first_of(report.unavailable, 3)
    return f"gitpipe: {len(report.unavailable)} wanted item(s) are not in {side}: {shown}"


def skipped_line(report: TransferReport) -> str | None:
    """The warning naming the remote's pack indexes that were not used, if any."""
    if not report.skipped:
        return None
    shown = first_of([str(s) for s in report.skipped], 3, sep="; ", more="; and {} more")
    return (
        f"gitpipe: skipped {len(report.skipped)} pack index(es) on {report.url}: "
        f"{shown}; their objects were looked for elsewhere (delete what is "
        "left of them there)"
    )


class ProgressLines:
    """Plain progress lines (a phase's start and end, and every few seconds), each
    handed to ``write``: the view in CI, pipes and logs."""

    EVERY = 5.0

    def __init__(self, write: Callable[[str], None]) -> None:
        self._write = write
        self._last: dict[str, float] = {}

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        finished = progress.done == progress.total
        if not finished and now - self._last.get(progress.phase, 0.0) < self.EVERY:
            return
        self._last[progress.phase] = now
        moved = f", {size(progress.bytes)}" if progress.bytes else ""
        stamp = time.strftime("%H:%M:%S")
        self._write(f"{stamp} {progress.phase}: {progress.done}/{progress.total}{moved}")

    def close(self) -> None:
        return None
