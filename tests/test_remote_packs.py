"""Packs on a remote: a push of many small objects writes them as one pack and its
index; a pull fetches the pack once and stores each member only when its bytes hash
to its digest. Through the real command line, against a folder remote and a real
S3-compatible server (moto's, on 127.0.0.1).

What must hold: the round trip is byte-identical; a forged member or index is
refused like a forged loose object, and nothing of it enters the store; a push killed
between a pack and its index leaves the remote readable; a remote of loose objects
(what gitpipe wrote before packs) still pulls.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import test_remote
from conftest import AWS_SETTINGS, Workspace
from test_forged_results import clone, store_of

from gitpipe.core.hashing import Digest, canonical
from gitpipe.store import lockfile
from gitpipe.store.naming import object_name, pack_index_name, pack_name
from gitpipe.store.remote import DirectoryRemote, Remote, open_remote, packs

GITPIPE = Path(sys.executable).parent / "gitpipe"
FILES = 40  # more than packs.PACK_MIN small objects: one pack

PIPELINE = """
[steps.make]
cmd = "python3 make.py"
deps = ["make.py"]
outs = ["out/"]

[steps.count]
cmd = "ls out | wc -l > count.txt"
deps = ["out/"]
outs = ["count.txt"]
"""

MAKE = f"""
import os
os.makedirs("out", exist_ok=True)
for i in range({FILES}):
    with open(f"out/{{i:03d}}.txt", "w") as handle:
        handle.write(f"file {{i}}\\n" * (i + 1))
"""


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITPIPE_REMOTE", "GITPIPE_DEBUG", "GITPIPE_FAULT", *AWS_SETTINGS):
        monkeypatch.delenv(name, raising=False)


# test_remote's remotes: a folder, or a new bucket on moto's server
remote_url = test_remote.remote_url
s3_bucket = test_remote.s3_bucket


def producer(make_workspace: Callable[[str], Workspace]) -> Workspace:
    one = make_workspace("one")
    one.write("make.py", MAKE)
    one.write(".gitignore", "out/\ncount.txt\n")
    one.pipeline(PIPELINE)
    one.commit("pipeline")
    one.ok("repro")
    one.commit("lock")
    return one


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def the_pack(remote: Remote) -> tuple[Digest, dict[Digest, packs.Member]]:
    [pack] = packs.listed(remote)
    return pack, packs.read_index(remote, pack)


def make_outputs(workspace: Workspace) -> tuple[Digest, list[Digest]]:
    """The folder digest of out/ and the digests of the files it holds."""
    folder = lockfile.read(workspace.root / "gitpipe.lock").steps["make"].outs["out/"]
    return folder, [entry.digest for entry in store_of(workspace).manifest(folder)]


def put(remote: Remote, name: str, data: bytes) -> None:
    """Replace what a remote holds under ``name``, behind gitpipe's back."""
    if isinstance(remote, DirectoryRemote):
        path = remote.root / name
        path.chmod(0o644)
        path.write_bytes(data)
    else:
        remote.write(name, data)


def test_many_small_outputs_travel_as_one_pack_and_come_back_byte_identical(
    make_workspace, remote_url, tmp_path
):
    one = producer(make_workspace)
    pushed = one.ok("push", "--remote", remote_url)
    assert f"pushed {FILES + 2} object(s)" in pushed.stdout  # the files, the manifest, count

    remote = open_remote(remote_url, base=tmp_path)
    pack, members = the_pack(remote)
    folder, files = make_outputs(one)
    count = lockfile.read(one.root / "gitpipe.lock").steps["count"].outs["count.txt"]
    assert set(members) == {folder, *files, count}  # every small object of the push
    assert not remote.listing("objects/") & {object_name(d) for d in members}
    assert remote.exists(pack_name(pack)) and remote.exists(pack_index_name(pack))

    two = clone(one, "two")  # pull, then repro restores from the run cache
    two.ok("pull", "--remote", remote_url)
    two.ok("repro")
    assert two.states() == {"make": "cached", "count": "cached"}
    assert files_under(two.root / "out") == files_under(one.root / "out")
    assert not any((store_of(two).root / "tmp").iterdir())  # the downloaded pack is gone

    three = clone(one, "three")  # checkout --pull: the outputs straight into place
    done = three.ok("checkout", "--pull", "--remote", remote_url)
    assert f"fetched {FILES + 2} object(s)" in done.stdout
    assert files_under(three.root / "out") == files_under(one.root / "out")
    assert (three.root / "count.txt").read_bytes() == (one.root / "count.txt").read_bytes()


