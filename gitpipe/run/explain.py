"""`gitpipe why`: a step's key, component by component, against what is known.

Pure comparisons over key records (``KeyRecord.as_record()``, the record stored with
each result, or one rebuilt from a lock entry): which components differ, old -> new.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gitpipe.core.redaction import redact
from gitpipe.pipeline.values import flatten
from gitpipe.store.lockfile import LockEntry

SAME = "same"
CHANGED = "changed"
ADDED = "added"
REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class Component:
    """One component of a key: ``kind`` (command, code, dep, remote dep, param, env,
    wdir, outs), its name, its value now and in the record compared with, and how
    they compare."""

    kind: str
    name: str
    now: Any
    then: Any
    change: str

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "now": self.now,
            "then": self.then,
            "change": self.change,
        }


def comparable(record: Mapping[str, Any]) -> dict[str, Any]:
    """A key record in the shape all comparisons use."""
    environment = record.get("environment", {})
    return {
        "command": list(record.get("cmd", [])),
        "wdir": record.get("wdir", "."),
        "code": dict(record.get("code", {})),
        "dep": dict(record.get("deps", {})),
        "param": flatten(record.get("params", {})),
        "env": dict(record.get("env", {})),
        "outs": sorted(
            [*record.get("outs", []), *record.get("metrics", []), *record.get("plots", [])]
        ),
        "remote dep": {redact(url): found for url, found in record.get("urls", {}).items()},
        # the environment (docs/environment.md): each part a component of its own
        "python": {"": environment["python"]} if "python" in environment else {},
        "package": dict(environment.get("packages", {})),
        "lockfile": dict(environment.get("lockfile", {})),
        "tool": dict(environment.get("tools", {})),
    }


def from_lock(entry: LockEntry) -> dict[str, Any]:
    """The comparable record a lock entry describes."""
    return comparable(
        {
            "cmd": list(entry.cmd),
            "wdir": entry.wdir,
            "code": {path: str(digest) for path, digest in entry.code.items()},
            "deps": {path: str(digest) for path, digest in entry.deps.items()},
            "params": dict(entry.params),
            "env": dict(entry.env),
            "outs": list(entry.outs),
            "urls": {url: dict(found) for url, found in entry.urls.items()},
            "environment": entry.environment,
        }
    )


_ENVIRONMENT = ("python", "package", "lockfile", "tool")


def compare(now: Mapping[str, Any], then: Mapping[str, Any]) -> list[Component]:
    """Every component of two comparable records, each marked same/changed/added/removed."""
    components = []
    for kind in ("command", "wdir", "outs"):
        a, b = now.get(kind), then.get(kind)
        components.append(Component(kind, "", a, b, SAME if a == b else CHANGED))
    for kind in ("code", "dep", "remote dep", "param", "env", *_ENVIRONMENT):
        a, b = now.get(kind, {}), then.get(kind, {})
        for name in sorted(set(a) | set(b)):
            if name not in b:
                change = ADDED
            elif name not in a:
                change = REMOVED
            elif a[name] == b[name] and type(a[name]) is type(b[name]):
                change = SAME
            else:
                change = CHANGED
            components.append(Component(kind, name, a.get(name), b.get(name), change))
    return components


def differences(components: list[Component]) -> list[Component]:
    return [c for c in components if c.change != SAME]
