"""A commit's tree as code discovery sees it: :class:`TreeSource`, a read-only view of a
folder in a tree that records what it looked at in a :class:`Trace`, and
:func:`trace_holds`, which checks cheaply whether a later tree gives the same answers.
"""

from __future__ import annotations

import contextlib
import fnmatch
import posixpath
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field

from gitpipe.core.hashing import Digest, digest_bytes
from gitpipe.history.git.objects import Entry, GitObjects

_GLOB_CHARS = frozenset("*?[")
_MAX_SYMLINKS = 8


@dataclass
class Trace:
    """What a :class:`TreeSource` looked at, folder by folder (top-relative): the
    folder's tree id, each name looked up in it, and its listing where a glob
    listed it."""

    folders: dict[str, str | None] = field(default_factory=dict)
    files: dict[str, dict[str, Entry | None]] = field(default_factory=dict)
    listings: dict[str, tuple[tuple[str, bool], ...]] = field(default_factory=dict)

    def record(self, folder: str, name: str, entry: Entry | None) -> None:
        """Note a look-up; an exact entry replaces one recorded by its kind only."""
        mine = self.files.setdefault(folder, {})
        if name not in mine or (mine[name] is not None and mine[name][1] == ""):
            mine[name] = entry

    def merge(self, other: Trace) -> None:
        """Add what ``other`` looked at (in the same tree) to this trace."""
        for folder, tree in other.folders.items():
            self.folders.setdefault(folder, tree)
        for folder, names in other.files.items():
            for name, entry in names.items():
                self.record(folder, name, entry)
        for folder, listing in other.listings.items():
            self.listings.setdefault(folder, listing)


def _kind(entry: Entry | None) -> Entry | None:
    """An entry reduced to its kind (file, folder), as code discovery sees it;
    symbolic links keep their target's id, which decides what they point at."""
    if entry is None or stat.S_ISLNK(entry[0]):
        return entry
    return (stat.S_IFMT(entry[0]), "")


def _same_entry(seen: Entry | None, now: Entry | None) -> bool:
    if seen is not None and seen[1] == "":  # recorded by kind only
        return _kind(now) == seen
    return seen == now


def _listing(entries: dict[str, Entry]) -> tuple[tuple[str, bool], ...]:
    return tuple(sorted((name, stat.S_ISDIR(mode)) for name, (mode, _) in entries.items()))


def trace_holds(objects: GitObjects, tree: str, trace: Trace) -> bool:
    """Whether every look-up ``trace`` recorded gives the same answer in ``tree``.

    Folders whose tree id did not change are skipped whole; on success the trace is
    moved to the new tree ids, so that the next check is as cheap."""
    moved: dict[str, str | None] = {}
    for folder, seen in trace.folders.items():
        now = objects.folder(tree, folder)
        if now == seen:
            continue
        entries = {} if now is None else objects.entries(now)
        for name, entry in trace.files.get(folder, {}).items():
            if not _same_entry(entry, entries.get(name)):
                return False
        listing = trace.listings.get(folder)
        if listing is not None and _listing(entries) != listing:
            return False
        moved[folder] = now
    trace.folders.update(moved)
    return True


