"""The version rules: how one snapshot of a pipeline differs from the next, and
what that does to a version number.

    set of steps, edges, output or input paths  -> major   (2.0.0)
    a command (cmd, wdir, env) or a step's code  -> minor   (1.1.0)
    params only                                  -> patch   (1.0.1)
    anything else (data, docs, TOML comments)    -> the version is kept

Commands are compared as written: a param (or matrix value) that reaches a command
through ``${params.X}`` is a change of params, not of the command.

Each step has its own version by the same rule, restricted to the step.  Every
field of the pipeline's fingerprint falls in one of these classes, so a commit keeps
its version exactly when its fingerprint is the one before it.  Pure functions over
:class:`~gitpipe.history.shape.Snapshot`; `gitpipe diff` reads the same comparisons.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gitpipe.core.console import first_of
from gitpipe.core.hashing import canonical
from gitpipe.history.shape import Snapshot, StepShape

#: names these rules; versions.db is recomputed when they change
RULES = "gitpipe.history.versions/2"
MAJOR = "major"
MINOR = "minor"
PATCH = "patch"
_RANK = {PATCH: 1, MINOR: 2, MAJOR: 3}
FIRST = "1.0.0"
UNKNOWN = "unknown"
#: a version's name: ``1.2.0`` or ``v1.2.0``
VERSION_NAME = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")


@dataclass(frozen=True, slots=True)
class Change:
    """One reason for a bump: ``major: +evaluate``, ``minor: code of train (src/a.py)``.

    ``kind`` is one of ``+``, ``-``, edges, outputs, inputs, command, code, params."""

    level: str
    kind: str
    step: str = ""  # the step it concerns; "" for the pipeline as a whole
    detail: str = ""

    @property
    def text(self) -> str:
        return describe(self.kind, [self.step] if self.step else [], self.detail)

    def __str__(self) -> str:
        return f"{self.level}: {self.text}"


def describe(kind: str, steps: list[str], detail: str = "") -> str:
    """``code of train (src/util.py)``; many steps are named a few at a time."""
    if kind in ("+", "-"):
        return ", ".join(kind + step for step in steps)
    shown = first_of(steps, 3)
    text = f"{kind} of {shown}" if steps else kind
    return f"{text} ({detail})" if detail else text


def summarise(changes: Iterable[Change]) -> list[str]:
    """Changes as people read them: the same change of several steps on one line."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for change in changes:
        groups.setdefault((change.level, change.kind, change.detail), []).append(change.step)
    return [
        f"{level}: {describe(kind, [s for s in steps if s], detail)}"
        for (level, kind, detail), steps in groups.items()
    ]


def _plus_minus(old: Iterable[str], new: Iterable[str]) -> str:
    before, after = set(old), set(new)
    return ", ".join(
        [f"+{item}" for item in sorted(after - before)]
        + [f"-{item}" for item in sorted(before - after)]
    )


def _same(a: Any, b: Any) -> bool:
    return canonical(a) == canonical(b)


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Keys added, removed or changed (1 and 1.0 differ, as they do in keys)."""
    return sorted(
        key
        for key in set(old) | set(new)
        if key not in old or key not in new or not _same(old[key], new[key])
    )


@dataclass(frozen=True, slots=True)
class CodeChange:
    """A code file of a step modified, added, removed, or renamed (the same code
    digest under another path)."""

    path: str
    change: str  # modified | added | removed | renamed
    to: str = ""  # the new path of a renamed file

    def __str__(self) -> str:
        if self.change == "renamed":
            return f"{self.path} -> {self.to} (renamed)"
        return f"{self.path} ({self.change})"

    @property
    def brief(self) -> str:
        """As a version's changes list it: ``a.py``, ``a.py -> b.py``, ``+a.py``, ``-a.py``."""
        if self.change == "renamed":
            return f"{self.path} -> {self.to}"
        return {"added": "+", "removed": "-"}.get(self.change, "") + self.path

    def to_json(self) -> dict[str, Any]:
        found = {"path": self.path, "change": self.change}
        if self.to:
            found["to"] = self.to
        return found


def code_changes(old: Mapping[str, str], new: Mapping[str, str]) -> list[CodeChange]:
    """Code files (path -> code digest) modified, renamed, added and removed, in that
    order.  A removed file whose digest an added one has was renamed."""
    added = sorted(set(new) - set(old))
    removed = sorted(set(old) - set(new))
    found = [
        CodeChange(path, "modified")
        for path in sorted(set(old) & set(new))
        if old[path] != new[path]
    ]
    for path in list(removed):
        twin = next((a for a in added if new[a] == old[path]), None)
        if twin is not None:
            found.append(CodeChange(path, "renamed", twin))
            added.remove(twin)
            removed.remove(path)
    found += [CodeChange(path, "added") for path in added]
    found += [CodeChange(path, "removed") for path in removed]
    return found


