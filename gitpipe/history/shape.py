"""The shape of a pipeline at a commit or in the work tree: what versions and
`gitpipe diff` compare.

    pipeline file ──spec.parse──> steps ─┐
    graph ──────────────────────> edges ─┼─> Snapshot: per step a StepShape,
    stepcode (over a Source) ───> code ──┘   and the pipeline's fingerprint

A commit is read straight from Git objects (:class:`Snapshots`: nothing is checked
out, the index is untouched); the work tree from its files (:func:`worktree_snapshot`).
Both key a step's code with :mod:`gitpipe.identity.stepcode`, as a repro does, so
that a commit's fingerprint is the one its ``gitpipe.lock`` records.

A commit's snapshot is computed only where something it depends on changed: a
snapshot records every file and folder it looked at (a
:class:`~gitpipe.history.git.Trace`), and the next commit first checks those blob
and tree ids.
"""

from __future__ import annotations

import functools
import glob as _glob
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitpipe.core.errors import GitError, PipelineError
from gitpipe.core.hashing import Digest, canonical, digest_file
from gitpipe.history.git import Repository, Trace, TreeSource
from gitpipe.identity import action
from gitpipe.identity.codedeps import Discoverer, Imported, Source, imports
from gitpipe.identity.stepcode import code_digests, find_code, normaliser, step_code
from gitpipe.pipeline import graph as graphs
from gitpipe.pipeline import spec
from gitpipe.pipeline.values import flatten

ABSENT = "absent"
INVALID = "invalid"
VALID = "ok"


@dataclass(frozen=True, slots=True)
class StepShape:
    """What a step's version depends on."""

    cmd: tuple[str, ...]  # cmd, wdir and env resolved (what runs)
    wdir: str
    env: Mapping[str, str]
    template: spec.Template  # cmd, wdir and env as written
    parents: tuple[str, ...]  # edges: the steps it reads from or runs after
    after: tuple[str, ...]  # sorted, as written
    deps: tuple[str, ...]  # sorted, as written (folders with a trailing "/")
    outs: tuple[str, ...]  # sorted, as written
    metrics: tuple[str, ...]  # sorted
    params: Mapping[str, str]  # the params it uses: dotted key -> canonical JSON
    code: Mapping[str, str]  # code file -> code digest


@dataclass(frozen=True)
class Snapshot:
    """The pipeline as versions see it: absent, invalid (with the error) or valid."""

    state: str
    params: Mapping[str, str] = field(default_factory=dict)  # [params]: dotted -> JSON
    steps: Mapping[str, StepShape] = field(default_factory=dict)  # in file order
    error: str = ""
    #: what the fingerprint is computed from, when it is asked for
    basis: tuple[spec.Pipeline, Mapping[str, Mapping[str, Digest]]] | None = field(
        default=None, compare=False, repr=False
    )

    @functools.cached_property
    def fingerprint(self) -> str:
        """The pipeline's fingerprint (as in the lock), "" without a valid pipeline."""
        return str(action.fingerprint(*self.basis)) if self.basis else ""


NO_PIPELINE = Snapshot(ABSENT)


class CodeCache:
    """What code discovery learnt, by content: shared between the commits of a walk
    and the work tree, so that each file is parsed and digested once."""

    def __init__(self) -> None:
        self.imports: dict[Digest, list[Imported] | None] = {}
        self.code: dict[Digest, Digest] = {}  # bytes of a .py file -> its code digest
        self.blobs: dict[str, Digest] = {}  # Git blob id -> digest of its bytes
        #: (pipeline file digest, path) -> parsed pipeline and graph, or the error
        self.pipelines: dict[tuple[Digest, str], tuple[spec.Pipeline, graphs.Graph] | str] = {}


