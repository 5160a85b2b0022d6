"""Remote stores: `gitpipe push` / `gitpipe pull` between real Git clones, through a
folder remote and a real S3-compatible server (moto's standalone server, started on
127.0.0.1 by a fixture and spoken to over HTTP by the real client library).

Everything that comes from a remote is verified: tampered objects, forged results
and forged folder manifests are rejected and never written to the local store.
"""

from __future__ import annotations

import json
import os
import re
import stat
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import AWS_SETTINGS, Workspace, free_port, git, snapshot

from gitpipe.core.hashing import Digest, ManifestEntry, canonical, digest_bytes, manifest_bytes
from gitpipe.store import lockfile
from gitpipe.store.objects import Store
from gitpipe.store.remote import (
    DirectoryRemote,
    ObjectStoreRemote,
    Progress,
    Selection,
    entry_result_id,
    fetch_for_keys,
    object_name,
    open_remote,
    pull,
    push,
    result_name,
)
from gitpipe.store.runcache import OutRecord, Result, RunCache, result_id

PIPELINE = """
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


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests choose the remote and the AWS settings themselves."""
    for name in ("GITPIPE_REMOTE", "GITPIPE_DEBUG", *AWS_SETTINGS):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def s3_bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """A new, empty bucket; credentials and endpoint only in the environment."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server)
    bucket = f"gitpipe-{uuid.uuid4().hex[:12]}"
    request = urllib.request.Request(f"{s3_server}/{bucket}", method="PUT")
    with urllib.request.urlopen(request, timeout=10):
        pass
    return bucket


@pytest.fixture(params=["folder", "s3"])
def remote_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "folder":
        folder = tmp_path / "remote"
        folder.mkdir()
        return str(folder)
    bucket = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/team/store"


def first_clone(make_workspace: Callable[[str], Workspace]) -> Workspace:
    one = make_workspace("one")
    one.write("data/raw.txt", "hello world\n")
    one.write(".gitignore", "parts/\ncount.txt\n")
    one.pipeline(PIPELINE)
    one.commit("pipeline")
    one.ok("repro")
    one.commit("lock")
    return one


def second_clone(one: Workspace) -> Workspace:
    target = one.root.parent / "two"
    git(one.root.parent, "clone", "-q", str(one.root), str(target))
    return Workspace(target, one.runner)


def store_of(workspace: Workspace) -> Store:
    return Store(workspace.root / ".gitpipe" / "cache")


def lock_keys(workspace: Workspace) -> dict[str, Digest]:
    lock = lockfile.read(workspace.root / "gitpipe.lock")
    return {name: entry.key for name, entry in lock.steps.items()}


def lock_result(workspace: Workspace, step: str) -> tuple[Digest, Digest]:
    """(key, result id) of the result a step's lock entry records."""
    entry = lockfile.read(workspace.root / "gitpipe.lock").steps[step]
    return entry.key, entry_result_id(entry)


def lock_out(workspace: Workspace, step: str, path: str) -> Digest:
    return lockfile.read(workspace.root / "gitpipe.lock").steps[step].outs[path]


def as_json(outcome_stdout: str) -> dict:
    return json.loads(outcome_stdout)


def plant(root: Path, name: str, data: bytes) -> None:
    """Write bytes under a store's or folder remote's name, read-only or not."""
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path.chmod(stat.S_IWUSR | stat.S_IRUSR)
    path.write_bytes(data)


def tamper(remote_url: str, name: str, data: bytes, tmp_path: Path) -> None:
    """Change what a remote holds under a name, behind gitpipe's back."""
    remote = open_remote(remote_url, base=tmp_path)
    if isinstance(remote, DirectoryRemote):
        plant(remote.root, name, data)
    else:
        remote.write(name, data)


def objects_in(store: Store) -> set[Digest]:
    return set(store.iter_objects())


# -- round trips -------------------------------------------------------------------------


def test_a_second_clone_pulls_and_restores_every_step_without_running_one(
    make_workspace, remote_url
):
    one = first_clone(make_workspace)
    pushed = one.ok("push", "--remote", remote_url)
    assert f"and 2 result(s) to {remote_url}" in pushed.stdout

    two = second_clone(one)
    pulled = two.ok("pull", "--remote", remote_url)
    assert "and 2 result(s) from" in pulled.stdout
    two.ok("repro")
    assert two.states() == {"split": "cached", "count": "cached"}
    assert two.ran() == []
    for path in ("parts/a.txt", "parts/b.txt", "count.txt"):
        assert (two.root / path).read_bytes() == (one.root / path).read_bytes()


