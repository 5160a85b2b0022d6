"""The step model: what a pipeline file says, as frozen dataclasses.

    Pipeline   name, params (and the params files they come from), pythonpath,
               [hooks], [remote], groups, nested files
      └─ steps: name -> Step   cmd or fn, deps / outs / metrics (PathSpec), the
                                URLs it reads (UrlDep), the params it uses, code,
                                env, wdir, when, and the fields that say how it runs
                  ├─ template      cmd, env and wdir as written, before ${...}
                  └─ metric_refs   ${steps.S.metrics.M} it reads (MetricRef), put in
                                   by :func:`resolve` once S ran

Built by gitpipe.pipeline.parser; nothing here reads a file.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gitpipe.core.slotted import init_by_slots, pickled_by_slots
from gitpipe.pipeline.expr import Condition
from gitpipe.pipeline.refs import METRIC_REF, map_strings, parts, ref_text, scalar_text

#: the events `[hooks]` runs commands at, in the order a step meets them
HOOK_EVENTS = ("before_step", "after_step", "on_failure")
#: how a step's Python code is digested (docs/pipeline-file.md#code_digest)
CODE_DIGESTS = ("ast", "bytes")
#: how outputs are put in the workspace (docs/pipeline-file.md#link; never keyed)
LINKS = ("copy", "hardlink", "symlink")
#: what of a step's environment enters its key, besides a list of commands
#: (docs/environment.md)
ENVIRONMENTS = ("imports", "lockfile", "none")


@init_by_slots
@pickled_by_slots
@dataclass(frozen=True, slots=True)
class PathSpec:
    """A normalised path relative to the pipeline's folder; ``is_dir`` for folders."""

    path: str
    is_dir: bool = False

    def __str__(self) -> str:
        return self.path + ("/" if self.is_dir else "")

    def under(self, prefix: str) -> PathSpec:
        """This path seen from a folder ``prefix`` levels up (a nested pipeline's)."""
        return PathSpec(posixpath.normpath(posixpath.join(prefix, self.path)), self.is_dir)

    def contains(self, other: PathSpec) -> bool:
        """True when ``other`` is this path or lies inside it."""
        if self.path == other.path:
            return True
        return self.path == "." or other.path.startswith(self.path + "/")


#: the url schemes a dependency may name (docs/external-deps.md)
URL_SCHEMES = ("s3", "http", "https")


@pickled_by_slots
@dataclass(frozen=True, slots=True)
class UrlDep:
    """A dependency outside the workspace: an S3 object or an HTTP(S) resource, named
    by its url (``${...}`` already put in).  gitpipe never reads it; it asks the server
    for the object's fingerprint (gitpipe.identity.external), which enters the key.
    Kept apart from :class:`PathSpec`, so that nothing takes it for a workspace path."""

    url: str

    def __str__(self) -> str:
        return self.url

    @property
    def scheme(self) -> str:
        return self.url.partition("://")[0].lower()


@pickled_by_slots
@dataclass(frozen=True, slots=True)
class MetricRef:
    """``${steps.STEP.metrics.NAME}``: a value read from another step's metrics after it
    ran; ``key`` is where the pipeline file uses it."""

    step: str
    metric: str
    key: str

    @property
    def ref(self) -> str:
        return ref_text(self.step, self.metric)


@pickled_by_slots
@dataclass(frozen=True, slots=True)
class Hooks:
    """``[hooks]``: commands run around each step (never part of a key)."""

    before_step: tuple[str, ...] = ()
    after_step: tuple[str, ...] = ()
    on_failure: tuple[str, ...] = ()
    fail: bool = True  # a failing hook fails the run

    def __bool__(self) -> bool:
        return bool(self.before_step or self.after_step or self.on_failure)


@init_by_slots
@pickled_by_slots
@dataclass(frozen=True, slots=True)
class Template:
    """A step's ``cmd``, ``env`` and ``wdir`` as the pipeline file writes them, before
    ``${params.X}`` and ``${matrix.X}`` are put in.  Versions and diffs read it to tell
    an edit of a command from a change of the params it is given; never keyed."""

    cmd: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    wdir: str = "."