@dataclass(frozen=True, slots=True)
class CommandEdits:
    """What of a step's command (``cmd``, ``wdir``, ``env``) was edited as written."""

    cmd: bool = False
    wdir: bool = False
    env: tuple[str, ...] = ()  # keys added, removed or edited

    def __bool__(self) -> bool:
        return self.cmd or self.wdir or bool(self.env)


def _edited(old_written: str, new_written: str, old: str, new: str) -> bool:
    """A string edited as written: its text changed, and so did what it resolves to.
    What only the values put in through ``${params.X}`` change is a change of params;
    a rewrite that resolves to the same string runs the same thing (and keeps the
    fingerprint, so it keeps the version)."""
    return old_written != new_written and old != new


def command_edits(old: StepShape, new: StepShape) -> CommandEdits:
    """How a step's command was edited, as written (versions and diff both ask)."""
    cmd = len(old.cmd) != len(new.cmd) or any(
        _edited(*texts)
        for texts in zip(old.template.cmd, new.template.cmd, old.cmd, new.cmd, strict=True)
    )
    env = tuple(
        sorted(
            key
            for key in set(old.env) | set(new.env)
            if key not in old.env
            or key not in new.env
            or _edited(old.template.env[key], new.template.env[key], old.env[key], new.env[key])
        )
    )
    wdir = _edited(old.template.wdir, new.template.wdir, old.wdir, new.wdir)
    return CommandEdits(cmd=cmd, wdir=wdir, env=env)


def step_changes(name: str, old: StepShape | None, new: StepShape | None) -> list[Change]:
    """How one step changed, most significant first."""
    if old is None and new is None:
        return []
    if old is None:
        return [Change(MAJOR, "+", name)]
    if new is None:
        return [Change(MAJOR, "-", name)]
    if old == new:
        return []
    found = []
    if old.parents != new.parents or old.after != new.after:
        detail = _plus_minus(old.parents, new.parents) or (
            "after " + _plus_minus(old.after, new.after)
        )
        found.append(Change(MAJOR, "edges", name, detail))
    if old.outs != new.outs or old.metrics != new.metrics:
        detail = _plus_minus(old.outs + old.metrics, new.outs + new.metrics) or (
            "metrics " + _plus_minus(old.metrics, new.metrics)
        )
        found.append(Change(MAJOR, "outputs", name, detail))
    if old.deps != new.deps:
        found.append(Change(MAJOR, "inputs", name, _plus_minus(old.deps, new.deps)))
    edits = command_edits(old, new)
    details = []
    if edits.wdir:
        details.append("wdir")
    if edits.env:
        details.append("env " + ", ".join(edits.env))
    if edits:
        found.append(Change(MINOR, "command", name, "; ".join(details)))
    code = code_changes(old.code, new.code)
    if code:
        found.append(Change(MINOR, "code", name, ", ".join(change.brief for change in code)))
    params = changed_keys(old.params, new.params)
    if params:
        found.append(Change(PATCH, "params", name, ", ".join(params)))
    return found


def compare(old: Snapshot, new: Snapshot) -> list[Change]:
    """Every change from one valid snapshot to the next, most significant first."""
    names = list(new.steps) + [name for name in old.steps if name not in new.steps]
    found: list[Change] = []
    step_params: set[str] = set()
    for name in names:
        before, after = old.steps.get(name), new.steps.get(name)
        if before is not after:
            found += step_changes(name, before, after)
        step_params |= set(before.params if before else ()) | set(after.params if after else ())
    loose = [
        key
        for key in changed_keys(old.params, new.params)
        if not any(key == used or key.startswith(used + ".") for used in step_params)
    ]
    if loose:
        found.append(Change(PATCH, "params", "", ", ".join(loose)))
    found.sort(key=lambda change: -_RANK[change.level])
    return found


def level_of(changes: Iterable[Change]) -> str | None:
    """The largest bump among changes (None: the version is kept)."""
    return max((change.level for change in changes), key=_RANK.__getitem__, default=None)


def bump(version: str, level: str | None) -> str:
    """``1.4.2`` bumped by ``minor`` is ``1.5.0``; an unknown version stays unknown."""
    match = VERSION_NAME.match(version)
    if level is None or match is None:
        return version
    major, minor, patch = (int(part) for part in match.groups())
    if level == MAJOR:
        return f"{major + 1}.0.0"
    if level == MINOR:
        return f"{major}.{minor + 1}.0"
    return f"{major}.{minor}.{patch + 1}"
