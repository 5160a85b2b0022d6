"""The store, the run cache and the stat cache, on a real file system."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

import gitpipe.identity.statcache
from gitpipe.core.errors import StoreError
from gitpipe.core.hashing import Digest, DigestError, digest_bytes, digest_file
from gitpipe.identity.statcache import Hasher, StatCache
from gitpipe.store.objects import Store
from gitpipe.store.runcache import OutRecord, Result, RunCache


def old(path: Path) -> None:
    """Make a file look written long ago, so that the stat cache may trust it."""
    past = time.time() - 60
    os.utime(path, (past, past))


def test_digests_name_their_algorithm_and_match_for_small_and_mmapped_files(tmp_path):
    small = tmp_path / "small"
    small.write_bytes(b"x" * 1000)
    big = tmp_path / "big"
    big.write_bytes(b"y" * (5 * 1024 * 1024))
    assert str(digest_file(small)).startswith("b3:")
    assert digest_file(small) == digest_bytes(b"x" * 1000)
    assert digest_file(big) == digest_bytes(b"y" * (5 * 1024 * 1024))


@pytest.mark.parametrize(
    "text",
    ["md5:" + "0" * 64, "b3:" + "0" * 63, "b3:" + "G" * 64, "b3:../../etc/passwd", "b3"],
)
def test_digests_are_validated_as_hex_before_they_become_paths(text):
    with pytest.raises(DigestError):
        Digest.parse(text)


def test_objects_are_read_only_and_adding_twice_is_a_no_op(tmp_path):
    store = Store(tmp_path / "store")
    digest = store.add_bytes(b"hello")
    path = store.object_path(digest)
    assert stat.S_IMODE(path.stat().st_mode) == 0o444
    mtime = path.stat().st_mtime_ns
    assert store.add_bytes(b"hello") == digest
    assert path.stat().st_mtime_ns == mtime
    assert digest in store
    assert store.verify(digest)
    assert list((tmp_path / "store" / "tmp").iterdir()) == []


def test_a_file_that_changes_while_being_stored_is_not_stored_under_the_old_name(tmp_path):
    store = Store(tmp_path / "store")
    source = tmp_path / "file"
    source.write_bytes(b"before")
    stale = digest_file(source)
    source.write_bytes(b"after!")
    with pytest.raises(StoreError, match="changed while it was being stored"):
        store.add_file(source, stale)
    assert stale not in store
    assert list((tmp_path / "store" / "tmp").iterdir()) == []


def test_folders_round_trip_through_their_manifest(tmp_path):
    folder = tmp_path / "work" / "out"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "sub" / "b.sh").write_text("#!/bin/sh\n")
    (folder / "sub" / "b.sh").chmod(0o755)
    hasher = Hasher(tmp_path / "work", StatCache(tmp_path / "stat.db"))
    state = hasher.state("out")
    assert state is not None and state.is_dir
    store = Store(tmp_path / "store")
    assert store.add_tree(folder, hasher.manifest("out")) == state.digest
    assert store.has_tree(state.digest)

    restored = tmp_path / "restored" / "out"
    store.restore_tree(state.digest, restored)
    assert (restored / "a.txt").read_text() == "a"
    assert os.access(restored / "sub" / "b.sh", os.X_OK)
    again = Hasher(tmp_path / "restored", StatCache(tmp_path / "stat2.db")).state("out")
    assert again is not None and again.digest == state.digest


def test_a_result_never_points_at_a_missing_object(tmp_path):
    store = Store(tmp_path / "store")
    cache = RunCache(store)
    key = digest_bytes(b"key")
    missing = Result(outs={"model.bin": OutRecord(digest_bytes(b"not stored"))})
    with pytest.raises(StoreError):
        cache.put(key, missing)
    assert cache.get(key) is None

    present = Result(outs={"model.bin": OutRecord(store.add_bytes(b"stored"))})
    cache.put(key, present)
    stored = cache.get(key)
    assert stored is not None and (stored.id, stored.outs) == (present.id, present.outs)
    # an object that vanished later makes the result unusable, not an error
    path = store.object_path(present.outs["model.bin"].digest)
    path.chmod(0o644)
    path.unlink()
    assert cache.get(key) is None


@pytest.mark.parametrize("path", ["../escape.txt", "/etc/passwd", "a/../../b", "./x"])
def test_a_result_naming_a_path_outside_the_workspace_is_rejected(tmp_path, path):
    store = Store(tmp_path / "store")
    cache = RunCache(store)
    key = digest_bytes(b"key")
    digest = store.add_bytes(b"bytes")
    record = (
        Result(outs={"ok.txt": OutRecord(digest)})
        .to_json(key)
        .replace(b'"ok.txt"', f'"{path}"'.encode())
    )
    target = cache.path_of(key, Result(outs={path: OutRecord(digest)}).id)
    target.parent.mkdir(parents=True)
    target.write_bytes(record)
    assert cache.get(key) is None


def test_an_unchanged_file_is_not_read_again(tmp_path, monkeypatch):
    (tmp_path / "data.bin").write_bytes(b"data" * 1000)
    old(tmp_path / "data.bin")
    reads = []
    real = gitpipe.identity.statcache.digest_file
    monkeypatch.setattr(
        gitpipe.identity.statcache,
        "digest_file",
        lambda path, **kw: reads.append(path) or real(path, **kw),
    )
    cache = StatCache(tmp_path / "stat.db")
    first = Hasher(tmp_path, cache).state("data.bin")
    cache.close()
    assert len(reads) == 1

    cache = StatCache(tmp_path / "stat.db")
    assert Hasher(tmp_path, cache).state("data.bin") == first
    assert len(reads) == 1

    (tmp_path / "data.bin").write_bytes(b"DATA" * 1000)  # same size, new bytes
    old(tmp_path / "data.bin")
    os.utime(tmp_path / "data.bin", ns=(time.time_ns() - 30 * 10**9,) * 2)
    assert Hasher(tmp_path, cache).state("data.bin") != first
    assert len(reads) == 2


def test_a_file_hashed_within_the_racy_window_is_checked_again(tmp_path, monkeypatch):
    (tmp_path / "fresh.txt").write_text("just written")
    reads = []
    real = gitpipe.identity.statcache.digest_file
    monkeypatch.setattr(
        gitpipe.identity.statcache,
        "digest_file",
        lambda path, **kw: reads.append(path) or real(path, **kw),
    )
    cache = StatCache(tmp_path / "stat.db")
    Hasher(tmp_path, cache).state("fresh.txt")
    Hasher(tmp_path, cache).state("fresh.txt")
    assert len(reads) == 2


def test_a_damaged_stat_cache_is_rebuilt_not_fatal(tmp_path):
    (tmp_path / "stat.db").write_bytes(b"this is not sqlite" * 100)
    (tmp_path / "f").write_text("f")
    cache = StatCache(tmp_path / "stat.db")
    assert Hasher(tmp_path, cache).state("f") is not None


def test_the_lock_is_written_with_the_mode_open_would_give_it(workspace):
    from conftest import good_run

    umask = os.umask(0o022)
    os.umask(umask)
    good_run(workspace)
    mode = stat.S_IMODE((workspace.root / "gitpipe.lock").stat().st_mode)
    assert mode == 0o666 & ~umask  # not mkstemp's 0600