def test_a_second_push_finds_packed_objects_there_and_sends_nothing(make_workspace, remote_url):
    one = producer(make_workspace)
    one.ok("push", "--remote", remote_url)
    again = json.loads(one.ok("push", "--remote", remote_url, "--json").stdout)
    assert (again["objects"], again["objects_present"]) == (0, FILES + 2)
    two = clone(one, "two")
    two.ok("pull", "--remote", remote_url)
    again = json.loads(two.ok("pull", "--remote", remote_url, "--json").stdout)
    assert (again["objects"], again["objects_present"]) == (0, FILES + 2)


def test_a_forged_member_of_a_pack_is_refused_and_never_stored(
    make_workspace, remote_url, tmp_path
):
    one = producer(make_workspace)
    one.ok("push", "--remote", remote_url)
    remote = open_remote(remote_url, base=tmp_path)
    pack, members = the_pack(remote)
    _, files = make_outputs(one)
    victim = files[7]
    data = bytearray(remote.read(pack_name(pack)) or b"")
    data[members[victim].offset] ^= 0xFF  # one byte of one member, the index untouched
    put(remote, pack_name(pack), bytes(data))

    two = clone(one, "two")
    pulled = two.gitpipe("pull", "--remote", remote_url)
    assert pulled.exit_code == 5, pulled.output
    assert "Traceback" not in pulled.output
    assert f"1 item(s) failed verification: object {victim} (its bytes hash to b3:" in (
        pulled.stderr
    )
    assert "nothing rejected was written here" in pulled.stderr
    store = store_of(two)
    assert victim not in store
    assert not (store.root / object_name(victim)).exists()
    assert not any((store.root / "tmp").iterdir())
    assert all(d in store for d in files if d != victim)  # each member stands alone

    # checkout refuses the same way and leaves the workspace as it was
    three = clone(one, "three")
    before = files_under(three.root)
    refused = three.gitpipe("checkout", "--pull", "--remote", remote_url)
    assert refused.exit_code == 5, refused.output
    assert f"object {victim} (its bytes hash to b3:" in refused.stderr
    assert victim not in store_of(three)
    assert not (three.root / "out").exists()
    assert {k: v for k, v in files_under(three.root).items() if not k.startswith(".git")} == {
        k: v for k, v in before.items() if not k.startswith(".git")
    }


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            lambda index: {**index, "objects": {k: [0, 10**12] for k in index["objects"]}},
            "its index places",
        ),
        (
            lambda index: {**index, "version": 2},
            "its index is of version 2, which this gitpipe does not read",
        ),
        (lambda index: {**index, "pack": "b3:" + "0" * 64}, "its index names another pack"),
        (lambda index: ["not", "an", "index"], "its index is not a gitpipe pack index"),
    ],
    ids=["outside", "later-version", "other-pack", "not-an-index"],
)
def test_a_pack_index_that_cannot_be_used_is_refused_by_name(
    make_workspace, tmp_path, change, reason
):
    one = producer(make_workspace)
    folder = tmp_path / "remote"
    folder.mkdir()
    one.ok("push", "--remote", str(folder))
    remote = open_remote(str(folder), base=tmp_path)
    pack, members = the_pack(remote)
    index = json.loads(remote.read(pack_index_name(pack)) or b"")
    put(remote, pack_index_name(pack), canonical(change(index)))

    two = clone(one, "two")
    pulled = two.gitpipe("pull", "--remote", str(folder))
    assert pulled.exit_code == 5, pulled.output
    assert f"pack {pack} ({reason}" in pulled.stderr
    assert "Traceback" not in pulled.output
    store = store_of(two)
    assert not any(d in store for d in members)  # none of what only the pack holds
    assert not any((store.root / "tmp").iterdir())