def test_a_second_push_or_pull_transfers_nothing(make_workspace, remote_url):
    one = first_clone(make_workspace)
    first = as_json(one.ok("push", "--remote", remote_url, "--json").stdout)
    # the folder's manifest, its two files and count.txt; one result per step
    assert (first["objects"], first["results"], first["objects_present"]) == (4, 2, 0)
    again = as_json(one.ok("push", "--remote", remote_url, "--json").stdout)
    assert (again["objects"], again["bytes"], again["results"]) == (0, 0, 0)
    assert (again["objects_present"], again["results_present"]) == (4, 2)

    two = second_clone(one)
    pulled = as_json(two.ok("pull", "--remote", remote_url, "--json").stdout)
    assert (pulled["objects"], pulled["results"]) == (4, 2)
    assert pulled["bytes"] == first["bytes"]
    repeat = as_json(two.ok("pull", "--remote", remote_url, "--json").stdout)
    assert (repeat["objects"], repeat["results"]) == (0, 0)
    assert (repeat["objects_present"], repeat["results_present"]) == (4, 2)


def test_only_the_objects_the_remote_lacks_are_uploaded(make_workspace, tmp_path):
    one = first_clone(make_workspace)
    remote = tmp_path / "remote"
    remote.mkdir()
    one.ok("push", "--remote", str(remote))
    count = lock_out(one, "count", "count.txt")
    (remote / object_name(count)).unlink()
    again = as_json(one.ok("push", "--remote", str(remote), "--json").stdout)
    assert (again["objects"], again["objects_present"]) == (1, 3)
    assert (remote / object_name(count)).is_file()


def test_no_run_cache_moves_objects_but_no_results(make_workspace, tmp_path):
    one = first_clone(make_workspace)
    remote = tmp_path / "remote"
    remote.mkdir()
    report = as_json(one.ok("push", "--remote", str(remote), "--no-run-cache", "--json").stdout)
    assert (report["objects"], report["results"]) == (4, 0)
    assert not (remote / "results").exists()


def test_all_moves_the_whole_store_even_what_no_lock_names(make_workspace, tmp_path):
    one = first_clone(make_workspace)
    extra = store_of(one).add_bytes(b"an object no lock file names\n")
    remote = tmp_path / "remote"
    remote.mkdir()
    named = as_json(one.ok("push", "--remote", str(remote), "--json").stdout)
    assert not (remote / object_name(extra)).exists()
    everything = as_json(one.ok("push", "--remote", str(remote), "--all", "--json").stdout)
    assert everything["objects"] == 1
    assert (remote / object_name(extra)).is_file()

    two = second_clone(one)
    pulled = as_json(two.ok("pull", "--remote", str(remote), "--all", "--json").stdout)
    assert pulled["objects"] == named["objects"] + 1
    assert objects_in(store_of(two)) == objects_in(store_of(one))


def test_the_remote_comes_from_gitpipe_remote_and_the_option_wins(make_workspace, tmp_path):
    one = first_clone(make_workspace)
    from_env, from_option = tmp_path / "env-remote", tmp_path / "option-remote"
    from_env.mkdir()
    from_option.mkdir()
    one.ok("push", env={"GITPIPE_REMOTE": str(from_env)})
    assert (from_env / "objects").is_dir()
    one.ok("push", "--remote", str(from_option), env={"GITPIPE_REMOTE": str(from_env)})
    assert (from_option / "objects").is_dir()

    two = second_clone(one)
    two.ok("pull", env={"GITPIPE_REMOTE": str(from_env)})
    two.ok("repro")
    assert set(two.states().values()) == {"cached"}


def test_the_pipeline_files_remote_url_is_used_and_gitpipe_remote_wins(make_workspace, tmp_path):
    one = first_clone(make_workspace)
    (one.root / "shared").mkdir()  # relative to the pipeline file's folder
    one.write(".gitignore", "parts/\ncount.txt\nshared/\n")
    one.pipeline(PIPELINE + '\n[remote]\nurl = "shared"\n')
    one.ok("push")
    assert (one.root / "shared" / "objects").is_dir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    one.ok("push", env={"GITPIPE_REMOTE": str(elsewhere)})
    assert (elsewhere / "objects").is_dir()


