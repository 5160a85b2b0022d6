"""Nothing corrupt is ever restored: every copy out of the store is hashed as it is
made and compared with the object's name; an object whose bytes do not hash to it is
moved to the store's quarantine, named in a notice, and its step runs again (or is
fetched from the remote with `--pull`); `--frozen` exits 3 instead.

Real Git repositories and the real CLI; an object is corrupted the way a disk, a
stray `chmod u+w` or a hand-edited hard link would: one byte flipped in place.
"""

from __future__ import annotations

import os
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Workspace, git

from gitpipe.core.errors import CorruptObject
from gitpipe.core.hashing import Digest, digest_bytes, digest_file, manifest_bytes
from gitpipe.store import lockfile
from gitpipe.store.objects import Store
from gitpipe.store.trust import STAMP_ATTR

PIPELINE = """
[steps.make]
cmd = "tr a-z A-Z < data/raw.txt > made.txt"
deps = ["data/raw.txt"]
outs = ["made.txt"]

[steps.count]
cmd = "wc -c < made.txt > count.txt"
deps = ["made.txt"]
outs = ["count.txt"]
"""
MADE = b"HELLO WORLD\n"

FOLDER = """
[steps.split]
cmd = [
  "mkdir -p parts",
  "cut -c1-5 data/raw.txt > parts/a.txt",
  "cut -c6- data/raw.txt > parts/b.txt",
]
deps = ["data/raw.txt"]
outs = ["parts/"]

[steps.count]
cmd = "cat parts/a.txt parts/b.txt | wc -c > count.txt"
deps = ["parts/"]
outs = ["count.txt"]
"""


def store_of(workspace: Workspace) -> Store:
    return Store(workspace.root / ".gitpipe" / "cache")


def lock_out(workspace: Workspace, step: str, path: str) -> Digest:
    return lockfile.read(workspace.root / "gitpipe.lock").steps[step].outs[path]


def flip_a_byte(path: Path, at: int = 0) -> bytes:
    """Change one byte of a (read-only) file in place; its new bytes."""
    mode = stat.S_IMODE(path.stat().st_mode)
    path.chmod(0o644)
    data = bytearray(path.read_bytes())
    data[at] ^= 0x20
    path.write_bytes(bytes(data))
    path.chmod(mode)
    return bytes(data)


def quarantine(workspace: Workspace) -> dict[str, bytes]:
    """What the store's quarantine holds: file name -> bytes."""
    folder = workspace.root / ".gitpipe" / "cache" / "quarantine" / "b3"
    if not folder.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def workspace_files(workspace: Workspace) -> dict[str, bytes]:
    """Every file of the workspace outside .git and .gitpipe, with its bytes."""
    found = {}
    for path in sorted(workspace.root.rglob("*")):
        rel = path.relative_to(workspace.root).as_posix()
        if rel.split("/")[0] in (".git", ".gitpipe") or not path.is_file():
            continue
        found[rel] = path.read_bytes()
    return found


def ran(workspace: Workspace, *, link: str = "") -> Workspace:
    workspace.write("data/raw.txt", "hello world\n")
    workspace.write(".gitignore", "*.txt\n!data/raw.txt\nparts/\n")
    header = f'[pipeline]\nlink = "{link}"\n' if link else ""
    workspace.pipeline(header + PIPELINE)
    workspace.commit("pipeline")
    workspace.ok("repro")
    workspace.commit("lock")
    return workspace


# -- a file output ----------------------------------------------------------------------


def test_a_corrupt_object_is_quarantined_named_and_its_step_runs_again(workspace):
    ran(workspace)
    digest = lock_out(workspace, "make", "made.txt")
    obj = store_of(workspace).object_path(digest)
    corrupt = flip_a_byte(obj)
    lock_before = (workspace.root / "gitpipe.lock").read_bytes()
    (workspace.root / "made.txt").unlink()

    result = workspace.ok("repro")

    notice = [line for line in result.stderr.splitlines() if str(digest) in line]
    assert len(notice) == 1, result.stderr
    assert "for made.txt is corrupt" in notice[0]
    assert f"moved to .gitpipe/cache/quarantine/b3/{digest.hex}" in notice[0]
    assert "running 'make' again" in notice[0]
    assert workspace.ran() == ["make"]  # `count` reads the same bytes: left alone
    assert (workspace.root / "made.txt").read_bytes() == MADE
    assert lock_out(workspace, "make", "made.txt") == digest == digest_bytes(MADE)
    assert (workspace.root / "gitpipe.lock").read_bytes() == lock_before
    assert quarantine(workspace) == {digest.hex: corrupt}  # kept, never deleted
    assert store_of(workspace).verify(digest)  # the run wrote the object afresh
    assert "up to date" in workspace.ok("status").stdout
    assert workspace.ok("repro").stderr == ""


