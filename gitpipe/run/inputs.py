"""What a step reads, now: its code, its dependencies' digests, its outputs, its key.

    workspace ──Hasher (stat cache)──> digests ──────┐
    commands ──stepcode──────────────> code ─────────┤
    urls ──Fingerprints (HEAD, once)─> fingerprints ─┼─> key_record() ─> Check
    lock entries (metrics it reads) ─> step ─────────┘   (state, reasons, outputs now)

:class:`Inputs` gathers these for one command; :mod:`gitpipe.run.planner` decides from
them.  A :class:`Projection` stands for outputs as they will be once the restores a
plan holds are done, so that a plan can key the steps downstream of a restore
before anything is restored.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gitpipe.core.errors import PathError, PipelineError, RemoteDepError, StoreError
from gitpipe.core.hashing import Digest, ManifestEntry, digest_bytes, manifest_bytes
from gitpipe.core.pathmemo import PathMemo
from gitpipe.core.records import Reason
from gitpipe.identity.action import KeyRecord, key_record
from gitpipe.identity.environment import Environment, is_third_party
from gitpipe.identity.external import UNREACHABLE, Fingerprints
from gitpipe.identity.statcache import Hasher, PathState
from gitpipe.pipeline import spec
from gitpipe.run.plan import FROZEN, STALE, assess
from gitpipe.store.lockfile import LockEntry

if TYPE_CHECKING:  # imported where used: a no-op run discovers no code
    from gitpipe.identity import codedeps
    from gitpipe.store.objects import Store
    from gitpipe.store.runcache import OutRecord

_GLOB_CHARS = frozenset("*?[")


#: the state of an output that is no regular file or folder (see Inputs.out_state)
UNREADABLE = PathState(Digest("0" * 64), 0, False)


@dataclass(slots=True)
class Check:
    """A step's key record and state against its lock entry, and its outputs now."""

    state: str
    reasons: list[Reason]
    record: KeyRecord | None  # None: a dependency or a metric it reads is missing
    outs_now: dict[str, PathState | None]
    step: spec.Step | None = None  # the step as checked: metrics it reads filled in


class Projection:
    """Workspace paths as they will be once planned restores are done: each restored
    output (by path, without a trailing slash) with what it will hold."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.outs: dict[str, OutRecord] = {}

    def __bool__(self) -> bool:
        return bool(self.outs)

    def put(self, path: str, out: OutRecord) -> None:
        self.outs[path] = out

    def read_bytes(self, path: str) -> bytes | None:
        """The bytes a file will hold once restored, if a projected output holds it."""
        for out_path, out in self.outs.items():
            if path == out_path and not out.is_dir:
                return self.store.read_bytes(out.digest)
            if out.is_dir and path.startswith(out_path + "/"):
                inner = path[len(out_path) + 1 :]
                for entry in self.store.manifest(out.digest):
                    if entry.path == inner:
                        return self.store.read_bytes(entry.digest)
                return None
        return None

    def touches(self, path: str) -> bool:
        """Whether ``path`` is, holds or lies in a projected output."""
        return any(_related(path, out) for out in self.outs)

    def state(self, path: str, now: PathState | None, hasher: Hasher) -> PathState | None:
        """``path``'s state after the restores, given its state ``now``."""
        if path in self.outs:
            out = self.outs[path]
            return PathState(out.digest, out.size, out.is_dir, out.executable)
        for out_path, out in self.outs.items():
            if path.startswith(out_path + "/"):  # inside a restored folder
                inner = path[len(out_path) + 1 :]
                entries = self.store.manifest(out.digest) if out.is_dir else []
                exact = [e for e in entries if e.path == inner]
                if exact:
                    e = exact[0]
                    return PathState(e.digest, e.size, False, e.executable)
                below = [
                    ManifestEntry(e.path[len(inner) + 1 :], e.digest, e.size, e.executable)
                    for e in entries
                    if e.path.startswith(inner + "/")
                ]
                return _folder_state(below) if below else None
        inside = {p: o for p, o in self.outs.items() if p.startswith(path + "/")}
        if not inside:
            return now
        # a folder that holds restored outputs: its files now, those outputs replaced
        entries = list(hasher.manifest(path)) if now is not None and now.is_dir else []
        for out_path, out in inside.items():
            rel = out_path[len(path) + 1 :]
            entries = [e for e in entries if not _related(e.path, rel)]
            if out.is_dir:
                entries += [
                    ManifestEntry(f"{rel}/{e.path}", e.digest, e.size, e.executable)
                    for e in self.store.manifest(out.digest)
                ]
            else:
                entries.append(ManifestEntry(rel, out.digest, out.size, out.executable))
        return _folder_state(entries)