def test_fetch_for_keys_brings_a_steps_result_and_its_objects(make_workspace, tmp_path):
    one = first_clone(make_workspace)
    remote = tmp_path / "remote"
    remote.mkdir()
    one.ok("push", "--remote", str(remote))
    two = second_clone(one)
    store = store_of(two)
    keys = lock_keys(two)

    report = fetch_for_keys(store, DirectoryRemote(remote), [keys["split"]])
    assert (report.results, report.objects, report.rejected) == (1, 3, [])
    assert RunCache(store).get(keys["split"]) is not None
    assert RunCache(store).get(keys["count"]) is None
    assert store.has_tree(lock_out(two, "split", "parts/"))
    again = fetch_for_keys(store, DirectoryRemote(remote), [keys["split"]])
    assert (again.results, again.objects, again.results_present) == (0, 0, 1)


# -- every result of a step travels -------------------------------------------------------

#: a training step: different bytes each run, under one key
NOISY = """
[steps.train]
cmd = "od -An -tx8 -N16 /dev/urandom > model.txt"
deps = ["data/raw.txt"]
outs = ["model.txt"]
"""


def trained_twice(make_workspace: Callable[[str], Workspace], remote_url: str) -> Workspace:
    """A clone whose step ran, was pushed, and ran again (other bytes, same key)."""
    one = make_workspace("one")
    one.write("data/raw.txt", "rows\n")
    one.write(".gitignore", "model.txt\n")
    one.pipeline(NOISY)
    one.commit("pipeline")
    one.ok("repro")
    one.commit("lock")
    first = as_json(one.ok("push", "--remote", remote_url, "--json").stdout)
    assert (first["objects"], first["results"]) == (1, 1)
    one.ok("repro", "--force")
    one.commit("retrained")
    return one


def test_a_rerun_steps_new_result_is_pushed_not_taken_for_the_old_one(make_workspace, remote_url):
    one = trained_twice(make_workspace, remote_url)
    key, newest = lock_result(one, "train")
    cache = RunCache(store_of(one))
    kept = [r.id for r in cache.results(key)]
    assert len(kept) == 2 and kept[0] == newest  # both kept here, the newest first

    pushed = one.ok("push", "--remote", remote_url)
    assert re.match(
        rf"pushed 1 object\(s\) \([^)]*\) and 1 result\(s\) to {re.escape(remote_url)} ",
        pushed.stdout,
    )
    assert "already" not in pushed.stdout
    assert result_name(key, newest) in open_remote(remote_url, base=one.root).listing("results/")
    again = as_json(one.ok("push", "--remote", remote_url, "--json").stdout)
    assert (again["results"], again["results_present"]) == (0, 1)
    everything = as_json(one.ok("push", "--remote", remote_url, "--all", "--json").stdout)
    assert (everything["results"], everything["results_present"]) == (0, 2)


def test_pulling_the_whole_remote_brings_every_result_of_a_step(make_workspace, remote_url):
    one = trained_twice(make_workspace, remote_url)
    one.ok("push", "--remote", remote_url)
    key, newest = lock_result(one, "train")
    here = [(r.id, r.created) for r in RunCache(store_of(one)).results(key)]
    assert here[0][0] == newest

    two = second_clone(one)
    pulled = as_json(two.ok("pull", "--remote", remote_url, "--all", "--json").stdout)
    assert (pulled["objects"], pulled["results"], pulled["rejected"]) == (2, 2, [])
    # the same results, each with the time it was recorded: the same one is newest
    assert [(r.id, r.created) for r in RunCache(store_of(two)).results(key)] == here
    two.ok("repro")
    assert two.states() == {"train": "cached"}
    assert (two.root / "model.txt").read_bytes() == (one.root / "model.txt").read_bytes()
    repeat = as_json(two.ok("pull", "--remote", remote_url, "--all", "--json").stdout)
    assert (repeat["results"], repeat["results_present"]) == (0, 2)


def test_a_locks_selection_fetches_exactly_the_result_the_lock_records(
    make_workspace, remote_url, tmp_path
):
    one = trained_twice(make_workspace, remote_url)
    one.ok("push", "--remote", remote_url)
    key, newest = lock_result(one, "train")
    remote = open_remote(remote_url, base=tmp_path)

    two = second_clone(one)
    pulled = as_json(two.ok("pull", "--remote", remote_url, "--json").stdout)
    assert (pulled["objects"], pulled["results"], pulled["unavailable"]) == (1, 1, [])
    assert [r.id for r in RunCache(store_of(two)).results(key)] == [newest]

    # a step key asks for every result of it: the other one comes now, alone
    report = fetch_for_keys(store_of(two), remote, [key])
    assert (report.results, report.results_present, report.objects) == (1, 1, 1)
    assert len(RunCache(store_of(two)).results(key)) == 2
    assert RunCache(store_of(two)).get(key).id == newest  # still the newest


