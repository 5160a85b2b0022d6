"""Typed reads of one pipeline file's TOML values: each value is checked for the type
its field needs, and every error names the file and the TOML key path, as written.

The parser's parts (gitpipe.pipeline.parser, step_fields, paths, params, matrix,
nested) read through a :class:`Checks` of the file they parse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from gitpipe.core.errors import PipelineError


class Checks:
    """The checks of one pipeline file, ``shown`` as messages name it (relative to the
    outermost pipeline file's folder)."""

    def __init__(self, shown: str) -> None:
        self.shown = shown

    def error(self, message: str, key: str) -> PipelineError:
        return PipelineError(message, file=one_line(self.shown), key=one_line(key))

    def fields(
        self,
        table: Iterable[str],
        known: Iterable[str],
        prefix: str,
        unknown: Callable[[str, str], str],
    ) -> None:
        """The first key of ``table`` that is not a ``known`` one is an error at
        ``prefix.KEY`` (at ``KEY`` when ``prefix`` is ""), worded by ``unknown(KEY,
        KNOWN)`` where KNOWN lists the known keys, sorted."""
        allowed = frozenset(known)
        for key in table:
            if key not in allowed:
                listed = ", ".join(sorted(allowed))
                raise self.error(unknown(key, listed), f"{prefix}.{key}" if prefix else key)

    def table(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(f"must be a table, not {type_name(value)}", key)
        return value

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str):
            raise self.error(f"must be a string, not {type_name(value)}", key)
        return value

    def choice(self, value: Any, choices: tuple[str, ...], key: str) -> str:
        if value not in choices:
            raise self.error(
                f"must be one of {', '.join(repr(c) for c in choices)}, not {value!r}", key
            )
        return str(value)

    def boolean(self, body: dict[str, Any], name: str, prefix: str, default: bool) -> bool:
        value = body.get(name, default)
        if not isinstance(value, bool):
            raise self.error(f"must be true or false, not {type_name(value)}", f"{prefix}.{name}")
        return value

    def str_list(self, value: Any, key: str) -> list[str]:
        """A list of strings; one string stands for a list of it."""
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            raise self.error(f"must be a list of strings, not {type_name(value)}", key)
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"must be a string, not {type_name(item)}", f"{key}[{i}]")
        return value


def type_name(value: Any) -> str:
    """A TOML value's type, as messages name it ("a string", "a table")."""
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)


def one_line(text: str) -> str:
    """``text`` for a one-line message: characters that do not print (a newline, a
    tab, an escape) written as Python writes them in a string's repr (``\\n``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
