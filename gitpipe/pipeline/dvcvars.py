"""DVC's ``${...}`` interpolation, rewritten for gitpipe (used by :mod:`dvcimport`).

    a name DVC looks up           what gitpipe's file gets
    ────────────────────────────  ─────────────────────────────────────────────────
    ${item} ${key} ${item.x}      ${matrix.X} (the stage became a matrix step),
                                  or the value itself (one step per item)
    ${train.lr}, from a params    ${params.train.lr}: the link to the file stays live
    file gitpipe reads
    ${x}, from inline `vars` or   the value itself, as DVC would put it in
    a file gitpipe cannot read
    \\${x}                         $${x}, gitpipe's literal ${x}

A :class:`Scope` holds the names one stage sees (DVC's context): the dvc.yaml's
`vars` and default params file, the stage's own `vars`, and the item of a
`foreach` or `matrix`.  Pure: files come in already read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gitpipe.pipeline.refs import scalar_text

#: one DVC reference; group 1 is the backslash of an escaped one (``\${x}``)
DVC_REF = re.compile(r"(\\)?\$\{\s*([^}]*?)\s*\}")
_PART = re.compile(r"\[(\d+)\]|\.?([^.\[\]]+)")


def split_ref(ref: str) -> list[str | int] | None:
    """``a.b[0].c`` -> ``["a", "b", 0, "c"]``; None when it is no name DVC reads."""
    parts: list[str | int] = []
    pos = 0
    while pos < len(ref):
        match = _PART.match(ref, pos)
        if match is None or match.end() == pos:
            return None
        parts.append(int(match.group(1)) if match.group(1) is not None else match.group(2))
        pos = match.end()
    return parts or None


def dotted(parts: list[str | int]) -> str:
    return ".".join(str(p) for p in parts)


def dvc_text(value: Any) -> str:
    """A value as DVC puts it into a string: booleans as ``true``/``false``."""
    if isinstance(value, (bool, int, float, str)):
        return scalar_text(value)
    return str(value)


@dataclass(frozen=True)
class Origin:
    """Where a name of the context comes from: a file (``file``, relative to the import
    folder) that gitpipe reads as a params file (``live``), or not."""

    file: str = ""
    live: bool = False

    @property
    def shown(self) -> str:
        return self.file or "inline vars"


@dataclass
class Scope:
    """The names a stage's ``${...}`` may use, with where each comes from."""

    names: dict[str, tuple[Any, Origin]] = field(default_factory=dict)
    #: the item of a foreach or matrix written into gitpipe's matrix: a DVC name
    #: (``item``, ``key``, ``item.model``) -> the gitpipe reference it becomes, and a
    #: sample value (the first item's), to check what is looked up in it
    renamed: dict[str, tuple[str, Any]] = field(default_factory=dict)

    def child(self) -> Scope:
        return Scope(dict(self.names), dict(self.renamed))

    def add(self, values: Mapping[str, Any], origin: Origin) -> list[str]:
        """Add ``values``' top-level names; the names already there, which keep their
        first value (DVC refuses a name defined twice)."""
        clashes = []
        for name, value in values.items():
            if name in self.names:
                clashes.append(f"{name!r} ({self.names[name][1].shown} and {origin.shown})")
                continue
            self.names[name] = (value, origin)
        return clashes

    def value(self, ref: str) -> tuple[Any, Origin] | None:
        """The value of a whole-value reference (``foreach: ${datasets}``) and where it
        comes from; None when the scope does not have it."""
        parts = split_ref(ref)
        if parts is None or not isinstance(parts[0], str) or parts[0] not in self.names:
            return None
        value, origin = self.names[parts[0]]
        found, ok = _walk(value, parts[1:])
        return (found, origin) if ok else None