def test_a_remote_result_whose_content_is_not_the_one_its_name_says_is_rejected(
    make_workspace, remote_url, tmp_path
):
    one = trained_twice(make_workspace, remote_url)
    one.ok("push", "--remote", remote_url)
    key, newest = lock_result(one, "train")
    older = RunCache(store_of(one)).results(key)[1]
    # the lock's name now holds the other (genuine, well-formed) result of the step
    tamper(remote_url, result_name(key, newest), older.to_json(key), tmp_path)

    two = second_clone(one)
    pulled = two.gitpipe("pull", "--remote", remote_url)
    assert pulled.exit_code == 5, pulled.output
    assert (
        f"result {key} {newest} (not a trustworthy result: its outputs are those of "
        f"result {older.id}, not {newest})" in pulled.stderr
    )
    assert RunCache(store_of(two)).get(key) is None
    assert not (store_of(two).root / result_name(key, newest)).exists()
    # the lock (from Git) decides: its own output came through verified
    two.ok("repro")
    assert two.states() == {"train": "cached"}
    assert (two.root / "model.txt").read_bytes() == (one.root / "model.txt").read_bytes()


def test_a_result_under_an_older_gitpipes_name_on_a_remote_is_ignored(make_workspace, tmp_path):
    one = first_clone(make_workspace)
    remote = tmp_path / "remote"
    remote.mkdir()
    one.ok("push", "--remote", str(remote))
    key, rid = lock_result(one, "count")
    legacy = f"results/{key.algorithm}/{key.hex[:2]}/{key.hex[2:]}.json"
    plant(remote, legacy, (remote / result_name(key, rid)).read_bytes())
    (remote / result_name(key, rid)).unlink()

    two = second_clone(one)
    pulled = as_json(two.ok("pull", "--remote", str(remote), "--all", "--json").stdout)
    assert (pulled["results"], pulled["rejected"]) == (1, [])  # split's; not count's
    assert RunCache(store_of(two)).get(key) is None


def test_many_results_are_found_by_listing_their_folders_not_one_by_one(remote_url, tmp_path):
    store = Store(tmp_path / "store")
    cache = RunCache(store)
    keys = [Digest(f"ab{i:062x}") for i in range(40)]  # all in results/b3/ab/
    for i, key in enumerate(keys):
        for run in (1, 2):
            model = OutRecord(store.add_bytes(f"step {i}, run {run}".encode()))
            cache.put(key, Result(outs={"model.bin": model}, created=1000.0 + run))
    remote = open_remote(remote_url, base=tmp_path)
    assert push(store, remote).results == 80

    cache.put(keys[0], Result(outs={"model.bin": OutRecord(store.add_bytes(b"run 3"))}))
    checks: list[Progress] = []
    again = push(store, remote, progress=checks.append)
    assert (again.results, again.results_present) == (1, 80)
    started = [p for p in checks if p.phase == "checking" and p.done == 0]
    assert started[-1].total == 1  # the results: one listing of results/b3/ab/

    other = Store(tmp_path / "other")
    checks.clear()
    pulled = pull(other, remote, Selection(keys=frozenset(keys)), progress=checks.append)
    assert (pulled.results, pulled.objects, pulled.rejected) == (81, 81, [])
    # one listing of results/b3/ab/, then the index of the one pack the 80 objects went in
    assert [p.total for p in checks if p.phase == "checking" and p.done == 0] == [1, 1]
    assert [r.id for r in RunCache(other).results(keys[0])] == [
        r.id for r in cache.results(keys[0])
    ]


# -- verification -----------------------------------------------------------------------


