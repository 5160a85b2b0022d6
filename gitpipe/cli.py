"""The command line: the one place that prints, and that turns errors into exit codes."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from gitpipe import events as ev
from gitpipe.errors import GitpipeError, Interrupted, StaleError, UsageError

app = typer.Typer(
    name="gitpipe",
    help="Reproducible pipelines on Git: run exactly what changed, reuse everything else, "
    "and say why.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_state: dict[str, Any] = {"debug": False, "chdir": None}

F = TypeVar("F", bound=Callable[..., Any])

FileOption = Annotated[
    str | None,
    typer.Option("--file", "-f", help="The pipeline file (default: gitpipe.toml)."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for machines.")]
StepsArgument = Annotated[
    list[str] | None, typer.Argument(help="Steps to act on (default: all).", show_default=False)
]

STARTER = """\
# A gitpipe pipeline; the fields are described in gitpipe's docs/pipeline-file.md.
# Each step's command, code, params and input bytes make its key; a step whose key
# already has a stored result is restored instead of run.

[pipeline]
name = "{name}"

[params]                  # values steps may use, as ${{params.NAME}} or `params = [...]`
seed = 42

# [steps.prepare]
# cmd = "python src/prepare.py --seed ${{params.seed}}"
# deps = ["src/prepare.py", "data/raw.csv"]
# outs = ["data/prepared/"]   # a trailing slash: a folder output
#
# [steps.train]
# cmd = "python src/train.py"
# deps = ["src/train.py", "data/prepared/"]
# params = ["seed"]
# outs = ["model.pkl"]
# metrics = ["metrics.json"]
"""


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"gitpipe: {message}", err=True)
    return typer.Exit(code)


def handled(func: F) -> F:
    """Turn library errors into one-sentence messages and exit codes."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GitpipeError as exc:
            if _state["debug"]:
                traceback.print_exc()
            raise _fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise _fail("interrupted", Interrupted.exit_code) from None

    return wrapper  # type: ignore[return-value]


@app.callback()
def _root(
    chdir: Annotated[
        Path | None, typer.Option("-C", help="Run as if started in this folder.")
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for errors.", envvar="GITPIPE_DEBUG")
    ] = False,
) -> None:
    _state["debug"] = debug
    if chdir is not None:
        try:
            os.chdir(chdir)
        except OSError as exc:
            raise _fail(f"cannot change to {chdir} ({exc.strerror})", 2) from None


def _project(file: str | None) -> Any:
    from gitpipe.project import Project

    return Project.open(".", file=file)


@app.command()
@handled
def init(
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    file: FileOption = None,
) -> None:
    """Write a commented starter gitpipe.toml and keep .gitpipe/ out of Git."""
    from gitpipe.git import Repository

    here = Path.cwd()
    repo = Repository.find(here)
    if repo is None:
        raise UsageError(
            f"{here} is not inside a Git repository; run `git init` first, then `gitpipe init`"
        )
    repo.close()
    target = here / (file or "gitpipe.toml")
    if target.exists() and not force:
        raise UsageError(f"{target.name} exists already; pass --force to overwrite it")
    from gitpipe import atomic

    atomic.write_bytes(target, STARTER.format(name=here.name).encode())
    state = here / ".gitpipe"
    state.mkdir(exist_ok=True)
    ignore = state / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# gitpipe's local state: never commit it\n*\n", encoding="utf-8")
    typer.echo(f"Wrote {target.name}; .gitpipe/ keeps itself out of Git.")
    typer.echo("Next: add steps, commit, then run `gitpipe repro`.")


@app.command()
@handled
def status(
    steps: StepsArgument = None,
    file: FileOption = None,
    as_json: JsonOption = False,
    check: Annotated[
        bool, typer.Option("--check", help="Exit 3 if any step would have to run.")
    ] = False,
) -> None:
    """Show each step's state and why it is stale."""
    project = _project(file)
    statuses = project.status(steps or [])
    if as_json:
        typer.echo(json.dumps([s.to_json() for s in statuses], indent=2))
    else:
        width = max((len(s.step) for s in statuses), default=0)
        for s in statuses:
            detail = "; ".join(str(r) for r in s.reasons)
            if s.upstream:
                detail = "; ".join(
                    filter(None, [detail, f"upstream stale: {', '.join(s.upstream)}"])
                )
            if s.cached:
                detail += " (a stored result can restore it)"
            line = f"{s.step:<{width}}  {s.state}"
            typer.echo(f"{line}  {detail}".rstrip())
        if not statuses:
            typer.echo("no steps")
    if check:
        stale = [s.step for s in statuses if s.state == "stale" or s.upstream]
        if stale:
            raise StaleError(f"{len(stale)} step(s) would have to run: {', '.join(stale)}")


class ConsoleReporter:
    """Plain, timestamped lines, one per step that does something."""

    def __init__(self, *, verbose: bool, quiet: bool) -> None:
        self.verbose = verbose
        self.quiet = quiet

    def line(self, text: str, *, err: bool = False) -> None:
        typer.echo(f"{time.strftime('%H:%M:%S')} {text}", err=err)

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.StepStarted):
            if not self.quiet:
                self.line(f"{event.step}: running")
        elif isinstance(event, ev.StepFinished):
            self.finished(event)
        elif isinstance(event, ev.RunFinished):
            counts = event.counts
            parts = [
                f"{counts.get(state, 0)} {state}"
                for state in (ev.RAN, ev.CACHED, ev.UP_TO_DATE, ev.SKIPPED, ev.FAILED)
            ]
            for state in (ev.FROZEN, ev.WOULD_RUN, ev.WOULD_RESTORE):
                if counts.get(state):
                    parts.append(f"{counts[state]} {state}")
            typer.echo(f"{', '.join(parts)} in {event.duration:.2f} s")

    def finished(self, event: ev.StepFinished) -> None:
        why = f" ({'; '.join(event.reasons)})" if event.reasons else ""
        if event.state == ev.FAILED:
            self.line(f"{event.step}: failed: {event.message}", err=True)
        elif event.state == ev.SKIPPED:
            self.line(f"{event.step}: skipped, {event.message}", err=True)
        elif self.quiet:
            return
        elif event.state == ev.RAN:
            self.line(f"{event.step}: done in {event.duration:.2f} s")
        elif event.state == ev.CACHED:
            self.line(f"{event.step}: cached, restored from the store{why}")
        elif event.state in (ev.WOULD_RUN, ev.WOULD_RESTORE):
            self.line(f"{event.step}: {event.state}{why}")
        elif event.state == ev.FROZEN:
            self.line(f"{event.step}: frozen, not run")
        elif self.verbose:
            self.line(f"{event.step}: {event.state}")


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
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Say more.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only failures and the summary.")
    ] = False,
) -> None:
    """Run the stale steps; restore those whose results are stored."""
    if (single or downstream) and not steps:
        raise UsageError("--single and --downstream need the names of steps")
    if single and downstream:
        raise UsageError("--single and --downstream cannot be used together")
    project = _project(file)
    reporter = ConsoleReporter(verbose=verbose, quiet=quiet)
    project.repro(
        steps or [],
        force=force,
        dry_run=dry_run,
        single=single,
        downstream=downstream,
        listeners=[reporter],
        argv=sys.argv[1:],
    )


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """The console script: SIGTERM stops a run as cleanly as Ctrl-C does."""
    signal.signal(signal.SIGTERM, _interrupt)
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
