"""The console script's fast path (gitpipe/__main__.py): a no-op `status` answered
before typer is imported, byte for byte as the command line answers it, and every
other form handed to the command line untouched."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Workspace, snapshot
from test_status_snapshot import up_to_date

from gitpipe.__main__ import answer


def stale(workspace: Workspace) -> None:
    up_to_date(workspace)
    workspace.write("data/raw.txt", "changed\n")


def bad_pipeline(workspace: Workspace) -> None:
    up_to_date(workspace)
    workspace.pipeline("[steps.first\ncmd = 1\n")


def no_pipeline(workspace: Workspace) -> None:
    workspace.write("README", "no pipeline here\n")


SETUPS = {"up to date": up_to_date, "stale": stale, "bad file": bad_pipeline, "none": no_pipeline}

#: (args, folder to start in: the repository or its parent)
FORMS = [
    (["status"], "repo"),
    (["status", "--check"], "repo"),
    (["-C", "repo", "status"], "parent"),
    (["status", "--check", "-C", "repo"], "parent"),
    (["-Crepo", "-f", "gitpipe.toml", "status", "--file=gitpipe.toml"], "parent"),
    (["-f", "other.toml", "status"], "repo"),
    (["-C", "nowhere", "status"], "parent"),
    (["status", "-v"], "repo"),
    (["status", "first"], "repo"),
    (["status", "--check", "--check"], "repo"),
]


def run(module: str, args: list[str], cwd: Path, ci: str) -> tuple[int, bytes, bytes]:
    env = {**os.environ, "CI": ci, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True
    )
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("setup", list(SETUPS))
def test_the_fast_path_prints_what_the_command_line_prints_byte_for_byte(
    workspace: Workspace, setup: str
) -> None:
    SETUPS[setup](workspace)
    cases = [(args, where, "true") for args, where in FORMS]
    cases += [(args, where, "false") for args, where in FORMS[:3]]
    for args, where, ci in cases:
        cwd = workspace.root if where == "repo" else workspace.root.parent
        fast = run("gitpipe", args, cwd, ci)  # the console script's way in
        full = run("gitpipe.cli", args, cwd, ci)  # the command line alone
        assert fast == full, (setup, args, ci)


def test_a_no_op_status_is_answered_without_typer_and_changes_nothing(workspace: Workspace) -> None:
    up_to_date(workspace)
    code = "import sys; from gitpipe.__main__ import main; main()"
    before = snapshot(workspace.root)
    for args in (["status"], ["status", "--check"], ["-C", ".", "status", "-f", "gitpipe.toml"]):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", code, *args],
            cwd=workspace.root,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines() == [
            "first   up to date",
            "second  up to date",
            "third   up to date",
        ]
        loaded = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
        assert not {"typer", "click", "gitpipe.cli", "gitpipe.pipeline"} & loaded, args
        # nor what the kept lines spare it: the statuses' classes and Python's modules
        # that cost it most (about half of a no-op `status` of 500 steps)
        spared = {"gitpipe.core.records", "dataclasses", "typing", "pathlib", "tempfile"}
        assert not spared & loaded, args
    assert snapshot(workspace.root) == before


@pytest.mark.parametrize(
    "args",
    [
        ["status", "-v"],
        ["status", "--json"],
        ["status", "first"],
        ["--debug", "status"],
        ["status", "-f"],
        ["status", "-C", ""],
        ["-C", ".", "-C", ".", "status"],
        ["repro", "-v"],
        ["repro", "-n"],
        ["repro", "first"],
        ["repro", "--force"],
        ["repro", "-q", "-q"],
        ["repro", "-p", "x=1"],
        ["repro", "--summary-json", "s.json"],
        ["-q", "repro"],
        ["--check", "status"],
        [],
    ],
)
def test_other_forms_are_handed_to_the_command_line_untouched(
    workspace: Workspace,
    args: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    up_to_date(workspace)
    monkeypatch.chdir(workspace.root)
    before = snapshot(workspace.root)
    assert answer(args) is None
    assert capsys.readouterr() == ("", "")
    assert Path.cwd() == workspace.root
    assert snapshot(workspace.root) == before


def test_a_failed_chdir_leaves_the_folder_as_it_was(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stale(workspace)
    monkeypatch.chdir(workspace.root.parent)
    assert answer(["-C", "repo", "status", "-C", "nowhere"]) is None
    assert capsys.readouterr() == ("", "")
    assert Path.cwd() == workspace.root.parent


@pytest.mark.parametrize(
    "args", [["-C", "repo", "status", "-C", "nowhere"], ["-C", "repo", "push"], ["repro", "-v"]]
)
def test_a_command_handed_over_finds_the_signal_handlers_it_started_with(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, args: list[str]
) -> None:
    """The fast path's handlers (SIGTERM is Ctrl-C) are put back when the command line
    is handed the command (here a folder missing, no remote to push to), which installs
    its own once started: until then a signal does what it does to the command line."""
    stale(workspace)
    monkeypatch.chdir(workspace.root.parent)
    before = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert answer(args) is None
        assert {n: signal.getsignal(n) for n in before} == before
    finally:
        for number, handler in before.items():
            signal.signal(number, handler)


@pytest.mark.parametrize(
    ("setup", "args", "code", "says"),
    [
        ("stale", ["status"], 0, "first   stale  dep changed: data/raw.txt\n"),
        ("stale", ["status", "--check"], 3, "first   stale  dep changed: data/raw.txt\n"),
        ("bad file", ["status"], 2, ""),
        ("none", ["status"], 2, ""),
    ],
)
def test_a_status_the_snapshot_cannot_answer_is_done_without_typer(
    workspace: Workspace, setup: str, args: list[str], code: int, says: str
) -> None:
    """The whole `status` (a stale step, --check refusing, a pipeline file that is
    bad or missing) is answered before typer is imported, with the command line's
    words and exit code."""
    SETUPS[setup](workspace)
    script = "import sys; from gitpipe.__main__ import main; main()"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", script, *args],
        cwd=workspace.root,
        capture_output=True,
        text=True,
        env={**os.environ, "CI": "true"},
    )
    assert done.returncode == code, done.stderr
    assert done.stdout.startswith(says)
    said = [line for line in done.stderr.splitlines() if not line.startswith("import time:")]
    assert len(said) == (code != 0), said
    assert all(line.startswith("gitpipe: ") for line in said)
    loaded = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
    assert not {"typer", "click", "gitpipe.cli", "pydantic"} & loaded
    full = run("gitpipe.cli", args, workspace.root, "true")
    assert (done.returncode, done.stdout, "\n".join(said)) == (
        full[0],
        full[1].decode(),
        full[2].decode().rstrip("\n"),
    )


def test_gitpipe_debug_hands_a_whole_status_to_the_command_line(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--debug's tracebacks are the command line's: with GITPIPE_DEBUG set, a status
    the snapshot cannot answer is left to it, having printed nothing."""
    stale(workspace)
    monkeypatch.chdir(workspace.root)
    monkeypatch.setenv("GITPIPE_DEBUG", "1")
    before = snapshot(workspace.root)
    assert answer(["status"]) is None
    assert capsys.readouterr() == ("", "")
    assert snapshot(workspace.root) == before


