"""What gitpipe says of a step: the reasons it is stale, and a status line.  Plain
records, kept by the status snapshot and shown by every view."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gitpipe.core.slotted import init_by_slots


@dataclass(frozen=True, slots=True)
class Reason:
    """One cause of staleness: a kind (``dep changed``) and what it is about."""

    kind: str
    detail: str = ""

    def __str__(self) -> str:
        return f"{self.kind}: {self.detail}" if self.detail else self.kind


@init_by_slots
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


#: what a status line adds for each action that its state does not say already
_ACTIONS = {"waiting": "waits for approval"}


def status_lines(statuses: list[StepStatus], *, verbose: bool = False) -> list[str]:
    """The lines `gitpipe status` prints for these steps: name, state, reasons and
    what `repro` would do; with ``verbose``, each step's code files too.  Both the
    command and its fast path (gitpipe/__main__.py) print these."""
    lines = []
    width = max((len(s.step) for s in statuses), default=0)
    for s in statuses:  # the parts of a detail, each once, "; " between them
        detail = "; ".join([str(r) for r in s.reasons]) if s.reasons else ""
        if s.upstream:
            upstream = f"upstream will run: {', '.join(s.upstream)}"
            detail = f"{detail}; {upstream}" if detail else upstream
        action = _ACTIONS.get(s.action, "") if s.action != s.state else ""
        if s.action == "restore":
            action = (
                "restores gitpipe.lock's outputs"
                if s.source == "lock"
                else "restores a stored result"
            )
        if action:
            detail = f"{detail}; {action}" if detail else action
        line = f"{s.step:<{width}}  {s.state}"
        lines.append(f"{line}  {detail}".rstrip())
        if verbose:
            code = ", ".join(s.code) if s.code else (s.code_note or "none found")
            lines.append(f"{'':<{width}}  code: {code}")
    return lines