@pickled_by_slots
@dataclass(frozen=True, slots=True)
class ParamsFile:
    """A file of ``[pipeline] params_files`` (docs/pipeline-file.md#params-files)."""

    written: str  # as the pipeline file spells it (what `FILE:KEY` entries name)
    path: str  # normalised, relative to the pipeline's folder
    format: str  # "yaml", "json" or "toml"
    keys: tuple[str, ...] = ()  # its top-level keys


@init_by_slots
@pickled_by_slots
@dataclass(frozen=True, slots=True)
class Step:
    name: str
    cmd: tuple[str, ...]
    deps: tuple[PathSpec, ...] = ()
    outs: tuple[PathSpec, ...] = ()
    metrics: tuple[PathSpec, ...] = ()
    #: output files of plot data (CSV or JSON) that `gitpipe report` draws as charts
    plots: tuple[PathSpec, ...] = ()
    params: Mapping[str, Any] = field(default_factory=dict)
    code: tuple[str, ...] = ()
    after: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    wdir: str = "."
    always: bool = False
    cache: bool = True
    persist: bool = False
    frozen: bool = False
    desc: str = ""
    timeout: float | None = None
    #: how often a step is tried again when its dask worker dies; never keyed
    retries: int = 1
    resources: Mapping[str, float] = field(default_factory=dict)
    code_digest: str = "ast"  # "ast": Python code by its syntax tree; "bytes": raw bytes
    #: how its outputs are put in the workspace: "copy" (reflink, else copy),
    #: "hardlink" or "symlink" (the store's read-only object itself); never keyed
    link: str = "copy"
    fn: str = ""  # "package.module:function" for a Python function step (then cmd is a label)
    #: the matrix step or nested pipeline step this step was expanded from ("" none)
    group: str = ""
    matrix: Mapping[str, Any] = field(default_factory=dict)  # this expansion's values
    when: Condition | None = None  # run only when this holds; else skipped
    approval: bool = False  # a person approves each new key before it runs
    #: other steps' metrics this step's strings or condition read (they are edges)
    metric_refs: tuple[MetricRef, ...] = ()
    #: ``cmd``, ``env`` and ``wdir`` as written (the fields above hold them resolved)
    template: Template = field(default_factory=Template)
    #: ``[pipeline] pythonpath`` (folders relative to the pipeline's folder); None
    #: when the pipeline does not say (docs/code.md#pythonpath)
    pythonpath: tuple[str, ...] | None = None
    #: the urls among its ``deps`` (S3 objects, HTTP(S) resources), in the order written
    urls: tuple[UrlDep, ...] = ()
    #: what of its environment enters its key: "imports", "lockfile", "none", or the
    #: commands whose ``--version`` does (with "imports") (docs/environment.md)
    environment: str | tuple[str, ...] = "imports"
    #: False: `gitpipe audit` reports other bytes without failing; never keyed
    deterministic: bool = True

    @property
    def all_outs(self) -> tuple[PathSpec, ...]:
        """Declared outputs, metrics and plots files, in the order written."""
        return self.outs + self.metrics + self.plots