def test_shell_completion_is_left_to_typer(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    up_to_date(workspace)
    monkeypatch.chdir(workspace.root)
    monkeypatch.setenv("_GITPIPE_COMPLETE", "bash_complete")
    assert answer(["status"]) is None


#: the console script, with a signal sent to itself as the snapshot is read: where a
#: no-op `status` spends its time, before any handler of the command's is installed
SIGNALLED = """
import os, signal, sys
from gitpipe.core import snapshot
name, read = sys.argv.pop(1), snapshot.plain
def plain(*args, **kwargs):
    os.kill(os.getpid(), getattr(signal, name))
    return read(*args, **kwargs)
snapshot.plain = plain
from gitpipe.__main__ import main
main()
"""


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
@pytest.mark.parametrize("args", [["status"], ["status", "--check"]])
def test_a_signal_during_a_fast_status_ends_it_as_the_command_line_does(
    workspace: Workspace, name: str, args: list[str]
) -> None:
    """SIGTERM is Ctrl-C from the first instruction of the console script, as in the
    command line's: "gitpipe: interrupted", exit 130, never a silent death by the
    signal (SIGTERM) or a traceback (Ctrl-C)."""
    up_to_date(workspace)
    env = {**os.environ, "CI": "true", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(
        [sys.executable, "-c", SIGNALLED, name, *args],
        cwd=workspace.root,
        env=env,
        capture_output=True,
        text=True,
    )
    assert (done.returncode, done.stdout, done.stderr) == (130, "", "gitpipe: interrupted\n")


@pytest.mark.parametrize("fd", [1, 2], ids=["stdout", "stderr"])
@pytest.mark.parametrize("setup", ["up to date", "stale", "bad file"])
@pytest.mark.parametrize("args", [["status"], ["status", "--check"]])
def test_a_status_without_stdout_or_stderr_says_what_the_command_line_says(
    workspace: Workspace, fd: int, setup: str, args: list[str]
) -> None:
    """typer writes nothing where no stream is attached (Python's is None): neither
    does the fast path, which says the rest once, with the command line's exit code."""
    SETUPS[setup](workspace)
    said = []
    for module in ("gitpipe", "gitpipe.cli"):
        done = subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=workspace.root,
            env={**os.environ, "CI": "true", "PYTHONPATH": str(Path(__file__).parents[1])},
            capture_output=True,
            preexec_fn=lambda: os.close(fd),
        )
        said.append((done.returncode, done.stderr if fd == 1 else done.stdout))
    assert said[0] == said[1]


@pytest.mark.parametrize("args", [["status"], ["status", "--check"]])
def test_a_stream_set_up_for_ascii_gets_the_command_line_s_bytes(
    workspace: Workspace, args: list[str]
) -> None:
    """typer writes UTF-8 where Python's stream would write ASCII (PYTHONIOENCODING=ascii):
    the fast path's error line is the same bytes."""
    workspace.pipeline('[steps."café"]\ncmd = "true"\n')
    said = []
    for module in ("gitpipe", "gitpipe.cli"):
        done = subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=workspace.root,
            env={
                **os.environ,
                "CI": "true",
                "PYTHONIOENCODING": "ascii",
                "PYTHONPATH": str(Path(__file__).parents[1]),
            },
            capture_output=True,
        )
        said.append((done.returncode, done.stdout, done.stderr))
    assert said[0] == said[1]
    assert "café".encode() in said[0][2]


