"""A folder manifest whose bytes hash to its name but whose entries are not what a
manifest holds (a size that is no whole number, a digest or a path that is no
string): from a remote it is refused by name, never stored, and the pull says why;
in the store it is a folder gitpipe cannot restore, said in one line. Never an
internal error.

Real Git repositories, the real CLI, a folder remote.
"""

from __future__ import annotations

import pytest
from conftest import Workspace
from test_remote import first_clone, lock_out, plant, second_clone, store_of

from gitpipe.core.hashing import digest_bytes, parse_manifest
from gitpipe.store.naming import object_name

#: entries a manifest never holds, each with what the refusal says of it
BAD_ENTRIES = {
    "infinite size": ('["a.txt", "{digest}", 1e400, false]', "it is not a folder manifest"),
    "digest no string": ('["a.txt", 5, 6, false]', "it is not a folder manifest"),
    "path no string": ('[5, "{digest}", 6, false]', "it is not a folder manifest"),
    "negative size": ('["a.txt", "{digest}", -6, false]', "it is not a folder manifest"),
    "nested too deep": ("[" * 100_000 + "]" * 100_000, "it is not a folder manifest"),
}


def forged_manifest(entry: str, payload: bytes) -> bytes:
    entry = entry.replace("{digest}", str(digest_bytes(payload)))
    return b'{"entries":[' + entry.encode() + b'],"kind":"tree"}'


def lock_naming(workspace: Workspace, folder_digest: str) -> None:
    """Commit a gitpipe.lock whose parts/ is ``folder_digest`` (a collaborator's)."""
    lock = workspace.root / "gitpipe.lock"
    text = lock.read_text()
    old = str(lock_out(workspace, "split", "parts/"))
    assert old in text
    lock.write_text(text.replace(old, folder_digest))
    workspace.commit("a lock naming another parts/")


@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
def test_a_pulled_manifest_whose_entries_are_malformed_is_refused_by_name(
    make_workspace, tmp_path, case
):
    one = first_clone(make_workspace)
    remote = tmp_path / "remote"
    remote.mkdir()
    one.ok("push", "--remote", str(remote))
    payload = b"hello\n"
    entry, says = BAD_ENTRIES[case]
    forged = forged_manifest(entry, payload)
    forged_digest = digest_bytes(forged)
    plant(remote, object_name(digest_bytes(payload)), payload)
    plant(remote, object_name(forged_digest), forged)
    lock_naming(one, str(forged_digest))

    two = second_clone(one)
    pulled = two.gitpipe("pull", "--remote", str(remote))

    assert pulled.exit_code == 5, pulled.output
    assert "internal error" not in pulled.output
    assert f"object {forged_digest}" in pulled.stderr
    assert says in pulled.stderr
    assert forged_digest not in store_of(two)
    assert not list(store_of(two).tmp.iterdir())  # nothing half-written left behind
    assert not (two.root / "parts").exists()


@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
def test_a_stored_manifest_whose_entries_are_malformed_is_one_line_and_changes_nothing(
    make_workspace, case
):
    one = first_clone(make_workspace)
    payload = b"hello\n"
    entry, _ = BAD_ENTRIES[case]
    forged = forged_manifest(entry, payload)
    forged_digest = digest_bytes(forged)
    store = store_of(one)
    plant(store.root, object_name(forged_digest), forged)
    lock_naming(one, str(forged_digest))
    before = {p.name: p.read_bytes() for p in (one.root / "parts").iterdir()}

    for args in (("checkout", "parts"), ("repro", "--frozen")):
        result = one.gitpipe(*args)

        assert result.exit_code != 0, (args, result.output)
        assert "internal error" not in result.output, (args, result.output)
        assert "Traceback" not in result.output
        assert len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
        assert {p.name: p.read_bytes() for p in (one.root / "parts").iterdir()} == before


@pytest.mark.parametrize("case", sorted(BAD_ENTRIES))
def test_parse_manifest_refuses_entries_a_manifest_never_holds(case):
    with pytest.raises(ValueError):
        parse_manifest(forged_manifest(BAD_ENTRIES[case][0], b"x"))
