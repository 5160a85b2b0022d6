"""A no-op `status` answered from stamps alone (gitpipe/core/snapshot.py), the racy window,
and the stat cache's ctime: every change a user can make must still be seen."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from conftest import CHAIN, Workspace, cli_runner, git, make_repo

import gitpipe.identity.statcache
from gitpipe.core.snapshot import answer
from gitpipe.core.stamps import racy
from gitpipe.identity.statcache import Hasher, StatCache

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SNAPSHOT = Path(".gitpipe/parsed/status-gitpipe.toml.snapshot")


def settle() -> None:
    """Wait out the racy window of sub-second timestamps: a snapshot is written only
    when everything it rests on is older than that."""
    time.sleep(0.12)


def up_to_date(workspace: Workspace) -> Workspace:
    """CHAIN run and committed, and a `status` that left a snapshot."""
    workspace.write("data/raw.txt", "hello world\n")
    workspace.write(".gitignore", "first.txt\nsecond.txt\nthird.txt\n")
    workspace.pipeline(CHAIN)
    workspace.ok("repro")
    workspace.commit("pipeline")
    settle()
    assert "stale" not in workspace.ok("status").stdout
    assert (workspace.root / SNAPSHOT).is_file()
    return workspace


def status_lines(workspace: Workspace, *args: str) -> dict[str, str]:
    out = workspace.gitpipe("status", *args).stdout
    return {line.split()[0]: line for line in out.splitlines() if line.strip()}


def test_a_no_op_status_is_answered_without_loading_the_pipeline(workspace):
    up_to_date(workspace)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-X", "importtime", "-m", "gitpipe", "status", *args],
            cwd=workspace.root,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "CI": "true"},
        )

    fast = run()
    assert "gitpipe.workspace" not in fast.stderr and "gitpipe.pipeline.spec" not in fast.stderr
    fast_json = run("--json").stdout
    fast_verbose = run("-v").stdout
    (workspace.root / SNAPSHOT).unlink()
    slow = run()
    assert "gitpipe.workspace" in slow.stderr
    assert fast.stdout == slow.stdout
    assert fast_json == run("--json").stdout
    assert fast_verbose == run("-v").stdout
    assert [s["state"] for s in json.loads(fast_json)] == ["up to date"] * 3


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda root: (root / "data/raw.txt").write_text("changed!\n"), "first"),
        (lambda root: (root / "second.txt").unlink(), "second"),
        (lambda root: (root / "third.txt").write_text("9\n"), "third"),
        (
            lambda root: (root / "gitpipe.toml").write_text(
                (root / "gitpipe.toml").read_text().replace("wc -c", "wc -m")
            ),
            "third",
        ),
        (
            lambda root: (root / "gitpipe.lock").write_text(
                (root / "gitpipe.lock").read_text().split("[steps.second]")[0]
            ),
            "second",
        ),
    ],
    ids=["dep edited", "output removed", "output edited", "pipeline edited", "lock edited"],
)
def test_any_change_to_what_status_read_is_seen(workspace, change, expected):
    kept = (up_to_date(workspace).root / SNAPSHOT).read_bytes()
    change(workspace.root)
    settle()  # past the racy window: only the answer itself can keep a snapshot out
    lines = status_lines(workspace)
    assert " stale" in lines[expected], lines
    # no snapshot is kept of a stale answer: the old one is left as it was (or gone),
    # and its stamps no longer hold
    snapshot = workspace.root / SNAPSHOT
    assert not snapshot.exists() or snapshot.read_bytes() == kept
    assert answer(workspace.root / "gitpipe.toml") is None


def test_a_file_rewritten_with_its_old_size_and_mtime_is_seen(workspace):
    """`cp -p` and tar keep the mtime; only the ctime tells the new bytes apart."""
    up_to_date(workspace)
    raw = workspace.root / "data/raw.txt"
    before = raw.stat()
    raw.write_text("HELLO WORLD\n")  # same size, same inode
    os.utime(raw, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (raw.stat().st_ino, raw.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert "dep changed: data/raw.txt" in status_lines(workspace)["first"]


def rewrite_keeping_size_and_mtime(path: Path, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` (as long) in a file, as `cp -p` or tar would leave it:
    the same inode, size and mtime; only the ctime tells."""
    assert len(old) == len(new)
    before = path.stat()
    path.write_text(path.read_text().replace(old, new, 1))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )


def test_a_pipeline_file_rewritten_with_its_old_size_and_mtime_is_parsed_again(workspace):
    """The parsed-pipeline caches key on the whole stamp, ctime included."""
    up_to_date(workspace)
    rewrite_keeping_size_and_mtime(workspace.root / "gitpipe.toml", "wc -c", "wc -m")
    assert " stale" in status_lines(workspace)["third"]


def test_a_lock_rewritten_with_its_old_size_and_mtime_is_read_again(workspace):
    up_to_date(workspace)
    lock = workspace.root / "gitpipe.lock"
    key = tomllib.loads(lock.read_text())["steps"]["second"]["key"]
    changed = key[:-1] + ("0" if key[-1] != "0" else "1")
    rewrite_keeping_size_and_mtime(lock, key, changed)
    assert " stale" in status_lines(workspace)["second"]


def test_an_output_tracked_by_git_since_is_still_refused(workspace):
    up_to_date(workspace)
    git(workspace.root, "add", "-f", "second.txt")
    result = workspace.gitpipe("status")
    assert result.exit_code != 0
    assert "'second.txt' of step 'second' is tracked by Git" in result.stderr


def test_the_first_repro_of_a_new_workspace_keeps_the_git_check_it_passed(workspace):
    # so that the first status after it skips Git; an output tracked since is still seen
    workspace.write("data/raw.txt", "hello world\n")
    workspace.write(".gitignore", "first.txt\nsecond.txt\nthird.txt\n")
    workspace.pipeline(CHAIN)
    workspace.commit("pipeline")
    settle()  # a Git index within the racy window is never taken as checked
    assert not (workspace.root / ".gitpipe").exists()
    workspace.ok("repro")
    check = workspace.root / ".gitpipe" / "parsed" / "git-check"
    assert check.is_file()
    kept = check.read_text()
    settle()
    assert "stale" not in workspace.ok("status").stdout
    assert check.read_text() == kept  # taken as passed: not checked and kept again
    git(workspace.root, "add", "-f", "second.txt")
    result = workspace.gitpipe("status")
    assert result.exit_code != 0
    assert "'second.txt' of step 'second' is tracked by Git" in result.stderr


def test_an_output_tracked_since_is_refused_under_a_git_folder_that_is_no_repository(
    tmp_path, monkeypatch
):
    # a `.git` folder without objects (an index copied into it, say) is no repository
    # to Git or dulwich, which check the index of the one around it: the Git check
    # kept must rest on that index, not on the one in the folder passed over
    monkeypatch.delenv("GITPIPE_CACHE_DIR", raising=False)
    monkeypatch.setenv("CI", "true")
    outer = make_repo(tmp_path / "outer")
    workspace = Workspace(outer / "sub", cli_runner())
    workspace.write("data/raw.txt", "hello world\n")
    workspace.write(".gitignore", "first.txt\nsecond.txt\nthird.txt\n")
    workspace.pipeline(CHAIN)
    git(outer, "add", "-A")
    git(outer, "commit", "-q", "-m", "pipeline")
    (workspace.root / ".git").mkdir()
    shutil.copy(outer / ".git" / "index", workspace.root / ".git" / "index")
    settle()
    workspace.ok("repro")
    assert (workspace.root / ".gitpipe" / "parsed" / "git-check").is_file()
    settle()
    git(outer, "add", "-f", "sub/second.txt")
    result = workspace.gitpipe("status")
    assert result.exit_code != 0
    assert "'second.txt' of step 'second' is tracked by Git (sub/second.txt)" in result.stderr


def test_an_output_folder_moved_outside_the_repository_is_still_refused(workspace, tmp_path):
    workspace.write("data/raw.txt", "x\n")
    workspace.write(".gitignore", "/out/\n")
    workspace.pipeline(
        """
        [steps.copy]
        cmd = "mkdir -p out/deep && cp data/raw.txt out/deep/copy.txt"
        deps = ["data/raw.txt"]
        outs = ["out/deep/copy.txt"]
        """
    )
    workspace.ok("repro")
    workspace.commit()
    settle()
    workspace.ok("status")
    assert (workspace.root / SNAPSHOT).is_file()
    # the same files (same inodes, same stamps), now reached through a link
    (workspace.root / "out").rename(tmp_path / "elsewhere")
    (workspace.root / "out").symlink_to(tmp_path / "elsewhere")
    result = workspace.gitpipe("status")
    assert result.exit_code != 0
    assert "leads outside the repository" in result.stderr


