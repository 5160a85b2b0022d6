"""What a gitpipe that dies leaves behind (issue 16, points 7 and 10): its steps'
processes die with it, its run is told as `killed` by the next reader, step names fit
on one line and in a file name, and the runner's shared state holds under load.

A real `gitpipe` process is killed with SIGKILL here: no handler of its own runs, so
whatever stops its steps is outside it (the watchdog, see gitpipe/run/runner.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Workspace, refused

GITPIPE = Path(sys.executable).parent / "gitpipe"

SLEEPER = """
import os, sys, time
from pathlib import Path
Path(sys.argv[1]).write_text(str(os.getpid()))
time.sleep(60)
Path("out.txt").write_text("not killed\\n")
"""

#: a step's command two ways: plain words (no shell: the program leads its group), and
#: a shell whose `sleep` is a child in its group, with a grandchild in the background
COMMANDS = {
    "plain": "python3 sleeper.py pid.txt",
    "shell": "echo $$ > pid.txt; sleep 60 & echo $! > child.txt; wait; echo no > out.txt",
}


def setup(workspace: Workspace, command: str) -> Path:
    workspace.write("sleeper.py", SLEEPER)
    workspace.write(".gitignore", "*.txt\n")
    workspace.pipeline(
        f"""
        [steps.long]
        cmd = {json.dumps(command)}
        deps = ["sleeper.py"]
        outs = ["out.txt"]
        """
    )
    workspace.commit("pipeline")
    return workspace.root


def run_to_the_end(workspace: Workspace) -> None:
    """The step made quick, and run."""
    workspace.pipeline(
        """
        [steps.long]
        cmd = "echo done > out.txt"
        outs = ["out.txt"]
        """
    )
    workspace.ok("repro")


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def descendants(pid: int) -> set[int]:
    """The live processes started by ``pid``, by its children, and so on."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                stat = entry.joinpath("stat").read_text()
                state, ppid = stat.rsplit(")", 1)[1].split()[:2]
                if state != "Z":
                    parents[int(entry.name)] = int(ppid)
    found: set[int] = set()
    more = {pid}
    while more:
        more = {child for child, parent in parents.items() if parent in more} - found
        found |= more
    return found


def group(pgid: int) -> list[int]:
    """The live processes of a process group."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                state, _ppid, pgrp = (
                    entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()[:3]
                )
                if int(pgrp) == pgid and state != "Z":
                    found.append(int(entry.name))
    return found


@contextlib.contextmanager
def gitpipe_process(root: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [str(GITPIPE), *args],
        cwd=root,
        env={**os.environ, "CI": "true"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def statuses(root: Path) -> list[str]:
    """Each run's status as stored, oldest first (read with plain SQL, which marks
    nothing)."""
    with contextlib.closing(sqlite3.connect(root / ".gitpipe" / "lineage.db")) as db:
        return [row[0] for row in db.execute("SELECT status FROM runs ORDER BY started, rowid")]


def logged(workspace: Workspace) -> list[str]:
    """Each run's status as `gitpipe log --json` tells it, oldest first."""
    return [run["status"] for run in reversed(json.loads(workspace.ok("log", "--json").stdout))]


# -- a killed gitpipe ------------------------------------------------------------


@pytest.mark.timeout(90)
@pytest.mark.parametrize("backend", ["threading", "loky"])
@pytest.mark.parametrize("kind", ["plain", "shell"])
def test_a_step_dies_with_a_gitpipe_killed_by_sigkill(workspace, backend, kind):
    root = setup(workspace, COMMANDS[kind])
    pids: list[int] = []
    try:
        with gitpipe_process(root, "repro", "--backend", backend, "-j", "2") as process:
            pidfiles = [root / "pid.txt"] + ([root / "child.txt"] if kind == "shell" else [])
            for pidfile in pidfiles:
                wait_for(lambda p=pidfile: p.exists() and p.read_text().strip(), pidfile.name)
                pids.append(int(pidfile.read_text()))
            leader = pids[0]
            assert group(leader), "the step runs in a process group of its own"
            started = descendants(process.pid)  # loky's workers, the watchdog, the step
            assert set(pids) <= started
            pids += started
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            gone = time.monotonic()
            wait_for(lambda: not any(alive(pid) for pid in pids[:2]), "the step's processes", 15)
            wait_for(lambda: not group(leader), "the step's process group", 15)
            assert time.monotonic() - gone < 8  # at once, on a loaded machine
            wait_for(lambda: not any(alive(pid) for pid in started), "what gitpipe started", 10)
        assert not (root / "out.txt").exists()

        assert statuses(root) == ["running"]  # nothing has read it since
        assert logged(workspace) == ["killed"]
        assert "killed" in workspace.ok("show", "last").stdout.splitlines()[0]

        run_to_the_end(workspace)
        assert logged(workspace) == ["killed", "ok"]
    finally:
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(60)
def test_a_step_ignoring_sigterm_is_killed_after_the_grace_when_gitpipe_is_killed(workspace):
    root = setup(workspace, "trap '' TERM; echo $$ > pid.txt; sleep 60 & wait; wait")
    with gitpipe_process(root, "repro") as process:
        wait_for(lambda: (root / "pid.txt").exists(), "the step to start")
        leader = int((root / "pid.txt").read_text())
        try:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
            gone = time.monotonic()
            time.sleep(2)
            assert group(leader), "SIGTERM is ignored: the group runs on for the grace"
            wait_for(lambda: not group(leader), "the step's process group", 10)
            assert 4.5 < time.monotonic() - gone < 9  # SIGKILL after the 5 s grace
        finally:
            with contextlib.suppress(OSError):
                os.killpg(leader, signal.SIGKILL)


