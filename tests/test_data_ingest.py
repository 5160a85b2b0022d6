"""A file going into the store is read once (copied and hashed as it is copied, or
linked in and hashed) and never stored or recorded under a digest its bytes do not
have: a file rewritten while `gitpipe add` reads it is refused, nothing of it in the
store.  Real files, a real writer process, the real command line."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import blake3
import pytest
from conftest import Workspace

from gitpipe.core import tomlcache
from gitpipe.core.errors import PathError
from gitpipe.core.hashing import Digest
from gitpipe.store.objects import _SMALL, Store

#: a file the store copies piece by piece while a second thread hashes the copy
LARGE = 3 * _SMALL + 12_345
#: a file read whole, hashed and written
SMALL = _SMALL - 1

#: rewrites a block of the file and moves its mtime on, again and again, until killed;
#: says "ready" once it has written
WRITER = textwrap.dedent(
    """
    import itertools, os, sys
    path = sys.argv[1]
    size = os.path.getsize(path)
    base = os.stat(path).st_mtime_ns
    fd = os.open(path, os.O_WRONLY)
    for i in itertools.count(1):
        os.pwrite(fd, os.urandom(4096), (i * 4096) % max(size - 4096, 1))
        os.utime(path, ns=(base + i, base + i))
        if i == 1:
            print("ready", flush=True)
    """
)

#: puts another file of the same size and mtime in the file's place, again and again
REPLACER = textwrap.dedent(
    """
    import itertools, os, sys
    path = sys.argv[1]
    st = os.stat(path)
    for i in itertools.count(1):
        with open(path + ".new", "wb") as handle:
            handle.write(os.urandom(st.st_size))
        os.utime(path + ".new", ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(path + ".new", path)
        if i == 1:
            print("ready", flush=True)
    """
)


def write_random(path: Path, size: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))
    return path


@contextmanager
def rewritten(path: Path, script: str = WRITER) -> Iterator[None]:
    """A process rewriting ``path`` in place (same size, new bytes, a new mtime each
    time), or with ``REPLACER`` putting other files in its place, for as long as the
    block runs."""
    with subprocess.Popen(
        [sys.executable, "-c", script, str(path)], stdout=subprocess.PIPE, text=True
    ) as writer:
        try:
            assert writer.stdout is not None and writer.stdout.readline() == "ready\n"
            yield
        finally:
            writer.kill()


def objects(store_root: Path) -> dict[str, bytes]:
    """Every object in a store, by the digest its name says."""
    found = {}
    for path in (store_root / "objects").rglob("*"):
        if path.is_file():
            found["b3:" + path.parent.name + path.name] = path.read_bytes()
    return found


def leftovers(store_root: Path) -> list[Path]:
    tmp = store_root / "tmp"
    return sorted(tmp.iterdir()) if tmp.is_dir() else []


def hashes_to_its_name(store_root: Path) -> None:
    for name, data in objects(store_root).items():
        assert "b3:" + blake3.blake3(data).hexdigest() == name


def refused_while_stored(
    store: Store,
    source: Path,
    *,
    link: bool,
    stored: Callable[[Digest], None],
    tries: int = 200,
) -> int:
    """Store ``source`` again and again until it has been refused three times (or
    ``tries`` tries): each refusal must say the file changed; each time it is stored,
    ``stored`` checks the object.  How many times it was refused."""
    refusals = 0
    for _attempt in range(tries):
        try:
            digest = store.ingest(source, link=link)
        except PathError as exc:
            assert str(exc) == f"{source} changed while it was being stored; run again"
            refusals += 1
            if refusals == 3:
                break
            continue
        stored(digest)
    return refusals


@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["small", "large"])
@pytest.mark.parametrize("link", [False, True], ids=["copy", "hardlink"])
def test_a_file_rewritten_while_it_is_stored_enters_the_store_under_no_name(
    tmp_path: Path, size: int, link: bool
) -> None:
    store = Store(tmp_path / "store")
    source = write_random(tmp_path / "work" / "data.bin", size)
    mode = source.stat().st_mode
    with rewritten(source):

        def stored(digest: Digest) -> None:
            # read too fast for the writer to come between: stored, and correctly
            assert str(digest) in objects(store.root)
            if not link:  # (a linked file *is* the object, and the writer goes on)
                assert store.verify(digest)
            else:  # the file is the object now: let the next attempt start afresh
                os.chmod(source, mode)
                store.discard(digest)

        refusals = refused_while_stored(store, source, link=link, stored=stored)
    assert refusals, "the writer never came between the stamp and the read"
    hashes_to_its_name(store.root)
    assert leftovers(store.root) == []
    assert source.stat().st_nlink == 1  # no link into the store left behind
    assert source.stat().st_mode == mode  # nor made read-only


@pytest.mark.parametrize("link", [False, True], ids=["copy", "hardlink"])
def test_a_file_replaced_by_another_of_the_same_size_and_mtime_while_it_is_stored_is_refused(
    tmp_path: Path, link: bool
) -> None:
    store = Store(tmp_path / "store")
    source = write_random(tmp_path / "work" / "data.bin", LARGE)
    with rewritten(source, REPLACER):

        def stored(digest: Digest) -> None:
            assert store.verify(digest)  # no file is written to once it has the name
            store.discard(digest)

        refusals = refused_while_stored(store, source, link=link, stored=stored)
    assert refusals, "no other file took the name while it was being stored"
    hashes_to_its_name(store.root)
    assert leftovers(store.root) == []


@pytest.mark.parametrize("link", ["copy", "hardlink"])
def test_add_of_a_file_rewritten_as_it_is_added_is_refused_and_records_nothing(
    workspace: Workspace, link: str
) -> None:
    workspace.pipeline('[steps.noop]\ncmd = "true"\n')
    workspace.write(".gitignore", "scratch/\n")
    workspace.commit()
    big = write_random(workspace.root / "big.bin", LARGE)
    store_root = workspace.root / ".gitpipe" / "cache"
    with rewritten(big):
        for _attempt in range(10):
            stored = set(objects(store_root))
            result = workspace.gitpipe("add", "--link", link, "big.bin")
            if result.exit_code != 0:
                break
            # too fast for the writer: recorded, and the record names the stored bytes
            recorded = tomlcache.loads((workspace.root / "gitpipe.data").read_text())
            assert recorded["data"]["big.bin"]["digest"] in objects(store_root)
            workspace.ok("remove", "big.bin")
            (workspace.root / "gitpipe.data").unlink()
            (workspace.root / ".gitignore").write_text("scratch/\n")
    assert result.exit_code == 5, result.output
    assert result.stderr == "gitpipe: big.bin changed while it was being added; run again\n"
    assert result.stdout == ""
    assert not (workspace.root / "gitpipe.data").exists()
    assert (workspace.root / ".gitignore").read_text() == "scratch/\n"
    assert set(objects(store_root)) == stored  # nothing of it entered the store
    hashes_to_its_name(store_root)
    assert leftovers(store_root) == []
    assert big.stat().st_nlink == 1 and big.stat().st_mode & 0o200  # still the user's own


@pytest.mark.parametrize("link", ["copy", "hardlink"])
def test_every_object_add_stores_hashes_to_its_name_and_the_record_names_the_bytes(
    workspace: Workspace, link: str
) -> None:
    workspace.pipeline('[steps.noop]\ncmd = "true"\n')
    workspace.commit()
    files = {
        "big.bin": write_random(workspace.root / "big.bin", LARGE),
        "exact.bin": write_random(workspace.root / "exact.bin", _SMALL),
        "small.bin": write_random(workspace.root / "small.bin", SMALL),
        "empty.bin": write_random(workspace.root / "empty.bin", 0),
    }
    write_random(workspace.root / "folder" / "a.bin", LARGE + 1)
    write_random(workspace.root / "folder" / "deep" / "b.bin", 10)
    expected = {name: blake3.blake3(path.read_bytes()).hexdigest() for name, path in files.items()}

    workspace.ok("add", "--link", link, *files, "folder")

    store_root = workspace.root / ".gitpipe" / "cache"
    hashes_to_its_name(store_root)
    recorded = tomlcache.loads((workspace.root / "gitpipe.data").read_text())["data"]
    for name, hexdigest in expected.items():
        assert recorded[name]["digest"] == f"b3:{hexdigest}"
        assert Digest.parse(recorded[name]["digest"]).hex == hexdigest
        assert recorded[name]["digest"] in objects(store_root)
    manifest = recorded["folder/"]["digest"]
    assert manifest in objects(store_root)
    assert leftovers(store_root) == []


def test_a_small_file_replaced_as_it_is_linked_in_is_refused_as_changed(tmp_path: Path) -> None:
    """link(2) of a name another file has just taken meets the old file unlinked and
    says ENOENT: that is the file changing, not a missing path."""
    store = Store(tmp_path / "store")
    source = write_random(tmp_path / "work" / "data.bin", 16)
    with rewritten(source, REPLACER):
        refusals = refused_while_stored(store, source, link=True, stored=store.discard, tries=2000)
    assert refusals, "no other file took the name while it was being stored"
    hashes_to_its_name(store.root)
    assert leftovers(store.root) == []
