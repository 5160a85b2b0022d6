"""Checks that must pass before a command changes anything on disk, and again at
the moment gitpipe writes.

Outputs must stay inside the repository, clear of the protected places (`.git`,
`.gitpipe`, the store, the lock, the pipeline files: :class:`Protected`), and must
not be tracked by Git; a run's source dependencies must exist.  The Git part is
skipped while the Git index and the outputs checked are as when it last passed
(:func:`git_check_digest`).

A step's command may change the disk under gitpipe's feet (swap a folder for a link
out of the repository), so every write re-checks its path (:func:`check_write`) and
what a step produced is checked before anything is stored (:func:`check_produced`):

    parse (spec: as written) ─> check_before_run (on disk, through links)
        ─> begin / publish / restore / prune: check_write, check_produced
"""

from __future__ import annotations

import contextlib
import os
import re
import stat as statmod
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitpipe.core import atomic, stamps
from gitpipe.core.errors import PipelineError, UnsafePath
from gitpipe.core.hashing import digest_record
from gitpipe.core.layout import dot_git, git_check_file, git_folder
from gitpipe.pipeline import spec
from gitpipe.store import datafile

if TYPE_CHECKING:
    from gitpipe.run.context import Workspace


def git_check_digest(project: Workspace, names: Sequence[str]) -> str | None:
    """The digest of what the check for outputs tracked by Git depends on: the Git
    index file's stamp and the outputs checked; None when it cannot be told without
    Git (no `.git` found, or a Git index changed within the racy window)."""
    index = git_index(project.root)
    if index is None:
        return None
    stamp = stamps.stamp(index)
    if stamp is None or stamps.racy(stamp[1], time.time_ns()):
        return None
    outs = sorted(str(o) for n in names for o in project.pipeline.steps[n].all_outs)
    return str(digest_record([str(index), *stamp, outs]))


def git_index(root: Path) -> Path | None:
    """The Git index file of the repository around the pipeline, found without
    Git (in the repository Git and dulwich find: :func:`git_folder`); None outside Git."""
    dotgit = git_folder(root)
    if dotgit is None:
        return None
    if dotgit.is_dir():
        return dotgit / "index"
    with contextlib.suppress(OSError):
        text = dotgit.read_text(errors="replace").strip()
        if text.startswith("gitdir:"):
            return (dotgit.parent / text.removeprefix("gitdir:").strip()) / "index"
    return None


def passed_git_check(state_dir: Path) -> str | None:
    """The digest of the last Git check that passed (see :func:`git_check_digest`)."""
    with contextlib.suppress(OSError):
        return git_check_file(state_dir).read_text()
    return None


