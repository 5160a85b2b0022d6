"""Data too big for Git, versioned beside the code: `gitpipe add`, `remove`, `checkout`,
and what `status` says of added data.

    add PATH ──checks (nothing written until all pass)──> each file into the store,
        hashed as it is copied (or linked in), its digest into the stat cache
        ──> gitpipe.data (store/datafile) ──> one `/PATH` line in .gitignore
    remove PATH ──> the record and the .gitignore line go; the file stays (a link to
        the store becomes a file of its own)
    checkout [PATH] ──> every added path and every output gitpipe.lock names
        ──(--pull: fetch what the store lacks)──> refuse: objects missing (exit 3),
        bytes gitpipe never recorded (unless --force) ──> the verified restore
        (run/outputs.Outputs.place); nothing runs; lock and lineage untouched

Published last: the bytes are in the store before gitpipe.data names them, and
gitpipe.data is written before .gitignore.
"""

from __future__ import annotations

import contextlib
import os
import stat as statmod
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitpipe.core import atomic
from gitpipe.core.console import first_of
from gitpipe.core.errors import (
    CorruptObject,
    GitpipeError,
    PathError,
    PipelineError,
    StaleError,
    StoreError,
    UnsafePath,
    UsageError,
)
from gitpipe.core.hashing import Digest, manifest_bytes
from gitpipe.identity.statcache import Hasher, PathState
from gitpipe.pipeline import spec
from gitpipe.run import guard
from gitpipe.run.inputs import UNREADABLE
from gitpipe.run.outputs import Outputs, Placement, holds, link_of
from gitpipe.store import datafile
from gitpipe.store.datafile import DataRecord, DataRecords
from gitpipe.store.objects import Store
from gitpipe.store.runcache import OutRecord
from gitpipe.store.trust import SetAside

if TYPE_CHECKING:
    from gitpipe.store.remote import Selection
    from gitpipe.workspace import Project

#: what `status` says of an added path
IN_SYNC, CHANGED, MISSING = "up to date", "changed", "missing"


@dataclass(frozen=True, slots=True)
class DataState:
    """An added path and how the workspace stands to its record."""

    path: str  # as gitpipe.data writes it: a folder with its trailing slash
    state: str  # up to date | changed | missing

    def __str__(self) -> str:
        return f"data {self.state}: {self.path}"

    def to_json(self) -> dict[str, str]:
        return {"data": self.path, "state": self.state}


@dataclass(frozen=True, slots=True)
class Added:
    """What `gitpipe add` did with one path: ``added`` (new), ``updated`` (a new
    version) or ``unchanged``."""

    record: DataRecord
    how: str
    #: corrupt objects (edited through a link) its bytes replaced, now in the quarantine
    set_aside: tuple[SetAside, ...] = ()

    def to_json(self) -> dict[str, Any]:
        r = self.record
        found = {"path": r.name, "how": self.how, "digest": str(r.digest), "size": r.size}
        if self.set_aside:
            found["set_aside"] = [str(s.digest) for s in self.set_aside]
        return found

    def warnings(self, root: Path) -> list[str]:
        """One line for each corrupt object its bytes replaced."""
        shown = str(root) + os.sep
        return [
            f"object {s.digest} was corrupt (its bytes do not hash to its name: written to "
            f"through a link?): moved to {str(s.where).removeprefix(shown)}; stored again "
            f"from {s.source.removeprefix(shown)}"
            for s in self.set_aside
        ]


@dataclass(slots=True)
class CheckoutReport:
    """What `gitpipe checkout` did: the paths it put back, those that were as
    recorded already, and the objects it fetched from the remote; ``warnings``: lines
    for stderr (the remote's pack indexes a ``--pull`` did not use)."""

    restored: list[str] = field(default_factory=list)
    unchanged: int = 0
    fetched: int = 0
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"restored": self.restored, "unchanged": self.unchanged, "fetched": self.fetched}

    def lines(self) -> list[str]:
        """What `gitpipe checkout` prints: each path put back, then a count."""
        fetched = f"; fetched {self.fetched} object(s)" if self.fetched else ""
        return [f"restored {path}" for path in self.restored] + [
            f"{len(self.restored)} path(s) restored, {self.unchanged} as recorded already{fetched}"
        ]