@pytest.mark.timeout(90)
def test_the_next_repro_marks_the_run_of_a_killed_gitpipe_before_it_runs(workspace):
    root = setup(workspace, COMMANDS["shell"])
    with gitpipe_process(root, "repro") as process:
        wait_for(lambda: (root / "child.txt").exists(), "the step to start")
        os.kill(process.pid, signal.SIGKILL)
    pid = int((root / "child.txt").read_text())
    wait_for(lambda: not alive(pid), "the step's sleep to end", 60)  # slow under load
    assert statuses(root) == ["running"]

    run_to_the_end(workspace)
    assert statuses(root) == ["killed", "ok"]  # marked by the repro, not by a reader


def fake_run(root: Path, run_id: str, *, host: str, pid: int | None, process: str | None) -> None:
    """A run recorded as running by the gitpipe process ``pid`` (``process``: its
    identity, see gitpipe.run.lineage.process_identity) on ``host``."""
    with contextlib.closing(sqlite3.connect(root / ".gitpipe" / "lineage.db")) as db, db:
        db.execute(
            "INSERT INTO runs (id, started, argv, host, status, pid, process)"
            " VALUES (?, '2020-01-01T00:00:00.000+00:00', '[]', ?, 'running', ?, ?)",
            (run_id, host, pid, process),
        )


def test_a_running_run_is_killed_only_when_its_own_process_is_gone(workspace):
    from gitpipe.run.lineage import process_identity

    root = setup(workspace, "echo done > out.txt")
    workspace.ok("repro")
    here = os.uname().nodename
    me = os.getpid()  # this test's process: alive
    mine = process_identity(me)
    assert mine is not None
    boot, namespace, started = mine.split(" ")
    ended = subprocess.Popen(["true"])  # a pid no process has any more
    ended.wait()

    fake_run(root, "a-alive", host=here, pid=me, process=mine)
    fake_run(root, "b-gone", host=here, pid=ended.pid, process=mine)
    fake_run(root, "c-pid-reused", host=here, pid=me, process=f"{boot} {namespace} {started}1")
    fake_run(root, "d-other-boot", host=here, pid=me, process=f"x{boot} {namespace} {started}")
    fake_run(root, "e-other-host", host=here + "-elsewhere", pid=ended.pid, process=mine)
    fake_run(root, "f-before-pids", host=here, pid=None, process=None)
    fake_run(root, "g-other-namespace", host=here, pid=ended.pid, process=f"{boot} pid:[1] 1")

    runs = {run["id"]: run["status"] for run in json.loads(workspace.ok("log", "--json").stdout)}
    assert runs.pop(next(iter(runs))) == "ok"  # the real run, the newest
    assert runs == {
        "a-alive": "running",
        "b-gone": "killed",
        "c-pid-reused": "killed",
        "d-other-boot": "killed",
        "e-other-host": "running",  # cannot be told from here
        "f-before-pids": "running",  # recorded without a pid
        "g-other-namespace": "running",  # its pids are not this namespace's
    }
    assert json.loads(workspace.ok("show", "a-alive", "--json").stdout)["status"] == "running"


# -- step names --------------------------------------------------------------------

LONG = "s" * 300


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        (r'"two\nlines"', r"steps.two\nlines"),
        (r'"train\n"', r"steps.train\n"),  # a newline at the end once passed
        (r'"a\tb"', r"steps.a\tb"),
        (r'"bell\u0007"', r"steps.bell\x07"),
        (LONG, f"steps.{LONG}"),
    ],
    ids=["newline", "trailing-newline", "tab", "control", "300-bytes"],
)
def test_a_step_name_off_one_line_or_too_long_is_a_one_line_error(workspace, key, shown):
    workspace.pipeline(
        f"""
        [steps.{key}]
        cmd = "echo hi > out.txt"
        outs = ["out.txt"]
        """
    )
    stderr = refused(workspace, "repro", says=(f"gitpipe.toml, at {shown}:",))
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert ("at most 200 bytes, not 300" in stderr) == (key == LONG)


def test_a_step_name_of_200_bytes_runs_and_names_its_log(workspace):
    name = "n" * 200
    workspace.write(".gitignore", "*.txt\n")
    workspace.pipeline(
        f"""
        [steps.{name}]
        cmd = "echo hi > out.txt"
        outs = ["out.txt"]
        """
    )
    workspace.ok("repro")
    assert [path.name for path in (workspace.root / ".gitpipe" / "logs").rglob("*.log")] == [
        f"{name}.log"
    ]


