"""`gitpipe status` reads nothing it has seen; `gitpipe init`; the lock file's form."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from conftest import Workspace, cli_runner, snapshot

import gitpipe.identity.statcache
from gitpipe import Project


def age(workspace: Workspace) -> None:
    past = time.time() - 60
    for path in workspace.root.rglob("*"):
        if ".git" not in path.parts and path.is_file():
            os.utime(path, (past, past))


def test_a_no_op_status_opens_no_file_it_has_seen(workspace, monkeypatch):
    workspace.write("data/raw.txt", "x\n")
    workspace.write("data/more/y.txt", "y\n")
    workspace.pipeline(
        """
        [steps.a]
        cmd = "cp data/raw.txt a.txt"
        deps = ["data/raw.txt", "data/more/"]
        outs = ["a.txt"]
        code = ["*.sh"]
        """
    )
    workspace.write("helper.sh", "true\n")
    workspace.ok("repro")
    age(workspace)
    workspace.ok("status")  # re-hashes the aged files once, recording them
    reads = []
    real = gitpipe.identity.statcache.digest_file
    monkeypatch.setattr(
        gitpipe.identity.statcache,
        "digest_file",
        lambda path, **kw: reads.append(path) or real(path, **kw),
    )
    result = workspace.ok("status")
    assert "a  up to date" in result.stdout
    assert reads == []


def test_status_json_says_why_and_whether_the_store_can_serve_it(workspace):
    workspace.write("in.txt", "1\n")
    workspace.pipeline(
        """
        [steps.copy]
        cmd = "cp in.txt out.txt"
        deps = ["in.txt"]
        outs = ["out.txt"]
        """
    )
    statuses = json.loads(workspace.ok("status", "--json").stdout)
    assert statuses[0]["state"] == "stale"
    assert statuses[0]["reasons"] == ["new"]
    assert statuses[0]["cached"] is False
    workspace.ok("repro")
    workspace.write("in.txt", "2\n")
    workspace.ok("repro")
    workspace.write("in.txt", "1\n")
    (status,) = json.loads(workspace.ok("status", "--json").stdout)
    assert status["reasons"] == ["dep changed: in.txt"]
    assert status["cached"] is True
    result = workspace.gitpipe("status", "--check")
    assert result.exit_code == 3
    assert "copy" in result.stderr


def test_the_python_api_gives_the_same_operations(workspace):
    workspace.write("in.txt", "1\n")
    workspace.pipeline(
        """
        [steps.copy]
        cmd = "cp in.txt out.txt"
        deps = ["in.txt"]
        outs = ["out.txt"]
        """
    )
    project = Project.open(workspace.root)
    assert [s.state for s in project.status()] == ["stale"]
    report = project.repro()
    assert [(s.step, s.state) for s in report.steps] == [("copy", "ran")]
    assert [s.state for s in Project.open(workspace.root).status()] == ["up to date"]


def test_a_project_reads_the_lock_again_once_another_command_rewrote_it(workspace):
    workspace.write("in.txt", "1\n")
    workspace.pipeline(
        """
        [steps.copy]
        cmd = "cp in.txt out.txt"
        deps = ["in.txt"]
        outs = ["out.txt"]
        """
    )
    workspace.ok("repro")
    lock = workspace.root / "gitpipe.lock"
    old = time.time_ns() - 60 * 10**9  # outside the racy window: the read is remembered
    os.utime(lock, ns=(old, old))
    project = Project.open(workspace.root)
    assert [s.state for s in project.status()] == ["up to date"]

    workspace.write("in.txt", "2\n")
    workspace.ok("repro")  # another process rewrites the lock
    os.utime(lock, ns=(old + 10**9, old + 10**9))
    assert [s.state for s in project.status()] == ["up to date"]


def test_the_lock_is_sorted_stable_and_rewritten_only_when_it_changes(workspace):
    workspace.write("in.txt", "1\n")
    workspace.pipeline(
        """
        [steps.zeta]
        cmd = "cp in.txt z.txt"
        deps = ["in.txt"]
        outs = ["z.txt"]

        [steps.alpha]
        cmd = "cp in.txt a.txt"
        deps = ["in.txt"]
        outs = ["a.txt"]
        """
    )
    workspace.ok("repro")
    lock = workspace.root / "gitpipe.lock"
    text = lock.read_text()
    assert text.index("[steps.alpha]") < text.index("[steps.zeta]")
    mtime = lock.stat().st_mtime_ns
    workspace.ok("repro", "--force")
    assert lock.read_text() == text
    assert lock.stat().st_mtime_ns == mtime
    assert not [p for p in workspace.root.iterdir() if p.name.startswith(".gitpipe.lock")]


def test_a_damaged_lock_is_a_store_or_lock_error_that_changes_nothing(workspace):
    workspace.write("in.txt", "1\n")
    workspace.pipeline(
        """
        [steps.copy]
        cmd = "cp in.txt out.txt"
        deps = ["in.txt"]
        outs = ["out.txt"]
        """
    )
    workspace.write("gitpipe.lock", "this is [not toml\n")
    before = snapshot(workspace.root)
    result = workspace.gitpipe("repro")
    assert result.exit_code == 5
    assert "gitpipe.lock is damaged" in result.stderr
    assert "Traceback" not in result.output
    assert snapshot(workspace.root) == before


def test_init_writes_a_starter_pipeline_that_parses_and_ignores_its_state(workspace):
    result = workspace.ok("init")
    assert "Wrote gitpipe.toml" in result.stdout
    text = (workspace.root / "gitpipe.toml").read_text()
    assert text.startswith("#")
    assert (workspace.root / ".gitpipe" / ".gitignore").read_text().strip().endswith("*")
    assert workspace.ok("status").stdout.strip() == "no steps"
    # the starter's commented example, uncommented, is a working pipeline
    body = "\n".join(
        line[2:] if line.startswith("# ") and ("=" in line or line.startswith("# [")) else line
        for line in text.splitlines()
    )
    workspace.write("gitpipe.toml", body)
    workspace.write("src/prepare.py", "import common\n")
    workspace.write("src/common.py", "SEED = 1\n")
    workspace.write("data/raw.csv", "x\n1\n")
    statuses = json.loads(workspace.ok("status", "--json").stdout)
    assert [s["step"] for s in statuses] == ["prepare", "train"]
    # its scripts are found from the commands, as its comment says, not listed in deps
    deps = [line for line in body.splitlines() if line.startswith("deps =")]
    assert len(deps) == 2 and not any(".py" in line for line in deps)
    assert sorted(statuses[0]["code"]) == ["src/common.py", "src/prepare.py"]

    again = workspace.gitpipe("init")
    assert again.exit_code == 2
    assert "exists already" in again.stderr
    assert (workspace.root / "gitpipe.toml").read_text() == body


def test_init_outside_a_git_repository_says_so(tmp_path, monkeypatch):

    from gitpipe.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    result = cli_runner().invoke(app, ["init"])
    assert result.exit_code == 2
    assert "not inside a Git repository" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_the_console_script_builds_only_the_command_it_runs_and_behaves_the_same(workspace):
    workspace.write("in.txt", "1\n")
    workspace.pipeline(
        """
        [steps.copy]
        cmd = "cp in.txt out.txt"
        deps = ["in.txt"]
        outs = ["out.txt"]
        """
    )

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gitpipe", *args],
            cwd=workspace.root.parent,
            capture_output=True,
            text=True,
            check=False,
        )

    root = str(workspace.root)
    for args in (["-C", root, "status"], [f"-C{root}", "--debug", "status"]):
        done = run(*args)
        assert (done.returncode, done.stdout) == (0, "copy  stale  new\n"), args
    assert "gitpipe cache [OPTIONS] COMMAND" in run("-C", root, "cache", "--help").stdout
    assert "Commands:" in run("--help").stdout
    assert "status" in run("--help").stdout and "repro" in run("--help").stdout
    wrong = run("-C", root, "nope")
    assert wrong.returncode == 2 and "No such command 'nope'" in wrong.stderr
    named = run("-C", "status")  # `status` is the folder here: no command is named
    assert named.returncode == 2


def test_why_and_status_call_a_param_given_to_a_command_a_params_change(workspace):
    workspace.pipeline(
        """
        [params]
        lr = 0.1

        [steps.train]
        cmd = "echo ${params.lr} > model.txt"
        outs = ["model.txt"]
        env = { LR = "${params.lr}" }
        """
    )
    workspace.ok("repro")
    workspace.pipeline(
        """
        [params]
        lr = 0.25

        [steps.train]
        cmd = "echo ${params.lr} > model.txt"
        outs = ["model.txt"]
        env = { LR = "${params.lr}" }
        """
    )
    (status,) = json.loads(workspace.ok("status", "--json").stdout)
    assert status["reasons"] == ["params changed: lr"]
    explained = json.loads(workspace.ok("why", "train", "--json").stdout)
    assert explained["reasons"] == ["params changed: lr"]

    workspace.pipeline(
        """
        [params]
        lr = 0.25

        [steps.train]
        cmd = "echo lr=${params.lr} > model.txt"
        outs = ["model.txt"]
        env = { LR = "${params.lr}" }
        """
    )
    (status,) = json.loads(workspace.ok("status", "--json").stdout)
    assert status["reasons"] == ["command changed", "params changed: lr"]