def records_path(project: Project) -> Path:
    return datafile.path_for(project.file)


def read_records(project: Project) -> DataRecords:
    return datafile.read(records_path(project))


# -- which path a user means ------------------------------------------------------------


def relative(project: Project, given: str, *, verb: str) -> str:
    """``given`` (relative to the current folder) relative to the pipeline's folder,
    its folders resolved and its last part not followed; :class:`UsageError` when it
    is outside the repository, is the pipeline's folder, or is in `.git`/`.gitpipe`."""
    full = os.path.normpath(os.path.join(os.getcwd(), given))
    parent, leaf = os.path.split(full)
    place = os.path.join(os.path.realpath(parent), leaf)
    top = guard.dot_git(project.root)
    top_folder = os.path.realpath(top.parent if top is not None else project.root)
    root = os.path.realpath(project.root)
    if not (place == top_folder or place.startswith(top_folder.rstrip(os.sep) + os.sep)):
        raise UsageError(f"cannot {verb} {given}: it is outside the repository ({top_folder})")
    rel = os.path.relpath(place, root).replace(os.sep, "/")
    part = spec.reserved_part(rel)
    if part is not None:
        raise UsageError(
            f"cannot {verb} {given}: {part} is {spec.RESERVED_WHAT[part.casefold()]}; "
            "gitpipe never tracks anything there"
        )
    if rel == "." or rel == ".." or rel.startswith("../"):
        raise UsageError(
            f"cannot {verb} {given}: only paths inside the pipeline's folder ({root}) "
            "can be tracked, not the folder itself"
        )
    return rel


# -- add ----------------------------------------------------------------------------------


def _need_pipeline(project: Project, verb: str) -> None:
    if not project.file.is_file():
        raise PipelineError(
            f"no pipeline file here, so nothing to {verb} with; run `gitpipe init` to "
            "create one, or pass -f FILE",
            file=project.file.name,
        )


def _refusal(project: Project, rel: str, guarded: guard.Protected, records: DataRecords) -> str:
    """Why ``rel`` may not be added ('' when it may)."""
    full = project.root / rel
    if not full.exists() and not full.is_symlink():
        return "it does not exist"
    try:
        guard.check_write(guarded, rel)
    except UnsafePath as exc:
        return str(exc).split(": ", 1)[-1]
    if rel.rpartition("/")[2] == ".gitignore":
        return "gitpipe edits .gitignore files itself; commit them to Git"
    if "\\" in rel:  # gitpipe's paths never hold one (it reads as a folder separator)
        return "its name holds a backslash, which gitpipe does not take in a path"
    if any(ord(char) < 32 or ord(char) == 127 for char in rel):
        # a line break would make the .gitignore line two, the second ignoring
        # whatever it happens to name anywhere in the repository
        return (
            "its name holds a line break or another control character, which a "
            ".gitignore line cannot hold"
        )
    why = guard.stored_refusal(guarded, rel)
    if why:
        return why
    if not full.exists():
        return "it is a link to nothing"
    for name, step in project.pipeline.steps.items():
        for out in step.all_outs:
            how = spec.relation(rel, out.path)
            if how is not None:
                return (
                    f"it {how} {out}, an output of step {name!r}; `gitpipe repro {name}` "
                    "makes it and gitpipe.lock records it: use the step instead"
                )
    holder = records.holding(rel)
    if holder is not None and holder.path != rel:
        return f"it lies inside {holder.name}, added already; add that folder again instead"
    inside = records.inside(rel)
    if inside:
        shown = ", ".join(r.name for r in inside[:3])
        return f"it holds added data ({shown}); `gitpipe remove` that first"
    return ""


def add(project: Project, paths: Sequence[str], *, link: str | None = None) -> list[Added]:
    """Track files and folders too big for Git (see :func:`_add`), holding the
    workspace: two adds at once, or an add beside a repro, never lose a record."""
    _need_pipeline(project, "add")
    _checked(project, paths, link)  # a refusal touches nothing, the workspace lock too
    with _exclusive(project):
        return _add(project, paths, link=link)


