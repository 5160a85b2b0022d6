"""`gitpipe.lock`: what the last repro resolved, written deterministically and atomically.

The file is TOML (written with tomli-w) with sorted keys and one table per step, so
that its Git diff reads well.  Only gitpipe writes it.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitpipe.core import atomic, collector, stamps, tomlcache
from gitpipe.core.errors import LockfileError
from gitpipe.core.hashing import Digest, DigestError, digest_bytes
from gitpipe.core.redaction import redact

#: schema 2 records executable outputs (``executable``); schema 1 did not, so the
#: modes of a schema-1 lock's outputs are unknown (``LockEntry.modes`` is False)
LOCK_SCHEMA = 2
READABLE_SCHEMAS = (1, 2)
HEADER = "# Written by gitpipe after each repro; commit it, do not edit it by hand.\n"


@dataclass(frozen=True, slots=True)
class LockEntry:
    key: Digest
    cmd: tuple[str, ...]
    wdir: str
    deps: Mapping[str, Digest]
    code: Mapping[str, Digest]
    params: Mapping[str, Any]
    env: Mapping[str, str]
    outs: Mapping[str, Digest]  # folders keep their trailing "/"
    metrics: Mapping[str, Any] = field(default_factory=dict)
    #: the outputs (as written in ``outs``; files only) that are executable, so that
    #: a result's id (`gitpipe.store.runcache.result_id`) can be computed from the entry
    executable: frozenset[str] = frozenset()
    #: whether ``executable`` is known (False for a lock written before it was recorded)
    modes: bool = True
    #: each remote dep (a url) with the fingerprint its server gave (etag, size, ...);
    #: written only when the step has some, so other entries read as they always did
    urls: Mapping[str, Mapping[str, str | int]] = field(default_factory=dict)
    #: the environment the key recorded (python, packages, lockfile, tools); written
    #: only when there is some, so that `why` can name what changed in it
    environment: Mapping[str, Any] = field(default_factory=dict)

    def to_toml(self) -> dict[str, Any]:
        table: dict[str, Any] = {
            "key": str(self.key),
            "cmd": list(self.cmd),
            "wdir": self.wdir,
        }
        for name, values in (("deps", self.deps), ("code", self.code), ("outs", self.outs)):
            if values:
                table[name] = {path: str(digest) for path, digest in sorted(values.items())}
        if self.params:
            table["params"] = _sorted_deep(self.params)
        if self.env:
            table["env"] = dict(sorted(self.env.items()))
        if self.metrics:
            table["metrics"] = _sorted_deep(self.metrics)
        if self.executable:
            table["executable"] = sorted(self.executable)
        if self.urls:
            table["urls"] = _sorted_deep(self.urls)
        if self.environment:
            table["environment"] = _sorted_deep(self.environment)
        return table


@dataclass(frozen=True, slots=True)
class Lock:
    name: str = ""
    fingerprint: str = ""
    steps: Mapping[str, LockEntry] = field(default_factory=dict)
    #: the pipeline's version when the lock was written ("" outside Git); a label only
    version: str = ""

    def to_toml(self) -> dict[str, Any]:
        """The tables of the lock file: what parsing :meth:`dumps`'s text gives."""
        header = {"name": self.name} if self.name else {}
        header["fingerprint"] = self.fingerprint
        if self.version:
            header["version"] = self.version
        return {
            "gitpipe": {"schema": LOCK_SCHEMA},
            "pipeline": header,
            "steps": {name: self.steps[name].to_toml() for name in sorted(self.steps)},
        }

    def dumps(self) -> str:
        return _dumps(self.to_toml())


def _dumps(data: dict[str, Any]) -> str:
    import tomli_w  # here: reading, which most commands only do, needs no writer

    return HEADER + tomli_w.dumps(data, multiline_strings=False)


