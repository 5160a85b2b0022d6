"""The runner behaviours of issue 3: parallel steps without wave barriers, resources,
--keep-going, backends, Ctrl-C / SIGTERM, two runs at once, and what people see.

Which steps ran at the same time, and in which order, is proven with files, never
read from clocks: steps that must overlap wait at a barrier for each other's
markers (and fail if the others never come), and steps append to a journal when
they start and end, whose order is the order things happened.  Only the tests about
durations (timeouts, the grace before SIGKILL, how soon Ctrl-C ends a run) measure
time, since time is what they are about.  Where a real process is needed (signals,
two runs at once, a terminal) the installed `gitpipe` script runs as a subprocess.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO

import pytest
from conftest import Workspace, run_in_a_terminal

from gitpipe.store import lockfile

GITPIPE = Path(sys.executable).parent / "gitpipe"
SUMMARY = re.compile(
    r"^(?P<ran>\d+) ran, (?P<cached>\d+) cached, (?P<up>\d+) up to date, "
    r"(?P<skipped>\d+) skipped, (?P<failed>\d+) failed(?P<more>(, \d+ [a-z ]+)*)"
    r" in \d+\.\d+ s(?P<how>.*)$"
)
TIMESTAMPED = re.compile(r"^\d\d:\d\d:\d\d (?P<step>\w+): (?P<what>.*)$")


@pytest.fixture(autouse=True)
def _no_runner_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests choose backend and scheduler themselves."""
    for name in ("GITPIPE_BACKEND", "GITPIPE_DASK_SCHEDULER", "GITPIPE_DEBUG"):
        monkeypatch.delenv(name, raising=False)


# -- helpers ---------------------------------------------------------------------


def setup(workspace: Workspace, pipeline: str) -> Workspace:
    """Commit a pipeline whose outputs and scratch files Git ignores."""
    workspace.write(".gitignore", "*.txt\n")
    workspace.pipeline(pipeline)
    workspace.commit("pipeline")
    return workspace


@dataclass(frozen=True)
class Execution:
    step: str
    state: str
    started: datetime | None
    ended: datetime | None
    message: str | None


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def lineage(root: Path, sql: str, *args: object) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(root / ".gitpipe" / "lineage.db")) as db:
        return db.execute(sql, args).fetchall()


def runs(root: Path) -> list[tuple[str, str]]:
    """(id, status) of every run, oldest first."""
    return lineage(root, "SELECT id, status FROM runs ORDER BY started, rowid")


def executions(root: Path, run_id: str | None = None) -> dict[str, Execution]:
    """The executions of a run (default: the latest), by step."""
    run_id = run_id or runs(root)[-1][0]
    rows = lineage(
        root,
        "SELECT step, state, started, ended, message FROM executions WHERE run_id = ? ORDER BY id",
        run_id,
    )
    return {
        step: Execution(step, state, _time(started), _time(ended), message)
        for step, state, started, ended, message in rows
    }


def await_files(step: str, *names: str) -> str:
    """A shell command: wait (up to 30 s) until every file of ``names`` exists; the
    step fails, saying so, when one never does."""
    present = " && ".join(f"[ -f {name} ]" for name in names)
    gave_up = f"echo '{step}: gave up waiting for {' '.join(names)}' >&2; exit 9"
    return (
        f"for i in $(seq 300); do {present} && break; sleep 0.1; done; "
        f"{present} || {{ {gave_up}; }}"
    )


def barrier(step: str, *others: str) -> str:
    """A shell command for ``step``: leave a marker, then wait for the markers of all
    the ``others``.  Steps that all pass one barrier were running at one same moment:
    each started before any of the others ended.  A scheduler that would not run them
    together fails them instead, whatever the machine's load."""
    return f"touch started.{step}.txt; " + await_files(step, *(f"started.{o}.txt" for o in others))


def journaled(step: str, *commands: str) -> str:
    """A shell command for ``step``: ``commands``, between a `start` and an `end` line
    appended to journal.txt."""
    return "; ".join(
        (f"echo start {step} >> journal.txt", *commands, f"echo end {step} >> journal.txt")
    )


#: in a journaled step, time for an overlap, were one allowed, to show in the journal;
#: the journal's order decides, so a slow machine can hide a fault but never fail a test
PAUSE = "sleep 0.2"


def together(root: Path) -> set[frozenset[str]]:
    """Every set of steps journal.txt shows running at one moment (an entry per
    start: the steps then started and not yet ended)."""
    running: set[str] = set()
    seen: set[frozenset[str]] = set()
    for line in (root / "journal.txt").read_text().splitlines():
        what, step = line.split()
        if what == "start":
            running.add(step)
            seen.add(frozenset(running))
        else:
            running.discard(step)
    return seen


def journal(root: Path) -> list[str]:
    return (root / "journal.txt").read_text().splitlines()


def summary_line(text: str) -> re.Match[str]:
    """The run's closing summary: the last line of its standard output."""
    lines = text.strip().splitlines()
    assert lines, "no output at all"
    match = SUMMARY.match(lines[-1])
    assert match, f"the last line is not a summary: {lines[-1]!r}"
    return match


def locked_steps(root: Path) -> set[str]:
    """The steps gitpipe.lock has an entry for (read with gitpipe's own parser)."""
    return set(lockfile.read(root / "gitpipe.lock").steps)