def _add(project: Project, paths: Sequence[str], *, link: str | None = None) -> list[Added]:
    """Track files and folders too big for Git: their bytes into the store, path ->
    digest into gitpipe.data, an anchored line into .gitignore (see the module's
    docstring).  Every path is checked before anything is written
    (:class:`UsageError`, exit 2); ``link`` (default: ``[pipeline] link``) is how they
    stay in the workspace and how `checkout` puts them back."""
    records, guarded, chosen = _checked(project, paths, link)
    mode = link or project.pipeline.link
    project.ensure_state_dir()
    store = Store(project.store_dir)
    done: list[Added] = []
    with project.inputs(readonly=False) as inputs:
        hasher = inputs.hasher
        outputs = Outputs(project, store, hasher, guarded)
        for rel in chosen:
            record = _store(project, store, hasher, outputs, rel, mode)
            set_aside, store.set_aside = tuple(store.set_aside), []
            before = records.get(rel)
            how = "added" if before is None else "updated"
            if before is not None and (before.digest, before.is_dir) == (
                record.digest,
                record.is_dir,
            ):
                how = "unchanged"
            done.append(Added(record, how, set_aside))
    project.register_clone()
    datafile.write(records_path(project), records.with_(*(a.record for a in done)))
    _edit_gitignore(project, add=chosen)
    return done


def _checked(
    project: Project, paths: Sequence[str], link: str | None
) -> tuple[DataRecords, guard.Protected, list[str]]:
    """The records, the protected places and the paths to add, relative to the
    pipeline's folder; :class:`UsageError` (exit 2) for the first that may not be."""
    _need_pipeline(project, "add")
    if not paths:
        raise UsageError("name the files or folders to add")
    if link is not None and link not in spec_links():
        raise UsageError(f"--link takes one of: {', '.join(spec_links())}")
    records = read_records(project)
    guarded = guard.protected(project)
    chosen = list(dict.fromkeys(relative(project, p, verb="add") for p in paths))
    for given, rel in zip(paths, chosen, strict=False):
        why = _refusal(project, rel, guarded, records)
        if why:
            shown = given if given.isprintable() else repr(given)  # one line, always
            raise UsageError(f"cannot add {shown}: {why}")
    for rel in chosen:
        for other in chosen:
            if other != rel and other.startswith(rel + "/"):
                raise UsageError(f"cannot add {rel} and {other} both: one holds the other")
    _refuse_tracked(project, chosen)
    return records, guarded, chosen


def spec_links() -> tuple[str, ...]:
    from gitpipe.pipeline.model import LINKS

    return LINKS


def _refuse_tracked(project: Project, chosen: Sequence[str]) -> None:
    with project.repository() as repo:
        if repo is None:
            return
        prefix = repo.relpath(project.root)
        wanted = {(f"{prefix}/{rel}" if prefix else rel): rel for rel in chosen}
        for path, example in repo.tracked_under(wanted).items():
            flag = "-r " if (project.root / wanted[path]).is_dir() else ""
            raise UsageError(
                f"cannot add {wanted[path]}: Git tracks it ({example}); untrack it with "
                f"`git rm {flag}--cached {path}` (the files stay), then add it again"
            )


