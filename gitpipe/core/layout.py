"""Where gitpipe's files are in a workspace: the pipeline file, and the state folder
beside it."""

from __future__ import annotations

import os

#: ``typing.TYPE_CHECKING``, without importing `typing` (nor `pathlib`, but where a
#: path is made) on the way of a no-op status, which reads :data:`STATE_DIR`
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path

#: the pipeline file a folder holds unless told otherwise
DEFAULT_FILE = "gitpipe.toml"
#: gitpipe's local state beside the pipeline file (store, caches, lineage)
STATE_DIR = ".gitpipe"


def locate(path: str | os.PathLike[str] = ".", file: str | None = None) -> Path:
    """The pipeline file in folder ``path`` (``gitpipe.toml``, or ``file`` relative to
    it); ``path`` may name the file itself."""
    from pathlib import Path

    base = Path(path)
    if file is None and base.is_file():
        return base
    return base / (file or DEFAULT_FILE)


def ensure_state_dir(folder: Path, *, parents: bool = False) -> None:
    """Make gitpipe's state folder, with a `.gitignore` that keeps it out of Git."""
    folder.mkdir(parents=parents, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# gitpipe's local state: never commit it\n*\n", encoding="utf-8")


def git_check_file(state_dir: Path) -> Path:
    """Where the digest of the last Git check that passed is kept (see
    :func:`gitpipe.run.guard.git_check_digest`)."""
    return state_dir / "parsed" / "git-check"


def dot_git(root: Path) -> Path | None:
    """The nearest `.git` (a folder, or a file in a linked work tree), found
    without Git."""
    for folder in (root, *root.parents):
        if (folder / ".git").exists():
            return folder / ".git"
    return None


def git_folder(root: Path) -> Path | None:
    """The `.git` of the repository around ``root`` as Git and dulwich find it: the
    nearest `.git` folder holding objects, or `.git` file (a linked work tree's, a
    submodule's); a `.git` folder without objects, left empty say, is passed over.
    None outside one.  (:func:`dot_git` is any nearest `.git`, a protected place.)"""
    for folder in (root, *root.parents):
        found = folder / ".git"
        if found.is_dir():
            if (found / "objects").is_dir():
                return found
        elif found.is_file():
            return found
    return None


def work_tree(root: Path) -> Path | None:
    """The top of the Git work tree around ``root``, found without Git (as Git and
    dulwich find it: see :func:`git_folder`, a `.git` file naming a folder); None
    outside one."""
    found = git_folder(root)
    if found is None:
        return None
    if not found.is_dir():
        try:
            with open(found, "rb") as handle:
                if not handle.read(8).startswith(b"gitdir:"):
                    return None
        except OSError:
            return None
    return found.parent.resolve()
