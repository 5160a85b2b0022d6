"""Checks that must pass before a command changes anything on disk.

Outputs must stay inside the repository and must not be tracked by Git; a run's
source dependencies must exist.  The Git part is skipped while the Git index and the
outputs checked are as when it last passed (:func:`index_stamp`).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitpipe import atomic, spec, tomlcache
from gitpipe.errors import PipelineError
from gitpipe.hashing import digest_record

if TYPE_CHECKING:
    from gitpipe.project import Project


def dot_git(root: Path) -> Path | None:
    """The nearest `.git` (a folder, or a file in a linked work tree), found
    without Git."""
    for folder in (root, *root.parents):
        if (folder / ".git").exists():
            return folder / ".git"
    return None


def index_stamp(project: Project, names: Sequence[str]) -> str | None:
    """What the check for outputs tracked by Git depends on: the Git index file's
    (inode, mtime, size) and the outputs checked; None when it cannot be told
    without Git (no `.git` found, or a Git index changed within the racy window).
    """
    index = git_index(project.root)
    if index is None:
        return None
    try:
        st = index.stat()
    except OSError:
        return None
    if tomlcache.racy(st.st_mtime_ns, time.time_ns()):
        return None
    outs = sorted(str(o) for n in names for o in project.pipeline.steps[n].all_outs)
    return str(digest_record([str(index), st.st_ino, st.st_mtime_ns, st.st_size, outs]))


def git_index(root: Path) -> Path | None:
    """The Git index file of the repository around the pipeline, found without
    Git; None outside Git."""
    dotgit = dot_git(root)
    if dotgit is None:
        return None
    if dotgit.is_dir():
        return dotgit / "index"
    with contextlib.suppress(OSError):
        text = dotgit.read_text(errors="replace").strip()
        if text.startswith("gitdir:"):
            return (dotgit.parent / text.removeprefix("gitdir:").strip()) / "index"
    return None


def checked_stamp(state_dir: Path) -> str | None:
    """The stamp of the last Git check that passed (see :func:`index_stamp`)."""
    with contextlib.suppress(OSError):
        return (state_dir / "parsed" / "git-check").read_text()
    return None


def _links_to_object(
    project: Project, relpath: str, real: str, folders: dict[str, str], inside: str
) -> bool:
    """Whether an output is a symbolic link, in a folder inside the repository, to
    one of the store's objects: what `link = "symlink"` makes."""
    folder = folders.get(relpath.rpartition("/")[0])
    if folder is None or not os.path.join(folder, "").startswith(inside):
        return False
    if not os.path.islink(project.root / relpath):
        return False
    objects = os.path.realpath(project.store_dir / "objects")
    return _OBJECT_PATH.fullmatch(os.path.relpath(real, objects)) is not None


def remember_check(state_dir: Path, stamp: str | None) -> None:
    """Keep the stamp of a Git check that passed, so that the next command with the
    same stamp can skip Git."""
    if stamp is not None and state_dir.is_dir():
        with contextlib.suppress(OSError):
            (state_dir / "parsed").mkdir(exist_ok=True)
            atomic.write_bytes(state_dir / "parsed" / "git-check", stamp.encode(), sync=False)


def check_before_run(
    project: Project, names: Sequence[str], repo: Any, *, run: bool = True, git: bool = True
) -> None:
    """Errors that must stop a command before anything changes on disk.

    A missing source dependency stops a run; `status` reports it as a reason."""
    pipeline = project.pipeline
    name_of = pipeline.file.name
    top = repo.top if repo is not None else project.root
    real_top = os.path.realpath(top)
    inside = real_top.rstrip(os.sep) + os.sep
    folders: dict[str, str] = {}  # each output's folder, resolved once
    for name in names:
        step = pipeline.steps[name]
        for i, dep in enumerate(step.deps):
            if not run or project.graph.producers_of(dep):
                continue
            if not (project.root / dep.path).exists():
                raise PipelineError(
                    f"dependency {str(dep)!r} of step {name!r} does not exist and no "
                    "step produces it",
                    file=name_of,
                    key=f"steps.{name}.deps[{i}]",
                )
        for out, key in spec.out_places(step):
            real = _real_path(project.root, out.path, folders)
            if real != real_top and not real.startswith(inside):
                if _links_to_object(project, out.path, real, folders, inside):
                    continue  # `link = "symlink"` made it
                raise PipelineError(
                    f"output {str(out)!r} of step {name!r} leads outside the "
                    f"repository (to {real})",
                    file=name_of,
                    key=key,
                )
    if repo is not None and git:
        prefix = repo.relpath(project.root)
        wanted = {}
        for name in names:
            for out, key in spec.out_places(pipeline.steps[name]):
                path = f"{prefix}/{out.path}" if prefix else out.path
                wanted[path] = (name, out, key)
        tracked = repo.tracked_under(wanted)
        for path, example in tracked.items():
            name, out, key = wanted[path]
            raise PipelineError(
                f"output {str(out)!r} of step {name!r} is tracked by Git ({example}); "
                f"untrack it with `git rm -r --cached {path}` and commit",
                file=name_of,
                key=key,
            )


def _real_path(root: Path, relpath: str, folders: dict[str, str]) -> str:
    """``os.path.realpath(root / relpath)``, resolving each parent folder once (in
    ``folders``): a path whose last part is no link resolves to its folder's real path
    joined with that part."""
    parent, _, leaf = relpath.rpartition("/")
    if leaf in ("", ".", ".."):
        return os.path.realpath(root / relpath)
    if parent not in folders:
        folders[parent] = os.path.realpath(root / parent if parent else root)
    full = os.path.join(folders[parent], leaf)
    return os.path.realpath(full) if os.path.islink(full) else full


#: an object's path inside the store's objects/ folder
_OBJECT_PATH = re.compile(r"b3/[0-9a-f]{2}/[0-9a-f]{62}")


#: an object's path inside the store's objects/ folder
_OBJECT_PATH = re.compile(r"b3/[0-9a-f]{2}/[0-9a-f]{62}")