def _store(
    project: Project, store: Store, hasher: Hasher, outputs: Outputs, rel: str, link: str
) -> DataRecord:
    """One path into the store, each file read once; its record."""

    def take(key: str, full: str, st: os.stat_result) -> Digest:
        known = hasher.cache.lookup(key, st)
        if known is not None and store.keeps(known, source=full, seen=st):  # else again
            return known
        taken_ns = time.time_ns()
        linked = link != "copy" and not st.st_mode & 0o100
        changed = PathError(f"{key} changed while it was being added; run again")
        try:
            digest = store.ingest(full, link=linked)  # refuses a file changed as it is read
            after = os.stat(full)
        except PathError as exc:
            raise changed from exc
        except OSError as exc:
            raise PathError(f"cannot add {key} ({exc.strerror})") from exc
        if _seen(after, linked=linked) != _seen(st, linked=linked):  # since it was first seen
            raise changed
        hasher.cache.record(key, after, digest, taken_ns)
        return digest

    full = project.root / rel
    try:
        st = os.stat(full)
    except OSError as exc:
        raise PathError(f"cannot add {rel} ({exc.strerror})") from exc
    if statmod.S_ISDIR(st.st_mode):
        entries = hasher.manifest(rel, take=take)
        digest = store.add_bytes(manifest_bytes(entries))
        size = sum(e.size for e in entries)
        record = DataRecord(rel, digest, size, True, len(entries), link=link)
    elif statmod.S_ISREG(st.st_mode):
        digest = take(rel, str(full), st)
        record = DataRecord(rel, digest, st.st_size, executable=bool(st.st_mode & 0o100), link=link)
    else:
        raise UsageError(f"cannot add {rel}: only files and folders can be added")
    if link != "copy":
        outputs.link_output(rel, _out(record), link)
    hasher.forget(rel)
    return record


def _seen(st: os.stat_result, *, linked: bool) -> tuple[int, int, int, int]:
    """What must not change between a file's first stat and its bytes stored: its
    inode, size, mtime and ctime (not the ctime when it was linked in: the new link
    changes it)."""
    return (st.st_ino, st.st_size, st.st_mtime_ns, 0 if linked else st.st_ctime_ns)


def _out(record: DataRecord) -> OutRecord:
    return OutRecord(record.digest, record.is_dir, record.size, record.executable)


# -- .gitignore ---------------------------------------------------------------------------


def ignore_line(rel: str) -> str:
    """The anchored .gitignore line of a path: ``/PATH``, with the characters Git
    reads as patterns escaped."""
    escaped = "".join("\\" + c if c in "\\*?[" else c for c in rel)
    if escaped.endswith(" "):
        escaped = escaped[:-1] + "\\ "
    return "/" + escaped


def _edit_gitignore(project: Project, *, add: Iterable[str] = (), drop: Iterable[str] = ()) -> None:
    """Append one line per added path to the .gitignore beside the pipeline file (not
    twice), or take a removed path's line out; written atomically."""
    path = project.root / ".gitignore"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    lines = text.splitlines()
    new = list(lines)
    gone = {ignore_line(rel) for rel in drop}
    new = [line for line in new if line not in gone]
    for rel in add:
        line = ignore_line(rel)
        if line not in new:
            new.append(line)
    if new == lines:
        return
    atomic.write_bytes(path, ("\n".join(new) + "\n" if new else "").encode("utf-8"))


# -- remove -------------------------------------------------------------------------------


def remove(project: Project, paths: Sequence[str]) -> list[DataRecord]:
    """Stop tracking added paths (see :func:`_remove`), holding the workspace."""
    _removed(project, paths)  # a refusal touches nothing, the workspace lock too
    with _exclusive(project):
        return _remove(project, paths)


def _remove(project: Project, paths: Sequence[str]) -> list[DataRecord]:
    """Stop tracking added paths: their records and .gitignore lines go; the files
    stay in the workspace (one that is a link to the store becomes a file of its own,
    writable), their bytes in the store until `gitpipe gc`.  :class:`UsageError`,
    nothing changed, when a path is not added data."""
    records, chosen = _removed(project, paths)
    guarded = guard.protected(project)
    store = Store(project.store_dir)
    for record in chosen:
        _detach(project, guarded, store, record)
    datafile.write(records_path(project), records.without(*(r.path for r in chosen)))
    _edit_gitignore(project, drop=[r.path for r in chosen])
    return chosen


def _removed(project: Project, paths: Sequence[str]) -> tuple[DataRecords, list[DataRecord]]:
    """The records and those of ``paths``; :class:`UsageError` for a path that is not
    added data."""
    _need_pipeline(project, "remove")
    if not paths:
        raise UsageError("name the added files or folders to remove")
    records = read_records(project)
    chosen = []
    for given in paths:
        rel = relative(project, given, verb="remove")
        record = records.get(rel)
        if record is None:
            raise UsageError(
                f"cannot remove {given}: {records_path(project).name} does not track it"
                + (f" (it tracks {records.holding(rel).name})" if records.holding(rel) else "")  # type: ignore[union-attr]
            )
        chosen.append(record)
    return records, chosen


