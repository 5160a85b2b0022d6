"""The command line: the one place that prints, and that turns errors into exit codes."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from gitpipe.core.errors import (
    GitpipeError,
    Interrupted,
    StaleError,
    StoreError,
    UsageError,
    describe,
)

if TYPE_CHECKING:  # imported where used: `gitpipe --help` needs neither
    from gitpipe.run import events as ev


def _plain_output() -> bool:
    """Plain lines without control codes: in CI, or when stdout is not a terminal."""
    ci = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
    return ci or not sys.stdout.isatty() or os.environ.get("TERM") == "dumb"


# Help and usage errors are drawn with rich on a terminal only: importing rich's
# renderers takes longer (~0.1 s) than all of the rest of `gitpipe --help`.
_MARKUP: Any = None if _plain_output() else "rich"

app = typer.Typer(
    name="gitpipe",
    help="Reproducible pipelines on Git: run exactly what changed, reuse everything else, "
    "and say why.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=_MARKUP,
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


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"gitpipe: {message}", err=True)
    return typer.Exit(code)


def handled(func: F) -> F:
    """Turn library errors into one-sentence messages and exit codes.

    The library turns what the system refuses into typed errors where it knows what it
    was doing; an ``OSError`` or SQLite error that still gets here (the store, the
    workspace, lineage) is one line too, with the path and the cause, and exit 5: a
    store error, never 1, which says a step failed."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except GitpipeError as exc:
            _traceback()
            raise _fail(str(exc), exc.exit_code) from None
        except KeyboardInterrupt:
            raise _fail("interrupted", Interrupted.exit_code) from None
        except OSError as exc:
            _traceback()
            raise _fail(describe(exc), StoreError.exit_code) from None
        except Exception as exc:
            sqlite3 = sys.modules.get("sqlite3")  # imported by whatever raised it, if so
            if sqlite3 is None or not isinstance(exc, sqlite3.Error):
                raise
            _traceback()
            message = f"a SQLite database of gitpipe's could not be used ({exc})"
            raise _fail(" ".join(message.split()), StoreError.exit_code) from None

    return wrapper  # type: ignore[return-value]


def _traceback() -> None:
    """With --debug, the traceback of the error being handled."""
    if _state["debug"]:
        import traceback

        traceback.print_exc()


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


def _project(file: str | None, params: list[str] | None = None) -> Any:
    from gitpipe.workspace import Project

    overrides = {}
    if params:
        from gitpipe.pipeline.spec import parse_override

        overrides = dict(parse_override(text) for text in params)
    return Project.open(".", file=file, overrides=overrides)


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

    # the whole pipeline found up to date last time, and no stamp changed since:
    # the answer stands without parsing or hashing anything (see gitpipe/core/snapshot.py)
    statuses = None if steps else answer(locate(".", file))
    if statuses is None:
        statuses = _project(file).status(steps or [])
    if as_json:
        typer.echo(json.dumps([s.to_json() for s in statuses], indent=2))
    else:
        width = max((len(s.step) for s in statuses), default=0)
        for s in statuses:
            detail = "; ".join(str(r) for r in s.reasons)
            if s.upstream:
                detail = "; ".join(
                    filter(None, [detail, f"upstream will run: {', '.join(s.upstream)}"])
                )
            action = _ACTIONS.get(s.action, "") if s.action != s.state else ""
            if s.action == "restore":
                action = (
                    "restores gitpipe.lock's outputs"
                    if s.source == "lock"
                    else "restores a stored result"
                )
            detail = "; ".join(filter(None, [detail, action]))
            line = f"{s.step:<{width}}  {s.state}"
            typer.echo(f"{line}  {detail}".rstrip())
            if verbose:
                code = ", ".join(s.code) if s.code else (s.code_note or "none found")
                typer.echo(f"{'':<{width}}  code: {code}")
        if not statuses:
            typer.echo("no steps")
    if check:
        # as `repro --frozen` would: restoring what gitpipe.lock names is all it may do
        from gitpipe.run.planner import refusal

        refused = refusal(statuses)
        if refused:
            raise StaleError(refused)


#: what `status` adds for each action that its state does not say already
_ACTIONS = {"waiting": "waits for approval"}