def test_a_push_killed_between_a_pack_and_its_index_leaves_the_remote_readable(
    make_workspace, tmp_path
):
    one = producer(make_workspace)
    folder = tmp_path / "remote"
    folder.mkdir()
    env = {**os.environ, "CI": "true", "GITPIPE_FAULT": "pack-written"}
    killed = subprocess.run(
        [str(GITPIPE), "push", "--remote", str(folder)],
        cwd=one.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -9, killed.stderr
    remote = open_remote(str(folder), base=tmp_path)
    assert remote.listing("packs/")  # the pack is there ...
    assert packs.listed(remote) == []  # ... and no index names it
    assert not remote.listing("results/")  # nor any result, which would name its objects

    two = clone(one, "two")  # a puller sees nothing of it, and runs the steps
    pulled = two.ok("pull", "--remote", str(folder))
    assert "not in the remote" in pulled.stderr
    assert not any((store_of(two).root / "tmp").iterdir())
    two.ok("repro")
    assert two.states() == {"make": "ran", "count": "ran"}

    one.ok("push", "--remote", str(folder))  # pushing again completes the remote
    three = clone(one, "three")
    three.ok("pull", "--remote", str(folder))
    three.ok("repro")
    assert three.states() == {"make": "cached", "count": "cached"}
    assert files_under(three.root / "out") == files_under(one.root / "out")


def test_a_remote_of_loose_objects_from_an_older_gitpipe_still_pulls(
    make_workspace, remote_url, tmp_path
):
    one = producer(make_workspace)
    one.ok("push", "--remote", remote_url)
    # the layout gitpipe wrote before packs: every object under its own name
    remote = open_remote(remote_url, base=tmp_path)
    pack, members = the_pack(remote)
    store = store_of(one)
    for digest in members:
        remote.upload(store.object_path(digest), object_name(digest))
    for name in (pack_index_name(pack), pack_name(pack)):
        if isinstance(remote, DirectoryRemote):
            (remote.root / name).unlink()
        else:
            remote._obs.delete(remote.store, name)  # type: ignore[attr-defined]
    assert packs.listed(remote) == []

    two = clone(one, "two")
    pulled = json.loads(two.ok("pull", "--remote", remote_url, "--json").stdout)
    assert (pulled["objects"], pulled["rejected"], pulled["unavailable"]) == (FILES + 2, [], [])
    two.ok("repro")
    assert two.states() == {"make": "cached", "count": "cached"}
    assert files_under(two.root / "out") == files_under(one.root / "out")

    # and a push onto it finds the loose objects there: nothing is packed again
    again = json.loads(one.ok("push", "--remote", remote_url, "--json").stdout)
    assert (again["objects"], again["objects_present"]) == (0, FILES + 2)
    assert packs.listed(remote) == []


def test_a_few_new_objects_go_loose_beside_a_pack_and_both_pull(make_workspace, tmp_path):
    one = producer(make_workspace)
    folder = tmp_path / "remote"
    folder.mkdir()
    one.ok("push", "--remote", str(folder))
    one.write("make.py", MAKE + '\nopen("out/extra.txt", "w").write("one more\\n")\n')
    one.commit("one more file")
    one.ok("repro")
    one.commit("lock")
    pushed = json.loads(one.ok("push", "--remote", str(folder), "--json").stdout)
    assert pushed["objects"] == 3  # the new file, the new manifest, the new count
    remote = open_remote(str(folder), base=tmp_path)
    assert len(packs.listed(remote)) == 1  # too few for a pack of their own

    two = clone(one, "two")
    two.ok("checkout", "--pull", "--remote", str(folder))
    assert files_under(two.root / "out") == files_under(one.root / "out")
    assert (two.root / "out" / "extra.txt").read_text() == "one more\n"


THREE = "\n".join(
    f'[steps.make{n}]\ncmd = "python3 make.py {n}"\ndeps = ["make.py"]\nouts = ["out{n}/"]\n'
    for n in range(3)
)
MAKE_ONE = """
import os, sys
n = sys.argv[1]
os.makedirs(f"out{n}", exist_ok=True)
for i in range(40):
    with open(f"out{n}/{i:03d}.txt", "w") as handle:
        handle.write(f"step {n}, file {i}\\n" * (i + 1))
"""


def test_repro_pull_reads_each_pack_index_once_for_all_its_steps(
    make_workspace: Callable[[str], Workspace],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`repro --pull` fetches a stale step's objects at a time; the remote's pack
    indexes are read by the first fetch and kept for the rest of the run, not read
    again for every step (a listing and a read per pack per step on S3)."""
    from gitpipe.store.naming import parse_pack_index_name

    (tmp_path / "remote").mkdir()
    folder = str(tmp_path / "remote")
    one = make_workspace("one")
    one.write("make.py", MAKE_ONE)
    one.write(".gitignore", "out0/\nout1/\nout2/\n")
    one.pipeline(THREE)
    one.commit("pipeline")
    for n in range(3):  # one push a step: three packs, three indexes
        one.ok("repro", f"make{n}")
        one.ok("push", "--remote", folder)
    # no lock committed: the clone finds each result by its key, one fetch a step
    assert len(packs.listed(DirectoryRemote(Path(folder)))) == 3
    reads: list[str] = []
    real_read = DirectoryRemote.read

    def counted(self: DirectoryRemote, name: str, **kwargs: object) -> bytes | None:
        if parse_pack_index_name(name) is not None:
            reads.append(name)
        return real_read(self, name, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(DirectoryRemote, "read", counted)
    two = clone(one, "two")
    done = two.ok("repro", "--pull", "--remote", folder)
    assert "0 ran, 3 cached" in done.stdout, done.output
    assert sorted(reads) == sorted(set(reads)) and len(reads) == 3, reads
    for n in range(3):
        assert files_under(two.root / f"out{n}") == files_under(one.root / f"out{n}")
