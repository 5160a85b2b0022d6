"""A pull from a remote holding bad copies: a pack member whose bytes are not its
digest's, a truncated pack, an index whose pack is gone, a garbled index. Through the
real command line, against a folder remote and a real S3-compatible server (moto's,
on 127.0.0.1).

What must hold: gitpipe.lock names the bytes, and the remote only serves them. A bad
copy is never stored: the next copy of the object (another pack whose index lists it,
or the object under its own name) is tried; only when no copy is good does the pull
fail (exit 5), naming the object and the remote and saying what did come; nothing
half-written is left in the store or the workspace. An index whose pack is gone, or
one that cannot be read and that nothing wanted needs, is a warning, not an error.
"""

from __future__ import annotations

import json

import pytest
import test_remote
from conftest import AWS_SETTINGS, Workspace
from test_forged_results import clone, store_of
from test_remote_packs import FILES, files_under, make_outputs, producer, put, the_pack

from gitpipe.core.hashing import Digest, canonical, digest_bytes
from gitpipe.store import lockfile
from gitpipe.store.naming import object_name, pack_index_name, pack_name
from gitpipe.store.remote import DirectoryRemote, Remote, open_remote, packs


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITPIPE_REMOTE", "GITPIPE_DEBUG", "GITPIPE_FAULT", *AWS_SETTINGS):
        monkeypatch.delenv(name, raising=False)


remote_url = test_remote.remote_url
s3_bucket = test_remote.s3_bucket


def delete(remote: Remote, name: str) -> None:
    """Remove what a remote holds under ``name``, behind gitpipe's back."""
    if isinstance(remote, DirectoryRemote):
        (remote.root / name).unlink()
    else:
        remote._obs.delete(remote.store, name)  # type: ignore[attr-defined]


def damage(remote: Remote, pack: Digest, member: packs.Member) -> None:
    """Flip one byte of one member of a pack; its index is left as it was."""
    data = bytearray(remote.read(pack_name(pack)) or b"")
    data[member.offset] ^= 0xFF
    put(remote, pack_name(pack), bytes(data))


def second_pack(workspace: Workspace, remote: Remote, digests: list[Digest]) -> Digest:
    """Another pack holding ``digests`` (in another order, so another pack), written
    as a push writes one: the pack, then its index."""
    return packs.upload(remote, packs.build(store_of(workspace), digests))


def untouched(workspace: Workspace) -> dict[str, bytes]:
    return {
        k: v
        for k, v in files_under(workspace.root).items()
        if not k.startswith((".git/", ".gitpipe/"))
    }


def test_a_damaged_pack_member_comes_from_another_pack_that_holds_it(
    make_workspace, remote_url, tmp_path
):
    one = producer(make_workspace)
    one.ok("push", "--remote", remote_url)
    remote = open_remote(remote_url, base=tmp_path)
    first, members = the_pack(remote)
    second = second_pack(one, remote, sorted(members, reverse=True))
    assert packs.listed(remote) == sorted([first, second])
    _, files = make_outputs(one)
    victim = files[7]
    damage(remote, min(first, second, key=str), members[victim])  # the copy read first

    two = clone(one, "two")
    pulled = two.ok("pull", "--remote", remote_url)
    assert "failed verification" not in pulled.output
    assert f"pulled {FILES + 2} object(s)" in pulled.stdout
    two.ok("repro")
    assert two.states() == {"make": "cached", "count": "cached"}
    assert files_under(two.root / "out") == files_under(one.root / "out")
    assert not any((store_of(two).root / "tmp").iterdir())


def test_a_damaged_pack_member_comes_from_its_copy_under_its_own_name(
    make_workspace, remote_url, tmp_path
):
    one = producer(make_workspace)
    one.ok("push", "--remote", remote_url)
    remote = open_remote(remote_url, base=tmp_path)
    pack, members = the_pack(remote)
    _, files = make_outputs(one)
    victim = files[3]
    remote.upload(store_of(one).object_path(victim), object_name(victim))
    damage(remote, pack, members[victim])

    two = clone(one, "two")
    done = two.ok("checkout", "--pull", "--remote", remote_url)
    assert f"fetched {FILES + 2} object(s)" in done.stdout
    assert files_under(two.root / "out") == files_under(one.root / "out")
    assert not any((store_of(two).root / "tmp").iterdir())


