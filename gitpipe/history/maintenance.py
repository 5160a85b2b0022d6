"""Looking after the store: `gitpipe cache verify` and `gitpipe gc`.

Both work on the store and run cache alone; gc reads, besides, the lock of every
clone using the store (nothing in any workspace is written)::

    needed_locks:  this clone ─┬─> working tree's lock ─┐
                   clones/* ───┘   every ref's lock ────┴─> Needs ─> collect_garbage
                   (gone: dropped; unreadable: gc deletes nothing)
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitpipe.core import tomlcache
from gitpipe.core.console import first_of
from gitpipe.core.errors import GitError, LockfileError, StoreError
from gitpipe.core.hashing import Digest, digest_bytes
from gitpipe.store import clones, datafile, lockfile
from gitpipe.store.clones import Clone
from gitpipe.store.datafile import DataRecords
from gitpipe.store.lockfile import Lock
from gitpipe.store.objects import Store
from gitpipe.store.runcache import Result, RunCache, declared_mismatch, parse_result


@dataclass(slots=True)
class StoreReport:
    """What `gitpipe cache verify` found."""

    objects: int = 0
    results: int = 0
    corrupt: list[str] = field(default_factory=list)  # objects whose bytes do not match
    #: unreadable, incomplete, or not covering the outputs its key record declares
    #: ("KEY/ID", the last with the difference: "KEY/ID (names outputs ...)")
    broken_results: list[str] = field(default_factory=list)
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


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A lock `gitpipe gc` must read and cannot, or a clone it cannot look into."""

    where: str  # "refs/heads/x:gitpipe.lock", a path, "the clone at PATH"
    why: str

    def __str__(self) -> str:
        return f"{self.where} ({self.why})"

    def to_json(self) -> dict[str, str]:
        return {"where": self.where, "why": self.why}


@dataclass(slots=True)
class Needs:
    """What the clones using a store need: the locks gc read, by the digest of their
    bytes, and what it could not read."""

    locks: dict[Digest, Lock] = field(default_factory=dict)
    #: the data files (gitpipe.data) gc read, by the digest of their bytes
    data: dict[Digest, DataRecords] = field(default_factory=dict)
    unreadable: list[Unreadable] = field(default_factory=list)
    clones: int = 0  # clones whose locks were read, this one included
    dropped: list[Clone] = field(default_factory=list)  # registered, work tree gone

    def refusal(self) -> str:
        """Why gc deletes nothing ('' when it may)."""
        if not self.unreadable:
            return ""
        shown = first_of([str(u) for u in self.unreadable], 5, sep="; ", more="; and {} more")
        return (
            f"gc deletes nothing while {len(self.unreadable)} lock(s) or clone(s) it must "
            f"read cannot be read: {shown}; fix or delete them (or the branch), "
            "then run `gitpipe gc` again"
        )


@dataclass(slots=True)
class GcReport:
    """What `gitpipe gc` found (and, when ``deleted``, removed)."""

    locks: int = 0  # distinct lock (and data) files read, in every clone's working tree and refs
    kept: int = 0  # objects some lock needs
    objects: int = 0  # unreferenced objects
    results: int = 0  # unreferenced results
    bytes: int = 0  # size of the unreferenced objects
    recent: int = 0  # unreferenced, but too new to remove
    deleted: bool = False
    clones: int = 0  # clones whose locks were read, this one included
    dropped: list[str] = field(default_factory=list)  # registered clones that are gone
    unreadable: list[Unreadable] = field(default_factory=list)  # nothing is deleted then
    refusal: str = ""  # why nothing may be deleted ('' when it may)

    def to_json(self) -> dict[str, Any]:
        return {
            "locks": self.locks,
            "kept": self.kept,
            "objects": self.objects,
            "results": self.results,
            "bytes": self.bytes,
            "recent": self.recent,
            "deleted": self.deleted,
            "clones": self.clones,
            "dropped": self.dropped,
            "unreadable": [u.to_json() for u in self.unreadable],
        }


