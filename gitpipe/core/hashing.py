"""Digests: blake3 over bytes, files and directory manifests, and the canonical encoder.

Every digest names its algorithm (``b3:<hex>``).  The canonical encoder is the one
place that turns records into bytes for hashing, so that the same record gives the
same digest in any clone, on any machine, with any Python >= 3.10.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import posixpath
import queue
import re
import stat as statmod
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3

from gitpipe.core.errors import PathError

ALGORITHM = "b3"
_HEX_LEN = 64
_HEX = frozenset("0123456789abcdef")
_DIGEST = re.compile(f"{ALGORITHM}:([0-9a-f]{{{_HEX_LEN}}})")
_CHUNK = 1024 * 1024
#: the two buffers of a large file (larger ones hash no faster here, and cost memory)
_BLOCK = 4 * 1024 * 1024
#: files at least this large are read by a second thread while blake3 hashes the
#: block read before it (two buffers take turns); smaller ones in one thread
LARGE = 2 * _BLOCK


class DigestError(ValueError):
    """A string is not a valid ``b3:<hex>`` digest."""


@dataclass(frozen=True, order=True, slots=True)
class Digest:
    """A content digest: the algorithm name and a lowercase hex string."""

    hex: str
    algorithm: str = ALGORITHM

    @classmethod
    def parse(cls, text: str) -> Digest:
        """Parse ``b3:<hex>``, validating the hex so that it is safe to use in a path."""
        match = _DIGEST.fullmatch(text) if type(text) is str else None
        if match is not None:  # the usual case, in one step: locks hold thousands
            return cls(match[1])
        algorithm, sep, hexpart = text.partition(":")
        if not sep or algorithm != ALGORITHM:
            raise DigestError(f"not a {ALGORITHM} digest: {text!r}")
        if len(hexpart) != _HEX_LEN or not _HEX.issuperset(hexpart):
            raise DigestError(f"not a valid digest: {text!r}")
        return cls(hexpart)

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"


def digest_bytes(data: bytes) -> Digest:
    return Digest(blake3.blake3(data).hexdigest())


def file_kind(mode: int) -> str:
    """What a path that is not a regular file is, in words, from its ``st_mode``."""
    if statmod.S_ISDIR(mode):
        return "a folder"
    if statmod.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if statmod.S_ISCHR(mode):
        return "a character device"
    if statmod.S_ISBLK(mode):
        return "a block device"
    if statmod.S_ISSOCK(mode):
        return "a socket"
    if statmod.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


def not_a_file(path: str | os.PathLike[str], mode: int) -> PathError:
    """The error for a path gitpipe would read as a file and that is none."""
    return PathError(
        f"{os.fspath(path)} is {file_kind(mode)}, not a regular file; gitpipe reads only "
        "files and folders"
    )


def digest_file(path: str | os.PathLike[str], *, size: int | None = None) -> Digest:
    """Digest a regular file's bytes, read through fixed buffers.

    The file is never mapped into memory: a mapped file that another process truncates
    kills the process that reads it with SIGBUS.  A FIFO, device or socket is refused
    before it is opened (it would block or never end), and a file whose size is not
    ``size`` (when given: the size its caller saw) or changes while it is read is
    refused too (:class:`PathError`); the system's own refusals are ``OSError``."""
    st = os.stat(path)
    if not statmod.S_ISREG(st.st_mode):
        raise not_a_file(path, st.st_mode)
    # O_NONBLOCK: should a FIFO take the file's place after the stat, opening it does
    # not wait for a writer, and the fstat below refuses it
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not statmod.S_ISREG(st.st_mode):
            raise not_a_file(path, st.st_mode)
        if size is not None and st.st_size != size:
            raise _changed(path)
        if st.st_size >= LARGE:
            hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
            read = _read_alongside(fd, hasher)
        else:
            hasher = blake3.blake3()
            read = _read(fd, hasher)
    finally:
        os.close(fd)
    if read != st.st_size:  # truncated or grown while it was read
        raise _changed(path)
    return Digest(hasher.hexdigest())


class RunningDigest:
    """A digest taken piece by piece, as the bytes go by (a copy that is hashed while
    it is written reads its bytes once).  Pieces are hashed in the order given; blake3
    lets go of the GIL while it hashes one, so another thread may copy meanwhile."""

    __slots__ = ("_hasher",)

    def __init__(self) -> None:
        self._hasher = blake3.blake3()

    def update(self, data: bytes | bytearray | memoryview) -> None:
        self._hasher.update(data)

    def digest(self) -> Digest:
        return Digest(self._hasher.hexdigest())


