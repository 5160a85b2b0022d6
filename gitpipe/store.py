"""The store: a content-addressed collection of file bytes and folder manifests.

Objects live at ``objects/b3/<2 hex>/<62 hex>``, are read-only, and are written
to a temporary file in the store and renamed into place, so a crash never leaves
a half-written object under a real name.  Digests are validated as hex before they
become paths (:meth:`Digest.parse`).  Adding an object that exists is a no-op.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import stat as statmod
import tempfile
from collections.abc import Iterable
from pathlib import Path

from gitpipe.errors import StoreError
from gitpipe.hashing import (
    Digest,
    DigestError,
    ManifestEntry,
    digest_bytes,
    digest_file,
    manifest_bytes,
    parse_manifest,
    safe_relpath,
)

_FICLONE = 0x40049409  # linux/fs.h: share the source's extents (reflink)
_READ_ONLY = 0o444


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


def place(source: Path, target: Path, link: str = "copy") -> bool:
    """Put ``source``'s bytes at ``target``, which must not exist (a path in a fresh
    folder of gitpipe's own): a link to it where ``link`` asks and the file system
    allows, else a copy.  True when ``target`` is a link (as read-only as ``source``)."""
    if _link(source, str(target), link):
        return True
    clone_or_copy(source, target)
    return False


def stage(source: Path, folder: Path, name: str, link: str = "copy") -> tuple[str, bool]:
    """A new temporary file in ``folder``, named after ``name``, holding ``source``'s
    bytes: a link to it where ``link`` asks and the file system allows, else a copy.
    Returns its path, to be renamed into place or removed, and whether it is a link."""
    while link != "copy":
        tmp = os.path.join(folder, f".{name}.{os.urandom(6).hex()}.tmp")
        try:
            if _link(source, tmp, link):
                return tmp, True
        except FileExistsError:
            continue  # the name is taken: draw another
        break
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.", suffix=".tmp")
    os.close(fd)
    try:
        clone_or_copy(source, tmp)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return tmp, False


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
    the kernel (``copy_file_range``) as far as it goes, the rest through a buffer."""
    with open(src, "rb") as source, open(_open_empty(dst), "wb") as target:
        try:
            fcntl.ioctl(target.fileno(), _FICLONE, source.fileno())
            return
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise
        _copy_in_kernel(source.fileno(), target.fileno())
        shutil.copyfileobj(source, target, length=1024 * 1024)  # what is left, if any