def test_a_corrupt_object_restored_over_an_edited_output_leaves_the_edit_in_the_store(
    workspace,
):
    ran(workspace)
    digest = lock_out(workspace, "make", "made.txt")
    flip_a_byte(store_of(workspace).object_path(digest))
    edited = workspace.write("made.txt", "edited by hand\n")

    workspace.ok("repro")

    assert edited.read_bytes() == MADE
    assert workspace.ran() == ["make"]
    assert digest_bytes(b"edited by hand\n") in store_of(workspace)  # nothing is lost


def test_cache_verify_lists_what_the_quarantine_holds_without_failing(workspace):
    ran(workspace)
    digest = lock_out(workspace, "make", "made.txt")
    flip_a_byte(store_of(workspace).object_path(digest))
    (workspace.root / "made.txt").unlink()
    workspace.ok("repro")

    verified = workspace.ok("cache", "verify")
    assert f"quarantined {digest.hex}" not in verified.stdout  # the whole path is shown
    quarantined = workspace.root / ".gitpipe" / "cache" / "quarantine" / "b3" / digest.hex
    assert f"quarantined {quarantined}" in verified.stdout
    assert "corrupt object" not in verified.stdout  # the store itself is sound again


def test_a_second_corruption_of_the_same_object_is_kept_beside_the_first(workspace):
    ran(workspace)
    digest = lock_out(workspace, "make", "made.txt")
    obj = store_of(workspace).object_path(digest)
    first = flip_a_byte(obj, at=0)
    (workspace.root / "made.txt").unlink()
    workspace.ok("repro")
    second = flip_a_byte(obj, at=1)
    (workspace.root / "made.txt").unlink()

    workspace.ok("repro")

    assert quarantine(workspace) == {digest.hex: first, f"{digest.hex}.1": second}
    assert (workspace.root / "made.txt").read_bytes() == MADE


def test_when_the_locks_object_is_corrupt_another_stored_result_serves(workspace):
    """A step that writes other bytes each run has one result per run; when the lock's
    object turns out corrupt, the lock's bytes are nowhere to be had and the newest
    sound result serves, as when the object is missing."""
    workspace.write(".gitignore", "*.bin\n")
    workspace.pipeline(
        """
        [steps.draw]
        cmd = "head -c 64 /dev/urandom > drawn.bin"
        outs = ["drawn.bin"]
        """
    )
    workspace.commit("pipeline")
    workspace.ok("repro")
    first = (workspace.root / "drawn.bin").read_bytes()
    workspace.ok("repro", "--force")
    digest = lock_out(workspace, "draw", "drawn.bin")
    flip_a_byte(store_of(workspace).object_path(digest))
    (workspace.root / "drawn.bin").unlink()

    result = workspace.ok("repro")

    assert f"object {digest} for drawn.bin is corrupt" in result.stderr
    assert "restoring 'draw' from another stored result" in result.stderr
    assert workspace.ran() == []
    assert (workspace.root / "drawn.bin").read_bytes() == first
    assert lock_out(workspace, "draw", "drawn.bin") == digest_bytes(first)


def test_a_corrupt_object_that_cannot_be_moved_aside_stops_the_run_and_changes_nothing(
    workspace,
):
    ran(workspace)
    digest = lock_out(workspace, "make", "made.txt")
    obj = store_of(workspace).object_path(digest)
    corrupt = flip_a_byte(obj)
    (workspace.root / "made.txt").unlink()
    (workspace.root / ".gitpipe" / "cache" / "quarantine").write_text("in the way\n")
    before = workspace_files(workspace)

    result = workspace.gitpipe("repro")

    assert result.exit_code == 5, result.output
    assert f"object {digest} in the store at" in result.stderr
    assert "is corrupt and cannot be moved" in result.stderr
    assert "Traceback" not in result.output
    assert workspace_files(workspace) == before  # lock included; made.txt not restored
    assert obj.read_bytes() == corrupt  # still there, still found corrupt next time
    assert not any((workspace.root / ".gitpipe" / "tmp").iterdir())


