"""`gitpipe gc`: remove what no lock needs, on any ref or in the working tree, of this
clone or of any clone sharing its store; delete nothing while such a lock is unreadable."""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from pathlib import Path

import pytest
from conftest import Workspace, cli_runner, git, make_repo, snapshot

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


def objects(workspace: Workspace, store: Path | None = None) -> int:
    base = (store or workspace.root / ".gitpipe" / "cache") / "objects"
    return sum(1 for p in base.rglob("*") if p.is_file())


def gc(workspace: Workspace, *args: str, env: dict[str, str] | None = None) -> dict:
    return json.loads(workspace.ok("gc", "--keep-recent", "0", "--json", *args, env=env).stdout)


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


# -- clones sharing a store -------------------------------------------------------


def clone_of(source: Workspace, path: Path) -> Workspace:
    """A `git clone` of ``source``, ready to commit."""
    git(path.parent, "clone", "-q", str(source.root), path.name)
    git(path, "config", "user.email", "test@gitpipe.invalid")
    git(path, "config", "user.name", "gitpipe tests")
    git(path, "config", "commit.gpgsign", "false")
    return Workspace(path, cli_runner())


def stored(store: Path) -> dict[str, tuple[int, bytes | None, int]]:
    """Every file and folder of a store, with its mode, bytes and mtime."""
    return snapshot(store)


def registrations(store: Path) -> list[str]:
    return sorted(json.loads(p.read_text())["worktree"] for p in (store / "clones").glob("*.json"))


def shared(tmp_path: Path, workspace: Workspace) -> tuple[Workspace, Workspace, dict[str, str]]:
    """Clone ``a`` (the workspace) on main and clone ``b`` on a branch of its own
    that ``a`` never sees, one store for both: n = 1 committed in ``a``, n = 3 ran in
    ``a`` and was abandoned (nobody's), n = 5 committed in ``b`` on `side`."""
    env = {"GITPIPE_CACHE_DIR": str(tmp_path / "store")}
    a = workspace
    a.write(".gitignore", "made.txt\ncopy.txt\n")
    a.pipeline(PIPELINE.format(n=1))
    a.commit("pipeline")
    b = clone_of(a, tmp_path / "b")
    a.ok("repro", env=env)
    a.commit("n = 1")
    a.pipeline(PIPELINE.format(n=3))
    a.ok("repro", env=env)
    a.pipeline(PIPELINE.format(n=1))
    a.ok("repro", env=env)
    git(b.root, "checkout", "-q", "-b", "side")
    b.pipeline(PIPELINE.format(n=5))
    b.ok("repro", env=env)
    b.commit("n = 5")
    return a, b, env


def test_gc_in_one_clone_keeps_what_another_clone_sharing_the_store_needs(tmp_path, workspace):
    a, b, env = shared(tmp_path, workspace)
    b.pipeline(PIPELINE.format(n=6))  # in b's working tree only
    b.ok("repro", env=env)
    store = tmp_path / "store"
    assert registrations(store) == sorted([str(a.root.resolve()), str(b.root.resolve())])

    report = gc(a, "--force", env=env)
    assert report["objects"] == 1 and report["results"] == 2  # n = 3's, nobody's
    assert report["clones"] == 2 and report["dropped"] == [] and report["unreadable"] == []
    assert objects(a, store) == 3  # "1\n", "5\n" and "6\n"

    for relpath in ("made.txt", "copy.txt"):  # b's working tree: restored, not run
        (b.root / relpath).unlink()
    b.ok("repro", env=env)
    assert b.states() == {"make": "cached", "copy": "cached"}
    git(b.root, "checkout", "-q", "--", "gitpipe.toml", "gitpipe.lock")  # b's branch
    b.ok("repro", env=env)
    assert b.states() == {"make": "cached", "copy": "cached"}
    assert (b.root / "copy.txt").read_text() == "5\n"


def test_a_clone_registers_on_its_first_repro_not_on_status_or_a_dry_run(tmp_path, workspace):
    env = {"GITPIPE_CACHE_DIR": str(tmp_path / "store")}
    workspace.write(".gitignore", "made.txt\ncopy.txt\n")
    workspace.pipeline(PIPELINE.format(n=1))
    workspace.ok("status", env=env)
    workspace.ok("repro", "--dry-run", env=env)
    assert not (tmp_path / "store" / "clones").exists()
    workspace.ok("repro", env=env)
    assert registrations(tmp_path / "store") == [str(workspace.root.resolve())]


