"""`link = "hardlink" | "symlink"`: outputs that are the store's own read-only objects.

Real Git repositories and the real CLI on the machine's file systems: the store and
the workspace on one device for the links, and a store on tmpfs (another device)
for the fall-back to copies.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from conftest import Workspace, lock_steps, refused

from gitpipe.core.hashing import Digest, digest_file
from gitpipe.store.objects import Store

PIPELINE = """
[pipeline]
link = "{link}"

[steps.make]
cmd = [
    "mkdir -p folder",
    "echo hello > folder/a.txt",
    "echo world > folder/b.txt",
    "echo one > one.txt",
]
outs = ["folder/", "one.txt"]

[steps.copy]
cmd = "cat one.txt folder/a.txt > two.txt"
deps = ["one.txt", "folder/"]
outs = ["two.txt"]
"""
OUTPUTS = ("one.txt", "folder/a.txt", "folder/b.txt", "two.txt")


def linked(workspace: Workspace, link: str) -> Workspace:
    workspace.write(".gitignore", "*.txt\nfolder/\n")
    workspace.pipeline(PIPELINE.format(link=link))
    workspace.commit("pipeline")
    workspace.ok("repro")
    return workspace


def object_of(workspace: Workspace, relpath: str) -> Path:
    store = Store(workspace.root / ".gitpipe" / "cache")
    return store.object_path(digest_file(workspace.root / relpath))


def is_the_object(workspace: Workspace, relpath: str) -> bool:
    path = workspace.root / relpath
    return os.path.samefile(path, object_of(workspace, relpath))


def test_hardlinked_outputs_are_the_stored_objects_and_read_only(workspace):
    linked(workspace, "hardlink")
    for relpath in OUTPUTS:
        path = workspace.root / relpath
        assert not path.is_symlink()
        assert is_the_object(workspace, relpath), relpath
        assert stat.S_IMODE(path.stat().st_mode) == 0o444
    assert (workspace.root / "two.txt").read_text() == "one\nhello\n"
    assert "up to date" in workspace.ok("status").stdout
    assert workspace.ok("status", "--check").exit_code == 0


def test_symlinked_outputs_point_into_the_store_and_dependents_read_them(workspace):
    linked(workspace, "symlink")
    for relpath in OUTPUTS:
        path = workspace.root / relpath
        assert path.is_symlink(), relpath
        assert Path(os.readlink(path)).is_relative_to(workspace.root / ".gitpipe" / "cache")
        assert is_the_object(workspace, relpath)
    assert (workspace.root / "two.txt").read_text() == "one\nhello\n"
    workspace.ok("repro")
    assert workspace.ran() == []
    workspace.ok("status", "--check")


def test_a_symlink_into_a_store_outside_the_repository_is_not_an_escaping_output(
    workspace, tmp_path
):
    env = {"GITPIPE_CACHE_DIR": str(tmp_path / "shared-store")}
    workspace.write(".gitignore", "*.txt\nfolder/\n")
    workspace.pipeline(PIPELINE.format(link="symlink"))
    workspace.commit("pipeline")
    workspace.ok("repro", env=env)
    assert os.readlink(workspace.root / "one.txt").startswith(str(tmp_path / "shared-store"))
    workspace.ok("repro", env=env)
    assert workspace.ran() == []


@pytest.mark.parametrize("link", ["hardlink", "symlink"])
def test_deleted_outputs_come_back_as_links_without_running(workspace, link):
    linked(workspace, link)
    for relpath in ("one.txt", "two.txt"):
        (workspace.root / relpath).unlink()
    os.chmod(workspace.root / "folder", 0o755)
    for item in (workspace.root / "folder").iterdir():
        item.unlink()
    (workspace.root / "folder").rmdir()
    workspace.ok("repro")
    assert workspace.states() == {"make": "cached", "copy": "cached"}
    for relpath in OUTPUTS:
        assert is_the_object(workspace, relpath), relpath
        assert (workspace.root / relpath).is_symlink() == (link == "symlink")


def test_the_link_mode_never_enters_a_key_and_changing_it_runs_nothing(workspace):
    linked(workspace, "copy")
    keys = {name: entry["key"] for name, entry in lock_steps(workspace).items()}
    assert not is_the_object(workspace, "one.txt")
    assert stat.S_IMODE((workspace.root / "one.txt").stat().st_mode) == 0o644
    for link in ("hardlink", "symlink"):
        workspace.pipeline(PIPELINE.format(link=link))
        workspace.ok("repro")
        assert workspace.ran() == []
        assert {name: entry["key"] for name, entry in lock_steps(workspace).items()} == keys
    # the mode takes effect where outputs are written or restored next
    (workspace.root / "two.txt").unlink()
    workspace.ok("repro")
    assert (workspace.root / "two.txt").is_symlink()


def test_a_rerun_whose_bytes_are_stored_already_still_ends_as_a_link(workspace):
    linked(workspace, "hardlink")
    workspace.ok("repro", "--force")
    assert sorted(workspace.ran()) == ["copy", "make"]
    for relpath in OUTPUTS:
        assert is_the_object(workspace, relpath), relpath
        assert (workspace.root / relpath).stat().st_nlink == 2


def test_a_step_can_choose_its_own_mode(workspace):
    workspace.write(".gitignore", "*.txt\n")
    workspace.pipeline(
        """
        [pipeline]
        link = "hardlink"

        [steps.big]
        cmd = "echo big > big.txt"
        outs = ["big.txt"]

        [steps.small]
        cmd = "echo small > small.txt"
        outs = ["small.txt"]
        link = "copy"
        """
    )
    workspace.ok("repro")
    assert is_the_object(workspace, "big.txt")
    assert not is_the_object(workspace, "small.txt")
    assert stat.S_IMODE((workspace.root / "small.txt").stat().st_mode) == 0o644


def test_executable_outputs_stay_executable_copies(workspace):
    workspace.write(".gitignore", "*.sh\n")
    workspace.pipeline(
        """
        [pipeline]
        link = "hardlink"

        [steps.tool]
        cmd = "printf 'echo hi\\n' > tool.sh && chmod +x tool.sh"
        outs = ["tool.sh"]
        """
    )
    workspace.ok("repro")
    tool = workspace.root / "tool.sh"
    assert os.access(tool, os.X_OK)
    assert not is_the_object(workspace, "tool.sh")
    tool.unlink()
    workspace.ok("repro")
    assert os.access(tool, os.X_OK)
    assert not is_the_object(workspace, "tool.sh")


def test_a_persisting_step_keeps_writable_copies_so_it_never_writes_into_the_store(
    workspace,
):
    workspace.write(".gitignore", "*.txt\n")
    workspace.pipeline(
        """
        [pipeline]
        link = "hardlink"

        [steps.grow]
        cmd = "echo line >> log.txt"
        outs = ["log.txt"]
        persist = true
        always = true
        """
    )
    workspace.ok("repro")
    first = digest_file(workspace.root / "log.txt")
    assert not is_the_object(workspace, "log.txt")
    workspace.ok("repro")
    assert (workspace.root / "log.txt").read_text() == "line\nline\n"
    store = Store(workspace.root / ".gitpipe" / "cache")
    assert store.verify(first)
    assert store.read_bytes(first) == b"line\n"


def test_an_output_that_is_another_files_link_is_not_taken_into_the_store(workspace):
    """`ln input out`: linking `out` into the store would make the input read-only and
    let an edit of the input change a stored object."""
    workspace.write(".gitignore", "out.txt\n")
    workspace.write("input.txt", "mine\n")
    workspace.pipeline(
        """
        [pipeline]
        link = "hardlink"

        [steps.alias]
        cmd = "ln input.txt out.txt"
        deps = ["input.txt"]
        outs = ["out.txt"]
        """
    )
    workspace.commit("pipeline")
    workspace.ok("repro")
    data = workspace.root / "input.txt"
    assert stat.S_IMODE(data.stat().st_mode) == 0o644
    assert data.stat().st_nlink == 1  # out.txt became the store's object instead
    assert is_the_object(workspace, "out.txt")
    stored = digest_file(workspace.root / "out.txt")
    data.write_text("edited\n")
    assert Store(workspace.root / ".gitpipe" / "cache").verify(stored)


def test_a_store_on_another_device_gives_copies(workspace):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(workspace.root).st_dev:
        pytest.skip("no file system other than the workspace's to put the store on")
    with tempfile.TemporaryDirectory(dir=shm) as other:
        env = {"GITPIPE_CACHE_DIR": other}
        workspace.write(".gitignore", "*.txt\nfolder/\n")
        workspace.pipeline(PIPELINE.format(link="hardlink"))
        workspace.commit("pipeline")
        workspace.ok("repro", env=env)
        for relpath in OUTPUTS:
            path = workspace.root / relpath
            assert path.stat().st_nlink == 1
            assert stat.S_IMODE(path.stat().st_mode) == 0o644
        (workspace.root / "two.txt").unlink()
        workspace.ok("repro", env=env)
        assert workspace.states()["copy"] == "cached"
        assert (workspace.root / "two.txt").read_text() == "one\nhello\n"


def stamps(workspace: Workspace) -> dict[str, tuple[int, int, str]]:
    with closing(sqlite3.connect(workspace.root / ".gitpipe" / "stat.db")) as db:
        rows = db.execute("SELECT path, inode, hashed_ns, digest FROM files").fetchall()
    return {path: (inode, hashed, digest) for path, inode, hashed, digest in rows}


@pytest.mark.parametrize("link", ["hardlink", "symlink"])
def test_a_status_after_restoring_links_reads_no_output_again(workspace, link):
    linked(workspace, link)
    past = time.time() - 60
    for relpath in OUTPUTS:  # stored long ago: outside the stat cache's racy window
        os.utime(object_of(workspace, relpath), (past, past))
    for relpath in ("one.txt", "two.txt"):
        (workspace.root / relpath).unlink()
    workspace.ok("repro")
    assert workspace.states()["make"] == "cached"
    restored = stamps(workspace)
    for relpath in ("one.txt", "two.txt"):
        stored = object_of(workspace, relpath)
        assert restored[relpath][0] == stored.stat().st_ino
        assert restored[relpath][2] == stored.parent.name + stored.name
    workspace.ok("status", "--check")
    assert stamps(workspace) == restored


@pytest.mark.parametrize(
    ("header", "step", "key"),
    [
        ('link = "reflink"', "", "pipeline.link"),
        ("link = true", "", "pipeline.link"),
        ("", 'link = "hard"', "steps.make.link"),
    ],
)
def test_an_unknown_link_mode_is_refused_and_changes_nothing(workspace, header, step, key):
    workspace.write(".gitignore", "*.txt\n")
    workspace.pipeline(
        f"""
