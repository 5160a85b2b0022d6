"""Writing param values into a TOML or YAML file without rewriting it, and into JSON
(`gitpipe exp apply`).

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
(:class:`ParamsSource`): the pipeline file's ``[params]`` table (:class:`TomlParams`
with ``table=("params",)``), and the params files of ``[pipeline] params_files``:
TOML (``table=()``), YAML (:class:`YamlParams`, edited in place the same way) and
JSON (:class:`JsonParams`, written whole when that changes nothing but the values).
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


# -- params files: YAML and JSON ----------------------------------------------------

#: a block mapping's ``key:`` line: a plain, double- or single-quoted key, then a value
#: (or nothing: a mapping follows)
_YAML_KEY = re.compile(
    r"""^(?P<indent> *)(?P<key>"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'"""
    r"""|[^\s#'"{}\[\],&*!|>%@`-][^:#]*?|-[^\s:#][^:#]*?)\s*:(?:[ \t]+|$)"""
)


@dataclass(frozen=True, slots=True)
class YamlParams:
    """Params in a YAML params file, edited in place as :class:`TomlParams` edits
    TOML: only the characters of a value written on its own ``key: value`` line of a
    block mapping change, comments and layout stay, and the new text must load to the
    old document with those params set, or nothing is written."""

    path: Path

    def edited(self, values: Mapping[str, Any]) -> bytes:
        import yaml

        text = _read(self.path)
        name = self.path.name
        lines = text.splitlines(keepends=True)
        for dotted, value in values.items():
            index, start, end = _yaml_find(lines, dotted.split("."), shown=dotted, name=name)
            line = lines[index]
            lines[index] = line[:start] + yaml_value(value, dotted) + line[end:]
        edited = "".join(lines)
        try:
            old, new = yaml.safe_load(text), yaml.safe_load(edited)
        except yaml.YAMLError as exc:
            raise UsageError(f"{name}: gitpipe could not write the params safely") from exc
        _check_loaded(old, new, values, name)
        return edited.encode("utf-8")


def _yaml_find(
    lines: list[str], wanted: list[str], *, shown: str, name: str
) -> tuple[int, int, int]:
    """The line writing ``wanted`` in a block mapping, and where its value is in it."""
    parents: list[tuple[int, str]] = []  # (indent, key) of the mappings we are in
    for index, line in enumerate(lines):
        match = _YAML_KEY.match(line)
        if match is None:
            continue
        indent = len(match["indent"])
        while parents and parents[-1][0] >= indent:
            parents.pop()
        key = match["key"]
        if key[:1] == '"':
            key = json.loads(key)
        elif key[:1] == "'":
            key = key[1:-1].replace("''", "'")
        full = [k for _, k in parents] + [key]
        start = match.end()
        end = start + _value_length(line[start:])
        if start == end:  # `key:` alone: a mapping follows (or nothing: null)
            if full == wanted:
                raise UsageError(f"{name}: {shown} is a mapping; set the params in it one by one")
            parents.append((indent, key))
            continue
        if full == wanted:
            if line[start] in "|>&*!":
                raise UsageError(
                    f"{name}: {shown} is written as a block, an anchor, an alias or with a "
                    f"tag (line {index + 1}); write it as `{wanted[-1]}: VALUE` to let "
                    "gitpipe set it"
                )
            return index, start, end
    raise UsageError(f"{name}: there is no `key: value` line setting {shown} to write on")


def yaml_value(value: Any, shown: str = "") -> str:
    """A value written as YAML (1.1, as PyYAML reads it), inline: strings, numbers,
    booleans, dates and lists of them."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if not math.isfinite(value):
            return ".inf" if value > 0 else "-.inf"
        text = repr(value)
        if "e" in text and "." not in text:  # YAML 1.1 wants a dot in a float
            text = text.replace("e", ".0e", 1)
        return text
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a double-quoted YAML scalar
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(yaml_value(item, shown) for item in value) + "]"
    raise UsageError(
        f"{shown or 'a param'} takes a mapping as its value; set the params in it one by one"
    )


@dataclass(frozen=True, slots=True)
class JsonParams:
    """Params in a JSON params file.  JSON has no comments, so the file is written
    whole, and only when that changes nothing but the values: the file must be laid
    out as ``json.dumps`` lays it out with its indent (as most tools write JSON);
    another layout is refused, with what to set by hand."""

    path: Path

    def edited(self, values: Mapping[str, Any]) -> bytes:
        text = _read(self.path)
        name = self.path.name
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"{name}: gitpipe could not read it as JSON ({exc})") from exc
        indent = _json_indent(text)
        if _json_text(data, indent, text) != text:
            wanted = ", ".join(f"{k} = {v!r}" for k, v in values.items())
            raise UsageError(
                f"{name} is not laid out as gitpipe writes JSON (indent {indent or 'none'}, "
                f"keys in their order, one space after each colon), so writing it would "
                f"change more than the params: set {wanted} in it by hand"
            )
        old = json.loads(text)
        for dotted, value in values.items():
            *path, leaf = dotted.split(".")
            here = data
            for part in path:
                here = here.get(part) if isinstance(here, dict) else None
            if not isinstance(here, dict) or leaf not in here:
                raise UsageError(f"{name}: there is no value of {dotted} to write over")
            if isinstance(here[leaf], dict):
                raise UsageError(f"{name}: {dotted} is an object; set the params in it one by one")
            here[leaf] = value
        try:
            edited = _json_text(data, indent, text)
        except ValueError as exc:  # NaN, a date
            raise UsageError(f"{name}: JSON cannot hold the new value ({exc})") from exc
        _check_loaded(old, json.loads(edited), values, name)
        return edited.encode("utf-8")


def _json_indent(text: str) -> int | None:
    """The indent of the first indented line (None: all on one line)."""
    for line in text.splitlines()[1:]:
        stripped = line.lstrip(" ")
        if stripped and len(stripped) < len(line):
            return len(line) - len(stripped)
    return None


def _json_text(data: Any, indent: int | None, like: str) -> str:
    text = json.dumps(data, indent=indent, ensure_ascii=False, allow_nan=False)
    return text + like[len(like.rstrip("\n")) :]  # its final line breaks, as they were


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {path.name} ({exc})") from exc


def _check_loaded(old: Any, new: Any, values: Mapping[str, Any], name: str) -> None:
    """The edited file loads to the old document with those params set, nothing else."""
    expected = {**flatten(old if isinstance(old, dict) else {}), **values}
    if not isinstance(new, dict) or flatten(new) != expected:
        raise UsageError(f"{name}: gitpipe could not set {', '.join(values)} safely")


def source_for(path: Path, format: str) -> ParamsSource:
    """The params source of a params file of that format ("yaml", "json", "toml")."""
    if format == "yaml":
        return YamlParams(path)
    if format == "json":
        return JsonParams(path)
    return TomlParams(path, ())
