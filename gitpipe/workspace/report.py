"""`gitpipe report`: one self-contained HTML page of a pipeline.

    Project ──▶ collect()  the plan (states, `why`'s key components), the lock
                           (output digests), lineage (the last run: times, logs,
                           sizes), the workspace (images, plots files)
            ──▶ report_html.render()  ──▶ write(): where -o says, atomically

It writes nothing but the page: the plan is made read-only (as `repro -n`), lineage
is only read.  Where the page goes is checked before anything is read, so a refused
``-o`` leaves every file as it was.  Docs: docs/report.md.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import io
import json
import math
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitpipe.core import atomic
from gitpipe.core.errors import UsageError
from gitpipe.core.layout import ensure_state_dir
from gitpipe.core.states import FAILED, FROZEN, INTERRUPTED, SKIPPED, UP_TO_DATE
from gitpipe.run import explain
from gitpipe.run.guard import protected
from gitpipe.run.planner import RESTORE, WAITING, Decision
from gitpipe.store.lockfile import LockEntry
from gitpipe.workspace.report_html import (
    GENERATOR,
    ExperimentRow,
    Image,
    KeyPart,
    Output,
    Plot,
    ReportData,
    RunView,
    StepView,
    VersionPoint,
    render,
)
from gitpipe.workspace.report_svg import Bar, Line

if TYPE_CHECKING:
    import sqlite_utils

    from gitpipe.workspace import Project

#: where the page goes without -o: gitpipe's own folder, never a file of the user's
DEFAULT_NAME = "report.html"
#: an image output larger than this is named, not put in the page
IMAGE_LIMIT = 1 << 20
#: all images together at most; those past it are named only
IMAGES_LIMIT = 8 << 20
#: a plots file larger than this is not read
PLOT_LIMIT = 4 << 20
#: points per line at most (evenly thinned beyond)
PLOT_POINTS = 2000
#: the end of a step's log that the page holds
LOG_TAIL = 4096
IMAGE_TYPES = {
    ".png": "image/png",
    ".svg": "image/svg+xml",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}
#: column names read as the x of a plot before falling back to the first column
X_NAMES = ("x", "step", "epoch", "iteration", "time")


def target(project: Project, output: str | os.PathLike[str] | None) -> Path:
    """Where the page goes: ``output`` (relative to the current folder), or
    ``.gitpipe/report.html``.  Raises :class:`UsageError` for a place a report may not
    replace: a folder, a missing folder, Git's folder, the store, the lock, a pipeline
    file, a step's output, or a file that is not a report."""
    if output is None:
        return project.state_dir / DEFAULT_NAME
    path = Path(os.path.abspath(output))
    shown = os.fspath(output)
    if path.is_dir():
        raise UsageError(f"-o {shown} is a folder; name the HTML file to write")
    if not path.parent.is_dir():
        raise UsageError(f"-o {shown}: the folder {path.parent} does not exist")
    real = os.path.realpath(path)
    guarded = protected(project)
    state_dir = os.path.realpath(project.state_dir)
    for place, what in guarded.places:
        if place == state_dir:
            continue  # gitpipe's own folder may hold a report (the default does)
        if real == place or real.startswith(place.rstrip(os.sep) + os.sep):
            raise UsageError(f"-o {shown} is {what}; a report never replaces it")
    for name in project.graph.order:
        for spec in project.pipeline.steps[name].all_outs:
            out = os.path.realpath(project.root / spec.path)
            if real == out or real.startswith(out + os.sep):
                raise UsageError(
                    f"-o {shown} is an output of step {name}; write the report elsewhere"
                )
    if path.exists() and not is_report(path):
        raise UsageError(
            f"-o {shown} exists and is not a gitpipe report; a report replaces only a report"
        )
    return path


def is_report(path: Path) -> bool:
    """Whether a file is a page `gitpipe report` wrote (its first bytes say so)."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(2048)
    except OSError:
        return False
    return GENERATOR.encode() in head


def write(
    project: Project,
    output: str | os.PathLike[str] | None = None,
    *,
    history: Sequence[VersionPoint] | None = None,
    experiments: Sequence[ExperimentRow] | None = None,
) -> Path:
    """Write the report where ``output`` says (see :func:`target`); its path.  The
    metrics across versions and the experiments are the project's own unless given."""
    path = target(project, output)
    data = collect(project)
    if history is None:
        history = project.metrics_history().points
    if experiments is None:
        experiments = project.experiments()
    page = render(data, history=history, experiments=experiments)
    if output is None:
        ensure_state_dir(project.state_dir)
    atomic.write_bytes(path, page.encode("utf-8"))
    return path


