"""Digests of workspace paths, with a stat-keyed cache so unchanged files are not read.

A file whose (inode, mtime_ns, ctime_ns, size) matches what was recorded when it was
last hashed is not opened again (the ctime, which no program sets, tells a file
rewritten with its old size and mtime, by `cp -p` say, from the file it was).  As
in Git, an entry hashed within the racy window of the file's own mtime
(:func:`gitpipe.core.stamps.racy`) is not trusted (the file may have changed again
within the file system's timestamp tick) and is hashed once more on the next look-up.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import stat as statmod
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from gitpipe.core.errors import PathError
from gitpipe.core.hashing import (
    Digest,
    ManifestEntry,
    digest_bytes,
    digest_file,
    manifest_bytes,
    not_a_file,
)
from gitpipe.core.pathmemo import PathMemo
from gitpipe.core.snapshot import Recorder
from gitpipe.core.stamps import racy

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    inode INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    size INTEGER NOT NULL,
    hashed_ns INTEGER NOT NULL,
    digest TEXT NOT NULL
) WITHOUT ROWID
"""

_CODE_SCHEMA = """
CREATE TABLE IF NOT EXISTS code (
    digest TEXT PRIMARY KEY,
    code_digest TEXT NOT NULL,
    parses INTEGER NOT NULL,
    imports TEXT
) WITHOUT ROWID
"""

#: how a file's digest is taken: (path relative to the root, full path, its stat)
Taker = Callable[[str, str, os.stat_result], Digest]

_Row = tuple[int, int, int, int, int, str]  # inode, mtime_ns, ctime_ns, size, hashed_ns, digest
#: raw digest hex -> (normalised code digest hex, parses, imports as JSON or None)
_CodeRow = tuple[str, int, str | None]


class StatCache:
    """Stat-keyed digests kept in a small SQLite file; read whole, written on `close`."""

    def __init__(self, path: Path, *, readonly: bool = False) -> None:
        self.path = path
        self.readonly = readonly
        self._rows: dict[str, _Row] = {}
        self._dirty: dict[str, _Row] = {}
        self._code: dict[str, _CodeRow] = {}
        self._code_dirty: dict[str, _CodeRow] = {}
        if path.exists():
            try:
                with contextlib.closing(sqlite3.connect(path)) as db:
                    if db.execute(
                        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='files'"
                    ).fetchone():
                        for row in db.execute(
                            "SELECT path, inode, mtime_ns, ctime_ns, size, hashed_ns, digest "
                            "FROM files"
                        ):
                            self._rows[row[0]] = row[1:]
                    if db.execute(
                        "SELECT 1 FROM sqlite_master WHERE type='table' AND name='code'"
                    ).fetchone():
                        for row in db.execute(
                            "SELECT digest, code_digest, parses, imports FROM code"
                        ):
                            self._code[row[0]] = row[1:]
            except sqlite3.DatabaseError:
                self._rows, self._code = {}, {}  # a cache only: start again rather than fail

    def lookup(self, key: str, st: os.stat_result) -> Digest | None:
        row = self._rows.get(key)
        if row is None:
            return None
        inode, mtime_ns, ctime_ns, size, hashed_ns, digest = row
        now = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
        if (inode, mtime_ns, ctime_ns, size) != now:
            return None
        if racy(mtime_ns, hashed_ns):
            return None
        return Digest(digest)

    def record(self, key: str, st: os.stat_result, digest: Digest, hashed_ns: int) -> None:
        row = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size, hashed_ns, digest.hex)
        if self._rows.get(key) != row:
            self._rows[key] = row
            self._dirty[key] = row

    def unsettled(self) -> Iterator[tuple[str, tuple[int, int, int, int], str]]:
        """The rows this command recorded within the racy window of their file's
        mtime: (path, (inode, mtime_ns, ctime_ns, size), digest hex), one at a time
        (they may be recorded again meanwhile)."""
        for key in list(self._dirty):
            row = self._dirty[key]
            if racy(row[1], row[4]):
                yield key, row[:4], row[5]

    def code(self, digest: Digest) -> _CodeRow | None:
        """What was learnt of a code file with these bytes: its normalised digest,
        whether it parses, and its imports (JSON)."""
        return self._code.get(digest.hex)

    def record_code(self, digest: Digest, row: _CodeRow) -> None:
        if self._code.get(digest.hex) != row:
            self._code[digest.hex] = row
            self._code_dirty[digest.hex] = row

    def close(self) -> None:
        """Write what changed; failures are ignored, since this is only a cache."""
        if self.readonly or not (self._dirty or self._code_dirty):
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.closing(sqlite3.connect(self.path, timeout=30)) as db, db:
                db.execute("DROP TABLE IF EXISTS stat")  # gitpipe before ctime was kept
                db.execute(_SCHEMA)
                db.execute(_CODE_SCHEMA)
                db.executemany(
                    "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(key, *row) for key, row in self._dirty.items()],
                )
                db.executemany(
                    "INSERT OR REPLACE INTO code VALUES (?, ?, ?, ?)",
                    [(key, *row) for key, row in self._code_dirty.items()],
                )
            self._dirty.clear()
            self._code_dirty.clear()
        except (sqlite3.Error, OSError):
            pass


@dataclass(frozen=True, slots=True)
class PathState:
    """What a workspace path holds now: its digest, total size and, for files, the
    executable bit; ``is_dir`` for folders, whose digest is their manifest's."""

    digest: Digest
    size: int
    is_dir: bool
    executable: bool = False