def shape(
    pipeline: spec.Pipeline, graph: graphs.Graph, code: Mapping[str, Mapping[str, Digest]]
) -> Snapshot:
    """A valid snapshot from a parsed pipeline, its graph and its steps' code."""
    steps = {}
    for name, step in pipeline.steps.items():
        steps[name] = StepShape(
            cmd=step.cmd,
            wdir=step.wdir,
            env=dict(step.env),
            template=step.template,
            parents=tuple(sorted(graph.parents[name])),
            after=tuple(sorted(step.after)),
            # its remote deps (urls) are deps too: adding one changes what it reads
            deps=tuple(sorted([str(dep) for dep in step.deps] + [str(u) for u in step.urls])),
            outs=tuple(sorted(str(out) for out in (*step.outs, *step.plots))),
            metrics=tuple(sorted(str(out) for out in step.metrics)),
            params=encoded(step.params),
            code={path: str(digest) for path, digest in sorted(code.get(name, {}).items())},
        )
    return Snapshot(
        VALID,
        params=encoded(pipeline.params),
        steps=steps,
        basis=(pipeline, code),
    )


def encoded(params: Mapping[str, Any]) -> dict[str, str]:
    """Params flattened to dotted keys, each value in the canonical encoding keys use,
    so that comparing them tells 1 from 1.0 as keys do (Python's == does not)."""
    return {key: canonical(value).decode("utf-8") for key, value in flatten(params).items()}


def take_snapshot(
    source: Source,
    *,
    name: str,
    file: Path,
    cache: CodeCache,
    code_of: Callable[[spec.Step], dict[str, Digest]] | None = None,
) -> Snapshot:
    """Read, parse and digest the pipeline ``name`` (relative to the source's folder);
    ``file`` is where it lives in the work tree (it names the pipeline by default).
    ``code_of`` finds a step's code (default: discovered and digested over ``source``)."""
    if not source.is_file(name):
        return NO_PIPELINE
    key = (source.digest(name), str(file))
    parsed = cache.pipelines.get(key)
    if parsed is None:
        folder = posixpath.dirname(name)

        others: list[str] = []  # files read besides this one: a parse depends on them

        def read_bytes(relpath: str) -> bytes:  # a nested pipeline or params file, same tree
            path = posixpath.normpath(posixpath.join(folder, relpath))
            others.append(path)
            if not source.is_file(path):
                raise FileNotFoundError(path)
            return source.read(path)

        try:
            text = source.read(name).decode("utf-8")
            pipeline = spec.parse(
                text,
                file=file,
                read=lambda relpath: read_bytes(relpath).decode("utf-8"),
                read_bytes=read_bytes,
            )
            parsed = (pipeline, graphs.build(pipeline))
        except UnicodeDecodeError as exc:
            parsed = f"{name} is not UTF-8 text ({exc.reason})"
        except PipelineError as exc:
            parsed = str(exc)
        if not others:  # nested pipeline files and params files change apart from this one
            cache.pipelines[key] = parsed
    if isinstance(parsed, str):
        return Snapshot(INVALID, error=parsed)
    pipeline, graph = parsed
    find = code_of or _code_finder(source, cache)
    return shape(
        pipeline, graph, {step_name: find(step) for step_name, step in pipeline.steps.items()}
    )


def _code_finder(source: Source, cache: CodeCache) -> Callable[[spec.Step], dict[str, Digest]]:
    """A step's code over ``source``, discovered and digested as a repro keys it."""
    discoverer = Discoverer(source, cache=cache.imports)
    normal = normaliser(source, cache.code)
    return lambda step: step_code(step, discoverer, normal)


class FileSource:
    """The work tree's files under a folder, as a codedeps ``Source``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._digests: dict[str, Digest] = {}

    def is_file(self, path: str) -> bool:
        return (self.root / path).is_file()

    def read(self, path: str) -> bytes:
        return (self.root / path).read_bytes()

    def glob(self, pattern: str) -> list[str]:
        found = set()
        for match in _glob.glob(pattern, root_dir=self.root, recursive=True):
            if (self.root / match).is_file():
                found.add(posixpath.normpath(Path(match).as_posix()))
        return sorted(found)

    def digest(self, path: str) -> Digest:
        found = self._digests.get(path)
        if found is None:
            found = self._digests[path] = digest_file(self.root / path)
        return found


def worktree_snapshot(pipeline_file: Path, cache: CodeCache | None = None) -> Snapshot:
    """The pipeline as it is in the work tree now."""
    file = pipeline_file.resolve()
    return take_snapshot(
        FileSource(file.parent), name=file.name, file=file, cache=cache or CodeCache()
    )


@dataclass(frozen=True, slots=True)
class PipelinePath:
    """Where a pipeline file is: relative to the repository's top, and in the work tree."""

    file: Path  # absolute, in the work tree
    path: str  # relative to the top, POSIX
    folder: str  # its folder relative to the top ('' at the top)

    @property
    def name(self) -> str:
        return posixpath.basename(self.path)

    @property
    def lock(self) -> str:
        return posixpath.splitext(self.path)[0] + ".lock"

    @classmethod
    def of(cls, repo: Repository, pipeline_file: Path) -> PipelinePath:
        file = pipeline_file.resolve()
        path = repo.relpath(file)
        if path.startswith("../"):
            raise GitError(f"{file} is outside the Git repository at {repo.top}")
        return cls(file, path, posixpath.dirname(path))