def _detach(project: Project, guarded: guard.Protected, store: Store, record: DataRecord) -> None:
    """Make the files of an added path that are links to the store's objects files
    of their own (a symbolic link would point at nothing once `gc` removes them)."""
    full = project.root / record.path
    if record.link == "copy" or not full.exists():
        return
    if full.is_dir() and not full.is_symlink():
        files = [p for p in full.rglob("*") if p.is_file()]
    else:
        files = [full]
    for path in files:
        rel = path.relative_to(project.root).as_posix()
        guard.check_write(guarded, rel)
        linked = path.is_symlink() or os.stat(path).st_nlink > 1
        if linked:
            with contextlib.suppress(OSError):
                store.detach(path, executable=os.access(path, os.X_OK))


# -- status -------------------------------------------------------------------------------


def states(records: DataRecords, hasher: Hasher) -> list[DataState]:
    """How the workspace stands to each record, through the stat cache: a file
    unchanged since it was last hashed is not read."""
    found = []
    for record in records:
        try:
            now = hasher.state(record.path)
        except PathError:
            now = UNREADABLE
        if now is None:
            state = MISSING
        elif holds(now, _out(record)):
            state = IN_SYNC
        else:
            state = CHANGED
        found.append(DataState(record.name, state))
    return found


def refusal(data: Iterable[DataState]) -> str:
    """What `status --check` says of added data that differs ('' when none does)."""
    off = [d for d in data if d.state != IN_SYNC]
    if not off:
        return ""
    shown = "; ".join(str(d) for d in off[:5]) + ("; ..." if len(off) > 5 else "")
    return (
        f"{shown}: the workspace does not hold what gitpipe.data records; `gitpipe checkout` "
        "puts it back, `gitpipe add` records the new version"
    )


# -- checkout -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    """A path `checkout` puts back: what it should hold and how it is put there."""

    path: str
    out: OutRecord
    link: str
    what: str  # "added data" | "an output of step NAME"


def _targets(project: Project, records: DataRecords) -> list[_Target]:
    lock = project.read_lock()
    found = [_Target(r.path, _out(r), r.link, "added data") for r in records]
    for name, entry in sorted(lock.steps.items()):
        step = project.pipeline.steps.get(name)
        link = link_of(step) if step is not None else "copy"
        for written, digest in sorted(entry.outs.items()):
            is_dir = written.endswith("/")
            out = OutRecord(digest, is_dir, 0, not is_dir and written in entry.executable)
            found.append(_Target(written.removesuffix("/"), out, link, f"output of step {name}"))
    return found


def _chosen(project: Project, targets: list[_Target], paths: Sequence[str]) -> list[_Target]:
    if not paths:
        return targets
    chosen: dict[str, _Target] = {}
    for given in paths:
        rel = relative(project, given, verb="check out")
        hits = [
            t for t in targets if spec.relation(rel, t.path) in ("is", "contains", "lies inside")
        ]
        if not hits:
            raise UsageError(
                f"cannot check out {given}: neither {records_path(project).name} nor "
                f"{project.lock_path.name} records it"
            )
        chosen.update((t.path, t) for t in hits)
    return [t for t in targets if t.path in chosen]


def checkout(
    project: Project,
    paths: Sequence[str] = (),
    *,
    pull: bool = False,
    force: bool = False,
    remote: str | None = None,
) -> CheckoutReport:
    """Put every added path and every output gitpipe.lock names (or those ``paths``
    name) back to what the current records say, from the store (``pull``: fetching
    from the remote what it lacks first); nothing runs, gitpipe.lock and lineage are
    not written.  Before anything is written: :class:`StaleError` (exit 3) naming
    each path whose bytes are nowhere to be had, and each file holding bytes gitpipe
    never recorded, which only ``force`` overwrites (they are kept in the store)."""
    _need_pipeline(project, "check out")
    targets = _chosen(project, _targets(project, read_records(project)), paths)
    return _put_back(project, targets, pull=pull, force=force, remote=remote)