def test_a_new_module_that_an_import_finds_is_seen(workspace):
    workspace.write("train.py", "try:\n    import helper\nexcept ImportError:\n    helper = None\n")
    workspace.write(".gitignore", "/out.txt\n")
    workspace.pipeline(
        """
        [steps.train]
        cmd = "python train.py > out.txt"
        outs = ["out.txt"]
        """
    )
    workspace.ok("repro")
    workspace.commit()
    settle()
    assert "up to date" in workspace.ok("status").stdout
    assert (workspace.root / SNAPSHOT).is_file()
    # `import helper` found nothing in the repository; now it finds helper.py
    workspace.write("helper.py", "VALUE = 2\n")
    assert "code added: helper.py" in status_lines(workspace)["train"]


def test_a_new_file_matching_a_code_glob_is_seen(workspace):
    workspace.write("lib/a.py", "A = 1\n")
    workspace.write(".gitignore", "/out.txt\n")
    workspace.pipeline(
        """
        [steps.build]
        cmd = "cat lib/a.py > out.txt"
        code = ["lib/**/*.py"]
        outs = ["out.txt"]
        """
    )
    workspace.ok("repro")
    workspace.commit()
    settle()
    workspace.ok("status")
    assert (workspace.root / SNAPSHOT).is_file()
    workspace.write("lib/deeper/b.py", "B = 2\n")
    assert "code added: lib/deeper/b.py" in status_lines(workspace)["build"]


def test_an_edited_nested_pipeline_is_seen(workspace):
    workspace.write("sub/in.txt", "x\n")
    workspace.write(".gitignore", "/sub/out.txt\n")
    workspace.write(
        "sub/gitpipe.toml",
        """
        [steps.inner]
        cmd = "cp in.txt out.txt"
        deps = ["in.txt"]
        outs = ["out.txt"]
        """,
    )
    workspace.pipeline('[steps.sub]\npipeline = "sub/gitpipe.toml"\n')
    workspace.ok("repro")
    workspace.commit()
    settle()
    workspace.ok("status")
    assert (workspace.root / SNAPSHOT).is_file()
    nested = workspace.root / "sub/gitpipe.toml"
    nested.write_text(nested.read_text().replace("cp in.txt", "cat in.txt >"))
    assert "command changed" in status_lines(workspace)["sub/inner"]


def test_no_snapshot_when_a_step_is_stale_or_steps_are_named(workspace):
    up_to_date(workspace)
    (workspace.root / SNAPSHOT).unlink()
    workspace.ok("status", "second")
    assert not (workspace.root / SNAPSHOT).exists()
    workspace.write("data/raw.txt", "changed!\n")
    settle()
    workspace.ok("status")
    assert not (workspace.root / SNAPSHOT).exists()


def test_named_steps_are_not_answered_from_the_snapshot(workspace):
    up_to_date(workspace)
    assert list(status_lines(workspace, "second")) == ["first", "second"]  # and upstream


def test_no_snapshot_rests_on_a_stamp_within_the_racy_window(workspace):
    up_to_date(workspace)
    (workspace.root / SNAPSHOT).unlink()
    raw = workspace.root / "data/raw.txt"
    soon = time.time_ns() + 5 * 10**9  # an mtime later than status starts
    os.utime(raw, ns=(soon, soon))
    workspace.ok("status")
    assert not (workspace.root / SNAPSHOT).exists()


def test_a_damaged_snapshot_is_ignored_and_replaced(workspace):
    up_to_date(workspace)
    (workspace.root / SNAPSHOT).write_bytes(b"\x00not marshal data")
    assert "up to date" in status_lines(workspace)["third"]
    settle()
    workspace.ok("status")
    assert (workspace.root / SNAPSHOT).read_bytes() != b"\x00not marshal data"


def test_status_without_state_writes_no_snapshot(workspace):
    workspace.write("data/raw.txt", "hello world\n")
    workspace.pipeline(CHAIN)
    workspace.ok("status")
    assert not (workspace.root / ".gitpipe").exists()


def test_the_racy_window_is_the_timestamp_tick():
    second = 1_700_000_000 * 10**9
    assert racy(second, second + 10**9)  # whole seconds: wait two
    assert not racy(second, second + 2 * 10**9)
    assert racy(second + 123_456_789, second + 123_456_789 + 10**7)  # sub-second: 50 ms
    assert not racy(second + 123_456_789, second + 123_456_789 + 60 * 10**6)


