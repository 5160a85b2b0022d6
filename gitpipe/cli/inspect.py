"""Commands that look and change nothing: `status`, `why`, `check`, `dag`, `metrics`,
`schema`.

Each reads one answer from the facade (the planner's decisions, as `status_of` and
`Explanation` carry them; lineage's metrics) and prints it as lines or `--json`."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from gitpipe.cli import (
    FileOption,
    JsonOption,
    StepsArgument,
    app,
    handled,
    open_lineage,
    open_project,
)
from gitpipe.cli.output import echo_json, table
from gitpipe.core.errors import StaleError, UsageError

if TYPE_CHECKING:
    from gitpipe.workspace import Explanation
    from gitpipe.workspace.data import DataState
    from gitpipe.workspace.experiments import MetricsHistory


@app.command()
@handled
def status(
    steps: StepsArgument = None,
    file: FileOption = None,
    as_json: JsonOption = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Exit 3 unless `repro --frozen` would pass: a step would have to run, or "
            "restore other outputs than gitpipe.lock names.",
        ),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Also list each step's code files.")
    ] = False,
) -> None:
    """Show each step's state and why it is stale."""
    from gitpipe.core.layout import locate
    from gitpipe.core.snapshot import answer
    from gitpipe.workspace.inspection import status_report, status_verdict

    # the whole pipeline found up to date last time, and no stamp changed since:
    # the answer stands without parsing or hashing anything (see gitpipe/core/snapshot.py)
    statuses = None if steps else answer(locate(".", file))
    data: list[DataState] = []  # a snapshot's answer stands only with all added data as recorded
    if statuses is None:
        statuses, data = open_project(file).status_and_data(steps or [])
    data = [d for d in data if d.state != "up to date"]
    if as_json:
        echo_json([s.to_json() for s in statuses] + [d.to_json() for d in data])
    else:
        typer.echo("\n".join(status_report(statuses, data, verbose=verbose)))
    status_verdict(statuses, data, check=check)


