"""The command line: the one place that prints, and that turns errors into exit codes.

    argv ──▶ main() ──▶ _keep_only(the command argv names) ──▶ app ──▶ _root (-C, -f, --debug)
                                                                         │
        a command  (run · inspect · history · store · lineage · data: one module per group)
          parse arguments ──▶ the facade, gitpipe.workspace.Project (or the layer
          module it calls) ──▶ a view prints the answer (plain · live · output)
                                                                         │
        handled: a GitpipeError, OSError or SQLite error ──▶ one line on stderr, exit code

Each command module registers its commands on ``app`` when it is imported, which
this package does last, after ``app``, ``handled`` and the shared options they use.
Start-up stays fast: the command modules import the rest of gitpipe (and rich) inside
the commands, and ``main`` keeps only the command the arguments name before typer
builds the command line.

The root options -C, -f and --debug may come after the command too: ``_Root`` gives
each command copies of -C and --debug as it looks it up, and a -f given before the
command becomes the command's own default (click's ``default_map``)."""

from __future__ import annotations

import copy
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup
from typer.models import CommandInfo

from gitpipe.cli.output import plain_output
from gitpipe.core import interrupts
from gitpipe.core.errors import INTERNAL_ERROR, boundary

if TYPE_CHECKING:  # imported where used: `gitpipe --help` needs neither
    import sqlite_utils

    from gitpipe.workspace import Project


# Help and usage errors are drawn with rich on a terminal only: importing rich's
# renderers takes longer (~0.1 s) than all of the rest of `gitpipe --help`.
MARKUP: Any = None if plain_output() else "rich"


