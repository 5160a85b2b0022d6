"""The pipeline file, parsed once into frozen dataclasses.

Parsing is pure: it reads the TOML text it is given and checks everything that can
be known without the file system (fields, types, ``${...}`` references, path
shapes, duplicate and overlapping outputs).  The graph module checks edges and
cycles; the project checks what needs the disk or Git.
"""

from __future__ import annotations

import contextlib
import json
import posixpath
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from gitpipe.core import atomic, stamps, tomlcache
from gitpipe.core.errors import PipelineError, UsageError
from gitpipe.core.snapshot import DEFAULT_FILE
from gitpipe.pipeline.expr import Condition, ExprError
from gitpipe.pipeline.expr import parse as parse_condition

__all__ = ["DEFAULT_FILE"]  # the rest is public by name; DEFAULT_FILE lives in status

STEP_FIELDS = frozenset(
    {
        "cmd",
        "fn",
        "deps",
        "outs",
        "metrics",
        "params",
        "code",
        "after",
        "env",
        "wdir",
        "always",
        "cache",
        "persist",
        "frozen",
        "desc",
        "timeout",
        "resources",
        "code_digest",
        "link",
        "matrix",
        "when",
        "approval",
    }
)
#: the fields a step that runs another pipeline file may have
NESTED_FIELDS = frozenset({"pipeline", "after", "desc"})
TOP_LEVEL = frozenset({"pipeline", "params", "steps", "remote", "hooks"})
HOOK_EVENTS = ("before_step", "after_step", "on_failure")
HOOK_FIELDS = frozenset({*HOOK_EVENTS, "fail"})
PIPELINE_FIELDS = frozenset({"name", "code_digest", "link"})
REMOTE_FIELDS = frozenset({"url"})
CODE_DIGESTS = ("ast", "bytes")
#: how outputs are put in the workspace (docs/pipeline-file.md#link; never keyed)
LINKS = ("copy", "hardlink", "symlink")

_REF = re.compile(r"\$(\$?)\{([^}]*)\}")
#: a reference to another step's metrics, left in a step's strings until it runs
_METRIC_REF = re.compile(r"\$\{\s*steps\.([^}]*?)\.metrics\.([^}]*?)\s*\}")
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")
#: what a step name is made of; it does not start with '.', '-' or '@'
_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-@")
#: the longest step name, in bytes: a step's log is `.gitpipe/logs/RUN/NAME.log` (and
#: its pid file `NAME.pid`), and a file name holds at most 255 bytes (NAME_MAX); a
#: matrix step's expansions (`NAME@LABEL`) and a nested pipeline's steps (`OUTER/NAME`)
#: are held to it too
MAX_NAME_BYTES = 200
_FN = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")


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


@dataclass(frozen=True, slots=True)
class MetricRef:
    """``${steps.STEP.metrics.NAME}``: a value read from another step's metrics after it
    ran; ``key`` is where the pipeline file uses it."""

    step: str
    metric: str
    key: str

    @property
    def ref(self) -> str:
        return _ref_text(self.step, self.metric)


@dataclass(frozen=True, slots=True)
class Hooks:
    """``[hooks]``: commands run around each step (never part of a key)."""

    before_step: tuple[str, ...] = ()
    after_step: tuple[str, ...] = ()
    on_failure: tuple[str, ...] = ()
    fail: bool = True  # a failing hook fails the run

    def __bool__(self) -> bool:
        return bool(self.before_step or self.after_step or self.on_failure)


@dataclass(frozen=True, slots=True)
class Template:
    """A step's ``cmd``, ``env`` and ``wdir`` as the pipeline file writes them, before
    ``${params.X}`` and ``${matrix.X}`` are put in.  Versions and diffs read it to tell
    an edit of a command from a change of the params it is given; never keyed."""

    cmd: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    wdir: str = "."


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    cmd: tuple[str, ...]
    deps: tuple[PathSpec, ...] = ()
    outs: tuple[PathSpec, ...] = ()
    metrics: tuple[PathSpec, ...] = ()
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

    @property
    def all_outs(self) -> tuple[PathSpec, ...]:
        """Declared outputs and metrics files, in the order written."""
        return self.outs + self.metrics


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

    @property
    def root(self) -> Path:
        """The folder the pipeline's paths are relative to."""
        return self.file.parent


