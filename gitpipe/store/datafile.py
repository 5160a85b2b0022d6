"""`gitpipe.data`: the data `gitpipe add` tracks, each path with the digest of its bytes.

A TOML file beside the pipeline file (``gitpipe.toml`` -> ``gitpipe.data``), tracked
by Git, written only by `gitpipe add` and `gitpipe remove`, atomically, with sorted
keys, so that its Git diff reads well.  `repro` never writes it (it owns
``gitpipe.lock``), so the two never race::

    # Written by `gitpipe add` and `gitpipe remove`; commit it, do not edit it by hand.
    [gitpipe]
    schema = 1

    [data."data/raw.csv"]
    digest = "b3:…"          # the file's bytes
    size = 2147483648

    [data."data/images/"]    # a folder: a trailing slash
    digest = "b3:…"          # its manifest (as a folder output's)
    size = 52428800
    files = 50000
    link = "hardlink"        # how `gitpipe checkout` puts it back; only when not "copy"

A file's ``executable = true`` is written only when it is set.  The digest is the
only field a step's key sees (through the bytes it reads): size, file count and link
are for people and for `checkout`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitpipe.core import atomic, tomlcache
from gitpipe.core.errors import LockfileError
from gitpipe.core.hashing import Digest, DigestError, safe_relpath
from gitpipe.pipeline import spec
from gitpipe.pipeline.model import LINKS

DATA_SCHEMA = 1
HEADER = "# Written by `gitpipe add` and `gitpipe remove`; commit it, do not edit it by hand.\n"


def path_for(pipeline_file: Path) -> Path:
    """``gitpipe.toml`` -> ``gitpipe.data``; ``other.toml`` -> ``other.data``."""
    return pipeline_file.with_suffix(".data")


@dataclass(frozen=True, slots=True)
class DataRecord:
    """One added path: ``path`` relative to the pipeline's folder (no trailing slash),
    its digest (a folder's: its manifest's), total size, file count, executable bit
    (files) and how `checkout` puts it in the workspace."""

    path: str
    digest: Digest
    size: int
    is_dir: bool = False
    files: int = 1
    executable: bool = False
    link: str = "copy"

    @property
    def name(self) -> str:
        """The path as the file writes it: a folder with its trailing slash."""
        return self.path + ("/" if self.is_dir else "")

    def to_toml(self) -> dict[str, Any]:
        table: dict[str, Any] = {"digest": str(self.digest), "size": self.size}
        if self.is_dir:
            table["files"] = self.files
        elif self.executable:
            table["executable"] = True
        if self.link != "copy":
            table["link"] = self.link
        return table


@dataclass(frozen=True, slots=True)
class DataRecords:
    """Every added path, by path (without a folder's trailing slash)."""

    records: Mapping[str, DataRecord] = field(default_factory=dict)

    def __iter__(self) -> Iterator[DataRecord]:
        return iter(self.records[path] for path in sorted(self.records))

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, path: object) -> bool:
        return path in self.records

    def get(self, path: str) -> DataRecord | None:
        return self.records.get(path)

    def holding(self, path: str) -> DataRecord | None:
        """The added path that is ``path``, or a folder ``path`` lies inside."""
        for record in self:
            if record.path == path or (record.is_dir and path.startswith(record.path + "/")):
                return record
        return None

    def inside(self, path: str) -> list[DataRecord]:
        """The added paths that lie inside the folder ``path`` (not ``path`` itself)."""
        return [r for r in self if r.path.startswith(path + "/")]

    def with_(self, *records: DataRecord) -> DataRecords:
        return DataRecords({**self.records, **{r.path: r for r in records}})

    def without(self, *paths: str) -> DataRecords:
        return DataRecords({p: r for p, r in self.records.items() if p not in set(paths)})

    def dumps(self) -> str:
        data = {
            "gitpipe": {"schema": DATA_SCHEMA},
            "data": {record.name: record.to_toml() for record in self},
        }
        import tomli_w  # here: reading, which most commands only do, needs no writer

        return HEADER + tomli_w.dumps(data, multiline_strings=False)


def read(path: Path) -> DataRecords:
    """Read a data file; a missing one records nothing."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return DataRecords()
    except (OSError, UnicodeDecodeError) as exc:
        raise LockfileError(f"cannot read {path.name} ({exc})") from exc
    return loads(text, name=path.name)


def loads(text: str, *, name: str = "gitpipe.data") -> DataRecords:
    """Parse a data file's text (``name`` is what errors call it)."""
    try:
        table = tomlcache.loads(text)
    except tomlcache.TOMLDecodeError as exc:
        raise LockfileError(
            f"{name} is damaged ({exc}); restore it from Git (`git checkout -- {name}`)"
        ) from exc
    header = table.get("gitpipe")
    schema = header.get("schema") if isinstance(header, dict) else None
    if schema != DATA_SCHEMA:
        if isinstance(schema, int) and schema > DATA_SCHEMA:
            raise LockfileError(
                f"{name} has schema {schema}, newer than the {DATA_SCHEMA} this gitpipe "
                "reads; upgrade gitpipe"
            )
        raise LockfileError(f"{name} has schema {schema!r}, which this gitpipe does not read")
    body = table.get("data", {})
    if not isinstance(body, dict):
        raise LockfileError(f"{name}: [data] must be a table")
    records = {}
    for written, fields in body.items():
        record = _record(written, fields, name)
        records[record.path] = record
    return DataRecords(records)


def _record(written: str, fields: Any, name: str) -> DataRecord:
    where = f"{name}, at data.{written!r}"
    is_dir = written.endswith("/")
    path = written.removesuffix("/")
    if not safe_relpath(path) or spec.reserved_part(path) is not None:
        raise LockfileError(f"{where}: not a path inside the repository gitpipe may write")
    if not isinstance(fields, dict):
        raise LockfileError(f"{where}: must be a table")
    try:
        digest = Digest.parse(fields["digest"])
        size, files = fields["size"], fields.get("files", 1)
        executable, link = fields.get("executable", False), fields.get("link", "copy")
    except (KeyError, TypeError, AttributeError, DigestError) as exc:
        raise LockfileError(f"{where}: a digest and a size are needed ({exc})") from exc
    numbers = isinstance(size, int) and isinstance(files, int) and size >= 0 and files >= 0
    if not numbers or not isinstance(executable, bool) or link not in LINKS:
        raise LockfileError(f"{where}: a field has the wrong type or value")
    return DataRecord(path, digest, size, is_dir, files, executable and not is_dir, link)


def write(path: Path, records: DataRecords) -> None:
    """Replace the data file with ``records``; with none, remove it."""
    if not records:
        path.unlink(missing_ok=True)
        return
    atomic.write_bytes(path, records.dumps().encode("utf-8"))
