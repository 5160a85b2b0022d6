"""What gitpipe says of a step: the reasons it is stale, and a status line.  Plain
records, kept by the status snapshot and shown by every view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Reason:
    """One cause of staleness: a kind (``dep changed``) and what it is about."""

    kind: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}" if self.detail else self.kind


@dataclass(frozen=True, slots=True)
class StepStatus:
    """What `gitpipe status` says of one step."""

    step: str
    state: str  # up to date | stale | frozen | skipped
    reasons: tuple[Reason, ...] = ()
    cached: bool = False  # a stored result can serve it without running
    upstream: tuple[str, ...] = ()  # stale steps upstream of it
    key: str = ""
    code: tuple[str, ...] = ()  # its code files, as discovered
    #: what `repro` would do (gitpipe.run.planner): up to date, restore, run, frozen,
    #: skipped or waiting; "" is read as the state
    action: str = ""
    source: str = ""  # restore: lock (gitpipe.lock's outputs) | result (a stored one)
    code_note: str = ""  # why the code was not worked out ("" when it was)

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "state": self.state,
            "action": self.action or self.state,
            "source": self.source,
            "reasons": [str(reason) for reason in self.reasons],
            "cached": self.cached,
            "upstream_stale": list(self.upstream),
            "key": self.key,
            "code": list(self.code),
            "code_note": self.code_note,
        }