class _Root(TyperGroup):
    """The root group: its options -C and --debug are accepted after the command too
    (given to each command as it is looked up), and help lists each command's first
    sentence whole, never cut with "...", whatever the width."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            _accept_root_options(command, self)
        return command

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(limit=1_000)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _accept_root_options(command: Any, root: Any) -> None:
    """Give a command (and a group's commands) copies of the root's -C and --debug,
    which act when parsed: -C changes folder before the command opens the workspace."""
    if any("-C" in param.opts for param in command.params):
        return
    for param in root.params:
        action = _ROOT_ACTIONS.get(param.name)
        if action is not None:
            again = copy.copy(param)
            again.callback, again.expose_value, again.envvar = action, False, None
            command.params.append(again)
    for sub in getattr(command, "commands", {}).values():
        _accept_root_options(sub, root)


app = typer.Typer(
    name="gitpipe",
    cls=_Root,
    help="Reproducible pipelines on Git: run exactly what changed, reuse everything else, "
    "and say why.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=MARKUP,
)

_state: dict[str, bool] = {"debug": False}
#: the exit code of a bug in gitpipe (an exception no layer turned into an error):
#: EX_SOFTWARE of sysexits.h, apart from every code a user's run can end with
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
    try:
        typer.echo(f"gitpipe: {message}", err=True)
    except OSError:  # stderr gone too (a broken pipe): the code still says it, not
        pass  # click's 1 for a broken pipe, which says a step failed
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
        except (Exception, KeyboardInterrupt) as exc:
            if type(exc).__module__.split(".")[0] in ("typer", "click"):
                raise  # typer.Exit and the usage errors: typer's own to show
            message, code = boundary(exc)
            if code == INTERNAL_ERROR and _state["debug"]:
                raise  # a bug: the traceback, with --debug
            if not isinstance(exc, KeyboardInterrupt):
                _traceback()
            raise _fail(message, code) from None

    return wrapper  # type: ignore[return-value]


def _traceback() -> None:
    """With --debug, the traceback of the error being handled."""
    if _state["debug"]:
        import traceback

        traceback.print_exc()


def _show_version(value: bool) -> None:
    if value:
        # gitpipe.__version__, read from the package this one is in (always imported
        # first), not imported: the command line sits below the Python API it serves
        typer.echo(f"gitpipe {sys.modules['gitpipe'].__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    chdir: Annotated[
        Path | None, typer.Option("-C", help="Run as if started in this folder.")
    ] = None,
    file: Annotated[
        str | None,
        typer.Option(
            "--file", "-f", help="The pipeline file (default: gitpipe.toml).", show_default=False
        ),
    ] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show tracebacks for errors.", envvar="GITPIPE_DEBUG")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Print gitpipe's version.", callback=_show_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Options given before the command: -f is the command's -f unless it has its own."""
    _state["debug"] = debug
    if chdir is not None:
        _chdir(chdir)
    if file is not None:
        ctx.default_map = _defaults(ctx.command, {"file": file})


def _chdir(folder: str | os.PathLike[str]) -> None:
    try:
        os.chdir(folder)
    except OSError as exc:
        raise _fail(f"cannot change to {folder} ({exc.strerror})", 2) from None


def _debug_after(ctx: Any, param: Any, value: bool) -> None:
    if value:
        _state["debug"] = True


def _chdir_after(ctx: Any, param: Any, value: Path | None) -> None:
    if value is not None and not ctx.resilient_parsing:
        _chdir(value)


#: what the copies of the root's options do when given after the command
_ROOT_ACTIONS = {"chdir": _chdir_after, "debug": _debug_after}


def _defaults(group: Any, values: dict[str, Any]) -> dict[str, Any]:
    """A click default map giving every command under ``group`` these defaults."""
    commands = getattr(group, "commands", {})
    return {**values, **{name: _defaults(sub, values) for name, sub in commands.items()}}


def open_project(file: str | None, params: list[str] | None = None) -> Project:
    """The workspace here, its pipeline read from ``file``, with ``-p`` overrides."""
    from gitpipe.workspace import Project

    overrides = {}
    if params:
        from gitpipe.pipeline.spec import parse_override

        overrides = dict(parse_override(text) for text in params)
    return Project.open(".", file=file, overrides=overrides)


def open_lineage(project: Project) -> sqlite_utils.Database:
    """The workspace's lineage database, as it is: a missing one is not made."""
    from gitpipe.workspace.lineage import database

    return database(project)


def main() -> None:
    """The console script: SIGTERM stops a run as cleanly as Ctrl-C does."""
    interrupts.install()
    _keep_only(_command_named(sys.argv[1:]))
    app(prog_name="gitpipe")  # as `python -m gitpipe` too: completion scripts name it


def _command_named(args: list[str]) -> str | None:
    """The command the arguments name after the root options, if plainly so."""
    args = iter(args)
    for arg in args:
        if arg in ("-C", "-f", "--file"):
            next(args, None)  # its value
        elif arg == "--debug" or arg.startswith(("-C", "-f", "--file=")):
            continue
        elif arg.startswith("-"):
            return None  # --help, or something for click to explain
        else:
            return arg
    return None


def _name(info: CommandInfo) -> str | None:
    """A registered command's name, as typer derives it from its function's."""
    if info.name:
        return info.name
    return info.callback.__name__.lower().replace("_", "-") if info.callback else None


def _keep_only(name: str | None) -> None:
    """Register only the named command (or group) before typer builds the command
    line: building every command's options takes longer than the rest of a no-op
    `status` start-up.  Names that are no command change nothing, so click reports
    them as it would."""
    commands = [info for info in app.registered_commands if _name(info) == name]
    groups = [info for info in app.registered_groups if info.name == name]
    if len(commands) + len(groups) == 1:
        app.registered_commands = commands
        app.registered_groups = groups


#: the order in which `gitpipe --help` lists the commands (groups, like `cache`, follow
#: them); a command missing here is listed after these
_HELP_ORDER = (
    "init", "status", "why", "check", "gc", "repro", "approve", "log", "show", "logs",
    "lineage", "metrics", "dag", "report", "versions", "diff", "add", "remove", "checkout",
    "push", "pull", "audit", "schema",
)  # fmt: skip


def _in_help_order() -> None:
    """List the commands in ``_HELP_ORDER``, whichever module registered them."""

    def place(info: CommandInfo) -> int:
        name = _name(info)
        return _HELP_ORDER.index(name) if name in _HELP_ORDER else len(_HELP_ORDER)

    app.registered_commands.sort(key=place)


# The command modules register their commands on `app` as they are imported, using
# the names above: so they come last.
from gitpipe.cli import (  # noqa: E402, F401
    audit,
    data,
    experiments,
    history,
    importing,
    inspect,
    lineage,
    report,
    run,
    store,
)

_in_help_order()
