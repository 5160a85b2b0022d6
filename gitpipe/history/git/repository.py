"""The repository handle: a Git work tree opened from any folder inside it, its
state (HEAD, dirtiness, tracked files), its config, refs and revisions, and the
work trees that share it. What it reads of history is :class:`GitObjects`'s."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from dulwich.errors import NotGitRepository
from dulwich.objects import Commit, Tag
from dulwich.repo import Repo

from gitpipe.core.errors import GitError
from gitpipe.core.hashing import Digest
from gitpipe.history.git.objects import GitObjects
from gitpipe.history.git.treesource import Trace, TreeSource, trace_holds

_HEX = re.compile(r"^[0-9a-f]{4,40}$")
_REF_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/@+\-]*$")
_REV_OP = re.compile(r"\^\{(?:commit|)\}|(~|\^)(\d*)")
_REV_HELP = "give a commit SHA, a branch, a tag, HEAD~N or a version such as 1.2.0"
_FETCH_MORE = "fetch more history (git fetch --deepen N, or --unshallow)"


@dataclass(frozen=True, slots=True)
class Checkout:
    """Where a commit stands: its SHA (None before the first commit) and dirtiness."""

    commit: str | None
    dirty: bool


class Repository(GitObjects):
    """A Git work tree, opened from any folder inside it: its history as
    :class:`GitObjects` reads it, and its state, config, refs and revisions."""

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

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the work tree ------------------------------------------------------------

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
            # slow to import, and needed only here
            from dulwich.index import get_unstaged_changes

            index = self._repo.open_index()
            tree = self._repo[commit.encode("ascii")].tree if commit is not None else None
            # staged: the index differs from HEAD's tree (without dulwich.porcelain,
            # which takes longer to import than the whole check)
            staged = index.changes_from_tree(self._repo.object_store, tree)
            dirty = next(iter(staged), None) is not None
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

    # -- config and refs ----------------------------------------------------------

    def user(self) -> str | None:
        """``Name <email>`` from the Git config (repository, then global), if set."""
        try:
            config = self._repo.get_config_stack()
        except Exception:  # an unreadable config is no identity, not an error here
            return None
        parts = []
        for entry in (b"name", b"email"):
            try:
                parts.append(config.get((b"user",), entry).decode("utf-8", "replace"))
            except KeyError:
                parts.append("")
        name, email = parts
        if not name and not email:
            return None
        return f"{name} <{email}>".strip() if email else name

    def head_commit(self) -> str | None:
        """HEAD's commit, or None in a repository with no commits yet."""
        try:
            return self._repo.head().decode("ascii")
        except KeyError:
            return None
        except (OSError, ValueError) as exc:
            raise GitError(f"cannot read HEAD of the Git repository at {self.top} ({exc})") from exc

    def ref_commits(self) -> dict[str, str | None]:
        """Every ref (branches, tags, remote-tracking branches, any other under
        ``refs/``) and HEAD, with the commit it names, tags peeled; None where the
        object a ref names cannot be read.  Refs to a tree or a blob are left out."""
        found: dict[str, str | None] = {}
        try:
            refs = self._repo.refs.as_dict()
        except (OSError, ValueError) as exc:
            raise GitError(
                f"cannot read the refs of the Git repository at {self.top} ({exc})"
            ) from exc
        for name, sha in sorted(refs.items()):
            ref = name.decode("utf-8", "replace")
            if not (ref == "HEAD" or ref.startswith("refs/")):
                continue
            try:
                commit = self._commit_named(sha.decode("ascii"))
            except GitError:
                found[ref] = None  # missing or unreadable: what it holds is unknown
                continue
            if commit is not None:
                found[ref] = commit
        return found

    # -- revisions ----------------------------------------------------------------

    def resolve(self, rev: str, *, names: Callable[[str], str | None] | None = None) -> str:
        """The commit a revision names: a full or short SHA, a branch, a tag (annotated
        or lightweight), ``HEAD``, ``@``, followed by any of ``~n``, ``^``, ``^n``,
        ``^{}``.  ``names`` resolves other names (such as version numbers) to SHAs."""
        rev = rev.strip()
        match = re.match(r"^[^~^]*", rev)
        base = match.group(0) if match else ""
        ops = rev[len(base) :]
        steps: list[tuple[str, int]] = []
        pos = 0
        while pos < len(ops):
            op = _REV_OP.match(ops, pos)
            if op is None:
                raise GitError(f"cannot parse the revision {rev!r}; {_REV_HELP}")
            if op.group(1):
                steps.append((op.group(1), int(op.group(2)) if op.group(2) else 1))
            pos = op.end()
        sha = self._resolve_name(base or "HEAD", rev)
        if sha is None and names is not None and base:
            sha = names(base)
        if sha is None:
            raise GitError(f"unknown revision {rev!r}; {_REV_HELP}")
        sha = self._peel(sha, rev)
        for op, count in steps:
            sha = self._walk(sha, op, count, rev)
        return sha

    def _resolve_name(self, name: str, rev: str) -> str | None:
        if name in ("HEAD", "@"):
            head = self.head_commit()
            if head is None:
                raise GitError(
                    f"{rev!r} names no commit: the repository at {self.top} has no commits yet; "
                    "commit first"
                )
            return head
        lowered = name.lower()
        if len(lowered) == 40 and _HEX.match(lowered) and self._has(lowered):
            return lowered
        if _REF_NAME.match(name) and ".." not in name and "//" not in name:
            for candidate in (
                name,
                f"refs/{name}",
                f"refs/tags/{name}",
                f"refs/heads/{name}",
                f"refs/remotes/{name}",
                f"refs/remotes/{name}/HEAD",
            ):
                if candidate != "HEAD" and not candidate.startswith("refs/"):
                    continue
                try:
                    return self._repo.refs[candidate.encode("utf-8")].decode("ascii")
                except KeyError:
                    continue
                except (OSError, ValueError) as exc:
                    raise GitError(f"cannot read the ref {candidate} ({exc})") from exc
        if _HEX.match(lowered):
            found = {
                sha.decode("ascii")
                for sha in self._repo.object_store.iter_prefix(lowered.encode("ascii"))
            }
            commits = {sha for sha in found if self._kind(sha) in (Commit, Tag)}
            if len(commits) > 1:
                raise GitError(
                    f"the short SHA {name!r} is ambiguous ({len(commits)} objects); "
                    "give more digits"
                )
            if commits:
                return commits.pop()
        return None

    def _peel(self, sha: str, rev: str) -> str:
        commit = self._commit_named(sha)
        if commit is None:
            raise GitError(f"{rev!r} does not name a commit")
        return commit

    def _walk(self, sha: str, op: str, count: int, rev: str) -> str:
        if op == "^":
            if count == 0:
                return sha
            info = self.commit(sha)
            if len(info.parents) < count:
                raise GitError(f"{rev!r}: commit {sha[:12]} has no parent number {count}")
            if info.cut or not self._has(info.parents[count - 1]):
                raise GitError(f"{rev!r} lies beyond the shallow clone's history; {_FETCH_MORE}")
            return info.parents[count - 1]
        for _ in range(count):
            info = self.commit(sha)
            if not info.parents:
                raise GitError(f"{rev!r} goes past the first commit")
            if info.cut:
                raise GitError(f"{rev!r} lies beyond the shallow clone's history; {_FETCH_MORE}")
            sha = info.parents[0]
        return sha

    # -- trees as code discovery reads them ---------------------------------------

    def source(
        self, tree: str, folder: str, *, digests: dict[str, Digest] | None = None
    ) -> TreeSource:
        """A read-only view of ``folder`` (top-relative) in a tree, for code discovery."""
        return TreeSource(self, tree, folder, digests=digests)

    def trace_holds(self, tree: str, trace: Trace) -> bool:
        """Whether every look-up ``trace`` recorded gives the same answer in ``tree``
        (:func:`~gitpipe.history.git.treesource.trace_holds`)."""
        return trace_holds(self, tree, trace)

    # -- worktrees ----------------------------------------------------------------

    @property
    def is_linked_worktree(self) -> bool:
        """True in a work tree made by `git worktree add` (not the main one)."""
        control = os.path.realpath(self._repo.controldir())
        return control != os.path.realpath(self._repo.commondir())

    def main_worktree(self) -> Path | None:
        """The main work tree's top for a linked work tree; None otherwise (or when the
        main repository is bare)."""
        if not self.is_linked_worktree:
            return None
        common = Path(os.path.realpath(self._repo.commondir()))
        if common.name != ".git":
            return None
        return common.parent


def shared_state_dir(start: Path, *, name: str = ".gitpipe") -> Path | None:
    """For a pipeline folder in a linked work tree (`git worktree add`), the same
    folder's state directory in the main work tree, so that work trees can share one
    store; None in a main work tree, outside Git, or when the main repository is bare."""
    repo = Repository.find(start)
    if repo is None:
        return None
    with repo:
        main = repo.main_worktree()
        if main is None:
            return None
        relative = repo.relpath(start)
    return (main / relative / name) if relative else main / name