def test_a_touched_file_is_read_once_then_not_again(tmp_path, monkeypatch):
    data = tmp_path / "data.bin"
    data.write_bytes(b"x" * 100_000)
    reads = []
    real = gitpipe.identity.statcache.digest_file
    monkeypatch.setattr(
        gitpipe.identity.statcache,
        "digest_file",
        lambda path, **kw: reads.append(path) or real(path, **kw),
    )
    settle()
    cache = StatCache(tmp_path / "stat.db")
    first = Hasher(tmp_path, cache).state("data.bin")
    cache.close()
    os.utime(data)  # touch: the same bytes
    settle()
    for _ in range(2):
        cache = StatCache(tmp_path / "stat.db")
        assert Hasher(tmp_path, cache).state("data.bin") == first
        cache.close()
    assert len(reads) == 2  # once at first, once after the touch


def keys_of_last_run(workspace: Workspace) -> dict[str, tuple[str, str]]:
    with closing(sqlite3.connect(workspace.root / ".gitpipe" / "lineage.db")) as db:
        (run_id,) = db.execute("SELECT id FROM runs ORDER BY rowid DESC LIMIT 1").fetchone()
        rows = db.execute("SELECT step, state, key FROM executions WHERE run_id = ?", (run_id,))
        return {step: (state, key) for step, state, key in rows}


def test_a_no_op_repro_after_status_records_the_same_keys(workspace):
    up_to_date(workspace)
    (workspace.root / SNAPSHOT).unlink()
    workspace.ok("repro")  # no snapshot: every step checked
    checked = keys_of_last_run(workspace)
    settle()
    workspace.ok("status")
    assert (workspace.root / SNAPSHOT).is_file()
    workspace.ok("repro")
    assert keys_of_last_run(workspace) == checked
    assert {state for state, _ in checked.values()} == {"up to date"}


def test_forced_and_experiment_runs_do_not_take_the_snapshot_s_word(workspace):
    workspace.write(".gitignore", "/said.txt\n")
    workspace.pipeline(
        """
        [params]
        word = "one"

        [steps.say]
        cmd = "echo ${params.word} > said.txt"
        outs = ["said.txt"]
        """
    )
    workspace.ok("repro")
    workspace.commit()
    settle()
    workspace.ok("status")
    assert (workspace.root / SNAPSHOT).is_file()
    workspace.ok("repro", "-p", "word=two")
    assert workspace.ran() == ["say"]
    assert (workspace.root / "said.txt").read_text() == "two\n"
    workspace.ok("repro")  # back to the committed params: restored from the store
    assert workspace.states() == {"say": "cached"}
    settle()
    workspace.ok("status")
    assert (workspace.root / SNAPSHOT).is_file()
    workspace.ok("repro", "--force")
    assert workspace.ran() == ["say"]


def test_a_repro_after_a_change_runs_what_changed_despite_an_old_snapshot(workspace):
    up_to_date(workspace)
    workspace.write("data/raw.txt", "changed!\n")
    workspace.ok("repro")
    assert workspace.ran() == ["first", "second", "third"]


def lock_of(workspace: Workspace) -> dict:
    return tomllib.loads((workspace.root / "gitpipe.lock").read_text())


def test_a_no_op_repro_still_rewrites_a_lock_whose_version_moved_with_head(workspace):
    workspace.write("README.md", "before the pipeline\n")
    workspace.commit("no pipeline yet")
    up_to_date(workspace)  # the pipeline's first commit: 1.0.0
    workspace.pipeline(CHAIN.replace("wc -c", "wc -m"))
    workspace.ok("repro")
    workspace.commit("a command changed")
    bumped = lock_of(workspace)["pipeline"]["version"]
    assert bumped != "1.0.0"
    settle()
    workspace.ok("status")
    git(workspace.root, "reset", "-q", "--soft", "HEAD~2")  # HEAD has no pipeline now
    assert answer(workspace.root / "gitpipe.toml") is not None  # the snapshot holds
    workspace.ok("repro")
    assert workspace.states() == {
        "first": "up to date",
        "second": "up to date",
        "third": "up to date",
    }
    assert lock_of(workspace)["pipeline"]["version"] == "1.0.0"


def test_a_no_op_repro_still_drops_the_lock_entry_of_a_removed_step(workspace):
    up_to_date(workspace)
    workspace.pipeline(CHAIN.split("[steps.third]")[0])
    workspace.ok("status")
    settle()
    workspace.ok("status")
    assert (workspace.root / SNAPSHOT).is_file()
    workspace.ok("repro")
    assert sorted(lock_of(workspace)["steps"]) == ["first", "second"]
