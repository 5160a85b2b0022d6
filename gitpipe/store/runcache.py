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

Results are claims. :func:`parse_result` accepts only the shape gitpipe writes (a
table of outputs with typed fields, metrics that are a table of finite scalars and
tables, a key record of bounded depth, at most :data:`MAX_RESULT_BYTES`) and raises
``ValueError`` with one short line for anything else. With a secret
(``GITPIPE_RESULT_KEY``, see :class:`Signer`) each result written carries an
HMAC-SHA256 of its canonical JSON, and a remote's results must carry a valid one.
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

from gitpipe.core import atomic
from gitpipe.core.console import first_of
from gitpipe.core.errors import StoreError
from gitpipe.core.hashing import (
    ALGORITHM,
    Digest,
    DigestError,
    canonical,
    digest_record,
    safe_relpath,
)
from gitpipe.store.naming import (
    RESULTS,
    legacy_result_name,
    parse_legacy_result_name,
    parse_result_name,
    result_name,
    results_prefix,
)
from gitpipe.store.objects import Store

#: the schema new results are written with
RESULT_SCHEMA = "gitpipe.result/2"
#: the schemas read: /1 (one result per key, no "created") and /2
READABLE_SCHEMAS = frozenset({"gitpipe.result/1", RESULT_SCHEMA})
#: the environment variable holding the secret results are signed with
KEY_VAR = "GITPIPE_RESULT_KEY"
#: how a signature names its algorithm
SIGNATURE_PREFIX = "hmac-sha256:"
#: a result file larger than this is refused unread (gitpipe's own are kilobytes)
MAX_RESULT_BYTES = 16 * 1024 * 1024
#: how deeply a result's tables and lists may nest (gitpipe's own: under ten levels)
MAX_DEPTH = 64


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
class Signer:
    """Signs results with a secret and checks their signatures: HMAC-SHA256 over a
    result's canonical JSON without its ``signature`` field.

    The secret never leaves this object: not in its repr, not in any message. A
    signer without a secret (:data:`UNSIGNED`) signs nothing and accepts any result.
    Messages never show the signature a record should have had either: it would be
    a valid signature for a forger's record."""

    secret: bytes = field(default=b"", repr=False)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Signer:
        """The signer ``GITPIPE_RESULT_KEY`` gives; unsigned when it is unset or empty."""
        return cls(environ.get(KEY_VAR, "").encode("utf-8"))

    @property
    def active(self) -> bool:
        return bool(self.secret)

    def sign(self, body: bytes) -> str:
        """The signature of a result's canonical JSON (without its signature)."""
        import hashlib  # here: OpenSSL's loading is for clones that sign
        import hmac

        return SIGNATURE_PREFIX + hmac.new(self.secret, body, hashlib.sha256).hexdigest()

    def check(self, record: Mapping[str, Any]) -> None:
        """Raise ValueError unless a parsed result record carries this signer's valid
        signature (nothing to check without a secret)."""
        if not self.active:
            return
        signature = record.get("signature")
        if not signature:
            raise ValueError(f"it is not signed, and {KEY_VAR} is set")
        body = canonical({name: value for name, value in record.items() if name != "signature"})
        import hmac

        if not isinstance(signature, str) or not hmac.compare_digest(
            signature.encode("utf-8", "replace"), self.sign(body).encode("ascii")
        ):
            raise ValueError(f"its signature does not match {KEY_VAR}")