class TreeSource:
    """The files of a folder in a commit's tree, as a codedeps ``Source``.

    Paths are relative to ``folder``; symbolic links inside the tree are followed.
    ``digest`` is blake3 of the bytes, cached by blob id in ``digests`` (share it
    between sources to hash each blob once).  Every look-up is recorded in ``trace``.
    """

    def __init__(
        self,
        repo: GitObjects,
        tree: str,
        folder: str,
        *,
        digests: dict[str, Digest] | None = None,
    ) -> None:
        self.repo = repo
        self.tree = tree
        self.folder = folder.strip("/")
        self.digests: dict[str, Digest] = {} if digests is None else digests
        self.trace = Trace()
        self._kinds = False

    @contextlib.contextmanager
    def recording(self, *, kinds: bool = False) -> Iterator[Trace]:
        """Record the look-ups made inside the block in a trace of their own (they
        are added to ``trace`` as well when the block ends).

        With ``kinds``, files are recorded by kind (a file is there, or not), not by
        content: what code discovery learns from a probe."""
        outer, self.trace = self.trace, Trace()
        inner = self.trace
        was, self._kinds = self._kinds, kinds
        try:
            yield inner
        finally:
            self.trace = outer
            self._kinds = was
            outer.merge(inner)

    def _full(self, path: str) -> str | None:
        """The top-relative form of a folder-relative path; None outside the top."""
        full = posixpath.normpath(posixpath.join(self.folder, path) if self.folder else path)
        if full == ".":
            return ""
        if full == ".." or full.startswith(("../", "/")):
            return None
        return full

    def _lookup(self, full: str) -> Entry | None:
        folder, _, name = full.rpartition("/")
        tree = self.repo.folder(self.tree, folder)
        self.trace.folders.setdefault(folder, tree)
        found = None if tree is None else self.repo.entries(tree).get(name)
        self.trace.record(folder, name, _kind(found) if self._kinds else found)
        return found

    def _blob_id(self, full: str | None) -> str | None:
        """The blob at a top-relative path, following symbolic links in the tree."""
        for _ in range(_MAX_SYMLINKS):
            if not full:
                return None
            found = self._lookup(full)
            if found is None:
                return None
            mode, sha = found
            if stat.S_ISREG(mode):
                return sha
            if not stat.S_ISLNK(mode):
                return None
            target = self.repo.blob(sha).decode("utf-8", "surrogateescape")
            if target.startswith("/"):
                return None
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(full), target))
            full = None if joined == ".." or joined.startswith("../") else joined
        return None

    def is_file(self, path: str) -> bool:
        return self._blob_id(self._full(path)) is not None

    def blob_id(self, path: str) -> str | None:
        """The Git blob id of a file (None if there is none)."""
        return self._blob_id(self._full(path))

    def read(self, path: str) -> bytes:
        sha = self._blob_id(self._full(path))
        if sha is None:
            raise FileNotFoundError(path)
        return self.repo.blob(sha)

    def digest(self, path: str) -> Digest:
        sha = self._blob_id(self._full(path))
        if sha is None:
            raise FileNotFoundError(path)
        found = self.digests.get(sha)
        if found is None:
            found = self.digests[sha] = digest_bytes(self.repo.blob(sha))
        return found

    def glob(self, pattern: str) -> list[str]:
        """Files matching a glob, as Python's ``glob(..., recursive=True)`` finds them
        in a work tree: ``**`` spans folders, wildcards skip names starting with '.'."""
        full = self._full(pattern)
        if full is None or not full:
            return []
        found: set[str] = set()
        self._glob("", full.split("/"), found)
        start = self.folder or "."
        return sorted(posixpath.relpath(path, start) for path in found)

    def _list(self, folder: str) -> dict[str, Entry]:
        tree = self.repo.folder(self.tree, folder)
        self.trace.folders.setdefault(folder, tree)
        entries = {} if tree is None else self.repo.entries(tree)
        self.trace.listings.setdefault(folder, _listing(entries))
        return entries

    def _glob(self, folder: str, parts: list[str], found: set[str]) -> None:
        head, rest = parts[0], parts[1:]
        here = f"{folder}/" if folder else ""
        if head == "**":
            for sub in self._folders_below(folder):
                if rest:
                    self._glob(sub, rest, found)
                else:
                    found.update(self._files_in(sub))
            return
        if not _GLOB_CHARS & set(head):
            path = here + head
            if rest:
                self._glob(path, rest, found)
            elif self._blob_id(path) is not None:
                found.add(path)
            return
        for name, (mode, _) in sorted(self._list(folder).items()):
            if name.startswith(".") and not head.startswith("."):
                continue
            if not fnmatch.fnmatchcase(name, head):
                continue
            if rest:
                if stat.S_ISDIR(mode):
                    self._glob(here + name, rest, found)
            elif self._blob_id(here + name) is not None:
                found.add(here + name)

    def _folders_below(self, folder: str) -> Iterator[str]:
        """``folder`` and every folder under it whose name does not start with '.'."""
        stack = [folder]
        while stack:
            current = stack.pop()
            yield current
            prefix = f"{current}/" if current else ""
            for name, (mode, _) in sorted(self._list(current).items(), reverse=True):
                if stat.S_ISDIR(mode) and not name.startswith("."):
                    stack.append(prefix + name)

    def _files_in(self, folder: str) -> list[str]:
        prefix = f"{folder}/" if folder else ""
        return [
            prefix + name
            for name, (mode, _) in self._list(folder).items()
            if not name.startswith(".")
            and self._blob_id(prefix + name) is not None
            and not stat.S_ISDIR(mode)
        ]
