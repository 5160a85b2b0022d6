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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import blake3

ALGORITHM = "b3"
_HEX_LEN = 64
_HEX = frozenset("0123456789abcdef")
#: files at least this large are hashed through mmap with blake3's threads
MMAP_THRESHOLD = 4 * 1024 * 1024
_CHUNK = 1024 * 1024


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


def digest_file(path: str | os.PathLike[str], *, size: int | None = None) -> Digest:
    """Digest a file's bytes: large files through mmap with blake3's own threads."""
    if size is None:
        size = os.stat(path).st_size
    if size >= MMAP_THRESHOLD:
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        hasher.update_mmap(os.fspath(path))
        return Digest(hasher.hexdigest())
    hasher = blake3.blake3()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            hasher.update(chunk)
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
    record = json.loads(data)
    if not isinstance(record, dict) or record.get("kind") != "tree":
        raise DigestError("not a directory manifest")
    entries = []
    for path, digest, size, executable in record["entries"]:
        entries.append(ManifestEntry(path, Digest.parse(digest), int(size), bool(executable)))
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


def canonical(record: object) -> bytes:
    """The one canonical encoding: compact JSON, sorted keys, UTF-8."""
    return json.dumps(
        _plain(record), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def digest_record(record: object) -> Digest:
    return digest_bytes(canonical(record))


def safe_relpath(path: str) -> bool:
    """A normalised relative path that stays inside the folder it is relative to."""
    if not path or path.startswith("/") or "\\" in path or "\0" in path:
        return False
    norm = posixpath.normpath(path)
    return norm == path and norm != "." and norm != ".." and not norm.startswith("../")