@contextlib.contextmanager
def _exclusive(project: Project) -> Iterator[None]:
    """Hold the workspace as `repro` does, so that the two never write at once."""
    from gitpipe.workspace.wslock import workspace_lock

    project.ensure_state_dir()
    with workspace_lock(project.state_dir / "repro.lock", wait=True, emit=lambda event: None):
        yield


def _put_back(
    project: Project,
    targets: Sequence[_Target],
    *,
    pull: bool,
    force: bool,
    remote: str | None,
    only_missing: bool = False,
) -> CheckoutReport:
    report = CheckoutReport()
    store = Store(project.store_dir)
    guarded = guard.protected(project)
    with project.inputs(readonly=False) as inputs:

        def refused(error: GitpipeError) -> GitpipeError:
            inputs.hasher.cache.readonly = True  # refused: nothing written, the stat cache too
            return error

        todo = []
        for target in targets:
            now = inputs.out_state(target.path)
            if holds(now, target.out) or (only_missing and now is not None):
                report.unchanged += 1
            else:
                todo.append((target, now))
        wanted = [t for t, _ in todo]
        # a folder's corrupt manifest would pass for bytes the store lacks, and a pull
        # would never fetch it again (the store has an object of that name): aside first
        set_aside: set[Digest] = set()
        for corrupt in _corrupt_manifests(project, store, wanted):
            store.quarantine(corrupt.digest)
            if not pull:
                raise refused(_corrupt(project, corrupt, wanted, pulled=False))
            set_aside.add(corrupt.digest)
        if pull and wanted:
            report.fetched, report.warnings = _fetch(project, store, wanted, remote)
        lacking = [t for t in wanted if not _present(store, t.out)]
        if only_missing:
            todo = [(t, now) for t, now in todo if t not in lacking]
            wanted = [t for t, _ in todo]
        elif lacking:
            raise refused(StaleError(_lacking(lacking, pull)))
        if not force:
            mine = [
                name for t, now in todo for name in _unrecorded(store, inputs.hasher, t.path, now)
            ]
            if mine:
                why = (
                    f"not overwriting {first_of(mine, 5)}: gitpipe never recorded these "
                    "bytes (edited by hand?); `gitpipe add` them, move them away, or pass "
                    "--force (their bytes are then kept in the store)"
                )
                raise refused(StaleError(why))
        outputs = Outputs(project, store, inputs.hasher, guarded)
        placements = [
            Placement(spec.PathSpec(t.path, t.out.is_dir), t.out, now, t.link) for t, now in todo
        ]
        while placements:
            try:
                with _exclusive(project):
                    outputs.place(placements)
                break
            except CorruptObject as exc:  # nothing was written: every object is checked first
                if not isinstance(exc.digest, Digest):
                    raise
                moved = store.quarantine(exc.digest)
                if moved is None and exc.digest in store and exc.digest not in set_aside:
                    set_aside.add(exc.digest)  # another process put good bytes there since
                    continue
                if not pull or exc.digest in set_aside:
                    raise refused(_corrupt(project, exc, wanted, pulled=pull)) from exc
                set_aside.add(exc.digest)
                fetched, warnings = _fetch(project, store, wanted, remote)
                report.fetched += fetched
                report.warnings += [w for w in warnings if w not in report.warnings]
                lacking = [t for t in wanted if not _present(store, t.out)]
                if lacking:
                    raise refused(StaleError(_lacking(lacking, True))) from exc
        report.restored = [t.path + ("/" if t.out.is_dir else "") for t in wanted]
    return report


def _corrupt(
    project: Project, exc: CorruptObject, targets: Sequence[_Target], *, pulled: bool
) -> CorruptObject:
    """The error for a store object met corrupt by `checkout` (moved to the store's
    quarantine already): where its bytes can come from again, for what it was read."""
    where = exc.target.removeprefix(str(project.root) + os.sep).rstrip("/")
    owner = next((t for t in targets if where == t.path or where.startswith(t.path + "/")), None)
    if owner is None or owner.what == "added data":
        again = f"`gitpipe add {owner.path if owner else where}` from a good copy"
    else:
        again = f"`gitpipe repro` to make the {owner.what} again"
    if pulled:
        hint = f"the remote's copy was no better; it is moved aside, nothing was changed: {again}"
    else:
        hint = (
            "it is moved to the store's quarantine and nothing was changed: "
            f"`gitpipe checkout --pull` fetches it again, or {again}"
        )
    return CorruptObject(exc.digest, target=where, hint=hint)


