"""The records a large `repro` makes at its end, made without whole copies.

The pipeline's fingerprint is hashed step by step (the same digest as the record
whole), and the tables `repro` leaves in the parse cache beside the lock it wrote are
its own tables wherever they already are as the TOML parser would give them.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

from gitpipe.core import tomlcache
from gitpipe.core.hashing import Digest, digest_record, digest_record_with_table
from gitpipe.identity.action import fingerprint
from gitpipe.pipeline.spec import load_cached
from gitpipe.store import lockfile
from gitpipe.store.lockfile import Lock, LockEntry

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: the fingerprint main (5dd35d2) gave the pipeline of the test below, before it was
#: hashed step by step
GOLDEN = "cd2e85a2cc0949bcd46ba1b96f557939dbab3bffe414345974e81cfdbda9db39"

ROWS = {
    "zeta": {"cmd": ["cp a b"], "params": {"lr": 0.5, "layers": [1, 2, {"x": None}]}},
    "älpha": {"cmd": ["echo ü"], "env": {"B": "2", "A": "1"}, "digest": Digest("0" * 64)},
    "Beta": {"cmd": [], "params": {"when": True, "big": 2**70, "inf": math.inf}},
    "1": {},
}


def test_a_table_hashed_row_by_row_has_the_digest_of_the_whole_record():
    head = {"schema": "s/1", "params": {"n": 3, "nested": {"b": 1, "a": [1.5, "x"]}}}
    whole = digest_record({**head, "steps": ROWS})
    assert digest_record_with_table(head, "steps", ROWS, ROWS.__getitem__) == whole
    assert digest_record_with_table(head, "steps", [], ROWS.__getitem__) == digest_record(
        {**head, "steps": {}}
    )
    # the table's name sorts among the other keys as it would in the record
    assert digest_record_with_table(head, "a", ROWS, ROWS.__getitem__) == digest_record(
        {**head, "a": ROWS}
    )


@pytest.mark.parametrize("count", [1, 255, 256, 257, 512, 513, 1000])
def test_a_table_of_any_length_hashed_in_batches_has_the_whole_record_s_digest(count: int):
    # rows are encoded a batch at a time (hashing._ROWS): every boundary lands alike
    rows = {f"s{i:04d}": {"cmd": [f"cp {i} {i + 1}"], "n": i} for i in range(count)}
    head = {"schema": "s/1"}
    assert digest_record_with_table(head, "steps", rows, rows.__getitem__) == digest_record(
        {**head, "steps": rows}
    )


def test_a_table_hashed_row_by_row_refuses_what_the_whole_record_refuses():
    with pytest.raises(TypeError):
        digest_record_with_table({}, "steps", ["a"], lambda _: object())
    with pytest.raises(TypeError):
        digest_record_with_table({}, "steps", [1], lambda _: {})  # type: ignore[list-item]


def test_the_fingerprint_of_a_pipeline_is_the_digest_it_had_when_hashed_whole(tmp_path: Path):
    (tmp_path / "gitpipe.toml").write_text(
        """
[pipeline]
name = "p"

[params]
lr = 0.1

[steps.train]
cmd = "python train.py ${params.lr}"
deps = ["data/"]
outs = ["model.bin"]
metrics = ["m.json"]
plots = ["loss.csv"]
params = ["lr"]
env = { SEED = "1" }

[steps.prep]
cmd = "cp raw.txt data/x.txt"
deps = ["raw.txt"]
outs = ["data/"]
"""
    )
    pipeline, _ = load_cached(tmp_path / "gitpipe.toml")
    code = {"train": {"train.py": Digest("a" * 64)}}
    # the digest gitpipe gave before the record was hashed step by step (5dd35d2)
    assert fingerprint(pipeline, code) == Digest(GOLDEN)


def test_tables_already_as_a_parse_gives_them_are_kept_as_they_are_not_copied():
    data = {"a": 1, "b": ["x", 2], "t": {"k": "v", "u": {"n": 1.5}}}
    assert tomlcache._as_parsed(data) is data
    assert tomlcache._as_parsed(data["t"]) is data["t"]


def test_tables_a_parse_would_give_otherwise_are_made_again_in_its_order():
    data = {"t": {"k": "v"}, "a": (1, 2), "z": 3}
    parsed = tomlcache._as_parsed(data)
    assert parsed == {"a": [1, 2], "z": 3, "t": {"k": "v"}}
    assert list(parsed) == ["a", "z", "t"]
    assert data == {"t": {"k": "v"}, "a": (1, 2), "z": 3}  # left as it was


def test_a_written_lock_is_read_back_from_the_cache_as_its_parse_gives_it(tmp_path: Path):
    entry = LockEntry(
        key=Digest("0" * 64),
        cmd=("cp a b",),
        wdir=".",
        deps={"a": Digest("1" * 64)},
        code={},
        params={"p": {"x": [1, 2.5, "s"]}, "q": 1},
        env={"E": "1"},
        outs={"b": Digest("2" * 64)},
        executable=frozenset({"b"}),  # a list after the tables: written otherwise
    )
    lock = Lock(name="n", fingerprint="f", steps={"s": entry, "t": entry}, version="1.0.0")
    cache = tmp_path / "state" / "parsed"
    cache.mkdir(parents=True)
    path = tmp_path / "gitpipe.lock"
    lockfile.write(path, lock, cache_dir=cache)
    parsed = tomllib.loads(path.read_text())
    cached, _ = tomlcache.load(path, cache)
    assert cached == parsed
    assert list(cached["steps"]["s"]) == list(parsed["steps"]["s"])
    assert lockfile.read_cached(path, cache_dir=cache)[0] == lock
