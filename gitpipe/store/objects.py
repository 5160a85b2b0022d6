"""The store: a content-addressed collection of file bytes and folder manifests.

Objects live at ``objects/b3/<2 hex>/<62 hex>`` (:mod:`gitpipe.store.naming`), are
read-only, and are written to a temporary file in the store and renamed into place,
so a crash never leaves a half-written object under a real name.  Digests are
validated as hex before they become paths (:meth:`Digest.parse`).  Adding an object
that exists is a no-op.

Nothing leaves the store unverified: a copy is hashed as it is made, from the copy
itself, and compared with the object's name before it is renamed into place; a
manifest or other object read whole is hashed as it is read.  An object whose bytes
do not hash to its name raises :class:`CorruptObject` (nothing of it reaches the
workspace) and can be moved to ``quarantine/`` (:meth:`Store.quarantine`).  Links
(``link = "hardlink" | "symlink"``) are the object itself and are not read when
made: an object is stamped as it enters the store and its stamp is compared before
it is used (gitpipe/store/trust.py); `gitpipe cache verify` reads every object.

A workspace file taken in whose digest is not known yet (:meth:`Store.ingest`) is
read once, the copy hashed as above, and stamped (inode, size, mtime, ctime) before
its bytes are read and after: a file that changed meanwhile is refused before
anything of it is renamed into place.

    object ──copy_hashed──> temporary file ──digest = name?──> renamed over the target
                 │ reflink: the clone, hashed          └─ no: removed, CorruptObject
                 │ small: read whole, hashed, written
                 └ large: the kernel copies a piece while a second thread hashes the
                   piece before it, read back from the copy
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import mmap
import os
import queue
import shutil
import stat as statmod
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from gitpipe.core import atomic
from gitpipe.core.errors import CorruptObject, PathError, StoreError
from gitpipe.core.hashing import (
    ALGORITHM,
    Digest,
    ManifestEntry,
    RunningDigest,
    digest_bytes,
    digest_file,
    manifest_bytes,
    parse_manifest,
    safe_relpath,
)
from gitpipe.core.stamps import Stamp, stamp_of
from gitpipe.store import trust
from gitpipe.store.naming import OBJECTS, object_name, parse_object_name
from gitpipe.store.trust import SetAside

_FICLONE = 0x40049409  # linux/fs.h: share the source's extents (reflink)
_READ_ONLY = 0o444
#: where corrupt objects are moved to, under the store's root
QUARANTINE = "quarantine"
#: files smaller than this are copied by reading them whole, hashing and writing them
_SMALL = 4 * 1024 * 1024
#: a larger file is copied this much at a time, while the piece before is hashed
_PIECE = 8 * 1024 * 1024
#: how many copied pieces may wait to be hashed (they are still in the page cache)
_AHEAD = 4


#: what the kernel says when a file system cannot clone or copy between these files
_UNSUPPORTED = (
    errno.EOPNOTSUPP,
    errno.ENOTTY,
    errno.EXDEV,
    errno.EINVAL,
    errno.ENOSYS,
    errno.EPERM,
)
#: ... or cannot link them (another device, too many links, no links at all)
_NO_LINK = (*_UNSUPPORTED, errno.EMLINK, errno.EACCES)


def _link(source: Path, target: str, link: str) -> bool:
    """Make ``target`` a hard or symbolic link to ``source``, as ``link`` says; False
    where the file system cannot (or ``link`` is "copy").  ``FileExistsError`` when
    ``target`` exists."""
    try:
        if link == "hardlink":
            os.link(source, target, follow_symlinks=False)
            return True
        if link == "symlink":
            os.symlink(os.path.abspath(source), target)
            return True
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
    return False


def place(source: Path, target: Path, link: str = "copy") -> Digest | None:
    """Put ``source``'s bytes at ``target``, which must not exist (a path in a fresh
    folder of gitpipe's own): a link to it where ``link`` asks and the file system
    allows, else a copy.  Returns the digest of the copy (:func:`copy_hashed`), or
    None when ``target`` is a link (as read-only as ``source``)."""
    if _link(source, str(target), link):
        return None
    return copy_hashed(source, target)


def stage(source: Path, folder: Path, name: str, link: str = "copy") -> tuple[str, Digest | None]:
    """A new temporary file in ``folder``, named after ``name``, holding ``source``'s
    bytes: a link to it where ``link`` asks and the file system allows, else a copy.
    Returns its path, to be renamed into place or removed, and the digest of the copy
    (:func:`copy_hashed`), or None when it is a link."""
    name = atomic.temp_stem(name)
    while link != "copy":
        tmp = os.path.join(folder, f".{name}.{os.urandom(6).hex()}.tmp")
        try:
            if _link(source, tmp, link):
                return tmp, None
        except FileExistsError:
            continue  # the name is taken: draw another
        break
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    try:
        copied = copy_hashed(source, tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp, copied


def settle(staged: str, dest: Path) -> None:
    """Put a prepared file or folder (:meth:`Store.prepare_file`,
    :meth:`Store.prepare_tree`) in place of ``dest``: what is there goes, the new one
    is renamed over it; on failure the prepared one is thrown away."""
    try:
        remove(dest)
        os.replace(staged, dest)
    except BaseException:
        unstage(staged)
        raise


def unstage(staged: str) -> None:
    """Throw away a prepared file or folder that will not be put in place."""
    if os.path.isdir(staged) and not os.path.islink(staged):
        shutil.rmtree(staged, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            os.unlink(staged)


def _scratch_for(dest: Path, scratch: Path | None) -> Path:
    """Where to build what is renamed to ``dest``: ``scratch`` when it is on the same
    file system as ``dest``'s folder (a rename cannot cross file systems), else that
    folder."""
    if scratch is not None:
        with contextlib.suppress(OSError):
            scratch.mkdir(parents=True, exist_ok=True)
            if os.stat(scratch).st_dev == os.stat(dest.parent).st_dev:
                return scratch
    return dest.parent


def clone_or_copy(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """Copy a file's bytes, by reflink where the file system offers it, else inside
    the kernel (``copy_file_range``) as far as it goes, the rest through a buffer;
    unhashed (what a remote copies is hashed where it arrives): see :func:`copy_hashed`."""
    with open(src, "rb") as source, open(_open_empty(dst), "wb") as target:
        try:
            fcntl.ioctl(target.fileno(), _FICLONE, source.fileno())
            return
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise
        _copy_in_kernel(source.fileno(), target.fileno())
        shutil.copyfileobj(source, target, length=1024 * 1024)  # what is left, if any


def copy_hashed(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Digest:
    """Copy a file's bytes to ``dst`` and return the digest of the copy, reading the
    bytes once: by reflink, and then the clone is hashed; else a small file is read
    whole, hashed and written; else the kernel copies it (``copy_file_range``, the
    rest through a buffer where it stops) a piece at a time while a second thread
    hashes each piece as soon as it is copied, read back from the copy while it is
    still in the page cache.  What is hashed is always what ``dst`` holds."""
    with (
        open(src, "rb", buffering=0) as source,
        open(_open_empty(dst, os.O_RDWR), "r+b", buffering=0) as target,
    ):
        try:
            fcntl.ioctl(target.fileno(), _FICLONE, source.fileno())
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise
        else:
            return digest_file(dst)
        if os.fstat(source.fileno()).st_size < _SMALL:
            data = source.readall()
            running = RunningDigest()
            running.update(data)
            view = memoryview(data)
            written = 0
            while written < len(data):
                written += target.write(view[written:]) or 0
            return running.digest()
        return _copy_large(source.fileno(), target.fileno())


def _copy_large(source: int, target: int) -> Digest:
    """Copy from ``source`` to ``target`` (both at offset 0) piece by piece, hashing
    each copied piece from ``target`` (mapped, so its pages are not copied again) in a
    second thread, at most :data:`_AHEAD` pieces behind; the digest of what
    ``target`` holds."""
    running = RunningDigest()
    pieces: queue.Queue[tuple[int, int] | None] = queue.Queue(maxsize=_AHEAD)
    failed: list[BaseException] = []

    def hash_copied() -> None:
        while (piece := pieces.get()) is not None:
            if failed:
                continue  # drain, so that the copying thread is never held
            offset, length = piece
            start = offset - offset % mmap.ALLOCATIONGRANULARITY  # where a map may begin
            try:
                with mmap.mmap(
                    target, length + offset - start, access=mmap.ACCESS_READ, offset=start
                ) as mapped:
                    running.update(memoryview(mapped)[offset - start :])
            except BaseException as exc:  # handed to the copying thread
                failed.append(exc)

    worker = threading.Thread(target=hash_copied, name="gitpipe-copy-hash", daemon=True)
    worker.start()
    try:
        offset = 0
        for length in _copy_pieces(source, target):
            pieces.put((offset, length))
            offset += length
            if failed:
                break
    finally:
        pieces.put(None)
        worker.join()
    if failed:
        raise failed[0]
    return running.digest()


def _copy_pieces(source: int, target: int) -> Iterator[int]:
    """Copy from the current offsets to the end, yielding the length of each piece
    copied: inside the kernel (``copy_file_range``) while it can (some file systems
    stop short, saying 0, or refuse), then through a buffer."""
    copy = getattr(os, "copy_file_range", None)
    while copy is not None:
        try:
            n = copy(source, target, _PIECE)
        except OSError as exc:
            if exc.errno in _UNSUPPORTED:
                break
            raise
        if n == 0:
            break
        yield n
    buffer = bytearray(_PIECE)
    view = memoryview(buffer)
    while n := os.readv(source, [buffer]):
        written = 0
        while written < n:
            written += os.write(target, view[written:n])
        yield n


def _unchanged(path: str | os.PathLike[str], before: Stamp) -> None:
    """Refuse a file whose stamp is not ``before`` any more (:class:`PathError`): it
    changed, or another file took its name, while its bytes were being read."""
    try:
        after = stamp_of(os.stat(path))
    except OSError:
        after = None
    if after != before:
        raise PathError(f"{os.fspath(path)} changed while it was being stored; run again")


def _open_empty(path: str | os.PathLike[str], mode: int = os.O_WRONLY) -> int:
    """Open a file for writing (``mode``: also reading, with ``os.O_RDWR``), emptied,
    without truncating one that is empty already (such as a fresh temporary file): on
    ext4, truncating makes closing the file wait for its new bytes to be written out,
    which doubles the time of a large copy."""
    fd = os.open(path, mode | os.O_CREAT, 0o666)
    try:
        if os.fstat(fd).st_size:
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _copy_in_kernel(source: int, target: int) -> None:
    """Copy from the current offsets with ``copy_file_range`` (advancing both) until
    the end, or until the kernel or file system cannot (some pseudo file systems stop
    short, saying 0): the caller copies what is left from there."""
    copy = getattr(os, "copy_file_range", None)
    if copy is None:
        return
    while True:
        try:
            if copy(source, target, 1 << 30) == 0:
                return
        except OSError as exc:
            if exc.errno in _UNSUPPORTED:
                return
            raise


class Store:
    """The content-addressed store of one or more workspaces."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / OBJECTS
        self.tmp = root / "tmp"
        self._tmp_made = False  # tmp/ made by this object (ingest makes it once)
        #: corrupt objects :meth:`keeps` moved to the quarantine, and where to (None:
        #: gone already): the caller tells the user, naming them
        self.set_aside: list[SetAside] = []

    def object_path(self, digest: Digest) -> Path:
        return self.root / object_name(digest)

    def object_file(self, digest: Digest) -> str:  # for loops over thousands: no Path each
        return os.path.join(self.root, object_name(digest))

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, Digest) and os.path.isfile(self.object_file(digest))

    def _publish(
        self,
        tmp: str,
        digest: Digest,
        *,
        before: os.stat_result | None = None,
        before_ns: int = 0,
    ) -> None:
        """Rename a verified file into place as ``digest``'s object, stamped first
        (:func:`gitpipe.store.trust.stamp`): with ``before``, the stat taken (at
        ``before_ns``) before its bytes were hashed (a file linked in, which others may
        write to meanwhile), else as it is now (a copy only gitpipe writes)."""
        target = self.object_path(digest)
        if before is None:  # a copy of gitpipe's own: no one else can write it meanwhile
            trust.stamp(tmp, os.stat(tmp), taken_ns=trust.PRIVATE)
        else:
            trust.stamp(tmp, before, taken_ns=before_ns)
        os.chmod(tmp, _READ_ONLY)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)

    def adopt(self, tmp: str, digest: Digest, *, hashed: Digest | None = None) -> None:
        """Rename a file already in ``tmp/`` into place, if its bytes hash to ``digest``
        (what comes from a remote is verified before it becomes visible).  ``hashed``:
        the digest the caller has just taken of those bytes, so they are read once."""
        if (hashed if hashed is not None else digest_file(tmp)) != digest:
            raise StoreError(f"{tmp} does not hash to {digest}")
        self._publish(tmp, digest)

    def add_bytes(self, data: bytes, *, hashed: Digest | None = None) -> Digest:
        """Store bytes held in memory (a folder's manifest, a member of a pack).  When
        the object is there already its bytes are compared (they are small): a corrupt
        one is moved to the quarantine and written afresh.  ``hashed``: the digest the
        caller has just taken of ``data``, so that it is hashed once."""
        digest = hashed if hashed is not None else digest_bytes(data)
        if digest in self:
            try:
                if self.object_path(digest).read_bytes() == data:
                    return digest
            except OSError:
                return digest  # unreadable here: leave it to `gitpipe cache verify`
            self.quarantine(digest)
        self._write_new(data, digest)
        return digest

    def _write_new(self, data: bytes, digest: Digest) -> None:
        """Write bytes held in memory, whose digest is known, as a new object: into a
        new file in tmp/ (made read-only as it is created), renamed into place."""
        if not self._tmp_made:
            self.tmp.mkdir(parents=True, exist_ok=True)
            self._tmp_made = True
        tmp = os.path.join(self.tmp, f"in-{os.urandom(8).hex()}")
        target = self.object_path(digest)
        try:
            # writable while it is stamped (an extended attribute needs write access),
            # read-only before anyone else can see it
            with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
                out.write(data)
                out.flush()
                trust.stamp(out.fileno(), os.fstat(out.fileno()), taken_ns=trust.PRIVATE)
                os.fchmod(out.fileno(), _READ_ONLY)
            try:
                os.replace(tmp, target)
            except FileNotFoundError:  # the first object of its shard
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def add_file(self, path: str | os.PathLike[str], digest: Digest, *, link: bool = False) -> None:
        """Copy a workspace file in under its (already known) digest; with ``link``,
        link it in where the file system allows (the workspace file then *is* the
        object, read-only like it, and nothing is copied).

        The copy is hashed again before it is published, so a file that changed
        between hashing and copying never enters the store under a wrong name.
        """
        if self.keeps(digest, source=path):
            return
        self.tmp.mkdir(parents=True, exist_ok=True)
        st = os.lstat(path)
        # only a regular file with no other name is linked in: never a symbolic link
        # (the store would hold the link), nor an input's second name (`ln in out`)
        own = link and statmod.S_ISREG(st.st_mode) and st.st_nlink == 1
        tmp, copied = stage(Path(path), self.tmp, "in", "hardlink" if own else "copy")
        try:
            before_ns = time.time_ns()
            before = os.stat(tmp) if copied is None else None  # linked: stamped before read
            actual = digest_file(tmp) if copied is None else copied  # a copy: hashed as made
            if actual != digest:
                raise StoreError(f"{os.fspath(path)} changed while it was being stored; run again")
            self._publish(tmp, digest, before=before, before_ns=before_ns)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def ingest(self, path: str | os.PathLike[str], *, link: bool = False) -> Digest:
        """Store a workspace file whose digest is not known yet, reading its bytes once,
        and return the digest: copied in and hashed as it is copied (or, reflinked and
        then hashed); with ``link``, a regular file with no other name is linked in and
        hashed, and *is* the object then (read-only like it).  Bytes the store holds
        already are not stored twice.

        What is hashed is what the store keeps, so an object always hashes to its name;
        and the file's stamp (inode, size, mtime, ctime) taken before its bytes are read
        must be its stamp after, or nothing enters the store and :class:`PathError`
        says the file changed while it was being stored: its digest is never taken for
        bytes it held only in part."""
        st = os.lstat(path)
        own = link and statmod.S_ISREG(st.st_mode) and st.st_nlink == 1
        if not own and statmod.S_ISREG(st.st_mode) and st.st_size < _SMALL:
            return self._ingest_small(path)
        self.tmp.mkdir(parents=True, exist_ok=True)
        before = stamp_of(os.stat(path))  # a symbolic link is stored as what it points to
        try:
            tmp, copied = stage(Path(path), self.tmp, "in", "hardlink" if own else "copy")
        except FileNotFoundError:  # another file took its name as it was linked (or copied)
            _unchanged(path, before)  # link(2) meets the old file unlinked: "changed"
            raise
        linked: os.stat_result | None = None
        linked_ns = 0
        try:
            if copied is None:  # linked: stamped from here on (a new link changes the ctime)
                linked_ns = time.time_ns()
                linked = os.stat(tmp)
                before = stamp_of(linked)
                digest = digest_file(tmp)
            else:
                digest = copied
            _unchanged(path, before)
            if self.keeps(digest, source=path):
                os.unlink(tmp)
            else:
                self._publish(tmp, digest, before=linked, before_ns=linked_ns)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return digest

    def _ingest_small(self, path: str | os.PathLike[str]) -> Digest:
        """:meth:`ingest` of a small file: read whole and hashed, and written to a new
        object only when the store lacks those bytes (a folder of many small files is
        mostly system calls: as few as can be)."""
        with open(path, "rb", buffering=0) as source:
            before = stamp_of(os.fstat(source.fileno()))
            data = source.readall()
        _unchanged(path, before)
        digest = digest_bytes(data)
        if not self.keeps(digest, source=path):
            self._write_new(data, digest)
        return digest

    def add_tree(
        self, folder: Path, entries: Iterable[ManifestEntry], *, link: bool = False
    ) -> Digest:
        """Store each file of a folder, then its manifest; returns the folder digest.
        ``link`` as for :meth:`add_file` (executable files are always copied: an
        object cannot carry the executable bit for one of its names only)."""
        entries = list(entries)
        for entry in entries:
            self.add_file(folder / entry.path, entry.digest, link=link and not entry.executable)
        return self.add_bytes(manifest_bytes(entries))

    def read_bytes(self, digest: Digest) -> bytes:
        """An object's bytes, verified: :class:`CorruptObject` when they do not hash
        to its name."""
        try:
            data = self.object_path(digest).read_bytes()
        except OSError as exc:
            raise StoreError(f"object {digest} is missing from the store at {self.root}") from exc
        if digest_bytes(data) != digest:
            raise CorruptObject(digest)
        return data

    def manifest(self, digest: Digest) -> list[ManifestEntry]:
        """A folder's manifest, read and verified (:meth:`read_bytes`)."""
        try:
            return parse_manifest(self.read_bytes(digest))
        except (ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"object {digest} is not a folder manifest") from exc

    def has_tree(self, digest: Digest) -> bool:
        """True when a folder's manifest and every file it lists are present."""
        if digest not in self:
            return False
        try:
            return all(entry.digest in self for entry in self.manifest(digest))
        except StoreError:
            return False

    def verify(self, digest: Digest) -> bool:
        """Re-hash an object and compare it with its name."""
        try:
            return digest_file(self.object_path(digest)) == digest
        except OSError:
            return False

    def intact(self, digest: Digest) -> bool:
        """Whether an object may be used unread (linked, or taken for a workspace file's
        bytes): :func:`gitpipe.store.trust.check`; False: corrupt, to be quarantined."""
        return trust.check(self.object_path(digest), digest) is not False

    def keeps(
        self,
        digest: Digest,
        *,
        source: str | os.PathLike[str] = "",
        seen: os.stat_result | None = None,
    ) -> bool:
        """Whether the store holds ``digest``'s bytes, :meth:`intact`: a corrupt object
        is quarantined (noted in :attr:`set_aside`, for the caller to tell), so that
        adding those bytes from ``source`` writes them afresh.  ``seen``: the stat of
        ``source``, whose bytes the caller knows (its stat cache vouches for them)."""
        found = trust.check(self.object_path(digest), digest, seen=seen)
        if found is False:
            where = self.quarantine(digest)
            self.set_aside.append(SetAside(digest, where, os.fspath(source)))
        return bool(found)

    def restore_file(
        self,
        digest: Digest,
        dest: Path,
        *,
        executable: bool = False,
        link: str = "copy",
        scratch: Path | None = None,
    ) -> None:
        """Materialise a file object at ``dest`` atomically: :meth:`prepare_file`, then
        :func:`settle`."""
        settle(
            self.prepare_file(digest, dest, executable=executable, link=link, scratch=scratch),
            dest,
        )

    def prepare_file(
        self,
        digest: Digest,
        dest: Path,
        *,
        executable: bool = False,
        link: str = "copy",
        scratch: Path | None = None,
    ) -> str:
        """A new file with an object's bytes, ready to be renamed over ``dest`` by
        :func:`settle` (or thrown away by :func:`unstage`): by reflink, else copy, or
        as a link to the object where ``link`` asks (``"hardlink"``, ``"symlink"``) and
        the file system allows (an executable file is always copied).  It is made in
        ``scratch`` (a folder of gitpipe's own) when that is on ``dest``'s file system,
        so that a crash leaves nothing beside ``dest``; else beside it.

        A copy is hashed as it is made and must hash to ``digest``, else it is removed
        and :class:`CorruptObject` raised, ``dest`` untouched.  A link is not read."""
        source = self.object_path(digest)
        found = trust.check(source, digest, stamped=link != "copy" and not executable)
        if found is None:
            raise StoreError(f"object {digest} for {dest} is missing from the store")
        if not found:  # a link is not read: never made to bytes that are not the name's
            raise CorruptObject(digest, target=str(dest))
        dest.parent.mkdir(parents=True, exist_ok=True)
        folder = _scratch_for(dest, scratch)
        tmp, copied = stage(source, folder, dest.name, "copy" if executable else link)
        try:
            if copied is not None:
                if copied != digest:
                    raise CorruptObject(digest, target=str(dest))
                os.chmod(tmp, 0o755 if executable else 0o644)
            elif link == "hardlink" and os.stat(tmp).st_mode & 0o7777 != _READ_ONLY:
                # the object itself was chmodded (by root, through a linked output):
                # objects are read-only and never executable
                os.chmod(tmp, _READ_ONLY)
        except BaseException:
            unstage(tmp)
            raise
        return tmp

    def restore_tree(
        self, digest: Digest, dest: Path, *, link: str = "copy", scratch: Path | None = None
    ) -> None:
        """Materialise a folder atomically: :meth:`prepare_tree`, then :func:`settle`."""
        settle(self.prepare_tree(digest, dest, link=link, scratch=scratch), dest)

    def prepare_tree(
        self, digest: Digest, dest: Path, *, link: str = "copy", scratch: Path | None = None
    ) -> str:
        """A new folder with a folder object's files, built in ``scratch`` (as
        :meth:`prepare_file` says), ready to be swapped in for ``dest`` by
        :func:`settle`; each file as :meth:`prepare_file` makes it, each copy verified.
        A corrupt manifest or file object raises :class:`CorruptObject` (naming it)
        before ``dest`` is touched."""
        try:
            entries = self.manifest(digest)
        except CorruptObject as exc:
            raise CorruptObject(digest, target=f"{dest}/") from exc
        dest.parent.mkdir(parents=True, exist_ok=True)
        folder = _scratch_for(dest, scratch)
        staging = Path(
            tempfile.mkdtemp(dir=folder, prefix=f".{atomic.temp_stem(dest.name)}.", suffix=".tmp")
        )
        try:
            os.chmod(staging, 0o755)  # a folder as `mkdir` makes it, not mkdtemp's 0700
            for entry in entries:
                if not safe_relpath(entry.path):
                    raise StoreError(f"folder {digest} names an unsafe path {entry.path!r}")
                target = staging / entry.path
                target.parent.mkdir(parents=True, exist_ok=True)
                source = self.object_path(entry.digest)
                linked = link != "copy" and not entry.executable
                found = trust.check(source, entry.digest, stamped=linked)
                if found is None:
                    raise StoreError(f"object {entry.digest} for {dest / entry.path} is missing")
                if not found:
                    raise CorruptObject(entry.digest, target=str(dest / entry.path))
                copied = place(source, target, "copy" if entry.executable else link)
                if copied is not None:
                    if copied != entry.digest:
                        raise CorruptObject(entry.digest, target=str(dest / entry.path))
                    os.chmod(target, 0o755 if entry.executable else 0o644)
        except BaseException:
            unstage(str(staging))
            raise
        return str(staging)

    def quarantine(self, digest: Digest) -> Path | None:
        """Move a corrupt object out of ``objects/`` to ``quarantine/b3/<64 hex>``
        (``.1``, ``.2``... when that name is taken: nothing there is ever replaced), so
        that it is never restored again, nothing of it is lost, and adding its bytes
        writes them afresh.  Returns where it went; None when it was gone already, or
        when what is there now hashes to its name: another process sharing the store
        put good bytes in its place since this one found it corrupt, and those stay."""
        source = self.object_path(digest)
        folder = self.root / QUARANTINE / digest.algorithm
        try:
            folder.mkdir(parents=True, exist_ok=True)
            return _move_aside(source, folder, digest.hex, keep=lambda p: _hashes_to(p, digest))
        except OSError as exc:
            raise StoreError(
                f"object {digest} in the store at {self.root} is corrupt and cannot be moved "
                f"to {folder} ({exc.strerror}); remove it with `gitpipe cache verify "
                "--repair` where the store is writable"
            ) from exc

    def quarantined(self) -> list[Path]:
        """The files in the quarantine, by name."""
        base = self.root / QUARANTINE
        with contextlib.suppress(OSError):
            return sorted(p for p in base.rglob("*") if p.is_file())
        return []

    def detach(self, path: Path, *, executable: bool) -> None:
        """Make a workspace file that is one of the store's objects (a hard link) a
        writable file of its own with the bytes it holds, copied beside it and renamed
        over it: not a restore, so nothing is compared with a digest."""
        tmp, _ = stage(path, path.parent, path.name)
        try:
            os.chmod(tmp, 0o755 if executable else 0o644)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def discard(self, digest: Digest) -> None:
        """Remove an object (a corrupt one, or one `gc` found unreferenced)."""
        path = self.object_path(digest)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # not made writable first: a workspace link may share its inode

    def iter_objects(self) -> Iterable[Digest]:
        base = self.objects / ALGORITHM
        for prefix in sorted(base.iterdir()) if base.is_dir() else ():
            for item in sorted(prefix.iterdir()):
                digest = parse_object_name(item.relative_to(self.root).as_posix())
                if digest is not None:
                    yield digest