# -- a folder output --------------------------------------------------------------------


def folder_ran(workspace: Workspace, *, link: str = "") -> Workspace:
    workspace.write("data/raw.txt", "hello world\n")
    workspace.write(".gitignore", "parts/\ncount.txt\n")
    header = f'[pipeline]\nlink = "{link}"\n' if link else ""
    workspace.pipeline(header + FOLDER)
    workspace.commit("pipeline")
    workspace.ok("repro")
    workspace.commit("lock")
    return workspace


def test_a_corrupt_file_inside_a_folder_output_is_quarantined_and_the_step_runs_again(
    workspace,
):
    folder_ran(workspace)
    folder = lock_out(workspace, "split", "parts/")
    entries = {e.path: e.digest for e in store_of(workspace).manifest(folder)}
    corrupt = flip_a_byte(store_of(workspace).object_path(entries["b.txt"]))
    before = workspace_files(workspace)
    for name in ("a.txt", "b.txt"):
        (workspace.root / "parts" / name).unlink()

    result = workspace.ok("repro")

    assert f"object {entries['b.txt']} for parts/b.txt is corrupt" in result.stderr
    assert "running 'split' again" in result.stderr
    assert workspace.ran() == ["split"]
    assert workspace_files(workspace) == before
    assert lock_out(workspace, "split", "parts/") == folder
    assert quarantine(workspace) == {entries["b.txt"].hex: corrupt}
    assert store_of(workspace).has_tree(folder)
    assert all(store_of(workspace).verify(d) for d in entries.values())


def test_a_corrupt_folder_manifest_is_never_read_and_is_written_afresh(workspace):
    folder_ran(workspace)
    folder = lock_out(workspace, "split", "parts/")
    manifest = store_of(workspace).object_path(folder)
    corrupt = flip_a_byte(manifest, at=5)
    before = workspace_files(workspace)
    (workspace.root / "parts" / "a.txt").unlink()

    workspace.ok("repro")

    assert workspace.ran() == ["split"]  # the lock's folder cannot be listed: it runs
    assert workspace_files(workspace) == before
    assert store_of(workspace).verify(folder)
    assert manifest.read_bytes() == manifest_bytes(store_of(workspace).manifest(folder))
    assert quarantine(workspace) == {folder.hex: corrupt}


def test_a_folder_restore_that_meets_a_corrupt_file_leaves_the_old_folder_whole(tmp_path):
    store = Store(tmp_path / "store")
    (tmp_path / "made").mkdir()
    for name, text in (("a.txt", "a\n"), ("b.txt", "b\n")):
        (tmp_path / "made" / name).write_text(text)
    from gitpipe.core.hashing import ManifestEntry

    entries = [
        ManifestEntry(n, digest_file(tmp_path / "made" / n), 2, False) for n in ("a.txt", "b.txt")
    ]
    folder = store.add_tree(tmp_path / "made", entries)
    flip_a_byte(store.object_path(entries[1].digest))
    dest = tmp_path / "work" / "parts"
    dest.mkdir(parents=True)
    (dest / "old.txt").write_text("old\n")

    with pytest.raises(CorruptObject) as raised:
        store.restore_tree(folder, dest, scratch=tmp_path / "scratch")

    assert raised.value.digest == entries[1].digest
    assert raised.value.target == str(dest / "b.txt")
    assert sorted(p.name for p in dest.iterdir()) == ["old.txt"]
    assert list((tmp_path / "scratch").iterdir()) == []