def test_when_no_copy_is_good_the_pull_names_the_object_and_the_remote_and_keeps_the_rest(
    make_workspace, remote_url, tmp_path
):
    one = producer(make_workspace)
    one.ok("push", "--remote", remote_url)
    remote = open_remote(remote_url, base=tmp_path)
    pack, members = the_pack(remote)
    _, files = make_outputs(one)
    victim = files[5]
    damage(remote, pack, members[victim])
    forged = b"not the bytes\n"
    remote.write(object_name(victim), forged)  # its loose copy is bad too

    two = clone(one, "two")
    pulled = two.gitpipe("pull", "--remote", remote_url)
    assert pulled.exit_code == 5, pulled.output
    assert "Traceback" not in pulled.output
    # what passed came in, and the command says so on both streams
    assert f"pulled {FILES + 1} object(s)" in pulled.stdout
    [line] = [line for line in pulled.stderr.splitlines() if "failed verification" in line]
    assert f"1 item(s) failed verification: object {victim} (its bytes hash to b3:" in line
    assert f"in pack {pack}, its bytes hash to {digest_bytes(forged)} under its own name" in line
    assert f"the {FILES + 1} object(s) and 1 result(s) that passed are in the store" in line
    assert f"the copies on {remote.url} are damaged or forged" in line
    store = store_of(two)
    assert victim not in store
    assert not (store.root / object_name(victim)).exists()
    assert all(d in store for d in files if d != victim)
    assert not any((store.root / "tmp").iterdir())

    # checkout --pull stops before the workspace is touched
    three = clone(one, "three")
    before = untouched(three)
    refused = three.gitpipe("checkout", "--pull", "--remote", remote_url)
    assert refused.exit_code == 5, refused.output
    assert f"object {victim} (its bytes hash to" in refused.stderr
    assert "nothing in the workspace was changed" in refused.stderr
    assert untouched(three) == before
    assert victim not in store_of(three)
    assert not any((store_of(three).root / "tmp").iterdir())


