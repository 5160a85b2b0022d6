"""The command line is a package, `gitpipe.cli`: `python -m gitpipe.cli` is the
console script too, and its command modules register every command in its place."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import refused, snapshot

import gitpipe
from gitpipe import cli


def python_m(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CI": "true"},
    )


def test_python_m_gitpipe_cli_runs_every_command_as_gitpipe_does(workspace):
    workspace.write("in.txt", "1\n")
    workspace.pipeline(
        """
        [steps.copy]
        cmd = "cp in.txt out.txt"
        deps = ["in.txt"]
        outs = ["out.txt"]
        """
    )
    workspace.commit("pipeline")
    workspace.ok("repro")
    said = {}
    for command in (
        ["log"],
        ["show", "last"],
        ["lineage", "out.txt"],
        ["metrics"],
        ["versions"],
        ["status"],
        ["-C", str(workspace.root), "dag"],
    ):
        package = python_m("gitpipe.cli", *command, cwd=workspace.root)
        script = python_m("gitpipe", *command, cwd=workspace.root)
        assert package.returncode == 0, (command, package.stderr)
        assert (package.stdout, package.stderr) == (script.stdout, script.stderr), command
        said[command[0]] = package.stdout
    assert said["log"].rstrip().endswith("1 ran")
    assert said["lineage"].startswith("out.txt  <- step copy")

    package = python_m("gitpipe.cli", "--help", cwd=workspace.root)
    script = python_m("gitpipe", "--help", cwd=workspace.root)
    assert "lineage" in package.stdout
    assert package.stdout.replace("gitpipe.cli", "gitpipe") == script.stdout


def test_every_command_has_its_place_in_the_help():
    names = [cli._name(info) for info in cli.app.registered_commands]
    assert names == list(cli._HELP_ORDER)
    assert [group.name for group in cli.app.registered_groups] == ["exp", "import", "cache"]


def without_ci() -> dict[str, str]:
    """This environment as a user's shell has it: no CI (stdout is still a pipe)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "NO_COLOR", "FORCE_COLOR")}
    return {**env, "COLUMNS": "80"}


def test_version_prints_the_package_version_without_opening_anything(tmp_path):
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gitpipe", "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stdout) == (0, f"gitpipe {gitpipe.__version__}\n")
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
    assert not imported & {"dulwich", "blake3", "sqlite3", "gitpipe.workspace"}
    # rich only where typer itself loads it on import (its older releases do)
    assert "rich" not in imported or "rich" in modules_imported_by("typer", tmp_path)


