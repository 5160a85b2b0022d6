"""A path's stamp, and the racy window within which a stamp is not trusted.

A stamp is what `stat` says of a path: (inode, mtime_ns, ctime_ns, size, mode), or
None where there is nothing.  While a file's stamp is the same, so are its bytes:
the caches that answer without reading a file (the parsed pipeline and lock, the
status snapshot, the lock writer's marker) key on it.  The ctime, which no program
can set, tells a file rewritten with its old size and mtime (`cp -p`, tar) from the
file it was.

As in Git, a stamp taken within the timestamp tick of the file's last change may
miss a later change in that same tick: :func:`racy` tells such a stamp, and the
caches do not trust it.  The stat cache (gitpipe.identity.statcache) keys its
digests on the stat fields too, and follows the same rule.
"""

from __future__ import annotations

import os

#: (inode, mtime_ns, ctime_ns, size, mode), or None for a path that does not exist
Stamp = tuple[int, int, int, int, int] | None

#: A file stamped (stat-ed, then hashed or parsed) soon after its mtime may change
#: again within the same timestamp tick, and keep its stamp.  Stamps in whole
#: seconds (FAT, ext3, HFS+, some file servers) tick every second or two ...
RACY_NS = 2_000_000_000
#: ... sub-second stamps (ext4, XFS, btrfs, APFS, NTFS) every few milliseconds at
#: most; 50 ms also covers the clock skew of a synchronised file server.
FINE_RACY_NS = 50_000_000


def stamp_of(st: os.stat_result | None) -> Stamp:
    if st is None:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_mode)


def stamp(path: str | os.PathLike[str]) -> Stamp:
    """The stamp of ``path`` now (through links); None when it cannot be seen."""
    try:
        return stamp_of(os.stat(path))
    except OSError:
        return None


def racy(mtime_ns: int, taken_ns: int) -> bool:
    """Whether a stamp with this mtime, taken at ``taken_ns`` (before the file was
    read), may miss a later change: such a stamp is checked again next time."""
    window = RACY_NS if mtime_ns % 1_000_000_000 == 0 else FINE_RACY_NS
    return taken_ns - mtime_ns < window
