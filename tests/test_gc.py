"""`gitpipe gc`: remove what no lock on any branch or tag (or the working tree) needs."""

from __future__ import annotations

import json

from conftest import Workspace

PIPELINE = """
[params]
n = {n}

[steps.make]
cmd = "echo ${{params.n}} > made.txt"
outs = ["made.txt"]

[steps.copy]
cmd = "cp made.txt copy.txt"
deps = ["made.txt"]
outs = ["copy.txt"]
"""


def objects(workspace: Workspace) -> int:
    base = workspace.root / ".gitpipe" / "cache" / "objects"
    return sum(1 for p in base.rglob("*") if p.is_file())


def gc(workspace: Workspace, *args: str) -> dict:
    return json.loads(workspace.ok("gc", "--keep-recent", "0", "--json", *args).stdout)


def history(workspace: Workspace) -> None:
    """n=1 committed on main; n=3 ran and was abandoned; n=2 in the working tree."""
    workspace.write(".gitignore", "made.txt\ncopy.txt\n")
    workspace.pipeline(PIPELINE.format(n=1))
    workspace.ok("repro")
    workspace.commit("n = 1")
    for n in (3, 2):
        workspace.pipeline(PIPELINE.format(n=n))
        workspace.ok("repro")


def test_gc_shows_first_and_removes_only_with_force(workspace):
    history(workspace)
    before = objects(workspace)
    shown = gc(workspace)
    assert shown["deleted"] is False
    assert shown["objects"] == 1  # "3\n" (copy.txt holds the same bytes)
    assert shown["results"] == 2  # make and copy with n = 3
    assert objects(workspace) == before

    removed = gc(workspace, "--force")
    assert removed["objects"] == 1
    assert objects(workspace) == before - 1
    workspace.ok("repro")
    assert set(workspace.states().values()) == {"up to date"}


def test_gc_keeps_what_a_committed_lock_needs_unless_workspace(workspace):
    history(workspace)
    gc(workspace, "--force")
    # n = 1 is committed on main: its outputs stay, so going back restores them
    workspace.pipeline(PIPELINE.format(n=1))
    workspace.ok("repro")
    assert workspace.states() == {"make": "cached", "copy": "cached"}

    workspace.pipeline(PIPELINE.format(n=2))
    workspace.ok("repro")
    only = gc(workspace, "--workspace", "--force")
    assert only["objects"] == 1 and only["results"] == 2  # n = 1's, not in this lock
    workspace.pipeline(PIPELINE.format(n=1))
    workspace.ok("repro")
    assert workspace.states() == {"make": "ran", "copy": "ran"}


def test_gc_keeps_recent_objects_by_default(workspace):
    history(workspace)
    shown = json.loads(workspace.ok("gc", "--json").stdout)
    assert shown["objects"] == 0 and shown["recent"] >= 1
    text = workspace.ok("gc").stdout
    assert "younger than 1 h" in text


def test_gc_reads_tags_and_other_branches(workspace):
    history(workspace)
    workspace.commit("n = 2")  # the working tree's lock, now on main too
    from conftest import git

    git(workspace.root, "tag", "-a", "v1", "-m", "v1", "HEAD~1")
    git(workspace.root, "checkout", "-q", "-b", "side")
    workspace.pipeline(PIPELINE.format(n=5))
    workspace.ok("repro")
    workspace.commit("n = 5 on a side branch")
    git(workspace.root, "checkout", "-q", "main")
    workspace.ok("repro")
    report = gc(workspace, "--force")
    assert report["locks"] >= 3  # working tree, main, side, and the tag
    assert report["objects"] == 1  # only n = 3 is nobody's
    git(workspace.root, "checkout", "-q", "side")
    workspace.ok("repro")
    assert workspace.states() == {"make": "cached", "copy": "cached"}