def modules_imported_by(module: str, cwd: Path) -> set[str]:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return {line.split("|")[-1].strip() for line in done.stderr.splitlines()}


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_show_completion_prints_a_script_for_gitpipe(tmp_path, shell):
    done = python_m("gitpipe", "--show-completion", shell, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "_GITPIPE_COMPLETE" in done.stdout
    assert "gitpipe" in done.stdout.replace("_GITPIPE_COMPLETE", "")


FEATURES = """
[steps.copy]
cmd = "cp data.txt out.txt"
deps = ["data.txt"]
outs = ["out.txt"]
"""


@pytest.mark.parametrize("where", ["before", "after"])
def test_root_options_are_accepted_before_and_after_the_command(workspace, where):
    workspace.write("proj/features/data.txt", "1\n")
    workspace.write("proj/features/gitpipe.toml", FEATURES)
    workspace.commit("a pipeline in a folder, under another name")

    def gitpipe(command: str, *args: str):
        options = ("-C", "proj", "-f", "features/gitpipe.toml")
        if where == "before":
            return workspace.ok(*options, command, *args)
        return workspace.ok(command, *args, *options)

    assert gitpipe("status").stdout.startswith("copy  stale")
    gitpipe("repro")
    assert (workspace.root / "proj/features/out.txt").read_text() == "1\n"
    assert gitpipe("why", "copy").stdout.startswith("copy: up to date")
    assert gitpipe("status").stdout.startswith("copy  up to date")
    # the command's own -f wins over one given before it
    done = workspace.ok("-C", "proj", "-f", "missing.toml", "status", "-f", "features/gitpipe.toml")
    assert done.stdout.startswith("copy  up to date")


@pytest.mark.parametrize("args", [["--debug", "why", "nope"], ["why", "nope", "--debug"]])
def test_debug_shows_the_traceback_before_or_after_the_command(workspace, args):
    workspace.pipeline(FEATURES)
    assert "Traceback" in workspace.gitpipe(*args).stderr
    plain = workspace.gitpipe("why", "nope")
    assert plain.exit_code == 2
    assert plain.stderr.count("\n") == 1 and "Traceback" not in plain.stderr


def test_a_missing_folder_after_the_command_is_one_line(workspace):
    workspace.pipeline(FEATURES)
    refused(workspace, "status", "-C", "nowhere", says=("gitpipe: cannot change to nowhere",))


def collapsed(text: str) -> str:
    return " ".join(text.split())


def test_help_piped_says_every_line_whole(tmp_path):
    import typer.main

    root = typer.main.get_command(cli.app)
    said = subprocess.run(
        [sys.executable, "-m", "gitpipe", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env=without_ci(),
    ).stdout
    assert "…" not in said and "..." not in said.replace("[ARGS]...", "")
    for name, command in root.commands.items():
        first = collapsed(command.help or "").split(". ")[0].rstrip(".")
        assert f"{name} {first}" in collapsed(said), name

    said = subprocess.run(
        [sys.executable, "-m", "gitpipe", "repro", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        env=without_ci(),
    ).stdout
    assert "…" not in said
    for param in root.commands["repro"].params:
        if getattr(param, "help", None):
            assert collapsed(param.help) in collapsed(said), param.name


TWO_STEPS = """
[params]
n = 1

[steps.hello]
cmd = "echo hello ${params.n}; echo to stderr >&2"

[steps.other]
cmd = "echo other"
"""


def test_logs_prints_a_steps_log_from_its_last_run_or_the_one_named(workspace):
    workspace.pipeline(TWO_STEPS)
    workspace.commit("pipeline")
    workspace.ok("repro")
    first_run = json.loads(workspace.ok("show", "last", "--json").stdout)["run"]
    workspace.ok("repro", "hello", "-p", "n=2")

    latest = workspace.ok("logs", "hello").stdout
    assert "hello 2\n" in latest and "to stderr\n" in latest
    assert "hello 1\n" in workspace.ok("logs", "hello", "--run", first_run).stdout
    # `other` did not run in the last run: its log is the one from when it did
    assert "other\n" in workspace.ok("logs", "other").stdout

    for args, says in (
        (["nope"], "gitpipe: there is no step named 'nope' (steps: hello, other)"),
        (["other", "--run", "last"], "gitpipe: step other wrote no log in run "),
    ):
        before = files_but_sqlite_bookkeeping(workspace.root)
        done = workspace.gitpipe("logs", *args)
        assert done.exit_code == 2
        assert done.stderr.startswith(says) and done.stderr.count("\n") == 1, done.stderr
        assert files_but_sqlite_bookkeeping(workspace.root) == before


def files_but_sqlite_bookkeeping(root: Path) -> dict[str, object]:
    """Every file and folder as `snapshot` sees it, but for what SQLite keeps beside a
    database in WAL mode (-wal, -shm, and the times of .gitpipe/), which reading updates."""
    return {
        path: (mode, data, None if path == ".gitpipe" else mtime)
        for path, (mode, data, mtime) in snapshot(root).items()
        if not path.endswith(("-wal", "-shm"))
    }


def test_check_json_lists_the_mismatched_steps_and_reasons(workspace):
    workspace.write("data.txt", "1\n")
    workspace.pipeline(FEATURES)
    workspace.commit("pipeline")
    workspace.ok("repro")
    assert json.loads(workspace.ok("check", "--json").stdout) == {
        "matches": True,
        "mismatched": [],
    }
    workspace.write("data.txt", "2\n")
    done = workspace.gitpipe("check", "--json")
    assert done.exit_code == 3
    assert json.loads(done.stdout) == {
        "matches": False,
        "mismatched": [{"step": "copy", "reasons": ["dep changed: data.txt"]}],
    }


def test_log_json_carries_each_runs_overrides(workspace):
    workspace.pipeline(TWO_STEPS)
    workspace.commit("pipeline")
    workspace.ok("repro")
    workspace.ok("repro", "-p", "n=2")
    newest, oldest = json.loads(workspace.ok("log", "--json").stdout)
    assert (newest["overrides"], oldest["overrides"]) == ({"n": 2}, {})
