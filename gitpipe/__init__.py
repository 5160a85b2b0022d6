"""gitpipe: reproducible data and ML pipelines on top of Git.

The public API; everything not named here is internal.

>>> import gitpipe
>>> project = gitpipe.Project.open("path/to/repo")   # doctest: +SKIP
>>> project.repro()                                  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

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
    "params",
]


def params() -> dict[str, Any]:
    """The params of the step this process runs for, as nested tables.

    gitpipe passes them in ``GITPIPE_PARAMS``; outside a step this is ``{}``.
    """
    from gitpipe.workspace import current_params

    return current_params()


def __getattr__(name: str) -> Any:
    # Project pulls in the store and runner; import it only when asked for.
    if name in ("Project", "HookCall"):
        from gitpipe import workspace as project

        return getattr(project, name)
    raise AttributeError(f"module 'gitpipe' has no attribute {name!r}")