def _hashes_to(path: Path, digest: Digest) -> bool:
    try:
        return digest_file(path) == digest
    except OSError:
        return False


def _move_aside(
    source: Path, folder: Path, name: str, *, keep: Callable[[Path], bool] | None = None
) -> Path | None:
    """Move ``source`` into ``folder`` as ``name`` (``name.1``, ``name.2``... when that
    is taken: no file there is ever replaced); None when ``source`` is gone, or when
    ``keep`` says the file taken (its second name, so the very file moved) may stay."""
    for n in itertools.count():
        target = folder / (name if n == 0 else f"{name}.{n}")
        try:
            os.link(source, target, follow_symlinks=False)  # fails on a taken name
        except FileExistsError:
            continue
        except FileNotFoundError:
            return None
        except OSError as exc:
            if exc.errno not in _NO_LINK or target.exists():
                raise
            if keep is not None and keep(source):
                return None
            os.rename(source, target)  # a file system without hard links
            return target
        if keep is not None and keep(target):
            target.unlink()  # the file at ``source`` now is good: it stays
            return None
        try:
            with contextlib.suppress(FileNotFoundError):
                if not os.path.samefile(source, target):
                    target.unlink()  # replaced meanwhile, by a writer that renames
                    return None
            source.unlink()
        except FileNotFoundError:
            pass
        except OSError:  # it stays where it was: the quarantine keeps no second name
            with contextlib.suppress(OSError):
                target.unlink()
            raise
        return target
    return None  # pragma: no cover (the names never run out)


def remove(path: Path) -> None:
    """Remove a file, link or folder if it exists."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if statmod.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        path.unlink()
