"""`gitpipe report`: write the pipeline's HTML report, and open it if asked.

The page is built by the facade (gitpipe.workspace.report); this module parses the
options, says where the page went, and hands it to the system's browser with
``--open`` (Python's webbrowser: ``$BROWSER`` first)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gitpipe.cli import FileOption, app, handled, open_project


@app.command()
@handled
def report(
    file: FileOption = None,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="The HTML file to write (default: .gitpipe/report.html).",
            show_default=False,
        ),
    ] = None,
    open_it: Annotated[
        bool, typer.Option("--open", help="Open the page in a browser once written.")
    ] = False,
) -> None:
    """Write one self-contained HTML page: the graph, the last run, metrics and plots."""
    from gitpipe.workspace.report import write

    project = open_project(file)
    path = write(project, output)
    typer.echo(f"wrote {path}")
    if open_it:
        import webbrowser

        if not webbrowser.open(path.as_uri()):
            typer.echo("gitpipe: no browser to open it with; open the file yourself", err=True)