def _open_empty(path: str | os.PathLike[str]) -> int:
    """Open a file for writing, emptied, without truncating one that is empty already
    (such as a fresh temporary file): on ext4, truncating makes closing the file wait
    for its new bytes to be written out, which doubles the time of a large copy."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o666)
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
        self.objects = root / "objects"
        self.tmp = root / "tmp"

    def object_path(self, digest: Digest) -> Path:
        Digest.parse(str(digest))  # never build a path from unvalidated text
        return self.objects / digest.algorithm / digest.hex[:2] / digest.hex[2:]

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, Digest) and self.object_path(digest).is_file()

    def _tempfile(self) -> str:
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix="in-")
        os.close(fd)
        return name

    def _publish(self, tmp: str, digest: Digest) -> None:
        target = self.object_path(digest)
        os.chmod(tmp, _READ_ONLY)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)

    def adopt(self, tmp: str, digest: Digest) -> None:
        """Rename a file already in ``tmp/`` into place, if its bytes hash to ``digest``
        (what comes from a remote is verified before it becomes visible)."""
        if digest_file(tmp) != digest:
            raise StoreError(f"{tmp} does not hash to {digest}")
        self._publish(tmp, digest)

    def add_bytes(self, data: bytes) -> Digest:
        digest = digest_bytes(data)
        if digest in self:
            return digest
        tmp = self._tempfile()
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
            self._publish(tmp, digest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return digest

    def add_file(self, path: str | os.PathLike[str], digest: Digest, *, link: bool = False) -> None:
        """Copy a workspace file in under its (already known) digest; with ``link``,
        link it in where the file system allows (the workspace file then *is* the
        object, read-only like it, and nothing is copied).

        The copy is hashed again before it is published, so a file that changed
        between hashing and copying never enters the store under a wrong name.
        """
        if digest in self:
            return
        self.tmp.mkdir(parents=True, exist_ok=True)
        st = os.lstat(path)
        # only a regular file with no other name is linked in: never a symbolic link
        # (the store would hold the link), nor an input's second name (`ln in out`)
        own = link and statmod.S_ISREG(st.st_mode) and st.st_nlink == 1
        tmp, _ = stage(Path(path), self.tmp, "in", "hardlink" if own else "copy")
        try:
            actual = digest_file(tmp)
            if actual != digest:
                raise StoreError(f"{os.fspath(path)} changed while it was being stored; run again")
            self._publish(tmp, digest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

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
        try:
            return self.object_path(digest).read_bytes()
        except OSError as exc:
            raise StoreError(f"object {digest} is missing from the store at {self.root}") from exc

    def manifest(self, digest: Digest) -> list[ManifestEntry]:
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

    def restore_file(
        self,
        digest: Digest,
        dest: Path,
        *,
        executable: bool = False,
        link: str = "copy",
        scratch: Path | None = None,
    ) -> None:
        """Materialise a file object at ``dest`` atomically: by reflink, else copy, or
        as a link to the object where ``link`` asks (``"hardlink"``, ``"symlink"``) and
        the file system allows (an executable file is always copied).  The new file is
        made in ``scratch`` (a folder of gitpipe's own) when that is on ``dest``'s file
        system, so that a crash leaves nothing beside ``dest``; else beside it."""
        source = self.object_path(digest)
        if not source.is_file():
            raise StoreError(f"object {digest} for {dest} is missing from the store")
        dest.parent.mkdir(parents=True, exist_ok=True)
        folder = _scratch_for(dest, scratch)
        tmp, linked = stage(source, folder, dest.name, "copy" if executable else link)
        try:
            if not linked:
                os.chmod(tmp, 0o755 if executable else 0o644)
            elif link == "hardlink" and os.stat(tmp).st_mode & 0o7777 != _READ_ONLY:
                # the object itself was chmodded (by root, through a linked output):
                # objects are read-only and never executable
                os.chmod(tmp, _READ_ONLY)
            remove(dest)
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def restore_tree(
        self, digest: Digest, dest: Path, *, link: str = "copy", scratch: Path | None = None
    ) -> None:
        """Materialise a folder: built in ``scratch`` (as :meth:`restore_file` says),
        then swapped into place; each file as :meth:`restore_file` would."""
        entries = self.manifest(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        folder = _scratch_for(dest, scratch)
        staging = Path(tempfile.mkdtemp(dir=folder, prefix=f".{dest.name}.", suffix=".tmp"))
        try:
            os.chmod(staging, 0o755)  # a folder as `mkdir` makes it, not mkdtemp's 0700
            for entry in entries:
                if not safe_relpath(entry.path):
                    raise StoreError(f"folder {digest} names an unsafe path {entry.path!r}")
                target = staging / entry.path
                target.parent.mkdir(parents=True, exist_ok=True)
                source = self.object_path(entry.digest)
                if not source.is_file():
                    raise StoreError(f"object {entry.digest} for {dest / entry.path} is missing")
                if not place(source, target, "copy" if entry.executable else link):
                    os.chmod(target, 0o755 if entry.executable else 0o644)
            remove(dest)
            os.replace(staging, dest)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def discard(self, digest: Digest) -> None:
        """Remove an object (a corrupt one, or one `gc` found unreferenced)."""
        path = self.object_path(digest)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # not made writable first: a workspace link may share its inode

    def iter_objects(self) -> Iterable[Digest]:
        base = self.objects / "b3"
        if not base.is_dir():
            return
        for prefix in sorted(base.iterdir()):
            for item in sorted(prefix.iterdir()):
                with contextlib.suppress(DigestError):
                    yield Digest.parse(f"b3:{prefix.name}{item.name}")


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