def plain_env(**extra: str) -> dict[str, str]:
    """The environment of a gitpipe subprocess, as in CI."""
    return {**os.environ, "CI": "true", **extra}


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def _as_in_a_terminal() -> None:
    """Ctrl-C interrupts, as in a terminal, even when these tests run as a background
    job (whose shell starts them with SIGINT ignored, which a child inherits)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def gitpipe_process(
    root: Path, *args: str, env: dict[str, str], own_group: bool = False
) -> Iterator[subprocess.Popen]:
    """`gitpipe ARGS` as a process of its own (with ``own_group``, leading a process
    group, as a terminal's foreground job does); killed by its pid if a test leaves it."""
    process = subprocess.Popen(
        [str(GITPIPE), *args],
        cwd=root,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_as_in_a_terminal,
        start_new_session=own_group,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                stream.close()


class Lines:
    """Collects a pipe's lines in a thread, so a test can wait for one of them."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    def has(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def text(self) -> str:
        self._thread.join(timeout=10)
        return "".join(self.lines)


def live_processes_in_group(pgid: int) -> list[int]:
    """Processes of a process group that are still alive (zombies do not count)."""
    alive = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid pgrp ...; comm may hold spaces, so split after ')'
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == pgid and state != "Z":
            alive.append(int(entry.name))
    return alive


def is_alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# -- concurrency -----------------------------------------------------------------

FOUR = [f"s{i}" for i in range(4)]


def four_steps(command: Callable[[str], str]) -> str:
    return "".join(
        f"""
[steps.{step}]
cmd = "{command(step)}; echo {step} > {step}.txt"
outs = ["{step}.txt"]
"""
        for step in FOUR
    )


@pytest.mark.timeout(60)
def test_independent_steps_run_at_the_same_time_with_jobs_and_one_by_one_without(workspace):
    setup(workspace, four_steps(lambda step: barrier(step, *(s for s in FOUR if s != step))))
    workspace.ok("repro", "-j", "4")  # all four met at the barrier
    assert workspace.states() == dict.fromkeys(FOUR, "ran")

    workspace.pipeline(four_steps(lambda step: journaled(step, PAUSE)))
    workspace.ok("repro")  # the default is -j 1
    assert workspace.states() == dict.fromkeys(FOUR, "ran")
    assert together(workspace.root) == {frozenset([step]) for step in FOUR}, journal(workspace.root)


@pytest.mark.timeout(60)
def test_a_step_starts_when_its_own_parents_finish_without_waiting_for_a_slow_branch(workspace):
    setup(
        workspace,
        f"""
        [steps.slow]
        cmd = "{journaled("slow", await_files("slow", "fast_child.txt"), "echo slow > slow.txt")}"
        outs = ["slow.txt"]

        [steps.fast]
        cmd = "{journaled("fast", "echo fast > fast.txt")}"
        outs = ["fast.txt"]

        [steps.fast_child]
        cmd = "{journaled("fast_child", "cp fast.txt fast_child.txt")}"
        deps = ["fast.txt"]
        outs = ["fast_child.txt"]
        """,
    )
    # `slow` ends only once `fast_child` has written: had `fast_child` waited for the
    # slow branch, `slow` would have given up and failed
    workspace.ok("repro", "-j", "3")
    assert workspace.states() == {"slow": "ran", "fast": "ran", "fast_child": "ran"}
    order = journal(workspace.root)
    assert order.index("end fast") < order.index("start fast_child"), order


# -- failures --------------------------------------------------------------------

BRANCHES = """
[steps.bad]
cmd = "echo broken; exit 1"
outs = ["bad.txt"]

[steps.after_bad]
cmd = "cp bad.txt after_bad.txt"
deps = ["bad.txt"]
outs = ["after_bad.txt"]

[steps.other]
cmd = "echo other > other.txt"
outs = ["other.txt"]

[steps.other_child]
cmd = "cp other.txt other_child.txt"
deps = ["other.txt"]
outs = ["other_child.txt"]
"""


def test_a_failure_stops_steps_that_had_not_started_and_names_the_failed_step(workspace):
    setup(workspace, BRANCHES)
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1, result.output
    run = executions(workspace.root)
    assert run["bad"].state == "failed"
    assert run["after_bad"].state == "skipped"
    assert "'bad'" in run["after_bad"].message
    for step in ("other", "other_child"):
        assert run[step].state == "skipped", run[step]
        assert run[step].message == "not started: the run stopped after 'bad' failed"
    assert not (workspace.root / "other.txt").exists()
    assert runs(workspace.root)[-1][1] == "failed"
    assert "other" in result.stderr


#: a step's command: wait (up to 30 s) until lineage records STEP in STATE
RECORDED = """
import contextlib, sqlite3, sys, time
step, state = sys.argv[1:]
for _ in range(300):
    with contextlib.suppress(sqlite3.Error):
        with contextlib.closing(
            sqlite3.connect("file:.gitpipe/lineage.db?mode=ro", uri=True)
        ) as db:
            query = "SELECT 1 FROM executions WHERE step = ? AND state = ?"
            if db.execute(query, (step, state)).fetchone():
                sys.exit(0)
    time.sleep(0.1)
sys.exit(f"gave up waiting for lineage to record {step} {state}")
"""


@pytest.mark.timeout(60)
def test_a_failure_lets_running_siblings_finish_and_keeps_what_they_made(workspace):
    workspace.write("src/recorded.py", RECORDED)
    setup(
        workspace,
        f"""
        [steps.bad]
        cmd = "{barrier("bad", "sibling")}; exit 1"
        outs = ["bad.txt"]

        [steps.sibling]
        cmd = [
            "touch started.sibling.txt",
            "python3 src/recorded.py bad failed",
            "echo made > sibling.txt",
        ]
        outs = ["sibling.txt"]

        [steps.later]
        cmd = "echo later > later.txt"
        outs = ["later.txt"]
        """,
    )
    # `bad` fails once `sibling` runs, and `sibling` goes on once the run has recorded
    # the failure: it was running when `bad` failed, and is let finish
    result = workspace.gitpipe("repro", "-j", "2")
    assert result.exit_code == 1, result.output
    run = executions(workspace.root)
    assert (run["bad"].state, run["sibling"].state, run["later"].state) == (
        "failed",
        "ran",
        "skipped",
    )
    assert (workspace.root / "sibling.txt").read_text() == "made\n"
    assert locked_steps(workspace.root) == {"sibling"}
    assert "later" in result.stderr  # it names the steps it held back


def test_keep_going_runs_the_independent_branch_and_skips_the_failed_steps_dependents(
    workspace,
):
    setup(workspace, BRANCHES)
    result = workspace.gitpipe("repro", "--keep-going")
    assert result.exit_code == 1, result.output
    run = executions(workspace.root)
    assert run["bad"].state == "failed"
    assert run["other"].state == "ran"
    assert run["other_child"].state == "ran"
    assert run["after_bad"].state == "skipped"
    assert "'bad'" in run["after_bad"].message
    assert (workspace.root / "other_child.txt").read_text() == "other\n"
    assert {"other", "other_child"} <= locked_steps(workspace.root)
    assert "after_bad" in result.stderr


def test_a_failed_step_shows_the_end_of_its_log_without_verbose(workspace):
    setup(
        workspace,
        """
        [steps.bad]
        cmd = "seq 1 50; echo 'something broke' >&2; exit 3"
        outs = ["bad.txt"]
        """,
    )
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1, result.output
    assert "bad | something broke" in result.stderr
    assert "bad | 50" in result.stderr
    assert not re.search(r"bad \| 1$", result.stderr, re.MULTILINE)  # the tail, not all of it
    assert "bad |" not in result.stdout


# -- resources -------------------------------------------------------------------


def wide_and_narrow(wide: str, a: str, b: str) -> str:
    """`wide` needing two CPUs and two one-CPU steps, each running its shell command
    and then writing its output."""
    return f"""
[steps.wide]
cmd = "{wide}; echo wide > wide.txt"
outs = ["wide.txt"]
resources = {{ cpus = 2 }}

[steps.a]
cmd = "{a}; echo a > a.txt"
outs = ["a.txt"]

[steps.b]
cmd = "{b}; echo b > b.txt"
outs = ["b.txt"]
"""


@pytest.mark.timeout(60)
def test_a_step_needing_two_cpus_takes_two_job_slots(workspace):
    # with two slots, the one-slot steps meet at a barrier, and `wide` runs alone
    setup(
        workspace,
        wide_and_narrow(
            journaled("wide", PAUSE),
            journaled("a", barrier("a", "b")),
            journaled("b", barrier("b", "a")),
        ),
    )
    workspace.ok("repro", "-j", "2")
    assert workspace.states() == {"wide": "ran", "a": "ran", "b": "ran"}
    shared = {running for running in together(workspace.root) if "wide" in running}
    assert shared == {frozenset(["wide"])}, journal(workspace.root)

    # with four, all three meet
    workspace.pipeline(
        wide_and_narrow(*(barrier(s, *({"wide", "a", "b"} - {s})) for s in ("wide", "a", "b")))
    )
    workspace.ok("repro", "-j", "4")
    assert workspace.states() == {"wide": "ran", "a": "ran", "b": "ran"}


@pytest.mark.parametrize("cpus", ["0", "1.5", "-1", "true"])
def test_cpus_must_be_a_positive_whole_number(workspace, cpus):
    setup(
        workspace,
        f"""
        [steps.wide]
        cmd = "echo wide > wide.txt"
        outs = ["wide.txt"]
        resources = {{ cpus = {cpus} }}
        """,
    )
    result = workspace.gitpipe("repro")
    assert result.exit_code == 2, result.output
    assert "steps.wide.resources.cpus" in result.stderr
    assert "Traceback" not in result.output
    assert not (workspace.root / "wide.txt").exists()


# -- backends --------------------------------------------------------------------

TWO_STEPS = """
[pipeline]
name = "backends"

[steps.make]
cmd = "echo hello > made.txt; echo world >> made.txt"
outs = ["made.txt"]

[steps.shout]
cmd = "tr a-z A-Z < made.txt > shout.txt; echo $GITPIPE_STEP >> shout.txt"
deps = ["made.txt"]
outs = ["shout.txt"]
"""


@pytest.mark.timeout(60)
def test_the_loky_backend_gives_the_same_bytes_as_threading(make_workspace):
    outputs = {}
    for backend in ("threading", "loky"):
        workspace = setup(make_workspace(backend), TWO_STEPS)
        workspace.ok("repro", "-j", "2", "--backend", backend, env={"CI": "true"})
        assert workspace.states() == {"make": "ran", "shout": "ran"}
        assert lineage(workspace.root, "SELECT backend FROM runs") == [(backend,)]
        outputs[backend] = {
            name: (workspace.root / name).read_bytes()
            for name in ("made.txt", "shout.txt", "gitpipe.lock")
        }
    assert outputs["loky"]["shout.txt"] == b"HELLO\nWORLD\nshout\n"
    assert outputs["loky"] == outputs["threading"]


def test_an_unknown_backend_is_a_usage_error(workspace):
    setup(workspace, TWO_STEPS)
    result = workspace.gitpipe("repro", "--backend", "nope")
    assert result.exit_code == 2, result.output
    assert "nope" in result.stderr
    assert "loky" in result.stderr  # it says what there is to choose from
    assert "Traceback" not in result.output
    assert not (workspace.root / "made.txt").exists()


def test_the_dask_backend_without_a_scheduler_is_a_usage_error(workspace):
    setup(workspace, TWO_STEPS)
    result = workspace.gitpipe("repro", "--backend", "dask")
    assert result.exit_code == 2, result.output
    assert "--scheduler" in result.stderr
    assert "Traceback" not in result.output
    assert not (workspace.root / "made.txt").exists()


# -- interrupts ------------------------------------------------------------------

INTERRUPTIBLE = """
[steps.quick]
cmd = "echo quick > quick.txt"
outs = ["quick.txt"]

[steps.long]
cmd = "echo $$ > pid.txt; echo started > marker.txt; sleep 30; echo done > out.txt"
outs = ["out.txt"]
"""


@dataclass(frozen=True)
class Stopped:
    exit_code: int
    stdout: str
    stderr: str
    pid: int  # the long step's shell, the leader of its process group


def interrupt_the_long_step(root: Path, sig: signal.Signals, *args: str) -> Stopped:
    """Run INTERRUPTIBLE in a gitpipe process and send it ``sig`` once `long` runs."""
    with gitpipe_process(root, "repro", "-j", "1", *args, env=plain_env()) as process:
        wait_for(lambda: (root / "marker.txt").exists(), "the long step to start")
        pid = int((root / "pid.txt").read_text())
        try:
            assert live_processes_in_group(pid), "the step's shell is not running"
            process.send_signal(sig)
            try:
                stdout, stderr = process.communicate(timeout=15)
            except subprocess.TimeoutExpired:
                pytest.fail(f"gitpipe did not stop within 15 s of {sig.name}")
            wait_for(lambda: not live_processes_in_group(pid), "the step's processes to end", 5)
        finally:
            if live_processes_in_group(pid):
                os.killpg(pid, signal.SIGKILL)
    return Stopped(process.returncode, stdout, stderr, pid)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupt_stops_the_running_step_and_publishes_nothing_of_it(workspace, sig):
    root = setup(workspace, INTERRUPTIBLE).root
    stopped = interrupt_the_long_step(root, sig)
    assert stopped.exit_code == 130, stopped.stdout + stopped.stderr
    assert "interrupted" in stopped.stderr
    assert summary_line(stopped.stdout)["how"] == " (interrupted while long ran)"

    assert not live_processes_in_group(stopped.pid)  # `sleep 30` went with its shell
    assert not is_alive(stopped.pid)
    assert not (root / "out.txt").exists()
    assert "quick" in locked_steps(root)
    assert "long" not in locked_steps(root)
    assert runs(root)[-1][1] == "interrupted"
    run = executions(root)
    assert run["quick"].state == "ran"
    assert run["long"].state == "interrupted"
    results = root / ".gitpipe" / "cache" / "results"
    stored = [p.read_text() for p in results.rglob("*.json")] if results.exists() else []
    assert len(stored) == 1 and '"quick"' in stored[0], stored

    workspace.pipeline(INTERRUPTIBLE.replace("sleep 30; ", ""))
    workspace.ok("repro")
    assert workspace.states() == {"quick": "up to date", "long": "ran"}
    assert (root / "out.txt").read_text() == "done\n"
    assert {"quick", "long"} <= locked_steps(root)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["threading", "loky"])
def test_ctrl_c_stops_every_running_step_under_each_backend(workspace, backend):
    root = setup(
        workspace,
        """
        [steps.one]
        cmd = "echo $$ > one.pid.txt; sleep 30; echo one > one.txt"
        outs = ["one.txt"]

        [steps.two]
        cmd = "echo $$ > two.pid.txt; sleep 30; echo two > two.txt"
        outs = ["two.txt"]
        """,
    ).root
    pids: list[int] = []
    args = ("repro", "-j", "2", "--backend", backend)
    try:
        with gitpipe_process(root, *args, env=plain_env(), own_group=True) as process:
            for name in ("one", "two"):
                pidfile = root / f"{name}.pid.txt"
                wait_for(lambda p=pidfile: p.exists() and p.read_text().strip(), f"{name}", 30)
                pids.append(int(pidfile.read_text()))
            logs = root / ".gitpipe" / "logs"
            wait_for(  # gitpipe knows both commands' groups (a worker notes each it starts)
                lambda: len(list(logs.glob("*/*.pid"))) == 2 or backend == "threading",
                "gitpipe to note the steps' process groups",
                30,
            )
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
            try:  # stopped at once; the process's exit took over 20 s once on a loaded CI
                stdout, stderr = process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail("gitpipe did not stop within 60 s of Ctrl-C")
        assert process.returncode == 130, stdout + stderr
        for pid in pids:
            wait_for(lambda p=pid: not live_processes_in_group(p), "the steps to end", 5)
        assert not (root / "one.txt").exists()
        assert not (root / "two.txt").exists()
        assert runs(root)[-1][1] == "interrupted"
        assert {step: e.state for step, e in executions(root).items()} == {
            "one": "interrupted",
            "two": "interrupted",
        }
        assert not (root / "gitpipe.lock").exists() or not locked_steps(root)
    finally:
        for pid in pids:
            if live_processes_in_group(pid):
                os.killpg(pid, signal.SIGKILL)


@pytest.mark.timeout(60)
def test_an_interrupted_runs_summary_counts_the_steps_that_finished(workspace):
    root = setup(workspace, INTERRUPTIBLE).root
    stopped = interrupt_the_long_step(root, signal.SIGINT)
    assert stopped.exit_code == 130
    assert executions(root)["quick"].state == "ran"
    assert summary_line(stopped.stdout)["ran"] == "1", stopped.stdout


@pytest.mark.timeout(60)
def test_an_interrupted_run_still_writes_its_summaries_naming_the_interrupted_step(
    workspace, tmp_path
):
    root = setup(workspace, INTERRUPTIBLE).root
    as_json, as_md = tmp_path / "s.json", tmp_path / "s.md"
    stopped = interrupt_the_long_step(
        root, signal.SIGTERM, "--summary-json", str(as_json), "--summary-md", str(as_md)
    )
    assert stopped.exit_code == 130
    data = json.loads(as_json.read_text())
    assert data["status"] == "interrupted"
    assert data["counts"]["interrupted"] == 1 and data["counts"]["ran"] == 1
    assert {s["step"]: s["state"] for s in data["steps"]} == {
        "quick": "ran",
        "long": "interrupted",
    }
    markdown = as_md.read_text()
    assert markdown.startswith("### gitpipe: interrupted")
    assert "| long | interrupted |" in markdown


@pytest.mark.timeout(60)
def test_the_steps_an_interrupt_stopped_are_recorded_shown_and_named(workspace):
    root = setup(workspace, INTERRUPTIBLE).root
    stopped = interrupt_the_long_step(root, signal.SIGTERM)
    assert stopped.exit_code == 130
    closing = summary_line(stopped.stdout)
    assert (closing["ran"], closing["more"]) == ("1", ", 1 interrupted"), stopped.stdout
    assert closing["how"] == " (interrupted while long ran)"
    assert "long: interrupted after" in stopped.stderr

    assert runs(root)[-1][1] == "interrupted"  # the run's status is as it was
    long = executions(root)["long"]
    assert long.state == "interrupted"
    assert long.started < long.ended
    assert "nothing it made was published" in long.message
    ((key, log, exit_code),) = lineage(
        root, "SELECT key, log, exit_code FROM executions WHERE step = 'long'"
    )
    assert key.startswith("b3:")
    assert log.endswith("long.log")
    assert exit_code is None  # gitpipe stopped it: no code of its own to record

    shown = json.loads(workspace.ok("show", "last", "--json").stdout)
    assert shown["status"] == "interrupted"
    assert [(e["step"], e["state"]) for e in shown["executions"]] == [
        ("quick", "ran"),
        ("long", "interrupted"),
    ]
    assert json.loads(workspace.ok("show", shown["run"], "--json").stdout) == shown
    text = workspace.ok("show", "last").stdout.splitlines()
    assert text[0].startswith(f"run {shown['run']}  interrupted  commit ")
    assert any(line.split()[:2] == ["long", "interrupted"] for line in text), text
    assert text[-1] == "1 interrupted, 1 ran (interrupted while long ran)"
    (logged,) = json.loads(workspace.ok("log", "--json").stdout)
    assert logged["counts"] == {"interrupted": 1, "ran": 1}


# -- timeouts, and processes that ignore SIGTERM --------------------------------------

#: a process that ignores SIGTERM, writing its pid to the file it is given
STUBBORN = """
import os, signal, sys, time
from pathlib import Path
signal.signal(signal.SIGTERM, signal.SIG_IGN)
Path(sys.argv[1]).write_text(str(os.getpid()))
time.sleep(60)
"""
GRACE = 5.0  # seconds from SIGTERM to SIGKILL: gitpipe.run.runner.GRACE


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "command",
    ["sleep 30", "echo $$ > pid.txt; sleep 30; echo late > late.txt"],
    ids=["plain", "shell"],
)
def test_a_step_over_its_timeout_fails_at_once_not_after_the_grace(workspace, command):
    setup(
        workspace,
        f"""
        [steps.slow]
        cmd = "{command}"
        outs = ["late.txt"]
        timeout = 1
        """,
    )
    started = time.monotonic()
    result = workspace.gitpipe("repro")
    took = time.monotonic() - started

    assert result.exit_code == 1, result.output
    assert "timed out after 1 s" in result.stderr
    assert took < 4, f"a step with a 1 s timeout ended the run after {took:.1f} s"
    assert not (workspace.root / "late.txt").exists()
    assert executions(workspace.root)["slow"].state == "failed"
    pidfile = workspace.root / "pid.txt"
    if pidfile.exists():  # the shell led the group: `sleep 30` went with it
        assert not live_processes_in_group(int(pidfile.read_text()))


@contextlib.contextmanager
def stubborn(root: Path) -> Iterator[Callable[[], int]]:
    """The pid of the stubborn process (once it has started); killed if a test leaves it."""
    pidfile = root / "child.txt"

    def pid() -> int:
        wait_for(lambda: pidfile.exists() and pidfile.read_text(), "the stubborn process", 15)
        return int(pidfile.read_text())

    try:
        yield pid
    finally:
        if pidfile.exists() and pidfile.read_text() and is_alive(int(pidfile.read_text())):
            os.kill(int(pidfile.read_text()), signal.SIGKILL)


STUBBORN_STEP = """
[steps.long]
cmd = "python3 src/stubborn.py child.txt & sleep 30"
outs = ["out.txt"]
"""


@pytest.mark.timeout(60)
def test_a_timed_out_steps_process_that_ignores_sigterm_is_killed_after_the_grace(workspace):
    workspace.write("src/stubborn.py", STUBBORN)
    root = setup(workspace, STUBBORN_STEP + "timeout = 1\n").root
    with stubborn(root) as child:
        started = time.monotonic()
        result = workspace.gitpipe("repro")
        took = time.monotonic() - started
        assert result.exit_code == 1, result.output
        assert "timed out after 1 s" in result.stderr
        wait_for(lambda: not is_alive(child()), "the stubborn process to be killed", 3)
    assert 1 + GRACE - 0.5 < took < 1 + GRACE + 4, took


@pytest.mark.timeout(60)
def test_an_interrupt_kills_a_process_that_ignores_sigterm_after_the_grace(workspace):
    workspace.write("src/stubborn.py", STUBBORN)
    root = setup(workspace, STUBBORN_STEP).root
    with stubborn(root) as child, gitpipe_process(root, "repro", env=plain_env()) as process:
        child()
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            stdout, stderr = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("gitpipe did not stop within 20 s of SIGTERM")
        took = time.monotonic() - started
        assert process.returncode == 130, stdout + stderr
        wait_for(lambda: not is_alive(child()), "the stubborn process to be killed", 3)
    assert GRACE - 0.5 < took < GRACE + 4, took
    assert not (root / "out.txt").exists()


BURST = 24  # steps handed to workers at once, as the one they wait for ends


@pytest.mark.timeout(120)
@pytest.mark.parametrize("delay", [0.0, 0.005, 0.02, 0.05])
def test_sigterm_while_steps_are_being_handed_to_workers_stops_every_one_of_them(workspace, delay):
    # a step handed to a worker thread but not noted yet, when the interrupt came,
    # ran on unstopped, and the process could not exit until its command ended
    steps = "".join(
        f'[steps.s{i}]\ncmd = "echo $$ > pid{i}.txt; exec sleep 30"\n'
        f'deps = ["go.txt"]\nouts = ["o{i}.txt"]\n\n'
        for i in range(BURST)
    )
    root = setup(workspace, f'[steps.go]\ncmd = "touch go.txt"\nouts = ["go.txt"]\n\n{steps}').root
    pids: list[int] = []
    try:
        with gitpipe_process(root, "repro", "-j", str(BURST), env=plain_env()) as process:
            wait_for(lambda: (root / "go.txt").exists(), "the first step", 30)
            time.sleep(delay)
            process.send_signal(signal.SIGTERM)
            try:
                stdout, stderr = process.communicate(timeout=GRACE + 10)
            except subprocess.TimeoutExpired:
                pytest.fail("gitpipe did not stop within the grace of SIGTERM")
            assert process.returncode == 130, stdout + stderr
        pids = [int(p.read_text()) for p in root.glob("pid*.txt") if p.read_text().strip()]
        wait_for(lambda: not any(is_alive(pid) for pid in pids), "every step's sleep to end", 3)
    finally:
        for pid in pids:
            if is_alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert not list(root.glob("o*.txt"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("backend", ["threading", "loky"])
def test_ctrl_c_ends_the_run_at_once_when_the_steps_stop_at_once(workspace, backend):
    root = setup(workspace, INTERRUPTIBLE).root
    args = ("repro", "-j", "1", "--backend", backend)
    with gitpipe_process(root, *args, env=plain_env(), own_group=True) as process:
        wait_for(lambda: (root / "marker.txt").exists(), "the long step to start", 30)
        pid = int((root / "pid.txt").read_text())
        try:
            os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
            started = time.monotonic()
            stdout, stderr = process.communicate(timeout=20)
            took = time.monotonic() - started
        finally:
            if live_processes_in_group(pid):
                os.killpg(pid, signal.SIGKILL)
    assert process.returncode == 130, stdout + stderr
    assert took < 4, f"gitpipe took {took:.1f} s to stop after Ctrl-C"


# -- two runs at once ------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_second_repro_waits_for_the_first_or_fails_at_once_with_no_wait(workspace):
    setup(
        workspace,
        """
        [steps.hold]
        cmd = [
            "echo started > marker.txt",
            "for i in $(seq 300); do [ -f release.txt ] && break; sleep 0.1; done",
            "echo done > out.txt",
        ]
        outs = ["out.txt"]
        """,
    )
    root = workspace.root
    with gitpipe_process(root, "repro", env=plain_env()) as first:
        wait_for(lambda: (root / "marker.txt").exists(), "the first run's step to start")

        busy = workspace.gitpipe("repro", "--no-wait")
        assert busy.exit_code == 5, busy.output
        assert "another `gitpipe repro`" in busy.stderr

        with gitpipe_process(root, "repro", env=plain_env()) as second:
            lines = Lines(second.stderr)
            wait_for(lambda: lines.has("waiting for another"), "the second run to wait", 15)
            assert second.poll() is None  # still waiting
            (root / "release.txt").write_text("go\n")
            first_out, first_err = first.communicate(timeout=30)
            assert first.returncode == 0, first_out + first_err
            second_out = second.stdout.read()
            assert second.wait(timeout=30) == 0, second_out + lines.text()

    assert "waiting for another `gitpipe repro`" in lines.text()
    assert [status for _, status in runs(root)] == ["ok", "ok"]
    first_id, second_id = (run_id for run_id, _ in runs(root))
    assert executions(root, first_id)["hold"].state == "ran"
    assert executions(root, second_id)["hold"].state == "up to date"
    assert locked_steps(root) == {"hold"}
    assert (root / "out.txt").read_text() == "done\n"


# -- what people see -------------------------------------------------------------

TALKATIVE = """
[steps.talk]
cmd = "echo one; echo two; echo three; echo said > talk.txt"
outs = ["talk.txt"]

[steps.after]
cmd = "cp talk.txt after.txt"
deps = ["talk.txt"]
outs = ["after.txt"]
"""


def test_without_a_terminal_output_is_plain_timestamped_lines(workspace):
    setup(workspace, TALKATIVE)
    result = workspace.ok("repro", env={"CI": "true"})
    assert "\x1b" not in result.output
    events = [m.groupdict() for m in map(TIMESTAMPED.match, result.stdout.splitlines()) if m]
    assert {"step": "talk", "what": "running"} in events
    assert {"step": "after", "what": "running"} in events
    assert any(e["step"] == "talk" and e["what"].startswith("done in ") for e in events)
    assert summary_line(result.stdout)["ran"] == "2"


def test_a_plain_subprocess_without_ci_prints_no_control_codes(workspace):
    setup(workspace, TALKATIVE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["TERM"] = "xterm"
    result = subprocess.run(
        [str(GITPIPE), "repro"], cwd=workspace.root, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\x1b" not in result.stdout + result.stderr
    assert re.search(r"^\d\d:\d\d:\d\d talk: running$", result.stdout, re.MULTILINE)
    summary_line(result.stdout)


@pytest.mark.timeout(60)
def test_on_a_terminal_a_live_view_with_control_codes_ends_with_the_summary(workspace):
    setup(
        workspace,
        """
        [steps.slowish]
        cmd = "sleep 0.5; echo slowish > slowish.txt"
        outs = ["slowish.txt"]

        [steps.next]
        cmd = "cp slowish.txt next.txt"
        deps = ["slowish.txt"]
        outs = ["next.txt"]
        """,
    )
    code, output = run_in_a_terminal(workspace.root, "repro")
    assert code == 0, output
    assert "\x1b" in output
    assert re.search(r"2 ran, 0 cached, 0 up to date, 0 skipped, 0 failed in \d+\.\d+ s", output)
    assert (workspace.root / "next.txt").read_text() == "slowish\n"


def test_quiet_prints_only_the_summary(workspace):
    setup(workspace, TALKATIVE)
    result = workspace.ok("repro", "-q")
    assert len(result.stdout.strip().splitlines()) == 1, result.stdout
    assert summary_line(result.stdout)["ran"] == "2"
    assert "running" not in result.output
    assert "done" not in result.output
    assert result.stderr == ""


def test_quiet_still_prints_failures(workspace):
    setup(workspace, BRANCHES)
    result = workspace.gitpipe("repro", "-q")
    assert result.exit_code == 1, result.output
    assert "bad: failed" in result.stderr
    assert "bad | broken" in result.stderr
    assert "running" not in result.output
    assert summary_line(result.stdout)["failed"] == "1"


def test_verbose_streams_each_steps_output_prefixed_with_its_name(workspace):
    setup(workspace, TALKATIVE)
    result = workspace.ok("repro", "-v")
    streamed = [line for line in result.stdout.splitlines() if line.startswith("talk | ")]
    assert [line for line in streamed if not line.startswith("talk | $ ")] == [
        "talk | one",
        "talk | two",
        "talk | three",
    ]
    other = [line for line in result.stdout.splitlines() if line.startswith("after | ")]
    assert all(line.startswith("after | $ ") for line in other), other  # cp says nothing


@pytest.mark.timeout(60)
def test_verbose_streams_output_while_the_step_still_runs(workspace):
    setup(
        workspace,
        """
        [steps.talk]
        cmd = [
            "echo first",
            "for i in $(seq 300); do [ -f release.txt ] && break; sleep 0.1; done",
            "echo last > talk.txt",
        ]
        outs = ["talk.txt"]
        """,
    )
    root = workspace.root
    with gitpipe_process(root, "repro", "-v", env=plain_env()) as process:
        lines = Lines(process.stdout)
        wait_for(lambda: lines.has("talk | first"), "the step's first line", 15)
        assert process.poll() is None
        assert not (root / "talk.txt").exists()
        (root / "release.txt").write_text("go\n")
        assert process.wait(timeout=30) == 0, lines.text()
    assert summary_line(lines.text())["ran"] == "1"


def test_every_run_ends_with_a_one_line_summary(workspace):
    setup(workspace, BRANCHES.replace("exit 1", "echo fine > bad.txt"))
    dry = workspace.ok("repro", "--dry-run")
    assert summary_line(dry.stdout)["more"] == ", 4 would run"

    ran = workspace.ok("repro")
    counts = summary_line(ran.stdout).groupdict()
    assert (counts["ran"], counts["cached"], counts["up"]) == ("4", "0", "0")
    assert (counts["skipped"], counts["failed"], counts["more"]) == ("0", "0", "")
    again = workspace.ok("repro")
    assert summary_line(again.stdout)["up"] == "4"

    for name in ("bad.txt", "after_bad.txt"):
        (workspace.root / name).unlink()
    restored = workspace.ok("repro")
    assert summary_line(restored.stdout)["cached"] == "2"

    workspace.pipeline(BRANCHES)
    failed = workspace.gitpipe("repro")
    assert failed.exit_code == 1
    counts = summary_line(failed.stdout).groupdict()
    assert (counts["failed"], counts["skipped"]) == ("1", "1")


# -- plain commands run without a shell ---------------------------------------------

PARENT = """
import os, sys, time
from pathlib import Path
Path("parent.txt").write_text(Path(f"/proc/{os.getppid()}/comm").read_text())
Path("pid.txt").write_text(str(os.getpid()))
time.sleep(float(sys.argv[1]))
Path(sys.argv[2]).write_text("done\\n")
"""


@pytest.mark.parametrize(
    ("command", "words"),
    [
        ("cp a b", ["cp", "a", "b"]),
        ("python3  src/train.py --lr=0.1", ["python3", "src/train.py", "--lr=0.1"]),
        ("echo hi", None),  # dash's echo is not /bin/echo
        ("cd sub", None),
        ("X=1 run", None),
        ("cp a b > c", None),
        ("cp 'a b' c", None),
        ("cp $HOME/a b", None),
        ("ls *.txt", None),
        ("cp ~/a b", None),
        ("a; b", None),
        ("a\\ b", None),
        ("   ", None),
    ],
)
def test_only_commands_of_plain_words_skip_the_shell(command, words):
    from gitpipe.run.runner import plain_words

    assert plain_words(command) == words


def test_a_plain_command_is_started_without_a_shell(workspace):
    workspace.write("src/parent.py", PARENT)
    setup(
        workspace,
        """
        [steps.plain]
        cmd = "python3 src/parent.py 0 out.txt"
        outs = ["out.txt"]
        """,
    )
    workspace.ok("repro")
    assert (workspace.root / "out.txt").read_text() == "done\n"
    assert (workspace.root / "parent.txt").read_text().strip() not in ("sh", "dash", "bash")
    log = (workspace.root / ".gitpipe" / "logs").rglob("plain.log")
    assert next(log).read_text().startswith("$ python3 src/parent.py 0 out.txt\n")


def test_a_plain_command_that_cannot_start_fails_as_the_shell_would(workspace):
    setup(
        workspace,
        """
        [steps.missing]
        cmd = "no-such-program-here --flag"
        outs = ["out.txt"]
        """,
    )
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1, result.output
    assert "exited with code 127" in result.output
    (log,) = (workspace.root / ".gitpipe" / "logs").rglob("missing.log")
    assert "no-such-program-here" in log.read_text()
    assert "not found" in log.read_text()


def test_a_script_without_an_interpreter_line_still_runs_as_a_shell_script(workspace):
    script = workspace.write("run-me", "echo from the script > out.txt\n")
    script.chmod(0o755)
    setup(
        workspace,
        """
        [steps.script]
        cmd = "./run-me"
        outs = ["out.txt"]
        """,
    )
    workspace.ok("repro")
    assert (workspace.root / "out.txt").read_text() == "from the script\n"


@pytest.mark.timeout(60)
def test_an_interrupt_stops_a_plain_command_started_without_a_shell(workspace):
    workspace.write("src/parent.py", PARENT)
    root = setup(
        workspace,
        """
        [steps.long]
        cmd = "python3 src/parent.py 30 out.txt"
        outs = ["out.txt"]
        """,
    ).root
    with gitpipe_process(root, "repro", env=plain_env()) as process:
        wait_for(lambda: (root / "pid.txt").exists() and (root / "pid.txt").read_text(), "start")
        pid = int((root / "pid.txt").read_text())
        try:
            assert live_processes_in_group(pid) == [pid]  # the program leads its group
            process.send_signal(signal.SIGTERM)
            stdout, stderr = process.communicate(timeout=15)
            wait_for(lambda: not live_processes_in_group(pid), "the step to end", 5)
        finally:
            if live_processes_in_group(pid):
                os.killpg(pid, signal.SIGKILL)
    assert process.returncode == 130, stdout + stderr
    assert not (root / "out.txt").exists()


# -- a second Ctrl-C while the run stops -------------------------------------------

OBSTINATE = """
import os, signal, sys, time
from pathlib import Path
def told(signum, frame):
    Path(sys.argv[2]).write_text("told to stop")  # and stays
signal.signal(signal.SIGTERM, told)
Path(sys.argv[1]).write_text(str(os.getpid()))
time.sleep(60)
"""

OBSTINATE_STEPS = """
[steps.quick]
cmd = "echo quick > quick.txt"
outs = ["quick.txt"]

[steps.long]
cmd = "python3 src/obstinate.py child.txt told.txt & sleep 30"
deps = ["quick.txt"]
outs = ["out.txt"]
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_second_ctrl_c_during_the_stop_kills_what_is_left_at_once_and_records_the_run(
    workspace, jobs
):
    # the second SIGINT came out of the grace's wait as a traceback: the process that
    # ignores SIGTERM was never killed, and the lock and lineage were not written
    workspace.write("src/obstinate.py", OBSTINATE)
    root = setup(workspace, OBSTINATE_STEPS).root
    told = root / "told.txt"
    with (
        stubborn(root) as child,
        gitpipe_process(root, "repro", "-j", jobs, env=plain_env()) as process,
    ):
        child()
        process.send_signal(signal.SIGINT)
        started = time.monotonic()
        wait_for(told.exists, "the stop to begin (SIGTERM to the step's group)", 15)
        process.send_signal(signal.SIGINT)  # while gitpipe waits out the grace
        try:
            stdout, stderr = process.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail("gitpipe did not stop within 20 s of the second Ctrl-C")
        took = time.monotonic() - started
        assert process.returncode == 130, stdout + stderr
        assert "Traceback" not in stderr, stderr
        assert "interrupted" in stderr
        wait_for(lambda: not is_alive(child()), "the process ignoring SIGTERM to be killed", 3)
    assert took < GRACE - 1, f"the second Ctrl-C did not cut the grace short ({took:.1f} s)"
    assert not (root / "out.txt").exists()
    assert locked_steps(root) == {"quick"}
    assert runs(root)[-1][1] == "interrupted"
    assert {step: e.state for step, e in executions(root).items()} == {
        "quick": "ran",
        "long": "interrupted",
    }
