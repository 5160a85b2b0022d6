"""The drawings of `gitpipe report`, as SVG text: the step graph, the timeline of a
run, and line charts.  Pure: data in, markup out; every text escaped.

    nodes + edges ──▶ layout()  longest-path layers, barycentre order ──▶ dag_svg()
    executions    ──▶ lanes()   steps that overlapped in time on separate lanes ──▶ timeline_svg()
    series        ──▶ line_chart_svg()  x/y points, one polyline and marker set per series

The graph reads left to right: a step's column is the length of the longest path
from a step with no parents to it, and within a column steps are ordered by the mean
row of their neighbours (a few sweeps each way), which removes most crossings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

#: the Okabe-Ito palette (colour-blind safe): one colour per series or state
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#56B4E9", "#CC79A7", "#F0E442", "#000000")

NODE_W, NODE_H, COL_GAP, ROW_GAP, MARGIN = 160, 28, 44, 10, 16
_SWEEPS = 4


@dataclass(frozen=True, slots=True)
class Node:
    """One box of the graph: a step, or a matrix step standing for its expansions."""

    id: str
    label: str
    state: str  # the CSS class of its state: up-to-date, stale, frozen, skipped, ...
    glyph: str  # the state's shape cue, beside its colour
    members: tuple[str, ...] = ()  # a group: the steps it stands for


@dataclass(frozen=True, slots=True)
class Placed:
    node: Node
    x: float
    y: float


def esc(text: object) -> str:
    """Text made safe for HTML and SVG, quotes included."""
    return escape(str(text), quote=True)


def _short(text: str, limit: int = 20) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def layers(ids: Sequence[str], parents: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each node's column: the longest path to it from a node with no parents.
    ``ids`` must come in an order where parents precede children (topological)."""
    layer: dict[str, int] = {}
    for node in ids:
        layer[node] = 1 + max((layer[p] for p in parents.get(node, ()) if p in layer), default=-1)
    return layer


def layout(
    nodes: Sequence[Node], parents: Mapping[str, Sequence[str]]
) -> tuple[list[Placed], float, float]:
    """Where each node goes, and the drawing's width and height."""
    ids = [n.id for n in nodes]
    layer = layers(ids, parents)
    children: dict[str, list[str]] = {n: [] for n in ids}
    for node in ids:
        for parent in parents.get(node, ()):
            if parent in children:
                children[parent].append(node)
    columns: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for node in ids:
        columns[layer[node]].append(node)
    row = {node: float(i) for column in columns for i, node in enumerate(column)}

    def order(column: list[str], neighbours: Mapping[str, Sequence[str]]) -> None:
        def centre(node: str) -> float:
            near = [row[n] for n in neighbours.get(node, ()) if n in row]
            return sum(near) / len(near) if near else row[node]

        column.sort(key=centre)  # stable: ties keep file order
        for i, node in enumerate(column):
            row[node] = float(i)

    for _ in range(_SWEEPS):
        for column in columns[1:]:
            order(column, parents)
        for column in reversed(columns[:-1]):
            order(column, children)
    height_rows = max((len(c) for c in columns), default=0)
    by_id = {n.id: n for n in nodes}
    placed = []
    for x_index, column in enumerate(columns):
        offset = (height_rows - len(column)) * (NODE_H + ROW_GAP) / 2  # centre short columns
        for y_index, node in enumerate(column):
            placed.append(
                Placed(
                    by_id[node],
                    MARGIN + x_index * (NODE_W + COL_GAP),
                    MARGIN + offset + y_index * (NODE_H + ROW_GAP),
                )
            )
    width = 2 * MARGIN + len(columns) * (NODE_W + COL_GAP) - COL_GAP
    height = 2 * MARGIN + height_rows * (NODE_H + ROW_GAP) - ROW_GAP
    return placed, max(width, 2 * MARGIN), max(height, 2 * MARGIN)


