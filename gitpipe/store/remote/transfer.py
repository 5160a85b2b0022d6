"""Moving objects and results between the local store and a remote.

:func:`push` and :func:`pull` move only what the other side lacks, many transfers at
once (a thread pool), and report progress to a listener: this module never prints.
Nothing that comes from a remote is trusted::

    pull:  results (remote: the named ones, and every one in the keys' folders
             that the local run cache lacks)
             --parse_result, id = name-->  their objects and folder manifests
             --download into the store's tmp/, re-hash, check manifests' paths-->  rename
             -->  the files the manifests list (the same way)
             -->  each result, once every object it names is in the local store
    push:  results (local, complete: every one of each key, and the named ones)
             -->  their objects and the manifests' files
             -->  which the remote lacks (exists checks, or one listing per folder)
             -->  upload (each local object re-hashed first)
             -->  each result, once every object it names is on the remote

An object whose bytes do not hash to its digest, a manifest naming a path that leaves
its folder, and a result that :func:`gitpipe.store.runcache.parse_result` refuses (among
others, one whose outputs' id is not the one its name says, one that is not gitpipe's
shape, and, when the remote's :class:`~gitpipe.store.runcache.Signer` has a secret
(``GITPIPE_RESULT_KEY``), one without that secret's signature) are rejected: counted
in :class:`TransferReport`, never written. With a secret, push signs what it uploads.
Results under the one-per-key names of older gitpipe (``results/b3/XX/REST.json``) on
a remote are ignored.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gitpipe.core.errors import StoreError
from gitpipe.core.hashing import Digest, digest_file, parse_manifest, safe_relpath
from gitpipe.store.lockfile import Lock, LockEntry
from gitpipe.store.naming import (
    OBJECTS,
    RESULTS,
    object_name,
    parse_object_name,
    parse_result_name,
    result_name,
    results_prefix,
)
from gitpipe.store.objects import Store
from gitpipe.store.remote import packs
from gitpipe.store.remote.base import Remote
from gitpipe.store.remote.packs import Member, PackRefused
from gitpipe.store.runcache import OutRecord, Result, RunCache, parse_result, result_id

#: up to this many names are always checked one by one, not by listing their folders
EXISTS_LIMIT = 32


# -- what to move, and what happened ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selection:
    """What to transfer: file objects, folders (by their manifest's digest), every
    run-cache result of some step keys, and exact results as (key, result id)."""

    files: frozenset[Digest] = frozenset()
    folders: frozenset[Digest] = frozenset()
    keys: frozenset[Digest] = frozenset()
    results: frozenset[tuple[Digest, Digest]] = frozenset()

    @classmethod
    def from_locks(cls, *locks: Lock) -> Selection:
        """Every output a lock file records (folders by their trailing ``/``) and,
        for each step, exactly the result its entry records: not the key's others."""
        files: set[Digest] = set()
        folders: set[Digest] = set()
        results: set[tuple[Digest, Digest]] = set()
        for lock in locks:
            for entry in lock.steps.values():
                results.add((entry.key, entry_result_id(entry)))
                for path, digest in entry.outs.items():
                    (folders if path.endswith("/") else files).add(digest)
        return cls(frozenset(files), frozenset(folders), results=frozenset(results))

    @property
    def empty(self) -> bool:
        return not (self.files or self.folders or self.keys or self.results)

    def __or__(self, other: Selection) -> Selection:
        return Selection(
            self.files | other.files,
            self.folders | other.folders,
            self.keys | other.keys,
            self.results | other.results,
        )


def entry_result_id(entry: LockEntry) -> Digest:
    """The id of the result a lock entry records (see :func:`gitpipe.store.runcache.result_id`):
    its outputs keyed by path without a folder's trailing ``/``."""
    return result_id(
        {
            path.removesuffix("/"): OutRecord(
                digest, is_dir=path.endswith("/"), executable=path in entry.executable
            )
            for path, digest in entry.outs.items()
        }
    )


@dataclass(frozen=True, slots=True)
class Progress:
    """How far one phase of a transfer is: ``done`` of ``total`` items, ``bytes`` moved.

    Phases: ``checking`` (what the remote has), ``results``, ``objects``,
    ``folder files`` (the files that folders' manifests list) and ``other copies``
    (objects whose first copy on a remote was damaged or gone, from the next)."""

    phase: str
    done: int
    total: int
    bytes: int = 0


ProgressListener = Callable[[Progress], None]


def ignore_progress(progress: Progress) -> None:
    """The listener that listens to nothing."""
    return None


@dataclass(frozen=True, slots=True)
class Rejection:
    """Something refused: ``what`` (``object b3:…`` or ``result b3:…``) and why."""

    what: str
    reason: str

    def __str__(self) -> str:
        return f"{self.what} ({self.reason})"


@dataclass(slots=True)
class TransferReport:
    """What a push or pull did. ``objects``/``results`` were transferred; ``*_present``
    were on the receiving side already; ``unavailable`` were wanted but the sending
    side lacks them; ``rejected`` failed verification and were not written;
    ``skipped`` are pack indexes on the remote that were not used (the pack they name
    is not there, or the index cannot be read) and that no wanted object needed:
    warnings, not errors."""

    direction: str  # push | pull
    url: str
    objects: int = 0
    bytes: int = 0
    objects_present: int = 0
    results: int = 0
    results_present: int = 0
    unavailable: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    skipped: list[Rejection] = field(default_factory=list)
    duration: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "remote": self.url,
            "objects": self.objects,
            "bytes": self.bytes,
            "objects_present": self.objects_present,
            "results": self.results,
            "results_present": self.results_present,
            "unavailable": list(self.unavailable),
            "rejected": [{"what": r.what, "reason": r.reason} for r in self.rejected],
            "skipped": [{"what": r.what, "reason": r.reason} for r in self.skipped],
            "duration": round(self.duration, 3),
        }


