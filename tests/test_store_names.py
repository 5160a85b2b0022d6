"""One implementation names objects and results: the store, the run cache and a remote
build the same names from digests, and parse back only names that are exactly theirs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gitpipe.core.hashing import digest_bytes
from gitpipe.store.naming import (
    legacy_result_name,
    object_name,
    parse_legacy_result_name,
    parse_object_name,
    parse_result_name,
    result_name,
    results_prefix,
)
from gitpipe.store.objects import Store
from gitpipe.store.remote import DirectoryRemote
from gitpipe.store.runcache import OutRecord, Result, RunCache

KEY = digest_bytes(b"a step's key")
RID = digest_bytes(b"one of its results")


def test_each_name_parses_back_to_the_digests_it_was_built_from():
    assert object_name(KEY) == f"objects/b3/{KEY.hex[:2]}/{KEY.hex[2:]}"
    assert parse_object_name(object_name(KEY)) == KEY
    assert result_name(KEY, RID) == f"{results_prefix(KEY)}{RID.hex}.json"
    assert parse_result_name(result_name(KEY, RID)) == (KEY, RID)
    assert legacy_result_name(KEY) == f"results/b3/{KEY.hex[:2]}/{KEY.hex[2:]}.json"
    assert parse_legacy_result_name(legacy_result_name(KEY)) == KEY


@pytest.mark.parametrize(
    "name",
    [
        f"results/b3/{KEY.hex[:2]}/{KEY.hex[2:]}",  # an object's shape under results/
        f"objects/b3/{KEY.hex[:3]}/{KEY.hex[3:]}",  # spread over the wrong folders
        f"objects/b3/{KEY.hex[:2]}/{KEY.hex[2:].upper()}",
        f"objects/md5/{KEY.hex[:2]}/{KEY.hex[2:]}",
        f"objects/b3/{KEY.hex[:2]}/{KEY.hex[2:]}/x",
        f"objects/b3/{KEY.hex[:2]}/.{KEY.hex[3:]}",  # a hidden temporary file
        "objects/b3/../../etc/passwd",
    ],
)
def test_a_name_that_is_not_exactly_an_objects_names_no_object(name):
    assert parse_object_name(name) is None


@pytest.mark.parametrize(
    "name",
    [
        legacy_result_name(KEY),  # an older gitpipe's: not a result with an id
        result_name(KEY, RID).removesuffix(".json"),
        result_name(KEY, RID).replace("results/", "objects/"),
        f"{results_prefix(KEY)}.{RID.hex}.json.tmp",  # a write going on
        f"{results_prefix(KEY)}{RID.hex[:-1]}.json",
        object_name(KEY),
    ],
)
def test_a_name_that_is_not_exactly_a_results_names_no_result(name):
    assert parse_result_name(name) is None


def test_names_are_never_built_from_unvalidated_digests():
    forged = type(KEY)("../../etc")
    for build in (object_name, results_prefix, legacy_result_name):
        with pytest.raises(ValueError):
            build(forged)
    with pytest.raises(ValueError):
        result_name(KEY, forged)


def test_the_store_its_run_cache_and_a_folder_remote_share_one_layout(tmp_path):
    store = Store(tmp_path / "store")
    digest = store.add_bytes(b"an output\n")
    result = Result(outs={"out.txt": OutRecord(digest, size=10)}, step="make")
    cache = RunCache(store)
    cache.put(KEY, result)
    assert store.object_path(digest) == store.root / object_name(digest)
    assert cache.path_of(KEY, result.id) == store.root / result_name(KEY, result.id)
    assert list(store.iter_objects()) == [digest]
    assert list(cache.stored()) == [(KEY, result.id, store.root / result_name(KEY, result.id))]
    remote = DirectoryRemote(store.root)  # a remote is a store's layout, without tmp/
    assert remote.listing("objects/") == {object_name(digest)}
    assert remote.listing("results/") == {result_name(KEY, result.id)}


def test_a_folder_remote_is_opened_without_importing_obstore(tmp_path):
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from gitpipe.store import remote\n"
        f"remote.open_remote({str(tmp_path)!r}, base=Path.cwd())\n"
        "assert 'obstore' not in sys.modules, 'obstore was imported'\n"
    )
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", script], check=True, cwd=root)