def _changed(path: str | os.PathLike[str]) -> PathError:
    return PathError(f"{os.fspath(path)} changed while it was being read; run again")


def _read(fd: int, hasher: blake3.blake3) -> int:
    """Hash the rest of an open file through one buffer; the number of bytes read."""
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    total = 0
    while count := os.readv(fd, [buffer]):
        hasher.update(view[:count])
        total += count
    return total


def _read_alongside(fd: int, hasher: blake3.blake3) -> int:
    """Hash the rest of an open file as :func:`_read` does, with a second thread
    reading the next block while blake3 hashes this one (the copy out of the page
    cache costs about as much as the hashing, so the two overlap)."""
    empty: queue.SimpleQueue[bytearray | None] = queue.SimpleQueue()
    full: queue.SimpleQueue[tuple[bytearray, int] | BaseException] = queue.SimpleQueue()
    for _ in range(2):
        empty.put(bytearray(_BLOCK))

    def reader() -> None:
        try:
            while (buffer := empty.get()) is not None:
                count = os.readv(fd, [buffer])
                full.put((buffer, count))
                if not count:
                    return
        except BaseException as exc:  # handed over: the hashing thread raises it
            full.put(exc)

    thread = threading.Thread(target=reader, name="gitpipe-digest", daemon=True)
    thread.start()
    total = 0
    try:
        while True:
            item = full.get()
            if isinstance(item, BaseException):
                raise item
            buffer, count = item
            if not count:
                return total
            hasher.update(memoryview(buffer)[:count])
            total += count
            empty.put(buffer)
    finally:
        empty.put(None)  # the reader stops at its next block, if it has not yet
        thread.join()  # before the caller closes the file it reads


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One file of a directory: its path relative to the directory, digest, size, exec bit."""

    path: str
    digest: Digest
    size: int
    executable: bool


def manifest_bytes(entries: Iterable[ManifestEntry]) -> bytes:
    """The canonical manifest of a directory, sorted by relative path."""
    rows = [
        [entry.path, str(entry.digest), entry.size, entry.executable]
        for entry in sorted(entries, key=lambda item: item.path)
    ]
    return canonical({"kind": "tree", "schema": 1, "entries": rows})


def parse_manifest(data: bytes) -> list[ManifestEntry]:
    """The entries of a directory manifest; :class:`DigestError` (a ValueError) for
    bytes that are not one, whatever they hold: each entry is a path (a string), a
    digest, a size (a whole number, not negative) and an executable bit, nothing else
    (a manifest may come from a remote, and its digest vouches only for its bytes)."""
    try:
        record = json.loads(data)
    except RecursionError:
        raise DigestError("not a directory manifest: nested too deep") from None
    rows = record.get("entries") if isinstance(record, dict) else None
    if not isinstance(record, dict) or record.get("kind") != "tree" or type(rows) is not list:
        raise DigestError("not a directory manifest")
    entries = []
    for row in rows:
        if type(row) is not list or len(row) != 4:
            raise DigestError(f"not a directory manifest entry: {row!r:.80}")
        path, digest, size, executable = row
        if (
            type(path) is not str
            or type(digest) is not str
            or type(size) is not int
            or size < 0
            or executable not in (True, False)
        ):
            raise DigestError(f"not a directory manifest entry: {row!r:.80}")
        entries.append(ManifestEntry(path, Digest.parse(digest), size, bool(executable)))
    return entries


def _plain(value: object) -> object:
    """Convert a record to JSON-ready values, refusing anything ambiguous."""
    # exact types first: keys hash records of hundreds of steps, so this is a hot path
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value
    if kind is dict and isinstance(value, dict):
        return {
            key if type(key) is str else str(key): item if type(item) is str else _plain(item)
            for key, item in value.items()
        }
    if (kind is list or kind is tuple) and isinstance(value, (list, tuple)):
        return [item if type(item) is str else _plain(item) for item in value]
    if isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return {"$float": repr(value)}
        return value
    if isinstance(value, Digest):
        return str(value)
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return {"$time": value.isoformat()}
    raise TypeError(f"cannot encode {type(value).__name__} canonically")


def _refuse(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _compact(*, allow_nan: bool) -> Callable[[object], str]:
    """`json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    allow_nan=allow_nan)`, with its C encoder made once, not once per call as
    `json.dumps` and `JSONEncoder.encode` make it: keys are encoded by the ten
    thousand.  Without the check for circular values, which would take the same time
    again: the values encoded here are trees gitpipe builds.  Where the C encoder is
    missing, or is made or writes otherwise than this Python's json does, that json."""
    slow = json.JSONEncoder(
        sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=allow_nan
    ).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    try:
        # (markers, default, string encoder, indent, separators, sort_keys, skipkeys, allow_nan)
        fast = make(
            None, _refuse, json.encoder.encode_basestring, None, ":", ",", True, False, allow_nan
        )
    except TypeError:  # None, or another signature than CPython's of 3.10 to 3.13
        return slow
    probe = {"b": [1, 2.5, None, True, "é\n"], "a": {"z": {}, "y": -0.0}}
    if "".join(fast(probe, 0)) != slow(probe):
        return slow
    return lambda value: "".join(fast(value, 0))


