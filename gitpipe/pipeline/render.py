"""Text renderings of the step graph: plain text, Mermaid, Graphviz dot and JSON."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from gitpipe.core.states import FROZEN, SKIPPED, STALE, UP_TO_DATE
from gitpipe.pipeline.graph import Graph


def _state(states: Mapping[str, Any], name: str) -> str:
    status = states.get(name)
    if status is None:
        return "unknown"
    return STALE if status.upstream and status.state == UP_TO_DATE else status.state


def dag_text(graph: Graph, states: Mapping[str, Any]) -> str:
    lines = []
    width = max((len(name) for name in graph.order), default=0)
    for name in graph.order:
        parents = graph.parents[name]
        after = f"  <- {', '.join(parents)}" if parents else ""
        lines.append(f"{name:<{width}}  [{_state(states, name)}]{after}")
    return "\n".join(lines) or "no steps"


def _node_id(name: str) -> str:
    return "s_" + re.sub(r"[^A-Za-z0-9_]", "_", name)


#: the Mermaid class of each state `status` can show (and "unknown" for a step it did not)
_CLASSES = {
    UP_TO_DATE: "fresh",
    "stale": "stale",
    "frozen": "frozen",
    SKIPPED: "skipped",
    "unknown": "unknown",
}


def dag_mermaid(graph: Graph, states: Mapping[str, Any]) -> str:
    lines = ["graph TD"]
    for name in graph.order:
        state = _state(states, name)
        lines.append(f'    {_node_id(name)}["{name}<br/><i>{state}</i>"]:::{_CLASSES[state]}')
    for name in graph.order:
        for parent in graph.parents[name]:
            lines.append(f"    {_node_id(parent)} --> {_node_id(name)}")
    lines += [
        "    classDef fresh fill:#e6f4ea,stroke:#34a853",
        "    classDef stale fill:#fef7e0,stroke:#f9ab00",
        "    classDef frozen fill:#e8f0fe,stroke:#4285f4",
        "    classDef skipped fill:#f1f3f4,stroke:#999999,stroke-dasharray:4 3",
        "    classDef unknown fill:#eeeeee,stroke:#999999",
    ]
    return "\n".join(lines)


def dag_dot(graph: Graph, states: Mapping[str, Any]) -> str:
    colours = {UP_TO_DATE: "#34a853", STALE: "#f9ab00", FROZEN: "#4285f4"}
    lines = ["digraph gitpipe {", "  rankdir=LR;", "  node [shape=box, style=rounded];"]
    for name in graph.order:
        state = _state(states, name)
        label = json.dumps(f"{name}\n{state}")
        colour = json.dumps(colours.get(state, "#999999"))
        lines.append(f"  {json.dumps(name)} [label={label}, color={colour}];")
    for name in graph.order:
        for parent in graph.parents[name]:
            lines.append(f"  {json.dumps(parent)} -> {json.dumps(name)};")
    lines.append("}")
    return "\n".join(lines)


def dag_json(graph: Graph, states: Mapping[str, Any]) -> str:
    return json.dumps(
        {
            "steps": [
                {"step": name, "state": _state(states, name), "parents": list(graph.parents[name])}
                for name in graph.order
            ],
            "edges": [[parent, name] for name in graph.order for parent in graph.parents[name]],
        },
        indent=2,
    )