def dag_svg(nodes: Sequence[Node], parents: Mapping[str, Sequence[str]], *, element_id: str) -> str:
    """The graph as an SVG element: edges as curves, nodes as labelled boxes."""
    placed, width, height = layout(nodes, parents)
    at = {p.node.id: p for p in placed}
    edges = []
    for p in placed:
        for parent in parents.get(p.node.id, ()):
            q = at.get(parent)
            if q is None:
                continue
            x1, y1 = q.x + NODE_W, q.y + NODE_H / 2
            x2, y2 = p.x, p.y + NODE_H / 2
            bend = max(COL_GAP / 2, (x2 - x1) / 3)
            edges.append(
                f'<path class="edge" d="M{x1:.0f},{y1:.0f} C{x1 + bend:.0f},{y1:.0f}'
                f' {x2 - bend:.0f},{y2:.0f} {x2:.0f},{y2:.0f}"/>'
            )
    boxes = []
    for p in placed:
        node = p.node
        kind = "group" if node.members else "step"
        data = (
            f'data-group="{esc(node.id)}" data-members="{len(node.members)}"'
            if node.members
            else f'data-step="{esc(node.id)}"'
        )
        label = _short(node.label) + (f" \u00d7{len(node.members)}" if node.members else "")
        boxes.append(
            f'<g class="node {kind} s-{node.state}" {data} tabindex="0" role="button"'
            f' transform="translate({p.x:.0f},{p.y:.0f})">'
            f"<title>{esc(node.label)}: {esc(node.state.replace('-', ' '))}</title>"
            f'<rect width="{NODE_W}" height="{NODE_H}" rx="{9 if node.members else 4}"/>'
            f'<text class="glyph" x="8" y="19">{esc(node.glyph)}</text>'
            f'<text x="26" y="19">{esc(label)}</text></g>'
        )
    return (
        f'<svg id="{esc(element_id)}" class="dag"'
        f' width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}"'
        f' data-width="{width:.0f}" data-height="{height:.0f}" role="img"'
        f' aria-label="the step graph">'
        f'<g class="edges">{"".join(edges)}</g><g class="nodes">{"".join(boxes)}</g></svg>'
    )


# -- the timeline of one run ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Bar:
    """One step's execution in a run: seconds from the run's start."""

    step: str
    state: str
    start: float
    end: float


def lanes(bars: Sequence[Bar]) -> list[list[Bar]]:
    """Bars on as few lanes as let none overlap another on its lane: as many lanes as
    steps ran at once at the busiest moment."""
    placed: list[list[Bar]] = []
    for bar in sorted(bars, key=lambda b: (b.start, b.end)):
        for lane in placed:
            if lane[-1].end <= bar.start:
                lane.append(bar)
                break
        else:
            placed.append([bar])
    return placed


def timeline_svg(bars: Sequence[Bar], *, width: int = 960) -> str:
    """The run's executions as bars along time, one lane per step running at once."""
    rows = lanes(bars)
    total = max((b.end for b in bars), default=0.0) or 1.0
    lane_h, left, top = 22, 8, 24
    scale = (width - 2 * left) / total
    height = top + len(rows) * lane_h + 8
    parts = []
    for tick in _ticks(0.0, total, 6):
        x = left + tick * scale
        parts.append(
            f'<line class="grid" x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 8}"/>'
            f'<text class="axis" x="{x:.1f}" y="14">{esc(_seconds(tick))}</text>'
        )
    for i, lane in enumerate(rows):
        y = top + i * lane_h
        for bar in lane:
            x = left + bar.start * scale
            w = max(2.0, (bar.end - bar.start) * scale)
            name = _short(bar.step, max(0, int(w / 7)))
            parts.append(
                f'<g class="bar r-{esc(bar.state.replace(" ", "-"))}" data-step="{esc(bar.step)}">'
                f"<title>{esc(bar.step)}: {esc(bar.state)}, {esc(_seconds(bar.end - bar.start))}"
                f" (from {esc(_seconds(bar.start))})</title>"
                f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{lane_h - 4}" rx="3"/>'
                + (f'<text x="{x + 4:.1f}" y="{y + 13}">{esc(name)}</text>' if w > 40 else "")
                + "</g>"
            )
    return (
        f'<svg class="timeline" width="{width}"'
        f' height="{height}" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="the last run over time">{"".join(parts)}</svg>'
    )


def _seconds(value: float) -> str:
    if value >= 120:
        return f"{value / 60:.1f} min"
    if value >= 10:
        return f"{value:.0f} s"
    return f"{value:.2g} s" if value else "0 s"


# -- line charts -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Line:
    """One series of a chart; ``None`` where it has no value at that x."""

    name: str
    ys: tuple[float | None, ...]


