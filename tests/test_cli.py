"""The command line is a package, `gitpipe.cli`: `python -m gitpipe.cli` is the
console script too, and its command modules register every command in its place."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
    assert [group.name for group in cli.app.registered_groups] == ["cache"]
