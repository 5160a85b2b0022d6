"""Added data between clones: `push`/`pull` carry it, a teammate's clone of a bare
origin puts it back with `checkout` (or `repro --pull`) running nothing, and `gc`
keeps what gitpipe.data names on any branch or tag.  Real Git clones, a folder remote
and a real S3-compatible server on loopback (moto)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import test_remote
from conftest import AWS_SETTINGS, Workspace, git, make_repo, refused

from gitpipe.core import tomlcache
from gitpipe.core.hashing import Digest
from gitpipe.store.objects import Store

PIPELINE = """
[steps.count]
cmd = "cat data/raw.csv data/images/*.txt | wc -c > count.txt"
deps = ["data/raw.csv", "data/images/"]
outs = ["count.txt"]
"""


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITPIPE_REMOTE", "GITPIPE_CACHE_DIR", *AWS_SETTINGS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CI", "true")


#: test_remote's fixtures: a folder remote, or a fresh bucket on the moto server
remote_url = test_remote.remote_url
s3_bucket = test_remote.s3_bucket


def origin_and_clone(tmp_path: Path) -> tuple[Workspace, Path]:
    """A workspace with a dataset added and its step run, committed and pushed to a
    bare origin."""
    from typer.testing import CliRunner

    one = Workspace(make_repo(tmp_path / "one"), CliRunner())
    one.write(".gitignore", "count.txt\n")
    one.pipeline(PIPELINE)
    one.write("data/raw.csv", "a,b\n1,2\n")
    one.write("data/images/one.txt", "one\n")
    one.write("data/images/deep/two.txt", "two\n")
    one.ok("add", "data/raw.csv", "data/images")
    one.ok("repro")
    one.commit("data v1")
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    git(one.root, "remote", "add", "origin", str(origin))
    git(one.root, "push", "-q", "origin", "main")
    return one, origin


def clone(origin: Path, one: Workspace, name: str = "two") -> Workspace:
    target = origin.parent / name
    git(origin.parent, "clone", "-q", str(origin), str(target))
    return Workspace(target, one.runner)


def same_files(a: Workspace, b: Workspace) -> None:
    for path in ("data/raw.csv", "data/images/one.txt", "data/images/deep/two.txt", "count.txt"):
        assert (a.root / path).read_bytes() == (b.root / path).read_bytes(), path


def test_a_teammate_clones_pulls_and_checks_out_running_nothing(tmp_path, remote_url):
    one, origin = origin_and_clone(tmp_path)
    pushed = json.loads(one.ok("push", "--remote", remote_url, "--json").stdout)
    # raw.csv, the folder's manifest and its two files, count.txt
    assert pushed["objects"] == 5
    two = clone(origin, one)
    assert not (two.root / "data").exists()
    two.ok("pull", "--remote", remote_url)
    out = two.ok("checkout").stdout
    assert "restored data/raw.csv" in out and "restored count.txt" in out
    same_files(one, two)
    two.ok("status", "--check")
    assert not (two.root / ".gitpipe" / "lineage.db").exists()  # nothing ran
    assert git(two.root, "status", "--porcelain") == ""


def test_repro_pull_in_a_fresh_clone_puts_back_added_data_and_restores_the_step(
    tmp_path, monkeypatch
):
    one, origin = origin_and_clone(tmp_path)
    remote = tmp_path / "remote"
    remote.mkdir()
    one.ok("push", "--remote", str(remote))
    two = clone(origin, one)
    monkeypatch.setenv("GITPIPE_REMOTE", str(remote))
    result = two.ok("repro", "--pull")
    assert "put back added data from the store: data/images/, data/raw.csv" in result.output
    assert two.states() == {"count": "cached"}
    same_files(one, two)


def test_checkout_pull_fetches_only_what_the_store_lacks(tmp_path, monkeypatch):
    one, origin = origin_and_clone(tmp_path)
    remote = tmp_path / "remote"
    remote.mkdir()
    one.ok("push", "--remote", str(remote))
    two = clone(origin, one)
    refused(
        two,
        "checkout",
        says=("data/raw.csv (added data)", "data/images/ (added data)", "--pull"),
        code=3,
    )
    monkeypatch.setenv("GITPIPE_REMOTE", str(remote))
    out = two.ok("checkout", "--pull", "data/raw.csv").stdout
    assert "1 path(s) restored" in out and "fetched 1 object(s)" in out
    assert not (two.root / "data/images").exists()
    two.ok("checkout", "--pull")
    same_files(one, two)
    assert "fetched" not in two.ok("checkout", "--pull").stdout


def test_a_pull_of_objects_the_remote_lacks_exits_3_naming_them(tmp_path, monkeypatch):
    one, origin = origin_and_clone(tmp_path)
    remote = tmp_path / "remote"
    remote.mkdir()  # nothing pushed
    two = clone(origin, one)
    monkeypatch.setenv("GITPIPE_REMOTE", str(remote))
    result = two.gitpipe("checkout", "--pull")
    assert result.exit_code == 3
    assert "neither the store nor the remote holds" in result.stderr
    assert "data/raw.csv (added data)" in result.stderr
    assert not (two.root / "data").exists()


def digests(ws: Workspace) -> dict[str, Digest]:
    table = tomlcache.loads((ws.root / "gitpipe.data").read_text())["data"]
    return {path: Digest.parse(fields["digest"]) for path, fields in table.items()}


def test_gc_keeps_the_data_any_branch_or_tag_records_and_removes_the_rest(tmp_path):
    one, _origin = origin_and_clone(tmp_path)
    raw = one.root / "data/raw.csv"
    git(one.root, "tag", "v1")
    v1 = digests(one)["data/raw.csv"]
    raw.write_text("never committed\n")
    one.ok("add", "data/raw.csv")
    orphan = digests(one)["data/raw.csv"]
    git(one.root, "checkout", "-q", "-b", "feature")
    raw.write_text("on a branch\n")
    one.ok("add", "data/raw.csv")
    one.commit("feature data")
    feature = digests(one)["data/raw.csv"]
    git(one.root, "checkout", "-q", "main")
    one.ok("checkout")  # main's data back (the tag's: main did not move)
    assert raw.read_text() == "a,b\n1,2\n"
    git(one.root, "tag", "-d", "v1")
    git(one.root, "tag", "v1")  # a tag only: main moves on
    raw.write_text("main moved on\n")
    one.ok("add", "data/raw.csv")
    one.commit("data v2")
    now = digests(one)["data/raw.csv"]
    store = Store(one.root / ".gitpipe" / "cache")
    assert {v1, orphan, feature, now} <= set(store.iter_objects())
    report = json.loads(one.ok("gc", "--force", "--keep-recent", "0", "--json").stdout)
    assert report["objects"] >= 1
    kept = set(store.iter_objects())
    assert {v1, feature, now} <= kept
    assert orphan not in kept
    # every version any ref records comes back without running anything
    for ref, text in (("v1", "a,b\n1,2\n"), ("feature", "on a branch\n")):
        git(one.root, "checkout", "-q", ref)
        one.ok("checkout")
        assert raw.read_text() == text


def test_gc_refuses_to_delete_while_a_data_file_on_a_branch_is_damaged(tmp_path):
    one, _origin = origin_and_clone(tmp_path)
    git(one.root, "checkout", "-q", "-b", "broken")
    (one.root / "gitpipe.data").write_text("[gitpipe]\nschema = 1\n[data.x\n")
    one.commit("damaged")
    git(one.root, "checkout", "-q", "main")
    result = one.gitpipe("gc", "--force", "--keep-recent", "0")
    assert result.exit_code == 5
    assert "gitpipe.data" in result.stderr and "deletes nothing" in result.stderr


def test_a_clone_sharing_the_store_keeps_its_added_data_through_gc_in_another(
    tmp_path, monkeypatch
):
    one, origin = origin_and_clone(tmp_path)
    store = tmp_path / "shared-store"
    monkeypatch.setenv("GITPIPE_CACHE_DIR", str(store))
    two = clone(origin, one)
    two.write("data/raw.csv", "a,b\n1,2\n")
    two.write("data/images/one.txt", "one\n")
    two.write("data/images/deep/two.txt", "two\n")
    two.write("extra.bin", "only in two's working tree\n")
    two.ok("add", "extra.bin")
    extra = digests(two)["extra.bin"]
    three = clone(origin, one, "three")
    three.ok("gc", "--force", "--keep-recent", "0")
    assert extra in set(Store(store).iter_objects())


def corrupt_object(ws: Workspace, digest: Digest) -> Path:
    """Overwrite one object of ``ws``'s store with other bytes, as a disk or a hand
    might."""
    path = Store(ws.root / ".gitpipe" / "cache").object_path(digest)
    path.chmod(0o644)
    path.write_bytes(b"not what was added\n")
    return path


def test_checkout_moves_a_corrupt_object_aside_and_a_pull_brings_it_back(tmp_path):
    one, _origin = origin_and_clone(tmp_path)
    remote = tmp_path / "remote"
    remote.mkdir()
    one.ok("push", "--remote", str(remote))
    raw = digests(one)["data/raw.csv"]
    good = (one.root / "data/raw.csv").read_bytes()
    (one.root / "data/raw.csv").unlink()
    corrupt_object(one, raw)
    result = one.gitpipe("checkout")
    assert result.exit_code == 5, result.output
    message = result.stderr
    assert f"object {raw} (for data/raw.csv) in the store is corrupt" in message
    assert "moved to the store's quarantine and nothing was changed" in message
    assert "`gitpipe checkout --pull` fetches it again" in message
    assert "`gitpipe add data/raw.csv` from a good copy" in message
    assert "gitpipe repro" not in message  # added data has no step to run
    assert "Traceback" not in result.output
    # the bad bytes are kept aside, never restored; nothing reached the workspace
    quarantined = one.root / ".gitpipe/cache/quarantine/b3" / raw.hex
    assert quarantined.read_bytes() == b"not what was added\n"
    assert not (one.root / "data/raw.csv").exists()
    # a second checkout says the store lacks it (it is not restored from the quarantine)
    refused(one, "checkout", says=("the store lacks the bytes", "data/raw.csv"), code=3)
    out = one.ok("checkout", "--pull", "--remote", str(remote)).stdout
    assert "restored data/raw.csv" in out
    assert (one.root / "data/raw.csv").read_bytes() == good


def test_checkout_pull_replaces_a_corrupt_object_from_the_remote_in_one_go(tmp_path):
    one, _origin = origin_and_clone(tmp_path)
    remote = tmp_path / "remote"
    remote.mkdir()
    one.ok("push", "--remote", str(remote))
    count = Digest.parse(
        tomlcache.loads((one.root / "gitpipe.lock").read_text())["steps"]["count"]["outs"][
            "count.txt"
        ]
    )
    good = (one.root / "count.txt").read_bytes()
    (one.root / "count.txt").unlink()
    corrupt_object(one, count)
    out = one.ok("checkout", "--pull", "--remote", str(remote)).stdout
    assert "restored count.txt" in out and "fetched 1 object(s)" in out
    assert (one.root / "count.txt").read_bytes() == good
    assert (one.root / ".gitpipe/cache/quarantine/b3" / count.hex).exists()


def test_a_corrupt_step_output_object_points_checkout_at_repro(tmp_path):
    one, _origin = origin_and_clone(tmp_path)
    lock = tomlcache.loads((one.root / "gitpipe.lock").read_text())
    count = Digest.parse(lock["steps"]["count"]["outs"]["count.txt"])
    (one.root / "count.txt").unlink()
    corrupt_object(one, count)
    result = one.gitpipe("checkout", "count.txt")
    assert result.exit_code == 5, result.output
    assert "`gitpipe repro` to make the output of step count again" in result.stderr
    assert not (one.root / "count.txt").exists()
