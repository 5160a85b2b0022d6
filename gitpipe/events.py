"""What the runner tells its listeners.  The runner never prints; the console view,
JSON output and lineage are listeners."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

# step states a run reports
RAN = "ran"
CACHED = "cached"
UP_TO_DATE = "up to date"
FAILED = "failed"
SKIPPED = "skipped"  # held back because a step it depends on failed
FROZEN = "frozen"
WOULD_RUN = "would run"  # --dry-run
WOULD_RESTORE = "would restore"  # --dry-run


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: str
    steps: tuple[str, ...]
    dry_run: bool
    commit: str | None = None
    dirty: bool | None = None
    argv: tuple[str, ...] = ()
    started: float = 0.0


@dataclass(frozen=True, slots=True)
class StepStarted:
    step: str
    log: str = ""
    started: float = 0.0


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


Event = RunStarted | StepStarted | StepFinished | RunFinished | Tick | Waiting
Listener = Callable[[Event], None]


class Broadcast:
    """Sends each event to every listener, in order."""

    def __init__(self, listeners: list[Listener] | tuple[Listener, ...] = ()) -> None:
        self.listeners = list(listeners)

    def __call__(self, event: Event) -> None:
        for listener in self.listeners:
            listener(event)