# -- every way a copy is made -----------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "at"),
    [(0, None), (100, 99), (4 * 1024 * 1024 - 1, 0), (9 * 1024 * 1024 + 7, -1)],
    ids=["empty", "small", "just-small", "large-piecewise"],
)
def test_a_copy_hashes_what_it_wrote_and_refuses_a_corrupt_object(tmp_path, size, at):
    store = Store(tmp_path / "store")
    data = os.urandom(size)
    source = tmp_path / "source"
    source.write_bytes(data)
    digest = digest_file(source)
    store.add_file(source, digest)
    dest = tmp_path / "out" / "file"

    store.restore_file(digest, dest, scratch=tmp_path / "scratch")
    assert dest.read_bytes() == data

    if at is None:
        return
    flip_a_byte(store.object_path(digest), at=at % size)
    dest.write_bytes(b"what was there")
    with pytest.raises(CorruptObject) as raised:
        store.restore_file(digest, dest, scratch=tmp_path / "scratch")
    assert raised.value.digest == digest
    assert dest.read_bytes() == b"what was there"  # untouched
    assert list((tmp_path / "scratch").iterdir()) == []  # nothing half-made left
    assert store.quarantine(digest) == tmp_path / "store" / "quarantine" / "b3" / digest.hex
    assert digest not in store


def test_a_kernel_copy_that_stops_short_at_an_odd_offset_is_still_hashed_whole(
    tmp_path, monkeypatch
):
    """Pieces that do not fall on page boundaries (a short `copy_file_range`), and the
    buffered copy where the kernel cannot: the copy is hashed whole either way."""
    import gitpipe.store.objects

    data = os.urandom(5 * 1024 * 1024 + 3)
    source = tmp_path / "source"
    source.write_bytes(data)
    monkeypatch.setattr(gitpipe.store.objects, "_PIECE", 3 * 4097)
    assert gitpipe.store.objects.copy_hashed(source, tmp_path / "a") == digest_bytes(data)
    monkeypatch.delattr(os, "copy_file_range")
    assert gitpipe.store.objects.copy_hashed(source, tmp_path / "b") == digest_bytes(data)
    assert (tmp_path / "a").read_bytes() == data == (tmp_path / "b").read_bytes()


# -- --frozen ---------------------------------------------------------------------------


def test_frozen_with_a_corrupt_object_exits_3_naming_it_and_touches_nothing(workspace):
    ran(workspace)
    digest = lock_out(workspace, "make", "made.txt")
    corrupt = flip_a_byte(store_of(workspace).object_path(digest))
    (workspace.root / "made.txt").unlink()
    before = workspace_files(workspace)

    result = workspace.gitpipe("repro", "--frozen")

    assert result.exit_code == 3, result.output
    assert "--frozen: step 'make' cannot restore gitpipe.lock's outputs" in result.stderr
    assert f"object {digest} for made.txt is corrupt" in result.stderr
    assert f"moved to .gitpipe/cache/quarantine/b3/{digest.hex}" in result.stderr
    assert "Traceback" not in result.output
    assert workspace_files(workspace) == before  # lock included; made.txt still absent
    assert workspace.ran() == []
    assert quarantine(workspace) == {digest.hex: corrupt}
    assert git(workspace.root, "status", "--porcelain") == ""


# -- --pull -----------------------------------------------------------------------------


def test_pull_restores_a_corrupt_object_from_the_remote_instead_of_running(
    make_workspace: Callable[[str], Workspace], tmp_path
):
    one = ran(make_workspace("one"))
    remote = tmp_path / "remote"
    remote.mkdir()
    one.ok("push", "--remote", str(remote))
    digest = lock_out(one, "make", "made.txt")
    flip_a_byte(store_of(one).object_path(digest))
    (one.root / "made.txt").unlink()

    result = one.ok("repro", "--pull", "--remote", str(remote))

    assert f"object {digest} for made.txt is corrupt" in result.stderr
    assert "restoring 'make' from the remote" in result.stderr
    assert one.ran() == []
    assert one.states()["make"] == "cached"
    assert (one.root / "made.txt").read_bytes() == MADE
    assert store_of(one).verify(digest)


def test_frozen_pull_takes_the_lock_bytes_from_the_remote(
    make_workspace: Callable[[str], Workspace], tmp_path
):
    one = ran(make_workspace("one"))
    remote = tmp_path / "remote"
    remote.mkdir()
    one.ok("push", "--remote", str(remote))
    digest = lock_out(one, "make", "made.txt")
    flip_a_byte(store_of(one).object_path(digest))
    (one.root / "made.txt").unlink()

    result = one.ok("repro", "--frozen", "--pull", "--remote", str(remote))

    assert "restoring 'make' from the remote" in result.stderr
    assert (one.root / "made.txt").read_bytes() == MADE
    assert one.ran() == []


