"""Plain views: timestamped lines without control codes, for CI, pipes and logs.

    runner events ──▶ ConsoleReporter ──▶ "12:00:01 train: running" ... summary line

The lines are `gitpipe.run.plain.PlainLines`', written here with typer (the console
script's fast path writes the same without it).  (The plain lines of `push` and
`pull`, "12:00:02 objects: 3/10, 1.2 MB", are made by
`gitpipe.workspace.transfer.ProgressLines`, which their fast path shares.)

The live views in `gitpipe.cli.live` draw the same on a terminal; the run's closing
line (`summary`) and a failed step's log tail (`log_tail`) are shared with them."""

from __future__ import annotations

import typer

from gitpipe.run.events import ending, summary  # noqa: F401 (the views share them)
from gitpipe.run.plain import PlainLines, log_tail  # noqa: F401 (the live view's too)


class ConsoleReporter(PlainLines):
    """:class:`PlainLines` written with ``typer.echo``."""

    def __init__(self, *, verbose: bool, quiet: bool) -> None:
        super().__init__(verbose=verbose, quiet=quiet, write=typer.echo)
