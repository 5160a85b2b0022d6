"""The Git layer: everything gitpipe reads from Git, through dulwich (no `git` binary).

Imported lazily by the project so that commands that need no Git answer fast.

Besides the state of the work tree, this module reads history for versions and
diffs: revisions (SHAs, branches, tags, ``HEAD~n``, ``A^``), first-parent walks that
stop where a shallow clone cuts history, files at a commit, and :class:`TreeSource`,
a read-only view of a commit's tree for code discovery that records what it looked
at (a :class:`Trace`), so that a later commit can be checked cheaply for the same
answers.  It never writes to the repository, its index or its work tree.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from dulwich.errors import NotGitRepository, ObjectFormatException
from dulwich.objects import Blob, Commit, Tag, Tree, parse_tree
from dulwich.repo import Repo

from gitpipe.core.errors import GitError
from gitpipe.core.hashing import Digest, digest_bytes

#: (mode, object id) of a tree entry
Entry = tuple[int, str]
_HEX = re.compile(r"^[0-9a-f]{4,40}$")
_REF_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._/@+\-]*$")
_REV_OP = re.compile(r"\^\{(?:commit|)\}|(~|\^)(\d*)")
_GLOB_CHARS = frozenset("*?[")
_MAX_SYMLINKS = 8
_TREE_MEMO = 100_000


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
        self._shallow: frozenset[str] | None = None
        self._commits: dict[str, CommitInfo] = {}
        self._trees: dict[str, dict[str, Entry]] = {}

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

    # -- history ----------------------------------------------------------------

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

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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

    def _commit_named(self, sha: str) -> str | None:
        """The commit an object is or tags (tags peeled); None for a tree or a blob."""
        for _ in range(16):
            obj = self._object(sha)
            if not isinstance(obj, Tag):
                return sha if isinstance(obj, Commit) else None
            sha = obj.object[1].decode("ascii")
        return None

    def blob_at(self, commit: str, path: str) -> str | None:
        """The id of the file at a top-relative path in a commit, or None if absent."""
        found = self.entry(self.commit(commit).tree, path)
        if found is None or not stat.S_ISREG(found[0]):
            return None
        return found[1]

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
        for _ in range(16):
            obj = self._object(sha)
            if isinstance(obj, Tag):
                sha = obj.object[1].decode("ascii")
                continue
            if isinstance(obj, Commit):
                return sha
            break
        raise GitError(f"{rev!r} does not name a commit")

    def _walk(self, sha: str, op: str, count: int, rev: str) -> str:
        if op == "^":
            if count == 0:
                return sha
            info = self.commit(sha)
            if len(info.parents) < count:
                raise GitError(f"{rev!r}: commit {sha[:12]} has no parent number {count}")
            if info.cut or info.parents[count - 1].encode("ascii") not in self._repo.object_store:
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

    # -- trees --------------------------------------------------------------------

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

    def source(
        self, tree: str, folder: str, *, digests: dict[str, Digest] | None = None
    ) -> TreeSource:
        """A read-only view of ``folder`` (top-relative) in a tree, for code discovery."""
        return TreeSource(self, tree, folder, digests=digests)

    def trace_holds(self, tree: str, trace: Trace) -> bool:
        """Whether every look-up ``trace`` recorded gives the same answer in ``tree``.

        Folders whose tree id did not change are skipped whole; on success the trace
        is moved to the new tree ids, so that the next check is as cheap."""
        moved: dict[str, str | None] = {}
        for folder, seen in trace.folders.items():
            now = self.folder(tree, folder)
            if now == seen:
                continue
            entries = {} if now is None else self.entries(now)
            for name, entry in trace.files.get(folder, {}).items():
                if not _same_entry(entry, entries.get(name)):
                    return False
            listing = trace.listings.get(folder)
            if listing is not None and _listing(entries) != listing:
                return False
            moved[folder] = now
        trace.folders.update(moved)
        return True

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


_REV_HELP = "give a commit SHA, a branch, a tag, HEAD~N or a version such as 1.2.0"
_FETCH_MORE = "fetch more history (git fetch --deepen N, or --unshallow)"


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


@dataclass
class Trace:
    """What a :class:`TreeSource` looked at, folder by folder (top-relative): the
    folder's tree id, each name looked up in it, and its listing where a glob
    listed it."""

    folders: dict[str, str | None] = field(default_factory=dict)
    files: dict[str, dict[str, Entry | None]] = field(default_factory=dict)
    listings: dict[str, tuple[tuple[str, bool], ...]] = field(default_factory=dict)

    def record(self, folder: str, name: str, entry: Entry | None) -> None:
        """Note a look-up; an exact entry replaces one recorded by its kind only."""
        mine = self.files.setdefault(folder, {})
        if name not in mine or (mine[name] is not None and mine[name][1] == ""):
            mine[name] = entry

    def merge(self, other: Trace) -> None:
        """Add what ``other`` looked at (in the same tree) to this trace."""
        for folder, tree in other.folders.items():
            self.folders.setdefault(folder, tree)
        for folder, names in other.files.items():
            mine = self.files.get(folder)
            if mine is None:
                self.files[folder] = dict(names)
                continue
            for name, entry in names.items():
                if name not in mine or (mine[name] is not None and mine[name][1] == ""):
                    mine[name] = entry
        for folder, listing in other.listings.items():
            self.listings.setdefault(folder, listing)


def _kind(entry: Entry | None) -> Entry | None:
    """An entry reduced to its kind (file, folder), as code discovery sees it;
    symbolic links keep their target's id, which decides what they point at."""
    if entry is None or stat.S_ISLNK(entry[0]):
        return entry
    return (stat.S_IFMT(entry[0]), "")