#: the signer of a clone without GITPIPE_RESULT_KEY
UNSIGNED = Signer()


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
    #: `RunCache.put` dates a result that has none
    created: float = 0.0
    #: the HMAC it was read with ("" for none): see :class:`Signer`
    signature: str = ""

    @property
    def id(self) -> Digest:
        return result_id(self.outs)

    def to_json(self, key: Digest, *, signer: Signer = UNSIGNED) -> bytes:
        """The result's canonical JSON: signed by ``signer`` when it has a secret, else
        with the signature it was read with (if any)."""
        body = self._body(key)
        signature = signer.sign(canonical(body)) if signer.active else self.signature
        if signature:
            body["signature"] = signature
        return canonical(body)

    def _body(self, key: Digest) -> dict[str, Any]:
        return {
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


def parse_result(
    data: bytes,
    key: Digest,
    *,
    result_id: Digest | None = None,
    signer: Signer = UNSIGNED,
) -> Result:
    """Parse and validate a result record; raises ValueError, with one short line,
    when it is not trustworthy: not gitpipe's shape (see the module's docstring), not
    a result of ``key``, or (``signer`` with a secret) not signed with that secret.

    With ``result_id`` (the id its name gives), a record whose outputs have another
    id is refused too: a name cannot vouch for content it does not match."""
    if len(data) > MAX_RESULT_BYTES:
        raise ValueError(f"it is {len(data)} bytes, more than a result may be ({MAX_RESULT_BYTES})")
    record = _load(data)
    if not isinstance(record, dict):
        raise ValueError("it is not a JSON table")
    if record.get("schema") not in READABLE_SCHEMAS or record.get("key") != str(key):
        raise ValueError("not a result for this key")
    outs = _outs(record.get("outs"))
    metrics = record.get("metrics", {})
    if not _is_metrics(metrics, MAX_DEPTH):
        raise ValueError("its metrics are not a table of numbers, strings, booleans and tables")
    duration = record.get("duration", 0.0)
    if not _is_number(duration) or duration < 0:
        raise ValueError("its duration is not a number of seconds")
    exit_code = record.get("exit_code", 0)
    if type(exit_code) is not int:
        raise ValueError("its exit code is not a whole number")
    step = record.get("step", "")
    if not isinstance(step, str):
        raise ValueError("its step is not a name")
    key_record = record.get("record") or {}
    if not isinstance(key_record, dict):
        raise ValueError("its key record is not a table")
    signature = record.get("signature", "")
    if not isinstance(signature, str):
        raise ValueError("its signature is not a string")
    signer.check(record)
    result = Result(
        outs=outs,
        metrics=metrics,
        duration=float(duration),
        exit_code=exit_code,
        step=step,
        record=key_record,
        created=_created(record.get("created")),
        signature=signature,
    )
    if result_id is not None and result.id != result_id:
        raise ValueError(f"its outputs are those of result {result.id}, not {result_id}")
    return result


def declared_mismatch(key: Digest, result: Result) -> str:
    """How a result's outputs differ from those its own key record declares ("" when
    they do not, or when it holds no record whose digest is ``key``: then nothing
    without the pipeline says what its step declares).

    The key is the digest of the record, so a record that digests to it tells the
    step's declared outputs (``outs`` and ``metrics``, folders with a trailing ``/``)
    as surely as the pipeline file does."""
    record = result.record
    if not record or _record_digest(record) != key:
        return ""
    outs, metrics = record.get("outs", []), record.get("metrics", [])
    if not isinstance(outs, list) or not isinstance(metrics, list):
        return ""
    declared = outs + metrics
    if not all(isinstance(path, str) for path in declared):
        return ""
    kinds = {path.removesuffix("/"): path.endswith("/") for path in declared}
    extra = sorted(path for path in result.outs if path not in kinds)
    missing = sorted(path for path in kinds if path not in result.outs)
    wrong = sorted(
        path + ("/" if kinds[path] else "")
        for path, out in result.outs.items()
        if path in kinds and out.is_dir != kinds[path]
    )
    parts = []
    if extra:
        parts.append(f"names outputs its step did not declare: {_listed(extra)}")
    if missing:
        parts.append(f"lacks declared outputs: {_listed(missing)}")
    if wrong:
        parts.append(f"has the wrong kind (file or folder) for: {_listed(wrong)}")
    return "; ".join(parts)


def _record_digest(record: Mapping[str, Any]) -> Digest | None:
    try:
        return digest_record(record)
    except (TypeError, ValueError):
        return None


def _listed(paths: list[str]) -> str:
    return first_of([_shown(path) for path in paths], 5)


def _shown(text: str, limit: int = 80) -> str:
    """A value from a result as a message shows it: quoted, on one line, not too long."""
    quoted = repr(text)
    return quoted if len(quoted) <= limit else quoted[: limit - 4] + "...'"


def _load(data: bytes) -> Any:
    """JSON with finite numbers only, nested at most :data:`MAX_DEPTH` levels."""
    try:
        value = json.loads(
            data, parse_constant=_refuse_constant, parse_float=_finite, parse_int=_whole
        )
    except RecursionError:
        raise ValueError(f"it nests deeper than {MAX_DEPTH} levels") from None
    except UnicodeDecodeError:
        raise ValueError("it is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"it is not JSON ({exc.msg} at line {exc.lineno})") from None
    if _depth_exceeds(value, MAX_DEPTH):
        raise ValueError(f"it nests deeper than {MAX_DEPTH} levels")
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"it holds the number {name}, which is not finite")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"it holds a number too large to be finite ({text[:20]})")
    return number


