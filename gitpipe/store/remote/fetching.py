"""A pull's objects: where each is on a remote (under its own name, or in which
packs: every copy), and each fetched from its copies in turn, verified::

    locate      one listing of packs/ --> each index whose pack is there, read
                  --> Located: every copy of each object, in the packs' order;
                      indexes whose pack is gone; indexes refused (what they claim)
    each_copy   wanted objects --> jobs (fetch_jobs: a pack's members in groups,
                  loose objects one by one) --> a copy that is damaged (its bytes
                  are not its digest's, or the pack ends before it) or gone sends
                  the object on to its next copy: another pack, then its own name
                  --> stored, or rejected (every copy's reason), or missing
    judge_indexes   an index not used is a warning, unless it may have been the
                  only source of an object that was not found

Nothing is stored whose bytes do not hash to its digest, and a folder's manifest
must name only paths inside the folder (:func:`manifest_problem`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitpipe.core.errors import StoreError
from gitpipe.core.hashing import Digest, digest_file, parse_manifest, safe_relpath
from gitpipe.store.naming import object_name
from gitpipe.store.objects import Store
from gitpipe.store.remote import packs
from gitpipe.store.remote.base import Remote
from gitpipe.store.remote.moving import (
    Damaged,
    Missing,
    ProgressListener,
    Rejected,
    Rejection,
    TransferReport,
    each,
)
from gitpipe.store.remote.packs import Member, PackRefused


@dataclass(slots=True)
class Located:
    """What the remote's packs hold: the packs listed, where each object is (its first
    copy in ``members``, any further ones in ``extra``, in the packs' order), the
    indexes whose pack is not there (``orphans``), and the indexes refused (with why,
    and the objects each claims, None when that cannot be read)."""

    listed: list[Digest] = field(default_factory=list)
    members: dict[Digest, Member] = field(default_factory=dict)
    extra: dict[Digest, list[Member]] = field(default_factory=dict)
    orphans: list[Rejection] = field(default_factory=list)
    refused: list[tuple[Rejection, frozenset[Digest] | None]] = field(default_factory=list)

    def copies(self, digest: Digest) -> list[Member | None]:
        """Where to look for an object, in turn: each pack that holds it, then its own
        name (None)."""
        first = self.members.get(digest)
        if first is None:
            return [None]
        return [first, *self.extra.get(digest, ()), None]


class _Unread(Exception):
    """An index refused: why, and what it claims."""

    def __init__(self, refused: PackRefused) -> None:
        super().__init__(str(refused))
        self.claims = refused.claims


def locate(remote: Remote, pool: ThreadPoolExecutor, progress: ProgressListener) -> Located:
    """Every pack index on the remote whose pack is there too, read (one listing, then
    one read per pack)."""
    listing = packs.scan(remote)
    located = Located(listing.packs)
    located.orphans = [
        Rejection(f"pack {pack}", "its index is there, the pack is not") for pack in listing.orphans
    ]

    def read(pack: Digest) -> tuple[Any, int]:
        try:
            return packs.read_index(remote, pack), 0
        except PackRefused as exc:
            return _Unread(exc), 0

    for pack, outcome in each(pool, located.listed, read, "checking", progress):
        if isinstance(outcome, _Unread):
            located.refused.append((Rejection(f"pack {pack}", str(outcome)), outcome.claims))
            continue
        for digest, member in outcome.items():
            if digest in located.members:
                located.extra.setdefault(digest, []).append(member)
            else:
                located.members[digest] = member
    return located


class Indexes:
    """The remote's pack indexes, read once for the many pulls of one command:
    `repro --pull` pulls the results of one stale step at a time, and reading every
    index again for each was a listing and a read per pack per step.  A pack pushed
    meanwhile is not seen (its objects are looked for under their own names, else
    the step runs); one deleted meanwhile is found gone, and its objects too."""

    def __init__(self) -> None:
        self._located: Located | None = None

    def located(
        self, remote: Remote, pool: ThreadPoolExecutor, progress: ProgressListener
    ) -> Located:
        """What the packs hold (:func:`locate`), read the first time it is asked."""
        if self._located is None:
            self._located = locate(remote, pool, progress)
        return self._located


def manifest_problem(data: bytes) -> str | None:
    """What is wrong with a folder's manifest from a remote: it must parse and name
    only paths that stay inside the folder, or restoring it could write anywhere."""
    try:
        entries = parse_manifest(data)
    except (ValueError, KeyError, TypeError, AttributeError):
        return "it is not a folder manifest"
    for entry in entries:
        if not isinstance(entry.path, str) or not safe_relpath(entry.path):
            return f"its manifest names the unsafe path {entry.path!r}"
    return None


def _check_manifest(path: str) -> None:
    """:func:`manifest_problem` of a downloaded file, as :class:`Rejected`."""
    problem = manifest_problem(Path(path).read_bytes())
    if problem is not None:
        raise Rejected(problem)


def fetch_jobs(wanted: Mapping[Digest, Member | None]) -> list[Digest | packs.Job]:
    """Each wanted object by itself (None: under its own name), except those taken from
    a pack: a job per group of a pack's members (:func:`packs.groups`)."""
    loose: list[Digest | packs.Job] = []
    grouped: dict[Digest, list[tuple[Digest, Member]]] = {}
    for digest, member in wanted.items():
        if member is None:
            loose.append(digest)
        else:
            grouped.setdefault(member.pack, []).append((digest, member))
    return loose + [
        packs.Job(pack, tuple(group))
        for pack, found in sorted(grouped.items())
        for group in packs.groups(found)
    ]