def _ticks(low: float, high: float, count: int) -> list[float]:
    """Round values between low and high for an axis."""
    if not math.isfinite(low) or not math.isfinite(high) or high <= low:
        return [low] if math.isfinite(low) else []
    step = 10 ** math.floor(math.log10((high - low) / count))
    for factor in (1, 2, 5, 10):
        if (high - low) / (step * factor) <= count:
            step *= factor
            break
    first = math.ceil(low / step) * step
    return [first + i * step for i in range(int((high - first) / step + 1e-9) + 1)]


def _number(value: float) -> str:
    return f"{value:.4g}"


def line_chart_svg(
    title: str,
    xs: Sequence[float],
    lines: Sequence[Line],
    *,
    x_labels: Sequence[str] | None = None,
    x_name: str = "",
    width: int = 440,
    height: int = 220,
) -> str:
    """A line chart: one polyline and one marker per point for each series, a legend
    when there are several.  ``x_labels`` names the xs (versions), else they are
    numbers on an axis."""
    left, right, top, bottom = 52, 28, 26, 40
    values = [y for line in lines for y in line.ys if y is not None and math.isfinite(y)]
    finite_x = [x for x in xs if math.isfinite(x)]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if high == low:
        low, high = low - (abs(low) or 1) * 0.5, high + (abs(high) or 1) * 0.5
    x_low, x_high = (min(finite_x), max(finite_x)) if finite_x else (0.0, 1.0)
    if x_high == x_low:
        x_low, x_high = x_low - 1, x_high + 1
    plot_w, plot_h = width - left - right, height - top - bottom

    def px(x: float) -> float:
        return left + (x - x_low) / (x_high - x_low) * plot_w

    def py(y: float) -> float:
        return top + (high - y) / (high - low) * plot_h

    parts = [f'<text class="title" x="{left}" y="16">{esc(title)}</text>']
    for tick in _ticks(low, high, 4):
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{py(tick):.1f}"'
            f' y2="{py(tick):.1f}"/><text class="axis" x="{left - 4}" y="{py(tick) + 4:.1f}"'
            f' text-anchor="end">{esc(_number(tick))}</text>'
        )
    if x_labels is not None:
        every = max(1, math.ceil(len(x_labels) / 6))
        for i, label in enumerate(x_labels):
            if i % every == 0 or i == len(x_labels) - 1:
                parts.append(
                    f'<text class="axis" x="{px(xs[i]):.1f}" y="{height - bottom + 16}"'
                    f' text-anchor="middle">{esc(_short(label, 12))}</text>'
                )
    else:
        for tick in _ticks(x_low, x_high, 5):
            parts.append(
                f'<text class="axis" x="{px(tick):.1f}" y="{height - bottom + 16}"'
                f' text-anchor="middle">{esc(_number(tick))}</text>'
            )
    if x_name:
        parts.append(
            f'<text class="axis" x="{left + plot_w / 2:.0f}" y="{height - 6}"'
            f' text-anchor="middle">{esc(x_name)}</text>'
        )
    markers = len(xs) <= 200  # a marker per point while they can be told apart
    for n, line in enumerate(lines):
        colour = PALETTE[n % len(PALETTE)]
        points = [
            (x, y)
            for x, y in zip(xs, line.ys, strict=False)
            if y is not None and math.isfinite(y) and math.isfinite(x)
        ]
        path = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in points)
        series = [f'<g class="series" data-series="{esc(line.name)}" style="color:{colour}">']
        series.append(f'<polyline points="{path}"/>')
        if markers:
            index = {x: i for i, x in enumerate(xs)}
            for x, y in points:
                label = x_labels[index[x]] if x_labels is not None else _number(x)
                series.append(
                    f'<circle class="point" cx="{px(x):.1f}" cy="{py(y):.1f}" r="3">'
                    f"<title>{esc(line.name)} at {esc(label)}: {esc(_number(y))}</title></circle>"
                )
        series.append("</g>")
        parts.append("".join(series))
    if len(lines) > 1:
        for n, line in enumerate(lines[:8]):
            y = top + 4 + n * 14
            parts.append(
                f'<text class="legend" x="{width - right}" y="{y + 8}" text-anchor="end"'
                f' style="fill:{PALETTE[n % len(PALETTE)]}">{esc(_short(line.name, 20))} ━</text>'
            )
    return (
        f'<svg class="chart" width="{width}"'
        f' height="{height}" viewBox="0 0 {width} {height}" role="img"'
        f' aria-label="{esc(title)}">{"".join(parts)}</svg>'
    )
