"""The run cache keeps every result recorded for a step key, on a real file system:
the newest serves the key, each stays reachable by its id, and the one-result-per-key
files of older gitpipe are still read."""

from __future__ import annotations

import stat
from pathlib import Path

from gitpipe.core.hashing import Digest, canonical, digest_bytes
from gitpipe.store import lockfile
from gitpipe.store.lockfile import Lock, LockEntry
from gitpipe.store.objects import Store
from gitpipe.store.remote import Selection, entry_result_id
from gitpipe.store.runcache import (
    RESULT_SCHEMA,
    OutRecord,
    Result,
    RunCache,
    parse_result,
    result_id,
)

KEY = digest_bytes(b"the key of a training step")


def trained(store: Store, model: bytes, *, created: float = 0.0) -> Result:
    """A result whose one output (stored first) holds ``model``."""
    digest = store.add_bytes(model)
    return Result(
        outs={"model.bin": OutRecord(digest, size=len(model))},
        metrics={"auc": len(model) / 100},
        step="train",
        created=created,
    )


def legacy_bytes(result: Result, key: Digest) -> bytes:
    """What gitpipe wrote before results had ids: schema /1, no "created"."""
    record = {
        "schema": "gitpipe.result/1",
        "key": str(key),
        "step": result.step,
        "outs": {
            path: {"digest": str(out.digest), "dir": out.is_dir, "size": out.size, "exec": False}
            for path, out in result.outs.items()
        },
        "metrics": dict(result.metrics),
        "duration": 0.5,
        "exit_code": 0,
        "record": {},
    }
    return canonical(record)


def ids(results: list[Result]) -> list[Digest]:
    return [result.id for result in results]


def test_two_results_of_one_key_are_both_kept_and_the_newest_serves_the_key(tmp_path):
    store = Store(tmp_path / "store")
    cache = RunCache(store)
    first = trained(store, b"weights of the first run")
    second = trained(store, b"weights of the second run, other bytes")
    cache.put(KEY, first)
    cache.put(KEY, second)

    assert ids(cache.results(KEY)) == [second.id, first.id]
    newest = cache.get(KEY)
    assert newest is not None and newest.id == second.id
    older = cache.get_exact(KEY, first.id)
    assert older is not None and older.outs == first.outs and older.metrics == first.metrics
    assert 0 < older.created <= newest.created
    for result in (first, second):
        path = cache.path_of(KEY, result.id)
        assert path.parent == cache.path_of(KEY)
        assert path.name == f"{result.id.hex}.json"
        assert stat.S_IMODE(path.stat().st_mode) == 0o444
        assert parse_result(path.read_bytes(), KEY, result_id=result.id).id == result.id
    assert b'"schema":"gitpipe.result/2"' in cache.path_of(KEY, first.id).read_bytes()


def test_a_rerun_that_makes_old_bytes_again_makes_them_the_newest(tmp_path):
    store = Store(tmp_path / "store")
    cache = RunCache(store)
    first = trained(store, b"A")
    second = trained(store, b"B")
    cache.put(KEY, first)
    cache.put(KEY, second)
    cache.put(KEY, trained(store, b"A"))  # the third run made the first one's bytes

    assert ids(cache.results(KEY)) == [first.id, second.id]
    assert sorted(p.name for p in cache.path_of(KEY).iterdir()) == sorted(
        f"{r.id.hex}.json" for r in (first, second)
    )


def test_newest_is_by_the_recorded_time_then_by_id(tmp_path):
    store = Store(tmp_path / "store")
    cache = RunCache(store)
    late = trained(store, b"late", created=2000.0)
    early = trained(store, b"early", created=1000.0)
    tie_a, tie_b = trained(store, b"x", created=1500.0), trained(store, b"y", created=1500.0)
    for result in (early, tie_a, late, tie_b):
        cache.put(KEY, result)  # a time of its own is kept
    ties = sorted([tie_a.id, tie_b.id], key=str)
    assert ids(cache.results(KEY)) == [late.id, *ties, early.id]
    assert [r.created for r in cache.results(KEY)] == [2000.0, 1500.0, 1500.0, 1000.0]


def test_a_result_missing_an_object_is_skipped_for_the_next_newest(tmp_path):
    store = Store(tmp_path / "store")
    cache = RunCache(store)
    first = trained(store, b"first", created=1.0)
    second = trained(store, b"second", created=2.0)
    cache.put(KEY, first)
    cache.put(KEY, second)
    store.discard(second.outs["model.bin"].digest)

    assert ids(cache.results(KEY)) == [first.id]
    assert cache.get(KEY) is not None and cache.get(KEY).id == first.id
    assert cache.get_exact(KEY, second.id) is None
    assert {rid for _key, rid, _path in cache.stored()} == {first.id, second.id}