def fetch_object(store: Store, remote: Remote, digest: Digest, *, folder: bool) -> int:
    """Download an object into the store's tmp/, re-hash it and, only when it matches
    its digest (and, for a folder, its manifest is safe), rename it into place."""
    try:
        fd, tmp = tempfile.mkstemp(dir=store.tmp, prefix="pull-")
        os.close(fd)
    except OSError as exc:
        raise StoreError(f"cannot write to the store at {store.root} ({exc.strerror})") from exc
    try:
        if not remote.download(object_name(digest), Path(tmp)):
            raise Missing
        actual = digest_file(tmp)
        if actual != digest:
            raise Damaged(f"its bytes hash to {actual}")
        if folder:
            _check_manifest(tmp)
        size = os.path.getsize(tmp)
        store.adopt(tmp, digest, hashed=actual)  # read once: hashed just above
        return size
    except OSError as exc:
        raise StoreError(f"cannot write to the store at {store.root} ({exc.strerror})") from exc
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def fetch_pack(
    store: Store, downloads: packs.Downloads, job: packs.Job, folders: Collection[Digest]
) -> list[packs.Unpacked]:
    """Some wanted objects of one pack: the pack downloaded into the store's tmp/ (once
    per pull), each member hashed and stored only when it is its digest."""

    def check(digest: Digest, data: bytes) -> None:
        problem = manifest_problem(data) if digest in folders else None
        if problem is not None:
            raise PackRefused(problem)

    try:
        return packs.unpack(store, downloads.path(job.pack), job.members, check)
    except OSError as exc:
        raise StoreError(f"cannot write to the store at {store.root} ({exc.strerror})") from exc


def outcomes(item: Digest | packs.Job, outcome: Any) -> Iterator[tuple[Digest, Any]]:
    """(object, its size or Rejected or Missing) for each object of a fetch job."""
    if not isinstance(item, packs.Job):
        yield item, outcome
        return
    if not isinstance(outcome, list):  # the whole pack: missing
        yield from ((digest, outcome) for digest, _ in item.members)
        return
    for one in outcome:
        if one.refused:
            yield one.digest, Rejected(one.refused)
        elif one.damaged:
            yield one.digest, Damaged(one.damaged)
        elif one.missing:
            yield one.digest, Missing()
        else:
            yield one.digest, one.size


def each_copy(
    pool: ThreadPoolExecutor,
    wanted: list[Digest],
    located: Located,
    fetch: Callable[[Any], tuple[Any, int]],
    phase: str,
    progress: ProgressListener,
) -> Iterator[tuple[Digest, Any]]:
    """(object, its size, or Rejected, or Missing) for each wanted object, trying
    its copies in turn (:meth:`Located.copies`): a copy whose bytes are not its
    digest's, or that is gone, sends the object on to its next copy, in one more
    round of jobs (phase ``other copies``). An object that no copy gives is rejected
    when some copy was damaged (all their reasons), else missing."""
    where = {digest: 0 for digest in wanted}
    damage: dict[Digest, list[str]] = {}
    todo = wanted
    while todo:
        tried = {digest: located.copies(digest) for digest in todo}
        work = fetch_jobs({digest: tried[digest][where[digest]] for digest in todo})
        again: list[Digest] = []
        for item, outcome in each(pool, work, fetch, phase, progress):
            for digest, value in outcomes(item, outcome):
                if isinstance(value, Damaged):
                    loose = tried[digest][where[digest]] is None and len(tried[digest]) > 1
                    damage.setdefault(digest, []).append(
                        value.reason + (" under its own name" if loose else "")
                    )
                if isinstance(value, (Damaged, Missing)):
                    if where[digest] + 1 < len(tried[digest]):
                        where[digest] += 1
                        again.append(digest)
                        continue
                    if digest in damage:
                        value = Rejected(", ".join(damage[digest]))
                yield digest, value
        todo, phase = sorted(again), "other copies"


def judge_indexes(
    report: TransferReport,
    located: Located,
    missing: Collection[Digest],
    *,
    everything: bool,
    store: Store,
) -> None:
    """The indexes a pull did not use, in the report: one whose pack is gone is a
    warning (its objects were looked for elsewhere, and what was not found is
    missing); one refused is a warning too, unless it may have been the only source of
    a wanted object that was not found (it claims it, or what it claims cannot be
    read; with ``everything``, it claims an object the store still lacks): then it is
    rejected."""
    report.skipped += located.orphans
    missing = set(missing)
    for rejection, claims in located.refused:
        needed = bool(missing) if claims is None else bool(claims & missing)
        if everything:
            needed = claims is None or any(digest not in store for digest in claims)
        (report.rejected if needed else report.skipped).append(rejection)
