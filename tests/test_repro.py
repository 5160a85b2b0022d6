"""The behaviours of `gitpipe repro` and `gitpipe status` that issue 2 pins."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from conftest import CHAIN, Workspace, git, snapshot


def chain(workspace: Workspace) -> Workspace:
    workspace.write("data/raw.txt", "hello world\n")
    workspace.write(".gitignore", "first.txt\nsecond.txt\nthird.txt\n")
    workspace.pipeline(CHAIN)
    workspace.commit("pipeline")
    return workspace


def store_objects(root: Path) -> list[Path]:
    return sorted(p for p in (root / ".gitpipe" / "cache" / "objects").rglob("*") if p.is_file())


def results(root: Path) -> list[Path]:
    base = root / ".gitpipe" / "cache" / "results"
    return sorted(p for p in base.rglob("*.json")) if base.exists() else []


def test_a_fresh_pipeline_runs_every_step_once_in_order_then_nothing(workspace):
    chain(workspace)
    workspace.ok("repro")
    assert workspace.last_run() == [("first", "ran"), ("second", "ran"), ("third", "ran")]
    assert (workspace.root / "second.txt").read_text() == "DLROW OLLEH\n"
    lock = (workspace.root / "gitpipe.lock").read_text()

    again = workspace.ok("repro")
    assert workspace.ran() == []
    assert set(workspace.states().values()) == {"up to date"}
    assert "0 ran" in again.stdout
    assert (workspace.root / "gitpipe.lock").read_text() == lock


def test_editing_one_command_reruns_it_and_changed_dependents_and_undoing_restores_it(workspace):
    workspace.write("data/raw.txt", "hello\n")
    workspace.pipeline(
        """
        [steps.shout]
        cmd = "tr a-z A-Z < data/raw.txt > shout.txt"
        deps = ["data/raw.txt"]
        outs = ["shout.txt"]

        [steps.count]
        cmd = "wc -c < shout.txt > count.txt"
        deps = ["shout.txt"]
        outs = ["count.txt"]

        [steps.report]
        cmd = "cat count.txt > report.txt"
        deps = ["count.txt"]
        outs = ["report.txt"]

        [steps.other]
        cmd = "cp data/raw.txt other.txt"
        deps = ["data/raw.txt"]
        outs = ["other.txt"]
        """
    )
    workspace.ok("repro")
    original = (workspace.root / "shout.txt").read_bytes()

    text = (workspace.root / "gitpipe.toml").read_text()
    workspace.write("gitpipe.toml", text.replace("tr a-z A-Z", "tr a-z b-za"))
    workspace.ok("repro")
    # count re-runs (its input changed) but writes the same length: report is cut off
    assert workspace.states() == {
        "shout": "ran",
        "count": "ran",
        "report": "up to date",
        "other": "up to date",
    }
    assert (workspace.root / "shout.txt").read_bytes() != original

    workspace.write("gitpipe.toml", text)
    workspace.ok("repro")
    assert workspace.states() == {
        "shout": "cached",
        "count": "cached",
        "report": "up to date",
        "other": "up to date",
    }
    assert (workspace.root / "shout.txt").read_bytes() == original


def test_changing_a_data_file_reruns_its_consumers_in_order(workspace):
    chain(workspace)
    workspace.ok("repro")
    workspace.write("data/raw.txt", "goodbye\n")
    workspace.ok("repro")
    assert workspace.last_run() == [("first", "ran"), ("second", "ran"), ("third", "ran")]
    assert (workspace.root / "third.txt").read_text().strip() == "8"


def test_changing_a_param_reruns_exactly_the_steps_that_use_it(workspace):
    pipeline = """
        [params]
        greeting = "hi"
        unused = 1
        [params.train]
        lr = 0.1
        epochs = 3

        [steps.greet]
        cmd = "echo ${params.greeting} > greet.txt"
        outs = ["greet.txt"]

        [steps.train]
        cmd = "echo \\"$GITPIPE_PARAMS\\" > train.txt"
        params = ["train"]
        outs = ["train.txt"]

        [steps.plain]
        cmd = "echo plain > plain.txt"
        outs = ["plain.txt"]
        """
    workspace.pipeline(pipeline)
    workspace.ok("repro")
    assert '"lr": 0.1' in (workspace.root / "train.txt").read_text()

    workspace.pipeline(pipeline.replace("lr = 0.1", "lr = 0.2"))
    status = workspace.ok("status")
    assert "params changed: train.lr" in status.stdout
    workspace.ok("repro")
    assert workspace.ran() == ["train"]

    workspace.pipeline(pipeline.replace("lr = 0.1", "lr = 0.2").replace('"hi"', '"hello"'))
    workspace.ok("repro")
    assert workspace.ran() == ["greet"]

    workspace.pipeline(
        pipeline.replace("lr = 0.1", "lr = 0.2")
        .replace('"hi"', '"hello"')
        .replace("unused = 1", "unused = 2")
    )
    workspace.ok("repro")
    assert workspace.ran() == []


STAMPED = """
[steps.stamp]
cmd = "date +%s%N > stamp.txt"
outs = ["stamp.txt"]

