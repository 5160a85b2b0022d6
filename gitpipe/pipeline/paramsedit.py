"""Writing param values into a TOML file without rewriting it (`gitpipe exp apply`).

    text ──lines──> the `key = value` line of each param, in its table
         ──> only the value's characters replaced (spacing, comments, order kept)
         ──> the new text parsed again: every other value unchanged, or refused

A full TOML round trip would lose the comments and the layout people wrote, so this
edits in place, and only what it can edit safely: a value written on one line
(``lr = 0.01  # comment``), under ``[params]``, ``[params.sub]`` or as a dotted key
(``train.lr = 0.01`` under ``[params]``).  A param written inside an inline table
(``train = { lr = 0.01 }``), spread over several lines, or a table value set as a
whole, is refused with a message that says where, and nothing is written.

A params source is something that holds params and can take new values for them
(:class:`ParamsSource`): today the pipeline file's ``[params]`` table
(:class:`TomlParams` with ``table=("params",)``); a params file of its own is a
``TomlParams`` with ``table=()``, and another format another source.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gitpipe.core import tomlcache
from gitpipe.core.errors import UsageError
from gitpipe.pipeline.values import flatten

#: a table's header, ``[a.b]`` (not an array of tables, ``[[a]]``)
_HEADER = re.compile(r"^\s*\[(?!\[)(?P<path>[^\]]*)\]\s*(#.*)?$")
#: the start of a ``key = value`` line: bare, quoted and dotted keys
_KEY = re.compile(
    r"""^(?P<indent>\s*)(?P<key>(?:[A-Za-z0-9_-]+|"[^"\\]*"|'[^']*')"""
    r"""(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"\\]*"|'[^']*'))*)\s*=\s*"""
)


class ParamsSource(Protocol):
    """Where params are written: a file that holds them."""

    @property
    def path(self) -> Path: ...

    def edited(self, values: Mapping[str, Any]) -> bytes:
        """The file's new bytes with each dotted param set to its value; raises
        :class:`UsageError` (writing nothing) where that cannot be done safely."""
        ...


@dataclass(frozen=True, slots=True)
class TomlParams:
    """Params in a TOML file, under ``table`` (``("params",)`` in a pipeline file)."""

    path: Path
    table: tuple[str, ...] = ("params",)

    def edited(self, values: Mapping[str, Any]) -> bytes:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read {self.path.name} ({exc})") from exc
        return set_values(text, values, table=self.table, name=self.path.name).encode("utf-8")


def set_values(
    text: str, values: Mapping[str, Any], *, table: tuple[str, ...] = ("params",), name: str = ""
) -> str:
    """``text`` with each dotted param (under ``table``) set to its value, each on the
    line that writes it now; everything else as it was, byte for byte."""
    name = name or "the file"
    where = ".".join(table) or "the top"
    lines = text.splitlines(keepends=True)
    for dotted, value in values.items():
        wanted = [*table, *dotted.split(".")]
        shown = ".".join(wanted)
        index, start, end = _find(lines, wanted, shown=shown, name=name)
        line = lines[index]
        lines[index] = line[:start] + toml_value(value, shown) + line[end:]
    edited = "".join(lines)
    _check(text, edited, values, table, name=name, where=where)
    return edited


def _find(lines: list[str], wanted: list[str], *, shown: str, name: str) -> tuple[int, int, int]:
    """The line writing ``wanted`` and where its value starts and ends in it."""
    current: list[str] = []
    for index, line in enumerate(lines):
        header = _HEADER.match(line)
        if header is not None:
            current = _key_parts(header["path"])
            if current == wanted:
                raise UsageError(f"{name}: {shown} is a table; set the params in it one by one")
            continue
        match = _KEY.match(line)
        if match is None:
            continue
        full = current + _key_parts(match["key"])
        if full == wanted:
            start = match.end()
            end = start + _value_length(line[start:])
            if not _one_line_value(line[start:end]):
                raise UsageError(
                    f"{name}: {shown} is written over several lines (line {index + 1}); "
                    "write it on one line to let gitpipe set it"
                )
            return index, start, end
        if full == wanted[: len(full)] and line[match.end() :].lstrip().startswith("{"):
            raise UsageError(
                f"{name}: {shown} is inside an inline table (line {index + 1}); write it as "
                f"`{wanted[-1]} = ...` under [{'.'.join(wanted[:-1])}] to let gitpipe set it"
            )
    raise UsageError(f"{name}: there is no line setting {shown} to write the new value on")


def _key_parts(key: str) -> list[str]:
    """``a."b.c".d`` -> ``["a", "b.c", "d"]`` (a header's or a key's parts)."""
    parts = re.findall(r"""[A-Za-z0-9_-]+|"[^"\\]*"|'[^']*'""", key)
    return [part[1:-1] if part[:1] in "\"'" else part for part in parts]


def _value_length(rest: str) -> int:
    """How many characters of ``rest`` (what follows ``=``) are the value: up to a
    comment outside strings, or the line's end, trailing spaces left out."""
    quote = ""
    i = 0
    while i < len(rest):
        char = rest[i]
        if quote:
            if char == "\\" and quote == '"':
                i += 1
            elif char == quote:
                quote = ""
        elif char in "\"'":
            quote = char
        elif char in "#\r\n":
            break
        i += 1
    return len(rest[:i].rstrip())


def _one_line_value(text: str) -> bool:
    try:
        tomlcache.loads(f"v = {text}")
    except tomlcache.TOMLDecodeError:
        return False
    return True


def toml_value(value: Any, shown: str = "") -> str:
    """A value written as TOML, inline: strings, numbers, booleans, dates and arrays
    of them.  Raises :class:`UsageError` for a table (set its params one by one)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return repr(value) if math.isfinite(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, str):
        # JSON's escapes are TOML's; DEL is a control character TOML wants escaped
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(item, shown) for item in value) + "]"
    raise UsageError(
        f"{shown or 'a param'} takes a table as its value; set the params in it one by one"
    )


def _check(
    before: str,
    after: str,
    values: Mapping[str, Any],
    table: tuple[str, ...],
    *,
    name: str,
    where: str,
) -> None:
    """The edited text parses to the old document with those params set, nothing else."""
    old, new = tomlcache.loads(before), _parsed(after, name)
    old_params, new_params = _table(old, table), _table(new, table)
    expected = {**flatten(old_params), **values}
    rest_same = _without(old, table) == _without(new, table)
    if flatten(new_params) != expected or not rest_same:
        raise UsageError(f"{name}: gitpipe could not set {', '.join(values)} in {where} safely")


def _parsed(text: str, name: str) -> dict[str, Any]:
    try:
        return tomlcache.loads(text)
    except tomlcache.TOMLDecodeError as exc:
        raise UsageError(f"{name}: gitpipe could not write the params safely ({exc})") from exc


def _table(data: Mapping[str, Any], table: tuple[str, ...]) -> Mapping[str, Any]:
    for part in table:
        data = data.get(part, {})
    return data


def _without(data: Mapping[str, Any], table: tuple[str, ...]) -> Any:
    """The document with ``table`` taken out (the rest must not change)."""
    if not table:
        return None
    head, *rest = table
    copy = dict(data)
    if head in copy:
        copy[head] = _without(copy[head], tuple(rest)) if rest else None
    return copy
