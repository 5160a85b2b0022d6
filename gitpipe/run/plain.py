"""The plain view of a run: timestamped lines without control codes, for CI, pipes
and logs, each handed to a writer its caller gives (views print nothing themselves
below the command line).

    runner events ──▶ PlainLines ──▶ "12:00:01 train: running" ... summary line

The command line's view (`gitpipe.cli.plain.ConsoleReporter`) writes them with
typer; the console script's fast path (gitpipe/__main__.py) with
`gitpipe.core.console.echo`, which writes as typer does.  The live views in
`gitpipe.cli.live` draw the same on a terminal; the run's closing line (`summary`)
and a failed step's log tail (`log_tail`) are shared with them."""

from __future__ import annotations

import os
import time
from typing import Protocol

from gitpipe.run import events as ev
from gitpipe.run.events import summary


class Write(Protocol):
    def __call__(self, text: str, *, err: bool = False) -> None: ...


class PlainLines:
    """Plain, timestamped lines, one per step that does something, each handed to
    ``write`` (with ``err=True`` for what goes to stderr).

    With ``verbose`` each running step's output is streamed, prefixed with its name;
    with ``quiet`` only failures and the summary are printed.
    """

    TAIL = 10  # lines of a failed step's log shown on screen

    def __init__(self, *, verbose: bool, quiet: bool, write: Write) -> None:
        self.write = write
        self.verbose = verbose
        self.quiet = quiet
        self._logs: dict[str, tuple[str, int]] = {}  # step -> (log path, offset read)
        self.interrupted: list[str] = []  # steps the run's interrupt stopped, for the summary

    def out(self, text: str, *, err: bool = False) -> None:
        self.write(text, err=err)

    def line(self, text: str, *, err: bool = False) -> None:
        self.out(f"{time.strftime('%H:%M:%S')} {text}", err=err)

    def __call__(self, event: ev.Event) -> None:
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


def log_tail(path: str, lines: int) -> list[str]:
    """The last ``lines`` lines of a step's log (of its last 64 KiB), if it can be read."""
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
