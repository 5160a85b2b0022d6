"""`gitpipe import dvc`: a folder's dvc.yaml files written as gitpipe pipeline files.

    FOLDER ──► find_sources: FOLDER/dvc.yaml and those of its subfolders (not hidden
               ones, nor other Git repositories inside it)
           ──► gitpipe.pipeline.dvcimport.translate (pure; reads through this module)
           ──► refuse to overwrite a pipeline file unless forced, then write each one
               atomically, the nested ones first and FOLDER/gitpipe.toml last

Nothing is written when a dvc.yaml (or a params or vars file it names) cannot be
read, nor with ``dry_run``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from gitpipe.core import atomic
from gitpipe.core.errors import PipelineError, UsageError
from gitpipe.pipeline import dvcimport, spec

#: what DVC calls its pipeline file
DVC_FILE = "dvc.yaml"


@dataclass(frozen=True)
class ImportReport:
    """What an import wrote (or, with ``dry_run``, would write): each pipeline file's
    path relative to ``folder`` and its text; the warnings, one line each."""

    folder: Path
    sources: tuple[str, ...]
    files: dict[str, str]
    warnings: tuple[str, ...]
    written: bool


def find_sources(folder: Path) -> list[str]:
    """The dvc.yaml files in ``folder`` and its subfolders, as paths relative to it:
    its own first, then by path.  Hidden folders (``.git``, ``.dvc``, ``.venv``) and
    other Git repositories inside it are not searched."""
    found = []
    for here, dirs, names in os.walk(folder):
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and not (Path(here, d, ".git")).exists()
        )
        if DVC_FILE in names:
            found.append(Path(here, DVC_FILE).relative_to(folder).as_posix())
    return sorted(found, key=lambda p: (p != DVC_FILE, p))


def import_dvc(
    folder: str | os.PathLike[str] = ".", *, force: bool = False, dry_run: bool = False
) -> ImportReport:
    """Write gitpipe.toml in ``folder`` (and in its subfolders that hold a dvc.yaml of
    their own) from its dvc.yaml files; ``force`` overwrites existing pipeline files,
    ``dry_run`` writes nothing."""
    root = Path(folder)
    if not root.is_dir():
        raise UsageError(f"{folder} is not a folder")
    sources = find_sources(root)
    if not sources:
        raise UsageError(f"there is no {DVC_FILE} in {folder} or its subfolders")

    def read(relpath: str) -> str:
        return (root / relpath).read_text(encoding="utf-8")

    translation = dvcimport.translate(sources, read)
    _check_valid(root, translation.files)
    existing = [path for path in translation.files if (root / path).exists()]
    if existing and not force and not dry_run:
        raise UsageError(
            f"{', '.join(existing)} exists already; pass --force to overwrite "
            + ("it" if len(existing) == 1 else "them")
        )
    if not dry_run:
        for path, text in translation.files.items():  # the import folder's own last
            atomic.write_bytes(root / path, text.encode("utf-8"))
    return ImportReport(
        root, tuple(sources), translation.files, translation.warnings, written=not dry_run
    )


def _check_valid(root: Path, files: Mapping[str, str]) -> None:
    """Each pipeline file the import would write parses as gitpipe would read it (its
    nested files as the import writes them, params files from the disk); else
    :class:`UsageError` naming what is wrong, and nothing is written."""
    top = root.resolve()
    for path, text in files.items():
        file = root / path

        def read(relpath: str, base: Path = file.parent) -> str:
            target = (base / relpath).resolve()
            inside = target.is_relative_to(top)
            written = files.get(target.relative_to(top).as_posix()) if inside else None
            return written if written is not None else target.read_text(encoding="utf-8")

        try:
            spec.parse(text, file=file, read=read)
        except PipelineError as exc:
            raise UsageError(
                f"the pipeline translated into {path} is not one gitpipe can read ({exc}); "
                "nothing was written"
            ) from exc
