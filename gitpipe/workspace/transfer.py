"""`push` and `pull`: the store's objects and results to and from a remote.

    Project ──> prepare(direction)  the remote the project uses, and what to move:
                                    what gitpipe.lock names, or the whole store
            ──> transfer(plan)      the store layer's push or pull, with a progress
                                    listener ──> TransferReport
            ──> verified(report)    RemoteError when anything failed verification

The moving itself is :mod:`gitpipe.store.remote`'s; this chooses the remote and the
selection and, for a pull, notes the clone in the store so that `gc` keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from gitpipe.core.errors import PipelineError, RemoteError, UsageError

if TYPE_CHECKING:
    from gitpipe.store.remote import ProgressListener, Remote, Selection, TransferReport
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
        from gitpipe.workspace.data import read_records, selection_of

        chosen = remotes.Selection.from_locks(lockfile.read(project.lock_path))
        chosen = chosen | selection_of(read_records(project))  # and the added data
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


def verified(report: TransferReport) -> TransferReport:
    """The report, unless something failed verification: then :class:`RemoteError`
    saying what and what to do, with the report as its ``report``."""
    if not report.rejected:
        return report
    shown = "; ".join(str(r) for r in report.rejected[:3])
    more = f"; and {len(report.rejected) - 3} more" if len(report.rejected) > 3 else ""
    if report.direction == "pull":
        advice = (
            "nothing rejected was written here; the remote's copies are damaged or "
            "forged: delete them there and push again from a clone that has them"
        )
    else:
        advice = "the damaged local objects were not pushed"
    error = RemoteError(
        f"{len(report.rejected)} item(s) failed verification: {shown}{more}; {advice}"
    )
    error.report = report  # type: ignore[attr-defined]
    raise error