@pytest.mark.parametrize("value", ["1", "banana"])
@pytest.mark.parametrize("args", [["status"], ["repro"]])
def test_gitpipe_debug_hands_even_a_no_op_to_the_command_line(
    workspace: Workspace,
    value: str,
    args: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """GITPIPE_DEBUG is the command line's to read: true (tracebacks for any error
    on the way, a broken pipe's too), false, or no boolean at all, refused as a usage
    error; a no-op answered from the snapshot read none of it."""
    up_to_date(workspace)
    workspace.ok("repro")
    said = []
    for module in ("gitpipe", "gitpipe.cli"):
        env = {**os.environ, "GITPIPE_DEBUG": value}
        env["PYTHONPATH"] = str(Path(__file__).parents[1])
        done = subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=workspace.root,
            env=env,
            capture_output=True,
            text=True,
        )
        said.append((done.returncode, re.sub(r"\d+\.\d\d s", "X s", done.stdout), done.stderr))
    assert said[0] == said[1]
    assert said[0][0] == (0 if value == "1" else 2)
    monkeypatch.chdir(workspace.root)
    monkeypatch.setenv("GITPIPE_DEBUG", value)
    assert answer(args) is None
    assert capsys.readouterr() == ("", "")


def into_a_closed_pipe(module: str, args: list[str], cwd: Path) -> int:
    """The exit code of ``python -m module ARGS`` with stdout and stderr both a pipe
    nobody reads (`gitpipe ... 2>&1 | true`): every write fails, EPIPE."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", module, *args],
            cwd=cwd,
            env={**os.environ, "CI": "true", "PYTHONPATH": str(Path(__file__).parents[1])},
            stdout=write,
            stderr=write,
        )
    finally:
        os.close(write)
    return done.returncode


@pytest.mark.parametrize("setup", ["up to date", "stale", "bad file"])
@pytest.mark.parametrize("args", [["status"], ["status", "--check"]])
def test_a_status_whose_error_line_cannot_be_written_either_exits_as_a_store_error(
    workspace: Workspace, setup: str, args: list[str]
) -> None:
    """Its words lost to a broken pipe, and the error line saying so too: the error's
    own exit code (5, a store error, for the broken pipe; 2 for a bad pipeline file),
    from the fast path and the command line alike (which let click end it with 1, the
    code of a failed step)."""
    SETUPS[setup](workspace)
    codes = [into_a_closed_pipe(m, args, workspace.root) for m in ("gitpipe", "gitpipe.cli")]
    assert codes == [2 if setup == "bad file" else 5] * 2
