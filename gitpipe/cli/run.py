"""Commands that make things happen: `init`, `repro` and `approve`.

`repro` hands the facade its listeners, a console view (`gitpipe.cli.plain` or, on a
terminal, `gitpipe.cli.live`) and the summary writer, and prints nothing itself."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gitpipe.cli import FileOption, JsonOption, StepsArgument, app, handled, open_project
from gitpipe.cli.output import plain_output

if TYPE_CHECKING:
    from gitpipe.run import events as ev


@app.command()
@handled
def init(
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    file: FileOption = None,
) -> None:
    """Write a commented starter gitpipe.toml and keep .gitpipe/ out of Git."""
    from gitpipe.workspace import Project

    target = Project.init(Path.cwd(), file=file, force=force).file
    typer.echo(f"Wrote {target.name}; .gitpipe/ keeps itself out of Git.")
    typer.echo("Next: add steps, commit, then run `gitpipe repro`.")


@app.command()
@handled
def repro(
    steps: StepsArgument = None,
    file: FileOption = None,
    force: Annotated[
        bool, typer.Option("--force", help="Run the steps even if they are up to date.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", "-n", help="Say what would run; write nothing.")
    ] = False,
    single: Annotated[
        bool, typer.Option("--single", "-s", help="Only the named steps, not their upstream.")
    ] = False,
    downstream: Annotated[
        bool, typer.Option("--downstream", help="The named steps and what depends on them.")
    ] = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            help="Steps to run at once [default: 1; on dask, the cluster's threads]; "
            "0: one per CPU, or the cluster's threads.",
            show_default=False,
        ),
    ] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="joblib backend for steps: threading (default), loky or dask.",
            envvar="GITPIPE_BACKEND",
            show_default=False,
        ),
    ] = None,
    scheduler: Annotated[
        str | None,
        typer.Option(
            help="Dask scheduler address for --backend dask (tcp://HOST:PORT).",
            envvar="GITPIPE_DASK_SCHEDULER",
            show_default=False,
        ),
    ] = None,
    transfer: Annotated[
        str | None,
        typer.Option(
            help="With dask: how a worker gets a step's files: auto (default: by whether it "
            "sees the workspace), shared (in place) or remote (through the remote store).",
            envvar="GITPIPE_TRANSFER",
            show_default=False,
        ),
    ] = None,
    keep_going: Annotated[
        bool,
        typer.Option(
            "--keep-going", "-k", help="After a failure, still run what does not need it."
        ),
    ] = False,
    no_wait: Annotated[
        bool,
        typer.Option("--no-wait", help="Fail at once if another repro holds this workspace."),
    ] = False,
    frozen: Annotated[
        bool,
        typer.Option(
            "--frozen", help="Restore only: exit 3, running nothing, if any step would have to run."
        ),
    ] = False,
    pull: Annotated[
        bool, typer.Option("--pull", help="Fetch a stale step's stored result from the remote.")
    ] = False,
    push: Annotated[
        bool, typer.Option("--push", help="Push what the lock needs to the remote afterwards.")
    ] = False,
    remote: Annotated[
        str | None,
        typer.Option("--remote", help="The remote for --pull/--push [default: $GITPIPE_REMOTE]."),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            help="Run with a param set to a TOML value, e.g. -p train.lr=0.02 (repeatable): "
            "an experiment, cached and recorded, that leaves gitpipe.lock alone.",
            show_default=False,
        ),
    ] = None,
    lock: Annotated[
        bool,
        typer.Option("--lock", help="With -p: write the experiment's results to gitpipe.lock."),
    ] = False,
    approve: Annotated[
        list[str] | None,
        typer.Option(
            "--approve",
            help="Approve this step (approval = true) to run now (repeatable).",
            show_default=False,
        ),
    ] = None,
    summary_json: Annotated[
        Path | None, typer.Option("--summary-json", help="Write a JSON summary of the run here.")
    ] = None,
    summary_md: Annotated[
        Path | None,
        typer.Option(
            "--summary-md",
            help="Write a Markdown summary here [default: $GITHUB_STEP_SUMMARY when set].",
        ),
    ] = None,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Stream each step's output as it comes.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only failures and the summary.")
    ] = False,
) -> None:
    """Run the stale steps; restore those whose results are stored."""
    project = open_project(file, param)
    if plain_output():
        from gitpipe.cli.plain import ConsoleReporter as View
    else:
        from gitpipe.cli.live import LiveReporter as View
    from gitpipe.run.summary import writers

    listeners: list[ev.Listener] = [View(verbose=verbose, quiet=quiet)]
    listeners += writers(project, json_path=summary_json, md_path=summary_md)
    project.repro(
        steps or [],
        force=force,
        dry_run=dry_run,
        single=single,
        downstream=downstream,
        jobs=jobs,
        backend=backend,
        scheduler=scheduler,
        transfer=transfer,
        keep_going=keep_going,
        wait=not no_wait,
        frozen=frozen,
        pull=pull,
        push=push,
        remote=remote,
        approve=approve or (),
        lock=True if lock else None,
        listeners=listeners,
        argv=sys.argv[1:],
    )


@app.command(name="approve")
@handled
def approve_command(
    step: Annotated[str, typer.Argument(help="The step (or matrix step) to approve.")],
    file: FileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Approve a step with `approval = true` to run with its inputs as they are now."""
    keys, who = open_project(file).approve(step)
    if as_json:
        typer.echo(
            json.dumps({"approved_by": who, "steps": [{"step": s, "key": k} for s, k in keys]})
        )
        return
    for name, key in keys:
        typer.echo(f"approved {name} ({key[:15]}…) as {who}; run `gitpipe repro` to go on")