# -- links ------------------------------------------------------------------------------


def test_a_hardlinked_output_written_through_shows_its_object_is_corrupt(workspace):
    """A linked output is the object: writing to it (after a `chmod u+w`) corrupts the
    store.  The next repro sees the output's bytes differ from the object's name while
    it is that object, sets the object aside and runs the step: never a link to the
    bad bytes."""
    ran(workspace, link="hardlink")
    made = workspace.root / "made.txt"
    digest = lock_out(workspace, "make", "made.txt")
    obj = store_of(workspace).object_path(digest)
    assert os.path.samefile(made, obj)
    corrupt = flip_a_byte(made)

    result = workspace.ok("repro")

    assert f"object {digest} for made.txt is corrupt" in result.stderr
    assert workspace.ran() == ["make"]
    assert made.read_bytes() == MADE
    assert os.path.samefile(made, obj)  # a link to the object written afresh
    assert store_of(workspace).verify(digest)
    assert quarantine(workspace) == {digest.hex: corrupt}
    assert lock_out(workspace, "make", "made.txt") == digest
    assert "up to date" in workspace.ok("status").stdout


def test_a_file_of_a_hardlinked_folder_written_through_shows_its_object_is_corrupt(workspace):
    folder_ran(workspace, link="hardlink")
    b = workspace.root / "parts" / "b.txt"
    entries = {
        e.path: e.digest
        for e in store_of(workspace).manifest(lock_out(workspace, "split", "parts/"))
    }
    flip_a_byte(b)

    result = workspace.ok("repro")

    assert f"object {entries['b.txt']} for parts/b.txt is corrupt" in result.stderr
    assert workspace.ran() == ["split"]
    assert b.read_text() == " world\n"
    assert store_of(workspace).verify(entries["b.txt"])


def test_a_link_to_a_corrupt_object_is_what_cache_verify_catches(workspace):
    """Links are not read when made (a restore of any size takes a millisecond):
    objects are verified when they enter the store and when they are pulled, and
    `gitpipe cache verify` finds one corrupted since."""
    ran(workspace, link="hardlink")
    digest = lock_out(workspace, "make", "made.txt")
    (workspace.root / "made.txt").unlink()
    flip_a_byte(store_of(workspace).object_path(digest))

    found = workspace.gitpipe("cache", "verify")

    assert found.exit_code == 5, found.output
    assert f"corrupt object {digest}" in found.stdout


# -- objects written through a link, met as they are used ------------------------------
#
# Each object is stamped (inode, size, mtime) as it enters the store; a link restore or
# an "already stored" shortcut compares the stamp and hashes an object whose stamp
# differs.  The write comes as root would make it: in place, through the read-only mode.