def test_a_truncated_pack_is_refused_by_name_unless_another_copy_is_good(
    make_workspace, remote_url, tmp_path
):
    one = producer(make_workspace)
    one.ok("push", "--remote", remote_url)
    remote = open_remote(remote_url, base=tmp_path)
    pack, members = the_pack(remote)
    data = remote.read(pack_name(pack)) or b""
    put(remote, pack_name(pack), data[: len(data) // 2])
    cut = {d for d, m in members.items() if m.offset + m.length > len(data) // 2}
    folder, _ = make_outputs(one)
    # a folder's files are wanted once its manifest is here: none, when it was cut
    wanted = set(members) if folder not in cut else set(members) & {folder, *the_rest(one)}
    assert cut & wanted

    two = clone(one, "two")
    pulled = two.gitpipe("pull", "--remote", remote_url, "--json")
    assert pulled.exit_code == 5, pulled.output
    report = json.loads(pulled.stdout)
    assert {r["what"]: r["reason"] for r in report["rejected"]} == {
        f"object {d}": f"pack {pack} ends before it" for d in sorted(cut & wanted)
    }
    assert report["objects"] == len(wanted - cut)
    store = store_of(two)
    assert not any(d in store for d in cut)
    assert all(d in store for d in wanted - cut)
    assert not any((store.root / "tmp").iterdir())

    for digest in cut:  # their copies under their own names are good: the pull is whole
        remote.upload(store_of(one).object_path(digest), object_name(digest))
    three = clone(one, "three")
    three.ok("checkout", "--pull", "--remote", remote_url)
    assert files_under(three.root / "out") == files_under(one.root / "out")


def the_rest(workspace: Workspace) -> set[Digest]:
    """The objects the lock names beside out/: count.txt's."""
    return {lockfile.read(workspace.root / "gitpipe.lock").steps["count"].outs["count.txt"]}


def test_an_index_whose_pack_is_gone_is_skipped_and_its_objects_come_from_elsewhere(
    make_workspace, remote_url, tmp_path
):
    one = producer(make_workspace)
    one.ok("push", "--remote", remote_url)
    remote = open_remote(remote_url, base=tmp_path)
    pack, members = the_pack(remote)
    for digest in members:
        remote.upload(store_of(one).object_path(digest), object_name(digest))
    delete(remote, pack_name(pack))
    assert packs.listed(remote) == []

    two = clone(one, "two")
    pulled = two.ok("pull", "--remote", remote_url)
    skipped = [line for line in pulled.stderr.splitlines() if "skipped" in line]
    assert skipped == [
        f"gitpipe: skipped 1 pack index(es) on {remote.url}: pack {pack} (its index is "
        "there, the pack is not); their objects were looked for elsewhere (delete what is "
        "left of them there)"
    ]
    two.ok("repro")
    assert two.states() == {"make": "cached", "count": "cached"}
    assert files_under(two.root / "out") == files_under(one.root / "out")


def test_an_index_whose_pack_is_gone_leaves_its_objects_missing_until_pushed_again(
    make_workspace, remote_url, tmp_path
):
    one = producer(make_workspace)
    one.ok("push", "--remote", remote_url)
    remote = open_remote(remote_url, base=tmp_path)
    pack, members = the_pack(remote)
    delete(remote, pack_name(pack))

    two = clone(one, "two")
    pulled = json.loads(two.ok("pull", "--remote", remote_url, "--json").stdout)
    assert (pulled["objects"], pulled["rejected"]) == (0, [])
    assert pulled["skipped"] == [
        {"what": f"pack {pack}", "reason": "its index is there, the pack is not"}
    ]
    assert len(pulled["unavailable"]) >= 1  # the folder's manifest, and count.txt
    before = untouched(two)
    missing = two.gitpipe("checkout", "--pull", "--remote", remote_url)
    assert missing.exit_code == 3, missing.output
    assert "neither the store nor the remote holds the bytes recorded for" in missing.stderr
    assert untouched(two) == before
    assert not any((store_of(two).root / "tmp").iterdir())

    # a push does not take the index's word for what the remote has: it sends them again
    again = json.loads(one.ok("push", "--remote", remote_url, "--json").stdout)
    assert again["objects"] == len(members)
    three = clone(one, "three")
    three.ok("checkout", "--pull", "--remote", remote_url)
    assert files_under(three.root / "out") == files_under(one.root / "out")


def test_a_garbled_index_that_nothing_wanted_needs_is_one_warning_not_an_error(
    make_workspace, remote_url, tmp_path
):
    one = producer(make_workspace)
    one.ok("push", "--remote", remote_url)
    remote = open_remote(remote_url, base=tmp_path)
    junk = b"some other pack\n"
    other = digest_bytes(junk)
    remote.write(pack_name(other), junk)
    remote.write(pack_index_name(other), b"{ not json")

    two = clone(one, "two")
    pulled = two.ok("pull", "--remote", remote_url)
    [line] = [line for line in pulled.stderr.splitlines() if "skipped" in line]
    assert f"skipped 1 pack index(es) on {remote.url}: pack {other} (its index is not JSON)" in (
        line
    )
    two.ok("repro")
    assert two.states() == {"make": "cached", "count": "cached"}
    three = clone(one, "three")
    done = three.ok("checkout", "--pull", "--remote", remote_url)
    assert f"pack {other} (its index is not JSON)" in done.stderr
    assert files_under(three.root / "out") == files_under(one.root / "out")
    five = clone(one, "five")  # repro --pull says it too, and restores
    ran = five.ok("repro", "--pull", "--remote", remote_url)
    assert f"pack {other} (its index is not JSON)" in ran.output
    assert five.states() == {"make": "cached", "count": "cached"}

    # it is an error when it may have been the only source of a wanted object
    pack, members = the_pack_but(remote, other)
    for name in (pack_index_name(pack), pack_name(pack)):
        delete(remote, name)
    four = clone(one, "four")
    failed = four.gitpipe("pull", "--remote", remote_url)
    assert failed.exit_code == 5, failed.output
    assert f"pack {other} (its index is not JSON)" in failed.stderr
    assert "failed verification" in failed.stderr
    assert not any(d in store_of(four) for d in members)


def the_pack_but(remote: Remote, other: Digest) -> tuple[Digest, dict[Digest, packs.Member]]:
    [pack] = [p for p in packs.listed(remote) if p != other]
    return pack, packs.read_index(remote, pack)


def test_an_index_is_read_up_to_a_bound_and_a_larger_one_is_refused(
    remote_url, tmp_path, monkeypatch
):
    remote = open_remote(remote_url, base=tmp_path)
    pack = digest_bytes(b"a pack")
    entries = {str(digest_bytes(str(i).encode())): [i, 1] for i in range(100)}
    index = canonical(
        {"format": "gitpipe-pack-index", "version": 1, "pack": str(pack), "objects": entries}
    )
    remote.write(pack_index_name(pack), index)
    assert remote.read(pack_index_name(pack), limit=100) == index[:101]
    assert remote.read(pack_index_name(pack), limit=len(index)) == index
    assert remote.read("packs/b3/none.idx", limit=100) is None

    assert len(packs.read_index(remote, pack)) == 100
    monkeypatch.setattr(packs, "INDEX_LIMIT", len(index) - 1)
    with pytest.raises(packs.PackRefused, match="its index is larger than"):
        packs.read_index(remote, pack)


def test_a_pack_holds_at_most_members_limit_objects(make_workspace, monkeypatch):
    one = producer(make_workspace)
    _, files = make_outputs(one)
    monkeypatch.setattr(packs, "MEMBERS_LIMIT", 16)
    groups = list(packs.chunks(store_of(one), files))
    assert [len(g) for g in groups] == [16, 16, FILES - 32]
    assert [d for g in groups for d in g] == files
