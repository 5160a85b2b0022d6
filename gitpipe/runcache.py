"""The run cache: step key -> result record (output digests, metrics, duration).

Results are written only after every object they name is in the store, and are
checked on read: a result naming a missing object, an unsafe path or a malformed
digest is treated as absent, never trusted.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitpipe import atomic
from gitpipe.errors import StoreError
from gitpipe.hashing import Digest, DigestError, canonical, safe_relpath
from gitpipe.store import Store

RESULT_SCHEMA = "gitpipe.result/1"


@dataclass(frozen=True, slots=True)
class OutRecord:
    """A stored output: its digest, whether it is a folder, its size and exec bit."""

    digest: Digest
    is_dir: bool = False
    size: int = 0
    executable: bool = False


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
            }
        )


def parse_result(data: bytes, key: Digest) -> Result:
    """Parse and validate a result record; raises ValueError when it is not trustworthy."""
    record = json.loads(data)
    if record.get("schema") != RESULT_SCHEMA or record.get("key") != str(key):
        raise ValueError("not a result for this key")
    outs = {}
    for path, out in record["outs"].items():
        if not safe_relpath(path):
            raise ValueError(f"unsafe output path {path!r}")
        outs[path] = OutRecord(
            Digest.parse(out["digest"]), bool(out["dir"]), int(out["size"]), bool(out["exec"])
        )
    return Result(
        outs=outs,
        metrics=record.get("metrics", {}),
        duration=float(record.get("duration", 0.0)),
        exit_code=int(record.get("exit_code", 0)),
        step=str(record.get("step", "")),
        record=record.get("record") or {},
    )


class RunCache:
    """Results stored beside the objects: ``results/b3/<2 hex>/<62 hex>.json``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.root = store.root / "results"

    def path_of(self, key: Digest) -> Path:
        return self._path(key)

    def _path(self, key: Digest) -> Path:
        Digest.parse(str(key))
        return self.root / key.algorithm / key.hex[:2] / f"{key.hex[2:]}.json"

    def get(self, key: Digest) -> Result | None:
        """The result for a key, only when every object it names is in the store."""
        try:
            result = parse_result(self._path(key).read_bytes(), key)
        except (OSError, ValueError, KeyError, TypeError, DigestError):
            return None
        if not self.complete(result):
            return None
        return result

    def complete(self, result: Result) -> bool:
        store = self.store
        return all(
            store.has_tree(out.digest) if out.is_dir else out.digest in store
            for out in result.outs.values()
        )

    def stored_keys(self) -> Iterator[Digest]:
        """Every key with a stored result (valid or not)."""
        base = self.root / "b3"
        if not base.is_dir():
            return
        for prefix in sorted(base.iterdir()):
            for item in sorted(prefix.glob("*.json")):
                with contextlib.suppress(DigestError):
                    yield Digest.parse(f"b3:{prefix.name}{item.stem}")

    def discard(self, key: Digest) -> None:
        path = self._path(key)
        with contextlib.suppress(FileNotFoundError):
            path.chmod(0o644)
            path.unlink()

    def put(self, key: Digest, result: Result) -> None:
        if not self.complete(result):  # publish last: objects first, then the result
            raise StoreError("a result must not name objects missing from the store")
        # renamed into place, not fsync-ed: no more than the objects it names (whose
        # loss a reader detects), and a fsync a step doubles a small step's bookkeeping
        atomic.write_bytes(self._path(key), result.to_json(key), mode=0o444, sync=False)