def test_an_object_changed_on_the_remote_is_rejected_and_never_stored(
    make_workspace, remote_url, tmp_path
):
    one = first_clone(make_workspace)
    one.ok("push", "--remote", remote_url)
    count = lock_out(one, "count", "count.txt")
    tamper(remote_url, object_name(count), b"999\n", tmp_path)

    two = second_clone(one)
    pulled = two.gitpipe("pull", "--remote", remote_url)
    assert pulled.exit_code == 5, pulled.output
    assert f"object {count} (its bytes hash to b3:" in pulled.stderr
    assert "Traceback" not in pulled.output
    store = store_of(two)
    assert count not in store
    assert not any((store.root / "tmp").iterdir())  # nothing half-kept either
    # the other step's objects and result came through; count runs again
    two.ok("repro")
    assert two.states() == {"split": "cached", "count": "ran"}
    assert (two.root / "count.txt").read_bytes() == (one.root / "count.txt").read_bytes()


@pytest.mark.parametrize("evil", ["../evil", "/tmp/gitpipe-evil", "parts/../../evil"])
def test_a_result_naming_a_path_outside_the_workspace_is_rejected(make_workspace, tmp_path, evil):
    one = first_clone(make_workspace)
    remote = tmp_path / "remote"
    remote.mkdir()
    one.ok("push", "--remote", str(remote))
    key, rid = lock_result(one, "count")
    record = json.loads((remote / result_name(key, rid)).read_bytes())
    record["outs"] = {evil: record["outs"]["count.txt"]}
    plant(remote, result_name(key, rid), canonical(record))

    two = second_clone(one)
    pulled = two.gitpipe("pull", "--remote", str(remote))
    assert pulled.exit_code == 5, pulled.output
    assert f"result {key} {rid} (not a trustworthy result: unsafe output path" in pulled.stderr
    assert RunCache(store_of(two)).get(key) is None
    assert not (store_of(two).root / result_name(key, rid)).exists()
    # gitpipe.lock (from Git, trusted) still names count.txt's digest, and that object
    # came through verified: the step is restored from the lock, nothing lands outside
    two.ok("repro")
    assert two.states() == {"split": "cached", "count": "cached"}
    assert (two.root / "count.txt").read_bytes() == (one.root / "count.txt").read_bytes()
    assert not (tmp_path / "evil").exists()
    assert not Path("/tmp/gitpipe-evil").exists()


def test_a_result_with_a_malformed_digest_is_rejected(make_workspace, tmp_path):
    one = first_clone(make_workspace)
    remote = tmp_path / "remote"
    remote.mkdir()
    one.ok("push", "--remote", str(remote))
    key, rid = lock_result(one, "count")
    record = json.loads((remote / result_name(key, rid)).read_bytes())
    record["outs"]["count.txt"]["digest"] = "b3:../../../etc/passwd"
    plant(remote, result_name(key, rid), canonical(record))

    two = second_clone(one)
    pulled = two.gitpipe("pull", "--remote", str(remote))
    assert pulled.exit_code == 5
    assert "not a valid digest" in pulled.stderr
    assert RunCache(store_of(two)).get(key) is None


def test_a_folder_manifest_naming_a_path_outside_its_folder_is_rejected(make_workspace, tmp_path):
    one = first_clone(make_workspace)
    remote = tmp_path / "remote"
    remote.mkdir()
    one.ok("push", "--remote", str(remote))
    key, rid = lock_result(one, "split")
    # a forged manifest, stored under its true digest, and a result pointing at it,
    # under the name of its own id: another result of the step, as far as names go
    payload = b"planted\n"
    forged = manifest_bytes([ManifestEntry("../../planted.txt", digest_bytes(payload), 8, False)])
    plant(remote, object_name(digest_bytes(payload)), payload)
    plant(remote, object_name(digest_bytes(forged)), forged)
    record = json.loads((remote / result_name(key, rid)).read_bytes())
    record["outs"]["parts"]["digest"] = str(digest_bytes(forged))
    forged_id = result_id({"parts": OutRecord(digest_bytes(forged), is_dir=True)})
    plant(remote, result_name(key, forged_id), canonical(record))

    two = second_clone(one)
    pulled = two.gitpipe("pull", "--remote", str(remote), "--all")
    assert pulled.exit_code == 5, pulled.output
    assert "its manifest names the unsafe path '../../planted.txt'" in pulled.stderr
    assert digest_bytes(forged) not in store_of(two)
    assert RunCache(store_of(two)).get_exact(key, forged_id) is None
    assert [r.id for r in RunCache(store_of(two)).results(key)] == [rid]
    # the lock's own digest for parts/ came through verified: restored from it
    two.ok("repro")
    assert two.states() == {"split": "cached", "count": "cached"}
    assert (two.root / "parts" / "a.txt").read_text() == "hello\n"
    assert not list(tmp_path.rglob("planted.txt"))


