"""gitpipe: reproducible data and ML pipelines on top of Git.

The public API; everything not named here is internal (docs/api.md).

>>> import gitpipe
>>> report = gitpipe.repro(path="path/to/repo")            # doctest: +SKIP
>>> [s.state for s in gitpipe.status(path="path/to/repo")]  # doctest: +SKIP
>>> gitpipe.why("train", path="path/to/repo").reasons       # doctest: +SKIP

Each function takes ``path``, the pipeline's folder or the pipeline file itself
(``file`` names another file in that folder), and keyword-only options as the
command of the same name has them; each returns an object whose ``to_json()`` is
what the command's ``--json`` prints, and raises the typed errors below (each with
the ``exit_code`` the command would exit with).  Importing gitpipe is cheap: the
functions import the rest when called.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence

from gitpipe.core.errors import (
    ApprovalNeeded,
    GitError,
    GitpipeError,
    Interrupted,
    LockfileError,
    PathError,
    PipelineError,
    RemoteError,
    StaleError,
    StepFailed,
    StorageFailed,
    StoreError,
    UsageError,
    WorkspaceBusy,
)

#: ``typing.TYPE_CHECKING``: importing `typing` costs every command a few
#: milliseconds, a no-op `status` too, which needs nothing of it
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from gitpipe.core.records import StepStatus
    from gitpipe.history.diff import PipelineDiff
    from gitpipe.history.versions import Report
    from gitpipe.run.events import Listener
    from gitpipe.run.provenance import Origin
    from gitpipe.store.remote import TransferReport
    from gitpipe.workspace import HookCall, Project
    from gitpipe.workspace.experiments import Experiment, MetricsHistory
    from gitpipe.workspace.inspection import Explanation
    from gitpipe.workspace.reproduce import RunReport

__version__ = "0.1.0"

__all__ = [
    "ApprovalNeeded",
    "GitError",
    "GitpipeError",
    "HookCall",
    "Interrupted",
    "LockfileError",
    "PathError",
    "PipelineError",
    "Project",
    "RemoteError",
    "StaleError",
    "StepFailed",
    "StorageFailed",
    "StoreError",
    "UsageError",
    "WorkspaceBusy",
    "__version__",
    "diff",
    "experiments",
    "lineage",
    "metrics_history",
    "params",
    "pull",
    "push",
    "repro",
    "status",
    "versions",
    "why",
]

PathLike = str | os.PathLike[str]
Hook = Callable[["HookCall"], None]


def _open(path: PathLike, file: str | None, overrides: Mapping[str, Any] | None = None) -> Project:
    from gitpipe.workspace import Project

    return Project.open(path, file=file, overrides=overrides)


def _names(targets: str | Iterable[str]) -> list[str]:
    """Step names: one name alone is one step, not its letters."""
    return [targets] if isinstance(targets, str) else list(targets)


def repro(
    *,
    path: PathLike = ".",
    file: str | None = None,
    targets: str | Iterable[str] = (),
    params: Mapping[str, Any] | None = None,
    force: bool = False,
    dry_run: bool = False,
    single: bool = False,
    downstream: bool = False,
    jobs: int | None = None,
    backend: str | None = None,
    scheduler: str | None = None,
    transfer: str | None = None,
    keep_going: bool = False,
    wait: bool = True,
    frozen: bool = False,
    pull: bool = False,
    push: bool = False,
    remote: str | None = None,
    approve: str | Iterable[str] = (),
    lock: bool = False,
    hooks: Mapping[str, Hook | Sequence[Hook]] | None = None,
    listeners: Sequence[Listener] = (),
) -> RunReport:
    """Bring the pipeline's steps (or ``targets``) up to date, as `gitpipe repro` does:
    restore what the store has, run the rest.  ``params`` overrides params by dotted
    name (``{"train.lr": 0.02}``, as ``-p``): an experiment that leaves gitpipe.lock
    alone unless ``lock``.  ``listeners`` hear every run event; nothing is printed.

    Raises :class:`StepFailed` when a step failed (its ``report`` is the run's),
    :class:`StaleError` with ``frozen`` when a step would have to run,
    :class:`ApprovalNeeded` when steps wait for approval."""
    project = _open(path, file, params)
    return project.repro(
        _names(targets),
        force=force,
        dry_run=dry_run,
        single=single,
        downstream=downstream,
        jobs=jobs,
        backend=backend,
        scheduler=scheduler,
        transfer=transfer,
        keep_going=keep_going,
        wait=wait,
        frozen=frozen,
        pull=pull,
        push=push,
        remote=remote,
        approve=_names(approve),
        lock=True if lock else None,
        hooks=hooks,
        listeners=listeners,
    )


def status(
    *,
    path: PathLike = ".",
    file: str | None = None,
    targets: str | Iterable[str] = (),
    single: bool = False,
    downstream: bool = False,
) -> list[StepStatus]:
    """Each step's state, what `repro` would do with it and why, as `gitpipe status`
    says it; nothing in the workspace changes."""
    return _open(path, file).status(_names(targets), single=single, downstream=downstream)


def why(step: str, *, path: PathLike = ".", file: str | None = None) -> Explanation:
    """What `repro` would do with ``step`` and why: its key, component by component,
    against gitpipe.lock and the nearest stored result (`gitpipe why`)."""
    return _open(path, file).why(step)


def versions(*, path: PathLike = ".", file: str | None = None, step: str | None = None) -> Report:
    """The pipeline's versions (or ``step``'s) from Git history: the current one and
    where each began, newest first (`gitpipe versions`)."""
    from gitpipe.workspace.history import versions as read_versions

    return read_versions(_open(path, file), step=step)


def diff(
    a: str | None = None,
    b: str | None = None,
    *,
    path: PathLike = ".",
    file: str | None = None,
    all_steps: bool = False,
) -> PipelineDiff:
    """What changed from revision ``a`` (default: HEAD) to ``b`` (default: the working
    tree), step by step: a revision is a SHA, branch, tag, ``HEAD~N`` or a version
    (`gitpipe diff`).  Unchanged steps only with ``all_steps``."""
    from gitpipe.workspace.history import diff as compare

    return compare(_open(path, file), a, b, all_steps=all_steps)


def metrics_history(
    *, path: PathLike = ".", file: str | None = None, limit: int | None = None
) -> MetricsHistory:
    """Each step's metrics per version along HEAD's first-parent history, oldest first,
    the working tree last when its lock records other metrics (`gitpipe metrics
    --history`); the ``limit`` newest points."""
    return _open(path, file).metrics_history(limit=limit)


def experiments(*, path: PathLike = ".", file: str | None = None) -> tuple[Experiment, ...]:
    """The experiments (`repro -p` runs) lineage recorded, newest first (`gitpipe exp
    show`)."""
    return _open(path, file).experiments()


def lineage(output: PathLike, *, path: PathLike = ".", file: str | None = None) -> Origin:
    """Which step, run and commit produced the bytes now at ``output`` (relative to
    the pipeline's folder), and from what, back to the raw inputs (`gitpipe
    lineage`).  Raises :class:`UsageError` when no recorded step wrote them."""
    from gitpipe.workspace.lineage import origin

    project = _open(path, file)
    return origin(project, project.root / output)


def push(
    *,
    path: PathLike = ".",
    file: str | None = None,
    remote: str | None = None,
    jobs: int | None = None,
    run_cache: bool = True,
    everything: bool = False,
) -> TransferReport:
    """Upload the outputs gitpipe.lock names (``everything``: the whole store) and,
    with ``run_cache``, their results, to the remote: only what it lacks (`gitpipe
    push`).  Raises :class:`RemoteError` when anything failed verification."""
    return _transfer("push", path, file, remote, jobs, run_cache, everything)


def pull(
    *,
    path: PathLike = ".",
    file: str | None = None,
    remote: str | None = None,
    jobs: int | None = None,
    run_cache: bool = True,
    everything: bool = False,
) -> TransferReport:
    """Download the outputs gitpipe.lock names (``everything``: the whole remote) and
    their results into the store, every byte verified (`gitpipe pull`); `repro`
    then restores them.  Raises :class:`RemoteError` when anything failed
    verification."""
    return _transfer("pull", path, file, remote, jobs, run_cache, everything)


def _transfer(
    direction: str,
    path: PathLike,
    file: str | None,
    remote: str | None,
    jobs: int | None,
    run_cache: bool,
    everything: bool,
) -> TransferReport:
    from gitpipe.workspace import transfer as transfers

    project = _open(path, file)
    plan = transfers.prepare(project, direction, remote=remote, everything=everything, jobs=jobs)
    return transfers.verified(transfers.transfer(project, plan, run_cache=run_cache))


def params() -> dict[str, Any]:
    """The params of the step this process runs for, as nested tables.

    gitpipe passes them in ``GITPIPE_PARAMS``; outside a step this is ``{}``.
    """
    # light: a step process calls this once, and needs json and os only
    from gitpipe.core.stepparams import current_params

    return current_params()


def __getattr__(name: str) -> Any:
    # Project pulls in the store and runner; import it only when asked for.
    if name in ("Project", "HookCall"):
        from gitpipe import workspace as project

        return getattr(project, name)
    raise AttributeError(f"module 'gitpipe' has no attribute {name!r}")
