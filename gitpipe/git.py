"""The Git layer: everything gitpipe reads from Git, through dulwich (no `git` binary).

Imported lazily by the project so that commands that need no Git answer fast.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dulwich.errors import NotGitRepository
from dulwich.index import get_unstaged_changes
from dulwich.porcelain import get_tree_changes
from dulwich.repo import Repo

from gitpipe.errors import GitError


@dataclass(frozen=True, slots=True)
class Checkout:
    """Where a commit stands: its SHA (None before the first commit) and dirtiness."""

    commit: str | None
    dirty: bool


class Repository:
    """A Git work tree, opened from any folder inside it."""

    def __init__(self, repo: Repo) -> None:
        self._repo = repo
        self.top = Path(repo.path).resolve()

    @classmethod
    def find(cls, start: Path) -> Repository | None:
        """The repository holding ``start``, or None outside any."""
        try:
            return cls(Repo.discover(str(start)))
        except NotGitRepository:
            return None
        except (OSError, ValueError, KeyError) as exc:
            raise GitError(f"cannot read the Git repository around {start} ({exc})") from exc

    def close(self) -> None:
        self._repo.close()

    def relpath(self, path: Path) -> str:
        """``path`` relative to the work tree's top, POSIX style ('' for the top)."""
        rel = os.path.relpath(path.resolve(), self.top)
        return "" if rel == "." else Path(rel).as_posix()

    def checkout(self) -> Checkout:
        """HEAD's commit and whether tracked files differ from it (untracked don't count)."""
        try:
            try:
                commit = self._repo.head().decode("ascii")
            except KeyError:
                commit = None
            index = self._repo.open_index()
            staged = get_tree_changes(self._repo, index)
            dirty = any(staged.values())
            if not dirty:
                dirty = next(iter(get_unstaged_changes(index, str(self.top))), None) is not None
        except (OSError, ValueError, KeyError) as exc:
            raise GitError(
                f"cannot read the state of the Git repository at {self.top} ({exc})"
            ) from exc
        return Checkout(commit, dirty)

    def tracked_under(self, paths: Iterable[str]) -> dict[str, str]:
        """For each given top-relative path, one tracked file at or under it (if any)."""
        wanted = {path.rstrip("/"): path for path in paths}
        if not wanted:
            return {}
        try:
            index = self._repo.open_index()
        except (OSError, ValueError) as exc:
            raise GitError(f"cannot read the Git index at {self.top} ({exc})") from exc
        found: dict[str, str] = {}
        for raw in index.paths():
            tracked = raw.decode("utf-8", "surrogateescape")
            parts = tracked.split("/")
            for i in range(1, len(parts) + 1):
                prefix = "/".join(parts[:i])
                if prefix in wanted and wanted[prefix] not in found:
                    found[wanted[prefix]] = tracked
        return found