class Hasher:
    """Digests paths under a root, consulting and filling a stat cache."""

    def __init__(self, root: Path, cache: StatCache) -> None:
        self.root = root
        self._root = os.fspath(root)  # for os.path.join: a Path per look-up costs more
        self.cache = cache
        self._memo: PathMemo[PathState | None] = PathMemo()
        #: set by `status`: every path looked at, with its stamp (gitpipe.core.snapshot)
        self.seen: Recorder | None = None

    def forget(self, relpath: str) -> None:
        """Drop memoised states at or under ``relpath`` (it was just written)."""
        self._memo.forget(relpath)  # in time proportional to what is forgotten

    def state(self, relpath: str) -> PathState | None:
        """The state of a path relative to the root, or None when it does not exist.

        :class:`PathError` when it cannot be read (a loop of symbolic links, no
        permission), or is, or holds, something other than files and folders (a FIFO,
        a device, a socket): refused by its mode, before anything is opened."""
        if relpath in self._memo:
            return self._memo[relpath]
        full = os.path.join(self._root, relpath)
        try:
            st = os.stat(full)
        except (FileNotFoundError, NotADirectoryError):
            result = None
            if self.seen is not None:
                self.seen.saw(full, None)
        except OSError as exc:
            raise PathError(f"cannot read {relpath} ({exc.strerror})") from exc
        else:
            if self.seen is not None:
                self.seen.saw(full, st)
            if statmod.S_ISDIR(st.st_mode):
                result = self._folder(relpath)
            elif statmod.S_ISREG(st.st_mode):
                digest = self._file(relpath, full, st)
                result = PathState(digest, st.st_size, False, bool(st.st_mode & 0o100))
            else:
                raise not_a_file(relpath, st.st_mode)
        self._memo[relpath] = result
        return result

    def _file(self, key: str, full: Path | str, st: os.stat_result) -> Digest:
        digest = self.cache.lookup(key, st)
        if digest is None:
            taken_ns = time.time_ns()  # as the file was stat-ed: before it is read
            try:
                digest = digest_file(full, size=st.st_size)
            except OSError as exc:
                raise PathError(f"cannot read {key} ({exc.strerror})") from exc
            self.cache.record(key, st, digest, taken_ns)
        return digest

    def settle(self) -> int:
        """Take again, by reading it, each file whose row this command took within
        the racy window, once that window has passed; return how many.

        A step's outputs are hashed as soon as the step ends, within the racy window
        of their mtime, so their rows are not trusted and the next `status` would
        read them all again.  At the end of a `repro` most of them are older than the
        window: a file whose stamp is still the one hashed is read once more, its
        stamp taken before the read, and the row is kept with that time, exactly as
        if the next look-up had read it.  A file that changed since is left to that
        look-up; so is one still within the window.  Nothing but the cache is
        written."""
        settled = 0
        for key, was, digest_hex in self.cache.unsettled():
            full = self.root / key
            try:
                st = os.stat(full)
            except OSError:
                continue
            if (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size) != was:
                continue  # changed since: its next look-up reads it
            if not statmod.S_ISREG(st.st_mode):
                continue
            taken_ns = time.time_ns()  # as the file was stat-ed: before it is read
            if racy(st.st_mtime_ns, taken_ns):
                continue  # still within the window: its next look-up reads it
            try:
                digest = digest_file(full, size=st.st_size)
            except OSError:
                continue
            self.cache.record(key, st, digest, taken_ns)
            if digest.hex != digest_hex:  # changed within the tick it was hashed in
                self.forget(key)
            settled += 1
            if os.environ.get("GITPIPE_FAULT") == "settling":  # crash-safety tests
                os.kill(os.getpid(), signal.SIGKILL)  # a row re-taken, none written
        return settled

    def learn(self, relpath: str, digest: Digest) -> None:
        """Record the digest of a file that gitpipe just made a link to the store's
        object of that digest (its bytes are known without reading them)."""
        with contextlib.suppress(OSError):
            self.cache.record(relpath, os.stat(self.root / relpath), digest, time.time_ns())

    def manifest(self, relpath: str, *, take: Taker | None = None) -> list[ManifestEntry]:
        """The files of a folder, each with its digest; sorted by relative path.
        ``take`` digests each file instead of the stat cache (`gitpipe add` stores the
        bytes as it hashes them): called with the file's path relative to the root,
        its full path and its ``stat``."""
        take = take or self._file
        entries: list[ManifestEntry] = []
        base = self.root / relpath
        stack = [""]
        while stack:
            sub = stack.pop()
            try:
                scan = os.scandir(base / sub if sub else base)
            except OSError as exc:
                where = f"{relpath}/{sub}" if sub else relpath
                raise PathError(f"cannot read {where} ({exc.strerror})") from exc
            with scan:
                for item in scan:
                    rel = f"{sub}/{item.name}" if sub else item.name
                    try:
                        st = os.stat(item.path)
                    except OSError as exc:
                        raise PathError(f"cannot read {relpath}/{rel} ({exc.strerror})") from exc
                    if self.seen is not None:
                        self.seen.saw(item.path, st)
                    if statmod.S_ISDIR(st.st_mode):
                        if item.is_symlink():
                            raise PathError(
                                f"{relpath}/{rel} is a link to a folder; gitpipe follows links "
                                "to files only"
                            )
                        stack.append(rel)
                        continue
                    if not statmod.S_ISREG(st.st_mode):
                        raise not_a_file(f"{relpath}/{rel}", st.st_mode)
                    digest = take(f"{relpath}/{rel}", item.path, st)
                    entries.append(ManifestEntry(rel, digest, st.st_size, bool(st.st_mode & 0o100)))
        entries.sort(key=lambda entry: entry.path)
        return entries

    def _folder(self, relpath: str) -> PathState:
        entries = self.manifest(relpath)
        digest = digest_bytes(manifest_bytes(entries))
        return PathState(digest, sum(entry.size for entry in entries), True)