def load(
    file: Path, *, cache_dir: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Pipeline:
    """Read and parse a pipeline file."""
    pipeline, keep = load_cached(file, cache_dir=cache_dir, overrides=overrides)
    keep()
    return pipeline


def load_cached(
    file: Path, *, cache_dir: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> tuple[Pipeline, Callable[[], None]]:
    """Read and parse a pipeline file (and the pipeline files its steps nest), the
    parsed TOML cached in ``cache_dir``: the second value keeps it there, once the
    caller found the whole pipeline valid.  ``overrides`` replace params by dotted name
    (`repro -p`).  The parsed pipeline itself is cached there too, by the stamps of
    every file it was read from (and of the parser's own modules)."""
    key = _pickle_key(file, overrides)
    if cache_dir is not None:
        cached = _from_pickle(cache_dir, key)
        if cached is not None:
            return cached, _nothing
    read_from = [file]
    started_ns = time.time_ns()
    try:
        data, keep = tomlcache.load(file, cache_dir)
    except FileNotFoundError as exc:
        raise PipelineError(
            "no pipeline file here; run `gitpipe init` to create one, or pass -f FILE",
            file=file.name,
        ) from exc
    except tomlcache.TOMLDecodeError as exc:
        raise PipelineError(f"invalid TOML: {exc}", file=file.name) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise PipelineError(f"cannot read the pipeline file ({exc})", file=file.name) from exc
    keeps = [keep]

    def read_nested(relpath: str) -> dict[str, Any]:
        nested = file.parent / relpath
        name = "nested-" + relpath.replace("/", "%")
        read_from.append(nested)
        data, keep = tomlcache.load(nested, cache_dir, name=name)
        keeps.append(keep)
        return data

    pipeline = _Parser(file.name, data, file, read=read_nested, overrides=overrides).pipeline()

    def keep_all() -> None:
        for each in keeps:
            each()
        if cache_dir is not None:
            _to_pickle(cache_dir, key, read_from, pipeline, started_ns)

    return pipeline, keep_all


_PICKLED = "pipeline.pickle"


def _pickle_key(file: Path, overrides: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """What a cached parse depends on besides its files: where the file is (its
    folder names the pipeline), the overrides, and the parser's code."""
    here = Path(__file__).parent
    code = tuple(
        stamps.stamp(path) for path in (here / "spec.py", here / "expr.py", tomlcache.__file__)
    )
    return (1, str(file.resolve()), repr(sorted((overrides or {}).items())), code)


def _from_pickle(cache_dir: Path, key: tuple[Any, ...]) -> Pipeline | None:
    import pickle

    try:
        with open(cache_dir / _PICKLED, "rb") as handle:
            saved_key, files, pipeline = pickle.load(handle)
    except Exception:  # missing, damaged or from another gitpipe: parse instead
        return None
    if saved_key != key or not isinstance(pipeline, Pipeline):
        return None
    for path, stamp in files:
        if stamps.stamp(path) != stamp:
            return None
    return pipeline


def _to_pickle(
    cache_dir: Path, key: tuple[Any, ...], files: list[Path], pipeline: Pipeline, started_ns: int
) -> None:
    """Keep a parsed pipeline, unless one of its files changed within the racy window
    (its stamp could then miss a later edit of the same size)."""
    import pickle

    if not cache_dir.parent.is_dir():  # only where gitpipe keeps state already
        return
    taken = [(str(path), stamps.stamp(path)) for path in files]
    if any(s is None or stamps.racy(s[1], started_ns) for _, s in taken):
        return
    with contextlib.suppress(Exception):  # a cache: never a reason to fail a command
        cache_dir.mkdir(exist_ok=True)
        data = pickle.dumps((key, taken, pipeline), protocol=pickle.HIGHEST_PROTOCOL)
        atomic.write_bytes(cache_dir / _PICKLED, data, sync=False)


def _nothing() -> None:
    return None


def parse(
    text: str,
    *,
    file: Path,
    read: Callable[[str], str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Pipeline:
    """Parse pipeline TOML text; ``file`` names the file in errors and anchors paths.
    ``read`` gives the text of a nested pipeline file by its path relative to
    ``file``'s folder (default: from the disk)."""
    try:
        data = tomlcache.loads(text)
    except tomlcache.TOMLDecodeError as exc:
        raise PipelineError(f"invalid TOML: {exc}", file=file.name) from exc
    reader = read or (lambda relpath: (file.parent / relpath).read_text(encoding="utf-8"))
    return _Parser(
        file.name,
        data,
        file,
        read=lambda relpath: tomlcache.loads(reader(relpath)),
        overrides=overrides,
    ).pipeline()


def parse_override(text: str) -> tuple[str, Any]:
    """``train.lr=0.02`` (from `repro -p`) -> ``("train.lr", 0.02)``: the value is read
    as a TOML value, and taken as a plain string when it is not one (``-p model=rf``)."""
    name, sep, raw = text.partition("=")
    name = name.strip()
    if not sep or not re.fullmatch(r"[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)*", name):
        raise UsageError(f"-p {text!r}: write a param as NAME=VALUE, e.g. -p train.lr=0.02")
    raw = raw.strip()
    try:
        return name, tomlcache.loads(f"v = {raw}")["v"]
    except tomlcache.TOMLDecodeError:
        if raw[:1] in ("[", "{", '"', "'"):
            raise UsageError(f"-p {text!r}: {raw!r} is not a valid TOML value") from None
        return name, raw


def resolve(step: Step, value_of: Callable[[MetricRef], Any]) -> Step:
    """The step with its ``${steps.S.metrics.M}`` references replaced by the values
    ``value_of`` reads from those steps' metrics (run time, once they ran).  A param
    whose whole value is one reference takes the metric's type."""
    if not step.metric_refs:
        return step
    values = {ref.ref: value_of(ref) for ref in step.metric_refs}

    def text(value: str) -> str:
        return _METRIC_REF.sub(lambda m: _scalar_text(values[_ref_text(*_parts(m))]), value)

    def param(value: str) -> Any:
        whole = _METRIC_REF.fullmatch(value)
        return values[_ref_text(*_parts(whole))] if whole else text(value)

    return replace(
        step,
        cmd=tuple(text(c) for c in step.cmd),
        env={k: text(v) for k, v in step.env.items()},
        params={k: _map_strings(v, param) for k, v in step.params.items()},
    )


def _renamed_refs(step: Step, rename: Callable[[str], str]) -> Step:
    """The step with the steps its references name renamed (a nested pipeline's steps
    take their outer step's name as a prefix)."""
    if not step.metric_refs:
        return step

    def renamed(match: re.Match[str]) -> str:
        name, metric = _parts(match)
        return _ref_text(rename(name), metric)

    def text(value: str) -> str:
        return _METRIC_REF.sub(lambda m: "${" + renamed(m) + "}", value)

    when = step.when
    if when is not None and when.refs:
        mapping = {}
        for ref in when.refs:
            match = _METRIC_REF.fullmatch("${" + ref + "}")
            if match is not None:
                mapping[ref] = renamed(match)
        when = when.renamed(mapping, text(when.source))
    return replace(
        step,
        cmd=tuple(text(c) for c in step.cmd),
        env={k: text(v) for k, v in step.env.items()},
        params={k: _map_strings(v, text) for k, v in step.params.items()},
        metric_refs=tuple(replace(r, step=rename(r.step)) for r in step.metric_refs),
        when=when,
    )


def _joined(folder: str, path: str) -> str:
    """``path`` seen from ``folder`` levels up, as text: a path as written may hold
    ``${...}`` references, which normalising could fold away."""
    if path == ".":
        return folder
    return path if folder == "." else posixpath.join(folder, path)


def _metric_parts(ref: str) -> tuple[str, str] | None:
    """``steps.S.metrics.M`` -> ``(S, M)``; None when it is not written so."""
    match = _METRIC_REF.fullmatch("${" + ref + "}")
    if match is None or not all(_parts(match)):
        return None
    return _parts(match)


def _condition_value(value: Any, ref: str, parser: _Parser, key: str) -> Any:
    if isinstance(value, (bool, int, float, str)):
        return value
    raise parser.error(
        f"${{{ref}}} is {_type_name(value)}; a condition compares single values", key
    )


def _map_strings(value: Any, change: Callable[[str], Any]) -> Any:
    """``value`` with every string in it (through lists and tables) changed; a new
    copy of each list and table, other values as they are."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list):
        return [_map_strings(v, change) for v in value]
    if isinstance(value, dict):
        return {k: _map_strings(v, change) for k, v in value.items()}
    return value


def _strings(value: Any) -> Iterator[str]:
    """Every string in ``value``, through lists and tables."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, dict)):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _strings(item)


def _parts(match: re.Match[str]) -> tuple[str, str]:
    """The step and metric names a ``_METRIC_REF`` match holds."""
    return match.group(1).strip(), match.group(2).strip()


def _ref_text(step: str, metric: str) -> str:
    return f"steps.{step}.metrics.{metric}"


def _metric_refs_in(value: Any, key: str) -> list[MetricRef]:
    """The metric references in the strings of ``value`` (a param's value)."""
    return [
        MetricRef(*_parts(match), key)
        for text in _strings(value)
        for match in _METRIC_REF.finditer(text)
    ]


def shown(text: str) -> str:
    """``text`` for a one-line message: characters that do not print (a newline, a
    tab, an escape) written as Python writes them in a string's repr (``\\n``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def matrix_label(value: Any) -> str:
    """How one matrix value appears in an expanded step's name: a string, number or
    boolean as its text, a table with a ``name`` by that name, any other table or
    list by ``h`` and the first 8 hex digits of its canonical digest; characters
    other than letters, digits, ``_``, ``.`` and ``-`` become ``_``."""
    if isinstance(value, dict) and isinstance(value.get("name"), str):
        value = value["name"]
    if isinstance(value, (dict, list)):
        from gitpipe.core.hashing import digest_record

        return "h" + digest_record(value).hex[:8]
    label = _LABEL_UNSAFE.sub("_", _scalar_text(value))
    return label or "_"


class _Parser:
    def __init__(
        self,
        shown: str,
        data: dict[str, Any],
        file: Path,
        *,
        read: Callable[[str], dict[str, Any]] | None = None,
        overrides: Mapping[str, Any] | None = None,
        chain: tuple[str, ...] = (),
    ) -> None:
        self.shown = shown
        self.data = data
        self.file = file
        self.read = read
        self.overrides = dict(overrides or {})
        self.chain = chain or (file.name,)  # the pipeline files that nest this one

    def error(self, message: str, key: str) -> PipelineError:
        return PipelineError(message, file=shown(self.shown), key=shown(key))

    def pipeline(self) -> Pipeline:
        for key in self.data:
            if key not in TOP_LEVEL:
                raise self.error(
                    f"unknown table {key!r} (expected one of: {', '.join(sorted(TOP_LEVEL))})",
                    key,
                )
        header = self.table(self.data.get("pipeline", {}), "pipeline")
        for key in header:
            if key not in PIPELINE_FIELDS:
                raise self.error(f"unknown field {key!r}", f"pipeline.{key}")
        name = header.get("name", self.file.resolve().parent.name)
        if not isinstance(name, str) or not name:
            raise self.error("must be a non-empty string", "pipeline.name")
        self.code_digest = self.choice(
            header.get("code_digest", "ast"), CODE_DIGESTS, "pipeline.code_digest"
        )
        self.link = self.choice(header.get("link", "copy"), LINKS, "pipeline.link")
        params = self.apply_overrides(self.table(self.data.get("params", {}), "params"))
        steps_table = self.table(self.data.get("steps", {}), "steps")
        steps: dict[str, Step] = {}
        groups: dict[str, tuple[str, ...]] = {}
        includes: list[str] = []
        for step_name, body in steps_table.items():
            self.step_name(step_name)
            body = self.table(body, f"steps.{step_name}")
            if "pipeline" in body:
                nested, nested_groups, nested_files = self.nested(step_name, body)
                expanded = list(nested)
                groups.update(nested_groups)
                includes += nested_files
            elif "matrix" in body:
                if "matrix" in params:
                    raise self.error(
                        "a param named 'matrix' clashes with ${matrix.NAME}; rename it",
                        "params.matrix",
                    )
                nested = {}
                for values, label in self.matrix(step_name, body["matrix"]):
                    full = f"{step_name}@{label}"
                    if full in nested:
                        raise self.error(
                            f"two combinations of step {step_name!r} are both named {full!r}; "
                            "give such values distinct labels (see docs/sweeps.md)",
                            f"steps.{step_name}.matrix",
                        )
                    nested[full] = self.step(full, body, params, matrix=values, group=step_name)
                expanded = list(nested)
            else:
                nested = {step_name: self.step(step_name, body, params)}
                expanded = []
            for full in nested:
                if len(full.encode()) > MAX_NAME_BYTES:
                    raise self.error(
                        f"step {step_name!r} expands to a step name of {len(full.encode())} "
                        f"bytes ({full!r}), over the {MAX_NAME_BYTES} a name may have (its "
                        "log file is named after it); "
                        + (
                            "give the matrix values shorter labels (a table's `name`)"
                            if "matrix" in body
                            else "give the steps shorter names"
                        ),
                        f"steps.{step_name}.matrix" if "matrix" in body else f"steps.{step_name}",
                    )
                if full in steps or (full in steps_table and full != step_name):
                    raise self.error(
                        f"step {step_name!r} expands to {full!r}, which is also the name of "
                        "another step",
                        f"steps.{step_name}",
                    )
            steps.update(nested)
            if expanded:
                groups[step_name] = tuple(expanded)
        _check_outputs(self, steps)
        _check_protected(self, steps, includes)
        self.check_refs(steps, groups)
        return Pipeline(
            name=name,
            file=self.file,
            params=params,
            steps=steps,
            remote=self.remote(),
            declared_name=header.get("name", ""),
            groups=groups,
            hooks=self.hooks(),
            overrides=self.overrides,
            includes=tuple(dict.fromkeys(includes)),
        )

    def apply_overrides(self, params: dict[str, Any]) -> dict[str, Any]:
        """``[params]`` with the command line's ``-p NAME=VALUE`` put in (each NAME must
        be a param already: a typo must not run an experiment that changes nothing)."""
        if not self.overrides:
            return params
        params = _map_strings(params, str)  # a copy: overrides must not leak
        for dotted, value in self.overrides.items():
            node: Any = params
            *parents, last = dotted.split(".")
            for part in parents:
                node = node.get(part) if isinstance(node, dict) else None
            if not isinstance(node, dict) or last not in node:
                raise UsageError(
                    f"-p {dotted}: there is no param {dotted!r} in {self.shown}'s [params]"
                )
            if isinstance(node[last], dict) and not isinstance(value, dict):
                raise UsageError(
                    f"-p {dotted}: {dotted!r} is a table of params; set one of them, "
                    f"e.g. -p {dotted}.{next(iter(node[last]), 'NAME')}=VALUE"
                )
            node[last] = value
        return params

    def step_name(self, name: str) -> None:
        """A step's name: one line of letters, digits, '_', '-', '.' and '@' (not
        first), short enough to name its log file."""
        key = f"steps.{name}"
        bad = next(
            (c for i, c in enumerate(name) if c not in _NAME_CHARS or (i == 0 and c in ".-@")),
            None,
        )
        if bad is not None or not name:
            found = f", not {bad!r}" if bad is not None else " (this one is empty)"
            raise self.error(
                f"a step name may hold letters, digits, '_', '-', '.' and '@' only{found}", key
            )
        size = len(name.encode())
        if size > MAX_NAME_BYTES:
            raise self.error(
                f"a step name may have at most {MAX_NAME_BYTES} bytes, not {size} "
                "(its log file is named after it)",
                key,
            )

    def nested(
        self, name: str, body: dict[str, Any]
    ) -> tuple[dict[str, Step], dict[str, tuple[str, ...]], list[str]]:
        """A step that runs another pipeline file: that file's steps, named
        ``NAME/STEP``, their paths seen from this pipeline's folder."""
        prefix = f"steps.{name}"
        for key in body:
            if key not in NESTED_FIELDS:
                raise self.error(
                    f"step {name!r} runs a pipeline file, so it takes only "
                    f"{', '.join(sorted(NESTED_FIELDS))}, not {key!r}",
                    f"{prefix}.{key}",
                )
        raw = self.string(body["pipeline"], f"{prefix}.pipeline")
        target = self.path(raw, f"{prefix}.pipeline", output=False)
        if target.is_dir or target.path == ".":
            raise self.error("must name a pipeline file, not a folder", f"{prefix}.pipeline")
        shown = posixpath.normpath(posixpath.join(posixpath.dirname(self.shown), target.path))
        if shown == ".." or shown.startswith("../"):
            raise self.error(
                f"pipeline file {raw!r} lies outside the outer pipeline's folder",
                f"{prefix}.pipeline",
            )
        if shown in self.chain:
            raise self.error(
                "pipeline files nest each other: " + " -> ".join([*self.chain, shown]),
                f"{prefix}.pipeline",
            )
        if self.read is None:
            raise self.error("nested pipelines cannot be read here", f"{prefix}.pipeline")
        try:
            data = self.read(target.path)
        except FileNotFoundError:
            raise self.error(
                f"pipeline file {target.path!r} does not exist", f"{prefix}.pipeline"
            ) from None
        except tomlcache.TOMLDecodeError as exc:
            raise PipelineError(f"invalid TOML: {exc}", file=shown) from exc
        except (OSError, UnicodeDecodeError, KeyError) as exc:
            raise self.error(
                f"cannot read pipeline file {target.path!r} ({exc})", f"{prefix}.pipeline"
            ) from exc
        folder = posixpath.dirname(target.path)
        parent_read = self.read
        inner = _Parser(
            shown,
            data,
            self.file.parent / target.path,
            read=lambda relpath: parent_read(posixpath.join(folder, relpath)),
            chain=(*self.chain, shown),
        ).pipeline()
        after = tuple(self.str_list(body.get("after", []), f"{prefix}.after"))
        where = folder or "."

        def inside(step_name: str) -> str:
            return f"{name}/{step_name}"

        steps = {}
        for step in inner.steps.values():
            moved = replace(
                _renamed_refs(step, inside),
                name=inside(step.name),
                group=inside(step.group) if step.group else name,
                deps=tuple(d.under(where) for d in step.deps),
                outs=tuple(o.under(where) for o in step.outs),
                metrics=tuple(m.under(where) for m in step.metrics),
                code=tuple(posixpath.normpath(posixpath.join(where, c)) for c in step.code),
                wdir=posixpath.normpath(posixpath.join(where, step.wdir)),
                after=tuple(inside(a) for a in step.after) + after,
                template=replace(step.template, wdir=_joined(where, step.template.wdir)),
            )
            steps[moved.name] = moved
        groups = {
            inside(group): tuple(inside(m) for m in members)
            for group, members in inner.groups.items()
        }
        groups[name] = tuple(steps)
        includes = [target.path] + [posixpath.join(folder, i) for i in inner.includes]
        return steps, groups, includes

    def matrix(self, name: str, value: Any) -> list[tuple[dict[str, Any], str]]:
        """Each combination of a matrix step's values with its label, in the order
        written (the first axis varies slowest)."""
        key = f"steps.{name}.matrix"
        table = self.table(value, key)
        if not table:
            raise self.error("must name at least one list of values", key)
        axes = []
        for axis, values in table.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", axis):
                raise self.error(
                    "a matrix name may hold letters, digits and '_' only", f"{key}.{axis}"
                )
            if not isinstance(values, list) or not values:
                raise self.error(
                    f"must be a non-empty list of values, not {_type_name(values)}",
                    f"{key}.{axis}",
                )
            labels: dict[str, int] = {}
            for i, item in enumerate(values):
                label = matrix_label(item)
                if label in labels:
                    raise self.error(
                        f"values {labels[label]} and {i} both make the name {label!r}; "
                        "matrix values must be distinct (give tables a distinct `name`)",
                        f"{key}.{axis}[{i}]",
                    )
                labels[label] = i
            axes.append((axis, values, list(labels)))
        combos: list[tuple[dict[str, Any], str]] = [({}, "")]
        for axis, values, labels in axes:
            combos = [
                ({**chosen, axis: item}, f"{label}-{own}" if label else own)
                for chosen, label in combos
                for item, own in zip(values, labels, strict=True)
            ]
        return combos

    def check_refs(self, steps: Mapping[str, Step], groups: Mapping[str, tuple[str, ...]]) -> None:
        """Every ``${steps.S.metrics.M}`` names a step of this pipeline that declares
        metrics (or is a function step, whose returned values are metrics)."""
        for step in steps.values():
            for ref in step.metric_refs:
                if ref.step in groups:
                    raise self.error(
                        f"{ref.step!r} expands to several steps; name one of them, e.g. "
                        f"${{steps.{groups[ref.step][0]}.metrics.{ref.metric}}}",
                        ref.key,
                    )
                other = steps.get(ref.step)
                if other is None:
                    raise self.error(f"${{{ref.ref}}} names no step of this pipeline", ref.key)
                if ref.step == step.name:
                    raise self.error(f"step {step.name!r} cannot read its own metrics", ref.key)
                if not other.metrics and not other.fn:
                    raise self.error(
                        f"step {ref.step!r} declares no metrics for ${{{ref.ref}}} to read",
                        ref.key,
                    )

    def hooks(self) -> Hooks:
        table = self.table(self.data.get("hooks", {}), "hooks")
        for key in table:
            if key not in HOOK_FIELDS:
                raise self.error(
                    f"unknown field {key!r} (expected one of: {', '.join(sorted(HOOK_FIELDS))})",
                    f"hooks.{key}",
                )
        commands = {}
        for event in HOOK_EVENTS:
            values = self.str_list(table.get(event, []), f"hooks.{event}")
            if any(not v.strip() for v in values):
                raise self.error("a hook command must not be empty", f"hooks.{event}")
            commands[event] = tuple(values)
        return Hooks(**commands, fail=self.boolean(table, "fail", "hooks", True))

    def remote(self) -> str:
        table = self.table(self.data.get("remote", {}), "remote")
        for key in table:
            if key not in REMOTE_FIELDS:
                raise self.error(f"unknown field {key!r} (expected: url)", f"remote.{key}")
        url = self.string(table.get("url", ""), "remote.url").strip()
        if "url" in table and not url:
            raise self.error("must be a non-empty string", "remote.url")
        return url

    def table(self, value: Any, key: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.error(f"must be a table, not {_type_name(value)}", key)
        return value

    def step(
        self,
        name: str,
        body: dict[str, Any],
        params: Mapping[str, Any],
        *,
        matrix: Mapping[str, Any] | None = None,
        group: str = "",
    ) -> Step:
        prefix = f"steps.{group or name}"
        for key in body:
            if key not in STEP_FIELDS:
                raise self.error(
                    f"unknown field {key!r} in step {name!r} "
                    f"(known fields: {', '.join(sorted(STEP_FIELDS))})",
                    f"{prefix}.{key}",
                )
        if "cmd" not in body and "fn" not in body:
            raise self.error(
                f"step {name!r} has neither `cmd` (a command) nor `fn` (a Python function)",
                f"{prefix}.cmd",
            )
        if "cmd" in body and "fn" in body:
            raise self.error(
                f"step {name!r} has both `cmd` and `fn`; give one of them", f"{prefix}.fn"
            )
        used: dict[str, Any] = {}
        refs: list[MetricRef] = []

        def expand(value: str, key: str, *, metrics: bool = True) -> str:
            return self.interpolate(
                value, key, params, used, matrix=matrix, refs=refs if metrics else None
            )

        fn = ""
        if "fn" in body:
            fn = self.string(body["fn"], f"{prefix}.fn")
            if not _FN.match(fn):
                raise self.error(
                    f"{fn!r} is not a function reference like 'package.module:function'",
                    f"{prefix}.fn",
                )
        raw_cmd = body.get("cmd", [fn])  # a function step's "command" is its reference
        if isinstance(raw_cmd, str):
            raw_cmds = [raw_cmd]
        elif isinstance(raw_cmd, list) and raw_cmd and all(isinstance(c, str) for c in raw_cmd):
            raw_cmds = raw_cmd
        else:
            raise self.error("must be a string or a non-empty list of strings", f"{prefix}.cmd")
        cmd = tuple(
            expand(c, f"{prefix}.cmd" + (f"[{i}]" if len(raw_cmds) > 1 else ""))
            for i, c in enumerate(raw_cmds)
        )
        if any(not c.strip() for c in cmd):
            raise self.error("a command must not be empty", f"{prefix}.cmd")

        def paths(key: str, *, outputs: bool) -> tuple[PathSpec, ...]:
            values = self.str_list(body.get(key, []), f"{prefix}.{key}")
            specs = []
            for i, value in enumerate(values):
                where = f"{prefix}.{key}[{i}]"
                specs.append(self.path(expand(value, where, metrics=False), where, output=outputs))
            return tuple(specs)

        deps = paths("deps", outputs=False)
        outs = paths("outs", outputs=True)
        metrics = paths("metrics", outputs=True)
        for spec in metrics:
            if spec.is_dir:
                raise self.error("a metrics file cannot be a folder", f"{prefix}.metrics")
        code = tuple(
            expand(value, f"{prefix}.code", metrics=False)
            for value in self.str_list(body.get("code", []), f"{prefix}.code")
        )
        after = tuple(self.str_list(body.get("after", []), f"{prefix}.after"))
        for i, param_key in enumerate(self.str_list(body.get("params", []), f"{prefix}.params")):
            where = f"{prefix}.params[{i}]"
            param_key = expand(param_key, where, metrics=False)
            used[param_key] = self.lookup(params, param_key, where)
            refs.extend(_metric_refs_in(used[param_key], where))
        for axis, value in (matrix or {}).items():  # each expansion's values are its own
            used[f"matrix.{axis}"] = value
        env_table = self.table(body.get("env", {}), f"{prefix}.env")
        env_written: dict[str, str] = {}
        env = {}
        for key, value in env_table.items():
            if not isinstance(value, (str, int, float, bool)):
                raise self.error(
                    f"must be a string or a number, not {_type_name(value)}",
                    f"{prefix}.env.{key}",
                )
            env_written[key] = _scalar_text(value)
            env[key] = expand(env_written[key], f"{prefix}.env.{key}")
        wdir_written = self.string(body.get("wdir", "."), f"{prefix}.wdir")
        wdir = self.path(
            expand(wdir_written, f"{prefix}.wdir", metrics=False), f"{prefix}.wdir", output=False
        ).path
        when = None
        if "when" in body:
            when = self.condition(body["when"], f"{prefix}.when", params, matrix)
            refs.extend(
                MetricRef(*self.metric_parts(ref, f"{prefix}.when"), key=f"{prefix}.when")
                for ref in when.refs
            )
        timeout = body.get("timeout")
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0
        ):
            raise self.error("must be a positive number of seconds", f"{prefix}.timeout")
        resources = {}
        for key, value in self.table(body.get("resources", {}), f"{prefix}.resources").items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise self.error("must be a positive number", f"{prefix}.resources.{key}")
            if key == "cpus" and not isinstance(value, int):
                raise self.error("must be a whole number", f"{prefix}.resources.cpus")
            resources[key] = value
        step = Step(
            name=name,
            cmd=cmd,
            deps=deps,
            outs=outs,
            metrics=metrics,
            params=dict(sorted(used.items())),
            code=code,
            after=after,
            env=dict(sorted(env.items())),
            wdir=wdir,
            always=self.boolean(body, "always", prefix, False),
            cache=self.boolean(body, "cache", prefix, True),
            persist=self.boolean(body, "persist", prefix, False),
            frozen=self.boolean(body, "frozen", prefix, False),
            desc=self.string(body.get("desc", ""), f"{prefix}.desc"),
            timeout=float(timeout) if timeout is not None else None,
            resources=resources,
            fn=fn,
            code_digest=self.choice(
                body.get("code_digest", self.code_digest), CODE_DIGESTS, f"{prefix}.code_digest"
            ),
            link=self.choice(body.get("link", self.link), LINKS, f"{prefix}.link"),
            group=group,
            matrix=dict(matrix or {}),
            when=when,
            approval=self.boolean(body, "approval", prefix, False),
            metric_refs=tuple(dict.fromkeys(refs)),
            template=Template(
                cmd=tuple(raw_cmds), env=dict(sorted(env_written.items())), wdir=wdir_written
            ),
        )
        _check_own_paths(self, step)
        return step

    def string(self, value: Any, key: str) -> str:
        if not isinstance(value, str):
            raise self.error(f"must be a string, not {_type_name(value)}", key)
        return value

    def choice(self, value: Any, choices: tuple[str, ...], key: str) -> str:
        if value not in choices:
            raise self.error(
                f"must be one of {', '.join(repr(c) for c in choices)}, not {value!r}", key
            )
        return str(value)

    def boolean(self, body: dict[str, Any], name: str, prefix: str, default: bool) -> bool:
        value = body.get(name, default)
        if not isinstance(value, bool):
            raise self.error(f"must be true or false, not {_type_name(value)}", f"{prefix}.{name}")
        return value

    def str_list(self, value: Any, key: str) -> list[str]:
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list):
            raise self.error(f"must be a list of strings, not {_type_name(value)}", key)
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(f"must be a string, not {_type_name(item)}", f"{key}[{i}]")
        return value

    def lookup(
        self, params: Mapping[str, Any], dotted: str, key: str, *, what: str = "param"
    ) -> Any:
        node: Any = params
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                where = "not in [params]" if what == "param" else f"known: {', '.join(params)}"
                raise self.error(f"unknown {what} {dotted!r} ({where})", key)
            node = node[part]
        return node

    def interpolate(
        self,
        text: str,
        key: str,
        params: Mapping[str, Any],
        used: dict[str, Any],
        *,
        matrix: Mapping[str, Any] | None = None,
        refs: list[MetricRef] | None = None,
    ) -> str:
        """``text`` with its ``${params.X}`` and ``${matrix.X}`` references replaced;
        ``${steps.S.metrics.M}`` references are kept (and listed in ``refs``) to be
        resolved when the step runs, where ``refs`` is given, and an error elsewhere."""

        def metric_error() -> PipelineError:
            return self.error(
                "a path cannot read another step's metrics (${steps...}): paths must be "
                "known before any step runs",
                key,
            )

        def substitute(match: re.Match[str]) -> str:
            if match.group(1):  # `$${...}` is a literal `${...}`
                return "${" + match.group(2) + "}"
            ref = match.group(2).strip()
            namespace, _, dotted = ref.partition(".")
            if namespace == "params" and dotted:
                value = self.lookup(params, dotted, key)
                used[dotted] = value
                found = _metric_refs_in(value, key)
                if found and refs is None:
                    raise metric_error()
                if refs is not None:
                    refs.extend(found)
                return _scalar_text(value)
            if namespace == "matrix" and dotted and matrix is not None:
                return _scalar_text(self.lookup(matrix, dotted, key, what="matrix value"))
            if namespace == "steps":
                if refs is None:
                    raise metric_error()
                step, metric = self.metric_parts(ref, key)
                refs.append(MetricRef(step, metric, key))
                return "${" + _ref_text(step, metric) + "}"
            known = "${params.NAME}, ${steps.STEP.metrics.NAME}" + (
                ", ${matrix.NAME}" if matrix is not None else ""
            )
            raise self.error(
                f"unknown reference ${{{ref}}} (known: {known}; write $${{...}} for a "
                "literal ${...})",
                key,
            )

        return _REF.sub(substitute, text)

    def metric_parts(self, ref: str, key: str) -> tuple[str, str]:
        parts = _metric_parts(ref)
        if parts is None:
            raise self.error(
                f"${{{ref}}}: another step's metric is written ${{steps.STEP.metrics.NAME}}", key
            )
        return parts

    def condition(
        self,
        value: Any,
        key: str,
        params: Mapping[str, Any],
        matrix: Mapping[str, Any] | None,
    ) -> Condition:
        source = self.string(value, key)

        def known_now(ref: str) -> Any:
            namespace, _, dotted = ref.partition(".")
            if namespace == "params" and dotted:
                return _condition_value(self.lookup(params, dotted, key), ref, self, key)
            if namespace == "matrix" and dotted and matrix is not None:
                return _condition_value(
                    self.lookup(matrix, dotted, key, what="matrix value"), ref, self, key
                )
            if namespace == "steps":
                self.metric_parts(ref, key)
                return None
            raise self.error(f"unknown reference ${{{ref}}} in the condition", key)

        try:
            return parse_condition(source, known_now)
        except ExprError as exc:
            raise self.error(f"invalid condition: {exc}", key) from exc

    def path(self, raw: str, key: str, *, output: bool) -> PathSpec:
        if not raw:
            raise self.error("a path must not be empty", key)
        if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":") or raw.startswith("\\"):
            raise self.error(
                f"{raw!r} is an absolute path; use a path relative to the pipeline file's folder",
                key,
            )
        is_dir = raw.endswith("/")
        norm = posixpath.normpath(raw.replace("\\", "/"))
        if output and norm == ".":
            raise self.error(
                f"output {raw!r} is the pipeline's folder itself; "
                "declare the files or folders inside it that the step writes",
                key,
            )
        if output and (norm == ".." or norm.startswith("../")):
            raise self.error(
                f"output {raw!r} lies outside the pipeline's folder; outputs must be inside it",
                key,
            )
        return PathSpec(norm, is_dir)


def out_places(step: Step) -> list[tuple[PathSpec, str]]:
    """Each declared output with the TOML key it was written at."""
    prefix = f"steps.{step.name}"
    return [(spec, f"{prefix}.outs[{i}]") for i, spec in enumerate(step.outs)] + [
        (spec, f"{prefix}.metrics[{i}]") for i, spec in enumerate(step.metrics)
    ]


def _check_own_paths(parser: _Parser, step: Step) -> None:
    seen: set[str] = set()
    for spec, key in out_places(step):
        if spec.path in seen:
            raise parser.error(f"output {str(spec)!r} is declared twice in step {step.name!r}", key)
        seen.add(spec.path)
    for i, dep in enumerate(step.deps):
        for out, _ in out_places(step):
            if out.contains(dep) or dep.contains(out):
                both = f"{str(dep)!r}" if dep.path == out.path else f"{str(dep)!r} and {str(out)!r}"
                raise parser.error(
                    f"{both} {'is' if dep.path == out.path else 'are'} both a dependency and "
                    f"an output of step {step.name!r}; a step cannot read what it writes",
                    f"steps.{step.name}.deps[{i}]",
                )


def _check_outputs(parser: _Parser, steps: Mapping[str, Step]) -> None:
    """No two steps may own the same or overlapping outputs."""
    owner: dict[str, tuple[str, str]] = {}  # path -> (step, key)
    for name, step in steps.items():
        for spec, key in out_places(step):
            other, _ = owner.setdefault(spec.path, (name, key))
            if other != name:
                raise parser.error(
                    f"steps {other!r} and {name!r} both declare the output {str(spec)!r}; "
                    "each output must belong to one step",
                    key,
                )
    for path, (name, key) in owner.items():
        parts = path.split("/")
        for i in range(1, len(parts)):
            ancestor = "/".join(parts[:i])
            if ancestor in owner:
                other = owner[ancestor][0]
                who = (
                    f"step {name!r} declares"
                    if other == name
                    else (f"steps {other!r} and {name!r} declare")
                )
                raise parser.error(
                    f"{who} overlapping outputs {ancestor + '/'!r} and {path!r}; "
                    "an output folder must not contain another output",
                    key,
                )


#: folder names no output may be or lie inside, at any depth and in any case: Git's
#: own (a folder, or the file of a linked work tree) and gitpipe's state
RESERVED_NAMES = (".git", ".gitpipe")


def reserved_part(relpath: str) -> str | None:
    """The first part of a relative path that is `.git` or `.gitpipe` (in any case, as
    a case-insensitive file system reads it); None when there is none."""
    for part in relpath.split("/"):
        if part.casefold() in RESERVED_NAMES:
            return part
    return None


#: what each reserved name is, for messages
RESERVED_WHAT = {".git": "Git's own folder", ".gitpipe": "gitpipe's own folder"}


def reserved(relpath: str) -> tuple[str, str] | None:
    """("is" | "lies inside", what) when a part of a relative path is `.git` or
    `.gitpipe` (see :func:`reserved_part`); None when none is."""
    part = reserved_part(relpath)
    if part is None:
        return None
    how = "is" if relpath.rpartition("/")[2] == part else "lies inside"
    return how, f"{part}, {RESERVED_WHAT[part.casefold()]}"


def relation(path: str, place: str) -> str | None:
    """How a relative path stands to a protected one: "is" it, "lies inside" it,
    "contains" it, or None."""
    if path == place:
        return "is"
    if place.startswith(path + "/"):
        return "contains"
    if path.startswith(place + "/"):
        return "lies inside"
    return None


def _check_protected(parser: _Parser, steps: Mapping[str, Step], includes: list[str]) -> None:
    """No output is, contains or lies inside `.git`, `.gitpipe`, this pipeline's lock
    or a pipeline file, as written (with ``-p`` values put in); gitpipe/run/guard.py checks
    the same on disk, through links, and the store wherever it is."""
    name = parser.file.name
    lock = posixpath.splitext(name)[0] + ".lock"  # as gitpipe.store.lockfile.path_for names it
    places = {name: f"the pipeline file {name}", lock: f"{lock}, the pipeline's lock file"}
    for include in includes:
        places.setdefault(include, f"the pipeline file {include}")
    for step_name, step in steps.items():
        for spec, key in out_places(step):
            found = reserved(spec.path) or next(
                ((r, what) for place, what in places.items() if (r := relation(spec.path, place))),
                None,
            )
            if found is not None:
                raise parser.error(
                    f"output {str(spec)!r} of step {step_name!r} {found[0]} {found[1]}; "
                    "gitpipe never writes there, choose another path",
                    key,
                )


def render(text: str, values: Mapping[str, Any]) -> str | None:
    """``text`` as written, with its ``${params.X}`` and ``${matrix.X}`` references
    replaced from ``values`` (dotted names; matrix values as ``matrix.X``), as the
    parser replaces them; None when a reference is not in ``values`` or reads another
    step's metrics.  Tells an edited command from one given other params."""
    missing = False

    def substitute(match: re.Match[str]) -> str:
        nonlocal missing
        if match.group(1):
            return "${" + match.group(2) + "}"
        ref = match.group(2).strip()
        namespace, _, dotted = ref.partition(".")
        name = dotted if namespace == "params" else ref if namespace == "matrix" else None
        if name is None or name not in values:
            missing = True
            return ""
        return _scalar_text(values[name])

    text = _REF.sub(substitute, text)
    return None if missing else text


def _scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float, str)):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _type_name(value: Any) -> str:
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "a boolean",
        list: "a list",
        dict: "a table",
    }.get(type(value), type(value).__name__)
