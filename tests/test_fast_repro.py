"""The console script's fast path for a no-op `repro` (gitpipe/run/noop.py): the same
lines, exit code and lineage rows as the command line, without typer; every doubt
handed to the command line with nothing printed, recorded or changed."""

from __future__ import annotations

import fcntl
import os
import re
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from conftest import CHAIN, Workspace, git, snapshot
from test_status_snapshot import up_to_date

from gitpipe.__main__ import answer

ROOT = Path(__file__).resolve().parents[1]
#: the columns that differ between any two runs: ids, times, the process
RUN_VARYING = {"id", "started", "ended", "pid", "process"}
STEP_VARYING = {"id", "run_id", "started", "ended"}


def run(module: str, args: list[str], cwd: Path, *, fast: bool = True) -> tuple[int, str, str]:
    """Exit code, stdout (the duration normalised) and stderr of ``python -m module
    ARGS``; through the console script's module (``gitpipe``), the fast path must
    have answered (unless not ``fast``): typer never imported."""
    environ = {**os.environ, "CI": "true", "PYTHONPATH": str(ROOT)}
    environ.pop("GITHUB_STEP_SUMMARY", None)
    timing = ["-X", "importtime"] if module == "gitpipe" and fast else []
    done = subprocess.run(
        [sys.executable, *timing, "-m", module, *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
    )
    err = [line for line in done.stderr.splitlines(True) if not line.startswith("import time:")]
    if timing:
        loaded = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
        assert "typer" not in loaded, args
    duration = re.compile(r"in \d+\.\d\d s")
    return done.returncode, duration.sub("in X s", done.stdout), "".join(err)


def console_script(
    root: Path, args: list[str], **environ: str
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """``gitpipe ARGS`` run in ``root`` as the console script runs it, on a plain
    console (CI=true) with ``environ`` added: what it did, and the modules it imported."""
    code = "import sys; from gitpipe.__main__ import main; main()"
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code, *args],
        cwd=root,
        capture_output=True,
        text=True,
        env={**os.environ, "CI": "true", "PYTHONPATH": str(ROOT), **environ},
    )
    loaded = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
    return done, loaded


