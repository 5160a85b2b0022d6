"""The CI flow for real: a bare origin, a folder remote, a full clone that runs and
pushes, and a shallow clone that pulls and proves nothing has to run."""

from __future__ import annotations

import json

import pytest
from conftest import Workspace, git

PIPELINE = """
[params]
scale = 2

[steps.prepare]
cmd = "tr a-z A-Z < data/raw.txt > prepared.txt"
deps = ["data/raw.txt"]
outs = ["prepared.txt"]

[steps.score]
cmd = "wc -c < prepared.txt > score.txt; echo ${params.scale} >> score.txt"
deps = ["prepared.txt"]
outs = ["score.txt"]

[steps.report]
cmd = "cat score.txt > report.txt"
deps = ["score.txt"]
outs = ["report.txt"]

[steps.other]
cmd = "cp data/raw.txt other.txt"
deps = ["data/raw.txt"]
outs = ["other.txt"]
"""


@pytest.mark.timeout(180)
def test_the_ci_flow_pulls_proves_nothing_runs_then_runs_only_what_changed(tmp_path, workspace):
    remote = tmp_path / "remote"
    remote.mkdir()
    env = {"GITPIPE_REMOTE": str(remote)}
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))

    # a developer commits the pipeline with its lock and pushes results
    dev = workspace
    dev.write("data/raw.txt", "hello ci\n")
    dev.write(".gitignore", "prepared.txt\nscore.txt\nreport.txt\nother.txt\n")
    dev.pipeline(PIPELINE)
    dev.ok("repro", env=env)
    dev.ok("push", env=env)
    dev.commit("pipeline and lock")
    git(dev.root, "remote", "add", "origin", str(origin))
    git(dev.root, "push", "-q", "origin", "main")

    # CI: a shallow clone pulls, and --frozen restores everything, running nothing
    ci_root = tmp_path / "ci"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{origin}", str(ci_root))
    assert (ci_root / ".git" / "shallow").exists()
    ci = Workspace(ci_root, dev.runner)
    ci.ok("pull", env=env)
    ci.ok("repro", "--frozen", env=env)
    assert set(ci.states().values()) == {"cached"}
    assert (ci_root / "report.txt").read_bytes() == (dev.root / "report.txt").read_bytes()
    assert git(ci_root, "status", "--porcelain") == ""  # the lock is left as committed

    # an edit to one step in a new commit: --frozen refuses, then only it runs
    text = (dev.root / "gitpipe.toml").read_text()
    dev.write("gitpipe.toml", text.replace("scale = 2", "scale = 3"))
    dev.commit("scale 3, lock not refreshed")
    git(dev.root, "push", "-q", "origin", "main")
    ci_root = tmp_path / "ci-next"  # the next job: a fresh shallow clone again
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{origin}", str(ci_root))
    ci = Workspace(ci_root, dev.runner)
    ci.ok("pull", env=env)
    refused = ci.gitpipe("repro", "--frozen", env=env)
    assert refused.exit_code == 3
    assert "would have to run: score (" in refused.stderr
    assert "params changed: scale" in refused.stderr
    ci.ok("repro", "--push", env=env)
    assert ci.states() == {
        "prepare": "cached",
        "score": "ran",
        "report": "ran",  # what it reads changed
        "other": "cached",
    }

    # the developer's lock still names scale = 2's results: `repro --pull` fetches
    # what each stale step's key needs, so what CI ran is restored, not run again
    dev.ok("repro", "--pull", env=env)
    assert dev.states()["score"] == "cached"
    assert dev.ran() == []


def test_a_fresh_clone_with_no_remote_results_runs_and_a_pull_of_nothing_is_harmless(
    tmp_path, workspace
):
    remote = tmp_path / "empty-remote"
    remote.mkdir()
    workspace.write("data/raw.txt", "x\n")
    workspace.pipeline(PIPELINE)
    pulled = workspace.ok("pull", "--json", env={"GITPIPE_REMOTE": str(remote)})
    report = json.loads(pulled.stdout)
    assert (report["objects"], report["results"], report["bytes"]) == (0, 0, 0), report
    workspace.ok("repro")
    assert set(workspace.states().values()) == {"ran"}
