"""`gitpipe import dvc`: write gitpipe.toml from another tool's pipeline files.

The facade (`gitpipe.workspace.dvcimport`) finds, translates and writes; this
command prints the warnings on standard error, one line each, and what was written
(or, with --dry-run, the files themselves on standard output)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from gitpipe.cli import MARKUP, app, handled

import_app = typer.Typer(
    help="Write gitpipe.toml from another tool's pipeline.",
    no_args_is_help=True,
    rich_markup_mode=MARKUP,
)
app.add_typer(import_app, name="import")


@import_app.command("dvc")
@handled
def import_dvc_command(
    folder: Annotated[
        Path,
        typer.Argument(help="The folder holding dvc.yaml (and subfolders with their own)."),
    ] = Path("."),
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite existing gitpipe.toml files.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Print the files instead of writing them.")
    ] = False,
) -> None:
    """Write gitpipe.toml from dvc.yaml, params.yaml and the vars they name; the
    scripts run unchanged.  What does not translate is named, one warning a line."""
    from gitpipe.workspace.dvcimport import import_dvc

    report = import_dvc(folder, force=force, dry_run=dry_run)
    for warning in report.warnings:
        typer.echo(f"gitpipe: warning: {warning}", err=True)
    if dry_run:
        for path, text in report.files.items():
            if len(report.files) > 1:
                typer.echo(f"# ---- {path}")
            typer.echo(text, nl=False)
        return
    written = ", ".join(report.files)
    typer.echo(
        f"Wrote {written} from {', '.join(report.sources)}"
        + (f"; {len(report.warnings)} warning(s) above." if report.warnings else ".")
    )
    typer.echo("Next: `gitpipe status`, then commit the pipeline files and `gitpipe repro`.")