def _same_entry(seen: Entry | None, now: Entry | None) -> bool:
    if seen is not None and seen[1] == "":  # recorded by kind only
        return _kind(now) == seen
    return seen == now


def _listing(entries: dict[str, Entry]) -> tuple[tuple[str, bool], ...]:
    return tuple(sorted((name, stat.S_ISDIR(mode)) for name, (mode, _) in entries.items()))


class TreeSource:
    """The files of a folder in a commit's tree, as a codedeps ``Source``.

    Paths are relative to ``folder``; symbolic links inside the tree are followed.
    ``digest`` is blake3 of the bytes, cached by blob id in ``digests`` (share it
    between sources to hash each blob once).  Every look-up is recorded in ``trace``.
    """

    def __init__(
        self,
        repo: Repository,
        tree: str,
        folder: str,
        *,
        digests: dict[str, Digest] | None = None,
    ) -> None:
        self.repo = repo
        self.tree = tree
        self.folder = folder.strip("/")
        self.digests: dict[str, Digest] = {} if digests is None else digests
        self.trace = Trace()
        self._kinds = False

    @contextlib.contextmanager
    def recording(self, *, kinds: bool = False) -> Iterator[Trace]:
        """Record the look-ups made inside the block in a trace of their own (they
        are added to ``trace`` as well when the block ends).

        With ``kinds``, files are recorded by kind (a file is there, or not), not by
        content: what code discovery learns from a probe."""
        outer, self.trace = self.trace, Trace()
        inner = self.trace
        was, self._kinds = self._kinds, kinds
        try:
            yield inner
        finally:
            self.trace = outer
            self._kinds = was
            outer.merge(inner)

    def _full(self, path: str) -> str | None:
        """The top-relative form of a folder-relative path; None outside the top."""
        full = posixpath.normpath(posixpath.join(self.folder, path) if self.folder else path)
        if full == ".":
            return ""
        if full == ".." or full.startswith(("../", "/")):
            return None
        return full

    def _lookup(self, full: str) -> Entry | None:
        folder, _, name = full.rpartition("/")
        tree = self.repo.folder(self.tree, folder)
        self.trace.folders.setdefault(folder, tree)
        found = None if tree is None else self.repo.entries(tree).get(name)
        self.trace.record(folder, name, _kind(found) if self._kinds else found)
        return found

    def _blob_id(self, full: str | None) -> str | None:
        """The blob at a top-relative path, following symbolic links in the tree."""
        for _ in range(_MAX_SYMLINKS):
            if not full:
                return None
            found = self._lookup(full)
            if found is None:
                return None
            mode, sha = found
            if stat.S_ISREG(mode):
                return sha
            if not stat.S_ISLNK(mode):
                return None
            target = self.repo.blob(sha).decode("utf-8", "surrogateescape")
            if target.startswith("/"):
                return None
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(full), target))
            full = None if joined == ".." or joined.startswith("../") else joined
        return None

    def is_file(self, path: str) -> bool:
        return self._blob_id(self._full(path)) is not None

    def blob_id(self, path: str) -> str | None:
        """The Git blob id of a file (None if there is none)."""
        return self._blob_id(self._full(path))

    def read(self, path: str) -> bytes:
        sha = self._blob_id(self._full(path))
        if sha is None:
            raise FileNotFoundError(path)
        return self.repo.blob(sha)

    def digest(self, path: str) -> Digest:
        sha = self._blob_id(self._full(path))
        if sha is None:
            raise FileNotFoundError(path)
        found = self.digests.get(sha)
        if found is None:
            found = self.digests[sha] = digest_bytes(self.repo.blob(sha))
        return found

    def glob(self, pattern: str) -> list[str]:
        """Files matching a glob, as Python's ``glob(..., recursive=True)`` finds them
        in a work tree: ``**`` spans folders, wildcards skip names starting with '.'."""
        full = self._full(pattern)
        if full is None or not full:
            return []
        found: set[str] = set()
        self._glob("", full.split("/"), found)
        start = self.folder or "."
        return sorted(posixpath.relpath(path, start) for path in found)

    def _list(self, folder: str) -> dict[str, Entry]:
        tree = self.repo.folder(self.tree, folder)
        self.trace.folders.setdefault(folder, tree)
        entries = {} if tree is None else self.repo.entries(tree)
        self.trace.listings.setdefault(folder, _listing(entries))
        return entries

    def _glob(self, folder: str, parts: list[str], found: set[str]) -> None:
        head, rest = parts[0], parts[1:]
        here = f"{folder}/" if folder else ""
        if head == "**":
            for sub in self._folders_below(folder):
                if rest:
                    self._glob(sub, rest, found)
                else:
                    found.update(self._files_in(sub))
            return
        if not _GLOB_CHARS & set(head):
            path = here + head
            if rest:
                self._glob(path, rest, found)
            elif self._blob_id(path) is not None:
                found.add(path)
            return
        for name, (mode, _) in sorted(self._list(folder).items()):
            if name.startswith(".") and not head.startswith("."):
                continue
            if not fnmatch.fnmatchcase(name, head):
                continue
            if rest:
                if stat.S_ISDIR(mode):
                    self._glob(here + name, rest, found)
            elif self._blob_id(here + name) is not None:
                found.add(here + name)

    def _folders_below(self, folder: str) -> Iterator[str]:
        """``folder`` and every folder under it whose name does not start with '.'."""
        stack = [folder]
        while stack:
            current = stack.pop()
            yield current
            prefix = f"{current}/" if current else ""
            for name, (mode, _) in sorted(self._list(current).items(), reverse=True):
                if stat.S_ISDIR(mode) and not name.startswith("."):
                    stack.append(prefix + name)

    def _files_in(self, folder: str) -> list[str]:
        prefix = f"{folder}/" if folder else ""
        return [
            prefix + name
            for name, (mode, _) in self._list(folder).items()
            if not name.startswith(".")
            and self._blob_id(prefix + name) is not None
            and not stat.S_ISDIR(mode)
        ]


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