def last_run(root: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The latest run's row and its executions' rows, without what always differs."""
    with closing(sqlite3.connect(root / ".gitpipe" / "lineage.db")) as db:
        db.row_factory = sqlite3.Row
        row = db.execute("SELECT * FROM runs ORDER BY started DESC, rowid DESC LIMIT 1").fetchone()
        steps = db.execute(
            "SELECT * FROM executions WHERE run_id = ? ORDER BY id", (row["id"],)
        ).fetchall()
    return (
        {k: row[k] for k in row.keys() if k not in RUN_VARYING},  # noqa: SIM118 (a Row)
        [{k: s[k] for k in s.keys() if k not in STEP_VARYING} for s in steps],  # noqa: SIM118
    )


def run_count(root: Path) -> int:
    with closing(sqlite3.connect(root / ".gitpipe" / "lineage.db")) as db:
        return db.execute("SELECT count(*) FROM runs").fetchone()[0]


def changed(before: dict[str, Any], after: dict[str, Any]) -> set[str]:
    return {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}


def edit_readme(workspace: Workspace) -> None:
    """A tracked file no step reads, changed: the snapshot holds, the checkout is dirty."""
    workspace.write("README", "first words\n")
    workspace.commit("readme")
    up_to_date_again(workspace)
    workspace.write("README", "other words\n")


def chmod_readme(workspace: Workspace) -> None:
    """Only a tracked file's mode changed: dulwich compares content, so not dirty."""
    workspace.write("README", "first words\n")
    workspace.commit("readme")
    up_to_date_again(workspace)
    (workspace.root / "README").chmod(0o755)


def delete_readme(workspace: Workspace) -> None:
    workspace.write("README", "first words\n")
    workspace.commit("readme")
    up_to_date_again(workspace)
    (workspace.root / "README").unlink()


def up_to_date_again(workspace: Workspace) -> None:
    from test_status_snapshot import settle

    settle()
    assert "stale" not in workspace.ok("status").stdout


CHECKOUTS = {"clean": lambda w: None, "edited": edit_readme, "mode": chmod_readme}
CHECKOUTS["deleted"] = delete_readme

FORMS = [
    (["repro"], "repo"),
    (["repro", "-q"], "repo"),
    (["repro", "--quiet", "-f", "gitpipe.toml"], "repo"),
    (["-C", "repo", "repro"], "parent"),
    (["-Crepo", "repro", "-q", "--file=gitpipe.toml"], "parent"),
]


@pytest.mark.parametrize("checkout", list(CHECKOUTS))
def test_a_no_op_repro_prints_and_records_what_the_command_line_does(
    workspace: Workspace, checkout: str
) -> None:
    up_to_date(workspace)
    CHECKOUTS[checkout](workspace)
    for args, where in FORMS:
        cwd = workspace.root if where == "repo" else workspace.root.parent
        runs = run_count(workspace.root)
        fast = run("gitpipe", args, cwd)  # the console script's way in
        fast_rows = last_run(workspace.root)
        full = run("gitpipe.cli", args, cwd)  # the command line alone
        full_rows = last_run(workspace.root)
        assert run_count(workspace.root) == runs + 2
        assert fast == full, (checkout, args)
        assert fast[1] == "0 ran, 0 cached, 3 up to date, 0 skipped, 0 failed in X s\n"
        assert fast_rows == full_rows, (checkout, args)
        assert fast_rows[0]["dirty"] == (checkout in ("edited", "deleted"))
        assert fast_rows[0]["status"] == "ok"
        assert [s["state"] for s in fast_rows[1]] == ["up to date"] * 3


def test_a_no_op_repro_is_answered_without_typer_and_writes_only_lineage(
    workspace: Workspace,
) -> None:
    up_to_date(workspace)
    workspace.ok("repro")  # lineage and the workspace lock exist, as after any repro
    before = snapshot(workspace.root)
    done, loaded = console_script(workspace.root, ["repro", "-q"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("0 ran, 0 cached, 3 up to date, 0 skipped, 0 failed in ")
    heavy = {"typer", "click", "dulwich", "sqlite_utils", "gitpipe.cli", "gitpipe.pipeline"}
    assert not heavy & loaded
    assert changed(before, snapshot(workspace.root)) <= {
        ".gitpipe",  # SQLite's side files came and went
        ".gitpipe/lineage.db",
        ".gitpipe/repro.lock",
    }


def no_op(workspace: Workspace) -> int | None:
    """The no-op answer (gitpipe/run/noop.py) to `repro` in the workspace: None when
    it hands the run to the whole command (the fast path's or the command line's)."""
    from gitpipe.run import noop

    return noop.answer(workspace.root / "gitpipe.toml", quiet=False)


def hold_the_workspace(workspace: Workspace) -> Any:
    handle = open(workspace.root / ".gitpipe" / "repro.lock", "a+")  # noqa: SIM115
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


def leave_scratch(workspace: Workspace) -> None:
    (workspace.root / ".gitpipe" / "tmp").mkdir(exist_ok=True)
    (workspace.root / ".gitpipe" / "tmp" / ".first.txt.abc.tmp").write_text("half\n")


def move_head(workspace: Workspace) -> None:
    git(workspace.root, "commit", "-q", "--allow-empty", "-m", "nothing")  # index unchanged


def forget_git_check(workspace: Workspace) -> None:
    (workspace.root / ".gitpipe" / "parsed" / "git-check").write_text("another digest")


def unregister(workspace: Workspace) -> None:
    from gitpipe.store import clones

    clones.entry_for(
        workspace.root / ".gitpipe" / "cache", workspace.root / "gitpipe.toml"
    ).unlink()


def add_attributes(workspace: Workspace) -> None:
    (workspace.root / ".gitattributes").write_text("*.txt text\n")


def stale_step(workspace: Workspace) -> None:
    workspace.write("data/raw.txt", "changed\n")


DOUBTS = {
    "a step is stale": stale_step,
    "HEAD moved": move_head,
    "the Git check is another": forget_git_check,
    "the clone is not registered": unregister,
    "a killed restore left scratch": leave_scratch,
    "Git filters may apply": add_attributes,
}


@pytest.mark.parametrize("doubt", list(DOUBTS))
def test_any_doubt_hands_the_repro_over_having_changed_nothing(
    workspace: Workspace,
    doubt: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    up_to_date(workspace)
    workspace.ok("repro")
    DOUBTS[doubt](workspace)
    monkeypatch.chdir(workspace.root)
    runs = run_count(workspace.root)  # before: reading lineage touches its folder
    before = snapshot(workspace.root)
    assert no_op(workspace) is None
    assert capsys.readouterr() == ("", "")
    assert Path.cwd() == workspace.root
    after = snapshot(workspace.root)
    # the workspace lock, taken for a moment (or not), holds a pid as a repro leaves it
    assert changed(before, after) <= {".gitpipe/repro.lock"}
    assert run_count(workspace.root) == runs


@pytest.mark.parametrize(
    "variable",
    ["GITHUB_STEP_SUMMARY", "GITPIPE_BACKEND", "GITPIPE_CACHE_DIR", "GITPIPE_FAULT", "GIT_DIR"],
)
def test_what_the_environment_would_add_hands_the_repro_over(
    workspace: Workspace,
    variable: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    up_to_date(workspace)
    workspace.ok("repro")
    monkeypatch.chdir(workspace.root)
    monkeypatch.setenv(variable, str(workspace.root.parent / "elsewhere"))
    before = snapshot(workspace.root)
    assert no_op(workspace) is None
    assert capsys.readouterr() == ("", "")
    assert snapshot(workspace.root) == before


def test_a_busy_workspace_is_left_to_the_command_line_which_waits(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    up_to_date(workspace)
    workspace.ok("repro")
    monkeypatch.chdir(workspace.root)
    held = hold_the_workspace(workspace)
    try:
        runs = run_count(workspace.root)
        before = snapshot(workspace.root)
        assert no_op(workspace) is None
        assert capsys.readouterr() == ("", "")
        assert snapshot(workspace.root) == before
        assert run_count(workspace.root) == runs
    finally:
        held.close()


def test_a_new_commit_makes_the_command_line_write_the_lock_and_the_next_no_op_is_fast(
    workspace: Workspace,
) -> None:
    up_to_date(workspace)
    move_head(workspace)
    code, out, _ = run("gitpipe", ["repro"], workspace.root, fast=False)  # handed over
    assert code == 0 and "3 up to date" in out
    workspace.commit("lock")
    up_to_date_again(workspace)
    runs = run_count(workspace.root)
    code, out, err = run("gitpipe", ["repro", "-q"], workspace.root)
    assert (code, err) == (0, "")
    assert run_count(workspace.root) == runs + 1
    rows = last_run(workspace.root)
    assert rows[0]["git_commit"] == git(workspace.root, "rev-parse", "HEAD").strip()


FAN = """
[steps.z]
cmd = "cp data/raw.txt z.txt"
deps = ["data/raw.txt"]
outs = ["z.txt"]

[steps.b]
cmd = "cp z.txt b.txt"
deps = ["z.txt"]
outs = ["b.txt"]

[steps.a]
cmd = "cp data/raw.txt a.txt"
deps = ["data/raw.txt"]
outs = ["a.txt"]

[steps.m]
cmd = "cat b.txt a.txt > m.txt"
deps = ["b.txt", "a.txt"]
outs = ["m.txt"]
"""


def test_the_steps_of_a_fan_out_are_recorded_in_the_command_line_s_order(
    workspace: Workspace,
) -> None:
    from test_status_snapshot import settle

    workspace.write("data/raw.txt", "hello\n")
    workspace.write(".gitignore", "z.txt\nb.txt\na.txt\nm.txt\n")
    workspace.pipeline(FAN)
    workspace.ok("repro")
    workspace.commit("fan")
    settle()
    workspace.ok("status")
    fast = run("gitpipe", ["repro"], workspace.root)
    fast_rows = last_run(workspace.root)
    full = run("gitpipe.cli", ["repro"], workspace.root)
    assert fast == full
    assert fast_rows == last_run(workspace.root)
    assert [s["step"] for s in fast_rows[1]] == ["z", "b", "a", "m"]


# -- a repro with work to do, without typer ---------------------------------------

FAILS = """
[steps.first]
cmd = "cp data/raw.txt first.txt"
deps = ["data/raw.txt"]
outs = ["first.txt"]

[steps.second]
cmd = "sh -c 'echo to the log; echo \\"it went wrong\\" >&2; exit 3'"
deps = ["first.txt"]
outs = ["second.txt"]
"""
#: what differs between two runs of the same pipeline: the clock, durations, run ids
VARYING_TEXT = [
    (re.compile(r"^\d\d:\d\d:\d\d ", re.MULTILINE), "HH:MM:SS "),
    (re.compile(r"\d+\.\d\d s\b"), "X s"),
    (re.compile(r"logs/[^/\s]+/"), "logs/RUN/"),
]


def normalised(text: str) -> str:
    for pattern, fixed in VARYING_TEXT:
        text = pattern.sub(fixed, text)
    return text


def rows(root: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The latest run's rows without what differs between two clones' runs."""
    run_row, steps = last_run(root)
    drop = {"git_commit", "host", "duration", "log", "pipeline"}  # named after the folder
    return (
        {k: v for k, v in run_row.items() if k not in drop},
        [
            {
                k: normalised(str(v).replace(str(root), "ROOT"))
                for k, v in s.items()
                if k not in drop
            }
            for s in steps
        ],
    )


@pytest.mark.parametrize(
    ("pipeline", "args", "code"),
    [
        (CHAIN, ["repro"], 0),
        (CHAIN, ["repro", "-q"], 0),
        (FAILS, ["repro"], 1),
        (FAILS, ["-C", ".", "repro", "--quiet"], 1),
    ],
)
def test_a_repro_with_work_to_do_is_done_without_typer_as_the_command_line_does_it(
    make_workspace: Any, monkeypatch: pytest.MonkeyPatch, pipeline: str, args: list[str], code: int
) -> None:
    """Two clones of one pipeline, run through the console script (no typer) and
    through the command line: the same lines and exit code, the same
    lineage rows, the same outputs and lock."""
    monkeypatch.setenv("CI", "true")
    clones = {}
    for name in ("fast", "full"):
        clone = make_workspace(name)
        clone.write("data/raw.txt", "hello world\n")
        clone.write(".gitignore", "first.txt\nsecond.txt\nthird.txt\n")
        clone.pipeline(pipeline)
        clone.commit("pipeline")
        clones[name] = clone
    fast = run("gitpipe", args, clones["fast"].root)
    full = run("gitpipe.cli", args, clones["full"].root)
    assert fast[0] == full[0] == code, (fast, full)
    for said in (1, 2):  # a log's path in a message names the clone
        assert normalised(fast[said].replace(str(clones["fast"].root), "ROOT")) == normalised(
            full[said].replace(str(clones["full"].root), "ROOT")
        )
    assert rows(clones["fast"].root) == rows(clones["full"].root)
    for name in ("first.txt", "second.txt", "third.txt", "gitpipe.lock"):
        paths = [clones[c].root / name for c in ("fast", "full")]
        assert [p.read_bytes() if p.exists() else None for p in paths] == [
            paths[1].read_bytes() if paths[1].exists() else None
        ] * 2, name
    if code:  # the failed step's own words reach the console, as its log's tail
        assert "second | it went wrong" in fast[2]
        assert "second: failed" in fast[2]


def test_a_repro_through_the_fast_path_writes_the_job_summary(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitHub Actions' $GITHUB_STEP_SUMMARY gets the run's Markdown summary, as from
    the command line."""
    workspace.write("data/raw.txt", "hello world\n")
    workspace.write(".gitignore", "first.txt\nsecond.txt\nthird.txt\n")
    workspace.pipeline(CHAIN)
    workspace.commit("pipeline")
    target = workspace.root.parent / "summary.md"
    done, loaded = console_script(workspace.root, ["repro", "-q"], GITHUB_STEP_SUMMARY=str(target))
    assert done.returncode == 0, done.stderr
    assert not {"typer", "pydantic", "gitpipe.cli"} & loaded  # (sqlite-utils imports click)
    summary = target.read_text()
    assert all(step in summary for step in ("first", "second", "third"))


def test_gitpipe_debug_hands_a_repro_with_work_to_the_command_line(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--debug's tracebacks are the command line's: with GITPIPE_DEBUG set, a repro
    with work to do is left to it, having printed, run and recorded nothing."""
    up_to_date(workspace)
    workspace.ok("repro")
    stale_step(workspace)
    monkeypatch.chdir(workspace.root)
    monkeypatch.setenv("GITPIPE_DEBUG", "1")
    runs = run_count(workspace.root)
    before = snapshot(workspace.root)
    assert answer(["repro"]) is None
    assert capsys.readouterr() == ("", "")
    assert changed(before, snapshot(workspace.root)) <= {".gitpipe/repro.lock"}
    assert run_count(workspace.root) == runs


# -- signals on the way --------------------------------------------------------------

#: the console script, with a signal sent to itself at a place the test names: in the
#: no-op check (before any handler of the command's is installed) or as the no-op run
#: is being recorded
SIGNALLED = """
import os, signal, sys
from gitpipe.run import events, noop
name, where = sys.argv.pop(1), sys.argv.pop(1)
module, attribute = (noop, "answer") if where == "check" else (events, "summary")
real = getattr(module, attribute)
def signalled(*args, **kwargs):
    os.kill(os.getpid(), getattr(signal, name))
    return real(*args, **kwargs)
setattr(module, attribute, signalled)
from gitpipe.__main__ import main
main()
"""


def signalled(workspace: Workspace, name: str, where: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-c", SIGNALLED, name, where, "repro"],
        cwd=workspace.root,
        env={**os.environ, "CI": "true", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_signal_during_the_no_op_check_ends_the_repro_as_the_command_line_does(
    workspace: Workspace, name: str
) -> None:
    """As the command line interrupted before its run began: "gitpipe: interrupted",
    exit 130, nothing recorded; never a silent death by SIGTERM or a traceback."""
    up_to_date(workspace)
    workspace.ok("repro")
    runs = run_count(workspace.root)
    assert signalled(workspace, name, "check") == (130, "", "gitpipe: interrupted\n")
    assert run_count(workspace.root) == runs


@pytest.mark.parametrize("name", ["SIGTERM", "SIGINT"])
def test_a_signal_while_a_no_op_run_is_recorded_waits_for_its_record(
    workspace: Workspace, name: str
) -> None:
    """A signal as the no-op run is recorded stops it once the record is whole (as the
    command line's after its run: the closing line, then "gitpipe: interrupted", exit
    130): never a run left half-recorded in lineage, found "killed" later."""
    up_to_date(workspace)
    workspace.ok("repro")
    runs = run_count(workspace.root)
    code, out, err = signalled(workspace, name, "record")
    assert (code, err) == (130, "gitpipe: interrupted\n")
    assert out.startswith("0 ran, 0 cached, 3 up to date, 0 skipped, 0 failed in ")
    assert run_count(workspace.root) == runs + 1
    run_row, steps = last_run(workspace.root)
    assert run_row["status"] == "ok"
    assert [s["state"] for s in steps] == ["up to date"] * 3


# -- a console without stdout or stderr ------------------------------------------------


def without(module: str, args: list[str], cwd: Path, fd: int) -> tuple[int, str]:
    """Exit code and what the other stream got, of ``python -m module ARGS`` started
    with its stdout (``fd`` 1) or stderr (2) closed: Python's stream is then None."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env={**os.environ, "CI": "true", "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        preexec_fn=lambda: os.close(fd),
    )
    return done.returncode, normalised(done.stderr if fd == 1 else done.stdout)


@pytest.mark.parametrize("fd", [1, 2], ids=["stdout", "stderr"])
@pytest.mark.parametrize(("pipeline", "code"), [(CHAIN, 0), (FAILS, 1)])
def test_a_repro_without_stdout_or_stderr_runs_once_as_the_command_line_s(
    make_workspace: Any, monkeypatch: pytest.MonkeyPatch, fd: int, pipeline: str, code: int
) -> None:
    """typer writes nothing where no stream is attached; the fast path neither: the
    run is not stopped by an error, nor handed to the command line to run again."""
    monkeypatch.setenv("CI", "true")
    said = {}
    for name, module in (("fast", "gitpipe"), ("full", "gitpipe.cli")):
        clone = make_workspace(name)
        clone.write("data/raw.txt", "hello world\n")
        clone.write(".gitignore", "first.txt\nsecond.txt\nthird.txt\n")
        clone.pipeline(pipeline)
        clone.commit("pipeline")
        done = without(module, ["repro"], clone.root, fd)
        said[name] = (done[0], done[1].replace(str(clone.root), "ROOT"))
        assert run_count(clone.root) == 1, name
        assert last_run(clone.root)[0]["status"] == ("ok" if code == 0 else "failed")
    assert said["fast"] == said["full"]
    assert said["fast"][0] == code


@pytest.mark.parametrize("fd", [1, 2], ids=["stdout", "stderr"])
def test_a_no_op_repro_without_stdout_or_stderr_is_recorded_once(
    workspace: Workspace, fd: int
) -> None:
    up_to_date(workspace)
    workspace.ok("repro")
    runs = run_count(workspace.root)
    assert without("gitpipe", ["repro"], workspace.root, fd)[0] == 0
    assert run_count(workspace.root) == runs + 1
    assert last_run(workspace.root)[0]["status"] == "ok"


def test_a_failed_step_s_words_reach_a_stream_set_up_for_ascii_as_typer_writes_them(
    make_workspace: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A log's tail (UTF-8, bytes that are none, control codes) on a stderr set up for
    ASCII (PYTHONIOENCODING=ascii): the bytes typer writes, UTF-8."""
    monkeypatch.setenv("CI", "true")
    said = []
    for name, module in (("fast", "gitpipe"), ("full", "gitpipe.cli")):
        clone = make_workspace(name)
        clone.pipeline(
            "[steps.words]\n"
            "cmd = \"printf 'caf\\\\303\\\\251 \\\\377 \\\\033[31mred\\\\033[0m\\\\n'; exit 2\"\n"
            'outs = ["words.txt"]\n'
        )
        clone.commit("pipeline")
        done = subprocess.run(
            [sys.executable, "-m", module, "repro"],
            cwd=clone.root,
            env={**os.environ, "PYTHONIOENCODING": "ascii", "PYTHONPATH": str(ROOT)},
            capture_output=True,
        )
        said.append((done.returncode, normalised(done.stderr.decode("utf-8", "replace"))))
        said[-1] = (said[-1][0], said[-1][1].replace(str(clone.root), "ROOT"))
    assert said[0] == said[1]
    assert "  words | café \ufffd red\n" in said[0][1]


@pytest.mark.parametrize("no_op", [False, True], ids=["work", "no-op"])
def test_a_repro_whose_lines_all_fail_is_recorded_once_and_exits_as_a_store_error(
    workspace: Workspace, no_op: bool
) -> None:
    """`gitpipe repro 2>&1 | true`: every line lost, the error line too; exit 5 from
    either way in, one run recorded (the no-op's never handed over to be done again)."""
    from test_fast_status import into_a_closed_pipe

    up_to_date(workspace)
    workspace.ok("repro")
    if not no_op:
        stale_step(workspace)
    for module in ("gitpipe", "gitpipe.cli"):
        runs = run_count(workspace.root)
        assert into_a_closed_pipe(module, ["repro", "-q"], workspace.root) == 5, module
        assert run_count(workspace.root) == runs + 1, module
        if not no_op:
            stale_step(workspace)
            workspace.write("data/raw.txt", f"again {module}\n")