def test_a_damaged_local_object_is_not_pushed(make_workspace, tmp_path):
    one = first_clone(make_workspace)
    count = lock_out(one, "count", "count.txt")
    plant(store_of(one).root, object_name(count), b"damaged\n")
    remote = tmp_path / "remote"
    remote.mkdir()
    pushed = one.gitpipe("push", "--remote", str(remote))
    assert pushed.exit_code == 5
    assert "the local copy is damaged" in pushed.stderr
    assert not (remote / object_name(count)).exists()
    # a result is never pushed ahead of its objects
    assert not (remote / result_name(*lock_result(one, "count"))).exists()
    assert (remote / result_name(*lock_result(one, "split"))).exists()


# -- errors -----------------------------------------------------------------------------


def one_line_error(outcome) -> str:
    assert "Traceback" not in outcome.output
    lines = outcome.stderr.strip().splitlines()
    assert len(lines) == 1, outcome.stderr
    return lines[0]


def test_a_missing_remote_folder_is_a_one_line_error(make_workspace, tmp_path):
    one = first_clone(make_workspace)
    missing = tmp_path / "nowhere"
    for command in ("push", "pull"):
        outcome = one.gitpipe(command, "--remote", str(missing))
        assert outcome.exit_code == 5
        line = one_line_error(outcome)
        assert f"the remote folder {missing} does not exist" in line
    assert not missing.exists()


def test_an_unreachable_s3_server_is_a_one_line_error_within_seconds(make_workspace, monkeypatch):
    one = first_clone(make_workspace)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    outcome = one.gitpipe("push", "--remote", "s3://bucket/store")
    assert outcome.exit_code == 5
    line = one_line_error(outcome)
    assert "cannot reach the remote s3://bucket/store" in line
    assert time.monotonic() - started < 30


def test_a_missing_bucket_is_a_one_line_error(make_workspace, s3_bucket):
    one = first_clone(make_workspace)
    outcome = one.gitpipe("pull", "--remote", f"s3://{s3_bucket}-missing/store")
    assert outcome.exit_code == 5
    assert "NoSuchBucket" in one_line_error(outcome)


def test_without_a_remote_gitpipe_says_how_to_name_one(make_workspace):
    one = first_clone(make_workspace)
    outcome = one.gitpipe("push")
    assert outcome.exit_code == 2
    assert "GITPIPE_REMOTE" in one_line_error(outcome)


@pytest.mark.parametrize("direction", ["push", "pull"])
@pytest.mark.parametrize("everything", [(), ("--all",)], ids=["lock", "all"])
def test_push_or_pull_without_a_pipeline_file_is_one_line_naming_it(
    make_workspace, tmp_path, direction, everything
):
    bare = make_workspace("bare")
    (tmp_path / "remote").mkdir()
    before = snapshot(bare.root)

    outcome = bare.gitpipe(direction, *everything, "--remote", str(tmp_path / "remote"))

    assert outcome.exit_code == 2, outcome.output
    assert one_line_error(outcome) == (
        f"gitpipe: gitpipe.toml: no pipeline file here, so there is nothing to {direction}; "
        "run `gitpipe init` to create one, or pass -f FILE"
    )
    assert outcome.stdout == ""
    assert snapshot(bare.root) == before
    assert list((tmp_path / "remote").iterdir()) == []


def test_credentials_in_the_url_are_refused(make_workspace):
    one = first_clone(make_workspace)
    outcome = one.gitpipe("push", "--remote", "s3://KEY:SECRET@bucket/store")
    assert outcome.exit_code == 2
    assert "holds credentials" in one_line_error(outcome)


def test_the_object_store_remote_is_the_real_client_over_http(s3_bucket, tmp_path):
    remote = open_remote(f"s3://{s3_bucket}/p", base=tmp_path)
    assert isinstance(remote, ObjectStoreRemote)
    big = tmp_path / "big"
    big.write_bytes(os.urandom(12 * 1024 * 1024))  # several parts of a multipart upload
    remote.upload(big, "objects/b3/aa/big")
    back = tmp_path / "back"
    assert remote.download("objects/b3/aa/big", back)
    assert back.read_bytes() == big.read_bytes()
    assert remote.listing("objects/") == {"objects/b3/aa/big"}
    assert not remote.download("objects/b3/aa/none", back)
    assert remote.read("results/none.json") is None