class Snapshots:
    """Snapshots of a pipeline at commits, read from Git objects.

    What one snapshot learnt serves the next: file digests by blob id, parsed
    pipelines by content, and each step's code by the trace of what finding it
    looked at (a step whose trace holds in the next tree keeps its code)."""

    def __init__(self, repo: Repository, pipeline: PipelinePath) -> None:
        self.repo = repo
        self.pipeline = pipeline
        self.cache = CodeCache()
        #: a step's (cmd, fn, wdir, code globs, digest mode) -> what finding and digesting
        #: its code looked at, and its code
        self._code: dict[tuple[Any, ...], tuple[Trace, dict[str, Digest]]] = {}
        #: a step's (cmd, fn, wdir, code globs) -> how its code files were found
        self._found: dict[tuple[Any, ...], _Found] = {}
        #: Git blob id of a .py file -> what it imports (None: it does not parse)
        self._imports: dict[str, list[Imported] | None] = {}

    def snapshot(self, tree: str) -> tuple[Snapshot, Trace]:
        """The snapshot of a tree, and everything computing it looked at."""
        source = self.repo.source(tree, self.pipeline.folder, digests=self.cache.blobs)
        normal = normaliser(source, self.cache.code)

        def code_of(step: spec.Step) -> dict[str, Digest]:
            key = (step.cmd, step.fn, step.wdir, step.code, step.code_digest, step.pythonpath)
            known = self._code.get(key)
            if known is not None and self.repo.trace_holds(tree, known[0]):
                source.trace.merge(known[0])
                return known[1]
            with source.recording() as trace:  # with each file's content: its digest
                code = code_digests(step, self._files(step, source), source, normal)
            self._code[key] = (trace, code)
            return code

        snap = take_snapshot(
            source,
            name=self.pipeline.name,
            file=self.pipeline.file,
            cache=self.cache,
            code_of=code_of,
        )
        return snap, source.trace

    def _imports_of(self, source: TreeSource, path: str) -> list[Imported] | None:
        blob = source.blob_id(path)
        if blob is None:
            return []
        if blob not in self._imports:
            self._imports[blob] = imports(self.repo.blob(blob))
        return self._imports[blob]

    def _files(self, step: spec.Step, source: TreeSource) -> list[str]:
        """A step's code files (as :func:`~gitpipe.identity.stepcode.find_code` finds them).

        Which files they are depends only on which paths are files and on what the
        Python files import, so a step whose probes find the same kinds of entry and
        whose Python files import the same modules keeps the files found before."""
        key = (step.cmd, step.fn, step.wdir, step.code, step.pythonpath)
        known = self._found.get(key)
        if known is not None and self.repo.trace_holds(source.tree, known.trace):
            with source.recording(kinds=True):
                same = all(self._imports_of(source, p) == i for p, i in known.imports.items())
            if same:
                source.trace.merge(known.trace)
                return known.files
        seen: dict[str, list[Imported] | None] = {}

        def imports_of(path: str) -> list[Imported] | None:
            seen[path] = self._imports_of(source, path)
            return seen[path]

        with source.recording(kinds=True) as trace:
            found = find_code(step, Discoverer(source, imports_of=imports_of))
        self._found[key] = _Found(trace, seen, found.files)
        return found.files


@dataclass(frozen=True, slots=True)
class _Found:
    """How a step's code files were found: the probes (by kind), the imports read."""

    trace: Trace
    imports: Mapping[str, list[Imported] | None]
    files: list[str]