_CANONICAL = _compact(allow_nan=True)


def canonical(record: object) -> bytes:
    """The one canonical encoding: compact JSON, sorted keys, UTF-8."""
    return _CANONICAL(_plain(record)).encode("utf-8")


#: the same encoding, refusing what :func:`_plain` would have to rewrite: a value of
#: another type than JSON's (a date, a digest, a path) and a float that is not finite
_AS_IS = _compact(allow_nan=False)


def canonical_as_is(record: Mapping[str, object]) -> bytes:
    """:func:`canonical` of a record gitpipe builds itself, whose keys are strings at
    every level (a step's key record, a part of the fingerprint): encoded at once,
    without :func:`_plain`'s walk (a third of a key's cost), and the same bytes. A
    value :func:`_plain` would rewrite makes the encoder refuse, and the record is
    then encoded by :func:`canonical`.  (A key that is not a string would be written
    by JSON's rules, not ``str``'s: the reason this is for such records only.)"""
    try:
        return _AS_IS(record).encode("utf-8")
    except (TypeError, ValueError):
        return canonical(record)


def digest_record(record: object) -> Digest:
    return digest_bytes(canonical(record))


#: rows of a table :func:`digest_record_with_table` encodes before it hashes them
_ROWS = 256


def digest_record_with_table(
    record: Mapping[str, object],
    name: str,
    keys: Iterable[str],
    value_of: Callable[[str], object],
    *,
    encode: Callable[[Any], bytes] = canonical,
) -> Digest:
    """``digest_record({**record, name: {key: value_of(key) for key in keys}})``, the
    same digest, without holding that table or its encoding whole: each value is made,
    encoded and hashed in turn.  The fingerprint of a 100,000-step pipeline is such a
    record, and held whole, with its plain copy and its JSON, it was a few hundred MB
    at the end of a `repro`.  ``record``'s keys and ``keys`` are strings."""
    running = RunningDigest()
    head = dict(record)
    running.update(b"{")
    for i, key in enumerate(sorted([*head, name])):  # as json.dumps(sort_keys=True)
        running.update(b"," + _key(key) if i else _key(key))
        if key != name:
            running.update(canonical(head[key]))
            continue
        running.update(b"{")
        rows: list[bytes] = []  # hashed a few hundred at a time, not one by one
        comma = b""  # before each batch but the first
        for row in sorted(keys):
            rows.append(_key(row) + encode(value_of(row)))
            if len(rows) == _ROWS:
                running.update(comma + b",".join(rows))
                comma = b","
                rows.clear()
        if rows:
            running.update(comma + b",".join(rows))
        running.update(b"}")
    running.update(b"}")
    return running.digest()


def _key(key: str) -> bytes:
    """A key of a canonical record, with the colon after it."""
    if type(key) is not str:
        raise TypeError(f"cannot encode a key of type {type(key).__name__} canonically")
    return json.encoder.encode_basestring(key).encode("utf-8") + b":"  # as json.dumps


def safe_relpath(path: str) -> bool:
    """A normalised relative path that stays inside the folder it is relative to."""
    if not path or path.startswith("/") or "\\" in path or "\0" in path:
        return False
    norm = posixpath.normpath(path)
    return norm == path and norm != "." and norm != ".." and not norm.startswith("../")