def collect(project: Project) -> ReportData:
    """What the page shows of the workspace now and of its last run."""
    pipeline = project.pipeline
    graph = project.graph
    lock = project.read_lock()
    decisions = {d.step: d for d in project.plan()}
    run, last = _last_run(project)
    sizes = _sizes(project)
    steps = []
    for name in graph.order:
        step = pipeline.steps[name]
        decision = decisions[name]
        execution = last.get(name, {})
        entry = lock.steps.get(name)
        steps.append(
            StepView(
                name=name,
                state=_state(decision, execution.get("state", "")),
                action=decision.action,
                reasons=_reasons(decision),
                parents=tuple(graph.parents[name]),
                group=step.group if step.matrix else "",
                desc=step.desc,
                key=decision.key,
                parts=_parts(decision, entry),
                outputs=_outputs(project, step.all_outs, entry, sizes),
                last_state=execution.get("state", ""),
                duration=execution.get("duration"),
                log_tail=_tail(project, execution.get("log")),
            )
        )
    return ReportData(
        pipeline=pipeline.name,
        steps=tuple(steps),
        run=run,
        images=_images(project, lock.steps),
        plots=tuple(
            read_plot(project.root, name, spec.path)
            for name in graph.order
            for spec in pipeline.steps[name].plots
        ),
    )


def _state(decision: Decision, last: str) -> str:
    """The class a step's node takes: its state now, and `failed` when the last run
    failed it and it has not been done since."""
    if decision.action == UP_TO_DATE:
        return "up-to-date"
    if decision.action in (FROZEN, SKIPPED):
        return decision.action
    if last in (FAILED, INTERRUPTED):
        return "failed"
    if decision.action == WAITING:
        return "waiting"
    if decision.action == RESTORE:
        return "restore"
    return "stale"


def _reasons(decision: Decision) -> tuple[str, ...]:
    reasons = tuple(str(r) for r in decision.reasons)
    return reasons or ((decision.skip,) if decision.skip else ())


def _text(kind: str, value: Any) -> str:
    """A component's value as one line (a command's parts joined by ``&&``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
        return (" && " if kind == "command" else ", ").join(value)
    return json.dumps(value, default=str)


def _parts(decision: Decision, entry: LockEntry | None) -> tuple[KeyPart, ...]:
    """The key's components as `why` lists them, each against the lock's entry."""
    if decision.record is not None:
        now = explain.comparable(decision.record.as_record())
    elif entry is not None:
        now = explain.from_lock(entry)
    else:
        return ()
    if entry is not None:
        components = explain.compare(now, explain.from_lock(entry))
        return tuple(
            KeyPart(c.kind, c.name, _text(c.kind, c.then if c.now is None else c.now), c.change)
            for c in components
        )
    parts = [KeyPart(k, "", _text(k, now[k]), "") for k in ("command", "wdir", "outs")]
    for kind in ("code", "dep", "param", "env"):
        parts += [KeyPart(kind, name, _text(kind, v), "") for name, v in now[kind].items()]
    return tuple(parts)


def _outputs(
    project: Project, specs: Sequence[Any], entry: LockEntry | None, sizes: Mapping[str, int]
) -> tuple[Output, ...]:
    outs = []
    for spec in specs:
        digest = str(entry.outs[str(spec)]) if entry is not None and str(spec) in entry.outs else ""
        size = sizes.get(digest)
        if size is None and not spec.is_dir:
            with contextlib.suppress(OSError):
                size = (project.root / spec.path).stat().st_size
        outs.append(Output(str(spec), digest, size))
    return tuple(outs)


def _database(project: Project) -> sqlite_utils.Database | None:
    if not (project.state_dir / "lineage.db").is_file():
        return None
    from gitpipe.workspace.lineage import database

    return database(project)


def _last_run(project: Project) -> tuple[RunView | None, dict[str, dict[str, Any]]]:
    """The last run as bars, and each step's last execution (in any run)."""
    db = _database(project)
    if db is None:
        return None, {}
    from gitpipe.run import lineage

    last: dict[str, dict[str, Any]] = {}
    for row in db.query(
        "SELECT e.step, e.state, e.duration, e.log FROM executions e JOIN"
        " (SELECT step, max(id) AS id FROM executions WHERE state != ? GROUP BY step) m"
        " ON e.id = m.id",
        [UP_TO_DATE],
    ):
        last[row["step"]] = row
    try:
        run_id = lineage.find_run(db, "last")
    except lineage.LineageError:
        return None, last
    info = lineage.run(db, run_id)
    rows = lineage.executions(db, run_id)
    begun = _epoch(info["started"]) or 0.0
    bars = []
    for row in rows:
        start, end = _epoch(row["started"]), _epoch(row["ended"])
        if start is None or end is None:
            continue
        bars.append(Bar(row["step"], row["state"], max(0.0, start - begun), max(0.0, end - begun)))
    view = RunView(
        run_id=run_id,
        started=str(info["started"] or ""),
        status=str(info["status"] or ""),
        commit=str(info["git_commit"] or ""),
        bars=tuple(bars),
    )
    return view, last


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


