"""The clones that use a store, so that `gitpipe gc` in any of them keeps what every
one of them needs (a store shared through ``GITPIPE_CACHE_DIR``, or the main work
tree's store that linked work trees share).

A clone registers once, when a `repro` or a `pull` first uses the store: one small
file in the store's ``clones/`` folder, named by the digest of its pipeline file's
path, naming that file and its Git work tree, written atomically::

    <store>/clones/<32 hex>.json   {"pipeline": "/home/ana/churn/gitpipe.toml",
                                    "worktree": "/home/ana/churn"}

After that, registering is one ``stat``.  `gitpipe gc` reads every registration and
drops those whose work tree is gone (:mod:`gitpipe.history.maintenance`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from gitpipe.core import atomic
from gitpipe.core.errors import StoreError
from gitpipe.core.hashing import digest_bytes

FOLDER = "clones"
_SUFFIX = ".json"


@dataclass(frozen=True, slots=True)
class Clone:
    """One registered user of a store."""

    pipeline: Path  # its pipeline file (absolute)
    worktree: Path | None  # the top of its Git work tree; None outside Git
    entry: Path  # the registration file in the store

    @property
    def folder(self) -> Path:
        """What must exist for the clone to exist: its work tree (outside Git, the
        pipeline's folder)."""
        return self.worktree if self.worktree is not None else self.pipeline.parent


def entry_for(store_dir: Path, pipeline: Path) -> Path:
    """The registration file of the pipeline file ``pipeline`` (absolute)."""
    name = digest_bytes(os.fsencode(pipeline)).hex[:32]
    return store_dir / FOLDER / f"{name}{_SUFFIX}"


def is_registered(store_dir: Path, pipeline: Path) -> bool:
    return entry_for(store_dir, pipeline).is_file()


def register(store_dir: Path, pipeline: Path, worktree: Path | None) -> None:
    """Record that the clone of ``pipeline`` uses the store (atomically; a registration
    that is there already is written again with the same bytes)."""
    record = {"pipeline": os.fsdecode(pipeline)}
    if worktree is not None:
        record["worktree"] = os.fsdecode(worktree)
    data = (json.dumps(record, sort_keys=True, ensure_ascii=True) + "\n").encode("ascii")
    try:
        atomic.write_bytes(entry_for(store_dir, pipeline), data, sync=False)
    except OSError as exc:
        raise StoreError(
            f"cannot register this clone in the store at {store_dir} ({exc.strerror or exc}); "
            "`gitpipe gc` in another clone sharing it will not know what this one needs"
        ) from exc


def registered(store_dir: Path) -> tuple[list[Clone], list[tuple[Path, str]]]:
    """Every clone registered in the store, and the registration files that cannot be
    read (each with why)."""
    folder = store_dir / FOLDER
    try:
        names = sorted(os.listdir(folder))
    except FileNotFoundError:
        return [], []
    except OSError as exc:
        return [], [(folder, exc.strerror or str(exc))]
    found: list[Clone] = []
    broken: list[tuple[Path, str]] = []
    for name in names:
        if name.startswith(".") or not name.endswith(_SUFFIX):
            continue  # a registration being written
        entry = folder / name
        try:
            record = json.loads(entry.read_bytes())
            pipeline = Path(record["pipeline"])
            worktree = record.get("worktree")
            clone = Clone(pipeline, None if worktree is None else Path(worktree), entry)
        except OSError as exc:
            broken.append((entry, exc.strerror or str(exc)))
            continue
        except (ValueError, KeyError, TypeError, AttributeError):
            broken.append((entry, "not a clone's registration"))
            continue
        if not clone.pipeline.is_absolute() or not clone.folder.is_absolute():
            broken.append((entry, "not a clone's registration"))
            continue
        found.append(clone)
    return found, broken


def forget(clone: Clone) -> None:
    """Remove a clone's registration (its work tree is gone)."""
    try:
        clone.entry.unlink(missing_ok=True)
    except OSError as exc:
        raise StoreError(
            f"cannot remove {clone.entry} ({exc.strerror or exc}), the registration of "
            f"{clone.folder}, which is gone"
        ) from exc