def _links_to_object(
    project: Workspace, relpath: str, real: str, folders: dict[str, str], inside: str
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


def remember_check(state_dir: Path, digest: str | None) -> None:
    """Keep the digest of a Git check that passed, so that the next command whose
    check has the same digest can skip Git."""
    if digest is not None and state_dir.is_dir():
        with contextlib.suppress(OSError):
            (state_dir / "parsed").mkdir(exist_ok=True)
            atomic.write_bytes(git_check_file(state_dir), digest.encode(), sync=False)


def check_before_run(
    project: Workspace, names: Sequence[str], repo: Any, *, run: bool = True, git: bool = True
) -> None:
    """Errors that must stop a command before anything changes on disk.

    A missing source dependency stops a run; `status` reports it as a reason."""
    pipeline = project.pipeline
    name_of = pipeline.file.name
    top = repo.top if repo is not None else project.root
    if run:  # what keying needs of the environment (docs/environment.md)
        from gitpipe.identity.environment import check

        check([pipeline.steps[name] for name in names], project.root)
    guarded = protected(project, top=top)
    real_top = guarded.top
    inside = real_top.rstrip(os.sep) + os.sep
    folders: dict[str, str] = {}  # each output's folder, resolved once
    # each output's folder: what holds for the outputs in it (see _folder_kind)
    kinds: dict[str, tuple[int, frozenset[str]]] = {}
    for name in names:
        step = pipeline.steps[name]
        for i, dep in enumerate(step.deps if run else ()):
            if project.graph.producers_of(dep):
                continue
            if not (project.root / dep.path).exists():
                added = datafile.read(datafile.path_for(project.file)).holding(dep.path)
                raise PipelineError(
                    f"dependency {str(dep)!r} of step {name!r} does not exist and no "
                    "step produces it"
                    + (
                        f"; it is added data ({added.name}): `gitpipe checkout` puts it "
                        "back (with --pull, from the remote)"
                        if added is not None
                        else ""
                    ),
                    file=name_of,
                    key=f"steps.{name}.deps[{i}]",
                )
        for index, out in enumerate(step.all_outs):
            parent, _, leaf = out.path.rpartition("/")
            known = kinds.get(parent)
            if known is None:
                known = kinds[parent] = _folder_kind(guarded, project.root, parent, folders)
            kind, near = known
            plain = (
                kind != _ANY
                and leaf not in _SPECIAL
                and leaf not in near
                and leaf.casefold() not in spec.RESERVED_NAMES
            )
            if plain and kind == _NO_FOLDER:
                continue  # nothing there: no link, and nothing refuses its place
            place = _place(project.root, out.path, folders)
            link = os.path.islink(place)
            if plain and not link:
                continue  # nothing refuses its place, and it leads nowhere else
            real = os.path.realpath(place) if link else place
            if real != place and _links_to_object(project, out.path, real, folders, inside):
                real = place  # `link = "symlink"` made it: where it is counts, not the object
            refusal = _refusal(guarded, place, real)
            if refusal:
                raise PipelineError(
                    f"output {str(out)!r} of step {name!r} {refusal}",
                    file=name_of,
                    key=spec.out_key(step, index),
                )
    _check_added(project, names)
    if repo is not None and git:
        prefix = repo.relpath(project.root)
        wanted = {}
        for name in names:
            step = pipeline.steps[name]
            for index, out in enumerate(step.all_outs):
                path = f"{prefix}/{out.path}" if prefix else out.path
                wanted[path] = (step, out, index)
        tracked = repo.tracked_under(wanted)
        for path, example in tracked.items():
            step, out, index = wanted[path]
            raise PipelineError(
                f"output {str(out)!r} of step {step.name!r} is tracked by Git ({example}); "
                f"untrack it with `git rm -r --cached {path}` and commit",
                file=name_of,
                key=spec.out_key(step, index),
            )


def _check_added(project: Workspace, names: Sequence[str]) -> None:
    """No output is, holds or lies inside a path `gitpipe add` tracks (gitpipe.data)."""
    records = datafile.read(datafile.path_for(project.file))
    if not records:
        return
    for name in names:
        for out, key in spec.out_places(project.pipeline.steps[name]):
            for record in records:
                how = spec.relation(out.path, record.path)
                if how is not None:
                    raise PipelineError(
                        f"output {str(out)!r} of step {name!r} {how} {record.name}, which "
                        "`gitpipe add` tracks; `gitpipe remove` it first, or choose another "
                        "path",
                        file=project.pipeline.file.name,
                        key=key,
                    )


def _refusal(guarded: Protected, place: str, real: str) -> str:
    """Why an output at ``place`` (its folders resolved), which leads to ``real`` (the
    same unless it is a link), must not be written; "" when it may."""
    if not guarded.inside(place):
        return f"leads outside the repository (to {place})"
    found = guarded.relation(place)
    if found is not None:
        return f"{found[0]} {found[1]}; gitpipe never writes there, choose another path"
    if real == place:
        return ""
    if not guarded.inside(real):
        return f"leads outside the repository (to {real})"
    found = guarded.relation(real)
    if found is not None:
        return (
            f"is a link to {real}, which {found[0]} {found[1]}; gitpipe never writes "
            "there, choose another path"
        )
    return ""


#: the last parts of a path :func:`_place` resolves as a whole
_SPECIAL = ("", ".", "..")
#: an output's folder, as :func:`_folder_kind` finds it: no output in it is known
#: to be allowed without looking at it; only a link in it may be refused; or that,
#: and no folder is there, so no link either
_ANY, _CLEAR, _NO_FOLDER = 0, 1, 2


def _folder_kind(
    guarded: Protected, root: Path, parent: str, folders: dict[str, str]
) -> tuple[int, frozenset[str]]:
    """What holds for the outputs in the folder ``parent`` (relative to the pipeline's
    folder; resolved into ``folders``), and the names in it that are or hold a
    protected place.  An output there whose last part is a plain name, none of those
    nor `.git` or `.gitpipe`, is one :func:`_refusal` has nothing to say of unless
    it is a link (:data:`_CLEAR`: the folder is inside the repository, no part of it
    is `.git` or `.gitpipe`, it is no protected place nor inside one); and when no
    folder is there (:data:`_NO_FOLDER`), no link is there either: the outputs of a
    pipeline never run.  Asked once per folder, not once per output."""
    real = folders.get(parent)
    if real is None:
        real = folders[parent] = os.path.realpath(root / parent if parent else root)
    if not guarded.inside(real) or guarded.reserved(real) is not None:
        return _ANY, frozenset()
    below = os.path.join(real, "")
    near = set()
    for place, _ in guarded.places:
        if real == place or real.startswith(place + "/"):
            return _ANY, frozenset()
        if place.startswith(below):  # an output named so is it or holds it
            near.add(place[len(below) :].partition("/")[0])
    return (_CLEAR if os.path.isdir(real) else _NO_FOLDER), frozenset(near)


def _place(root: Path, relpath: str, folders: dict[str, str]) -> str:
    """Where ``root / relpath`` is once its folders are resolved (each parent folder
    once, kept in ``folders``); its last part is not followed."""
    parent, _, leaf = relpath.rpartition("/")
    if leaf in ("", ".", ".."):
        return os.path.realpath(root / relpath)
    if parent not in folders:
        folders[parent] = os.path.realpath(root / parent if parent else root)
    return os.path.join(folders[parent], leaf)


#: an object's path inside the store's objects/ folder
_OBJECT_PATH = re.compile(r"b3/[0-9a-f]{2}/[0-9a-f]{62}")


@dataclass(frozen=True, slots=True)
class Protected:
    """The places no output may be, contain or lie inside, as real paths: Git's
    folder, `.gitpipe`, the store, the lock, the pipeline files; and the repository
    outputs must stay in.  Made by :func:`protected`."""

    root: str  # the pipeline's folder
    top: str  # the repository's top folder
    places: tuple[tuple[str, str], ...]  # (real path, what it is, for messages)
    #: the top folder with one separator after it, and each place's path with "/"
    #: after it: asked of every output of every step before a command runs
    _heads: tuple[str, tuple[str, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        heads = (self.top.rstrip(os.sep) + os.sep, tuple(p + "/" for p, _ in self.places))
        object.__setattr__(self, "_heads", heads)

    def inside(self, real: str) -> bool:
        """Whether a real path is the repository's top folder or inside it."""
        return real == self.top or real.startswith(self._heads[0])

    def reserved(self, real: str) -> tuple[str, str] | None:
        """How a real path inside the repository stands to a `.git` or `.gitpipe` that
        is a part of it (:func:`gitpipe.pipeline.spec.reserved`), or None."""
        rel = _relative(real, self.top, self._heads[0]).replace(os.sep, "/")
        return spec.reserved(rel) if rel != "." else None

    def relation(self, real: str, *, contains: bool = True) -> tuple[str, str] | None:
        """How a real path inside the repository stands to a protected place:
        ("is" | "lies inside" | "contains", what the place is), or None; "contains"
        only where ``contains`` asks."""
        if self.inside(real):
            found = self.reserved(real)
            if found is not None:
                return found
        below = real + "/"  # spec.relation's tests, each path with "/" made once
        for (place, what), place_below in zip(self.places, self._heads[1], strict=True):
            if real == place:
                how = "is"
            elif place.startswith(below):
                how = "contains"
            elif real.startswith(place_below):
                how = "lies inside"
            else:
                continue
            if contains or how != "contains":
                return how, what
        return None


def _relative(real: str, top: str, head: str) -> str:
    """``os.path.relpath(real, top)`` for a real path inside ``top`` (``head``: it with
    one separator after it), by slicing where that gives the same (no part of it to
    normalise): checked for every output of every step before a command runs."""
    if real.startswith(head):
        rel = real[len(head) :]
        wrapped = f"{os.sep}{rel}{os.sep}"  # no part empty, "." or "..", nor any dotted
        if f"{os.sep}." not in wrapped and os.sep * 2 not in wrapped:
            return rel
    return os.path.relpath(real, top)


def protected(project: Workspace, *, top: str | os.PathLike[str] | None = None) -> Protected:
    """The protected places of a project (see :class:`Protected`), resolved now;
    ``top`` is the repository's top folder (found without Git when not given)."""
    root = os.path.realpath(project.root)
    dotgit = dot_git(project.root)
    data_path = datafile.path_for(project.file)
    if top is None:
        top = dotgit.parent if dotgit is not None else project.root
    places = [
        (os.path.realpath(project.state_dir), ".gitpipe, gitpipe's own folder"),
        (os.path.realpath(project.store_dir), f"the store ({project.store_dir})"),
        (
            os.path.realpath(project.lock_path),
            f"{project.lock_path.name}, the pipeline's lock file",
        ),
        (os.path.realpath(project.file), f"the pipeline file {project.file.name}"),
        (os.path.realpath(data_path), f"{data_path.name}, the record of added data"),
    ]
    if dotgit is not None:
        places.insert(0, (os.path.realpath(dotgit), ".git, Git's own folder"))
    pipeline = project.pipeline
    for include in pipeline.includes:
        places.append((os.path.realpath(project.root / include), f"the pipeline file {include}"))
    for params_file in pipeline.params_files:  # reached through a linked folder, say
        where = os.path.realpath(project.root / params_file.path)
        places.append((where, f"the params file {params_file.written}"))
    return Protected(root=root, top=os.path.realpath(top), places=tuple(places))


def check_write(guarded: Protected, relpath: str) -> None:
    """Raise :class:`UnsafePath` unless gitpipe may remove, replace, link or chmod
    ``relpath`` (relative to the pipeline's folder) now: no part of it is `.git` or
    `.gitpipe`; each folder on the way to it, from the pipeline's folder down (looked
    at with ``lstat``), is a real folder or a link to one inside the repository and
    outside every protected place; and the path itself is no protected place, nor
    lies inside or contains one.  Its last part is not followed: gitpipe replaces a
    link, never what it points to."""
    part = spec.reserved_part(relpath)
    if part is not None:
        raise UnsafePath(
            f"refusing to write {relpath}: {part} is {spec.RESERVED_WHAT[part.casefold()]}"
        )
    here = guarded.root
    parts = relpath.split("/")
    for i, name in enumerate(parts[:-1]):
        here = os.path.join(here, name)
        shown = "/".join(parts[: i + 1])
        try:
            st = os.lstat(here)
        except FileNotFoundError:  # the rest is made as real folders
            here = os.path.join(here, *parts[i + 1 : -1])
            break
        except OSError as exc:
            raise UnsafePath(
                f"refusing to write {relpath}: cannot look at {shown} ({exc.strerror})"
            ) from exc
        if statmod.S_ISLNK(st.st_mode):
            real = os.path.realpath(here)
            if not guarded.inside(real):
                raise UnsafePath(
                    f"refusing to write {relpath}: {shown} is a link leading outside the "
                    f"repository (to {real})"
                )
            found = guarded.relation(real, contains=False)
            if found is not None or not os.path.isdir(real):
                what = f"{found[0]} {found[1]}" if found else "is no folder"
                raise UnsafePath(
                    f"refusing to write {relpath}: {shown} is a link to {real}, which {what}"
                )
            here = real
        elif not statmod.S_ISDIR(st.st_mode):
            raise UnsafePath(f"refusing to write {relpath}: {shown} is not a folder")
    found = guarded.relation(os.path.join(here, parts[-1]))
    if found is not None:
        raise UnsafePath(f"refusing to write {relpath}: it {found[0]} {found[1]}")


def check_produced(guarded: Protected, relpath: str) -> None:
    """Raise :class:`UnsafePath` unless what a step left at ``relpath`` (one of its
    outputs) may be stored: :func:`check_write` holds for it; it is no link leading
    outside the repository or into a protected place, nor a link to a folder; and,
    for a folder, nothing in it is named `.git` or `.gitpipe` or is such a link."""
    check_write(guarded, relpath)
    why = stored_refusal(guarded, relpath)
    if why:
        raise UnsafePath(f"refusing to store {relpath}: {why}")


def stored_refusal(guarded: Protected, relpath: str) -> str:
    """Why what is at ``relpath`` must not go into the store ("" when it may): it is
    a link leading outside the repository or into a protected place, or a link to a
    folder; or, a folder, it holds `.git`, `.gitpipe` or such a link (the message
    names it).  Its folders are checked by :func:`check_write`."""
    full = os.path.join(guarded.root, relpath)
    why = _link_refusal(guarded, full, top_level=True)
    if why:
        return f"it {why}"
    if not os.path.isdir(full) or os.path.islink(full):
        return ""
    stack = [""]
    while stack:  # by the folder's own listing: one lstat per link, none per file
        sub = stack.pop()
        with os.scandir(os.path.join(full, sub) if sub else full) as scan:
            for item in scan:
                rel = f"{sub}/{item.name}" if sub else item.name
                if item.name.casefold() in spec.RESERVED_NAMES:
                    why = f"is {item.name}, {spec.RESERVED_WHAT[item.name.casefold()]}"
                elif item.is_symlink():
                    why = _link_refusal(guarded, item.path, top_level=False)
                else:
                    why = ""
                    if item.is_dir(follow_symlinks=False):
                        stack.append(rel)
                if why:
                    return f"{relpath}/{rel} {why}"
    return ""


def _link_refusal(guarded: Protected, path: str, *, top_level: bool) -> str:
    """Why a link a step left among its outputs must not be stored ("" when it may,
    or is no link): it leads outside the repository or into a protected place, or,
    as an output itself, to a folder (inside a folder output the hasher refuses links
    to folders)."""
    if not os.path.islink(path):
        return ""
    real = os.path.realpath(path)
    if not guarded.inside(real):
        return f"is a link leading outside the repository (to {real})"
    found = guarded.relation(real, contains=False)
    if found is not None:
        return f"is a link to {real}, which {found[0]} {found[1]}"
    if top_level and os.path.isdir(real):
        return f"is a link to a folder ({real}); gitpipe follows links to files only"
    return ""


def reserved_inside(folder: str | os.PathLike[str]) -> str | None:
    """The first `.git` or `.gitpipe` inside a folder (relative path), by names only;
    None when there is none (or the folder cannot be listed)."""
    base = os.fspath(folder)
    for here, dirs, files in os.walk(base):
        for name in dirs + files:
            if name.casefold() in spec.RESERVED_NAMES:
                return os.path.relpath(os.path.join(here, name), base).replace(os.sep, "/")
    return None
