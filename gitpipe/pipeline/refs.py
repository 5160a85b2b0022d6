"""The ``${...}`` references a pipeline file writes in its strings, as text.

    ${params.NAME}              put in when the file is parsed (gitpipe.pipeline.params)
    ${matrix.NAME}              put in when a matrix step is expanded (the same)
    ${steps.STEP.metrics.NAME}  kept until STEP ran (gitpipe.pipeline.model.resolve)
    $${...}                     a literal ${...}

Pure functions over strings and TOML values; the parser gives their errors.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

#: any reference; group 1 is "$" for the literal `$${...}`, group 2 what the braces hold
REF = re.compile(r"\$(\$?)\{([^}]*)\}")
#: a reference to another step's metrics, left in a step's strings until it runs
METRIC_REF = re.compile(r"\$\{\s*steps\.([^}]*?)\.metrics\.([^}]*?)\s*\}")


def ref_text(step: str, metric: str) -> str:
    """How a reference to ``step``'s metric ``metric`` is written inside ``${...}``."""
    return f"steps.{step}.metrics.{metric}"


def parts(match: re.Match[str]) -> tuple[str, str]:
    """The step and metric names a :data:`METRIC_REF` match holds."""
    return match.group(1).strip(), match.group(2).strip()


def metric_parts(ref: str) -> tuple[str, str] | None:
    """``steps.S.metrics.M`` -> ``(S, M)``; None when it is not written so."""
    match = METRIC_REF.fullmatch("${" + ref + "}")
    if match is None or not all(parts(match)):
        return None
    return parts(match)


def scalar_text(value: Any) -> str:
    """A value as a reference puts it in a string: TOML's ``true``/``false``, a number
    or string as its text, a list or table as canonical JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def map_strings(value: Any, change: Callable[[str], Any]) -> Any:
    """``value`` with every string in it (through lists and tables) changed; a new
    copy of each list and table, other values as they are."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list):
        return [map_strings(v, change) for v in value]
    if isinstance(value, dict):
        return {k: map_strings(v, change) for k, v in value.items()}
    return value


def strings(value: Any) -> Iterator[str]:
    """Every string in ``value``, through lists and tables."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, dict)):
        for item in value.values() if isinstance(value, dict) else value:
            yield from strings(item)


def render(text: str, values: Mapping[str, Any]) -> str | None:
    """``text`` as written, with its ``${params.X}`` and ``${matrix.X}`` references
    replaced from ``values`` (dotted names; matrix values as ``matrix.X``), as the
    parser replaces them; None when a reference is not in ``values`` or reads another
    step's metrics.  Tells an edited command from one given other params."""
    missing = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal missing
        if match.group(1):
            return "${" + match.group(2) + "}"
        ref = match.group(2).strip()
        namespace, _, dotted = ref.partition(".")
        name = dotted if namespace == "params" else ref if namespace == "matrix" else None
        if name is None or name not in values:
            missing = True
            return ""
        return scalar_text(values[name])

    text = REF.sub(substitute, text)
    return None if missing else text
