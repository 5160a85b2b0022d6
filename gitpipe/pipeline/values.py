"""Params and metrics as flat values: nested tables as dotted keys, and how far a
metric moved.

    {"train": {"lr": 0.1}} ──flatten()──> {"train.lr": 0.1}
    (0.91, 0.93) ──metric_delta()──> 0.02      ("a", 1) or (inf, 1) -> None
    {"day": date(2024, 1, 2)} ──jsonable()──> {"day": "2024-01-02"}

One implementation for every layer that reads params or compares metrics: the
planner and the session (run), versions and `gitpipe diff` (history), the run
summary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _finite(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def metric_delta(old: Any, new: Any) -> int | float | None:
    """``new - old`` when both are finite numbers, else None (a side missing, text,
    a boolean, inf or NaN: no number says how far such a metric moved).  Two
    integers give an integer, so large counts keep every digit."""
    if not (_finite(old) and _finite(new)):
        return None
    if isinstance(old, int) and isinstance(new, int):
        return new - old
    return float(new) - float(old)


def unflatten(params: Mapping[str, Any]) -> dict[str, Any]:
    """``{"train.lr": 1}`` -> ``{"train": {"lr": 1}}``."""
    nested: dict[str, Any] = {}
    for dotted, value in params.items():
        node = nested
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return nested


def jsonable(value: Any) -> Any:
    """``value`` as JSON can hold it, what ``json.dumps(value, default=str)`` writes:
    tables (dicts) and lists through, tuples as lists, strings, numbers, booleans and
    None as they are, anything else (a TOML date or time) as its text."""
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def metric_values(data: Any) -> dict[str, Any]:
    """A metrics file's parsed content as a step records it: its scalar values
    (numbers, strings, booleans) under dotted keys, sorted; {} for anything but a
    table."""
    if not isinstance(data, Mapping):
        return {}
    return {
        key: value
        for key, value in sorted(flatten(data).items())
        if isinstance(value, (int, float, str, bool))
    }


def numbers(files: Mapping[str, Mapping[str, Any]]) -> dict[str, int | float]:
    """A step's recorded metrics (metrics file -> dotted name -> value) as one table of
    its finite numbers (booleans, text, inf and NaN left out), by name: a name that
    several of its metrics files hold is written ``FILE:NAME`` for each of them."""
    seen: dict[str, int] = {}
    for values in files.values():
        for name in values:
            seen[name] = seen.get(name, 0) + 1
    found: dict[str, int | float] = {}
    for file in sorted(files):
        for name, value in files[file].items():
            if _finite(value):
                found[f"{file}:{name}" if seen[name] > 1 else name] = value
    return dict(sorted(found.items()))
