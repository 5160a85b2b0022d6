"""Adversarial review of the issue #16 hardening work, at the seams of its parts.

Each test states a promise of docs/store.md, docs/remote.md or SPEC.md "Trust" that
the merged code breaks; real Git repositories and the real CLI (tests/conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Workspace

from gitpipe.core.hashing import Digest
from gitpipe.store import lockfile
from gitpipe.store.objects import Store

SECRET = "s3cr3t-Pa55w0rd-do-not-print"


def store_of(workspace: Workspace) -> Store:
    return Store(workspace.root / ".gitpipe" / "cache")


def lock_out(workspace: Workspace, step: str, path: str) -> Digest:
    return lockfile.read(workspace.root / "gitpipe.lock").steps[step].outs[path]


def flip_a_byte(path: Path, at: int = 0) -> bytes:
    """Change one byte of a (read-only) object in place; its new bytes."""
    mode = stat.S_IMODE(path.stat().st_mode)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[at] ^= 0x20
    path.write_bytes(bytes(data))
    path.chmod(mode)
    return bytes(data)


TWO_OUTS = """
[steps.make]
cmd = ["tr a-z A-Z < data/raw.txt > a.txt", "rev < data/raw.txt > b.txt"]
deps = ["data/raw.txt"]
outs = ["a.txt", "b.txt"]
"""


def two_outs(workspace: Workspace, header: str = "") -> Workspace:
    workspace.write("data/raw.txt", "hello world\n")
    workspace.write(".gitignore", "a.txt\nb.txt\nsub/\n")
    workspace.pipeline(header + TWO_OUTS)
    workspace.commit("pipeline")
    workspace.ok("repro")
    workspace.commit("lock")
    return workspace


# -- (B) x --frozen: a corrupt object of a step's second output -------------------------


def test_frozen_with_a_corrupt_second_output_leaves_the_first_output_as_it_was(workspace):
    """docs/store.md: with --frozen, a corrupt object "leaves that step's outputs as they
    were".  The restore writes the outputs one by one, so the first is replaced before
    the second's corrupt object is met."""
    two_outs(workspace)
    flip_a_byte(store_of(workspace).object_path(lock_out(workspace, "make", "b.txt")))
    (workspace.root / "a.txt").write_text("edited a\n")
    (workspace.root / "b.txt").write_text("edited b\n")

    result = workspace.gitpipe("repro", "--frozen")

    assert result.exit_code == 3, result.output
    assert (workspace.root / "a.txt").read_text() == "edited a\n"
    assert (workspace.root / "b.txt").read_text() == "edited b\n"


# -- helpers for writes the system refuses ----------------------------------------------


@contextlib.contextmanager
def refusing_writes(folder: Path) -> Iterator[None]:
    """``folder`` refuses new names and removals: immutable for root (chattr +i),
    read-only for anyone else."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None:
            pytest.skip("root without chattr cannot make a folder refuse writes")
        if subprocess.run(["chattr", "+i", str(folder)], check=False).returncode != 0:
            pytest.skip("this file system has no immutable attribute")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=False)
    else:
        mode = stat.S_IMODE(folder.stat().st_mode)
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(mode)


SUB_AND_OTHER = """
[steps.make]
cmd = "mkdir -p sub && tr a-z A-Z < data/raw.txt > sub/out.txt"
deps = ["data/raw.txt"]
outs = ["sub/out.txt"]