# -- moving things ----------------------------------------------------------------------


class _Rejected(Exception):
    """Something from the other side failed verification."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class _Damaged(_Rejected):
    """A copy from the other side whose bytes are not its digest's: another copy of
    the same object may be good."""


class _Missing(Exception):
    """The sending side does not have it."""


@contextlib.contextmanager
def _pool(jobs: int) -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="gitpipe-remote")
    try:
        yield pool
    except BaseException:
        # an error or Ctrl-C: start nothing more; what runs finishes and tidies itself
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _each(
    pool: ThreadPoolExecutor,
    items: Collection[Any],
    work: Callable[[Any], tuple[Any, int]],
    phase: str,
    progress: ProgressListener,
) -> Iterator[tuple[Any, Any]]:
    """Run ``work`` on every item in the pool, reporting progress from this thread as
    each finishes; then yield (item, value or _Rejected or _Missing) in the items'
    order, so that a report says the same whichever thread was quicker. Any other
    error stops the phase: what has not started is cancelled."""
    if not items:
        return
    futures = {pool.submit(work, item): item for item in items}
    total, done, moved = len(futures), 0, 0
    progress(Progress(phase, 0, total, 0))
    outcomes: dict[Future[tuple[Any, int]], Any] = {}
    try:
        for future in as_completed(futures):
            try:
                value, size = future.result()
            except (_Rejected, _Missing) as exc:
                value, size = exc, 0
            done += 1
            moved += size
            progress(Progress(phase, done, total, moved))
            outcomes[future] = value
    finally:
        for future in futures:
            future.cancel()
    for future, item in futures.items():
        yield item, outcomes[future]


def _present(
    remote: Remote,
    names: Collection[str],
    pool: ThreadPoolExecutor,
    progress: ProgressListener,
    *,
    levels: int = 1,
) -> set[str]:
    """Which of ``names`` the remote has, in as few requests as it takes: one listing
    per folder the names are in (``levels`` up: 2 for results, whose ``results/b3/XX/``
    holds one folder per key) when that is at most half as many requests as one check
    per name (1,000 objects spread over at most 256 folders), else a check each."""
    folders = {name.rsplit("/", levels)[0] + "/" for name in names}
    if len(names) <= EXISTS_LIMIT or 2 * len(folders) > len(names):
        return {
            name
            for name, there in _each(
                pool, names, lambda n: (remote.exists(n), 0), "checking", progress
            )
            if there is True
        }
    seen: set[str] = set()
    for _folder, listed in _each(
        pool, sorted(folders), lambda f: (remote.listing(f), 0), "checking", progress
    ):
        seen |= listed
    return seen & set(names)


#: one result: (step key, result id)
Pair = tuple[Digest, Digest]


def _what(key: Digest, rid: Digest | None = None) -> str:
    """How a report names a result: ``result KEY`` (all of a key's) or ``result KEY ID``."""
    return f"result {key}" if rid is None else f"result {key} {rid}"


def _local_results(
    runcache: RunCache, selection: Selection | None, report: TransferReport
) -> dict[Pair, Result]:
    """The complete local results a push sends: every one of each selected key (all
    keys for None) and the exact ones; what is wanted but not here is noted."""
    keys = runcache.stored_keys() if selection is None else sorted(selection.keys)
    results: dict[Pair, Result] = {}
    for key in keys:
        found = runcache.results(key)  # without those whose objects are missing here
        if not found:
            report.unavailable.append(_what(key))
        results.update(((key, result.id), result) for result in found)
    for key, rid in sorted(selection.results) if selection is not None else ():
        if (key, rid) in results:
            continue
        result = runcache.get_exact(key, rid)
        if result is None:
            report.unavailable.append(_what(key, rid))
        else:
            results[(key, rid)] = result
    return results


def _remote_results(
    remote: Remote,
    keys: Collection[Digest],
    pool: ThreadPoolExecutor,
    progress: ProgressListener,
) -> dict[Digest, set[Digest]]:
    """The ids of every result each key has on the remote, in as few listings as it
    takes: one per key's folder, or one per ``results/b3/XX/`` folder the keys are in
    when that is at most half as many."""
    prefixes = {key: results_prefix(key) for key in keys}
    folders = {posixpath.dirname(prefix.rstrip("/")) + "/" for prefix in prefixes.values()}
    listed = prefixes.values()
    if len(keys) > EXISTS_LIMIT and 2 * len(folders) <= len(keys):
        listed = folders
    found: dict[Digest, set[Digest]] = {key: set() for key in keys}
    for _prefix, names in _each(
        pool, sorted(listed), lambda p: (remote.listing(p), 0), "checking", progress
    ):
        for pair in map(parse_result_name, names):
            if pair is not None and pair[0] in found:
                found[pair[0]].add(pair[1])
    return found


def _objects_of(result: Result, entries: Mapping[Digest, list[Digest]]) -> set[Digest]:
    """Every object a result needs: its outputs, and each folder's listed files."""
    needed: set[Digest] = set()
    for out in result.outs.values():
        needed.add(out.digest)
        if out.is_dir:
            needed.update(entries.get(out.digest, ()))
    return needed


def _damaged(actual: Digest) -> str:
    """Why a local object is not pushed: its bytes are not its name's."""
    return (
        f"the local copy is damaged (its bytes hash to {actual}); "
        "`gitpipe cache verify --repair` removes it"
    )


def _tally(report: TransferReport, digest: Digest, value: Any) -> bool:
    """Count what became of one object (its size, or _Rejected, or _Missing) in the
    report; True when it moved."""
    if isinstance(value, _Rejected):
        report.rejected.append(Rejection(f"object {digest}", value.reason))
        return False
    if isinstance(value, _Missing):
        report.unavailable.append(f"object {digest}")
        return False
    report.objects += 1
    report.bytes += value
    return True


def _sent(item: Digest | list[Digest], outcome: Any) -> Iterator[tuple[Digest, Any]]:
    """(object, its size or _Rejected or _Missing) for each object of a push's job: one
    object, or a pack (:class:`packs.Built`)."""
    if not isinstance(outcome, packs.Built):
        yield item, outcome  # type: ignore[misc]
        return
    yield from ((digest, size) for digest, _, size in outcome.members)
    yield from ((digest, _Rejected(_damaged(actual))) for digest, actual in outcome.damaged)
    yield from ((digest, _Missing()) for digest in outcome.missing)


def _size(store: Store, digest: Digest) -> int:
    """A local object's size; one too large to pack when it cannot be read."""
    try:
        return os.stat(store.object_path(digest)).st_size
    except OSError:
        return packs.SMALL


@dataclass(slots=True)
class _Located:
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


def _packed(remote: Remote, pool: ThreadPoolExecutor, progress: ProgressListener) -> _Located:
    """Every pack index on the remote whose pack is there too, read (one listing, then
    one read per pack)."""
    listing = packs.scan(remote)
    located = _Located(listing.packs)
    located.orphans = [
        Rejection(f"pack {pack}", "its index is there, the pack is not") for pack in listing.orphans
    ]

    def read(pack: Digest) -> tuple[Any, int]:
        try:
            return packs.read_index(remote, pack), 0
        except PackRefused as exc:
            return _Unread(exc), 0

    for pack, outcome in _each(pool, located.listed, read, "checking", progress):
        if isinstance(outcome, _Unread):
            located.refused.append((Rejection(f"pack {pack}", str(outcome)), outcome.claims))
            continue
        for digest, member in outcome.items():
            if digest in located.members:
                located.extra.setdefault(digest, []).append(member)
            else:
                located.members[digest] = member
    return located


def push(
    store: Store,
    remote: Remote,
    selection: Selection | None = None,
    *,
    run_cache: bool = True,
    jobs: int | None = None,
    progress: ProgressListener = ignore_progress,
) -> TransferReport:
    """Upload what the remote lacks of ``selection`` (None: the whole store), results
    last and only once every object they name is on the remote."""
    started = time.monotonic()
    report = TransferReport("push", remote.url)
    remote.check()
    runcache = RunCache(store)
    if selection is None:
        files = set(store.iter_objects())
        folders: set[Digest] = set()
    else:
        files, folders = set(selection.files), set(selection.folders)
    results = _local_results(runcache, selection, report) if run_cache else {}
    for result in results.values():
        for out in result.outs.values():
            (folders if out.is_dir else files).add(out.digest)
    entries: dict[Digest, list[Digest]] = {}
    for folder in sorted(folders):
        files.add(folder)
        if folder in store:
            with contextlib.suppress(StoreError):
                entries[folder] = [entry.digest for entry in store.manifest(folder)]
                files.update(entries[folder])
    here = {d for d in files if d in store}
    report.unavailable += [f"object {d}" for d in sorted(files - here)]
    names = {object_name(d): d for d in sorted(here)}

    def send(digest: Digest) -> tuple[int, int]:
        path = store.object_path(digest)
        try:
            actual = digest_file(path)
        except OSError as exc:
            raise _Missing from exc
        if actual != digest:
            raise _Rejected(_damaged(actual))
        remote.upload(path, object_name(digest))
        size = path.stat().st_size
        return size, size

    def send_pack(group: list[Digest]) -> tuple[packs.Built, int]:
        built = packs.build(store, group)
        if built.members:
            packs.upload(remote, built)
        return built, len(built.data)

    with _pool(jobs or remote.jobs) as pool:
        located = _packed(remote, pool, progress)
        report.skipped += located.orphans + [rejection for rejection, _ in located.refused]
        # a first push into an empty remote checks nothing
        fresh = not located.listed and remote.empty()
        in_packs = {digest for digest in names.values() if digest in located.members}
        loose = {name: digest for name, digest in names.items() if digest not in in_packs}
        there = set() if fresh else _present(remote, loose, pool, progress)
        report.objects_present = len(there) + len(in_packs)
        on_remote = {names[name] for name in there} | in_packs
        todo = [digest for name, digest in loose.items() if name not in there]
        work: list[Digest | list[Digest]] = list(todo)
        small = [digest for digest in todo if _size(store, digest) < packs.SMALL]
        if len(small) >= packs.PACK_MIN:
            packed = set(small)
            work = [digest for digest in todo if digest not in packed]
            work += list(packs.chunks(store, small))

        def send_any(item: Digest | list[Digest]) -> tuple[Any, int]:
            return send_pack(item) if isinstance(item, list) else send(item)

        for item, outcome in _each(pool, work, send_any, "objects", progress):
            for digest, value in _sent(item, outcome):
                if _tally(report, digest, value):
                    on_remote.add(digest)
        if results:
            # every result by its own name: one the remote has of the same key is
            # another run's, not this one
            named = {result_name(*pair): pair for pair in sorted(results)}
            stored = set() if fresh else _present(remote, named, pool, progress, levels=2)
            report.results_present = len(stored)
            ready = []
            for name, pair in named.items():
                if name in stored:
                    continue
                if _objects_of(results[pair], entries) <= on_remote:
                    ready.append(pair)
                else:
                    report.unavailable.append(f"{_what(*pair)} (not all of its objects are there)")

            def send_result(pair: Pair) -> tuple[None, int]:
                data = results[pair].to_json(pair[0], signer=remote.signer)
                remote.write(result_name(*pair), data)
                return None, len(data)

            for _pair, _outcome in _each(pool, ready, send_result, "results", progress):
                report.results += 1
    report.duration = time.monotonic() - started
    return report


def _manifest_problem(data: bytes) -> str | None:
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
    """:func:`_manifest_problem` of a downloaded file, as :class:`_Rejected`."""
    problem = _manifest_problem(Path(path).read_bytes())
    if problem is not None:
        raise _Rejected(problem)


def _jobs(wanted: Mapping[Digest, Member | None]) -> list[Digest | packs.Job]:
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


def _fetch_object(store: Store, remote: Remote, digest: Digest, *, folder: bool) -> int:
    """Download an object into the store's tmp/, re-hash it and, only when it matches
    its digest (and, for a folder, its manifest is safe), rename it into place."""
    try:
        fd, tmp = tempfile.mkstemp(dir=store.tmp, prefix="pull-")
        os.close(fd)
    except OSError as exc:
        raise StoreError(f"cannot write to the store at {store.root} ({exc.strerror})") from exc
    try:
        if not remote.download(object_name(digest), Path(tmp)):
            raise _Missing
        actual = digest_file(tmp)
        if actual != digest:
            raise _Damaged(f"its bytes hash to {actual}")
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


def _fetch_pack(
    store: Store, downloads: packs.Downloads, job: packs.Job, folders: Collection[Digest]
) -> list[packs.Unpacked]:
    """Some wanted objects of one pack: the pack downloaded into the store's tmp/ (once
    per pull), each member hashed and stored only when it is its digest."""

    def check(digest: Digest, data: bytes) -> None:
        problem = _manifest_problem(data) if digest in folders else None
        if problem is not None:
            raise PackRefused(problem)

    try:
        return packs.unpack(store, downloads.path(job.pack), job.members, check)
    except OSError as exc:
        raise StoreError(f"cannot write to the store at {store.root} ({exc.strerror})") from exc


def _outcomes(item: Digest | packs.Job, outcome: Any) -> Iterator[tuple[Digest, Any]]:
    """(object, its size or _Rejected or _Missing) for each object of a fetch job."""
    if not isinstance(item, packs.Job):
        yield item, outcome
        return
    if not isinstance(outcome, list):  # the whole pack: missing
        yield from ((digest, outcome) for digest, _ in item.members)
        return
    for one in outcome:
        if one.refused:
            yield one.digest, _Rejected(one.refused)
        elif one.damaged:
            yield one.digest, _Damaged(one.damaged)
        elif one.missing:
            yield one.digest, _Missing()
        else:
            yield one.digest, one.size


def _each_copy(
    pool: ThreadPoolExecutor,
    wanted: list[Digest],
    located: _Located,
    fetch: Callable[[Any], tuple[Any, int]],
    phase: str,
    progress: ProgressListener,
) -> Iterator[tuple[Digest, Any]]:
    """(object, its size, or _Rejected, or _Missing) for each wanted object, trying
    its copies in turn (:meth:`_Located.copies`): a copy whose bytes are not its
    digest's, or that is gone, sends the object on to its next copy, in one more
    round of jobs (phase ``other copies``). An object that no copy gives is rejected
    when some copy was damaged (all their reasons), else missing."""
    where = {digest: 0 for digest in wanted}
    damage: dict[Digest, list[str]] = {}
    todo = wanted
    while todo:
        tried = {digest: located.copies(digest) for digest in todo}
        work = _jobs({digest: tried[digest][where[digest]] for digest in todo})
        again: list[Digest] = []
        for item, outcome in _each(pool, work, fetch, phase, progress):
            for digest, value in _outcomes(item, outcome):
                if isinstance(value, _Damaged):
                    loose = tried[digest][where[digest]] is None and len(tried[digest]) > 1
                    damage.setdefault(digest, []).append(
                        value.reason + (" under its own name" if loose else "")
                    )
                if isinstance(value, (_Damaged, _Missing)):
                    if where[digest] + 1 < len(tried[digest]):
                        where[digest] += 1
                        again.append(digest)
                        continue
                    if digest in damage:
                        value = _Rejected(", ".join(damage[digest]))
                yield digest, value
        todo, phase = sorted(again), "other copies"


def _judge_indexes(
    report: TransferReport,
    located: _Located,
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


def _fetch_result(remote: Remote, pair: Pair) -> tuple[Result, int]:
    """One result from the remote, refused unless it is a valid result of its key
    whose outputs have the id its name says (and, when the remote's signer has a
    secret, signed with it)."""
    key, rid = pair
    data = remote.read(result_name(key, rid))
    if data is None:
        raise _Missing
    try:
        return parse_result(data, key, result_id=rid, signer=remote.signer), len(data)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise _Rejected(f"not a trustworthy result: {exc}") from None


def pull(
    store: Store,
    remote: Remote,
    selection: Selection | None = None,
    *,
    run_cache: bool = True,
    jobs: int | None = None,
    progress: ProgressListener = ignore_progress,
) -> TransferReport:
    """Download what the local store lacks of ``selection`` (None: all the remote
    has), verifying everything, and write each result once its objects are here."""
    started = time.monotonic()
    report = TransferReport("pull", remote.url)
    remote.check()
    runcache = RunCache(store, signer=remote.signer)
    try:
        store.tmp.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot write to the store at {store.root} ({exc.strerror})") from exc
    with _pool(jobs or remote.jobs) as pool:
        pairs: set[Pair] = set()
        if selection is None:
            names = remote.listing(f"{OBJECTS}/")
            files = {d for d in map(parse_object_name, names) if d is not None}
            folders: set[Digest] = set()
            if run_cache:
                pairs = {p for p in map(parse_result_name, remote.listing(f"{RESULTS}/")) if p}
        else:
            files, folders = set(selection.files), set(selection.folders)
            if run_cache:
                pairs = set(selection.results)
                listed = _remote_results(remote, selection.keys, pool, progress)
                for key, ids in sorted(listed.items()):
                    if not ids:
                        report.unavailable.append(_what(key))
                    pairs.update((key, rid) for rid in ids)

        # 1. results the local run cache lacks: validated before anything they name
        wanted = [pair for pair in sorted(pairs) if runcache.get_exact(*pair) is None]
        report.results_present = len(pairs) - len(wanted)
        results: dict[Pair, Result] = {}

        def fetch_result(pair: Pair) -> tuple[Result, int]:
            return _fetch_result(remote, pair)

        for pair, outcome in _each(pool, wanted, fetch_result, "results", progress):
            if isinstance(outcome, _Rejected):
                report.rejected.append(Rejection(_what(*pair), outcome.reason))
            elif isinstance(outcome, _Missing):
                report.unavailable.append(_what(*pair))
            else:
                results[pair] = outcome
                for out in outcome.outs.values():
                    (folders if out.is_dir else files).add(out.digest)
        files -= folders

        # 2. files and folders' manifests, then 3. the files the manifests list
        located, loaded = _Located(), selection is None
        if loaded:  # the whole remote: every packed object too
            located = _packed(remote, pool, progress)
            files |= set(located.members)
        downloads = packs.Downloads(store, remote)  # packs downloaded into tmp/, for both phases

        def fetch(item: Digest | packs.Job) -> tuple[Any, int]:
            if isinstance(item, packs.Job):
                done = _fetch_pack(store, downloads, item, folders)
                return done, sum(one.size for one in done)
            size = _fetch_object(store, remote, item, folder=item in folders)
            return size, size

        wanted_objects = sorted(d for d in files | folders if d not in store)
        report.objects_present += len(files | folders) - len(wanted_objects)
        rejected: set[Digest] = set()
        missing: set[Digest] = set()
        try:
            for phase in ("objects", "folder files"):
                if wanted_objects and not loaded:  # what the packs hold: read once
                    located, loaded = _packed(remote, pool, progress), True
                copies = _each_copy(pool, wanted_objects, located, fetch, phase, progress)
                for digest, value in copies:
                    if not _tally(report, digest, value):
                        (rejected if isinstance(value, _Rejected) else missing).add(digest)
                listed: set[Digest] = set()
                for folder in sorted(folders - rejected):
                    if folder in store:
                        with contextlib.suppress(StoreError):
                            listed.update(entry.digest for entry in store.manifest(folder))
                wanted_objects = sorted(d for d in listed if d not in store)
                report.objects_present += len(listed) - len(wanted_objects)
                folders = set()  # the files manifests list are files, not folders
        finally:
            downloads.close()
        _judge_indexes(report, located, missing, everything=selection is None, store=store)

    # 4. results, last, and only when every object they name is here; a result's time
    # is a claim too: none is taken to be newer than the moment it arrived (a time
    # changed voids the signature it came with; with a secret, put signs it again)
    arrived = time.time()
    for (key, rid), result in results.items():
        if runcache.complete(result):
            if result.created > arrived:
                result = replace(result, created=arrived, signature="")
            runcache.put(key, result)
            report.results += 1
        else:
            report.unavailable.append(f"{_what(key, rid)} (not all of its objects are there)")
    report.duration = time.monotonic() - started
    return report


def fetch_for_keys(
    store: Store,
    remote: Remote,
    keys: Iterable[Digest],
    *,
    jobs: int | None = None,
    progress: ProgressListener = ignore_progress,
) -> TransferReport:
    """Pull every result of these step keys the local run cache lacks, and every
    object they name, so that a stale step whose result is on the remote is restored
    instead of run (``repro --pull``). One listing of the remote per key (or per
    ``results/b3/XX/`` folder, for many keys); results already here are not fetched."""
    selection = Selection(keys=frozenset(keys))
    return pull(store, remote, selection, run_cache=True, jobs=jobs, progress=progress)