def verify_store(store_dir: Path, *, repair: bool = False) -> StoreReport:
    """Re-hash every object and check every result; with ``repair``, remove the
    corrupt objects and the broken results: unreadable, naming missing objects, or
    with other outputs than its own key record declares (see
    :func:`gitpipe.store.runcache.declared_mismatch`: checkable without the pipeline only
    for a result holding the record its key is the digest of).  Objects a restore
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
        name = str(key) if rid is None else f"{key}/{rid.hex}"
        result = _sound(runcache, key, rid, path)
        mismatch = declared_mismatch(key, result) if result is not None else ""
        if result is None or mismatch:
            report.broken_results.append(f"{name} ({mismatch})" if mismatch else name)
            if repair:
                runcache.discard(key, rid)
    return report


def _sound(runcache: RunCache, key: Digest, rid: Digest | None, path: Path) -> Result | None:
    """One stored result, when it reads back whole, with every object it names."""
    if rid is not None:
        return runcache.get_exact(key, rid)
    try:
        result = parse_result(path.read_bytes(), key)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return result if runcache.complete(result) else None


def collect_garbage(
    store_dir: Path, needs: Needs, *, delete: bool = False, keep_recent: float = 3600.0
) -> GcReport:
    """Objects and results that none of the locks in ``needs`` references.  With
    ``delete`` they are removed, and so are the registrations of clones that are gone;
    objects and results younger than ``keep_recent`` seconds are always kept (a clone
    sharing the store may be about to commit a lock that names them).  Every result
    of a key a lock names is kept, with the objects it names.

    While a lock that must be read cannot be (``needs.unreadable``), nothing is
    deleted: with ``delete``, :class:`StoreError` is raised before anything is."""
    refusal = needs.refusal()
    if delete and refusal:
        raise StoreError(refusal)
    store = Store(store_dir)
    runcache = RunCache(store)
    live_objects: set[Digest] = set()
    live_keys: set[Digest] = set()

    def keep_object(digest: Digest, is_dir: bool) -> None:
        live_objects.add(digest)
        if is_dir and digest in store:
            with contextlib.suppress(StoreError):
                live_objects.update(entry.digest for entry in store.manifest(digest))

    for lock in needs.locks.values():
        for entry in lock.steps.values():
            live_keys.add(entry.key)
            for path, digest in entry.outs.items():
                keep_object(digest, path.endswith("/"))
    for records in needs.data.values():
        for record in records:
            keep_object(record.digest, record.is_dir)
    for key in live_keys:
        for result in runcache.results(key):
            for out in result.outs.values():
                keep_object(out.digest, out.is_dir)
    report = GcReport(
        locks=len(needs.locks) + len(needs.data),
        deleted=delete,
        clones=needs.clones,
        dropped=[str(clone.folder) for clone in needs.dropped],
        unreadable=list(needs.unreadable),
        refusal=refusal,
    )
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
        # an object linked in (a hard-linked output or added file) keeps its file's
        # mtime, however old: its ctime says when it entered the store (the new link)
        if max(st.st_mtime, st.st_ctime) > cutoff:
            report.recent += 1
            continue
        report.objects += 1
        report.bytes += st.st_size
        if delete:
            store.discard(digest)
    if delete:
        for clone in needs.dropped:
            clones.forget(clone)
    return report


def needed_locks(store_dir: Path, pipeline: Path, *, workspace_only: bool = False) -> Needs:
    """The locks of every clone using the store: this one (the pipeline file
    ``pipeline``) and each clone registered in the store (:mod:`gitpipe.store.clones`)
    whose work tree still exists.  Of each: the lock in its working tree and, unless
    ``workspace_only``, the lock as every ref of its repository holds it (branches,
    tags, remote-tracking branches, HEAD, any other ref).  A registered clone whose
    work tree is gone is listed in ``dropped``; a lock or clone that cannot be read,
    in ``unreadable``."""
    needs = Needs()
    reader = _LockReader(needs, refs=not workspace_only)
    here = pipeline.resolve()
    reader.read_clone(here, None, this=True)
    registered, broken = clones.registered(store_dir)
    for entry, why in broken:
        needs.unreadable.append(Unreadable(f"the clone registration {entry}", why))
    for clone in registered:
        if clone.pipeline == here:
            continue
        try:
            os.stat(clone.folder)
        except (FileNotFoundError, NotADirectoryError):
            needs.dropped.append(clone)
            continue
        except OSError as exc:
            needs.unreadable.append(
                Unreadable(f"the clone at {clone.folder}", exc.strerror or str(exc))
            )
            continue
        reader.read_clone(clone.pipeline, clone.worktree, this=False)
    return needs


#: a line Git writes around the two sides of a conflict
_CONFLICT = re.compile(r"^(<{7}|>{7})( |$)", re.MULTILINE)


class _LockReader:
    """Reads the locks of one clone after another into a :class:`Needs`, each lock's
    bytes parsed once (a lock file in Git is read once per blob)."""

    def __init__(self, needs: Needs, *, refs: bool) -> None:
        self.needs = needs
        self.refs = refs
        self.blobs: set[str] = set()  # Git blobs read and parsed

    def read_clone(self, pipeline: Path, worktree: Path | None, *, this: bool) -> None:
        """One clone: its working tree's lock, then (``refs``) the lock in each ref."""
        needs = self.needs
        lock_path = lockfile.path_for(pipeline)
        before = len(needs.unreadable)
        for path in (lock_path, datafile.path_for(pipeline)):
            try:
                data = path.read_bytes()
            except (FileNotFoundError, NotADirectoryError):
                data = None  # none yet (or the pipeline moved): nothing to keep for it
            except OSError as exc:
                needs.unreadable.append(Unreadable(str(path), exc.strerror or str(exc)))
                data = None
            if data is not None:
                self._add(data, str(path), path.name)
        if self.refs:
            self._read_refs(pipeline, worktree, lock_path, this=this)
        if len(needs.unreadable) == before:
            needs.clones += 1

    def _read_refs(
        self, pipeline: Path, worktree: Path | None, lock_path: Path, *, this: bool
    ) -> None:
        """The lock and the data file (gitpipe.data) as every ref of the clone's
        repository holds them."""
        from gitpipe.history.git import Repository

        needs = self.needs
        if this:
            where, start = f"the Git repository around {pipeline.parent}", pipeline.parent
        elif worktree is None:
            return  # registered outside Git: its working tree's lock is all it has
        else:
            where, start = f"the clone at {worktree}", worktree
        try:
            repo = Repository.find(start)
        except GitError as exc:
            needs.unreadable.append(Unreadable(where, str(exc)))
            return
        if repo is None and this:
            return  # outside Git: the working tree's lock is all there is
        if repo is None or (worktree is not None and repo.top != worktree.resolve()):
            if repo is not None:
                repo.close()
            needs.unreadable.append(Unreadable(where, "not a Git repository anymore"))
            return
        suffix = "" if this else f" in {repo.top}"
        with repo:
            try:
                refs = repo.ref_commits()
            except GitError as exc:
                needs.unreadable.append(Unreadable(where, str(exc)))
                return
            readable = {}
            for ref, commit in refs.items():
                if commit is None:
                    needs.unreadable.append(
                        Unreadable(f"{ref}{suffix}", "names an object Git cannot read")
                    )
                else:
                    readable[ref] = commit
            for file in (lock_path, datafile.path_for(pipeline)):
                self._read_file(repo, readable, file, suffix)

    def _read_file(self, repo: Any, refs: dict[str, Any], file: Path, suffix: str) -> None:
        """One file (the lock or the data file) as each ref holds it."""
        needs = self.needs
        path = repo.relpath(file)
        holders: dict[str, list[str]] = {}  # blob -> the refs holding it
        for ref, commit in refs.items():
            try:
                blob = repo.blob_at(commit, path)
            except GitError as exc:
                needs.unreadable.append(Unreadable(f"{ref}:{path}{suffix}", str(exc)))
                continue
            if blob is not None and blob not in self.blobs:
                holders.setdefault(blob, []).append(ref)
        for blob, names in holders.items():
            shown = first_of(names, 3, more=" (and {} more)")
            try:
                data = repo.blob(blob)
            except GitError as exc:
                needs.unreadable.append(Unreadable(f"{shown}:{path}{suffix}", str(exc)))
                continue
            if self._add(data, f"{shown}:{path}{suffix}", file.name):
                self.blobs.add(blob)

    def _add(self, data: bytes, where: str, name: str) -> bool:
        """Parse one lock file's bytes (or a data file's, by its name); False (and
        noted) when they are none."""
        if name.endswith(".data"):
            try:
                records = datafile.loads(data.decode("utf-8"), name=name)
            except (UnicodeDecodeError, LockfileError) as exc:
                self.needs.unreadable.append(Unreadable(where, str(exc)))
                return False
            self.needs.data.setdefault(digest_bytes(data), records)
            return True
        parsed = _parse_lock(data, name)
        if isinstance(parsed, str):
            self.needs.unreadable.append(Unreadable(where, parsed))
            return False
        self.needs.locks.setdefault(digest_bytes(data), parsed)
        return True


def _parse_lock(data: bytes, name: str) -> Lock | str:
    """A lock file's bytes parsed, or why they cannot be."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 text"
    if _CONFLICT.search(text):
        return "merge conflict markers"
    try:
        table = tomlcache.loads(text)
    except tomlcache.TOMLDecodeError as exc:
        return f"damaged TOML: {exc}"
    header = table.get("gitpipe")
    schema = header.get("schema") if isinstance(header, dict) else None
    if schema not in lockfile.READABLE_SCHEMAS:
        if isinstance(schema, int) and schema > lockfile.LOCK_SCHEMA:
            newest = lockfile.LOCK_SCHEMA
            return f"schema {schema}, newer than the {newest} this gitpipe reads; upgrade gitpipe"
        return f"schema {schema!r}, which this gitpipe does not read"
    try:
        return lockfile.from_data(table, name=name)
    except LockfileError:
        return "damaged: a field is missing or has the wrong type"