[pipeline]
{header}

[steps.make]
cmd = "echo one > one.txt"
outs = ["one.txt"]
{step}
"""
    )
    for command in ("repro", "status"):
        message = refused(workspace, command, says=("gitpipe.toml", key, "must be one of"))
        assert "'copy', 'hardlink', 'symlink'" in message


def test_the_store_places_a_link_or_a_copy_as_asked(tmp_path):
    store = Store(tmp_path / "store")
    digest = store.add_bytes(b"bytes\n")
    source = store.object_path(digest)
    store.restore_file(digest, tmp_path / "hard", link="hardlink")
    store.restore_file(digest, tmp_path / "soft", link="symlink")
    store.restore_file(digest, tmp_path / "copy")
    assert os.path.samefile(tmp_path / "hard", source)
    assert os.readlink(tmp_path / "soft") == str(source)
    assert not os.path.samefile(tmp_path / "copy", source)
    assert stat.S_IMODE((tmp_path / "copy").stat().st_mode) == 0o644
    for name in ("hard", "soft", "copy"):
        assert Digest.parse(str(digest_file(tmp_path / name))) == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "hard", "soft", "store"]


@pytest.mark.parametrize("target", ["absolute", "relative"])
def test_a_symlink_a_step_leaves_as_its_output_is_copied_in_and_its_target_left_alone(
    workspace, target
):
    workspace.write(".gitignore", "out.bin\n")
    data = workspace.write("data/raw.bin", "raw bytes\n")
    points_to = str(data) if target == "absolute" else "data/raw.bin"
    workspace.pipeline(
        f"""
        [pipeline]
        link = "hardlink"

        [steps.alias]
        cmd = "ln -s {points_to} out.bin"
        deps = ["data/raw.bin"]
        outs = ["out.bin"]
        """
    )
    workspace.commit("pipeline")
    workspace.ok("repro")
    assert stat.S_IMODE(data.stat().st_mode) == 0o644
    stored = object_of(workspace, "out.bin")
    assert stored.is_file() and not stored.is_symlink()
    assert not os.path.samefile(stored, data)
    data.write_text("edited\n")
    assert Store(workspace.root / ".gitpipe" / "cache").verify(digest_file(stored))


def test_a_symlink_inside_a_folder_output_never_makes_its_target_read_only(workspace):
    # a link leading out of the repository fails the step: tests/test_protected_paths.py
    target = workspace.write("data/not-an-output.txt", "not gitpipe's\n")
    workspace.write(".gitignore", "folder/\n")
    workspace.pipeline(
        f"""
        [pipeline]
        link = "hardlink"

        [steps.make]
        cmd = ["mkdir -p folder", "ln -s {target} folder/link.txt", "echo mine > folder/own.txt"]
        outs = ["folder/"]
        """
    )
    workspace.ok("repro")
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert target.stat().st_nlink == 1
    assert is_the_object(workspace, "folder/own.txt")
    assert is_the_object(workspace, "folder/link.txt")  # replaced by the stored copy


def test_executable_files_in_a_linked_folder_stay_executable_copies(workspace):
    workspace.write(".gitignore", "bin/\n")
    workspace.pipeline(
        """
        [pipeline]
        link = "hardlink"

        [steps.tools]
        cmd = ["mkdir -p bin", "printf 'echo hi\\n' > bin/run.sh", "chmod +x bin/run.sh",
               "echo notes > bin/README"]
        outs = ["bin/"]
        """
    )
    workspace.ok("repro")
    run = workspace.root / "bin" / "run.sh"
    assert os.access(run, os.X_OK) and not is_the_object(workspace, "bin/run.sh")
    assert is_the_object(workspace, "bin/README")
    folder = workspace.root / "bin"
    for item in folder.iterdir():
        item.unlink()
    folder.rmdir()
    workspace.ok("repro")
    assert workspace.states() == {"tools": "cached"}
    assert os.access(run, os.X_OK) and not is_the_object(workspace, "bin/run.sh")
    assert is_the_object(workspace, "bin/README")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755


def test_turning_persist_on_after_a_linked_run_copies_the_outputs_before_the_step_writes(
    workspace,
):
    workspace.write(".gitignore", "log.txt\nfolder/\n")
    step = """
        [pipeline]
        link = "{link}"

        [steps.grow]
        cmd = ["echo line >> log.txt", "mkdir -p folder", "echo line >> folder/log.txt"]
        outs = ["log.txt", "folder/"]
        {persist}
        """
    workspace.pipeline(step.format(link="symlink", persist=""))
    workspace.ok("repro")
    assert is_the_object(workspace, "log.txt") and is_the_object(workspace, "folder/log.txt")
    stored = [digest_file(workspace.root / p) for p in ("log.txt", "folder/log.txt")]
    workspace.pipeline(step.format(link="symlink", persist="persist = true\nalways = true"))
    workspace.ok("repro")
    assert (workspace.root / "log.txt").read_text() == "line\nline\n"
    assert (workspace.root / "folder" / "log.txt").read_text() == "line\nline\n"
    assert not (workspace.root / "log.txt").is_symlink()
    store = Store(workspace.root / ".gitpipe" / "cache")
    for digest in stored:
        assert store.verify(digest)
        assert store.read_bytes(digest) == b"line\n"


def test_a_symlink_whose_object_is_gone_counts_as_missing_and_the_step_runs(workspace):
    linked(workspace, "symlink")
    stored = object_of(workspace, "two.txt")
    Store(workspace.root / ".gitpipe" / "cache").discard(digest_file(stored))
    assert not (workspace.root / "two.txt").exists()  # a dangling link now
    result = workspace.gitpipe("status", "--check")
    assert result.exit_code == 3
    assert "two.txt" in result.stdout
    workspace.ok("repro")
    assert workspace.ran() == ["copy"]
    assert is_the_object(workspace, "two.txt")


def test_a_symlink_into_the_store_that_is_no_object_still_leads_outside(workspace, tmp_path):
    store = tmp_path / "shared-store"
    (store / "tmp").mkdir(parents=True)
    (store / "tmp" / "planted").write_text("x\n")
    workspace.write(".gitignore", "out.txt\n")
    workspace.pipeline(
        """
        [steps.make]
        cmd = "echo out > out.txt"
        outs = ["out.txt"]
        """
    )
    workspace.commit("pipeline")
    (workspace.root / "out.txt").symlink_to(store / "tmp" / "planted")
    result = workspace.gitpipe("repro", env={"GITPIPE_CACHE_DIR": str(store)})
    assert result.exit_code == 2, result.output
    assert "leads outside the repository" in result.stderr
    assert (store / "tmp" / "planted").read_text() == "x\n"


@contextlib.contextmanager
def unwritable(folder: Path) -> Iterator[None]:
    """No file can be made, renamed or removed in ``folder``: mode 0555, and for root
    (whom modes do not stop) the immutable attribute; skipped where neither holds."""
    os.chmod(folder, 0o555)
    immutable = False
    try:
        if os.geteuid() == 0 and shutil.which("chattr"):
            immutable = (
                subprocess.run(["chattr", "+i", folder], capture_output=True).returncode == 0
            )
        probe = folder / ".probe"
        try:
            probe.touch()
        except OSError:
            pass
        else:
            probe.unlink()
            pytest.skip(f"cannot make {folder} unwritable here")
        yield
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", folder], check=True)
        os.chmod(folder, 0o755)


def test_a_persist_step_whose_linked_output_cannot_be_copied_fails_and_the_object_is_untouched(
    workspace,
):
    workspace.write(".gitignore", "out/\n")
    step = """
        [pipeline]
        link = "hardlink"

        [steps.grow]
        cmd = ["mkdir -p out", "echo line >> out/log.txt"]
        outs = ["out/log.txt"]
        {persist}
        """
    workspace.pipeline(step.format(persist=""))
    workspace.ok("repro")
    assert is_the_object(workspace, "out/log.txt")
    stored = object_of(workspace, "out/log.txt")
    before = (stored.read_bytes(), stored.stat().st_mode)
    workspace.pipeline(step.format(persist="persist = true\nalways = true"))
    with unwritable(workspace.root / "out"):
        result = workspace.gitpipe("repro")
    assert result.exit_code == 1
    message = [line for line in result.output.splitlines() if "store's own object" in line]
    assert len(message) == 1
    assert "out/log.txt is still the store's own object and could not be made a copy" in message[0]
    assert (stored.read_bytes(), stored.stat().st_mode) == before
    assert is_the_object(workspace, "out/log.txt")  # the step did not run

    workspace.ok("repro")  # the folder is writable again: the step writes into a copy
    assert (workspace.root / "out" / "log.txt").read_text() == "line\nline\n"
    assert (stored.read_bytes(), stored.stat().st_mode) == before