[steps.copy]
cmd = "cp stamp.txt copy.txt"
deps = ["stamp.txt"]
outs = ["copy.txt"]
"""


def test_deleting_an_output_restores_it_from_the_store_without_running(workspace):
    workspace.pipeline(STAMPED)
    workspace.ok("repro")
    stamp = (workspace.root / "stamp.txt").read_bytes()  # a re-run would write a new time

    (workspace.root / "stamp.txt").unlink()
    status = workspace.ok("status")
    assert "out missing: stamp.txt" in status.stdout
    workspace.ok("repro")
    assert workspace.states() == {"stamp": "cached", "copy": "up to date"}
    assert (workspace.root / "stamp.txt").read_bytes() == stamp


def test_deleting_the_lock_restores_from_the_store_without_running(workspace):
    workspace.pipeline(STAMPED)
    workspace.ok("repro")
    stamp = (workspace.root / "stamp.txt").read_bytes()
    lock = (workspace.root / "gitpipe.lock").read_bytes()

    (workspace.root / "gitpipe.lock").unlink()
    (workspace.root / "stamp.txt").unlink()
    (workspace.root / "copy.txt").unlink()
    workspace.ok("repro")
    assert workspace.states() == {"stamp": "cached", "copy": "cached"}
    assert (workspace.root / "copy.txt").read_bytes() == stamp
    assert (workspace.root / "gitpipe.lock").read_bytes() == lock


def test_a_folder_dep_is_stale_after_adding_removing_or_editing_a_file_in_it(workspace):
    workspace.write("inputs/a.txt", "a\n")
    workspace.write("inputs/sub/b.txt", "b\n")
    workspace.pipeline(
        """
        [steps.gather]
        cmd = "cat inputs/a.txt > all.txt; ls -R inputs >> all.txt"
        deps = ["inputs/"]
        outs = ["all.txt"]
        """
    )
    workspace.ok("repro")

    for change, state in (
        (lambda: workspace.write("inputs/c.txt", "c\n"), "ran"),
        # removing it again brings back the first state, whose result is stored
        (lambda: (workspace.root / "inputs/c.txt").unlink(), "cached"),
        (lambda: workspace.write("inputs/sub/b.txt", "B\n"), "ran"),
    ):
        change()
        status = workspace.ok("status")
        assert "dep changed: inputs/" in status.stdout
        workspace.ok("repro")
        assert workspace.states() == {"gather": state}


def test_a_folder_output_with_a_foreign_file_is_reported_modified(workspace):
    workspace.pipeline(
        """
        [steps.split]
        cmd = "mkdir -p parts && echo 1 > parts/one && echo 2 > parts/two"
        outs = ["parts/"]
        """
    )
    workspace.ok("repro")
    workspace.write("parts/foreign.txt", "not mine\n")
    status = workspace.ok("status")
    assert "out modified: parts/" in status.stdout
    workspace.ok("repro")
    assert workspace.states() == {"split": "cached"}
    assert sorted(p.name for p in (workspace.root / "parts").iterdir()) == ["one", "two"]


def test_dry_run_lists_what_would_run_and_writes_nothing(workspace):
    chain(workspace)
    workspace.ok("repro")
    workspace.write("data/raw.txt", "changed\n")
    before = snapshot(workspace.root)

    result = workspace.ok("repro", "--dry-run")
    assert "first: would run (dep changed: data/raw.txt)" in result.stdout
    assert "second: would run" in result.stdout
    assert snapshot(workspace.root) == before


def test_dry_run_on_a_fresh_pipeline_creates_no_state(workspace):
    chain(workspace)
    before = snapshot(workspace.root)
    result = workspace.ok("repro", "-n")
    assert "3 would run" in result.stdout
    assert snapshot(workspace.root) == before
    assert not (workspace.root / ".gitpipe").exists()


def test_always_runs_every_time_and_frozen_never_runs(workspace):
    workspace.pipeline(
        """
        [steps.clock]
        cmd = "date +%s%N > clock.txt"
        outs = ["clock.txt"]
        always = true

        [steps.ice]
        cmd = "echo melted > ice.txt"
        outs = ["ice.txt"]
        frozen = true
        """
    )
    workspace.ok("repro")
    assert workspace.states() == {"clock": "ran", "ice": "frozen"}
    workspace.ok("repro")
    assert workspace.states() == {"clock": "ran", "ice": "frozen"}
    assert not (workspace.root / "ice.txt").exists()
    status = workspace.ok("status")
    assert "clock  stale  always" in status.stdout
    assert "ice    frozen" in status.stdout


def test_a_missing_declared_output_fails_the_step_and_stores_nothing(workspace):
    workspace.pipeline(
        """
        [steps.lazy]
        cmd = "echo forgot > other.txt"
        outs = ["promised.txt"]

        [steps.after]
        cmd = "cp promised.txt after.txt"
        deps = ["promised.txt"]
        outs = ["after.txt"]
        """
    )
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1
    assert "did not produce its declared output promised.txt" in result.stderr
    assert "held back: after" in result.stderr
    assert workspace.states() == {"lazy": "failed", "after": "skipped"}
    assert results(workspace.root) == []
    assert not (workspace.root / ".gitpipe" / "cache" / "objects").exists() or not store_objects(
        workspace.root
    )
    assert not (workspace.root / "gitpipe.lock").exists()


def test_a_list_cmd_stops_at_the_first_failing_command(workspace):
    workspace.pipeline(
        """
        [steps.steps]
        cmd = ["echo one > one.txt", "false", "echo three > three.txt"]
        outs = ["one.txt"]
        """
    )
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1
    assert "command 2 of 3 exited with code 1" in result.stderr
    assert not (workspace.root / "three.txt").exists()


def test_a_failing_step_keeps_what_its_siblings_produced(workspace):
    workspace.pipeline(
        """
        [steps.good]
        cmd = "echo good > good.txt"
        outs = ["good.txt"]

        [steps.bad]
        cmd = "echo oops && exit 3"
        outs = ["bad.txt"]

        [steps.downstream]
        cmd = "cp bad.txt downstream.txt"
        deps = ["bad.txt"]
        outs = ["downstream.txt"]
        """
    )
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1
    assert "bad: failed: the command exited with code 3" in result.stderr
    assert workspace.states() == {"good": "ran", "bad": "failed", "downstream": "skipped"}
    lock = (workspace.root / "gitpipe.lock").read_text()
    assert "[steps.good]" in lock
    assert "[steps.bad]" not in lock
    log = next((workspace.root / ".gitpipe" / "logs").rglob("bad.log")).read_text()
    assert "oops" in log

    workspace.ok("repro", "good")
    assert workspace.states() == {"good": "up to date"}


def test_the_key_is_the_same_in_two_clones_and_a_shared_store_runs_nothing(workspace, tmp_path):
    workspace.pipeline(STAMPED)
    workspace.write(".gitignore", "stamp.txt\ncopy.txt\n")
    workspace.commit("pipeline")
    store = tmp_path / "shared-store"
    workspace.ok("repro", env={"GITPIPE_CACHE_DIR": str(store)})
    stamp = (workspace.root / "stamp.txt").read_bytes()

    clone = tmp_path / "elsewhere" / "clone"
    clone.parent.mkdir()
    git(tmp_path, "clone", "-q", str(workspace.root), str(clone))
    other = Workspace(clone, workspace.runner)
    other.ok("repro", env={"GITPIPE_CACHE_DIR": str(store)})
    assert other.states() == {"stamp": "cached", "copy": "cached"}
    assert (clone / "stamp.txt").read_bytes() == stamp

    keys = [s["key"] for s in __import__("json").loads(workspace.ok("status", "--json").stdout)]
    other_keys = [s["key"] for s in __import__("json").loads(other.ok("status", "--json").stdout)]
    assert keys == other_keys


def test_lineage_records_the_commit_and_dirty_flag(workspace):
    chain(workspace)
    workspace.ok("repro")
    head = git(workspace.root, "rev-parse", "HEAD").strip()
    with sqlite3.connect(workspace.root / ".gitpipe" / "lineage.db") as db:
        commit, dirty, status = db.execute("SELECT git_commit, dirty, status FROM runs").fetchone()
    assert (commit, dirty, status) == (head, 0, "ok")

    workspace.write("data/raw.txt", "edited\n")
    workspace.ok("repro")
    with sqlite3.connect(workspace.root / ".gitpipe" / "lineage.db") as db:
        rows = db.execute("SELECT dirty FROM runs ORDER BY started").fetchall()
    assert rows[-1] == (1,)


def test_a_change_staged_but_not_committed_is_dirty_too(workspace):
    chain(workspace)
    workspace.ok("repro")
    workspace.write("notes.txt", "staged, never committed\n")
    git(workspace.root, "add", "notes.txt")
    workspace.ok("repro")
    with sqlite3.connect(workspace.root / ".gitpipe" / "lineage.db") as db:
        rows = db.execute("SELECT dirty FROM runs ORDER BY started").fetchall()
    assert rows == [(0,), (1,)]


def test_a_no_op_repro_leaves_the_lock_alone_but_rewrites_one_edited_by_hand(workspace):
    chain(workspace)
    workspace.ok("repro")
    lock = workspace.root / "gitpipe.lock"
    written = lock.read_text()
    old = time.time_ns() - 60 * 10**9  # outside the racy window
    os.utime(lock, ns=(old, old))
    workspace.ok("repro")  # compares the bytes, and remembers that they are gitpipe's
    workspace.ok("repro")  # trusts that: not even written out to compare
    assert lock.stat().st_mtime_ns == old
    assert lock.read_text() == written

    # the same size, a different mtime: the stamp gitpipe remembered no longer holds
    lock.write_text(written.replace("Written by gitpipe", "Written by hand!"))
    os.utime(lock, ns=(old + 10**9, old + 10**9))
    workspace.ok("repro")
    assert lock.read_text() == written


DATED = """
[params]
start = 2024-01-02

[steps.a]
cmd = "python3 -c 'import os; print(os.environ[\\"GITPIPE_PARAMS\\"])' > out.txt"
params = ["start"]
outs = ["out.txt"]
"""


def test_a_date_param_reaches_the_command_as_its_iso_text(workspace):
    workspace.write(".gitignore", "out.txt\n")
    workspace.pipeline(DATED)
    workspace.ok("repro")
    assert (workspace.root / "out.txt").read_text() == '{"start": "2024-01-02"}\n'
    assert "start = 2024-01-02" in (workspace.root / "gitpipe.lock").read_text()
    workspace.ok("repro", "-p", "start=2025-03-04")  # an override of a date, too
    assert (workspace.root / "out.txt").read_text() == '{"start": "2025-03-04"}\n'