class Interpolation:
    """Rewrites DVC's references in one stage's strings; what it cannot rewrite is
    noted in ``warnings`` and kept as a literal, and the values from files that it
    wrote in as they are, in ``constants`` (the name's origin and its top-level name
    without list indexes: the step then selects it, or depends on the file)."""

    def __init__(self, scope: Scope, where: str) -> None:
        self.scope = scope
        self.where = where
        self.warnings: list[str] = []
        self.constants: list[tuple[Origin, str]] = []

    def constant(self, origin: Origin, parts: list[str | int]) -> None:
        if origin.file:
            names = [
                str(p)
                for p in parts[
                    : next(
                        (i for i, p in enumerate(parts) if isinstance(p, int) or p.isdigit()),
                        len(parts),
                    )
                ]
            ]
            self.constants.append((origin, dotted(names)))

    def text(self, raw: Any, key: str) -> str:
        if not isinstance(raw, str):
            raw = dvc_text(raw)

        def one(match: re.Match[str]) -> str:
            if match.group(1):
                return "$${" + match.group(2) + "}"
            return self.reference(match.group(2), key)

        return DVC_REF.sub(one, raw)

    def whole(self, raw: Any, key: str) -> Any:
        """A value that may be one reference only (``${datasets}``), with its type;
        other strings rewritten as text."""
        if isinstance(raw, str):
            match = DVC_REF.fullmatch(raw.strip())
            parts = split_ref(match.group(2)) if match and not match.group(1) else None
            found = self.scope.value(match.group(2)) if match and parts else None
            if found is not None and parts is not None:
                value, origin = found
                self.constant(origin, parts)
                return value
            return self.text(raw, key)
        return raw

    def reference(self, ref: str, key: str) -> str:
        parts = split_ref(ref)
        if parts is None:
            return self.literal(ref, key, "is not a name DVC would look up")
        renamed = self.renamed(parts, ref, key)
        if renamed is not None:
            return renamed
        name = parts[0]
        if not isinstance(name, str) or name not in self.scope.names:
            return self.literal(ref, key, "names nothing in vars, params.yaml or the item")
        value, origin = self.scope.names[name]
        found, ok, through_list = walk(value, parts[1:])
        if not ok:
            return self.literal(ref, key, f"names nothing in {origin.shown}")
        if isinstance(found, (dict, list)):
            what = "a table" if isinstance(found, dict) else "a list"
            return self.literal(
                ref, key, f"is {what}; DVC turns it into command-line flags, gitpipe does not"
            )
        if origin.live and not through_list:
            return "${params." + dotted(parts) + "}"
        self.constant(origin, parts)
        if origin.live:
            self.warnings.append(
                f"{self.where}.{key}: ${{{ref}}} indexes a list, which ${{params...}} cannot: "
                f"its value {dvc_text(found)!r} is written in, and the step selects "
                f"{self.constants[-1][1]!r}"
            )
        return dvc_text(found)

    def renamed(self, parts: list[str | int], ref: str, key: str) -> str | None:
        """A reference to the item of a foreach or matrix the step keeps as a matrix."""
        for size in range(len(parts), 0, -1):
            head = dotted(parts[:size])
            if head in self.scope.renamed:
                target, sample = self.scope.renamed[head]
                rest = parts[size:]
                found, ok, through_list = walk(sample, rest)
                if not ok or through_list:
                    return self.literal(ref, key, "names nothing in the item")
                if isinstance(found, (dict, list)):
                    return self.literal(ref, key, "is a table or list, not one value")
                return "${" + ".".join([target, *(str(p) for p in rest)]) + "}"
        return None

    def literal(self, ref: str, key: str, why: str) -> str:
        self.warnings.append(f"{self.where}.{key}: ${{{ref}}} {why}; kept as the text ${{{ref}}}")
        return "$${" + ref + "}"


def _walk(value: Any, parts: list[str | int]) -> tuple[Any, bool]:
    """The value at ``parts`` in ``value``, and whether it is there."""
    found, ok, _ = walk(value, parts)
    return found, ok


def walk(value: Any, parts: list[str | int]) -> tuple[Any, bool, bool]:
    """The value at ``parts`` in ``value``, whether it is there, and whether the way
    to it went through a list (``a[0]``, ``a.0``)."""
    through_list = False
    for part in parts:
        if isinstance(part, str) and part.isdigit() and isinstance(value, list):
            part = int(part)
        if isinstance(part, int) and isinstance(value, list) and 0 <= part < len(value):
            value = value[part]
            through_list = True
        elif isinstance(part, str) and isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return None, False, through_list
    return value, True, through_list
