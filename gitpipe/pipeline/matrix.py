"""Matrix steps (docs/sweeps.md): one step table, one step per combination of values.

    [steps.train]                        train@0.1-small   train@0.1-large
    matrix = { lr = [0.1, 0.2],    ──►   train@0.2-small   train@0.2-large
               size = ["small", "large"] }

Each value's label (:func:`matrix_label`) makes the expanded step's name; the parser
reads each expansion's fields with ``${matrix.X}`` set to its values.
"""

from __future__ import annotations

import re
from typing import Any

from gitpipe.pipeline.checks import Checks, type_name
from gitpipe.pipeline.refs import scalar_text

_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def matrix_label(value: Any) -> str:
    """How one matrix value appears in an expanded step's name: a string, number or
    boolean as its text, a table with a ``name`` by that name, any other table or
    list by ``h`` and the first 8 hex digits of its canonical digest; characters
    other than letters, digits, ``_``, ``.`` and ``-`` become ``_``."""
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        value = value["name"]
    if isinstance(value, (dict, list)):
        from gitpipe.core.hashing import digest_record

        return "h" + digest_record(value).hex[:8]
    label = _LABEL_UNSAFE.sub("_", scalar_text(value))
    return label or "_"


def combinations(checks: Checks, name: str, value: Any) -> list[tuple[dict[str, Any], str]]:
    """Each combination of a matrix step's values with its label, in the order
    written (the first axis varies slowest)."""
    key = f"steps.{name}.matrix"
    table = checks.table(value, key)
    if not table:
        raise checks.error("must name at least one list of values", key)
    axes = []
    for axis, values in table.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", axis):
            raise checks.error(
                "a matrix name may hold letters, digits and '_' only", f"{key}.{axis}"
            )
        if not isinstance(values, list) or not values:
            raise checks.error(
                f"must be a non-empty list of values, not {type_name(values)}", f"{key}.{axis}"
            )
        labels: dict[str, int] = {}
        for i, item in enumerate(values):
            label = matrix_label(item)
            if label in labels:
                raise checks.error(
                    f"values {labels[label]} and {i} both make the name {label!r}; "
                    "matrix values must be distinct (give tables a distinct `name`)",
                    f"{key}.{axis}[{i}]",
                )
            labels[label] = i
        axes.append((axis, values, list(labels)))
    combos: list[tuple[dict[str, Any], str]] = [({}, "")]
    for axis, values, labels in axes:
        combos = [
            ({**chosen, axis: item}, f"{label}-{own}" if label else own)
            for chosen, label in combos
            for item, own in zip(values, labels, strict=True)
        ]
    return combos