@app.command()
@handled
def why(
    step: Annotated[str, typer.Argument(help="The step to explain.")],
    file: FileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Explain a step's key, component by component, against the lock and the store."""
    from gitpipe.workspace.inspection import stop_if_unreachable

    explanation = open_project(file).why(step)
    if as_json:
        echo_json(explanation.to_json())
        stop_if_unreachable(list(explanation.reasons))
        return
    reasons = f" ({'; '.join(explanation.reasons)})" if explanation.reasons else ""
    typer.echo(f"{step}: {explanation.state}{reasons}")
    typer.echo(f"  repro would: {_would(explanation)}")
    if not explanation.key:
        stop_if_unreachable(list(explanation.reasons))
        return
    typer.echo(f"  key now: {explanation.key}")
    if explanation.code:
        typer.echo(f"  code: {', '.join(explanation.code)}")
    if explanation.against_lock is None:
        typer.echo("  gitpipe.lock has no entry for it (it never ran here, or the lock is new)")
    else:
        typer.echo(f"  against gitpipe.lock (key {explanation.lock_key[:15]}):")
        for c in explanation.against_lock:
            label = f"{c.kind} {c.name}".strip()
            if c.change == "same":
                typer.echo(f"    {label:<28} same")
            else:
                typer.echo(f"    {label:<28} {c.change}: {_short(c.then)} -> {_short(c.now)}")
    if explanation.nearest is None:
        typer.echo("  no stored result of this step to compare with")
    elif not explanation.nearest and explanation.state == "up to date":
        typer.echo("  up to date: the key matches gitpipe.lock and the outputs match it")
    elif not explanation.nearest:
        typer.echo("  a stored result has exactly this key: `gitpipe repro` restores it")
    else:
        typer.echo(
            f"  nearest stored result (key {explanation.nearest_key[:15]}) differs in "
            f"{len(explanation.nearest)} component(s); it would be hit if:"
        )
        for c in explanation.nearest:
            label = f"{c.kind} {c.name}".strip()
            if c.change == "added":
                typer.echo(f"    {label} were not there")
            elif c.change == "removed":
                typer.echo(f"    {label} were back ({_short(c.then)})")
            else:
                typer.echo(f"    {label} were {_short(c.then)} (it is {_short(c.now)})")


def _would(explanation: Explanation) -> str:
    """What `repro` would do with a step, as `why` says it."""
    action = explanation.action
    if action == "restore":
        where = "gitpipe.lock's outputs" if explanation.source == "lock" else "a stored result"
        return f"restore {where}"
    if action == "run" and explanation.upstream:
        return f"decide once {', '.join(explanation.upstream)} has run (it will run)"
    if action == "run":
        return "run it"
    if action == "waiting":
        return f"wait for approval ({explanation.note})"
    if action == "skipped":
        return f"skip it ({explanation.note})"
    if action == "frozen":
        return "leave it (frozen: never runs)"
    return "nothing (up to date)"


def _short(value: object) -> str:
    """A value of a key's component, short enough for one line: digests to 15 characters."""
    text = json.dumps(value) if not isinstance(value, str) else value
    if text.startswith("b3:") and len(text) == 67:
        return text[:15]
    return text if len(text) <= 60 else text[:57] + "..."


@app.command()
@handled
def check(file: FileOption = None, as_json: JsonOption = False) -> None:
    """Fail (exit 3) when gitpipe.lock does not match the pipeline (for pre-commit)."""
    mismatched = open_project(file).check_lock()
    if as_json:
        echo_json(
            {
                "matches": not mismatched,
                "mismatched": [
                    {"step": step, "reasons": list(reasons)} for step, reasons in mismatched
                ],
            }
        )
    if mismatched:
        listed = "; ".join(f"{step} ({', '.join(reasons)})" for step, reasons in mismatched)
        raise StaleError(
            f"gitpipe.lock does not match the pipeline for {len(mismatched)} step(s): {listed}; "
            "run `gitpipe repro` and commit gitpipe.lock"
        )
    if not as_json:
        typer.echo("gitpipe.lock matches the pipeline")


@app.command()
@handled
def metrics(
    file: FileOption = None,
    as_json: JsonOption = False,
    history: Annotated[
        bool,
        typer.Option(
            "--history",
            help="Each metric per version along HEAD's first-parent history (from the "
            "gitpipe.lock of each commit), and the working tree's, with deltas.",
        ),
    ] = False,
    limit: Annotated[
        int | None,
        typer.Option("-n", help="With --history: the N newest versions only.", show_default=False),
    ] = None,
) -> None:
    """The current metrics of every step, from lineage; with --history, per version."""
    if limit is not None and not history:
        raise UsageError("-n goes with --history")
    if history:
        _metrics_history(open_project(file).metrics_history(limit=limit), as_json=as_json)
        return
    from gitpipe.run import lineage

    values = lineage.current_metrics(open_lineage(open_project(file)))
    if as_json:
        echo_json(values)
        return
    for step, files in values.items():
        for path, numbers in files.items():
            for name, value in numbers.items():
                typer.echo(f"{step}  {path}  {name} = {value}")
    if not values:
        typer.echo("no metrics recorded yet")


def _metrics_history(history: MetricsHistory, *, as_json: bool) -> None:
    """One line per version, one column per metric: its value and how far it moved."""
    from gitpipe.history.diff import delta_text

    if as_json:
        echo_json(history.to_json())
        return
    if not history.points:
        typer.echo("no commit on HEAD's first-parent history records metrics in gitpipe.lock yet")
        return
    names = history.names()
    several = len({step for step, _ in names}) > 1  # name the step where it tells apart
    header = ["version", "commit", *[f"{s}.{n}" if several else n for s, n in names]]
    rows = []
    previous: dict[str, dict[str, object]] = {}
    for i, point in enumerate(history.points):
        deltas = history.deltas(i)
        cells = [point.version or "-", point.commit[:7] if point.commit else "workspace"]
        for step, name in names:
            value = point.metrics.get(step, {}).get(name)
            before = previous.get(step, {}).get(name)
            delta = delta_text(deltas.get(step, {}).get(name), before, value)
            cells.append("-" if value is None else f"{value} ({delta})" if delta else str(value))
        previous = {step: dict(values) for step, values in point.metrics.items()}
        rows.append(cells)
    for line in table(header, rows):
        typer.echo(line)


@app.command()
@handled
def dag(
    file: FileOption = None,
    mermaid: Annotated[bool, typer.Option("--mermaid", help="Mermaid, for Markdown.")] = False,
    dot: Annotated[bool, typer.Option("--dot", help="Graphviz dot.")] = False,
    as_json: JsonOption = False,
) -> None:
    """The step graph, with each step's state."""
    from gitpipe.pipeline.render import dag_dot, dag_json, dag_mermaid, dag_text

    project = open_project(file)
    states = {s.step: s for s in project.status()}
    graph = project.graph
    if sum((mermaid, dot, as_json)) > 1:
        raise UsageError("choose one of --mermaid, --dot and --json")
    render = dag_mermaid if mermaid else dag_dot if dot else dag_json if as_json else dag_text
    typer.echo(render(graph, states))


@app.command()
def schema() -> None:
    """Print the JSON Schema of gitpipe.toml, for editors to check it as you type."""
    from gitpipe.pipeline.spec import schema_text

    sys.stdout.write(schema_text())
