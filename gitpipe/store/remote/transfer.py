"""Moving objects and results between the local store and a remote.

:func:`push` and :func:`pull` move only what the other side lacks, many transfers at
once (a thread pool), and report progress to a listener: this module never prints.
Nothing that comes from a remote is trusted::

    pull:  results (remote: the named ones, and every one in the keys' folders
             that the local run cache lacks)
             --parse_result, id = name-->  their objects and folder manifests
             --download into the store's tmp/, re-hash, check manifests' paths-->  rename
               (a bad copy: the object's next copy, see gitpipe.store.remote.fetching)
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
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from gitpipe.core.errors import CorruptObject, StoreError
from gitpipe.core.hashing import Digest, digest_file
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
from gitpipe.store.remote.fetching import (
    Indexes,
    Located,
    each_copy,
    fetch_object,
    fetch_pack,
    judge_indexes,
    locate,
)
from gitpipe.store.remote.moving import (
    Missing,
    ProgressListener,
    Rejected,
    Rejection,
    TransferReport,
    each,
    ignore_progress,
    tally,
    thread_pool,
)
from gitpipe.store.runcache import OutRecord, Result, RunCache, parse_result, result_id

if TYPE_CHECKING:
    from gitpipe.store.datafile import DataRecord

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

    @classmethod
    def from_records(cls, records: Iterable[DataRecord]) -> Selection:
        """The objects of added data (gitpipe.data's records): files, and folders by
        their manifest's digest."""
        files: set[Digest] = set()
        folders: set[Digest] = set()
        for record in records:
            (folders if record.is_dir else files).add(record.digest)
        return cls(frozenset(files), frozenset(folders))

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


# -- moving things ----------------------------------------------------------------------


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
            for name, there in each(
                pool, names, lambda n: (remote.exists(n), 0), "checking", progress
            )
            if there is True
        }
    seen: set[str] = set()
    for _folder, listed in each(
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
    for _prefix, names in each(
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


def _sent(item: Digest | list[Digest], outcome: Any) -> Iterator[tuple[Digest, Any]]:
    """(object, its size or Rejected or Missing) for each object of a push's job: one
    object, or a pack (:class:`packs.Built`)."""
    if not isinstance(outcome, packs.Built):
        yield item, outcome  # type: ignore[misc]
        return
    yield from ((digest, size) for digest, _, size in outcome.members)
    yield from ((digest, Rejected(_damaged(actual))) for digest, actual in outcome.damaged)
    yield from ((digest, Missing()) for digest in outcome.missing)


def _size(store: Store, digest: Digest) -> int:
    """A local object's size; one too large to pack when it cannot be read."""
    try:
        return os.stat(store.object_file(digest)).st_size
    except OSError:
        return packs.SMALL


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
            raise Missing from exc
        if actual != digest:
            raise Rejected(_damaged(actual))
        remote.upload(path, object_name(digest))
        size = path.stat().st_size
        return size, size

    def send_pack(group: list[Digest]) -> tuple[packs.Built, int]:
        built = packs.build(store, group)
        if built.members:
            packs.upload(remote, built)
        return built, len(built.data)

    with thread_pool(jobs or remote.jobs) as pool:
        located = locate(remote, pool, progress)
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

        for item, outcome in each(pool, work, send_any, "objects", progress):
            for digest, value in _sent(item, outcome):
                if tally(report, digest, value):
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

            for _pair, _outcome in each(pool, ready, send_result, "results", progress):
                report.results += 1
    report.duration = time.monotonic() - started
    return report


def _fetch_result(remote: Remote, pair: Pair) -> tuple[Result, int]:
    """One result from the remote, refused unless it is a valid result of its key
    whose outputs have the id its name says (and, when the remote's signer has a
    secret, signed with it)."""
    key, rid = pair
    data = remote.read(result_name(key, rid))
    if data is None:
        raise Missing
    try:
        return parse_result(data, key, result_id=rid, signer=remote.signer), len(data)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise Rejected(f"not a trustworthy result: {exc}") from None


def pull(
    store: Store,
    remote: Remote,
    selection: Selection | None = None,
    *,
    run_cache: bool = True,
    jobs: int | None = None,
    progress: ProgressListener = ignore_progress,
    indexes: Indexes | None = None,
) -> TransferReport:
    """Download what the local store lacks of ``selection`` (None: all the remote
    has), verifying everything, and write each result once its objects are here;
    ``indexes`` keeps the remote's pack indexes for the next pull of the same command."""
    started = time.monotonic()
    report = TransferReport("pull", remote.url)
    remote.check()
    runcache = RunCache(store, signer=remote.signer)
    try:
        store.tmp.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot write to the store at {store.root} ({exc.strerror})") from exc
    with thread_pool(jobs or remote.jobs) as pool:
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

        for pair, outcome in each(pool, wanted, fetch_result, "results", progress):
            if isinstance(outcome, Rejected):
                report.rejected.append(Rejection(_what(*pair), outcome.reason))
            elif isinstance(outcome, Missing):
                report.unavailable.append(_what(*pair))
            else:
                results[pair] = outcome
                for out in outcome.outs.values():
                    (folders if out.is_dir else files).add(out.digest)
        files -= folders

        # 2. files and folders' manifests, then 3. the files the manifests list
        located, loaded = Located(), selection is None
        indexes = indexes or Indexes()
        if loaded:  # the whole remote: every packed object too
            located = indexes.located(remote, pool, progress)
            files |= set(located.members)
        downloads = packs.Downloads(store, remote)  # packs downloaded into tmp/, for both phases

        def fetch(item: Digest | packs.Job) -> tuple[Any, int]:
            if isinstance(item, packs.Job):
                done = fetch_pack(store, downloads, item, folders)
                return done, sum(one.size for one in done)
            size = fetch_object(store, remote, item, folder=item in folders)
            return size, size

        _set_aside_corrupt_manifests(store, folders)  # else "here already", never fetched
        wanted_objects = sorted(d for d in files | folders if d not in store)
        report.objects_present += len(files | folders) - len(wanted_objects)
        rejected: set[Digest] = set()
        missing: set[Digest] = set()
        try:
            for phase in ("objects", "folder files"):
                if wanted_objects and not loaded:  # what the packs hold: read once
                    located, loaded = indexes.located(remote, pool, progress), True
                copies = each_copy(pool, wanted_objects, located, fetch, phase, progress)
                for digest, value in copies:
                    if not tally(report, digest, value):
                        (rejected if isinstance(value, Rejected) else missing).add(digest)
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
        judge_indexes(report, located, missing, everything=selection is None, store=store)

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


def _set_aside_corrupt_manifests(store: Store, folders: Iterable[Digest]) -> None:
    """Move to the quarantine each folder manifest the store holds corrupt (its bytes
    do not hash to its name), so that the pull fetches it again: a manifest read
    nothing of, and the files it lists were never asked for."""
    for folder in sorted(folders):
        if folder in store:
            try:
                store.manifest(folder)
            except CorruptObject:
                store.quarantine(folder)
            except StoreError:
                pass  # not a manifest: a restore says so


def fetch_for_keys(
    store: Store,
    remote: Remote,
    keys: Iterable[Digest],
    *,
    jobs: int | None = None,
    progress: ProgressListener = ignore_progress,
    indexes: Indexes | None = None,
) -> TransferReport:
    """Pull every result of these step keys the local run cache lacks, and every
    object they name, so that a stale step whose result is on the remote is restored
    instead of run (``repro --pull``). One listing of the remote per key (or per
    ``results/b3/XX/`` folder, for many keys); results already here are not fetched;
    the pack indexes are read once for all the pulls ``indexes`` is given to."""
    selection = Selection(keys=frozenset(keys))
    return pull(
        store, remote, selection, run_cache=True, jobs=jobs, progress=progress, indexes=indexes
    )
