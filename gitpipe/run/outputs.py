"""A step's outputs in the workspace: restored from the store, put aside before a
step runs, stored after it ran, linked to the store's objects where `link` asks.

Every write re-checks its path at the moment it writes
(:func:`gitpipe.run.guard.check_write`): nothing outside a step's declared outputs is
ever written, linked, chmodded or deleted.  A restore makes (and checks) every output
before it replaces any, so that a corrupt object leaves all of them as they were.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple

from gitpipe.core.errors import CorruptObject, StoreError, UnsafePath
from gitpipe.core.hashing import Digest
from gitpipe.identity.statcache import Hasher, PathState
from gitpipe.pipeline import spec
from gitpipe.run import guard
from gitpipe.run.inputs import UNREADABLE, Check
from gitpipe.store.objects import Store, settle, unstage
from gitpipe.store.runcache import OutRecord, Result

if TYPE_CHECKING:
    from gitpipe.run.context import Workspace


class Placement(NamedTuple):
    """One path to put stored bytes at: where, what (``out``), what is there now
    (None: nothing), and how (``link``: copy, hardlink or symlink)."""

    path: spec.PathSpec
    out: OutRecord
    now: PathState | None
    link: str


def holds(now: PathState | None, out: OutRecord) -> bool:
    """Whether a path's state ``now`` is what ``out`` records: the same digest and
    kind, and, for a file, the same executable bit."""
    return (
        now is not None
        and now.digest == out.digest
        and now.is_dir == out.is_dir
        and (out.is_dir or now.executable == out.executable)
    )


def link_of(step: spec.Step) -> str:
    """How a step's outputs are put in the workspace: as it asks, except that a step
    keeping its outputs (`persist`) may write into them, so they are never the
    store's own objects."""
    return "copy" if step.persist else step.link