def _whole(text: str) -> int:
    if len(text) > 100:  # Python refuses to convert more than 4,300 digits anyway
        raise ValueError(f"it holds a whole number of {len(text)} digits")
    return int(text)


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether tables and lists nest more than ``limit`` levels (without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _is_number(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]


def _is_metrics(value: object, depth: int) -> bool:
    """A table whose values are finite numbers, strings, booleans or such tables."""
    if not isinstance(value, dict) or depth <= 0:
        return False
    return all(
        isinstance(item, (str, bool)) or _is_number(item) or _is_metrics(item, depth - 1)
        for item in value.values()
    )


def _outs(value: object) -> dict[str, OutRecord]:
    """A result's outputs: a table of path -> {digest, dir, size, exec}, each typed."""
    if not isinstance(value, dict):
        raise ValueError("its outputs are not a table")
    outs = {}
    for path, out in value.items():
        if not safe_relpath(path):
            raise ValueError(f"unsafe output path {_shown(path)}")
        if not isinstance(out, dict):
            raise ValueError(f"output {_shown(path)} is not a table")
        digest, is_dir, size = out.get("digest"), out.get("dir"), out.get("size")
        executable = out.get("exec")
        if not isinstance(digest, str):
            raise ValueError(f"output {_shown(path)} has no digest")
        try:
            parsed = Digest.parse(digest)
        except DigestError:
            raise ValueError(f"not a valid digest for output {_shown(path)}") from None
        if type(is_dir) is not bool or type(executable) is not bool:
            raise ValueError(f"output {_shown(path)} does not say with true or false what it is")
        if type(size) is not int or size < 0:
            raise ValueError(f"output {_shown(path)} has no size in bytes")
        outs[path] = OutRecord(parsed, is_dir, size, executable)
    return outs


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
    ``results/b3/<2 hex>/<62 hex>/<result id hex>.json`` (:mod:`gitpipe.store.naming`).

    ``signer`` signs each result written (with ``GITPIPE_RESULT_KEY``); results read
    here are not checked against it: the local store is the clone's own, and what
    comes from a remote is checked on its way in (:mod:`gitpipe.store.remote`)."""

    def __init__(self, store: Store, *, signer: Signer = UNSIGNED) -> None:
        self.store = store
        self.root = store.root / RESULTS
        self.signer = signer

    # -- names --------------------------------------------------------------------

    def path_of(self, key: Digest, result_id: Digest | None = None) -> Path:
        """The file of one result of ``key``; without ``result_id``, the folder that
        holds every result of the key (the legacy file of an older gitpipe is that
        folder's name plus ``.json``)."""
        if result_id is None:
            return self.store.root / results_prefix(key)
        return self.store.root / result_name(key, result_id)

    def _legacy(self, key: Digest) -> Path:
        return self.store.root / legacy_result_name(key)

    def _name(self, path: Path) -> str:
        """A path in the run cache as the store names it (``results/b3/...``)."""
        return path.relative_to(self.store.root).as_posix()

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
        folder, prefix = self.path_of(key), results_prefix(key)
        names: list[str] = []
        with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(folder) as it:
            names = sorted(entry.name for entry in it)
        for name in names:
            named = parse_result_name(prefix + name)
            if named is not None:
                yield named[1], folder / name
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
        base = self.root / ALGORITHM
        if not base.is_dir():
            return
        for prefix in sorted(base.iterdir()):
            if not prefix.is_dir():
                continue
            for item in sorted(prefix.iterdir()):
                if item.is_file():
                    key = parse_legacy_result_name(self._name(item))
                    if key is not None:
                        yield key, None, item
                    continue
                if not item.is_dir():
                    continue
                for entry in sorted(item.iterdir()):
                    named = parse_result_name(self._name(entry))
                    if named is not None and entry.is_file():
                        yield named[0], named[1], entry

    def stored_keys(self) -> Iterator[Digest]:
        """Every key with a stored result file (valid or not), once each."""
        last: Digest | None = None
        for key, _rid, _path in self.stored():
            if key != last:
                yield key
                last = key

    # -- writing ------------------------------------------------------------------

    def put(self, key: Digest, result: Result) -> None:
        """Record a result of ``key`` (dated now unless it has a date).
        A result with the id of one already there replaces it, so that it is the
        newest again. It is signed when the run cache has a signer with a secret; else
        it keeps the signature it came with, which a new time would void."""
        if not self.complete(result):  # publish last: objects first, then the result
            raise StoreError("a result must not name objects missing from the store")
        if not result.created:
            result = dataclasses.replace(result, created=time.time(), signature="")
        # renamed into place, not fsync-ed: no more than the objects it names (whose
        # loss a reader detects), and a fsync a step doubles a small step's bookkeeping
        atomic.write_bytes(
            self.path_of(key, result.id),
            result.to_json(key, signer=self.signer),
            mode=0o444,
            sync=False,
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