def _corrupt_manifests(
    project: Project, store: Store, targets: Sequence[_Target]
) -> list[CorruptObject]:
    """The folders among ``targets`` whose manifest the store holds corrupt (its bytes
    do not hash to its name), each as the error that names it and its folder."""
    found = []
    for target in targets:
        if target.out.is_dir and target.out.digest in store:
            try:
                store.manifest(target.out.digest)
            except CorruptObject:
                where = f"{project.root / target.path}/"
                found.append(CorruptObject(target.out.digest, target=where))
            except StoreError:
                pass  # not a manifest at all: restoring it says so
    return found


def _present(store: Store, out: OutRecord) -> bool:
    return store.has_tree(out.digest) if out.is_dir else out.digest in store


def _lacking(lacking: Sequence[_Target], pulled: bool) -> str:
    named = [f"{t.path}{'/' if t.out.is_dir else ''} ({t.what})" for t in lacking]
    shown = first_of(named, 5, sep="; ", more="; and {} more")
    if pulled:
        return (
            f"nothing was changed: neither the store nor the remote holds the bytes "
            f"recorded for {shown}; push them from a clone that has them"
        )
    return (
        f"nothing was changed: the store lacks the bytes recorded for {shown}; run "
        "`gitpipe checkout --pull` (or `gitpipe pull`) to fetch them"
    )


def _unrecorded(store: Store, hasher: Hasher, rel: str, now: PathState | None) -> list[str]:
    """The files at ``rel`` whose bytes the store does not hold: gitpipe never
    recorded them, so replacing them would lose them."""
    if now is None:
        return []
    if now is UNREADABLE:
        return [rel]
    if not now.is_dir:
        return [] if now.digest in store else [rel]
    return [f"{rel}/{e.path}" for e in hasher.manifest(rel) if e.digest not in store]


def _fetch(
    project: Project, store: Store, targets: Sequence[_Target], remote: str | None
) -> tuple[int, list[str]]:
    """Fetch from the remote what ``targets`` need that the store lacks; how many
    objects came, and the warning about the remote's unused pack indexes, if any.
    :class:`RemoteError` when a copy failed verification (and no other copy passed)."""
    from gitpipe.store import remote as remotes
    from gitpipe.workspace.transfer import skipped_line, verified

    far = remotes.for_project(project, remote, cwd=Path.cwd())
    project.register_clone()
    pulled = remotes.pull(store, far, _selection_of(targets), run_cache=False)
    verified(pulled, placing=True)
    warning = skipped_line(pulled)
    return pulled.objects, [warning] if warning else []


def _selection_of(targets: Iterable[_Target]) -> Selection:
    """The objects checkout's targets need, as a transfer names them."""
    from gitpipe.store.remote import Selection

    files = {item.out.digest for item in targets if not item.out.is_dir}
    folders = {item.out.digest for item in targets if item.out.is_dir}
    return Selection(frozenset(files), frozenset(folders))


def restore_missing(
    project: Project, names: Sequence[str], *, pull: bool, remote: str | None
) -> list[str]:
    """`repro`: put back added data that the selected steps read and that is missing
    from the workspace (never anything that is there), from the store, and with
    ``pull`` from the remote; what the store cannot give is left for the checks to
    report.  Returns the paths put back."""
    records = read_records(project)
    if not records:
        return []
    wanted = []
    for record in records:
        reads = any(
            spec.relation(dep.path, record.path) is not None
            for name in names
            for dep in project.pipeline.steps[name].deps
        )
        if reads and not (project.root / record.path).exists():
            wanted.append(_Target(record.path, _out(record), record.link, "added data"))
    if not wanted:
        return []
    report = _put_back(project, wanted, pull=pull, force=False, remote=remote, only_missing=True)
    return report.restored