class Outputs:
    """The outputs of one repro's steps, as gitpipe writes them."""

    def __init__(
        self, project: Workspace, store: Store, hasher: Hasher, guarded: guard.Protected
    ) -> None:
        self.project = project
        self.store = store
        self.hasher = hasher
        self.guarded = guarded

    def restore(self, step: spec.Step, result: Result, check: Check) -> None:
        """Put a result's outputs in place, those that differ from it; raises
        :class:`UnsafePath`, before writing any, where one of them may not be written
        (or a stored folder holds `.git` or `.gitpipe`)."""
        link = link_of(step)
        todo = []
        for spec_ in step.all_outs:
            out = result.outs[spec_.path]
            now = check.outs_now.get(str(spec_))
            if not holds(now, out):
                todo.append(Placement(spec_, out, now, link))
        self.place(todo)

    def place(self, todo: Sequence[Placement]) -> None:
        """Put stored bytes in place of each path of ``todo`` (each linked as its
        ``link`` says), keeping in the store the bytes each replaces; raises
        :class:`UnsafePath`, before writing any, where one of them may not be written
        (or a stored folder holds `.git` or `.gitpipe`), and :class:`CorruptObject`,
        before writing any, where an object's bytes are not its name."""
        for spec_, out, now, link in todo:
            self.check_replace(spec_, now)
            if out.is_dir:
                try:
                    entries = self.store.manifest(out.digest)
                except CorruptObject as exc:  # named with its folder, as a restore names it
                    where = f"{self.project.root / spec_.path}/"
                    raise CorruptObject(out.digest, target=where) from exc
                for entry in entries:
                    if spec.reserved_part(entry.path) is not None:
                        raise UnsafePath(
                            f"refusing to restore {spec_}: the stored folder holds "
                            f"{entry.path}, which gitpipe never writes"
                        )
            if link != "copy":  # a link is not read: the output may show what the store cannot
                self._check_linked(spec_.path, now, out)
        # every output made (and its bytes checked) first, so that a corrupt object
        # leaves all of them as they were; then each put in place
        staged: list[str] = []
        try:
            for spec_, out, _now, link in todo:
                staged.append(self._prepare(spec_.path, out, link))
        except BaseException:
            for path in staged:
                unstage(path)
            raise
        for i, (spec_, out, now, link) in enumerate(todo):
            try:
                self.save_before_replacing(spec_, now)
                guard.check_write(self.guarded, spec_.path)
                settle(staged[i], self.project.root / spec_.path)
            except BaseException:
                for path in staged[i + 1 :]:
                    unstage(path)
                raise
            self.hasher.forget(spec_.path)
            if link != "copy":
                self._learn(spec_.path, out)

    def _prepare(self, relpath: str, out: OutRecord, link: str) -> str:
        """A stored output made ready to be put at ``relpath`` (copied, and checked, or
        linked as ``link`` says): see :meth:`gitpipe.store.objects.Store.prepare_file`."""
        guard.check_write(self.guarded, relpath)
        target = self.project.root / relpath
        scratch = self.project.state_dir / "tmp"
        if out.is_dir:
            return self.store.prepare_tree(out.digest, target, link=link, scratch=scratch)
        return self.store.prepare_file(
            out.digest, target, executable=out.executable, link=link, scratch=scratch
        )

    def _check_linked(self, relpath: str, now: PathState | None, out: OutRecord) -> None:
        """Raise :class:`CorruptObject` when an output file that is still the object it
        is restored from (a link made before) holds other bytes than that object's
        name: its bytes, hashed for this decision, are the object's, so the object is
        corrupt (written to through the link).  Costs a stat per differing file."""
        if now is None or now.is_dir != out.is_dir:
            return
        if out.is_dir:
            try:
                entries = self.store.manifest(out.digest)
            except CorruptObject as exc:
                raise CorruptObject(out.digest, target=f"{self.project.root / relpath}/") from exc
            held = {e.path: e.digest for e in self.hasher.manifest(relpath)}
            wanted = [(f"{relpath}/{e.path}", e.digest, held.get(e.path)) for e in entries]
        else:
            wanted = [(relpath, out.digest, now.digest)]
        for path, digest, current in wanted:
            if current is None or current == digest:
                continue
            with contextlib.suppress(OSError):
                target = self.project.root / path
                if os.path.samefile(target, self.store.object_path(digest)):
                    raise CorruptObject(digest, target=str(target))

    def check_replace(self, out: spec.PathSpec, now: PathState | None) -> None:
        """Raise :class:`UnsafePath` unless gitpipe may remove or replace an output
        now: its path passes :func:`gitpipe.run.guard.check_write`, and a folder there
        holds no `.git` or `.gitpipe` (a repository made inside it by hand)."""
        guard.check_write(self.guarded, out.path)
        target = self.project.root / out.path
        if now is not None and now.is_dir and not target.is_symlink():
            found = guard.reserved_inside(target)
            if found is not None:
                raise UnsafePath(
                    f"refusing to replace {out}: it holds {out.path}/{found}, which gitpipe "
                    "never removes"
                )

    def save_before_replacing(self, out: spec.PathSpec, now: PathState | None) -> None:
        """Keep a copy in the store of output bytes gitpipe is about to replace, so
        that nothing a user made by hand is lost (its path checked again first).  A
        link is not followed: its bytes are where it points, and stay there."""
        guard.check_write(self.guarded, out.path)
        target = self.project.root / out.path
        if now is None or now is UNREADABLE or target.is_symlink():
            return  # nothing there, no bytes to keep (a FIFO, a device), or a link
        if now.is_dir:
            if now.digest not in self.store:
                self.store.add_tree(target, self.hasher.manifest(out.path))
        else:
            self.store.add_file(target, now.digest)

    def unlink_from_store(self, out: spec.PathSpec, now: PathState | None) -> str:
        """A `persist` step writes into its outputs: any file of them that is still one
        of the store's objects (the step had `link` set before) becomes a copy first.
        Returns why that failed ('' when it did not): the step must not run then."""
        if now is None:
            return ""
        if now.is_dir:
            files = [
                (f"{out.path}/{entry.path}", entry.digest)
                for entry in self.hasher.manifest(out.path)
            ]
        else:
            files = [(out.path, now.digest)]
        for relpath, digest in files:
            guard.check_write(self.guarded, relpath)
            target = self.project.root / relpath
            try:
                linked = os.path.samefile(target, self.store.object_path(digest))
            except OSError:
                continue  # gone, or its object is: the command cannot write into the store
            if not linked:
                continue
            try:
                self.store.detach(target, executable=os.access(target, os.X_OK))
            except (OSError, StoreError) as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                return (
                    f"{relpath} is still the store's own object and could not be made a copy "
                    f"for this `persist` step to write into ({why}); the step did not run: "
                    f"make its folder writable, or delete {relpath}, and run again"
                )
        return ""

    def store_output(self, spec_: spec.PathSpec, out: OutRecord, link: str) -> None:
        """Put a finished step's output into the store (linked back as ``link`` asks)."""
        target = self.project.root / spec_.path
        if link != "copy":  # a sibling running now may have swapped a folder since
            guard.check_write(self.guarded, spec_.path)
        if out.is_dir:
            self.store.add_tree(target, self.hasher.manifest(spec_.path), link=link != "copy")
        else:
            self.store.add_file(target, out.digest, link=link != "copy" and not out.executable)
        if link != "copy":
            self.link_output(spec_.path, out, link)

    def link_output(self, relpath: str, out: OutRecord, link: str) -> None:
        """Make the files of a just-stored output the store's own objects, as ``link``
        asks, one by one (each renamed over its copy), except executable files."""
        if out.is_dir:
            files = [
                (f"{relpath}/{entry.path}", entry.digest)
                for entry in self.store.manifest(out.digest)
                if not entry.executable
            ]
        else:
            files = [] if out.executable else [(relpath, out.digest)]
        for path, digest in files:
            guard.check_write(self.guarded, path)
            if self._link_file(path, digest, link):
                self.hasher.learn(path, digest)

    def _link_file(self, relpath: str, digest: Digest, link: str) -> bool:
        """Make one output file the store's object, unless it is one already (linked in
        as it was added); False where it stays a copy (a hard link to another device)."""
        target = self.project.root / relpath
        here = os.stat(target)
        there = os.stat(self.store.object_path(digest))
        if (here.st_ino, here.st_dev) == (there.st_ino, there.st_dev):
            if link == "hardlink" or target.is_symlink():
                return True
        elif link == "hardlink" and here.st_dev != there.st_dev:
            return False
        self.store.restore_file(digest, target, link=link)
        return True

    def _learn(self, relpath: str, out: OutRecord) -> None:
        """Tell the stat cache the digests of an output just linked from the store."""
        if out.is_dir:
            for entry in self.store.manifest(out.digest):
                self.hasher.learn(f"{relpath}/{entry.path}", entry.digest)
        else:
            self.hasher.learn(relpath, out.digest)
