"""Packs: many small objects in one file on a remote, found through an index.

A push with at least :data:`PACK_MIN` objects under :data:`SMALL` bytes to upload
puts them in packs of at most :data:`PACK_LIMIT` bytes: one write of the objects'
bytes one after another, then one write of the index saying where each is. A pull
reads the indexes (one listing of ``packs/``, one read per index), downloads a pack
that holds objects it wants once, and stores each wanted object only when its bytes
hash to its digest, exactly as a loose object is checked::

    push:  small objects the remote lacks --read, re-hashed--> one buffer
             --> packs/b3/P.pack   (P: the digest of the pack's bytes)
             --> packs/b3/P.idx    last: a pack no index names is never read
    pull:  list packs/ --> each index whose pack is listed too, parsed strictly
             --> which packs hold what (every copy, in the packs' order)
             --> a pack with wanted objects, downloaded once into the store's tmp/
             --> each wanted member hashed --> stored when it is its digest, else
                 the next copy is tried (see gitpipe.store.remote.fetching)

An index is canonical JSON, ``{"format": "gitpipe-pack-index", "version": 1, "pack":
"b3:P", "objects": {"b3:D": [offset, length], ...}}``, of at most :data:`INDEX_LIMIT`
bytes (a pack holds at most :data:`MEMBERS_LIMIT` objects). An index that does not
parse, is larger, names another pack, or places an object outside its pack is refused
whole (:class:`PackRefused`, with the objects it claims when they can be read); one of
a later version says so. An index whose pack is not listed is not read at all. Names
come from :mod:`gitpipe.store.naming`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gitpipe.core.hashing import Digest, DigestError, canonical, digest_bytes
from gitpipe.store.naming import (
    PACKS,
    pack_index_name,
    pack_name,
    parse_pack_index_name,
    parse_pack_name,
)
from gitpipe.store.objects import Store
from gitpipe.store.remote.base import Remote

#: objects smaller than this go into packs (a folder of 1,000 files has a manifest of ~100 kB)
SMALL = 256 * 1024
#: a push packs its small objects only when it has at least this many to upload: for
#: fewer, one request each costs about what the pack and its index cost
PACK_MIN = 32
#: a pack holds at most about this many bytes (one more object may pass it)
PACK_LIMIT = 32 * 1024 * 1024
#: a pack holds at most this many objects, so that its index stays under about 10 MB
MEMBERS_LIMIT = 100_000
#: an index larger than this is refused without being read whole: more than one of
#: :data:`MEMBERS_LIMIT` objects needs, with room for a pack an older gitpipe wrote of
#: many objects of a few dozen bytes each (it put no bound on their number)
INDEX_LIMIT = 64 * 1024 * 1024
#: members of a pack unpacked by one thread at a time
GROUP = 64
FORMAT = "gitpipe-pack-index"
VERSION = 1


class PackRefused(Exception):
    """An index or a pack from the remote that cannot be used (the reason).

    ``claims``: the objects a refused index lists, when its ``objects`` table can be
    read at all; None when nothing can be said of what it holds."""

    def __init__(self, reason: str, claims: frozenset[Digest] | None = None) -> None:
        super().__init__(reason)
        self.claims = claims


@dataclass(frozen=True, slots=True)
class Member:
    """Where an object is: in which pack, from which byte, how many bytes."""

    pack: Digest
    offset: int
    length: int


def fault_point() -> None:
    """Crash-safety tests: with ``GITPIPE_FAULT=pack-written`` a push kills itself
    (SIGKILL) after a pack is on the remote and before its index is."""
    if os.environ.get("GITPIPE_FAULT") == "pack-written":
        os.kill(os.getpid(), signal.SIGKILL)


def chunks(store: Store, digests: Iterable[Digest]) -> Iterator[list[Digest]]:
    """The objects, in groups of at most about :data:`PACK_LIMIT` bytes (by size on
    disk; an object that is gone is left to the pack that reads it) and at most
    :data:`MEMBERS_LIMIT` objects."""
    group: list[Digest] = []
    size = 0
    for digest in digests:
        group.append(digest)
        try:
            size += os.path.getsize(store.object_file(digest))
        except OSError:
            pass
        if size >= PACK_LIMIT or len(group) >= MEMBERS_LIMIT:
            yield group
            group, size = [], 0
    if group:
        yield group


@dataclass(slots=True)
class Built:
    """A pack made from local objects: its bytes, what it holds, what could not go in."""

    data: bytearray
    members: list[tuple[Digest, int, int]]
    damaged: list[tuple[Digest, Digest]]  # (object, what its bytes hash to)
    missing: list[Digest]


def build(store: Store, digests: Iterable[Digest]) -> Built:
    """Read each local object and append it, re-hashed first: a damaged local copy
    (its bytes are not its name's) is left out, as a loose push leaves it out."""
    built = Built(bytearray(), [], [], [])
    for digest in digests:
        try:
            with open(store.object_file(digest), "rb", buffering=0) as handle:
                raw = handle.readall()
        except OSError:
            built.missing.append(digest)
            continue
        actual = digest_bytes(raw)
        if actual != digest:
            built.damaged.append((digest, actual))
            continue
        built.members.append((digest, len(built.data), len(raw)))
        built.data += raw
    return built


def index_bytes(pack: Digest, members: Iterable[tuple[Digest, int, int]]) -> bytes:
    """The index of a pack (canonical JSON)."""
    objects = {str(digest): [offset, length] for digest, offset, length in members}
    return canonical({"format": FORMAT, "version": VERSION, "pack": str(pack), "objects": objects})


def upload(remote: Remote, built: Built) -> Digest:
    """Write the pack, then its index: readers find a pack through its index only, so
    an interrupted push leaves at most a pack no one reads."""
    data = bytes(built.data)
    pack = digest_bytes(data)
    remote.write(pack_name(pack), data)
    fault_point()
    remote.write(pack_index_name(pack), index_bytes(pack, built.members))
    return pack


@dataclass(frozen=True, slots=True)
class Listing:
    """The remote's packs: those whose index and pack are both there, and the indexes
    whose pack is not (deleted, or lost): those are never read."""

    packs: list[Digest]
    orphans: list[Digest]


def scan(remote: Remote) -> Listing:
    """The packs and indexes the remote holds (one listing)."""
    names = remote.listing(f"{PACKS}/")
    indexes = {d for d in map(parse_pack_index_name, names) if d is not None}
    bodies = {d for d in map(parse_pack_name, names) if d is not None}
    return Listing(sorted(indexes & bodies), sorted(indexes - bodies))


def listed(remote: Remote) -> list[Digest]:
    """The packs whose index and pack the remote both holds (one listing)."""
    return scan(remote).packs


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _claims(record: object) -> frozenset[Digest] | None:
    """The objects an index lists, read as leniently as can be; None when it has no
    ``objects`` table."""
    objects = record.get("objects") if isinstance(record, dict) else None
    if not isinstance(objects, dict):
        return None
    found = set()
    for text in objects:
        with contextlib.suppress(DigestError):
            found.add(Digest.parse(text))
    return frozenset(found)


def parse_index(data: bytes, pack: Digest) -> dict[Digest, Member]:
    """Where each object of ``pack`` is, from its index; :class:`PackRefused` for an
    index that is not gitpipe's, of another version, names another pack, or places an
    object outside what a pack may hold."""
    if len(data) > INDEX_LIMIT:
        raise PackRefused(
            f"its index is larger than {INDEX_LIMIT // 2**20} MB, which no pack's index is"
        )
    try:
        record = json.loads(data)
    except (ValueError, RecursionError):
        raise PackRefused("its index is not JSON") from None
    try:
        return _members(record, pack)
    except PackRefused as exc:
        exc.claims = _claims(record)
        raise


def _members(record: object, pack: Digest) -> dict[Digest, Member]:
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise PackRefused("its index is not a gitpipe pack index")
    if record.get("version") != VERSION:
        raise PackRefused(
            f"its index is of version {record.get('version')!r}, which this gitpipe does "
            f"not read (it reads {VERSION}): upgrade gitpipe"
        )
    if record.get("pack") != str(pack):
        raise PackRefused("its index names another pack")
    objects = record.get("objects")
    if not isinstance(objects, dict):
        raise PackRefused("its index lists no objects")
    found: dict[Digest, Member] = {}
    for text, place in objects.items():
        try:
            digest = Digest.parse(text)
        except DigestError:
            raise PackRefused(f"its index names {text!r}, not a digest") from None
        if (
            not isinstance(place, list)
            or len(place) != 2
            or not all(map(_whole, place))
            or place[0] + place[1] > PACK_LIMIT + SMALL
        ):
            raise PackRefused(f"its index places {digest} outside the pack")
        found[digest] = Member(pack, place[0], place[1])
    return found


def read_index(remote: Remote, pack: Digest) -> dict[Digest, Member]:
    """One pack's index, from the remote (:func:`parse_index`); empty when it is gone.
    At most :data:`INDEX_LIMIT` bytes of it are held in memory."""
    data = remote.read(pack_index_name(pack), limit=INDEX_LIMIT)
    return {} if data is None else parse_index(data, pack)


@dataclass(frozen=True, slots=True)
class Unpacked:
    """What became of one wanted member of a pack: stored (its size); damaged (why:
    this copy's bytes are not its digest's, or the pack ends before it, so another
    copy may be good); refused (why: its bytes are its digest's and ``check`` refused
    them, so every copy would be); or missing (the pack is gone)."""

    digest: Digest
    size: int = 0
    damaged: str = ""
    refused: str = ""
    missing: bool = False


def unpack(
    store: Store,
    path: str | None,
    members: Iterable[tuple[Digest, Member]],
    check: Callable[[Digest, bytes], None],
) -> list[Unpacked]:
    """Store some members of a downloaded pack at ``path`` (None: the pack is gone;
    read from the first to the last of them), each only when its bytes hash to its
    digest and ``check`` (given the digest and the bytes: a folder's manifest must be
    safe) raises no :class:`PackRefused`.  Several groups of one pack may be unpacked
    at once."""
    members = sorted(members, key=lambda item: item[1].offset)
    if not members:
        return []
    if path is None:
        return [Unpacked(digest, missing=True) for digest, _ in members]
    start = members[0][1].offset
    end = max(member.offset + member.length for _, member in members)
    fd = os.open(path, os.O_RDONLY)
    try:
        data = memoryview(os.pread(fd, end - start, start))
    finally:
        os.close(fd)
    done: list[Unpacked] = []
    for digest, member in members:
        first = member.offset - start
        if first + member.length > len(data):  # the pack is shorter than its index says
            done.append(Unpacked(digest, damaged=f"pack {member.pack} ends before it"))
            continue
        raw = bytes(data[first : first + member.length])
        actual = digest_bytes(raw)
        if actual != digest:
            damaged = f"its bytes hash to {actual} in pack {member.pack}"
            done.append(Unpacked(digest, damaged=damaged))
            continue
        try:
            check(digest, raw)
        except PackRefused as exc:
            done.append(Unpacked(digest, refused=str(exc)))
            continue
        store.add_bytes(raw, hashed=actual)
        done.append(Unpacked(digest, size=len(raw)))
    return done


def groups(
    members: list[tuple[Digest, Member]], size: int = GROUP
) -> Iterator[list[tuple[Digest, Member]]]:
    """The members of one pack in groups of ``size``, in the pack's order: each group
    is unpacked by one thread (a new file each costs the file system more than the
    bytes do, and two threads create files in the store nearly twice as fast)."""
    ordered = sorted(members, key=lambda item: item[1].offset)
    for first in range(0, len(ordered), size):
        yield ordered[first : first + size]


@dataclass(frozen=True, slots=True)
class Job:
    """Wanted objects of one pack, unpacked by one thread of a pull."""

    pack: Digest
    members: tuple[tuple[Digest, Member], ...]


class Downloads:
    """The packs one pull has downloaded into the store's tmp/: each once, however many
    jobs read it; removed when the pull ends."""

    def __init__(self, store: Store, remote: Remote) -> None:
        self.store, self.remote = store, remote
        self.paths: dict[Digest, str] = {}
        self.gone: set[Digest] = set()
        self._locks: dict[Digest, threading.Lock] = {}
        self._guard = threading.Lock()

    def path(self, pack: Digest) -> str | None:
        """Where the pack is in the store's tmp/; None when the remote no longer has it."""
        with self._guard:
            lock = self._locks.setdefault(pack, threading.Lock())
        with lock:
            if pack not in self.paths and pack not in self.gone:
                fd, path = tempfile.mkstemp(dir=self.store.tmp, prefix="pack-")
                os.close(fd)
                self.paths[pack] = path
                if not self.remote.download(pack_name(pack), Path(path)):
                    self.gone.add(pack)
            return None if pack in self.gone else self.paths[pack]

    def close(self) -> None:
        for path in self.paths.values():
            with contextlib.suppress(OSError):
                os.unlink(path)
