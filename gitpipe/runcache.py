"""The run cache: step key -> every result recorded for it (output digests, metrics,
duration).

Most training steps write different bytes each time they run, so one key may have
several results. Each is kept, under its own name, and the newest serves the key::

    results/b3/<2 hex>/<62 hex of the key>/<64 hex of the result's id>.json
    results/b3/<2 hex>/<62 hex of the key>.json      (older gitpipe: read only)

A result's **id** is the digest of what it restores: each output's path, digest,
folder flag and executable bit (:func:`result_id`), so that it can be computed from
a lock entry as well. Results are written only after every object they name is in
the store, and are checked on read: a result naming a missing object, an unsafe
path or a malformed digest, or held under another id than its content's, is treated
as absent, never trusted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitpipe import atomic
from gitpipe.errors import StoreError
from gitpipe.hashing import Digest, DigestError, canonical, digest_record, safe_relpath
from gitpipe.store import Store

#: the schema new results are written with
RESULT_SCHEMA = "gitpipe.result/2"
#: the schemas read: /1 (one result per key, no "created") and /2
READABLE_SCHEMAS = frozenset({"gitpipe.result/1", RESULT_SCHEMA})
_SUFFIX = ".json"


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A stored output: its digest, whether it is a folder, its size and exec bit."""

    digest: Digest
    is_dir: bool = False
    size: int = 0
    executable: bool = False


def result_id(outs: Mapping[str, OutRecord]) -> Digest:
    """A result's identity: the digest of its outputs' paths, digests, folder flags and
    executable bits (not sizes, so that a lock entry gives it too)."""
    return digest_record(
        sorted([path, str(out.digest), out.is_dir, out.executable] for path, out in outs.items())
    )


@dataclass(frozen=True, slots=True)
class Result:
    outs: Mapping[str, OutRecord]
    metrics: Mapping[str, Any] = field(default_factory=dict)
    duration: float = 0.0
    exit_code: int = 0
    step: str = ""
    #: the key record (`KeyRecord.as_record()`) the key is the digest of, so that
    #: `gitpipe why` can say how a step now differs from a stored result
    record: Mapping[str, Any] = field(default_factory=dict)
    #: when it was recorded (wall clock, seconds); 0.0 for results of older gitpipe.
    #: `RunCache.put` stamps a result that has none
    created: float = 0.0

    @property
    def id(self) -> Digest:
        return result_id(self.outs)

    def to_json(self, key: Digest) -> bytes:
        return canonical(
            {
                "schema": RESULT_SCHEMA,
                "key": str(key),
                "step": self.step,
                "outs": {
                    path: {
                        "digest": str(out.digest),
                        "dir": out.is_dir,
                        "size": out.size,
                        "exec": out.executable,
                    }
                    for path, out in sorted(self.outs.items())
                },
                "metrics": dict(self.metrics),
                "duration": round(self.duration, 6),
                "exit_code": self.exit_code,
                "record": dict(self.record),
                "created": round(self.created, 6),
            }
        )


def parse_result(data: bytes, key: Digest, *, result_id: Digest | None = None) -> Result:
    """Parse and validate a result record; raises ValueError when it is not trustworthy.

    With ``result_id`` (the id its name gives), a record whose outputs have another
    id is refused too: a name cannot vouch for content it does not match."""
    record = json.loads(data)
    if record.get("schema") not in READABLE_SCHEMAS or record.get("key") != str(key):
        raise ValueError("not a result for this key")
    outs = {}
    for path, out in record["outs"].items():
        if not safe_relpath(path):
            raise ValueError(f"unsafe output path {path!r}")
        outs[path] = OutRecord(
            Digest.parse(out["digest"]), bool(out["dir"]), int(out["size"]), bool(out["exec"])
        )
    result = Result(
        outs=outs,
        metrics=record.get("metrics", {}),
        duration=float(record.get("duration", 0.0)),
        exit_code=int(record.get("exit_code", 0)),
        step=str(record.get("step", "")),
        record=record.get("record") or {},
        created=_created(record.get("created")),
    )
    if result_id is not None and result.id != result_id:
        raise ValueError(f"its outputs are those of result {result.id}, not {result_id}")
    return result