def write_in_place(path: Path, data: bytes) -> None:
    """Overwrite a file's bytes through its name (a link: the object's), as root or a
    tool ignoring the read-only mode does; the mode stays read-only."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)  # root: the mode does not stop it
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


@pytest.mark.parametrize("link", ["hardlink", "symlink"])
def test_a_link_restore_of_an_object_edited_through_a_link_runs_the_step_instead(workspace, link):
    # the edited output was deleted: no workspace file showed the edit, and the restore
    # linked the edited bytes back under the lock's digest, silently
    ran(workspace, link=link)
    made = workspace.root / "made.txt"
    digest = lock_out(workspace, "make", "made.txt")
    write_in_place(made, b"TAMPERED\n")
    made.unlink()

    result = workspace.ok("repro")

    assert f"object {digest} for made.txt is corrupt" in result.stderr
    assert "moved to .gitpipe/cache/quarantine/b3/" in result.stderr
    assert workspace.ran() == ["make"]
    assert made.read_bytes() == MADE
    assert os.path.samefile(made, store_of(workspace).object_path(digest))
    assert store_of(workspace).verify(digest)
    assert quarantine(workspace) == {digest.hex: b"TAMPERED\n"}
    assert (workspace.root / "count.txt").read_text().strip() == str(len(MADE))
    assert "up to date" in workspace.ok("status").stdout


def test_a_folder_restored_by_links_never_links_a_file_edited_through_a_link(workspace):
    folder_ran(workspace, link="hardlink")
    parts = workspace.root / "parts"
    digest = lock_out(workspace, "split", "parts/")
    entries = {e.path: e.digest for e in store_of(workspace).manifest(digest)}
    write_in_place(parts / "b.txt", b"tampered\n")
    os.chmod(parts, 0o755)
    for item in parts.iterdir():
        item.unlink()
    parts.rmdir()

    result = workspace.ok("repro")

    assert f"object {entries['b.txt']} for {parts}/b.txt is corrupt" in result.stderr or (
        f"object {entries['b.txt']} for parts/b.txt is corrupt" in result.stderr
    ), result.stderr
    assert workspace.ran() == ["split"]
    assert (parts / "b.txt").read_text() == " world\n"
    assert store_of(workspace).verify(entries["b.txt"])
    assert quarantine(workspace) == {entries["b.txt"].hex: b"tampered\n"}


def test_a_rerun_whose_bytes_are_in_an_object_edited_through_a_link_stores_them_afresh(
    workspace,
):
    # the step's fresh output matched the object's name, the store said "have it", and
    # the output was swapped for a link to the edited object: the good bytes were lost
    ran(workspace, link="hardlink")
    made = workspace.root / "made.txt"
    digest = lock_out(workspace, "make", "made.txt")
    write_in_place(made, b"TAMPERED\n")

    result = workspace.ok("repro", "--force", "make")

    assert workspace.ran() == ["make"]
    assert made.read_bytes() == MADE
    assert os.path.samefile(made, store_of(workspace).object_path(digest))
    assert store_of(workspace).verify(digest)
    assert f"object {digest} was corrupt" in result.stderr, result.stderr
    assert "stored again from made.txt" in result.stderr
    assert quarantine(workspace) == {digest.hex: b"TAMPERED\n"}
    assert lock_out(workspace, "make", "made.txt") == digest
    assert "up to date" in workspace.ok("status").stdout


def test_adding_bytes_the_store_holds_in_an_object_edited_through_a_link_stores_them_afresh(
    workspace,
):
    workspace.pipeline(PIPELINE)
    workspace.write("a.bin", "the same bytes\n")
    workspace.write("b.bin", "the same bytes\n")
    workspace.ok("add", "--link", "hardlink", "a.bin")
    digest = digest_file(workspace.root / "b.bin")
    write_in_place(workspace.root / "a.bin", b"edited\n")  # the object is edited with it

    result = workspace.ok("add", "--link", "hardlink", "b.bin")

    assert f"gitpipe: warning: object {digest} was corrupt" in result.stderr
    assert "moved to .gitpipe/cache/quarantine/b3/" in result.stderr
    assert "stored again from b.bin" in result.stderr
    b = workspace.root / "b.bin"
    assert b.read_bytes() == b"the same bytes\n"
    assert store_of(workspace).verify(digest)
    assert os.path.samefile(b, store_of(workspace).object_path(digest))
    assert quarantine(workspace) == {digest.hex: b"edited\n"}


def test_a_checkout_by_link_refuses_an_object_edited_through_a_link_and_links_nothing(
    workspace,
):
    workspace.pipeline(PIPELINE)
    workspace.write("a.bin", "added bytes\n")
    workspace.ok("add", "--link", "hardlink", "a.bin")
    a = workspace.root / "a.bin"
    digest = digest_file(a)
    write_in_place(a, b"edited\n")
    a.unlink()

    result = workspace.gitpipe("checkout", "a.bin")

    assert result.exit_code == 5, result.output
    assert f"object {digest} (for a.bin) in the store is corrupt" in result.stderr
    assert "`gitpipe add a.bin` from a good copy" in result.stderr
    assert not a.exists()
    assert quarantine(workspace) == {digest.hex: b"edited\n"}


def test_an_object_whose_stamp_is_unchanged_is_linked_without_being_read(workspace):
    """The stamp is what makes a link restore cheap: an object whose inode, size and
    mtime are as they were stored is trusted (a change that keeps all three, such as
    bytes written and the mtime set back by hand, is for `gitpipe cache verify`)."""
    ran(workspace, link="hardlink")
    made = workspace.root / "made.txt"
    digest = lock_out(workspace, "make", "made.txt")
    obj = store_of(workspace).object_path(digest)
    time.sleep(0.06)  # past the racy window of the object's mtime: its stamp is trusted
    made.unlink()
    workspace.ok("repro")  # the first link restore: hashes it once if its stamp was racy
    made.unlink()
    before = obj.stat()
    flipped = flip_a_byte(obj)  # written and its mtime set back: the stamp cannot tell
    os.utime(obj, ns=(before.st_atime_ns, before.st_mtime_ns))

    workspace.ok("repro")

    assert workspace.ran() == []
    assert made.read_bytes() == flipped  # trusted, as documented
    assert workspace.gitpipe("cache", "verify").exit_code == 5


def test_every_object_carries_its_stamp_from_the_moment_it_has_its_name(tmp_path):
    store = Store(tmp_path / "store")
    (tmp_path / "big.bin").write_bytes(os.urandom(5 << 20))  # copied, hashed as copied
    (tmp_path / "small.txt").write_text("small\n")  # read whole, written afresh
    (tmp_path / "linked.txt").write_text("linked in\n")
    (tmp_path / "linked.txt").chmod(0o644)
    time.sleep(0.06)  # the file linked in was written past the racy window of its stamp
    digests = [
        store.ingest(tmp_path / "big.bin"),
        store.ingest(tmp_path / "small.txt"),
        store.ingest(tmp_path / "linked.txt", link=True),
        store.add_bytes(b"a manifest, say"),
    ]
    for digest in digests:
        path = store.object_path(digest)
        st = path.stat()
        stamp = os.getxattr(path, STAMP_ATTR).split()
        assert stamp[:4] == [b"1", b"%d" % st.st_ino, b"%d" % st.st_size, b"%d" % st.st_mtime_ns]
        assert stat.S_IMODE(st.st_mode) == 0o444
        assert store.intact(digest)
    assert os.path.samefile(tmp_path / "linked.txt", store.object_path(digests[2]))


def test_an_object_stored_before_stamps_is_hashed_once_then_stamped(tmp_path):
    store = Store(tmp_path / "store")
    (tmp_path / "a.txt").write_text("from an older gitpipe\n")
    digest = store.ingest(tmp_path / "a.txt")
    path = store.object_path(digest)
    os.removexattr(path, STAMP_ATTR)

    assert store.intact(digest)  # hashed: its bytes are its name's

    assert os.getxattr(path, STAMP_ATTR).startswith(b"1 %d " % path.stat().st_ino)
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    write_in_place(path, b"written through a link\n")
    assert not store.intact(digest)
    assert not store.keeps(digest, source="a.txt")  # set aside: its bytes go in afresh
    assert digest not in store
    assert [(s.digest, s.source) for s in store.set_aside] == [(digest, "a.txt")]
    assert quarantine_of(store) == {digest.hex: b"written through a link\n"}
    assert store.ingest(tmp_path / "a.txt") == digest
    assert store.verify(digest) and store.intact(digest)


def quarantine_of(store: Store) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in store.quarantined()}


def corrupt_pushed_manifest(workspace, tmp_path):
    """`split`'s folder run and pushed to a folder remote, then its manifest in the
    store damaged (a byte of it flipped): the remote, the digest, the manifest's path
    in the store and its good bytes."""
    folder_ran(workspace)
    remote = tmp_path / "remote"
    remote.mkdir()
    workspace.ok("push", "--remote", str(remote))
    digest = lock_out(workspace, "split", "parts/")
    manifest = store_of(workspace).object_path(digest)
    good = manifest.read_bytes()
    flip_a_byte(manifest, at=good.index(b"a.txt"))
    return remote, digest, manifest, good


def test_a_checkout_of_a_folder_whose_manifest_is_corrupt_sets_it_aside_and_pulls_it_again(
    workspace, tmp_path
):
    # the corrupt manifest passed for bytes the store lacked: `checkout` said to pull,
    # and `checkout --pull` said the remote lacked them too (the store had an object of
    # that name, so the pull never fetched it again), while the remote held them
    remote, digest, manifest, good = corrupt_pushed_manifest(workspace, tmp_path)
    parts = workspace.root / "parts"
    (parts / "a.txt").unlink()

    result = workspace.gitpipe("checkout", "parts")

    assert result.exit_code == 5, result.output
    assert f"object {digest} (for parts) in the store is corrupt" in result.stderr
    assert "`gitpipe checkout --pull` fetches it again" in result.stderr
    assert "`gitpipe repro` to make the output of step split again" in result.stderr
    assert quarantine(workspace) == {digest.hex: bytes(flip(good, good.index(b"a.txt")))}
    assert sorted(p.name for p in parts.iterdir()) == ["b.txt"]  # nothing changed

    pulled = workspace.ok("checkout", "--pull", "--remote", str(remote), "parts")

    assert "fetched 1 object(s)" in pulled.stdout
    assert manifest.read_bytes() == good
    assert (parts / "a.txt").read_text() == "hello\n"
    assert "up to date" in workspace.ok("status").stdout


def test_a_checkout_pull_of_a_folder_whose_manifest_is_corrupt_fetches_it_in_one_go(
    workspace, tmp_path
):
    remote, digest, manifest, good = corrupt_pushed_manifest(workspace, tmp_path)
    shutil.rmtree(workspace.root / "parts")

    pulled = workspace.ok("checkout", "--pull", "--remote", str(remote), "parts")

    assert "restored parts/" in pulled.stdout
    assert manifest.read_bytes() == good
    assert store_of(workspace).verify(digest)
    assert list(quarantine(workspace)) == [digest.hex]
    assert (workspace.root / "parts" / "b.txt").read_text() == " world\n"


def flip(data: bytes, at: int) -> bytearray:
    changed = bytearray(data)
    changed[at] ^= 0x20
    return changed


def test_a_pull_fetches_again_a_folder_manifest_the_store_holds_corrupt(workspace, tmp_path):
    # the pull took the corrupt manifest for one "here already", never read the files
    # it lists, and said the remote lacked the result's objects; nothing was repaired
    remote, digest, manifest, good = corrupt_pushed_manifest(workspace, tmp_path)
    shutil.rmtree(workspace.root / "parts")

    pulled = workspace.ok("pull", "--remote", str(remote))

    assert "not in the remote" not in pulled.stderr, pulled.stderr
    assert manifest.read_bytes() == good
    assert store_of(workspace).verify(digest)
    assert quarantine(workspace) == {digest.hex: bytes(flip(good, good.index(b"a.txt")))}
    workspace.ok("checkout")
    assert (workspace.root / "parts" / "a.txt").read_text() == "hello\n"
    assert "up to date" in workspace.ok("status").stdout


def test_quarantine_leaves_good_bytes_another_process_put_back_meanwhile(tmp_path):
    """Two processes share a store and both find one object corrupt; the first moves
    it aside and stores good bytes.  The second's quarantine, coming after, must not
    move those good bytes away (and a checkout or repro would then call them lost)."""
    store = Store(tmp_path / "cache")
    data = b"the bytes a step made\n"
    digest = store.add_bytes(data)
    path = store.object_path(digest)
    path.chmod(0o644)
    path.write_bytes(b"flipped\n")  # corrupt, as both processes see it
    first = store.quarantine(digest)  # the first process
    assert first is not None and first.read_bytes() == b"flipped\n"
    assert store.add_bytes(data) == digest  # ... which stores the good bytes again
    assert store.quarantine(digest) is None  # the second process, late
    assert path.read_bytes() == data
    assert store.quarantined() == [first]
    assert store.verify(digest)


def test_quarantine_still_moves_an_object_that_is_corrupt(tmp_path):
    store = Store(tmp_path / "cache")
    digest = store.add_bytes(b"kept bytes\n")
    path = store.object_path(digest)
    path.chmod(0o644)
    path.write_bytes(b"other bytes\n")
    moved = store.quarantine(digest)
    assert moved is not None and moved.read_bytes() == b"other bytes\n"
    assert not path.exists()
    assert store.quarantine(digest) is None  # gone already
