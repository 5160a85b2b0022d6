"""Provenance: which execution made the bytes now at a path, and from what, back to
the raw inputs (`gitpipe lineage PATH`), read from the lineage database.

Each path is followed by its digest to the latest execution that wrote exactly those
bytes there (a restore leads on to the run that made what it restored); each input
to the latest writer before the execution that read it; a file inside an output
folder to that folder's maker, through the folder's manifest in the store.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gitpipe.run import events as ev

if TYPE_CHECKING:
    import sqlite_utils

    from gitpipe.core.hashing import ManifestEntry
    from gitpipe.store.objects import Store


@dataclass(frozen=True, slots=True)
class Made:
    """One execution that wrote bytes: its step, state and run."""

    execution: int
    step: str
    state: str  # ran | cached
    key: str | None
    path: str  # the output it wrote, as recorded (a folder's ends in "/")
    digest: str
    run_id: str
    git_commit: str | None
    dirty: bool | None
    ended: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "execution": self.execution,
            "step": self.step,
            "state": self.state,
            "run": self.run_id,
            "commit": self.git_commit,
            "dirty": self.dirty,
            "ended": self.ended,
        }


@dataclass(frozen=True, slots=True)
class Origin:
    """Who made the bytes at a path, and from what.

    ``made`` is the execution that produced them: the latest that ran and wrote
    them there; when they were last put there by a restore from the store, the run
    that made that stored result, and ``restored`` is that restore.  ``made`` is a
    restore itself (state ``cached``) only when no run that made them is recorded
    here (the result came from a remote, or another work tree).  ``within`` is the
    output folder of ``made`` that holds these bytes, when they are part of one.
    ``seen``: ``made`` was shown before, with its inputs; ``inputs`` is then empty.
    None of it for raw inputs, which no recorded execution wrote.
    """

    path: str
    digest: str
    role: str
    made: Made | None = None
    restored: Made | None = None
    within: str | None = None
    seen: bool = False
    inputs: tuple[Origin, ...] = ()

    @property
    def step(self) -> str | None:
        return self.made.step if self.made else None

    def to_json(self) -> dict[str, Any]:
        made = self.made.to_json() if self.made else dict.fromkeys(_MADE_KEYS)
        return {
            "path": self.path,
            "digest": self.digest,
            "role": self.role,
            **made,
            "within": self.within,
            "restored": self.restored.to_json() if self.restored else None,
            "seen": self.seen,
            "inputs": [origin.to_json() for origin in self.inputs],
        }


_MADE_KEYS = ("execution", "step", "state", "run", "commit", "dirty", "ended")

_MADE = (
    "SELECT e.id, e.step, e.state, e.key, io.path, io.digest, e.ended, r.id AS run_id,"
    " r.git_commit, r.dirty FROM io JOIN executions e ON e.id = io.execution_id"
    " JOIN runs r ON r.id = e.run_id WHERE io.role = 'out'"
)


def origin(
    db: sqlite_utils.Database,
    path: str,
    digest: str,
    role: str = "out",
    *,
    store: Store | None = None,
) -> Origin:
    """Walk back from the bytes ``digest`` now at ``path`` to the raw inputs.

    The bytes lead to the latest execution that wrote exactly them at that path (or
    inside an output folder there, read from ``store``'s manifests); what an
    execution read leads, in turn, to the latest execution *before it* that wrote
    those bytes.  Each execution's inputs are walked once: a later mention of it is
    ``seen``.
    """
    return _Walk(db, store).origin(path, digest, role, before=None)


class _Walk:
    def __init__(self, db: sqlite_utils.Database, store: Store | None) -> None:
        self.db = db
        self.store = store
        self.walked: set[int] = set()  # executions whose inputs are shown already
        self._manifests: dict[str, list[ManifestEntry] | None] = {}

    def origin(self, path: str, digest: str, role: str, *, before: int | None) -> Origin:
        within = None
        wrote = self._last_wrote(path, digest, before)
        if wrote is None:
            wrote = self._last_wrote_around(path, digest, before)
            within = wrote.path if wrote is not None else None
        if wrote is None:
            return Origin(path, digest, role)
        made, restored = wrote, None
        if wrote.state == ev.CACHED:
            ran = self._ran_for(wrote)
            if ran is not None:
                made, restored = ran, wrote
        if made.execution in self.walked:
            return Origin(path, digest, role, made, restored, within, seen=True)
        self.walked.add(made.execution)
        reads = self.db.query(
            "SELECT path, digest, role FROM io WHERE execution_id = ? AND role != 'out'"
            " ORDER BY role, path",
            [made.execution],
        )
        inputs = tuple(
            self.origin(read["path"], read["digest"], read["role"], before=made.execution)
            for read in list(reads)
        )
        return Origin(path, digest, role, made, restored, within, inputs=inputs)

    def _query(self, where: str, args: list[Any]) -> Made | None:
        row = next(
            self.db.query(
                f"{_MADE} AND e.state IN ('ran', 'cached') AND {where} ORDER BY e.id DESC LIMIT 1",
                args,
            ),
            None,
        )
        return None if row is None else _made(row)

    def _last_wrote(self, path: str, digest: str, before: int | None) -> Made | None:
        """The latest execution (before ``before``) that wrote ``digest`` at ``path``."""
        bare = path.rstrip("/")
        return self._query(
            "io.digest = ? AND io.path IN (?, ?) AND e.id < ?",
            [digest, bare, bare + "/", _below(before)],
        )

    def _ran_for(self, restore: Made) -> Made | None:
        """The latest run before a restore that made the result it restored: same key,
        same bytes at the same place."""
        if not restore.key:
            return None
        return self._query(
            "e.state = 'ran' AND e.key = ? AND io.digest = ? AND io.path = ? AND e.id < ?",
            [restore.key, restore.digest, restore.path, restore.execution],
        )

    def _last_wrote_around(self, path: str, digest: str, before: int | None) -> Made | None:
        """The latest execution (before ``before``) that wrote an output folder holding
        ``digest`` at ``path``, by the folder's manifest in the store."""
        if self.store is None:
            return None
        parts = path.rstrip("/").split("/")
        for cut in range(len(parts) - 1, 0, -1):
            folder, inner = "/".join(parts[:cut]), "/".join(parts[cut:])
            rows = self.db.query(
                f"{_MADE} AND e.state IN ('ran', 'cached') AND io.path IN (?, ?) AND e.id < ?"
                " ORDER BY e.id DESC",
                [folder, folder + "/", _below(before)],
            )
            for row in rows:
                if self._digest_inside(row["digest"], inner) == digest:
                    return _made(row)
        return None

    def _digest_inside(self, folder: str, inner: str) -> str | None:
        """The digest of the file or folder ``inner`` inside the folder whose digest
        is ``folder``, from its manifest; None when the store lacks it."""
        from gitpipe.core.errors import StoreError
        from gitpipe.core.hashing import (
            Digest,
            DigestError,
            ManifestEntry,
            digest_bytes,
            manifest_bytes,
        )

        if self.store is None:
            return None
        if folder not in self._manifests:
            try:
                self._manifests[folder] = self.store.manifest(Digest.parse(folder))
            except (StoreError, DigestError):
                self._manifests[folder] = None
        entries = self._manifests[folder] or []
        below = [
            ManifestEntry(e.path[len(inner) + 1 :], e.digest, e.size, e.executable)
            for e in entries
            if e.path.startswith(inner + "/")
        ]
        if below:  # a folder inside the folder: the digest of its own manifest
            return str(digest_bytes(manifest_bytes(below)))
        return next((str(e.digest) for e in entries if e.path == inner), None)


def _below(execution: int | None) -> int:
    return execution if execution is not None else 2**63 - 1


def _made(row: dict[str, Any]) -> Made:
    return Made(
        execution=row["id"],
        step=row["step"],
        state=row["state"],
        key=row["key"],
        path=row["path"],
        digest=row["digest"],
        run_id=row["run_id"],
        git_commit=row["git_commit"],
        dirty=None if row["dirty"] is None else bool(row["dirty"]),
        ended=row["ended"],
    )


def walk(node: Origin, depth: int = 0) -> Iterator[tuple[int, Origin]]:
    yield depth, node
    for child in node.inputs:
        yield from walk(child, depth + 1)
