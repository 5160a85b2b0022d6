"""Looking after the store: `gitpipe cache verify` and `gitpipe gc`.

Both work on the store and run cache alone (and, for gc, the lock files Git holds):
nothing in the workspace is read or written.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitpipe import lockfile
from gitpipe.errors import GitpipeError, StoreError
from gitpipe.hashing import Digest
from gitpipe.lockfile import Lock
from gitpipe.runcache import RunCache, parse_result
from gitpipe.store import Store


@dataclass(slots=True)
class StoreReport:
    """What `gitpipe cache verify` found."""

    objects: int = 0
    results: int = 0
    corrupt: list[str] = field(default_factory=list)  # objects whose bytes do not match
    broken_results: list[str] = field(default_factory=list)  # unreadable or incomplete
    #: files in the store's quarantine: corrupt objects a restore set aside
    quarantined: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "objects": self.objects,
            "results": self.results,
            "corrupt_objects": self.corrupt,
            "broken_results": self.broken_results,
            "quarantined": self.quarantined,
        }


@dataclass(slots=True)
class GcReport:
    """What `gitpipe gc` found (and, when ``deleted``, removed)."""

    locks: int = 0  # lock files read: the working tree's and each branch's and tag's
    kept: int = 0  # objects some lock needs
    objects: int = 0  # unreferenced objects
    results: int = 0  # unreferenced results
    bytes: int = 0  # size of the unreferenced objects
    recent: int = 0  # unreferenced, but too new to remove
    deleted: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "locks": self.locks,
            "kept": self.kept,
            "objects": self.objects,
            "results": self.results,
            "bytes": self.bytes,
            "recent": self.recent,
            "deleted": self.deleted,
        }


def verify_store(store_dir: Path, *, repair: bool = False) -> StoreReport:
    """Re-hash every object and check every result; with ``repair``, remove the
    corrupt objects and the results that name missing objects.  Objects a restore
    moved to the quarantine are listed, never removed."""
    store = Store(store_dir)
    runcache = RunCache(store)
    report = StoreReport()
    for digest in store.iter_objects():
        report.objects += 1
        if not store.verify(digest):
            report.corrupt.append(str(digest))
            if repair:
                store.discard(digest)
    report.quarantined = [str(path) for path in store.quarantined()]
    for key, rid, path in runcache.stored():
        report.results += 1
        if not _sound(runcache, key, rid, path):
            report.broken_results.append(str(key) if rid is None else f"{key}/{rid.hex}")
            if repair:
                runcache.discard(key, rid)
    return report


def _sound(runcache: RunCache, key: Digest, rid: Digest | None, path: Path) -> bool:
    """Whether one stored result reads back whole, with every object it names."""
    if rid is not None:
        return runcache.get_exact(key, rid) is not None
    try:
        result = parse_result(path.read_bytes(), key)
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return runcache.complete(result)


def collect_garbage(
    store_dir: Path, locks: list[Lock], *, delete: bool = False, keep_recent: float = 3600.0
) -> GcReport:
    """Objects and results that none of ``locks`` references.  With ``delete`` they
    are removed; objects and results younger than ``keep_recent`` seconds are always
    kept (another clone sharing the store may be about to commit a lock that names
    them).  Every result of a key a lock names is kept, with the objects it names."""
    store = Store(store_dir)
    runcache = RunCache(store)
    live_objects: set[Digest] = set()
    live_keys: set[Digest] = set()

    def keep_object(digest: Digest, is_dir: bool) -> None:
        live_objects.add(digest)
        if is_dir and digest in store:
            with contextlib.suppress(StoreError):
                live_objects.update(entry.digest for entry in store.manifest(digest))

    for lock in locks:
        for entry in lock.steps.values():
            live_keys.add(entry.key)
            for path, digest in entry.outs.items():
                keep_object(digest, path.endswith("/"))
    for key in live_keys:
        for result in runcache.results(key):
            for out in result.outs.values():
                keep_object(out.digest, out.is_dir)
    report = GcReport(locks=len(locks), deleted=delete)
    cutoff = time.time() - keep_recent
    for key, rid, path in list(runcache.stored()):
        if key in live_keys:
            continue
        try:
            recent = path.stat().st_mtime > cutoff
        except OSError:
            continue
        if recent:
            report.recent += 1
            continue
        report.results += 1
        if delete:
            runcache.discard(key, rid)
    for digest in store.iter_objects():
        if digest in live_objects:
            report.kept += 1
            continue
        path = store.object_path(digest)
        st = path.stat()
        if st.st_mtime > cutoff:
            report.recent += 1
            continue
        report.objects += 1
        report.bytes += st.st_size
        if delete:
            store.discard(digest)
    return report


def locks_in_history(repo: Any, lock_path: Path) -> list[Lock]:
    """gitpipe.lock as every branch and tag holds it (unreadable ones left out)."""
    locks = []
    path = repo.relpath(lock_path)
    for commit in sorted(set(repo.ref_commits().values())):
        data = repo.read_file(commit, path)
        if data is not None:
            with contextlib.suppress(GitpipeError, UnicodeDecodeError):
                locks.append(lockfile.loads(data.decode("utf-8"), name=path))
    return locks
