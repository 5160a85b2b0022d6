"""Live views, on a terminal: what runs now and how far the run is, drawn with rich.

    runner events ──▶ LiveReporter ──▶ finished steps printed above
                                       │ running  train   12.3 s │ (redrawn often)
                                       │ ━━━━━━━━━━━━━━━  3/5 steps │
    transfer Progress ──▶ TransferBars ──▶ one bar per phase, on stderr

The only module that imports rich; importing it is slow, so nothing imports this
module unless stdout is a terminal (see `gitpipe.cli.output.plain_output`)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bars
from rich.progress_bar import ProgressBar
from rich.table import Table

from gitpipe.cli.output import size
from gitpipe.cli.plain import ConsoleReporter, log_tail
from gitpipe.run import events as ev

if TYPE_CHECKING:
    from gitpipe.store.remote import Progress


#: the colour of each state a finished step is shown in
_STYLES = {
    ev.RAN: "green",
    ev.CACHED: "cyan",
    ev.FAILED: "bold red",
    ev.SKIPPED: "yellow",
    ev.WAITING: "magenta",
    ev.FROZEN: "blue",
    ev.UP_TO_DATE: "dim",
}


class LiveReporter(ConsoleReporter):
    """On a terminal: a live view of the running steps and an overall progress bar,
    above which finished steps are printed as they finish."""

    def __init__(self, *, verbose: bool, quiet: bool) -> None:
        super().__init__(verbose=verbose, quiet=quiet)
        self.console = Console(highlight=False)
        self.err_console = Console(stderr=True, highlight=False)
        self.running: dict[str, float] = {}
        self.total = 0
        self.done = 0
        self.live: Live | None = None

    def out(self, text: str, *, err: bool = False) -> None:
        (self.err_console if err else self.console).print(text, markup=False)

    def line(self, text: str, *, err: bool = False) -> None:
        self.out(text, err=err)

    def render(self) -> Group:
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
        style = _STYLES.get(event.state)
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


class TransferBars:
    """On a terminal: one progress bar per phase, on stderr."""

    def __init__(self) -> None:
        self.bars = Bars(
            TextColumn("{task.description:>12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[moved]}"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
        )
        self.tasks: dict[str, TaskID] = {}
        self.bars.start()

    def __call__(self, progress: Progress) -> None:
        task = self.tasks.get(progress.phase)
        if task is None:
            task = self.bars.add_task(progress.phase, total=progress.total, moved="")
            self.tasks[progress.phase] = task
        moved = size(progress.bytes) if progress.bytes else ""
        self.bars.update(task, completed=progress.done, total=progress.total, moved=moved)

    def close(self) -> None:
        self.bars.stop()