def _sizes(project: Project) -> dict[str, int]:
    """Each digest's size as lineage recorded it."""
    db = _database(project)
    if db is None:
        return {}
    return {
        row["digest"]: row["size"]
        for row in db.query("SELECT digest, size FROM artifacts")
        if row["size"] is not None
    }


def _tail(project: Project, log: str | None) -> str:
    if not log:
        return ""
    path = Path(log)
    path = path if path.is_absolute() else project.root / path
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - LOG_TAIL))
            data = handle.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace")
    if size > LOG_TAIL:
        text = "…" + text.split("\n", 1)[-1]
    return text


def _images(project: Project, entries: Mapping[str, LockEntry]) -> tuple[Image, ...]:
    """The image files steps wrote (as the lock names them), as data: URIs."""
    from gitpipe.core.hashing import Digest
    from gitpipe.store.objects import Store

    store = Store(project.store_dir)
    images = []
    budget = IMAGES_LIMIT
    for name in project.graph.order:
        entry = entries.get(name)
        if entry is None:
            continue
        for path, digest in sorted(entry.outs.items()):
            mime = IMAGE_TYPES.get(os.path.splitext(path)[1].lower())
            if mime is None or path.endswith("/"):
                continue
            sources = [project.root / path, store.object_path(Digest.parse(str(digest)))]
            found = next((s for s in sources if s.is_file()), None)
            if found is None:
                images.append(Image(name, path, "", "not in the workspace nor the store"))
                continue
            size = found.stat().st_size
            if size > IMAGE_LIMIT or size > budget:
                images.append(Image(name, path, "", f"{size} bytes: too large to put in the page"))
                continue
            budget -= size
            data = base64.b64encode(found.read_bytes()).decode("ascii")
            images.append(Image(name, path, f"data:{mime};base64,{data}"))
    return tuple(images)


# -- plots files -----------------------------------------------------------------------


def read_plot(root: Path, step: str, path: str) -> Plot:
    """A plots file of the workspace, read (an error in the plot, never raised)."""
    file = root / path
    try:
        size = file.stat().st_size
        if size > PLOT_LIMIT:
            return Plot(step, path, "", (), (), f"{size} bytes: too large to draw")
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Plot(step, path, "", (), (), "not in the workspace (run the step)")
    except (OSError, UnicodeDecodeError) as exc:
        return Plot(step, path, "", (), (), f"cannot be read ({exc})")
    try:
        rows = _rows(path, text)
        x_name, xs, lines = columns(rows)
    except ValueError as exc:
        return Plot(step, path, "", (), (), f"cannot be drawn: {exc}")
    return Plot(step, path, x_name, xs, lines)


def _rows(path: str, text: str) -> list[dict[str, Any]]:
    """A plots file's records: CSV/TSV with a header row, or JSON."""
    if path.lower().endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JSON ({exc.msg}, line {exc.lineno})") from exc
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise ValueError("a JSON object must hold exactly one list of records")
            data = lists[0]
        if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
            raise ValueError("JSON plot data is a list of objects")
        return data
    dialect = "excel-tab" if path.lower().endswith(".tsv") else "excel"
    return list(csv.DictReader(io.StringIO(text), dialect=dialect))


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def columns(rows: Sequence[Mapping[str, Any]]) -> tuple[str, tuple[float, ...], tuple[Line, ...]]:
    """The x column (named x, step, epoch, ... else the first) and a line per other
    column holding numbers; rows without a numeric x are left out."""
    if not rows:
        raise ValueError("no rows")
    names = list(dict.fromkeys(k for row in rows for k in row if k is not None))
    x_name = next((n for n in names if n.lower() in X_NAMES), names[0] if names else "")
    ys = [n for n in names if n != x_name]
    usable = [row for row in rows if _float(row.get(x_name)) is not None]
    if not usable:
        # no numeric x: the row's number is x
        usable, x_name, ys = list(rows), "row", names
        xs = [float(i) for i in range(len(usable))]
    else:
        xs = [_float(row.get(x_name)) or 0.0 for row in usable]
    lines = []
    for name in ys:
        values = [_float(row.get(name)) for row in usable]
        if any(v is not None for v in values):
            lines.append(Line(name, tuple(values)))
    if not lines:
        raise ValueError("no column of numbers to draw")
    if len(xs) > PLOT_POINTS:
        keep = sorted({round(i * (len(xs) - 1) / (PLOT_POINTS - 1)) for i in range(PLOT_POINTS)})
        xs = [xs[i] for i in keep]
        lines = [Line(line.name, tuple(line.ys[i] for i in keep)) for line in lines]
    return x_name, tuple(xs), tuple(lines)