def _would(explanation: Any) -> str:
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
    text = json.dumps(value) if not isinstance(value, str) else value
    if text.startswith("b3:") and len(text) == 67:
        return text[:15]
    return text if len(text) <= 60 else text[:57] + "..."


@app.command()
@handled
def why(
    step: Annotated[str, typer.Argument(help="The step to explain.")],
    file: FileOption = None,
    as_json: JsonOption = False,
) -> None:
    """Explain a step's key, component by component, against the lock and the store."""
    explanation = _project(file).why(step)
    if as_json:
        typer.echo(json.dumps(explanation.to_json(), indent=2, default=str))
        return
    reasons = f" ({'; '.join(explanation.reasons)})" if explanation.reasons else ""
    typer.echo(f"{step}: {explanation.state}{reasons}")
    typer.echo(f"  repro would: {_would(explanation)}")
    if not explanation.key:
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


@app.command()
@handled
def check(file: FileOption = None) -> None:
    """Fail (exit 3) when gitpipe.lock does not match the pipeline (for pre-commit)."""
    mismatched = _project(file).check_lock()
    if mismatched:
        listed = "; ".join(f"{step} ({', '.join(reasons)})" for step, reasons in mismatched)
        raise StaleError(
            f"gitpipe.lock does not match the pipeline for {len(mismatched)} step(s): {listed}; "
            "run `gitpipe repro` and commit gitpipe.lock"
        )
    typer.echo("gitpipe.lock matches the pipeline")


cache_app = typer.Typer(
    help="Look after the store.", no_args_is_help=True, rich_markup_mode=_MARKUP
)
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
    report = _project(file).collect_garbage(
        workspace_only=workspace, delete=force, keep_recent=keep_recent * 3600
    )
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        size = f"{report.bytes / 1e6:.1f} MB"
        verb = "removed" if force else "would remove"
        typer.echo(
            f"{verb} {report.objects} object(s) ({size}) and {report.results} result(s); "
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
    report = _project(file).verify_store(repair=repair)
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
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


class ConsoleReporter:
    """Plain, timestamped lines, one per step that does something.

    With ``verbose`` each running step's output is streamed, prefixed with its name;
    with ``quiet`` only failures and the summary are printed.
    """

    TAIL = 10  # lines of a failed step's log shown on screen

    def __init__(self, *, verbose: bool, quiet: bool) -> None:
        self.verbose = verbose
        self.quiet = quiet
        self._logs: dict[str, tuple[str, int]] = {}  # step -> (log path, offset read)
        self.interrupted: list[str] = []  # steps the run's interrupt stopped, for the summary

    def out(self, text: str, *, err: bool = False) -> None:
        typer.echo(text, err=err)

    def line(self, text: str, *, err: bool = False) -> None:
        self.out(f"{time.strftime('%H:%M:%S')} {text}", err=err)

    def __call__(self, event: ev.Event) -> None:
        from gitpipe.run import events as ev

        if isinstance(event, ev.StepStarted):
            if self.verbose:
                self._logs[event.step] = (event.log, 0)
            if not self.quiet:
                self.line(f"{event.step}: running")
        elif isinstance(event, ev.Tick):
            self.stream()
        elif isinstance(event, ev.StepFinished):
            if event.step in self._logs:
                self.stream(event.step)
                del self._logs[event.step]
            if event.state == ev.INTERRUPTED:
                self.interrupted.append(event.step)
            self.finished(event)
        elif isinstance(event, (ev.Waiting, ev.Notice)):
            self.line(f"gitpipe: {event.message}", err=True)
        elif isinstance(event, ev.RunFinished):
            self.out(summary(event, interrupted=self.interrupted))

    def stream(self, only: str | None = None) -> None:
        """Print the complete new lines of running steps' logs."""
        for step, (path, offset) in list(self._logs.items()):
            if only is not None and step != only:
                continue
            try:
                with open(path, "rb") as handle:
                    handle.seek(offset)
                    data = handle.read()
            except OSError:
                continue
            end = len(data) if only is not None else data.rfind(b"\n") + 1
            for raw in data[:end].splitlines():
                self.out(f"{step} | {raw.decode('utf-8', 'replace')}")
            self._logs[step] = (path, offset + end)

    def finished(self, event: ev.StepFinished) -> None:
        from gitpipe.run import events as ev

        why = f" ({'; '.join(event.reasons)})" if event.reasons else ""
        if event.state == ev.FAILED:
            self.line(f"{event.step}: failed: {event.message}", err=True)
            if not self.verbose:
                for text in log_tail(event.log, self.TAIL):
                    self.out(f"  {event.step} | {text}", err=True)
        elif event.state == ev.SKIPPED:
            self.line(f"{event.step}: skipped, {event.message}", err=True)
        elif event.state == ev.WAITING:
            self.line(f"{event.step}: waiting for approval; {event.message}", err=True)
        elif event.state == ev.INTERRUPTED:
            self.line(f"{event.step}: {event.message}", err=True)
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


def summary(event: ev.RunFinished, *, interrupted: Sequence[str] = ()) -> str:
    """The run's closing line: its counts, and how it ended unless it ended well,
    naming the steps an interrupt stopped."""
    from gitpipe.run import events as ev

    counts = event.counts
    parts = [
        f"{counts.get(state, 0)} {state}"
        for state in (ev.RAN, ev.CACHED, ev.UP_TO_DATE, ev.SKIPPED, ev.FAILED)
    ]
    for state in (ev.INTERRUPTED, ev.WAITING, ev.FROZEN, ev.WOULD_RUN, ev.WOULD_RESTORE):
        if counts.get(state):
            parts.append(f"{counts[state]} {state}")
    how = {"interrupted": "interrupted", "error": "stopped by an error"}.get(event.status)
    if how and interrupted:
        how += f" while {', '.join(interrupted)} ran"
    return f"{', '.join(parts)} in {event.duration:.2f} s" + (f" ({how})" if how else "")


def log_tail(path: str, lines: int) -> list[str]:
    if not path:
        return []
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - 64 * 1024))
            data = handle.read()
    except OSError:
        return []
    return [raw.decode("utf-8", "replace") for raw in data.splitlines()[-lines:]]


