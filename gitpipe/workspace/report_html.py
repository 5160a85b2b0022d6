"""The page `gitpipe report` writes: one HTML file that needs nothing else.

    ReportData (report.collect) ─┐
    history points  ─────────────┼─▶ render() ─▶ <html>: CSS, SVG, data: images, JSON, JS
    experiments     ─────────────┘

Pure: it reads nothing but its arguments (and the page's CSS and JavaScript, shipped
beside this module).  Every text is escaped where it is put in the markup; the data
the page's script reads is JSON in a ``<script type="application/json">`` with ``<``
written ``\\u003c``, and the script puts it in the page as text only.  A
Content-Security-Policy forbids every request: the page works offline, as a CI
artifact, and cannot call anywhere.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from importlib import resources
from typing import Any, Protocol

from gitpipe.workspace.report_svg import Bar, Line, Node, dag_svg, esc, line_chart_svg, timeline_svg

#: marks a file as a report, so that `-o` replaces a report and nothing else
GENERATOR = '<meta name="generator" content="gitpipe report">'
CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "script-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"
)
#: metric charts drawn at most (one per step and metric)
MAX_CHARTS = 60
#: metric columns of the experiments table at most
MAX_COLUMNS = 12

#: a node's state: (CSS class, shape cue, words for the legend), worst first
STATES = (
    ("failed", "✗", "failed in the last run"),
    ("stale", "!", "stale: would run"),
    ("waiting", "‖", "waits for approval"),
    ("restore", "↺", "stale: would be restored"),
    ("frozen", "❄", "frozen"),
    ("skipped", "\u2013", "skipped"),
    ("up-to-date", "✓", "up to date"),
)
_GLYPH = {name: glyph for name, glyph, _ in STATES}
_RANK = {name: i for i, (name, _, _) in enumerate(STATES)}


class VersionPoint(Protocol):
    """One version's metrics (``Project.metrics_history``'s points have these)."""

    @property
    def version(self) -> str: ...
    @property
    def commit(self) -> str | None: ...
    @property
    def time(self) -> float: ...
    @property
    def subject(self) -> str: ...
    @property
    def metrics(self) -> Mapping[str, Mapping[str, float]]: ...


class ExperimentRow(Protocol):
    """One experiment (``Project.experiments``' items have these)."""

    @property
    def id(self) -> str: ...
    @property
    def time(self) -> float: ...
    @property
    def overrides(self) -> Mapping[str, Any]: ...
    @property
    def metrics(self) -> Mapping[str, Mapping[str, float]]: ...
    @property
    def state(self) -> str: ...


@dataclass(frozen=True, slots=True)
class KeyPart:
    """One component of a step's key, as `why` compares it with the lock."""

    kind: str  # command, wdir, outs, code, dep, param, env
    name: str
    value: str
    change: str  # same, changed, added, removed; "" with no lock entry


@dataclass(frozen=True, slots=True)
class Output:
    path: str
    digest: str
    size: int | None  # bytes; None when unknown


@dataclass(frozen=True, slots=True)
class StepView:
    """What the page shows of one step."""

    name: str
    state: str  # a class of STATES
    action: str  # what `repro` would do
    reasons: tuple[str, ...] = ()
    parents: tuple[str, ...] = ()
    group: str = ""  # the matrix step it is one expansion of
    desc: str = ""
    key: str = ""
    parts: tuple[KeyPart, ...] = ()
    outputs: tuple[Output, ...] = ()
    last_state: str = ""  # what the last run did with it ("" not in it)
    duration: float | None = None  # seconds, when it last ran
    log_tail: str = ""


@dataclass(frozen=True, slots=True)
class RunView:
    """The last run: its id, when, and its executions (seconds from its start)."""

    run_id: str
    started: str
    status: str
    commit: str
    bars: tuple[Bar, ...]


@dataclass(frozen=True, slots=True)
class Image:
    step: str
    path: str
    data_uri: str  # "" when left out (then ``note`` says why)
    note: str = ""


@dataclass(frozen=True, slots=True)
class Plot:
    """A plots file, read: x values and one line per other column."""

    step: str
    path: str
    x_name: str
    xs: tuple[float, ...]
    lines: tuple[Line, ...]
    error: str = ""  # why it could not be drawn


@dataclass(frozen=True, slots=True)
class ReportData:
    """Everything the page shows that gitpipe gathers from the workspace."""

    pipeline: str
    steps: tuple[StepView, ...]  # parents before children
    run: RunView | None = None
    images: tuple[Image, ...] = ()
    plots: tuple[Plot, ...] = ()
    written: float = 0.0  # when (seconds since the epoch); 0: now


@cache
def _asset(name: str) -> str:
    return resources.files("gitpipe.workspace").joinpath(name).read_text(encoding="utf-8")


def script_json(value: Any) -> str:
    """JSON safe inside a ``<script>`` element: no ``<``, ``>`` or ``&`` as such."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(
    data: ReportData,
    *,
    history: Sequence[VersionPoint] = (),
    experiments: Sequence[ExperimentRow] = (),
) -> str:
    """The whole page."""
    written = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(data.written or time.time()))
    counts: dict[str, int] = {}
    for step in data.steps:
        counts[step.state] = counts.get(step.state, 0) + 1
    summary = ", ".join(f"{n} {name.replace('-', ' ')}" for name, n in sorted(counts.items()))
    sections = [
        _dag_section(data),
        _run_section(data.run),
        _metrics_section(history),
        _experiments_section(experiments),
        _plots_section(data.plots),
        _images_section(data.images),
    ]
    nav = "".join(
        f'<a href="#{anchor}">{title}</a>'
        for anchor, title in (
            ("graph", "Graph"),
            ("timeline", "Last run"),
            ("metrics", "Metrics"),
            ("experiments", "Experiments"),
            ("plots", "Plots"),
            ("images", "Images"),
        )
    )
    payload = {
        "steps": {s.name: _step_json(s) for s in data.steps},
        "groups": _groups(data.steps),
    }
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">{GENERATOR}'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark"><link rel="icon" href="data:,">'
        f"<title>gitpipe report: {esc(data.pipeline)}</title>"
        f"<style>{_asset('report.css')}</style></head><body>"
        f'<header><h1>{esc(data.pipeline)}</h1><p class="summary">{len(data.steps)} steps'
        f"{': ' + esc(summary) if summary else ''}. Written {esc(written)} by gitpipe.</p>"
        f"<nav>{nav}</nav></header><main>{''.join(sections)}</main>"
        f'<script type="application/json" id="report-data">{script_json(payload)}</script>'
        f"<script>{_asset('report.js')}</script></body></html>\n"
    )


def _step_json(step: StepView) -> dict[str, Any]:
    record = asdict(step)
    record["parts"] = [asdict(p) for p in step.parts]
    record["outputs"] = [asdict(o) for o in step.outputs]
    if step.duration is not None and not math.isfinite(step.duration):
        record["duration"] = None
    return record


def _groups(steps: Sequence[StepView]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for step in steps:
        if step.group:
            groups.setdefault(step.group, []).append(step.name)
    return groups


def _legend() -> str:
    return "".join(
        f'<span class="key s-{name}"><b>{esc(glyph)}</b> {esc(words)}</span>'
        for name, glyph, words in STATES
    )


def grouped(steps: Sequence[StepView]) -> tuple[list[Node], dict[str, list[str]]]:
    """The graph with each matrix step's expansions as one node (its state the worst
    of theirs), and the edges between nodes.  A grouping that would make a cycle is
    not made: then every step is its own node."""
    groups = _groups(steps)
    node_of = {s.name: s.group or s.name for s in steps}
    nodes: dict[str, Node] = {}
    parents: dict[str, list[str]] = {}
    for step in steps:
        node = node_of[step.name]
        members = tuple(groups.get(node, ()))
        current = nodes.get(node)
        state = step.state
        if current is not None and _RANK[current.state] < _RANK[state]:
            state = current.state
        nodes[node] = Node(node, node, state, _GLYPH[state], members)
        for parent in step.parents:
            source = node_of.get(parent, parent)
            if source != node and source not in parents.setdefault(node, []):
                parents[node].append(source)
        parents.setdefault(node, [])
    order = _topological(list(nodes), parents)
    if order is None:
        return ungrouped(steps), {s.name: list(s.parents) for s in steps}
    return [nodes[n] for n in order], parents


def ungrouped(steps: Sequence[StepView]) -> list[Node]:
    return [Node(s.name, s.name, s.state, _GLYPH[s.state]) for s in steps]


def _topological(names: list[str], parents: Mapping[str, list[str]]) -> list[str] | None:
    """The names with parents first (file order where free), or None on a cycle."""
    done: set[str] = set()
    order: list[str] = []
    pending = list(names)
    while pending:
        ready = [n for n in pending if all(p in done or p not in parents for p in parents[n])]
        if not ready:
            return None
        ready_set = set(ready)
        done |= ready_set
        order += ready
        pending = [n for n in pending if n not in ready_set]
    return order


def _dag_section(data: ReportData) -> str:
    steps = data.steps
    all_parents = {s.name: list(s.parents) for s in steps}
    full = dag_svg(ungrouped(steps), all_parents, element_id="dag-all")
    has_groups = any(s.group for s in steps)
    toggle = ""
    views = f'<div class="dag-view" id="view-all">{full}</div>'
    if has_groups:
        nodes, parents = grouped(steps)
        views = (
            f'<div class="dag-view" id="view-grouped">'
            f"{dag_svg(nodes, parents, element_id='dag-grouped')}</div>"
            f'<div class="dag-view" id="view-all" hidden>{full}</div>'
        )
        toggle = '<label><input type="checkbox" id="expand"> show every matrix step</label>'
    return (
        '<section id="graph"><h2>Graph</h2>'
        f'<p class="legend">{_legend()}</p>'
        '<div class="controls">'
        '<button type="button" data-zoom="0.8" title="zoom out">&minus;</button>'
        '<button type="button" data-zoom="1.25" title="zoom in">+</button>'
        f'<button type="button" data-zoom="0" title="fit the width">fit</button>{toggle}</div>'
        f'<div class="dag-pane">{views}<aside id="details" aria-live="polite">'
        "<p>Click a step to see its key, outputs and log.</p></aside></div></section>"
    )


def _run_section(run: RunView | None) -> str:
    if run is None or not run.bars:
        return (
            '<section id="timeline"><h2>Last run</h2>'
            "<p>No run recorded yet: <code>gitpipe repro</code> records one.</p></section>"
        )
    total = max(b.end for b in run.bars)
    commit = f", commit {esc(run.commit[:10])}" if run.commit else ""
    return (
        '<section id="timeline"><h2>Last run</h2>'
        f"<p>Run <code>{esc(run.run_id)}</code>, started {esc(run.started)}{commit}: "
        f"{esc(run.status)}, {len(run.bars)} steps in {total:.1f} s. Steps that ran at the "
        "same time are on separate lanes.</p>"
        f'<div class="scroll">{timeline_svg(run.bars)}</div></section>'
    )


def _metric_names(points: Sequence[Any]) -> list[tuple[str, str]]:
    names: dict[tuple[str, str], None] = {}
    for point in points:
        for step, values in point.metrics.items():
            for metric, value in values.items():
                if _is_number(value):
                    names.setdefault((step, metric), None)
    return list(names)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _metrics_section(history: Sequence[VersionPoint]) -> str:
    head = '<section id="metrics"><h2>Metrics across versions</h2>'
    names = _metric_names(history)
    if not names:
        return head + "<p>No metrics across versions to show.</p></section>"
    labels = [p.version or (p.commit or "")[:8] or "workspace" for p in history]
    xs = [float(i) for i in range(len(history))]
    charts = []
    for step, metric in names[:MAX_CHARTS]:
        ys = []
        for point in history:
            value = point.metrics.get(step, {}).get(metric)
            ys.append(float(value) if _is_number(value) else None)
        charts.append(
            f'<figure class="metric">{line_chart_svg(f"{step}: {metric}", xs, [Line(metric, tuple(ys))], x_labels=labels)}</figure>'  # noqa: E501
        )
    more = (
        f"<p>{len(names) - MAX_CHARTS} more metrics are not drawn.</p>"
        if len(names) > MAX_CHARTS
        else ""
    )
    return (
        head + f"<p>{len(history)} versions, oldest first (the working tree last when its "
        "metrics differ from the last commit's).</p>"
        f'<div class="charts">{"".join(charts)}</div>{more}</section>'
    )


def _experiments_section(experiments: Sequence[ExperimentRow]) -> str:
    head = '<section id="experiments"><h2>Experiments</h2>'
    if not experiments:
        return head + "<p>No experiments recorded.</p></section>"
    columns = _metric_names(experiments)[:MAX_COLUMNS]
    header = "".join(
        f"<th>{esc(text)}</th>" for text in ("experiment", "time", "state", "params")
    ) + "".join(f"<th>{esc(step)}<br>{esc(metric)}</th>" for step, metric in columns)
    rows = []
    for exp in experiments:
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(exp.time))
        overrides = ", ".join(f"{k}={json.dumps(v)}" for k, v in exp.overrides.items())
        cells = [exp.id, when, exp.state, overrides]
        values = []
        for step, metric in columns:
            value = exp.metrics.get(step, {}).get(metric)
            values.append(f"{value:.4g}" if _is_number(value) else "")
        rows.append(
            "<tr>"
            + "".join(f"<td>{esc(c)}</td>" for c in cells)
            + "".join(f'<td class="num">{esc(v)}</td>' for v in values)
            + "</tr>"
        )
    return (
        head + f'<div class="scroll"><table class="experiments"><thead><tr>{header}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table></div></section>"
    )


def _plots_section(plots: Sequence[Plot]) -> str:
    head = '<section id="plots"><h2>Plots</h2>'
    if not plots:
        return head + "<p>No step declares <code>plots</code>.</p></section>"
    figures = []
    for plot in plots:
        caption = f"<figcaption>{esc(plot.path)} (step {esc(plot.step)})</figcaption>"
        if plot.error:
            figures.append(
                f'<figure class="plot"><p class="note">{esc(plot.error)}</p>{caption}</figure>'
            )
            continue
        chart = line_chart_svg(plot.path, plot.xs, plot.lines, x_name=plot.x_name)
        figures.append(
            f'<figure class="plot" data-path="{esc(plot.path)}">{chart}{caption}</figure>'
        )
    return head + f'<div class="charts">{"".join(figures)}</div></section>'


def _images_section(images: Sequence[Image]) -> str:
    head = '<section id="images"><h2>Images</h2>'
    if not images:
        return head + "<p>No step writes a PNG or SVG output.</p></section>"
    figures = []
    for image in images:
        caption = f"<figcaption>{esc(image.path)} (step {esc(image.step)})</figcaption>"
        body = (
            f'<img src="{esc(image.data_uri)}" alt="{esc(image.path)}">'
            if image.data_uri
            else f'<p class="note">{esc(image.note)}</p>'
        )
        figures.append(f'<figure class="image">{body}{caption}</figure>')
    return head + f'<div class="images">{"".join(figures)}</div></section>'