@pickled_by_slots
@dataclass(frozen=True, slots=True)
class Pipeline:
    name: str
    file: Path
    params: Mapping[str, Any]
    steps: Mapping[str, Step]
    #: ``[remote] url``: where `gitpipe push`/`pull` go ("" none; $GITPIPE_REMOTE wins)
    remote: str = ""
    #: ``[pipeline] name`` as written ("" when the folder's name stands in for it);
    #: only this goes into the lock, so that clones in other folders write the same lock
    declared_name: str = ""
    #: matrix steps and nested pipeline steps -> the steps they expand to, in order
    groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    hooks: Hooks = field(default_factory=Hooks)
    #: ``repro -p NAME=VALUE``: params given on the command line (dotted -> value)
    overrides: Mapping[str, Any] = field(default_factory=dict)
    #: nested pipeline files, relative to this one's folder
    includes: tuple[str, ...] = ()
    #: ``[pipeline] params_files``, in order (their values are in ``params``)
    params_files: tuple[ParamsFile, ...] = ()
    #: each leaf param (dotted) -> where it is defined: "[params]" or a params file
    #: as written; a param of [params] alone leaves this empty
    params_origin: Mapping[str, str] = field(default_factory=dict)
    #: ``[pipeline] pythonpath``: folders put first on PYTHONPATH for every command;
    #: None when the file does not say (each step then gets the folders its code
    #: discovery resolved imports through, see docs/code.md)
    pythonpath: tuple[str, ...] | None = None
    #: every file the pipeline was read from besides the pipeline files: params files,
    #: nested pipelines' included (relative to this one's folder)
    read_files: tuple[str, ...] = ()
    #: ``[pipeline] link``: the steps' default, and how `gitpipe add` links added data
    link: str = "copy"

    @property
    def root(self) -> Path:
        """The folder the pipeline's paths are relative to."""
        return self.file.parent


def out_places(step: Step) -> list[tuple[PathSpec, str]]:
    """Each declared output with the TOML key it was written at."""
    prefix = f"steps.{step.name}"
    places = [(spec, f"{prefix}.outs[{i}]") for i, spec in enumerate(step.outs)]
    if step.metrics:  # most steps have neither: a status of 100,000 steps asks 5 times each
        places += [(spec, f"{prefix}.metrics[{i}]") for i, spec in enumerate(step.metrics)]
    if step.plots:
        places += [(spec, f"{prefix}.plots[{i}]") for i, spec in enumerate(step.plots)]
    return places


def out_key(step: Step, index: int) -> str:
    """The TOML key of ``step.all_outs[index]``, as :func:`out_places` gives it: the
    checks that go through every output name a key only when they raise."""
    prefix = f"steps.{step.name}"
    for field_name in ("outs", "metrics", "plots"):
        specs = getattr(step, field_name)
        if index < len(specs):
            return f"{prefix}.{field_name}[{index}]"
        index -= len(specs)
    raise IndexError(index)


def resolve(step: Step, value_of: Callable[[MetricRef], Any]) -> Step:
    """The step with its ``${steps.S.metrics.M}`` references replaced by the values
    ``value_of`` reads from those steps' metrics (run time, once they ran).  A param
    whose whole value is one reference takes the metric's type."""
    if not step.metric_refs:
        return step
    values = {ref.ref: value_of(ref) for ref in step.metric_refs}

    def text(value: str) -> str:
        return METRIC_REF.sub(lambda m: scalar_text(values[ref_text(*parts(m))]), value)

    def param(value: str) -> Any:
        whole = METRIC_REF.fullmatch(value)
        return values[ref_text(*parts(whole))] if whole else text(value)

    return replace(
        step,
        cmd=tuple(text(c) for c in step.cmd),
        env={k: text(v) for k, v in step.env.items()},
        params={k: map_strings(v, param) for k, v in step.params.items()},
    )


def renamed_refs(step: Step, rename: Callable[[str], str]) -> Step:
    """The step with the steps its references name renamed (a nested pipeline's steps
    take their outer step's name as a prefix)."""
    if not step.metric_refs:
        return step

    def renamed(match: re.Match[str]) -> str:
        name, metric = parts(match)
        return ref_text(rename(name), metric)

    def text(value: str) -> str:
        return METRIC_REF.sub(lambda m: "${" + renamed(m) + "}", value)

    when = step.when
    if when is not None and when.refs:
        mapping = {}
        for ref in when.refs:
            match = METRIC_REF.fullmatch("${" + ref + "}")
            if match is not None:
                mapping[ref] = renamed(match)
        when = when.renamed(mapping, text(when.source))
    return replace(
        step,
        cmd=tuple(text(c) for c in step.cmd),
        env={k: text(v) for k, v in step.env.items()},
        params={k: map_strings(v, text) for k, v in step.params.items()},
        metric_refs=tuple(replace(r, step=rename(r.step)) for r in step.metric_refs),
        when=when,
    )
