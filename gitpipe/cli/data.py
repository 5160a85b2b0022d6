"""Commands for data too big for Git: `add`, `remove`, `checkout`.

Each parses its arguments, calls the facade (`Project.add`, `.remove`, `.checkout`:
gitpipe/workspace/data.py) and prints what it did, or `--json`."""

from __future__ import annotations

from typing import Annotated

import typer

from gitpipe.cli import FileOption, JsonOption, app, handled, open_project
from gitpipe.cli.output import echo_json, size

PathsArgument = Annotated[list[str], typer.Argument(help="Files or folders.", show_default=False)]


@app.command()
@handled
def add(
    paths: PathsArgument,
    link: Annotated[
        str | None,
        typer.Option(
            "--link",
            help="copy, hardlink or symlink: how the files stay in the workspace and how "
            "`gitpipe checkout` puts them back (default: the pipeline's `link`).",
            show_default=False,
        ),
    ] = None,
    file: FileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Track files or folders too big for Git: their bytes go into the store, their
    digests into gitpipe.data, and a line for each into .gitignore."""
    project = open_project(file)
    done = project.add(paths, link=link)
    if as_json:
        echo_json([a.to_json() for a in done])
        return
    for added in done:
        r = added.record
        what = f"{r.files} file(s), " if r.is_dir else ""
        typer.echo(f"{added.how} {r.name} ({what}{size(r.size)}, {str(r.digest)[:15]})")
        for warning in added.warnings(project.root):
            typer.echo(f"gitpipe: warning: {warning}", err=True)
    typer.echo(
        f"commit {project.file.with_suffix('.data').name} and .gitignore; "
        "`gitpipe push` sends the bytes to the remote"
    )


@app.command()
@handled
def remove(
    paths: PathsArgument,
    file: FileOption = None,
) -> None:
    """Stop tracking added files or folders; they stay in the workspace."""
    project = open_project(file)
    for record in project.remove(paths):
        typer.echo(
            f"stopped tracking {record.name}; it stays in the workspace, untracked by Git "
            "and gitpipe (its bytes stay in the store until `gitpipe gc`)"
        )


@app.command()
@handled
def checkout(
    paths: Annotated[
        list[str] | None,
        typer.Argument(
            help="Added paths or outputs to put back (default: all).", show_default=False
        ),
    ] = None,
    pull: Annotated[
        bool, typer.Option("--pull", help="Fetch what the store lacks from the remote first.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Also overwrite files holding bytes gitpipe never recorded."),
    ] = False,
    remote: Annotated[
        str | None,
        typer.Option("--remote", "-r", help="The remote for --pull.", show_default=False),
    ] = None,
    file: FileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Put added data and step outputs back to what this commit's gitpipe.data and
    gitpipe.lock record, from the store; never runs a step.  Exits 3, changing
    nothing, when bytes are missing or a file holds bytes gitpipe never recorded."""
    report = open_project(file).checkout(paths or [], pull=pull, force=force, remote=remote)
    for warning in report.warnings:
        typer.echo(warning, err=True)
    if as_json:
        echo_json(report.to_json())
        return
    for line in report.lines():
        typer.echo(line)