def _sorted_deep(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {key: _sorted_deep(value[key]) for key in sorted(value)}
    return value


def read(path: Path) -> Lock:
    """Read a lock file; a missing one is an empty lock."""
    return read_cached(path, cache_dir=None)[0]


def read_cached(path: Path, *, cache_dir: Path | None) -> tuple[Lock, Callable[[], None]]:
    """Read a lock file, the parsed TOML of an unchanged file from ``cache_dir`` (see
    gitpipe.core.tomlcache); the second value keeps a new parse there, for the caller to
    call once its command went well."""
    with collector.paused():  # tens of objects a step, none of them garbage
        try:
            data, keep = tomlcache.load(path, cache_dir)
        except FileNotFoundError:
            return Lock(), _nothing
        except tomlcache.TOMLDecodeError as exc:
            raise _damaged(path.name, exc) from exc
        except (OSError, UnicodeDecodeError) as exc:
            raise LockfileError(f"cannot read {path.name} ({exc})") from exc
        return from_data(data, name=path.name), keep


def _nothing() -> None:
    return None


def loads(text: str, *, name: str = "gitpipe.lock") -> Lock:
    """Parse a lock file's text (``name`` is what errors call it)."""
    try:
        data = tomlcache.loads(text)
    except tomlcache.TOMLDecodeError as exc:
        raise _damaged(name, exc) from exc
    return from_data(data, name=name)


#: the header of a table that holds metrics (or the schema): gitpipe writes each at the
#: start of a line, and no other line there starts with "[" (its arrays stay on one
#: line, its strings are never multi-line), so a table ends where the next line does
_METRICS_TABLE = re.compile(r"^\[(?:gitpipe|steps\..*\.metrics.*)\]$", re.MULTILINE)


def metrics_of(text: str, *, name: str = "gitpipe.lock") -> dict[str, Mapping[str, Any]]:
    """Each step's recorded metrics (step -> metrics file -> name -> value) from a
    lock's text, parsing only the tables that hold them and the schema: reading the
    metrics of fifty 500-step locks (`gitpipe metrics --history`) costs a scan of each,
    not fifty whole parses.  Steps without metrics are left out."""
    kept = []
    for match in _METRICS_TABLE.finditer(text):
        end = text.find("\n[", match.end())
        kept.append(text[match.start() : end + 1 if end >= 0 else len(text)])
    try:
        data = tomlcache.loads("\n".join(kept))
        schema = data.get("gitpipe", {}).get("schema")
        if schema not in READABLE_SCHEMAS:
            from_data(data, name=name)  # raises the message a whole read gives
        return {
            step: dict(body["metrics"])
            for step, body in data.get("steps", {}).items()
            if isinstance(body, Mapping) and body.get("metrics")
        }
    except tomlcache.TOMLDecodeError as exc:
        raise _damaged(name, exc) from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise _damaged(name, exc) from exc


def _damaged(name: str, exc: Exception) -> LockfileError:
    return LockfileError(
        f"{name} is damaged ({exc}); restore it with `git checkout -- {name}`, "
        "or delete it and run `gitpipe repro` (cached results are reused)"
    )


def from_data(data: Mapping[str, Any], *, name: str = "gitpipe.lock") -> Lock:
    """A lock from its parsed TOML tables."""
    try:
        schema = data.get("gitpipe", {}).get("schema")
        if schema not in READABLE_SCHEMAS:
            raise LockfileError(
                f"{name} has schema {schema!r}, this gitpipe reads schemas up to "
                f"{LOCK_SCHEMA}; "
                "upgrade gitpipe, or delete the file and run `gitpipe repro`"
            )
        header = data.get("pipeline", {})
        steps = {
            name: _entry(body, modes=schema >= 2) for name, body in data.get("steps", {}).items()
        }
    except LockfileError:
        raise
    except (DigestError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _damaged(name, exc) from exc
    return Lock(
        name=str(header.get("name", "")),
        fingerprint=str(header.get("fingerprint", "")),
        steps=steps,
        version=str(header.get("version", "")),
    )


def _entry(body: Mapping[str, Any], *, modes: bool = True) -> LockEntry:
    def digests(name: str) -> dict[str, Digest]:
        table = body.get(name)
        if table is None:  # absent: most steps have no code
            return {}
        return {path: parse(text) for path, text in table.items()}

    parse = Digest.parse
    get = body.get

    # a field most entries leave out is not gone through: a lock holds thousands
    return LockEntry(
        key=Digest.parse(body["key"]),
        cmd=tuple(body["cmd"]),
        wdir=str(get("wdir", ".")),
        deps=digests("deps"),
        code=digests("code"),
        params=dict(get("params", ())),
        env=dict(get("env", ())),
        outs=digests("outs"),
        metrics=dict(get("metrics", ())),
        executable=_paths(body["executable"]) if "executable" in body else frozenset(),
        modes=modes,
        urls=_urls(body["urls"]) if "urls" in body else {},
        environment=_environment(body["environment"]) if "environment" in body else {},
    )


def _environment(value: object) -> dict[str, Any]:
    """The environment a key recorded (absent in entries of steps without one)."""
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a table for environment, not {value!r}")
    return {str(k): dict(v) if isinstance(v, Mapping) else v for k, v in value.items()}


def _urls(value: object) -> dict[str, dict[str, str | int]]:
    """The remote deps' fingerprints from the lock (absent in most entries)."""
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a table of urls, not {value!r}")
    found = {}
    for url, record in value.items():
        if not isinstance(record, Mapping) or not all(
            isinstance(v, (str, int)) and not isinstance(v, bool) for v in record.values()
        ):
            raise TypeError(f"expected a fingerprint for {redact(str(url))}")
        found[str(url)] = dict(record)
    return found


def _paths(value: object) -> frozenset[str]:
    """A list of paths from the lock (absent in locks of older gitpipe)."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise TypeError(f"expected a list of paths, not {value!r}")
    return frozenset(value)


def write(
    path: Path,
    lock: Lock,
    *,
    tmp_dir: Path | None = None,
    previous: Lock | None = None,
    cache_dir: Path | None = None,
) -> None:
    """Write the lock atomically (its temporary file in ``tmp_dir`` if given);
    unchanged content is not rewritten.

    With ``cache_dir``, gitpipe remembers there the stamp of the file (see
    gitpipe.core.stamps) once it holds exactly what this function writes.  Then a
    ``lock`` made of ``previous`` (the lock read from ``path``) and its very entries is
    not even serialised while the file keeps that stamp: its bytes are what it would
    write.
    As with the stat cache, a stamp taken within the racy window of the file's mtime
    is not trusted."""
    marker = cache_dir / (path.name + ".written") if cache_dir is not None else None
    if (
        marker is not None
        and previous is not None
        and _same(lock, previous)
        and stamps.stamp(path) is not None
        and stamps.stamp(path) == _trusted_stamp(marker)
    ):
        return
    data = lock.to_toml()
    text = _dumps(data)
    try:
        unchanged = path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        unchanged = False
    raw = text.encode("utf-8")
    del text  # 30 MB at 100,000 steps: only the bytes are held from here on
    if not unchanged:
        try:
            atomic.write_bytes(path, raw, tmp_dir=tmp_dir)
        except OSError as exc:
            raise LockfileError(f"cannot write {path.name} ({exc})") from exc
    if marker is not None:
        _remember(path, marker)
    if cache_dir is not None:  # the next command reads these tables without a parse
        tomlcache.prime(path, cache_dir, raw, data)


def _same(lock: Lock, previous: Lock) -> bool:
    """``lock`` serialises exactly as ``previous`` does: the same header and the same
    entry objects (equality is not enough: ``1 == 1.0`` but they are written apart)."""
    return (
        (lock.name, lock.fingerprint, lock.version)
        == (previous.name, previous.fingerprint, previous.version)
        and lock.steps.keys() == previous.steps.keys()
        and all(entry is previous.steps[name] for name, entry in lock.steps.items())
    )


def _format() -> str:
    """What the written form depends on besides the lock (this module's header, the
    TOML writer's ways), as the digest of a small lock written now: a marker left by
    a gitpipe that writes locks otherwise is not trusted."""
    sample = LockEntry(
        key=Digest("0" * 64),
        cmd=("a 'b'",),
        wdir=".",
        deps={"d/": Digest("1" * 64)},
        code={},
        params={"p": {"x": [1, 2.5, "s"]}},
        env={"E": "1"},
        outs={"o": Digest("2" * 64)},
        metrics={"m.json": {"auc": 0.5, "ok": True}},
    )
    text = Lock(name="n", fingerprint="f", steps={"s": sample}, version="1.0.0").dumps()
    return digest_bytes(text.encode("utf-8")).hex[:16]


def _trusted_stamp(marker: Path) -> stamps.Stamp:
    """The stamp a marker file holds, if it was taken outside the racy window by a
    gitpipe that writes locks as this one does."""
    try:
        form, *numbers = marker.read_text().split()
        inode, mtime_ns, ctime_ns, size, mode, taken_ns = (int(n) for n in numbers)
    except (OSError, ValueError):
        return None
    if form != _format() or stamps.racy(mtime_ns, taken_ns):
        return None
    return (inode, mtime_ns, ctime_ns, size, mode)


def _remember(path: Path, marker: Path) -> None:
    """Note that ``path``, as it is now, holds what `write` writes (a cache only)."""
    taken_ns = time.time_ns()  # before the stamp: a later edit is then within the window
    stamp = stamps.stamp(path)
    if stamp is None or not marker.parent.parent.is_dir():  # only where gitpipe keeps state
        return
    with contextlib.suppress(OSError):
        marker.parent.mkdir(exist_ok=True)
        text = f"{_format()} {' '.join(str(n) for n in stamp)} {taken_ns}"
        atomic.write_bytes(marker, text.encode(), sync=False)


def path_for(pipeline_file: Path) -> Path:
    """``gitpipe.toml`` -> ``gitpipe.lock``; ``other.toml`` -> ``other.lock``."""
    return pipeline_file.with_suffix(".lock")
