"""What a step costs gitpipe (issue 24), kept honest: at one job a step runs in the
scheduler's own thread, and that thread still ticks while it waits; the environment a
step inherits is taken once and taken again when it changes; a plain command's
program is found as `execvp` finds it; a result's atomic write makes its folders only
when they are missing and never reuses a temporary name; the watchdog, woken at most
50 times a second, still stops a group told to it just before its pipe closes.

Steps run through the real CLI in real Git repositories (conftest); the atomic write
is called on real folders, the watchdog on a real process group.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import Workspace

from gitpipe.core import atomic
from gitpipe.run import spawn
from gitpipe.run.watchdog import Watchdog
from gitpipe.store.runcache import KEY_VAR

GITPIPE = Path(sys.executable).parent / "gitpipe"

#: a step that prints a line, then waits for the test's go-ahead before it ends
SLOW_TALKER = """
[steps.talk]
cmd = "echo early; while [ ! -e go.flag ]; do sleep 0.05; done; echo late > talk.txt"
outs = ["talk.txt"]
"""

#: a step whose output is an environment variable it inherits
ECHO_ENV = """
[steps.env]
cmd = "printf '%s|%s' \\"$FROM_OUTSIDE\\" \\"$${GITPIPE_RESULT_KEY:-unset}\\" > env.txt"
outs = ["env.txt"]
"""


def _setup(workspace: Workspace, pipeline: str) -> None:
    workspace.write(".gitignore", "*.txt\n*.flag\n")
    workspace.pipeline(pipeline)
    workspace.commit("pipeline")


@pytest.mark.timeout(60)
def test_at_one_job_a_running_steps_output_streams_before_the_step_ends(workspace):
    _setup(workspace, SLOW_TALKER)
    root = workspace.root
    process = subprocess.Popen(
        [str(GITPIPE), "repro", "-v", "-j", "1"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        seen = []
        for line in process.stdout:
            seen.append(line)
            if line.rstrip().endswith("talk | early"):
                break
        # the line came while the step still waits: the scheduler ticked meanwhile
        assert seen and seen[-1].rstrip().endswith("talk | early"), seen
        assert process.poll() is None
        assert not (root / "talk.txt").exists()
        (root / "go.flag").write_text("")
        rest = process.stdout.read()
        assert process.wait(timeout=30) == 0, "".join(seen) + rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    assert (root / "talk.txt").read_text() == "late\n"
    assert workspace.ran() == ["talk"]


def test_a_step_inherits_the_environment_as_it_is_at_each_run_and_never_the_secret(
    workspace, monkeypatch
):
    _setup(workspace, ECHO_ENV)
    monkeypatch.setenv(KEY_VAR, "s3cr3t")
    monkeypatch.setenv("FROM_OUTSIDE", "first")
    workspace.ok("repro")
    assert (workspace.root / "env.txt").read_text() == "first|unset"
    monkeypatch.setenv("FROM_OUTSIDE", "second")  # the same process, a changed environment
    workspace.ok("repro", "--force")
    assert (workspace.root / "env.txt").read_text() == "second|unset"
    monkeypatch.delenv("FROM_OUTSIDE")
    workspace.ok("repro", "--force")
    assert (workspace.root / "env.txt").read_text() == "|unset"


def test_the_inherited_environment_is_taken_again_only_when_it_changes(monkeypatch):
    monkeypatch.setenv("GITPIPE_TEST_INHERITED", "one")
    first = spawn.inherited()
    assert spawn.inherited() is first  # unchanged: the same mapping, not a new copy
    assert first[b"GITPIPE_TEST_INHERITED"] == b"one"
    monkeypatch.setenv("GITPIPE_TEST_INHERITED", "two")
    second = spawn.inherited()
    assert second is not first and second[b"GITPIPE_TEST_INHERITED"] == b"two"
    monkeypatch.setenv(KEY_VAR, "s3cr3t")
    assert os.fsencode(KEY_VAR) not in spawn.inherited()


def test_an_atomic_write_makes_the_missing_folders_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "results" / "b3" / "ab" / "cdef" / "one.json"
    atomic.write_bytes(target, b"{}\n", mode=0o444, sync=False)
    assert target.read_bytes() == b"{}\n"
    assert target.stat().st_mode & 0o777 == 0o444
    assert os.listdir(target.parent) == ["one.json"]


def test_an_atomic_write_into_another_folder_makes_the_targets_folder_too(tmp_path):
    scratch = tmp_path / "tmp"
    target = tmp_path / "new" / "folder" / "lock.toml"
    atomic.write_bytes(target, b"x = 1\n", tmp_dir=scratch)
    assert target.read_bytes() == b"x = 1\n"
    assert os.listdir(scratch) == []


def test_an_atomic_write_goes_around_a_temporary_name_a_killed_process_left(tmp_path, monkeypatch):
    """A process killed mid-write leaves its temporary file; one of the same id later
    draws another name for its own, and leaves the stray one as it found it."""
    monkeypatch.setattr(atomic, "_SERIAL", itertools.count(7))
    stray = tmp_path / f".out.json.{os.getpid()}-7.tmp"
    stray.write_bytes(b"half")
    target = tmp_path / "out.json"
    atomic.write_bytes(target, b"whole", sync=False)
    assert target.read_bytes() == b"whole"
    assert stray.read_bytes() == b"half"
    assert sorted(os.listdir(tmp_path)) == sorted(["out.json", stray.name])


def test_an_atomic_write_that_cannot_rename_removes_its_temporary_file(tmp_path):
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_text("kept")
    with pytest.raises(OSError):
        atomic.write_bytes(target, b"bytes")
    assert sorted(os.listdir(tmp_path)) == ["taken"]
    assert (target / "inside").read_text() == "kept"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("after", [0.0, 0.005, 0.015, 0.03])
def test_a_group_told_to_the_watchdog_just_before_its_pipe_closes_is_stopped(after):
    """The watchdog sleeps 20 ms after each read: a group told to it just before the
    process that told it died (here: its end of the pipe closed, as the kernel does
    then) is still read, and stopped, whether the end comes during the sleep or
    after."""
    watchdog = Watchdog(grace=1.0)
    group = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        watchdog.watch(group.pid)
        time.sleep(after)
        watchdog.end()  # the pipe closes: the watchdog reads what is left, then stops
        assert group.wait(timeout=10) == -signal.SIGTERM
    finally:
        if group.poll() is None:
            group.kill()
            group.wait()
        if watchdog._process is not None:  # it ends once no group it watches runs
            watchdog._process.wait(timeout=10)


def _tools(root: Path) -> None:
    """bin1/tool that cannot run (no x bit), bin2/tool a script without `#!`, bin3/tool
    that writes which it is; `execvp` passes over the first two, as must gitpipe."""
    for folder, text, mode in (
        ("bin1", "#!/bin/sh\necho one > which.txt\n", 0o644),
        ("bin2", "echo two > which.txt\n", 0o755),
        ("bin3", "#!/bin/sh\necho three > which.txt\n", 0o755),
    ):
        (root / folder).mkdir()
        (root / folder / "tool").write_text(text)
        (root / folder / "tool").chmod(mode)


@pytest.mark.parametrize(
    "first",
    ["bin1", "bin2"],
    ids=["not-executable-first", "no-interpreter-line-first"],
)
def test_a_plain_command_runs_the_program_execvp_would_find_on_the_steps_path(workspace, first):
    """bin1/tool cannot run (no x bit) and is passed over; bin2/tool is found first
    but the kernel cannot run it (no `#!`), so the command starts as it always has,
    trying each folder: both times bin3's runs, as before."""
    root = workspace.root
    _tools(root)
    _setup(
        workspace,
        f"""
        [steps.pick]
        cmd = "tool"
        outs = ["which.txt"]
        env = {{ PATH = "{first}:bin3:{os.environ["PATH"]}" }}
        """,
    )
    workspace.ok("repro")
    assert (root / "which.txt").read_text() == "three\n"


def test_a_program_found_is_the_first_executable_file_in_the_paths_folders(tmp_path):
    _tools(tmp_path)
    env = {b"PATH": b"bin1:bin2:bin3"}
    assert spawn.program("tool", str(tmp_path), env) == str(tmp_path / "bin2" / "tool")
    assert spawn.program("tool", str(tmp_path), {b"PATH": b"bin1"}) is None
    assert spawn.program("bin3/tool", str(tmp_path), env) is None  # a path: as it is
    (tmp_path / "bin0" / "tool").mkdir(parents=True)  # a folder of that name is no program
    assert spawn.program("tool", str(tmp_path), {b"PATH": b"bin0:bin3"}) == str(
        tmp_path / "bin3" / "tool"
    )
