"""Git's object database, read-only: commits (and first-parent walks that stop where a
shallow clone cuts history), trees and files, each read by id and memoised (Git
objects never change).

:class:`GitObjects` is what :class:`~gitpipe.history.git.repository.Repository` reads
history through; the repository adds the work tree, the refs and revisions.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dulwich.errors import ObjectFormatException
from dulwich.objects import Blob, Commit, Tag, Tree, parse_tree
from dulwich.repo import Repo

from gitpipe.core.errors import GitError

#: (mode, object id) of a tree entry
Entry = tuple[int, str]
_TREE_MEMO = 100_000


@dataclass(frozen=True, slots=True)
class CommitInfo:
    """What versions need of a commit."""

    sha: str
    parents: tuple[str, ...]
    tree: str
    time: int  # seconds since the epoch
    offset: int  # the committer's UTC offset in seconds
    summary: str
    cut: bool = False  # a shallow clone holds none of its parents


class GitObjects:
    """The objects of one repository: commits, trees and blobs by id, memoised."""

    def __init__(self, repo: Repo) -> None:
        self._repo = repo
        #: the work tree's top
        self.top = Path(repo.path).resolve()
        self._shallow: frozenset[str] | None = None
        self._commits: dict[str, CommitInfo] = {}
        self._trees: dict[str, dict[str, Entry]] = {}

    # -- commits ------------------------------------------------------------------

    def shallow(self) -> frozenset[str]:
        """The commits where a shallow clone cuts history (empty in a full clone)."""
        if self._shallow is None:
            try:
                self._shallow = frozenset(sha.decode("ascii") for sha in self._repo.get_shallow())
            except (OSError, ValueError) as exc:
                raise GitError(f"cannot read .git/shallow at {self.top} ({exc})") from exc
        return self._shallow

    def commit(self, sha: str) -> CommitInfo:
        """One commit: parents, tree, time and whether history is cut below it."""
        info = self._commits.get(sha)
        if info is not None:
            return info
        kind, raw = self._raw(sha)
        if kind != Commit.type_num:
            raise GitError(f"{sha[:12]} is not a commit")
        # the header is read here rather than through dulwich's Commit: walks read
        # thousands of commits, and only these fields
        header, _, message = raw.partition(b"\n\n")
        tree = ""
        parents: list[str] = []
        when, offset = 0, 0
        for line in header.split(b"\n"):
            if line.startswith(b"tree "):
                tree = line[5:].decode("ascii")
            elif line.startswith(b"parent "):
                parents.append(line[7:].decode("ascii"))
            elif line.startswith(b"committer "):
                when, offset = _timestamp(line)
        shallow = self.shallow()
        cut = (
            bool(parents)
            and bool(shallow)
            and (sha in shallow or parents[0].encode("ascii") not in self._repo.object_store)
        )
        summary = message.decode("utf-8", "replace").strip().splitlines()
        info = CommitInfo(
            sha=sha,
            parents=tuple(parents),
            tree=tree,
            time=when,
            offset=offset,
            summary=summary[0] if summary else "",
            cut=cut,
        )
        self._commits[sha] = info
        return info

    def first_parent(self, start: str) -> Iterator[CommitInfo]:
        """``start`` and its first parents, newest first, down to the root or the cut
        of a shallow clone (the last commit yielded then has ``cut`` set)."""
        sha: str | None = start
        while sha is not None:
            info = self.commit(sha)
            yield info
            sha = info.parents[0] if info.parents and not info.cut else None

    def _commit_named(self, sha: str) -> str | None:
        """The commit an object is or tags (tags peeled); None for a tree or a blob."""
        for _ in range(16):
            obj = self._object(sha)
            if not isinstance(obj, Tag):
                return sha if isinstance(obj, Commit) else None
            sha = obj.object[1].decode("ascii")
        return None

    # -- trees and files ----------------------------------------------------------

    def entries(self, tree: str) -> dict[str, Entry]:
        """A tree's entries by name (memoised by tree id: trees never change)."""
        found = self._trees.get(tree)
        if found is None:
            kind, raw = self._raw(tree)
            if kind != Tree.type_num:
                raise GitError(f"object {tree[:12]} is not a tree")
            try:
                found = {
                    name.decode("utf-8", "surrogateescape"): (mode, _hex(sha))
                    for name, mode, sha in parse_tree(raw, 20)
                }
            except (ValueError, ObjectFormatException) as exc:
                raise GitError(f"tree {tree[:12]} is damaged ({exc})") from exc
            if len(self._trees) >= _TREE_MEMO:
                self._trees.clear()
            self._trees[tree] = found
        return found

    def folder(self, tree: str, path: str) -> str | None:
        """The tree id of a top-relative folder ('' for the top), or None."""
        if not path:
            return tree
        for part in path.split("/"):
            entry = self.entries(tree).get(part)
            if entry is None or not stat.S_ISDIR(entry[0]):
                return None
            tree = entry[1]
        return tree

    def entry(self, tree: str, path: str) -> Entry | None:
        """The (mode, id) of a top-relative path in a tree, or None."""
        folder, _, name = path.rpartition("/")
        found = self.folder(tree, folder)
        return None if found is None else self.entries(found).get(name)

    def blob(self, sha: str) -> bytes:
        kind, raw = self._raw(sha)
        if kind != Blob.type_num:
            raise GitError(f"object {sha[:12]} is not a file")
        return raw

    def read_file(self, commit: str, path: str) -> bytes | None:
        """A file's bytes at a commit (path relative to the top), or None if absent."""
        found = self.entry(self.commit(commit).tree, path)
        if found is None or not stat.S_ISREG(found[0]):
            return None
        return self.blob(found[1])

    def blob_at(self, commit: str, path: str) -> str | None:
        """The id of the file at a top-relative path in a commit, or None if absent."""
        found = self.entry(self.commit(commit).tree, path)
        if found is None or not stat.S_ISREG(found[0]):
            return None
        return found[1]

    # -- reading an object ------------------------------------------------------

    def _has(self, sha: str) -> bool:
        return sha.encode("ascii") in self._repo.object_store

    def _kind(self, sha: str) -> type:
        return type(self._object(sha))

    def _raw(self, sha: str) -> tuple[int, bytes]:
        try:
            return self._repo.object_store.get_raw(sha.encode("ascii"))
        except KeyError as exc:
            raise GitError(f"object {sha[:12]} is missing from the Git repository") from exc
        except (OSError, ValueError) as exc:
            raise GitError(f"cannot read object {sha[:12]} ({exc})") from exc

    def _object(self, sha: str) -> object:
        try:
            return self._repo.object_store[sha.encode("ascii")]
        except KeyError as exc:
            raise GitError(f"object {sha[:12]} is missing from the Git repository") from exc
        except (OSError, ValueError) as exc:
            raise GitError(f"cannot read object {sha[:12]} ({exc})") from exc


def _hex(sha: bytes) -> str:
    return sha.hex() if len(sha) == 20 else sha.decode("ascii")


def _timestamp(line: bytes) -> tuple[int, int]:
    """Seconds and UTC offset (in seconds) of an author or committer line."""
    try:
        _, when, zone = line.rsplit(b" ", 2)
        sign = -1 if zone.startswith(b"-") else 1
        digits = zone.lstrip(b"+-")
        return int(when), sign * (int(digits[:-2]) * 3600 + int(digits[-2:]) * 60)
    except ValueError:
        return 0, 0