[steps.other]
cmd = "rev < data/other.txt > other.txt"
deps = ["data/other.txt"]
outs = ["other.txt"]
"""


# -- (B) x (E): a storage failure during a restore, not a publish -----------------------


def test_a_restore_the_system_refuses_fails_that_step_only_in_one_line(workspace):
    """A write the system refuses fails the step it was for (exit 5, one line), not
    the whole run: the independent step `other` still runs and gets its lock entry,
    and nothing prints a traceback."""
    workspace.write("data/raw.txt", "hello world\n")
    workspace.write("data/other.txt", "abc\n")
    workspace.write(".gitignore", "sub/\nother.txt\n")
    workspace.pipeline(SUB_AND_OTHER)
    workspace.commit("pipeline")
    workspace.ok("repro")
    workspace.commit("lock")
    (workspace.root / "sub" / "out.txt").unlink()
    workspace.write("data/other.txt", "xyz\n")

    with refusing_writes(workspace.root / "sub"):
        result = workspace.gitpipe("repro", "--keep-going")

    assert result.exit_code == 5, result.output
    assert "Traceback" not in result.output
    # the step's own line as any failed step has it, then the run's one-line error
    *_, error = result.stderr.strip().splitlines()
    assert error.startswith("gitpipe: step 'make' failed (make: its outputs could not be")
    assert workspace.states().get("other") == "ran", workspace.last_run()
    assert workspace.states().get("make") == "failed", workspace.last_run()
    assert (workspace.root / "other.txt").read_text() == "zyx\n"
    entry = lockfile.read(workspace.root / "gitpipe.lock").steps["other"]
    assert entry.outs["other.txt"] != lock_out(workspace, "make", "sub/out.txt")


# -- (B) x read-only store: the quarantine cannot take the object ----------------------


def test_a_corrupt_object_whose_folder_refuses_removal_leaves_the_quarantine_as_it_was(
    workspace,
):
    """store.md: a corrupt object that cannot be moved aside stops the run and "changes
    nothing"; nothing in the quarantine is ever a second copy of the same object."""
    two_outs(workspace)
    digest = lock_out(workspace, "make", "a.txt")
    obj = store_of(workspace).object_path(digest)
    flip_a_byte(obj)
    (workspace.root / "a.txt").unlink()
    (workspace.root / ".gitpipe" / "cache" / "quarantine" / "b3").mkdir(parents=True)

    with refusing_writes(obj.parent):
        first = workspace.gitpipe("repro")
        second = workspace.gitpipe("repro")

    assert first.exit_code == 5, first.output
    assert second.exit_code == 5, second.output
    held = sorted(p.name for p in (obj.parents[3] / "quarantine" / "b3").iterdir())
    assert held == [], held


# -- (C): credentials in messages -------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        f"s3://AKIAEXAMPLE:{SECRET}@bucket/prefix",
        f"s3://bucket/prefix?secret={SECRET}",
        f"https://user:{SECRET}@example.invalid/store",
        f"file://user:{SECRET}@elsewhere/store",
    ],
)
def test_no_message_repeats_the_credentials_of_a_remote_url(workspace, url):
    """An error about a remote url that holds a secret says so without the secret."""
    two_outs(workspace)

    result = workspace.gitpipe("pull", "--remote", url)

    assert result.exit_code != 0, result.output
    assert SECRET not in result.output, result.output


# -- (E) x (B): a FIFO where a stale output is ------------------------------------------


def test_a_fifo_where_an_output_is_restored_is_replaced_or_fails_that_step(workspace):
    """A FIFO at an output's path is not read (nothing waits for a writer) and never
    stops the whole run with exit 5: gitpipe replaces its own output (saving nothing
    to read), or fails that step."""
    two_outs(workspace)
    (workspace.root / "a.txt").unlink()
    os.mkfifo(workspace.root / "a.txt")

    result = workspace.gitpipe("repro")

    assert "Traceback" not in result.output
    assert result.exit_code in (0, 1), result.output


def test_a_restore_whose_old_output_cannot_be_put_aside_fails_that_step_only(workspace):
    """docs/parallel.md: a step whose old outputs cannot be put aside "fails in the
    same way, alone: its siblings go on with --keep-going ... exits 5 with one line".
    A restore puts an edited output aside too (into the store); when the store
    refuses, the whole run stops instead, and `other` never runs."""
    workspace.write("data/raw.txt", "hello world\n")
    workspace.write("data/other.txt", "abc\n")
    workspace.write(".gitignore", "sub/\nother.txt\n")
    workspace.pipeline(SUB_AND_OTHER)
    workspace.commit("pipeline")
    workspace.ok("repro")
    workspace.commit("lock")
    (workspace.root / "sub" / "out.txt").write_text("edited by hand\n")
    workspace.write("data/other.txt", "xyz\n")
    tmp = workspace.root / ".gitpipe" / "cache" / "tmp"
    tmp.mkdir(exist_ok=True)

    with refusing_writes(tmp):
        result = workspace.gitpipe("repro", "--keep-going")

    assert result.exit_code == 5, result.output
    assert "stopped by an error" not in result.output
    # `other` went on: its command ran (its own publish then meets the same refusing
    # store, and fails alone, saying so)
    assert (workspace.root / "other.txt").read_text() == "zyx\n"
    assert "other: failed: its output other.txt could not be stored" in result.output
    assert (workspace.root / "sub" / "out.txt").read_text() == "edited by hand\n"
