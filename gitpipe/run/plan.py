"""Staleness: why a step must run, from its key record, its lock entry and its outputs.

Pure functions: the project gathers the digests, this module only compares.

    key record (now) ──┐
    lock entry (last) ─┼─> assess() ─> reasons ─> up to date | stale | frozen
    outputs (now) ─────┘
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from gitpipe.core.records import Reason
from gitpipe.core.redaction import redact
from gitpipe.core.states import FROZEN, STALE, UP_TO_DATE
from gitpipe.identity.action import KeyRecord
from gitpipe.identity.environment import describe
from gitpipe.identity.statcache import PathState
from gitpipe.pipeline.spec import Step, render
from gitpipe.pipeline.values import flatten
from gitpipe.store.lockfile import LockEntry


def _changed(kind: str, now: Mapping[str, Any], then: Mapping[str, Any]) -> Iterator[Reason]:
    for path in sorted(set(now) | set(then)):
        if path not in then:
            yield Reason(f"{kind} added", path)
        elif path not in now:
            yield Reason(f"{kind} removed", path)
        elif now[path] != then[path] or type(now[path]) is not type(then[path]):
            yield Reason(f"{kind} changed", path)


def _as_written(step: Step | None, entry: LockEntry) -> tuple[tuple[str, ...], dict[str, str]]:
    """The lock entry's command and env as the step writes them now, given the params
    the entry recorded: where they equal the entry's, only params changed."""
    if step is None or not step.template.cmd or len(step.template.cmd) != len(entry.cmd):
        return (), {}
    values = flatten(entry.params)
    cmd = tuple(render(text, values) or "" for text in step.template.cmd)
    env = {}
    for name, text in step.template.env.items():
        rendered = render(text, values)
        if rendered is not None:
            env[name] = rendered
    return cmd, env


def key_reasons(
    record: KeyRecord, entry: LockEntry | None, step: Step | None = None
) -> list[Reason]:
    """What differs between the key record now and the one the lock recorded.  With
    the ``step``, a command or env that differs only by the params put into it is a
    params change, not a command change (as versions and diff tell it)."""
    if entry is None:
        return [Reason("new")]
    if record.key == entry.key:
        return []
    reasons: list[Reason] = []
    written_cmd, written_env = _as_written(step, entry)
    if record.cmd != entry.cmd and written_cmd != tuple(entry.cmd):
        reasons.append(Reason("command changed"))
    if record.wdir != entry.wdir:
        reasons.append(Reason("wdir changed", f"{entry.wdir} -> {record.wdir}"))
    reasons += _changed("code", record.code, entry.code)
    reasons += _changed("dep", record.deps, entry.deps)
    reasons += [
        Reason(reason.kind, redact(reason.detail))
        for reason in _changed("remote dep", record.urls, entry.urls)
    ]
    for reason in _changed("params", flatten(record.params), flatten(entry.params)):
        reasons.append(Reason("params changed", reason.detail))
    reasons += [
        reason
        for reason in _changed("env", record.env, entry.env)
        if not (
            reason.kind == "env changed"
            and written_env.get(reason.detail) == entry.env.get(reason.detail)
        )
    ]
    if record.environment != entry.environment:
        reasons += [
            Reason(kind, detail) for kind, detail in describe(record.environment, entry.environment)
        ]
    declared = set(record.outs) | set(record.metrics) | set(record.plots)
    recorded = set(entry.outs)
    if declared != recorded:
        for path in sorted(declared - recorded):
            reasons.append(Reason("out added", path))
        for path in sorted(recorded - declared):
            reasons.append(Reason("out removed", path))
    return reasons or [Reason("key changed")]


def out_reasons(
    step: Step, entry: LockEntry | None, outs_now: Mapping[str, PathState | None]
) -> list[Reason]:
    """Outputs missing from the workspace, or different from what the lock recorded:
    other bytes, or (for a file) another executable bit."""
    reasons = []
    for spec in step.all_outs:
        now = outs_now.get(str(spec))
        if now is None:
            reasons.append(Reason("out missing", str(spec)))
        elif now.is_dir != spec.is_dir:
            where = "a file where a folder" if spec.is_dir else "a folder where a file"
            reasons.append(Reason("out modified", f"{spec} ({where} belongs)"))
        elif entry is None or entry.outs.get(str(spec)) is None:
            continue
        elif entry.outs[str(spec)] != now.digest:
            reasons.append(Reason("out modified", str(spec)))
        elif not spec.is_dir and entry.modes and now.executable != (str(spec) in entry.executable):
            reasons.append(Reason("out modified", f"{spec} (executable bit)"))
    return reasons


def assess(
    step: Step,
    record: KeyRecord,
    entry: LockEntry | None,
    outs_now: Mapping[str, PathState | None],
) -> tuple[str, list[Reason]]:
    """A step's state and the reasons for it."""
    if step.frozen:
        return FROZEN, []
    reasons = key_reasons(record, entry, step)
    if entry is not None:
        reasons += out_reasons(step, entry, outs_now)
    if step.always:
        reasons.insert(0, Reason("always"))
    return (STALE if reasons else UP_TO_DATE), reasons
