"""Commands that look after the store: `gc`, `cache verify`, `push` and `pull`.

Each asks the facade (`Project`; `gitpipe.workspace.transfer` for `push` and `pull`,
handed a progress view: plain `ProgressLines`, or `TransferBars` on a terminal) and prints
its report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from gitpipe.cli import MARKUP, FileOption, JsonOption, app, handled, open_project
from gitpipe.cli.output import echo_json, plain_output
from gitpipe.core.errors import StoreError, UsageError

if TYPE_CHECKING:
    from gitpipe.cli.live import TransferBars
    from gitpipe.workspace.transfer import ProgressLines

cache_app = typer.Typer(help="Look after the store.", no_args_is_help=True, rich_markup_mode=MARKUP)
app.add_typer(cache_app, name="cache")


@app.command()
@handled
def gc(
    file: FileOption = None,
    workspace: Annotated[
        bool,
        typer.Option(
            "--workspace",
            help="Keep only what the working trees' locks need (this clone's and those "
            "of the clones sharing its store), not what other commits' locks need.",
        ),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Delete (the default only shows what would go).")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Show what would go (the default).")
    ] = False,
    keep_recent: Annotated[
        float,
        typer.Option(help="Never remove anything younger than this many hours.", min=0.0),
    ] = 1.0,
    as_json: JsonOption = False,
) -> None:
    """Remove store objects and results that no lock needs: on any branch, tag or
    remote-tracking branch, or in the working tree, of this clone or of any clone
    sharing its store.  Exits 5, deleting nothing, while such a lock cannot be read."""
    if force and dry_run:
        raise UsageError("--force and --dry-run cannot be used together")
    report = open_project(file).collect_garbage(
        workspace_only=workspace, delete=force, keep_recent=keep_recent * 3600
    )
    if as_json:
        echo_json(report.to_json())
    else:
        verb = "removed" if force else "would remove"
        typer.echo(
            f"{verb} {report.objects} object(s) ({report.bytes / 1e6:.1f} MB) and "
            f"{report.results} result(s); "
            f"kept {report.kept} object(s) that {report.locks} lock file(s) need"
            + (f", and {report.recent} younger than {keep_recent:g} h" if report.recent else "")
        )
        if report.clones > 1:
            typer.echo(f"read the locks of {report.clones} clones sharing the store")
        if report.dropped:
            typer.echo(
                f"{'dropped' if force else 'would drop'} {len(report.dropped)} clone(s) "
                f"registered in the store whose folder is gone: {', '.join(report.dropped)}"
            )
        if not force and not report.refusal and (report.objects or report.results):
            typer.echo("run `gitpipe gc --force` to remove them")
    if report.refusal:  # a dry run: `--force` would have refused before deleting anything
        raise StoreError(report.refusal)


@cache_app.command("verify")
@handled
def cache_verify(
    file: FileOption = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Remove corrupt objects and broken results.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Re-hash every object in the store and check every stored result."""
    report = open_project(file).verify_store(repair=repair)
    if as_json:
        echo_json(report.to_json())
    else:
        typer.echo(f"{report.objects} objects, {report.results} results checked")
        for digest in report.corrupt:
            typer.echo(f"corrupt object {digest}" + (" (removed)" if repair else ""))
        for key in report.broken_results:
            typer.echo(f"broken result {key}" + (" (removed)" if repair else ""))
        for path in report.quarantined:
            typer.echo(
                f"quarantined {path} (corrupt bytes a restore set aside; delete once looked at)"
            )
    if (report.corrupt or report.broken_results) and not repair:
        raise StoreError(
            f"{len(report.corrupt)} corrupt object(s) and {len(report.broken_results)} broken "
            "result(s); run `gitpipe cache verify --repair` to remove them"
        )


RemoteOption = Annotated[
    str | None,
    typer.Option(
        "--remote",
        "-r",
        help="A folder, file://PATH or s3://BUCKET/PREFIX "
        "(default: $GITPIPE_REMOTE, then the pipeline file's remote url).",
        show_default=False,
    ),
]
TransferJobsOption = Annotated[
    int | None,
    typer.Option(
        "--jobs", "-j", help="Transfers at once (default: 16 for object stores, 8 for folders)."
    ),
]
RunCacheOption = Annotated[
    bool,
    typer.Option(
        "--run-cache/--no-run-cache", help="Also move the run-cache results of the steps."
    ),
]
AllOption = Annotated[
    bool,
    typer.Option("--all", help="Everything in the store, not only what gitpipe.lock names."),
]


@app.command()
@handled
def push(
    remote: RemoteOption = None,
    jobs: TransferJobsOption = None,
    run_cache: RunCacheOption = True,
    everything: AllOption = False,
    file: FileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Upload the outputs gitpipe.lock names, and their results, and the data
    gitpipe.data names, to the remote: only what it lacks."""
    _transfer(
        "push",
        remote_url=remote,
        jobs=jobs,
        run_cache=run_cache,
        everything=everything,
        file=file,
        as_json=as_json,
    )


@app.command()
@handled
def pull(
    remote: RemoteOption = None,
    jobs: TransferJobsOption = None,
    run_cache: RunCacheOption = True,
    everything: AllOption = False,
    file: FileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Download the outputs gitpipe.lock names, and their results, and the data
    gitpipe.data names, from the remote into the store, verifying every byte; then
    `gitpipe checkout` (or `gitpipe repro`) puts them in the workspace."""
    _transfer(
        "pull",
        remote_url=remote,
        jobs=jobs,
        run_cache=run_cache,
        everything=everything,
        file=file,
        as_json=as_json,
    )


def _progress_view() -> ProgressLines | TransferBars:
    """Lines in CI and pipes, bars on a terminal."""
    if plain_output():
        from gitpipe.workspace.transfer import ProgressLines

        return ProgressLines(lambda line: typer.echo(line, err=True))
    from gitpipe.cli.live import TransferBars

    return TransferBars()


def _transfer(
    direction: str,
    *,
    remote_url: str | None,
    jobs: int | None,
    run_cache: bool,
    everything: bool,
    file: str | None,
    as_json: bool,
) -> None:
    """`push` or `pull` through the facade (:mod:`gitpipe.workspace.transfer`), with a
    progress view unless ``as_json``, then one line saying what moved, or the report
    as JSON."""
    from gitpipe.workspace import transfer as transfers

    project = open_project(file)
    plan = transfers.prepare(
        project, direction, remote=remote_url, everything=everything, jobs=jobs
    )
    if plan.empty and not as_json:
        typer.echo(transfers.nothing_named(project, direction), err=True)
    view: ProgressLines | TransferBars | None = None
    if not as_json:
        view = _progress_view()
    try:
        report = transfers.transfer(project, plan, run_cache=run_cache, progress=view)
    finally:
        if view is not None:
            view.close()
    if as_json:
        echo_json(report.to_json())
    else:
        typer.echo(transfers.report_line(report, run_cache=run_cache))
        for warning in (transfers.skipped_line(report), transfers.unavailable_line(report)):
            if warning:
                typer.echo(warning, err=True)
    transfers.verified(report)
