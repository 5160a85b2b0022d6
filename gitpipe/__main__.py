"""The `gitpipe` console script, and `python -m gitpipe ...`: fast paths for the
no-op `status` and `repro`, then the command line (`gitpipe.cli`).

A no-op `status` (every step up to date, nothing changed since the last `status`
said so) is answered from the status snapshot (gitpipe/core/snapshot.py) by stat
calls alone; importing typer and building the command's options would cost more
than all of that (typer 0.29 builds a pydantic adapter per option).  So before
`gitpipe.cli` is imported, :func:`answer` recognises exactly these forms:

    gitpipe [-C DIR] [-f FILE] status [--check] [-C DIR] [-f FILE]
    gitpipe [-C DIR] [-f FILE] repro [-q | --quiet] [-C DIR] [-f FILE]

    gitpipe [-C DIR] [-f FILE] push|pull [-r URL | --remote URL] [-C DIR] [-f FILE]
    gitpipe [-C DIR] [-f FILE] checkout [--pull] [-r URL | --remote URL] [-C DIR] [-f FILE]

(each option at most once per side; ``-CDIR``, ``-fFILE``, ``--file FILE``,
``--file=FILE`` and ``--remote=URL`` too).  `status` prints what the command prints,
from the snapshot when it answers (gitpipe.core.records.status_lines), else through
the facade call the command makes (Project.status_and_data), its lines and the
errors after them made by gitpipe.workspace.inspection's status_report and
status_verdict: the whole command without typer, whose options take a tenth of a
second to build.  A no-op `repro` on a plain console is recorded in lineage and
closed with the same line by gitpipe/run/noop.py, which says when it cannot be sure;
one with work to do is run through the facade call the command makes
(Project.repro), with the same plain view (gitpipe.run.plain) and summary writers.
`push`, `pull` and `checkout` on a plain console (CI, a pipe) are done here through
the same facade calls the command line makes, saying the same words
(gitpipe.workspace.transfer's, CheckoutReport.lines) and ending an error as the
command line does (gitpipe.core.errors.boundary): typer's import is a third of a
small push.  Until the first byte moves (the pipeline, the lock and the remote's
url read) any error hands the command to the command line, which says it.
Ctrl-C and SIGTERM end any of them as the command line ends it ("interrupted", exit
130).  Anything else (another option or command, steps named, a value missing or
empty, shell completion, --debug or GITPIPE_DEBUG, a `repro` on a terminal, whose
live view is rich's) goes to the command line untouched, in the folder it was
started in, with the signal handlers it was started with.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator

#: ``typing.TYPE_CHECKING``: `typing` costs a no-op `status` a few milliseconds
TYPE_CHECKING = False

if TYPE_CHECKING:
    from gitpipe.core.records import StepStatus
    from gitpipe.workspace import Project
    from gitpipe.workspace.data import DataState
    from gitpipe.workspace.transfer import Plan

#: the options the fast path knows, as the name it keeps their value under
_VALUED = {"-C": "chdir", "-f": "file", "--file": "file"}
#: the option of the transfer commands (after the command only)
_REMOTE = {"-r": "remote", "--remote": "remote"}
#: the signals that interrupt a command (gitpipe.core.interrupts)
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: allocations between two collections of the youngest generation (Python's: 700)
_YOUNG = 20_000


def _option(arg: str, rest: Iterator[str], command: str | None) -> tuple[str, str] | None:
    """(name, value) of one -C/-f/--file option (or, after `push`, `pull` and
    `checkout`, -r/--remote) as click reads it, else None."""
    if command in _TRANSFERS:
        if arg in _REMOTE:
            value = next(rest, None)
            return None if value is None or value.startswith("-") else ("remote", value)
        if arg.startswith("--remote="):
            return "remote", arg.removeprefix("--remote=")
    if arg in _VALUED:
        value = next(rest, None)
        return None if value is None else (_VALUED[arg], value)
    if arg.startswith("--file="):
        return "file", arg.removeprefix("--file=")
    if arg[:2] in ("-C", "-f") and len(arg) > 2:
        return _VALUED[arg[:2]], arg[2:]
    return None


#: the commands the fast path answers, with the one flag each may be given
_FLAGS = {
    "status": ("--check",),
    "repro": ("-q", "--quiet"),
    "push": (),
    "pull": (),
    "checkout": ("--pull",),
}
#: the commands that move or restore bytes, done here on a plain console
_TRANSFERS = ("push", "pull", "checkout")


def _parse(argv: list[str]) -> tuple[str, dict[str, str], dict[str, str], bool] | None:
    """The command, the root options, the command's options and its flag (--check
    of `status`, -q of `repro`); None for anything else."""
    before: dict[str, str] = {}
    after: dict[str, str] = {}
    flag = False
    command = None
    rest = iter(argv)
    for arg in rest:
        if command is not None and arg in _FLAGS[command] and not flag:
            flag = True
            continue
        if command is None and arg in _FLAGS:
            command = arg
            continue
        option = _option(arg, rest, command)
        if option is None:
            return None  # another command or option, a step, a value missing
        side = before if command is None else after
        name, value = option
        if name in side or not value:
            return None  # given twice, or empty: click's answer, not ours
        side[name] = value
    if command is None:
        return None
    return command, before, after, flag


def answer(argv: list[str]) -> int | None:
    """Do one of the commands above (``argv`` after the program's name) as the
    command line would: print what it prints and return its exit code; None, having
    printed nothing and changed nothing, when the command line must answer."""
    if "_GITPIPE_COMPLETE" in os.environ:
        return None  # shell completion asks typer
    if "GITPIPE_DEBUG" in os.environ:
        return None  # the command line's to read: tracebacks, or a usage error
    parsed = _parse(argv)
    if parsed is None:
        return None
    command, before, after, flag = parsed
    try:  # a folder one may enter but not list still answers (O_PATH needs no read right)
        here = os.open(".", getattr(os, "O_PATH", os.O_RDONLY) | os.O_DIRECTORY)
    except OSError:  # the command line says what is wrong with the folder
        return None
    # as the command line's first act: SIGTERM is Ctrl-C, "gitpipe: interrupted" and
    # exit 130 (Python's own Ctrl-C handler, which gitpipe.core.interrupts' replaces
    # in a run, costs no import of threading on the way of a no-op `status`)
    handlers = {n: signal.getsignal(n) for n in _SIGNALS}
    for number in _SIGNALS:
        signal.signal(number, signal.default_int_handler)
    try:
        if command in _TRANSFERS:
            code = _transfer(command, before, after, flag)
        elif command == "repro":
            code = _repro(before, after, flag)
        else:
            code = _status(before, after, flag)
    except Exception:  # any doubt: the command line answers, and says what went wrong
        code = None
    except KeyboardInterrupt:  # before the command's own boundary: ended as there
        code = _ending(_interrupted)
    if code is None:
        os.fchdir(here)  # the command line changes folder again, itself
        for number, handler in handlers.items():  # and installs its handlers itself
            signal.signal(number, handler)
    os.close(here)
    return code


def _status(before: dict[str, str], after: dict[str, str], check: bool) -> int | None:
    """`status`: from the snapshot when it answers, by stat calls alone; else the
    whole command, as the command line does it (:func:`_full_status`)."""
    from gitpipe.core import snapshot
    from gitpipe.core.layout import DEFAULT_FILE
    from gitpipe.core.states import FROZEN, SKIPPED, UP_TO_DATE

    _chdir(before, after)
    file = after.get("file", before.get("file"))
    kept = snapshot.plain(os.path.join(".", file or DEFAULT_FILE))  # as layout.locate
    if (
        kept is not None
        and not kept.unreachable
        and not (check and any(s not in (UP_TO_DATE, FROZEN, SKIPPED) for s in kept.states))
    ):
        try:
            if sys.stdout is not None:  # else closed: typer writes nothing there either
                sys.stdout.write("".join(f"{line}\n" for line in kept.lines or ["no steps"]))
                sys.stdout.flush()
        except OSError as exc:  # as the command's error boundary says it
            from gitpipe.core.console import echo
            from gitpipe.core.errors import StoreError, describe

            with contextlib.suppress(OSError):  # stderr gone too: the code says it
                echo(f"gitpipe: {describe(exc)}", err=True)
            return StoreError.exit_code
        return 0
    # the kept answer, whose lines (or verdict) are not enough, made into statuses
    statuses = snapshot.statuses_of(kept.rows) if kept is not None else None
    return _ending(lambda: _full_status(file, statuses, check))


def _full_status(file: str | None, statuses: list[StepStatus] | None, check: bool) -> int:
    """`status` without typer, whose options cost a tenth of a second to build: the
    same lines (gitpipe.workspace.inspection.status_report), the same errors after
    them (status_verdict)."""
    from gitpipe.core import interrupts

    interrupts.install()  # as the command line: SIGTERM is Ctrl-C
    _for_command()
    from gitpipe.core.console import echo
    from gitpipe.workspace import Project
    from gitpipe.workspace.inspection import status_report, status_verdict

    data: list[DataState] = []  # a snapshot's answer stands only with all added data as recorded
    if statuses is None:
        statuses, data = Project.open(".", file=file).status_and_data([])
    data = [d for d in data if d.state != "up to date"]
    echo("\n".join(status_report(statuses, data)))
    status_verdict(statuses, data, check=check)
    return 0


def _repro(before: dict[str, str], after: dict[str, str], quiet: bool) -> int | None:
    """`repro` on a plain console: a no-op one recorded and closed by
    gitpipe/run/noop.py, else the whole run (:func:`_full_repro`)."""
    from gitpipe.core.console import plain_output
    from gitpipe.core.layout import locate
    from gitpipe.run import noop

    if not plain_output():
        return None  # a terminal's live view: the command line draws it
    _chdir(before, after)
    file = after.get("file", before.get("file"))
    code = noop.answer(locate(".", file), quiet=quiet)
    if code is not None:
        return code
    return _ending(lambda: _full_repro(file, quiet))


def _full_repro(file: str | None, quiet: bool) -> int:
    """`repro [-q]` without typer, whose options take a tenth of a second to build:
    the facade call the command line makes, with the same plain view
    (gitpipe.run.plain) and summary writers, ending as it ends."""
    from gitpipe.core import interrupts

    interrupts.install()  # as the command line: SIGTERM is Ctrl-C
    _for_command()
    from gitpipe.core.console import echo
    from gitpipe.run.plain import PlainLines
    from gitpipe.run.summary import writers
    from gitpipe.workspace import Project

    project = Project.open(".", file=file)
    view = PlainLines(verbose=False, quiet=quiet, write=echo)
    project.repro([], listeners=[view, *writers(project)], argv=sys.argv[1:])
    return 0


def _transfer(
    command: str, before: dict[str, str], after: dict[str, str], pull: bool
) -> int | None:
    """`push`, `pull` or `checkout` as the command line does them; None, having done
    nothing but read, when the command line must (a terminal's progress bars, --debug,
    an error before anything moved)."""
    from gitpipe.core.console import plain_output

    if not plain_output():
        return None
    from gitpipe.core import interrupts

    interrupts.install()  # as the command line: SIGTERM is Ctrl-C
    try:
        _chdir(before, after)
        from gitpipe.workspace import Project

        project = Project.open(".", file=after.get("file", before.get("file")))
        remote = after.get("remote")
        if command == "checkout":
            return _ending(lambda: _checkout(project, remote, pull=pull))
        from gitpipe.workspace import transfer as transfers

        plan = transfers.prepare(project, command, remote=remote)
    except KeyboardInterrupt:
        return _ending(_interrupted)
    return _ending(lambda: _move(project, plan))


def _move(project: Project, plan: Plan) -> int:
    from gitpipe.core.console import echo
    from gitpipe.workspace import transfer as transfers

    if plan.empty:
        echo(transfers.nothing_named(project, plan.direction), err=True)
    view = transfers.ProgressLines(lambda line: echo(line, err=True))
    report = transfers.transfer(project, plan, progress=view)
    view.close()
    echo(transfers.report_line(report, run_cache=True))
    for warning in (transfers.skipped_line(report), transfers.unavailable_line(report)):
        if warning:
            echo(warning, err=True)
    transfers.verified(report)
    return 0


def _checkout(project: Project, remote: str | None, *, pull: bool) -> int:
    from gitpipe.core.console import echo

    report = project.checkout([], pull=pull, force=False, remote=remote)
    for warning in report.warnings:
        echo(warning, err=True)
    for line in report.lines():
        echo(line)
    return 0


def _ending(work: Callable[[], int]) -> int:
    """``work``'s exit code, or an error ended as the command line ends it: one line
    on stderr and its exit code (SIGTERM stops it as Ctrl-C does, as there)."""
    from gitpipe.core.console import echo
    from gitpipe.core.errors import boundary

    try:
        return work()
    except (Exception, KeyboardInterrupt) as exc:
        message, code = boundary(exc)
        try:
            echo(f"gitpipe: {message}", err=True)
        except Exception:  # never handed to the command line, to be done again
            pass
        return code


def _interrupted() -> int:
    raise KeyboardInterrupt


def _chdir(before: dict[str, str], after: dict[str, str]) -> None:
    for side in (before, after):  # as -C before the command, then after it, does
        if "chdir" in side:
            os.chdir(side["chdir"])


def _for_command() -> None:
    """The collector's settings for one command.  A command holds the parsed
    pipeline, its lock and their keys until it ends: tens of thousands of objects
    that each collection of the oldest generation walks again.  Collecting the
    youngest one after 20,000 allocations instead of 700 makes those walks rarer: a
    sixth of the first `status` after a 10,000-step `repro` (docs/performance.md).
    The console script only: a process that imports gitpipe keeps its own settings."""
    import gc

    gc.set_threshold(_YOUNG, *gc.get_threshold()[1:])
    from gitpipe.core import collector

    collector.for_command()  # the parsed pipeline lives until the command ends


def main() -> None:
    """The console script: the fast path, else the command line."""
    code = answer(sys.argv[1:])
    if code is not None:
        sys.exit(code)
    _for_command()
    from gitpipe.cli import main as command_line

    command_line()


if __name__ == "__main__":
    main()