def _created(value: object) -> float:
    """A record's creation time, 0.0 when it has none or not a plain number."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return 0.0
    number = float(value)
    return number if math.isfinite(number) and number > 0 else 0.0


def _newest_first(result: Result) -> tuple[float, str]:
    return (-result.created, str(result.id))


class RunCache:
    """Results stored beside the objects: each key's folder holds one file per result,
    ``results/b3/<2 hex>/<62 hex>/<result id hex>.json``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.root = store.root / "results"

    # -- names --------------------------------------------------------------------

    def path_of(self, key: Digest, result_id: Digest | None = None) -> Path:
        """The file of one result of ``key``; without ``result_id``, the folder that
        holds every result of the key (the legacy file of an older gitpipe is that
        folder's name plus ``.json``)."""
        Digest.parse(str(key))  # never build a path from unvalidated text
        folder = self.root / key.algorithm / key.hex[:2] / key.hex[2:]
        if result_id is None:
            return folder
        Digest.parse(str(result_id))
        return folder / f"{result_id.hex}{_SUFFIX}"

    def _legacy(self, key: Digest) -> Path:
        folder = self.path_of(key)
        return folder.with_name(folder.name + _SUFFIX)

    # -- reading ------------------------------------------------------------------

    def _read(self, path: Path, key: Digest, result_id: Digest | None) -> Result | None:
        """The valid result in ``path`` (whose name says ``result_id``), else None."""
        try:
            return parse_result(path.read_bytes(), key, result_id=result_id)
        except (OSError, ValueError, KeyError, TypeError, AttributeError, DigestError):
            return None

    def _valid(self, key: Digest) -> list[Result]:
        """Every valid result of ``key``, complete or not, newest first; one copy each."""
        found: dict[Digest, Result] = {}
        for rid, path in self._files(key):
            result = self._read(path, key, rid)
            if result is None:
                continue
            held = found.get(result.id)
            if held is None or result.created > held.created:
                found[result.id] = result
        return sorted(found.values(), key=_newest_first)

    def _files(self, key: Digest) -> Iterator[tuple[Digest | None, Path]]:
        """(id its name says, path) of each result file of ``key``; None: the legacy one."""
        folder = self.path_of(key)
        names: list[str] = []
        with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(folder) as it:
            names = sorted(entry.name for entry in it)
        for name in names:
            rid = _named_id(name)
            if rid is not None:
                yield rid, folder / name
        legacy = self._legacy(key)
        if legacy.is_file():
            yield None, legacy

    def results(self, key: Digest) -> list[Result]:
        """Every complete, valid result of ``key``, newest first (then by id)."""
        return [result for result in self._valid(key) if self.complete(result)]

    def get(self, key: Digest) -> Result | None:
        """The newest result of a key whose objects are all in the store."""
        for result in self._valid(key):
            if self.complete(result):
                return result
        return None

    def get_exact(self, key: Digest, result_id: Digest) -> Result | None:
        """The result of ``key`` with this id, if it is valid and complete."""
        result = self._read(self.path_of(key, result_id), key, result_id)
        if result is None:  # an older gitpipe's one result of the key may be it
            result = self._read(self._legacy(key), key, result_id)
        if result is None or not self.complete(result):
            return None
        return result

    def complete(self, result: Result) -> bool:
        store = self.store
        return all(
            store.has_tree(out.digest) if out.is_dir else out.digest in store
            for out in result.outs.values()
        )

    # -- listing, for verify and gc ---------------------------------------------

    def stored(self) -> Iterator[tuple[Digest, Digest | None, Path]]:
        """(key, result id, path) of every result file, valid or not; the id is None
        for an older gitpipe's one-result-per-key file."""
        base = self.root / "b3"
        if not base.is_dir():
            return
        for prefix in sorted(base.iterdir()):
            if not prefix.is_dir():
                continue
            for item in sorted(prefix.iterdir()):
                stem = item.name.removesuffix(_SUFFIX) if item.is_file() else item.name
                try:
                    key = Digest.parse(f"b3:{prefix.name}{stem}")
                except DigestError:
                    continue
                if item.is_file():
                    if item.name.endswith(_SUFFIX):
                        yield key, None, item
                    continue
                for entry in sorted(item.iterdir()):
                    rid = _named_id(entry.name)
                    if rid is not None and entry.is_file():
                        yield key, rid, entry

    def stored_keys(self) -> Iterator[Digest]:
        """Every key with a stored result file (valid or not), once each."""
        last: Digest | None = None
        for key, _rid, _path in self.stored():
            if key != last:
                yield key
                last = key

    # -- writing ------------------------------------------------------------------

    def put(self, key: Digest, result: Result) -> None:
        """Record a result of ``key`` (stamped with the time now unless it has one).
        A result with the id of one already there replaces it, so that it is the
        newest again."""
        if not self.complete(result):  # publish last: objects first, then the result
            raise StoreError("a result must not name objects missing from the store")
        if not result.created:
            result = dataclasses.replace(result, created=time.time())
        # renamed into place, not fsync-ed: no more than the objects it names (whose
        # loss a reader detects), and a fsync a step doubles a small step's bookkeeping
        atomic.write_bytes(
            self.path_of(key, result.id), result.to_json(key), mode=0o444, sync=False
        )

    def discard(self, key: Digest, result_id: Digest | None = None) -> None:
        """Remove one result of ``key`` (an older gitpipe's file too when it holds that
        result), or, without ``result_id``, every result of the key."""
        folder = self.path_of(key)
        if result_id is None:
            paths = [path for _rid, path in self._files(key)]
        else:
            paths = [self.path_of(key, result_id)]
            legacy = self._legacy(key)
            held = self._read(legacy, key, result_id)
            if held is not None:
                paths.append(legacy)
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.chmod(0o644)
                path.unlink()
        with contextlib.suppress(OSError):  # not empty (another result, a write going on)
            folder.rmdir()


def _named_id(name: str) -> Digest | None:
    """The result id a file name in a key's folder says; None for anything else."""
    if name.startswith(".") or not name.endswith(_SUFFIX):
        return None
    try:
        return Digest.parse(f"b3:{name.removesuffix(_SUFFIX)}")
    except DigestError:
        return None