class LiveReporter(ConsoleReporter):
    """On a terminal: a live view of the running steps and an overall progress bar,
    above which finished steps are printed as they finish."""

    def __init__(self, *, verbose: bool, quiet: bool) -> None:
        super().__init__(verbose=verbose, quiet=quiet)
        from rich.console import Console

        from gitpipe.run import events as ev

        self.STYLES = {
            ev.RAN: "green",
            ev.CACHED: "cyan",
            ev.FAILED: "bold red",
            ev.SKIPPED: "yellow",
            ev.WAITING: "magenta",
            ev.FROZEN: "blue",
            ev.UP_TO_DATE: "dim",
        }

        self.console = Console(highlight=False)
        self.err_console = Console(stderr=True, highlight=False)
        self.running: dict[str, float] = {}
        self.total = 0
        self.done = 0
        self.live: Any = None

    def out(self, text: str, *, err: bool = False) -> None:
        (self.err_console if err else self.console).print(text, markup=False)

    def line(self, text: str, *, err: bool = False) -> None:
        self.out(text, err=err)

    def render(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table

        table = Table.grid(padding=(0, 2))
        now = time.time()
        for step, started in sorted(self.running.items(), key=lambda item: item[1]):
            table.add_row("[yellow]running[/]", step, f"{now - started:6.1f} s")
        bar = Table.grid(padding=(0, 1))
        bar.add_row(
            ProgressBar(total=max(self.total, 1), completed=self.done, width=40),
            f"{self.done}/{self.total} steps",
        )
        return Group(table, bar)

    def __call__(self, event: ev.Event) -> None:
        from rich.live import Live

        from gitpipe.run import events as ev

        if isinstance(event, ev.RunStarted):
            self.total = len(event.steps)
            self.live = Live(
                get_renderable=self.render,
                console=self.console,
                refresh_per_second=8,
                transient=True,
            )
            self.live.start()
            return
        if isinstance(event, ev.StepStarted):
            self.running[event.step] = event.started or time.time()
        elif isinstance(event, ev.StepFinished):
            self.running.pop(event.step, None)
            self.done += 1
        if isinstance(event, ev.RunFinished) and self.live is not None:
            self.live.stop()
            self.live = None
        if isinstance(event, ev.StepStarted) and not self.verbose:
            return  # the live view shows it
        super().__call__(event)

    def finished(self, event: ev.StepFinished) -> None:
        from gitpipe.run import events as ev

        style = self.STYLES.get(event.state)
        if style and event.state in (ev.RAN, ev.CACHED, ev.FAILED) and not self.quiet:
            what = {
                ev.RAN: f"done in {event.duration:.2f} s",
                ev.CACHED: "cached, restored from the store",
                ev.FAILED: f"failed: {event.message}",
            }[event.state]
            console = self.err_console if event.state == ev.FAILED else self.console
            console.print(f"[{style}]{event.state:>6}[/] {event.step}: {what}", highlight=False)
            if event.state == ev.FAILED and not self.verbose:
                for text in log_tail(event.log, self.TAIL):
                    self.out(f"  {event.step} | {text}", err=True)
            return
        super().finished(event)


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
    if (single or downstream) and not steps:
        raise UsageError("--single and --downstream need the names of steps")
    if single and downstream:
        raise UsageError("--single and --downstream cannot be used together")
    if lock and not param:
        raise UsageError("--lock goes with -p: a run without overrides always writes the lock")
    project = _project(file, param)
    view = ConsoleReporter if _plain_output() else LiveReporter
    reporter = view(verbose=verbose, quiet=quiet)
    summary_md = summary_md or (
        Path(os.environ["GITHUB_STEP_SUMMARY"]) if os.environ.get("GITHUB_STEP_SUMMARY") else None
    )
    listeners: list[ev.Listener] = [reporter]
    summary = None
    if summary_json or summary_md:
        from gitpipe.run.summary import SummaryWriter

        summary = SummaryWriter(project, json_path=summary_json, md_path=summary_md)
        listeners.append(summary)
    if jobs is not None and jobs < 0:
        raise UsageError("--jobs takes 0 (one per CPU) or a positive number")
    project.repro(
        steps or [],
        force=force,
        dry_run=dry_run,
        single=single,
        downstream=downstream,
        jobs=jobs,
        backend=backend,
        scheduler=scheduler,
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
    project = _project(file)
    keys, who = project.approve(step)
    if as_json:
        typer.echo(
            json.dumps({"approved_by": who, "steps": [{"step": s, "key": k} for s, k in keys]})
        )
        return
    for name, key in keys:
        typer.echo(f"approved {name} ({key[:15]}…) as {who}; run `gitpipe repro` to go on")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    """The console script: SIGTERM stops a run as cleanly as Ctrl-C does."""
    signal.signal(signal.SIGTERM, _interrupt)
    _keep_only(_command_named(sys.argv[1:]))
    app()


def _command_named(args: list[str]) -> str | None:
    """The command the arguments name after the root options, if plainly so."""
    args = iter(args)
    for arg in args:
        if arg == "-C":
            next(args, None)  # its folder
        elif arg == "--debug" or (arg.startswith("-C") and arg != "-C"):
            continue
        elif arg.startswith("-"):
            return None  # --help, or something for click to explain
        else:
            return arg
    return None


def _keep_only(name: str | None) -> None:
    """Register only the named command (or group) before typer builds the command
    line: building every command's options takes longer than the rest of a no-op
    `status` start-up.  Names that are no command change nothing, so click reports
    them as it would."""
    commands = [
        info
        for info in app.registered_commands
        if info.callback is not None
        and (info.name or info.callback.__name__.lower().replace("_", "-")) == name
    ]
    groups = [info for info in app.registered_groups if info.name == name]
    if len(commands) + len(groups) == 1:
        app.registered_commands = commands
        app.registered_groups = groups


if __name__ == "__main__":  # pragma: no cover
    main()


# -- inspection ------------------------------------------------------------------


def _lineage_db(file: str | None) -> Any:
    from gitpipe.run.lineage import connect

    project = _project(file)
    return connect(project.state_dir / "lineage.db", create=False)


@app.command()
@handled
def log(
    file: FileOption = None,
    as_json: JsonOption = False,
    limit: Annotated[int, typer.Option("--limit", "-n", help="How many runs.")] = 20,
) -> None:
    """List the latest runs, newest first."""
    from gitpipe.run import lineage

    db = _lineage_db(file)
    rows = lineage.runs(db, limit=limit)
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        commit = (row["git_commit"] or "no commit")[:10] + ("+dirty" if row["dirty"] else "")
        counts = ", ".join(f"{n} {state}" for state, n in sorted(row["counts"].items()))
        typer.echo(f"{row['id']}  {row['started'][:19]}  {commit:<16} {row['status']:<11} {counts}")
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
    from gitpipe.run import lineage

    db = _lineage_db(file)
    run_id = lineage.find_run(db, run)
    info = lineage.run(db, run_id)
    rows = lineage.executions(db, run_id)
    if as_json:
        head = {key: info[key] for key in ("status", "started", "ended", "dirty")}
        typer.echo(
            json.dumps(
                {"run": run_id, **head, "commit": info["git_commit"], "executions": rows},
                indent=2,
            )
        )
        return
    typer.echo(f"run {run_id}  {info['status']}  {_commit(info['git_commit'], info['dirty'])}")
    width = max((len(row["step"]) for row in rows), default=0)
    states = max((len(row["state"]) for row in rows), default=0)
    for row in rows:
        detail = row["message"] or "; ".join(row["reasons"])
        took = f"{row['duration']:.2f} s" if row["state"] in _TIMED else ""
        typer.echo(
            f"  {row['step']:<{width}}  {row['state']:<{states}} {took:>9}  {detail}".rstrip()
        )
    counts = ", ".join(f"{n} {state}" for state, n in sorted(info["counts"].items()))
    stopped = [row["step"] for row in rows if row["state"] == "interrupted"]
    how = {"interrupted": "interrupted", "error": "stopped by an error"}.get(info["status"])
    if how and stopped:
        how += f" while {', '.join(stopped)} ran"
    typer.echo((counts or "no steps") + (f" ({how})" if how else ""))


#: states whose executions took time worth showing
_TIMED = ("ran", "failed", "interrupted")


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
    from gitpipe.run import lineage
    from gitpipe.store.objects import Store

    project = _project(file)
    digest, relpath = _bytes_at(project, path)
    db = _lineage_db(file)
    node = lineage.origin(db, relpath, digest, store=Store(project.store_dir))
    if node.made is None:
        raise UsageError(
            f"no recorded step wrote the bytes now at {relpath}; "
            "it is a raw input or was changed by hand"
        )
    if as_json:
        typer.echo(json.dumps(node.to_json(), indent=2))
        return
    for depth, item in lineage.walk(node):
        typer.echo("  " * depth + _origin_line(item, project.graph))


def _bytes_at(project: Any, path: str) -> tuple[str, str]:
    """The digest of the bytes at a workspace path, and that path relative to the
    pipeline's folder.  An output linked from the store (`link = "symlink"`) keeps
    its own name: the object it points to is not where the pipeline wrote it."""
    full = Path(os.path.abspath(path))
    if not (full.is_symlink() and full.is_file()):
        return project.digest_of(path)
    from gitpipe.core.hashing import digest_file

    place = Path(os.path.realpath(full.parent)) / full.name
    relpath = Path(os.path.relpath(place, project.root.resolve())).as_posix()
    if relpath == ".." or relpath.startswith("../"):
        raise UsageError(f"{path} is not inside this workspace ({project.root})")
    return str(digest_file(full)), relpath


def _origin_line(item: Any, graph: Any) -> str:
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
    if made.state == "cached":
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


@app.command()
@handled
def metrics(file: FileOption = None, as_json: JsonOption = False) -> None:
    """The current metrics of every step, from lineage."""
    from gitpipe.run import lineage

    values = lineage.current_metrics(_lineage_db(file))
    if as_json:
        typer.echo(json.dumps(values, indent=2))
        return
    for step, files in values.items():
        for path, numbers in files.items():
            for name, value in numbers.items():
                typer.echo(f"{step}  {path}  {name} = {value}")
    if not values:
        typer.echo("no metrics recorded yet")


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

    project = _project(file)
    states = {s.step: s for s in project.status()}
    graph = project.graph
    if sum((mermaid, dot, as_json)) > 1:
        raise UsageError("choose one of --mermaid, --dot and --json")
    render = dag_mermaid if mermaid else dag_dot if dot else dag_json if as_json else dag_text
    typer.echo(render(graph, states))


# -- versions and diffs ------------------------------------------------------------


@app.command("versions")
@handled
def versions_command(
    step: Annotated[
        str | None, typer.Option("--step", help="One step's versions instead of the pipeline's.")
    ] = None,
    file: FileOption = None,
    as_json: JsonOption = False,
) -> None:
    """The pipeline's versions from Git history: version, commit, date, what changed."""
    from gitpipe.history.versions import DIRTY, report, shown

    project = _project(file)
    result = report(project.file, state_dir=project.state_dir, step=step)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    name = project.file.name
    if result.head is None:
        typer.echo(f"no commits yet: commit {name} and that commit is version 1.0.0")
        return
    if not result.releases:
        typer.echo(
            f"no commit on HEAD's first-parent history holds {name} yet; "
            "commit it and that commit is version 1.0.0"
        )
        return
    what = f"step {step}" if step else name
    if result.current:
        now = shown(result.current)
        if result.current.endswith(DIRTY):
            now += " (the working tree differs from HEAD)"
        typer.echo(f"{what}: {now}")
    width = max(len(shown(release.version)) for release in result.releases)
    for release in result.releases:
        changes = "; ".join(release.changes)
        day = release.date[:10]
        line = f"{shown(release.version):<{width}}  {release.commit[:7]}  {day}  {changes}"
        typer.echo(line.rstrip())


_DIFF_STYLES: dict[str, dict[str, Any]] = {
    "heading": {"bold": True},
    "added": {"fg": "green"},
    "removed": {"fg": "red"},
    "changed": {"fg": "yellow"},
    "old": {"fg": "red"},
    "new": {"fg": "green"},
    "dim": {"dim": True},
}


def _colour() -> bool:
    """Colour only on a terminal that wants it."""
    return not _plain_output() and "NO_COLOR" not in os.environ


@app.command("diff")
@handled
def diff_command(
    a: Annotated[
        str | None,
        typer.Argument(
            help="A revision: SHA, branch, tag, HEAD~N or a version (default: HEAD).",
            show_default=False,
        ),
    ] = None,
    b: Annotated[
        str | None,
        typer.Argument(help="Another revision (default: the working tree).", show_default=False),
    ] = None,
    all_steps: Annotated[bool, typer.Option("--all", help="Show unchanged steps too.")] = False,
    file: FileOption = None,
    as_json: JsonOption = False,
    markdown: Annotated[
        bool, typer.Option("--md", help="A Markdown table, for pull-request comments.")
    ] = False,
) -> None:
    """What changed between two commits, or a commit and the working tree, step by step."""
    from gitpipe.history import diff as diffs

    if as_json and markdown:
        raise UsageError("choose one of --json and --md")
    project = _project(file)
    result = diffs.diff(project.file, a, b, state_dir=project.state_dir, all_steps=all_steps)
    if as_json:
        typer.echo(diffs.render_json(result))
    elif markdown:
        typer.echo(diffs.render_markdown(result), nl=False)
    else:

        def style(text: str, role: str) -> str:
            return typer.style(text, **_DIFF_STYLES.get(role, {}))

        typer.echo(diffs.render_text(result, style=style if _colour() else diffs.plain))


# -- remotes ---------------------------------------------------------------------------

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


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover


class TransferLines:
    """Plain progress lines on stderr: a phase's start and end, and every few seconds."""

    EVERY = 5.0

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def __call__(self, progress: Any) -> None:
        now = time.monotonic()
        finished = progress.done == progress.total
        if not finished and now - self._last.get(progress.phase, 0.0) < self.EVERY:
            return
        self._last[progress.phase] = now
        moved = f", {_size(progress.bytes)}" if progress.bytes else ""
        stamp = time.strftime("%H:%M:%S")
        typer.echo(f"{stamp} {progress.phase}: {progress.done}/{progress.total}{moved}", err=True)

    def close(self) -> None:
        return None


class TransferBars:
    """On a terminal: one progress bar per phase, on stderr."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
        )
        from rich.progress import Progress as Bars

        self.bars = Bars(
            TextColumn("{task.description:>12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[moved]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        self.tasks: dict[str, Any] = {}
        self.bars.start()

    def __call__(self, progress: Any) -> None:
        task = self.tasks.get(progress.phase)
        if task is None:
            task = self.bars.add_task(progress.phase, total=progress.total, moved="")
            self.tasks[progress.phase] = task
        moved = _size(progress.bytes) if progress.bytes else ""
        self.bars.update(task, completed=progress.done, total=progress.total, moved=moved)

    def close(self) -> None:
        self.bars.stop()


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
    from gitpipe.core.errors import RemoteError
    from gitpipe.store import lockfile
    from gitpipe.store import remote as remotes
    from gitpipe.store.objects import Store

    if jobs is not None and jobs < 1:
        raise UsageError("--jobs takes a positive number")
    project = _project(file)
    remote = remotes.for_project(project, remote_url, cwd=Path.cwd())
    selection = None
    if not everything:
        selection = remotes.Selection.from_locks(lockfile.read(project.lock_path))
        if selection.empty and not as_json:
            typer.echo(
                f"gitpipe: {project.lock_path.name} names no outputs yet; run `gitpipe repro` "
                f"first, or pass --all to {direction} the whole store",
                err=True,
            )
    if direction == "pull":  # so that `gc` in any clone sharing the store keeps what it pulls
        project.register_clone()
    view: TransferLines | TransferBars | None = None
    if not as_json:
        view = TransferLines() if _plain_output() else TransferBars()
    move = remotes.push if direction == "push" else remotes.pull
    try:
        report = move(
            Store(project.store_dir),
            remote,
            selection,
            run_cache=run_cache,
            jobs=jobs,
            progress=view or remotes.ignore_progress,
        )
    finally:
        if view is not None:
            view.close()
    if as_json:
        typer.echo(json.dumps(report.to_json(), indent=2))
    else:
        moved, where, here = (
            ("pushed", "to", "there") if direction == "push" else ("pulled", "from", "here")
        )
        line = f"{moved} {report.objects} object(s) ({_size(report.bytes)})"
        if run_cache:
            line += f" and {report.results} result(s)"
        line += f" {where} {report.url} in {report.duration:.2f} s"
        if report.objects_present or report.results_present:
            line += f"; {report.objects_present} object(s)"
            if run_cache:
                line += f" and {report.results_present} result(s)"
            line += f" were {here} already"
        typer.echo(line)
        if report.unavailable:
            side = "the local store" if direction == "push" else "the remote"
            shown = ", ".join(report.unavailable[:3])
            more = f" and {len(report.unavailable) - 3} more" if len(report.unavailable) > 3 else ""
            typer.echo(
                f"gitpipe: {len(report.unavailable)} wanted item(s) are not in {side}: "
                f"{shown}{more}",
                err=True,
            )
    if report.rejected:
        shown = "; ".join(str(r) for r in report.rejected[:3])
        more = f"; and {len(report.rejected) - 3} more" if len(report.rejected) > 3 else ""
        if direction == "pull":
            advice = (
                "nothing rejected was written here; the remote's copies are damaged or "
                "forged: delete them there and push again from a clone that has them"
            )
        else:
            advice = "the damaged local objects were not pushed"
        raise RemoteError(
            f"{len(report.rejected)} item(s) failed verification: {shown}{more}; {advice}"
        )


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
    """Upload the outputs gitpipe.lock names, and their results, to the remote:
    only what it lacks."""
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
    """Download the outputs gitpipe.lock names, and their results, from the remote
    into the store, verifying every byte; then `gitpipe repro` restores them."""
    _transfer(
        "pull",
        remote_url=remote,
        jobs=jobs,
        run_cache=run_cache,
        everything=everything,
        file=file,
        as_json=as_json,
    )