def test_a_file_whose_content_is_another_result_is_not_read_under_its_name(tmp_path):
    store = Store(tmp_path / "store")
    cache = RunCache(store)
    genuine = trained(store, b"genuine", created=1.0)
    other = trained(store, b"other", created=2.0)
    cache.put(KEY, genuine)
    forged = cache.path_of(KEY, other.id)
    forged.write_bytes(cache.path_of(KEY, genuine.id).read_bytes())

    assert cache.get_exact(KEY, other.id) is None
    assert ids(cache.results(KEY)) == [genuine.id]
    assert KEY in set(cache.stored_keys())


def test_an_older_gitpipes_one_result_per_key_is_still_read(tmp_path):
    store = Store(tmp_path / "store")
    cache = RunCache(store)
    old = trained(store, b"made by an older gitpipe")
    legacy = cache.path_of(KEY).with_name(cache.path_of(KEY).name + ".json")
    legacy.parent.mkdir(parents=True)
    legacy.write_bytes(legacy_bytes(old, KEY))
    legacy.chmod(0o444)

    found = cache.get(KEY)
    assert found is not None and (found.id, found.created) == (old.id, 0.0)
    assert cache.get_exact(KEY, old.id) is not None
    assert list(cache.stored()) == [(KEY, None, legacy)]
    assert list(cache.stored_keys()) == [KEY]

    new = trained(store, b"made now")
    cache.put(KEY, new)
    assert ids(cache.results(KEY)) == [new.id, old.id]
    assert legacy.is_file()  # read only: never rewritten
    assert list(cache.stored()) == [(KEY, new.id, cache.path_of(KEY, new.id)), (KEY, None, legacy)]

    cache.discard(KEY, old.id)  # the legacy file held that result
    assert not legacy.exists()
    assert ids(cache.results(KEY)) == [new.id]


def test_discard_removes_one_result_or_every_result_of_the_key(tmp_path):
    store = Store(tmp_path / "store")
    cache = RunCache(store)
    first, second = trained(store, b"1"), trained(store, b"2")
    cache.put(KEY, first)
    cache.put(KEY, second)
    other_key = digest_bytes(b"another step")
    cache.put(other_key, first)
    legacy = cache.path_of(KEY).with_name(cache.path_of(KEY).name + ".json")
    legacy.write_bytes(legacy_bytes(trained(store, b"3"), KEY))

    cache.discard(KEY, first.id)
    assert ids(cache.results(KEY)) == [second.id, trained(store, b"3").id]
    cache.discard(KEY)
    assert cache.results(KEY) == [] and cache.get(KEY) is None
    assert not cache.path_of(KEY).exists() and not legacy.exists()
    assert list(cache.stored_keys()) == [other_key]


def test_old_records_without_a_time_parse_and_new_ones_carry_theirs(tmp_path):
    store = Store(tmp_path / "store")
    result = trained(store, b"m", created=1234.5)
    assert parse_result(result.to_json(KEY), KEY).created == 1234.5
    assert RESULT_SCHEMA == "gitpipe.result/2"
    for junk in (b'"created":"soon"', b'"created":-5', b'"created":true'):
        data = result.to_json(KEY).replace(b'"created":1234.5', junk)
        assert parse_result(data, KEY).created == 0.0


def test_a_results_id_leaves_out_sizes_and_is_what_its_lock_entry_gives(tmp_path):
    store = Store(tmp_path / "store")
    model, tool = store.add_bytes(b"model"), store.add_bytes(b"#!/bin/sh\n")
    folder = digest_bytes(b"a folder's manifest")
    outs = {
        "model.bin": OutRecord(model, size=5),
        "bin/tool": OutRecord(tool, size=10, executable=True),
        "data": OutRecord(folder, is_dir=True, size=99),
    }
    result = Result(outs=outs)
    assert result.id == result_id(
        {path: OutRecord(o.digest, o.is_dir, 0, o.executable) for path, o in outs.items()}
    )
    assert result.id != result_id({**outs, "bin/tool": OutRecord(tool, size=10)})

    entry = LockEntry(
        key=KEY,
        cmd=("make",),
        wdir=".",
        deps={},
        code={},
        params={},
        env={},
        outs={"model.bin": model, "bin/tool": tool, "data/": folder},
        executable=frozenset({"bin/tool"}),
    )
    lock = Lock(fingerprint="f", steps={"train": entry})
    text = lock.dumps()
    assert 'executable = [\n    "bin/tool",\n]' in text
    back = lockfile.loads(text).steps["train"]
    assert back.executable == frozenset({"bin/tool"})
    assert entry_result_id(back) == result.id
    assert Selection.from_locks(lockfile.loads(text)).results == frozenset({(KEY, result.id)})


def test_a_lock_without_executable_outputs_reads_and_writes_as_before(tmp_path):
    entry = LockEntry(
        key=KEY,
        cmd=("make",),
        wdir=".",
        deps={},
        code={},
        params={},
        env={},
        outs={"model.bin": digest_bytes(b"m")},
    )
    text = Lock(fingerprint="f", steps={"train": entry}).dumps()
    assert "executable" not in text
    assert lockfile.loads(text).steps["train"].executable == frozenset()
    path = Path(tmp_path / "gitpipe.lock")
    path.write_text(text)
    assert lockfile.read(path).steps["train"] == entry