def test_a_matrix_label_that_makes_a_name_too_long_is_a_one_line_error(workspace):
    name, value = "t" * 150, "v" * 60
    workspace.pipeline(
        f"""
        [steps.{name}]
        matrix = {{ x = ["short", "{value}"] }}
        cmd = "echo ${{matrix.x}} > out-${{matrix.x}}.txt"
        outs = ["out-${{matrix.x}}.txt"]
        """
    )
    stderr = refused(
        workspace,
        "repro",
        says=(f"gitpipe.toml, at steps.{name}.matrix:", f"'{name}@{value}'", "211 bytes"),
    )
    assert len(stderr.strip().splitlines()) == 1, stderr


def test_a_key_with_a_newline_in_an_error_is_shown_on_one_line(workspace):
    workspace.pipeline(
        """
        [steps.train]
        matrix = { "lr\\nrate" = [1, 2] }
        cmd = "echo hi > out.txt"
        outs = ["out.txt"]
        """
    )
    stderr = refused(workspace, "status", says=(r"at steps.train.matrix.lr\nrate:",))
    assert len(stderr.strip().splitlines()) == 1, stderr


# -- shared state under load -------------------------------------------------------

MANY = 24


def many_steps() -> str:
    return "".join(
        f"""
[steps.s{i:02}]
cmd = "echo s{i:02} >> ledger.log; echo {i} > s{i:02}.txt"
outs = ["s{i:02}.txt"]
"""
        for i in range(MANY)
    )


@pytest.mark.timeout(60)
def test_loky_runs_every_one_of_many_steps_exactly_once_round_after_round(workspace):
    workspace.write(".gitignore", "*.txt\n*.log\n")
    workspace.pipeline(many_steps())
    workspace.commit("pipeline")
    names = [f"s{i:02}" for i in range(MANY)]
    began = time.monotonic()
    for round_ in range(3):
        (workspace.root / "ledger.log").unlink(missing_ok=True)
        args = ("repro", "-j", "4", "--backend", "loky", *(["--force"] if round_ else []))
        workspace.ok(*args)
        assert sorted((workspace.root / "ledger.log").read_text().split()) == names
        assert workspace.states() == dict.fromkeys(names, "ran")
    assert time.monotonic() - began < 20


def test_the_executor_keeps_its_running_steps_consistent_while_they_finish(tmp_path):
    from gitpipe.run.runner import Executor, Invocation

    executor = Executor("threading", 8)
    stop = threading.Event()
    seen: list[int] = []

    def watch() -> None:  # as `stop()` does, while the pool's threads finish steps
        while not stop.is_set():
            seen.append(len(executor.running()))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        futures = [
            executor.submit(
                Invocation(
                    step=f"s{i}",
                    commands=("true",),
                    cwd=str(tmp_path),
                    env={},
                    log=str(tmp_path / f"s{i}.log"),
                    scheduler=os.getpid(),
                ),
                {},
            )
            for i in range(200)
        ]
        assert all(future.result(timeout=60).ok for future in futures)
    finally:
        stop.set()
        watcher.join()
        executor.close()
    assert executor.running() == {}
    assert seen and max(seen) <= 200


@pytest.mark.timeout(60)
def test_a_loky_worker_that_dies_fails_its_step_and_later_steps_get_new_workers(workspace):
    workspace.write(".gitignore", "*.txt\n")
    workspace.pipeline(
        """
        [steps.crash]
        cmd = "kill -9 $PPID; sleep 5"
        outs = ["crash.txt"]

        [steps.later]
        cmd = "echo later > later.txt"
        outs = ["later.txt"]
        """
    )
    workspace.commit("pipeline")
    result = workspace.gitpipe("repro", "-j", "1", "--backend", "loky", "--keep-going")
    assert result.exit_code == 1, result.output
    assert "the loky backend failed" in result.output
    assert workspace.states() == {"crash": "failed", "later": "ran"}  # -j 1: one after the other
    assert (workspace.root / "later.txt").read_text() == "later\n"


def test_a_step_sees_the_same_environment_under_loky_as_under_threading(
    make_workspace, monkeypatch
):
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ENABLE_IPC"):
        monkeypatch.delenv(name, raising=False)
    seen = {}
    for backend in ("threading", "loky"):
        workspace = make_workspace(backend)
        workspace.write(".gitignore", "*.txt\n")
        workspace.pipeline(
            """
            [steps.env]
            cmd = "echo $${OMP_NUM_THREADS-unset} $${MKL_NUM_THREADS-unset} > env.txt"
            outs = ["env.txt"]
            """
        )
        workspace.commit("pipeline")
        workspace.ok("repro", "-j", "2", "--backend", backend, env={"CI": "true"})
        seen[backend] = (workspace.root / "env.txt").read_text()
    assert seen == {"threading": "unset unset\n", "loky": "unset unset\n"}
