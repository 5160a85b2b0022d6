"""What a gitpipe that dies leaves behind (issue 16, points 7 and 10): its run is told
as `killed` by the next reader, and step names fit on one line and in a file name."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import Workspace, refused

SLEEPER = """
import os, sys, time
from pathlib import Path
Path(sys.argv[1]).write_text(str(os.getpid()))
time.sleep(60)
Path("out.txt").write_text("not killed\\n")
"""


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


# -- a killed gitpipe ------------------------------------------------------------


def fake_run(root: Path, run_id: str, *, host: str, pid: int | None, process: str | None) -> None:
    """A run recorded as running by the gitpipe process ``pid`` (``process``: its
    identity, see gitpipe.lineage.process_identity) on ``host``."""
    with contextlib.closing(sqlite3.connect(root / ".gitpipe" / "lineage.db")) as db, db:
        db.execute(
            "INSERT INTO runs (id, started, argv, host, status, pid, process)"
            " VALUES (?, '2020-01-01T00:00:00.000+00:00', '[]', ?, 'running', ?, ?)",
            (run_id, host, pid, process),
        )


def test_a_running_run_is_killed_only_when_its_own_process_is_gone(workspace):
    from gitpipe.lineage import process_identity

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