def test_a_linked_work_tree_s_lock_is_kept_by_gc_in_the_main_one(tmp_path, workspace):
    workspace.write(".gitignore", "made.txt\ncopy.txt\n")
    workspace.pipeline(PIPELINE.format(n=1))
    workspace.ok("repro")
    workspace.commit("n = 1")
    linked = tmp_path / "linked"
    git(workspace.root, "worktree", "add", "-q", "-b", "feature", str(linked))
    other = Workspace(linked, cli_runner())
    other.pipeline(PIPELINE.format(n=5))  # the linked work tree's, not committed
    other.ok("repro")
    report = gc(workspace, "--force")
    assert report["objects"] == 0 and report["clones"] == 2
    for relpath in ("made.txt", "copy.txt"):
        (linked / relpath).unlink()
    other.ok("repro")
    assert other.states() == {"make": "cached", "copy": "cached"}


def test_the_work_tree_a_clone_registers_is_the_one_git_finds(tmp_path, workspace):
    # found without opening Git (a pull registers its clone): the top dulwich finds
    from gitpipe.core.layout import work_tree
    from gitpipe.history.git import Repository

    workspace.commit("first")
    linked = tmp_path / "linked"
    git(workspace.root, "worktree", "add", "-q", "-b", "feature", str(linked))
    (workspace.root / "sub" / "deeper").mkdir(parents=True)
    outside = tmp_path / "outside"
    (outside / "bogus").mkdir(parents=True)
    (outside / "bogus" / ".git").write_text("not a pointer to a repository\n")
    for folder in (workspace.root, workspace.root / "sub" / "deeper", linked, outside):
        repo = Repository.find(folder)
        with contextlib.nullcontext() if repo is None else repo:
            assert work_tree(folder) == (None if repo is None else repo.top), folder
    assert work_tree(linked) == linked.resolve()
    assert work_tree(outside / "bogus") is None


def test_a_folder_named_git_that_is_no_repository_is_passed_over_as_git_does(tmp_path, workspace):
    # an empty `.git` folder between the pipeline and the top (left by a copy, say) is
    # no repository to Git or dulwich: the clone registered is the work tree around it,
    # else gc in every clone sharing the store takes it for one no longer in Git
    from gitpipe.core.layout import work_tree
    from gitpipe.history.git import Repository

    env = {"GITPIPE_CACHE_DIR": str(tmp_path / "store")}
    workspace.write(".gitignore", "made.txt\ncopy.txt\n")
    workspace.pipeline(PIPELINE.format(n=1))
    workspace.ok("repro", env=env)
    workspace.commit("n = 1")
    other = Workspace(make_repo(tmp_path / "other") / "sub", cli_runner())
    (other.root / ".git").mkdir(parents=True)
    with Repository.find(other.root) as repo:
        assert work_tree(other.root) == repo.top == (tmp_path / "other").resolve()
    other.write(".gitignore", "made.txt\ncopy.txt\n")
    other.pipeline(PIPELINE.format(n=2))
    other.ok("repro", env=env)
    report = gc(workspace, "--force", env=env)
    assert report["clones"] == 2 and not report["unreadable"]


def test_a_clone_that_was_deleted_is_dropped_from_the_store(tmp_path, workspace):
    a, b, env = shared(tmp_path, workspace)
    store = tmp_path / "store"
    shutil.rmtree(b.root)
    shown = gc(a, env=env)
    assert shown["dropped"] == [str(b.root.resolve())]
    assert shown["objects"] == 2  # "3\n", and "5\n", which only b needed
    assert str(b.root.resolve()) in registrations(store)  # a dry run changes nothing
    text = a.ok("gc", "--keep-recent", "0", env=env).stdout
    assert f"would drop 1 clone(s) registered in the store whose folder is gone: {b.root}" in text

    removed = gc(a, "--force", env=env)
    assert removed["dropped"] == [str(b.root.resolve())] and removed["objects"] == 2
    assert registrations(store) == [str(a.root.resolve())]
    assert gc(a, env=env)["dropped"] == []


def test_gc_refuses_while_a_registered_clone_is_no_git_repository_anymore(tmp_path, workspace):
    a, b, env = shared(tmp_path, workspace)
    store = tmp_path / "store"
    shutil.rmtree(b.root / ".git")
    before = stored(store)
    refused = a.gitpipe("gc", "--force", "--keep-recent", "0", env=env)
    assert refused.exit_code == 5
    assert f"the clone at {b.root.resolve()} (not a Git repository anymore)" in refused.stderr
    assert "gc deletes nothing" in refused.stderr
    assert stored(store) == before


def test_a_remote_tracking_branch_s_lock_counts(tmp_path, workspace):
    workspace.write(".gitignore", "made.txt\ncopy.txt\n")
    workspace.pipeline(PIPELINE.format(n=1))
    workspace.ok("repro")
    workspace.commit("n = 1")
    git(workspace.root, "checkout", "-q", "-b", "x")
    workspace.pipeline(PIPELINE.format(n=5))
    workspace.ok("repro")
    workspace.commit("n = 5 on x")
    git(workspace.root, "checkout", "-q", "main")
    b = clone_of(workspace, tmp_path / "b")  # x is refs/remotes/origin/x there, no branch
    git(b.root, "checkout", "-q", "--detach", "origin/x")
    b.ok("repro")
    git(b.root, "checkout", "-q", "main")
    b.ok("repro")
    report = gc(b, "--force")
    assert report["objects"] == 0 and report["locks"] == 2
    git(b.root, "checkout", "-q", "--detach", "origin/x")
    b.ok("repro")
    assert b.states() == {"make": "cached", "copy": "cached"}