def _related(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _folder_state(entries: list[ManifestEntry]) -> PathState:
    entries.sort(key=lambda e: e.path)
    digest = digest_bytes(manifest_bytes(entries))
    return PathState(digest, sum(e.size for e in entries), True)


class WorkTree:
    """The working tree as a :class:`codedeps.Source`, digests from the stat cache."""

    def __init__(self, root: Path, hasher: Hasher) -> None:
        self.root = root
        self.hasher = hasher
        self._is_file: PathMemo[bool] = PathMemo()
        #: a plan's restores, where code is read as they will leave it
        self.projection: Projection | None = None

    def state(self, path: str) -> PathState | None:
        """A path's state, as the projection will leave it where it touches it."""
        state = self.hasher.state(path)
        if self.projection is not None and self.projection.touches(path):
            state = self.projection.state(path, state, self.hasher)
        return state

    def is_file(self, path: str) -> bool:
        if path not in self._is_file:
            if path.startswith("/"):
                self._is_file[path] = False
            elif self.projection is not None and self.projection.touches(path):
                state = self.state(path)
                self._is_file[path] = state is not None and not state.is_dir
            else:
                self._is_file[path] = (self.root / path).is_file()
            if self.hasher.seen is not None and not path.startswith("/"):
                self.hasher.seen.look(str(self.root / path))
        return self._is_file[path]

    def forget(self, path: str) -> None:
        """``path`` (a file or a folder) is about to be rewritten."""
        self._is_file.forget(path)

    def read(self, path: str) -> bytes:
        if self.hasher.seen is not None:
            self.hasher.seen.look(str(self.root / path))
        if self.projection is not None and self.projection.touches(path):
            data = self.projection.read_bytes(path)
            if data is not None:
                return data
        return (self.root / path).read_bytes()

    def glob(self, pattern: str) -> list[str]:
        if not (_GLOB_CHARS & set(pattern)):
            return [Path(pattern).as_posix()] if self.is_file(pattern) else []
        if self.hasher.seen is not None:
            self.hasher.seen.look_glob(str(self.root), pattern)
        return sorted(
            Path(match).as_posix()
            for match in glob.glob(pattern, root_dir=self.root, recursive=True)
            if (self.root / match).is_file()
        )

    def digest(self, path: str) -> Digest:
        state = self.state(path)
        if state is None:
            raise StoreError(f"code file {path} disappeared while it was read")
        return state.digest


def fingerprints_for(environ: Mapping[str, str]) -> Fingerprints:
    """The remote deps' fingerprints for one command: S3 objects through the object
    store's client (gitpipe.store.remote.objectstore), HTTP(S) ones by HEAD."""

    def s3_head(url: str, timeout: float) -> dict[str, str | int]:
        from gitpipe.store.remote.objectstore import head_object

        return head_object(url, timeout, environ=environ)

    return Fingerprints(environ=environ, s3_head=s3_head)


class Inputs:
    """One command's view of what steps read: hashing, code discovery, keys."""

    def __init__(
        self,
        root: Path,
        pipeline: spec.Pipeline,
        hasher: Hasher,
        *,
        fingerprints: Fingerprints | None = None,
        environment: Environment | None = None,
    ) -> None:
        self.root = root
        self.pipeline = pipeline
        self.file_name = pipeline.file.name
        self.hasher = hasher
        #: the remote deps' fingerprints, each url asked once per command
        self.fingerprints = fingerprints or fingerprints_for(os.environ)
        self.worktree = WorkTree(root, hasher)
        #: the environment steps run in (docs/environment.md), each part learnt once
        self.environment = environment or Environment(root, None)
        self._external: dict[str, list[str]] = {}
        self._discoverer: codedeps.Discoverer | None = None
        self._code: dict[str, dict[str, Digest]] = {}
        self._unreadable: dict[str, list[str]] = {}
        self._pythonpath: dict[str, list[str]] = {}
        self._unresolved: dict[str, list[str]] = {}
        self._code_info: PathMemo[tuple[Digest, Digest, list[codedeps.Imported] | None]] = (
            PathMemo()
        )

    # code -----------------------------------------------------------------------

    @property
    def discoverer(self) -> codedeps.Discoverer:
        if self._discoverer is None:
            from gitpipe.identity import codedeps

            self._discoverer = codedeps.Discoverer(
                self.worktree, imports_of=lambda path: self.code_info(path)[2]
            )
        return self._discoverer

    def code_files(self, step: spec.Step) -> codedeps.Discovery:
        """The step's code: its `code` globs, and the Python its commands run and import."""
        for i, pattern in enumerate(step.code):
            if not (_GLOB_CHARS & set(pattern)) and not (self.root / pattern).is_file():
                raise PipelineError(
                    f"code file {pattern!r} of step {step.name!r} does not exist",
                    file=self.file_name,
                    key=f"steps.{step.name}.code[{i}]",
                )
        from gitpipe.identity.stepcode import find_code

        return find_code(step, self.discoverer)

    def code_info(self, path: str) -> tuple[Digest, Digest, list[codedeps.Imported] | None]:
        """A code file's raw digest, normalised digest and imports (None: it does not
        parse), from the stat cache's code table when these bytes were seen before."""
        if path not in self._code_info:
            self._code_info[path] = self._read_code_info(path)
        return self._code_info[path]

    def forget(self, path: str, *, projected: bool = False) -> None:
        """A step is about to rewrite ``path`` (or, ``projected``, a plan's restore
        will): what was learnt of it is void (generated code is code too)."""
        self.hasher.forget(path)
        stale = self._code_info.forget(path)
        self.worktree.forget(path)
        if (stale or projected) and self._discoverer is not None:
            self._discoverer.forget()

    def _read_code_info(self, path: str) -> tuple[Digest, Digest, list[codedeps.Imported] | None]:
        from gitpipe.identity import codedeps

        state = self.worktree.state(path)
        if state is None or state.is_dir:
            raise StoreError(f"code file {path} is not a readable file")
        if not path.endswith(".py"):  # other code is digested as bytes, and imports nothing
            return state.digest, state.digest, []
        row = self.hasher.cache.code(state.digest)  # what these bytes are *as Python*
        if row is None:
            data = self.worktree.read(path)
            normal, parses = codedeps.code_digest(path, data)
            found = codedeps.imports(data)
            encoded = (
                json.dumps([[i.module, i.level, list(i.names)] for i in found])
                if found is not None
                else None
            )
            row = (normal.hex, int(parses), encoded)
            self.hasher.cache.record_code(state.digest, row)
        imports = (
            None
            if row[2] is None
            else [codedeps.Imported(m, lvl, tuple(n)) for m, lvl, n in json.loads(row[2])]
        )
        return state.digest, Digest(row[0]), imports

    def code_of(self, step: spec.Step) -> dict[str, Digest]:
        """Each code file of a step with its code digest (normalised unless
        ``code_digest = "bytes"``)."""
        if step.name not in self._code:
            from gitpipe.identity.stepcode import code_digests

            discovery = self.code_files(step)
            self._code[step.name] = code_digests(
                step, discovery.files, self.worktree, lambda path, _: self.code_info(path)[1]
            )
            self._unreadable[step.name] = discovery.unreadable
            self._pythonpath[step.name] = discovery.pythonpath
            self._unresolved[step.name] = discovery.unresolved
            self._external[step.name] = discovery.external
        return self._code[step.name]

    def environment_of(self, step: spec.Step) -> dict[str, Any]:
        """The step's environment record: what of the environment enters its key."""
        code = self.code_of(step)
        python = bool(step.fn) or any(path.endswith(".py") for path in code)
        modules = [m for m in self._external[step.name] if is_third_party(m)]
        return self.environment.record(
            step.environment,
            python=python,
            modules=modules,
            step=step.name,
            seen=self.hasher.seen,
        )

    def pythonpath_of(self, step: spec.Step) -> list[str]:
        """The folders the step's commands get first on PYTHONPATH (docs/code.md)."""
        self.code_of(step)
        return self._pythonpath[step.name]

    def unresolved_of(self, step: spec.Step) -> list[str]:
        """The modules the step imports that only a folder Python will not search
        holds (``[pipeline] pythonpath`` leaves it out): not code, and said so."""
        self.code_of(step)
        return self._unresolved[step.name]

    def code_of_all(self) -> dict[str, dict[str, Digest]]:
        return {name: self.code_of(step) for name, step in self.pipeline.steps.items()}

    # metrics other steps recorded -------------------------------------------------

    def metric_value(self, ref: spec.MetricRef, entries: Mapping[str, LockEntry]) -> Any:
        """The value of ``${steps.S.metrics.M}``: S's metric M as its lock entry (the
        last time it ran or was restored) recorded it."""
        entry = entries.get(ref.step)
        if entry is None:
            raise PipelineError(
                f"${{{ref.ref}}} has no value yet: step {ref.step!r} has not run",
                file=self.file_name,
                key=ref.key,
            )
        found = [values[ref.metric] for values in entry.metrics.values() if ref.metric in values]
        if not found:
            known = sorted({name for values in entry.metrics.values() for name in values})
            raise PipelineError(
                f"${{{ref.ref}}}: the metrics of step {ref.step!r} have no {ref.metric!r}"
                f" (they have: {', '.join(known) or 'none'})",
                file=self.file_name,
                key=ref.key,
            )
        if len(found) > 1:
            raise PipelineError(
                f"${{{ref.ref}}}: several metrics files of step {ref.step!r} have "
                f"{ref.metric!r}; keep one",
                file=self.file_name,
                key=ref.key,
            )
        return found[0]

    # the key and the state --------------------------------------------------------

    def out_state(self, path: str) -> PathState | None:
        """An output's state now; a FIFO, device or socket where an output belongs (or
        in its folder) is :data:`UNREADABLE`: not what any lock names, so the step is
        stale, and gitpipe replaces it as it would other bytes."""
        try:
            return self.hasher.state(path)
        except PathError:
            return UNREADABLE

    def check(
        self,
        step: spec.Step,
        entry: LockEntry | None,
        *,
        entries: Mapping[str, LockEntry],
        assume: Mapping[str, Digest] | None = None,
        assume_urls: Mapping[str, Mapping[str, str | int]] | None = None,
        projection: Projection | None = None,
    ) -> Check:
        """A step's key record and state now.  Metrics the step reads from other
        steps come from ``entries``; ``assume`` gives digests for deps that are missing
        (the lock's, for `gitpipe check` in a clone without outputs), ``assume_urls``
        fingerprints for remote deps, which are then not asked (the lock's, for `gitpipe
        check`, which looks at the workspace only); ``projection`` gives the
        dependencies as planned restores will leave them."""
        self.worktree.projection = projection or None
        if step.metric_refs:
            try:
                step = spec.resolve(step, lambda ref: self.metric_value(ref, entries))
            except PipelineError as exc:
                outs_now = {str(o): self.out_state(o.path) for o in step.all_outs}
                reason = Reason("metric unknown", str(exc).split(": ", 1)[-1])
                return Check(STALE, [reason], None, outs_now, step)
        deps: dict[str, Digest] = {}
        missing: list[Reason] = []
        for dep in step.deps:
            state = self.hasher.state(dep.path)
            if projection:
                state = projection.state(dep.path, state, self.hasher)
            if state is not None:
                deps[str(dep)] = state.digest
            elif assume and str(dep) in assume:
                deps[str(dep)] = assume[str(dep)]
            else:
                missing.append(Reason("dep missing", str(dep)))
        outs_now = {str(o): self.out_state(o.path) for o in step.all_outs}
        if step.frozen:
            return Check(FROZEN, [], None, outs_now, step)
        urls = {}
        for url in step.urls:
            if assume_urls and url.url in assume_urls:
                urls[url.url] = dict(assume_urls[url.url])
                continue
            try:
                urls[url.url] = self.fingerprints.of(url.url)
            except RemoteDepError as exc:  # never taken as unchanged: the step is stale
                missing.append(Reason(UNREACHABLE, f"{exc.url} ({exc.cause})"))
        if missing:
            return Check(STALE, missing, None, outs_now, step)
        code = self.code_of(step)
        # a dependency that is also code is keyed by its code digest, not its bytes
        deps = {path: digest for path, digest in deps.items() if path not in code}
        record = key_record(
            step,
            deps=deps,
            code=code,
            pythonpath=self._pythonpath[step.name],
            urls=urls,
            environment=self.environment_of(step),
        )
        state, reasons = assess(step, record, entry, outs_now)
        if state == STALE:
            reasons += [Reason("code unreadable", path) for path in self._unreadable[step.name]]
            reasons += [
                Reason("import outside pythonpath", what) for what in self._unresolved[step.name]
            ]
        return Check(state, reasons, record, outs_now, step)
