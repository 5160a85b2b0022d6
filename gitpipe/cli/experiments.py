"""`gitpipe exp`: the experiments (`repro -p` runs) lineage recorded.

    exp show         each experiment: id, time, the params it changed, metrics, state
    exp diff A [B]   two experiments (or one and HEAD) side by side, with deltas
    exp apply ID     its params into the pipeline file, its results restored, nothing run

The facade (`gitpipe.workspace.experiments`) builds each answer; these print it."""

from __future__ import annotations

import json
import sys
from typing import Annotated, Any

import typer

from gitpipe.cli import MARKUP, FileOption, JsonOption, app, handled, open_project
from gitpipe.cli.output import echo_json, plain_output, table

exp_app = typer.Typer(
    help="List, compare and apply experiments (runs with -p).",
    no_args_is_help=True,
    rich_markup_mode=MARKUP,
)
app.add_typer(exp_app, name="exp")


def value_text(value: Any) -> str:
    """A param's or metric's value as a cell: numbers and text as they are."""
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)


@exp_app.command("show")
@handled
def show(file: FileOption = None, as_json: JsonOption = False) -> None:
    """Each experiment, newest first: id, time, the params it changed, metrics, state."""
    project = open_project(file)
    found = project.experiments()
    project.keep_caches()  # the parsed pipeline, for the next command
    if as_json:
        echo_json([experiment.to_json() for experiment in found])
        return
    if not found:
        typer.echo("no experiments yet: `gitpipe repro -p NAME=VALUE` runs one")
        return
    rows = []
    for e in found:
        changed = ", ".join(f"{n}={value_text(v)}" for n, v in e.changed.items()) or "(none)"
        several = len(e.metrics) > 1  # name the step only where it tells metrics apart
        metrics = ", ".join(
            f"{step + '.' if several else ''}{name}={value_text(value)}"
            for step, values in e.metrics.items()
            for name, value in values.items()
        )
        rows.append([e.id, e.date.replace("+00:00", "Z"), e.state, changed, metrics or "-"])
    for line in table(["id", "time", "state", "params changed", "metrics"], rows):
        typer.echo(line)


@exp_app.command("diff")
@handled
def diff(
    a: Annotated[str, typer.Argument(help="An experiment's id (or HEAD).")],
    b: Annotated[
        str, typer.Argument(help="Another experiment's id, or HEAD (the default).")
    ] = "HEAD",
    file: FileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Two experiments, or an experiment and HEAD: params and metrics side by side."""
    from gitpipe.history.diff import delta_text
    from gitpipe.workspace.experiments import compare

    project = open_project(file)
    result = compare(project, a, b)
    project.keep_caches()
    if as_json:
        echo_json(result.to_json())
        return
    left, right = result.a.label, result.b.label
    if result.params:
        rows = [[f"param {n}", value_text(x), value_text(y), ""] for n, x, y in result.params]
    else:
        rows = [["params", "(the same)", "(the same)", ""]]
    for step, name, x, y, delta in result.metrics:
        rows.append([f"{step}: {name}", value_text(x), value_text(y), delta_text(delta, x, y)])
    for line in table(["", left, right, "delta"], rows):
        typer.echo(line)


@exp_app.command("apply")
@handled
def apply(
    experiment: Annotated[str, typer.Argument(help="The experiment's id (`gitpipe exp show`).")],
    file: FileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Write an experiment's params into the pipeline file and restore its results
    (nothing runs), so that the next commit keeps it."""
    from gitpipe.workspace.experiments import apply as apply_experiment

    if plain_output():
        from gitpipe.cli.plain import ConsoleReporter as View
    else:
        from gitpipe.cli.live import LiveReporter as View
    listeners = [] if as_json else [View(verbose=False, quiet=True)]
    done = apply_experiment(open_project(file), experiment, listeners=listeners, argv=sys.argv[1:])
    if as_json:
        echo_json(done.to_json())
        return
    params = ", ".join(f"{n} = {value_text(v)}" for n, v in done.params.items())
    files = " and ".join(path.name for path in done.files)
    typer.echo(f"applied experiment {done.experiment.id}: {params} in {files}")
    if done.restored:
        typer.echo(f"gitpipe.lock names its results of {', '.join(done.restored)}")
    typer.echo(f"commit {', '.join(path.name for path in done.files)} and gitpipe.lock to keep it")
