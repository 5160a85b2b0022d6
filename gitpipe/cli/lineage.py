"""Commands that read lineage, the SQLite history of runs: `log`, `show`, `logs`,
`lineage`.

They ask the facade (`gitpipe.workspace.lineage`: runs, one run's executions, the
origin of a file's bytes) and print the answer as lines or `--json`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated

import typer

from gitpipe.cli import FileOption, JsonOption, app, handled, open_project
from gitpipe.cli.output import echo_json
from gitpipe.core import states

if TYPE_CHECKING:
    from gitpipe.pipeline.graph import Graph
    from gitpipe.run.provenance import Origin


@app.command()
@handled
def log(
    file: FileOption = None,
    as_json: JsonOption = False,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs.")] = 20,
) -> None:
    """List the latest runs, newest first."""
    from gitpipe.workspace import lineage

    rows = lineage.runs(open_project(file), limit=limit)
    if as_json:
        echo_json(rows)
        return
    for row in rows:
        commit = (row["git_commit"] or "no commit")[:10] + ("+dirty" if row["dirty"] else "")
        typer.echo(
            f"{row['id']}  {row['started'][:19]}  {commit:<16} {row['status']:<11} "
            + _counts(row["counts"])
        )
    if not rows:
        typer.echo("no runs yet")


@app.command()
@handled
def show(
    run: Annotated[str, typer.Argument(help="A run id, a unique prefix of one, or `last`.")],
    file: FileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Show the executions of one run."""
    from gitpipe.cli.plain import ending
    from gitpipe.workspace import lineage

    detail = lineage.run(open_project(file), run)
    if as_json:
        echo_json(detail.to_json())
        return
    run_id, info, rows = detail.run_id, detail.info, detail.executions
    typer.echo(f"run {run_id}  {info['status']}  {_commit(info['git_commit'], info['dirty'])}")
    width = max((len(row["step"]) for row in rows), default=0)
    state_width = max((len(row["state"]) for row in rows), default=0)
    for row in rows:
        detail = row["message"] or "; ".join(row["reasons"])
        took = f"{row['duration']:.2f} s" if row["state"] in _TIMED else ""
        typer.echo(
            f"  {row['step']:<{width}}  {row['state']:<{state_width}} {took:>9}  {detail}".rstrip()
        )
    stopped = [row["step"] for row in rows if row["state"] == states.INTERRUPTED]
    typer.echo((_counts(info["counts"]) or "no steps") + ending(info["status"], stopped))


@app.command()
@handled
def logs(
    step: Annotated[str, typer.Argument(help="The step whose output to print.")],
    run: Annotated[
        str | None,
        typer.Option(
            "--run",
            "-r",
            help="A run id, a unique prefix of one, or `last` [default: the last run in "
            "which the step ran].",
            show_default=False,
        ),
    ] = None,
    file: FileOption = None,
) -> None:
    """Print what a step wrote to stdout and stderr when it last ran, or in one run."""
    from gitpipe.workspace import lineage

    path = lineage.step_log(open_project(file), step, run)
    typer.echo(path.read_bytes(), nl=False)


#: states whose executions took time worth showing
_TIMED = (states.RAN, states.FAILED, states.INTERRUPTED)


def _counts(counts: Mapping[str, int]) -> str:
    """A run's counts, by state: "1 cached, 2 ran"."""
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))


def _commit(commit: str | None, dirty: bool | None) -> str:
    """A run's commit, short, marked when the work tree had uncommitted changes."""
    return (f"commit {commit[:10]}" + ("+dirty" if dirty else "")) if commit else "no commit"


@app.command("lineage")
@handled
def lineage_command(
    path: Annotated[str, typer.Argument(help="A file or folder the pipeline produced.")],
    file: FileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Which step, run and commit produced the bytes now at PATH, and from what."""
    from gitpipe.run.provenance import walk
    from gitpipe.workspace import lineage

    project = open_project(file)
    node = lineage.origin(project, path)
    if as_json:
        echo_json(node.to_json())
        return
    for depth, item in walk(node):
        typer.echo("  " * depth + _origin_line(item, project.graph))


def _origin_line(item: Origin, graph: Graph) -> str:
    """One line of `gitpipe lineage`: a path, and who made its bytes when, or why none."""
    from gitpipe.pipeline.spec import PathSpec

    made = item.made
    if made is None:
        parts = item.path.rstrip("/").split("/")
        ancestors = ("/".join(parts[:i]) for i in range(1, len(parts) + 1))
        around = {graph.producer[path] for path in ancestors if path in graph.producer}
        inside = graph.producers_of(PathSpec("/".join(parts), item.path.endswith("/")))
        digest = item.digest[:15]
        if around:  # an output, or in one: bytes no recorded run of its step wrote
            return (
                f"{item.path}  ({item.role}, an output of step {', '.join(sorted(around))}, "
                f"but no recorded run wrote these bytes, {digest})"
            )
        if inside:
            return (
                f"{item.path}  ({item.role}, a folder holding outputs of step "
                f"{', '.join(sorted(inside))}, {digest})"
            )
        return f"{item.path}  ({item.role}, raw input, {digest})"
    where = f", in {item.within}" if item.within else ""
    if item.seen:
        return f"{item.path}  <- step {made.step}{where} (see above)"
    when = f"run {made.run_id}, {_commit(made.git_commit, made.dirty)}"
    if made.state == states.CACHED:
        how = f"restored from the store in {when}; no run that made them is recorded here"
    else:
        how = f"{made.state} in {when}"
    if item.restored is not None:
        again = item.restored
        how += (
            f"; restored from the store in run {again.run_id}, "
            f"{_commit(again.git_commit, again.dirty)}"
        )
    return f"{item.path}  <- step {made.step}{where} ({how})"