def conflicted(text: str) -> str:
    return "<<<<<<< HEAD\n" + text + "=======\n" + text.replace("1", "4") + ">>>>>>> other\n"


def newer(text: str) -> str:
    assert "schema = 2" in text
    return text.replace("schema = 2", "schema = 99")


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (conflicted, "merge conflict markers"),
        (newer, "schema 99, newer than the 2 this gitpipe reads"),
    ],
)
def test_gc_refuses_to_delete_while_a_branch_s_lock_cannot_be_read(workspace, damage, why):
    workspace.write(".gitignore", "made.txt\ncopy.txt\n")
    workspace.pipeline(PIPELINE.format(n=1))
    workspace.ok("repro")
    workspace.commit("n = 1")
    git(workspace.root, "checkout", "-q", "-b", "broken")
    lock = workspace.root / "gitpipe.lock"
    lock.write_text(damage(lock.read_text()))
    workspace.commit("a lock gitpipe cannot read")
    git(workspace.root, "checkout", "-q", "main")
    for n in (3, 2):  # n = 3 is nobody's: gc would remove it
        workspace.pipeline(PIPELINE.format(n=n))
        workspace.ok("repro")
    store = workspace.root / ".gitpipe" / "cache"
    before = stored(store)
    named = f"refs/heads/broken:gitpipe.lock ({why}"

    refused = workspace.gitpipe("gc", "--force", "--keep-recent", "0")
    assert refused.exit_code == 5
    assert refused.stderr.count("\n") == 1 and named in refused.stderr
    assert refused.stdout == ""
    assert stored(store) == before

    shown = workspace.gitpipe("gc", "--keep-recent", "0")
    assert shown.exit_code == 5
    assert named in shown.stderr and "gc deletes nothing" in shown.stderr
    assert "run `gitpipe gc --force`" not in shown.stdout
    as_json = workspace.gitpipe("gc", "--keep-recent", "0", "--json")
    assert as_json.exit_code == 5
    report = json.loads(as_json.stdout)
    assert [u["where"] for u in report["unreadable"]] == ["refs/heads/broken:gitpipe.lock"]
    assert report["locks"] == 2  # the working tree's (n = 2) and main's (n = 1)
    assert report["deleted"] is False
    assert stored(store) == before


def test_a_clone_that_only_pulled_into_the_shared_store_is_kept_by_gc(tmp_path, workspace):
    a, b, env = shared(tmp_path, workspace)
    remote = tmp_path / "remote"
    remote.mkdir()
    b.ok("push", "--remote", str(remote), env=env)
    c = clone_of(b, tmp_path / "c")  # on side, n = 5; it never runs a repro
    store = tmp_path / "store"
    c.ok("pull", "--remote", str(remote), env=env)
    assert str(c.root.resolve()) in registrations(store)
    shutil.rmtree(b.root)
    report = gc(a, "--force", env=env)
    assert report["dropped"] == [str(b.root.resolve())]
    assert report["objects"] == 1  # "3\n": c's "5\n" stays
    c.ok("repro", "--frozen", env=env)
    assert (c.root / "copy.txt").read_text() == "5\n"


def test_an_object_linked_in_a_moment_ago_is_recent_however_old_its_files_mtime(workspace):
    # a hard-linked output *is* its object, with the output's mtime (`cp -p`, `tar x`,
    # `touch -d`): gc took it for an hour old, and `gc --force` from any clone sharing
    # the store removed it while the repro that made it had not written its lock yet
    workspace.write(".gitignore", "made.txt\ncopy.txt\n")
    old = PIPELINE.replace("> made.txt", "> made.txt && touch -d '2 days ago' made.txt")
    for n in (3, 2):  # n = 3's outputs: in no lock, stored a moment ago
        workspace.pipeline('[pipeline]\nlink = "hardlink"\n' + old.format(n=n))
        workspace.ok("repro")
    store = workspace.root / ".gitpipe" / "cache"
    before = snapshot(store / "objects")
    assert min(p.stat().st_mtime for p in (store / "objects").rglob("*") if p.is_file()) < (
        time.time() - 86400
    )

    shown = json.loads(workspace.ok("gc", "--json").stdout)
    removed = json.loads(workspace.ok("gc", "--force", "--json").stdout)

    assert shown["objects"] == 0 and shown["recent"] >= 1
    assert removed["objects"] == 0
    assert snapshot(store / "objects") == before
    assert gc(workspace, "--force")["objects"] == 1  # with --keep-recent 0: n = 3's "3\n"
