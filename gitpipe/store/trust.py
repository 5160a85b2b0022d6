"""An object's stamp: what lets gitpipe use a stored object without reading it.

A linked output or added file (``link = "hardlink" | "symlink"``) *is* its object, and
the read-only mode stops neither root nor a `chmod u+w`: a write through that name
writes into the store.  So each object is stamped as it enters the store, with its
inode, size and mtime as they were when its bytes were known to hash to its name,
kept on the object itself as an extended attribute (it stays with the inode, under
every name; it is written before the object is renamed into place).  Every write
changes the mtime, whoever makes it, through whichever name.  The ctime is not kept:
every new hard link, `chmod` and the stamp itself change it.

    object about to be used ──stat + stamp──> same (and not racy) ──> used, unread
                                      └─ differs, or none ──> hashed
                                             ├ its name ──> stamped again, used
                                             └ not ──> corrupt: the caller
                                                       quarantines it

A stamp taken within the timestamp tick of the file's mtime is not trusted (a write
later in that tick may have left the mtime as it was), unless it was taken while the
file had no name but gitpipe's own temporary one (:data:`PRIVATE`).  Where the file
system holds no extended attributes nothing is stamped and objects are trusted as
before stamps: verified as they enter the store, when pulled, by `gitpipe cache
verify`.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat as statmod
import time
from dataclasses import dataclass
from pathlib import Path

from gitpipe.core.hashing import Digest, digest_file
from gitpipe.core.stamps import racy, stamp_of

#: the extended attribute that holds an object's stamp:
#: b"1 <inode> <size> <mtime_ns> <taken_ns>"
STAMP_ATTR = "user.gitpipe.stamp"
#: the time of a stamp taken while the file had no name but gitpipe's own temporary
#: one (a copy being made): no write can have come within its timestamp tick
PRIVATE = 0
#: what the kernel says of an extended attribute the file system cannot hold
_NO_XATTR = (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS)
_READ_ONLY = 0o444


@dataclass(frozen=True, slots=True)
class SetAside:
    """A corrupt object found as its bytes were stored again: where it went in the
    quarantine (None: moved away already), and the file whose bytes replace it."""

    digest: Digest
    where: Path | None
    source: str


def stamp(file: str | int, st: os.stat_result, *, taken_ns: int) -> None:
    """Record ``st`` (taken at ``taken_ns``, or :data:`PRIVATE`-ly: the stat of a
    file whose bytes were known to hash to its name then) on the file itself.  Nothing
    where the file system holds no extended attributes, or refuses (the object is
    hashed when it is used then)."""
    with contextlib.suppress(OSError):
        os.setxattr(file, STAMP_ATTR, _stamp_bytes(st, taken_ns=taken_ns))


def check(
    path: Path, digest: Digest, *, stamped: bool = True, seen: os.stat_result | None = None
) -> bool | None:
    """Whether the object at ``path`` may be used: None when no file is there; with
    ``stamped`` (it will be used unread), :func:`intact`.  ``seen``: the stat of a
    workspace file whose bytes are known to be ``digest``'s (a stat cache vouches for
    them): when it is the object itself (a hard link), nothing more is asked."""
    taken_ns = time.time_ns()
    try:
        st = os.stat(path)
    except OSError:
        return None
    if not statmod.S_ISREG(st.st_mode):
        return None
    if not stamped or (seen is not None and (seen.st_ino, seen.st_dev) == (st.st_ino, st.st_dev)):
        return True
    return intact(path, digest, st, taken_ns=taken_ns)


def intact(path: Path, digest: Digest, st: os.stat_result, *, taken_ns: int) -> bool:
    """Whether the object at ``path`` (``st`` its stat, taken at ``taken_ns``) may be
    used unread: its stamp is ``st``'s, or else its bytes, hashed now, are still
    ``digest``'s (then it is stamped again).  False: corrupt.  True where the file
    system holds no stamps, or the object cannot be read here (`gitpipe cache verify`
    says so)."""
    try:
        recorded = os.getxattr(path, STAMP_ATTR)
    except OSError as exc:
        if exc.errno in _NO_XATTR:
            return True
        recorded = b""  # none (ENODATA), or unreadable: hash it
    if _trusted(recorded, st):
        return True
    try:
        actual = digest_file(path)
        after = os.stat(path)
    except OSError:
        return True
    if actual != digest:
        return False
    if stamp_of(after) == stamp_of(st):  # stamped as it was before it was read
        with contextlib.suppress(OSError):
            _restamp(path, st, taken_ns=taken_ns)
    return True


def _stamp_bytes(st: os.stat_result, *, taken_ns: int) -> bytes:
    return b"1 %d %d %d %d" % (st.st_ino, st.st_size, st.st_mtime_ns, taken_ns)


def _trusted(recorded: bytes, st: os.stat_result) -> bool:
    """Whether a recorded stamp is ``st``'s (inode, size, mtime) and was not taken
    within the timestamp tick of that mtime: one taken :data:`PRIVATE`-ly, or well
    after it."""
    prefix = b"1 %d %d %d " % (st.st_ino, st.st_size, st.st_mtime_ns)
    if not recorded.startswith(prefix):
        return False
    try:
        taken_ns = int(recorded[len(prefix) :])
    except ValueError:
        return False
    return taken_ns == PRIVATE or not racy(st.st_mtime_ns, taken_ns)


def _restamp(path: Path, st: os.stat_result, *, taken_ns: int) -> None:
    """Stamp an object in place: made writable by its owner for the moment it takes
    (an extended attribute needs write access), read-only again after."""
    recorded = _stamp_bytes(st, taken_ns=taken_ns)
    try:
        os.setxattr(path, STAMP_ATTR, recorded)
        return
    except PermissionError:
        pass
    os.chmod(path, _READ_ONLY | 0o200)
    try:
        os.setxattr(path, STAMP_ATTR, recorded)
    finally:
        os.chmod(path, _READ_ONLY)
