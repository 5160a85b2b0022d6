"""What the runner tells its listeners.  The runner never prints; the console view,
JSON output and lineage are listeners."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# the step states a run reports, defined once in gitpipe.core.states (re-exported)
from gitpipe.core.states import (
    CACHED as CACHED,
)
from gitpipe.core.states import (
    FAILED as FAILED,
)
from gitpipe.core.states import (
    FROZEN as FROZEN,
)
from gitpipe.core.states import (
    INTERRUPTED as INTERRUPTED,
)
from gitpipe.core.states import (
    RAN as RAN,
)
from gitpipe.core.states import (
    SKIPPED as SKIPPED,
)
from gitpipe.core.states import (
    UP_TO_DATE as UP_TO_DATE,
)
from gitpipe.core.states import (
    WAITING as WAITING,
)
from gitpipe.core.states import (
    WOULD_RESTORE as WOULD_RESTORE,
)
from gitpipe.core.states import (
    WOULD_RUN as WOULD_RUN,
)


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: str
    steps: tuple[str, ...]
    dry_run: bool
    commit: str | None = None
    dirty: bool | None = None
    argv: tuple[str, ...] = ()
    started: float = 0.0
    pipeline: str = ""
    jobs: int = 1
    backend: str = ""
    overrides: Mapping[str, Any] = field(default_factory=dict)  # `repro -p NAME=VALUE`


@dataclass(frozen=True, slots=True)
class StepStarted:
    step: str
    log: str = ""
    started: float = 0.0


@dataclass(frozen=True, slots=True)
class Artifact:
    """Bytes a step read or wrote: the path (relative to the pipeline's folder), digest,
    size and whether it is a folder; ``role`` is ``dep``, ``code`` or ``out``, or
    ``url`` for a remote dep (its url, and the digest of its fingerprint)."""

    path: str
    digest: str
    size: int = 0
    is_dir: bool = False
    role: str = "dep"


@dataclass(frozen=True, slots=True)
class StepFinished:
    step: str
    state: str
    reasons: tuple[str, ...] = ()
    message: str = ""
    key: str = ""
    duration: float = 0.0
    exit_code: int | None = None
    log: str = ""
    started: float = 0.0
    ended: float = 0.0
    reads: tuple[Artifact, ...] = ()
    writes: tuple[Artifact, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source: str = ""  # cached or would restore: "lock" (gitpipe.lock's outputs) | "result"
    worker: str = ""  # the dask worker it ran on (address and host); empty: here
    transfer: float | None = None  # seconds its inputs and outputs took through the remote


@dataclass(frozen=True, slots=True)
class RunFinished:
    run_id: str
    status: str  # ok | failed | interrupted | error
    counts: dict[str, int] = field(default_factory=dict)
    duration: float = 0.0
    ended: float = 0.0


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passes while steps run: a chance to refresh a view or read logs."""

    now: float


@dataclass(frozen=True, slots=True)
class Waiting:
    """Another gitpipe holds this workspace; this run waits for it."""

    message: str


@dataclass(frozen=True, slots=True)
class Notice:
    """Something the user should know that does not stop the run."""

    message: str


Event = RunStarted | StepStarted | StepFinished | RunFinished | Tick | Waiting | Notice
Listener = Callable[[Event], None]


class Broadcast:
    """Sends each event to every listener, in order."""

    def __init__(self, listeners: list[Listener] | tuple[Listener, ...] = ()) -> None:
        self.listeners = list(listeners)

    def __call__(self, event: Event) -> None:
        for listener in self.listeners:
            listener(event)


def summary(event: RunFinished, *, interrupted: Sequence[str] = ()) -> str:
    """The run's closing line: its counts, and how it ended unless it ended well,
    naming the steps an interrupt stopped."""
    counts = event.counts
    parts = [
        f"{counts.get(state, 0)} {state}" for state in (RAN, CACHED, UP_TO_DATE, SKIPPED, FAILED)
    ]
    for state in (INTERRUPTED, WAITING, FROZEN, WOULD_RUN, WOULD_RESTORE):
        if counts.get(state):
            parts.append(f"{counts[state]} {state}")
    return f"{', '.join(parts)} in {event.duration:.2f} s" + ending(event.status, interrupted)


def ending(status: str, interrupted: Sequence[str]) -> str:
    """How a run ended, to follow its counts: nothing if it ended well, else
    " (interrupted while train ran)" or " (stopped by an error)"."""
    how = {"interrupted": "interrupted", "error": "stopped by an error"}.get(status)
    if how is None:
        return ""
    if interrupted:
        how += f" while {', '.join(interrupted)} ran"
    return f" ({how})"
