"""The pipeline file, parsed once into frozen dataclasses.

Parsing is pure: it reads the TOML text it is given and checks everything that can
be known without the file system (fields, types, ``${...}`` references, path
shapes, duplicate and overlapping outputs).  The graph module checks edges and
cycles; the project checks what needs the disk or Git.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gitpipe import tomlcache
from gitpipe.errors import PipelineError

DEFAULT_FILE = "gitpipe.toml"

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
    }
)
TOP_LEVEL = frozenset({"pipeline", "params", "steps", "remote"})
PIPELINE_FIELDS = frozenset({"name", "code_digest"})
REMOTE_FIELDS = frozenset({"url"})
CODE_DIGESTS = ("ast", "bytes")

_REF = re.compile(r"\$(\$?)\{([^}]*)\}")
_STEP_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-@]*$")
_FN = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")


@dataclass(frozen=True, slots=True)
class PathSpec:
    """A normalised path relative to the pipeline's folder; ``is_dir`` for folders."""

    path: str
    is_dir: bool = False

    def __str__(self) -> str:
        return self.path + ("/" if self.is_dir else "")

    def contains(self, other: PathSpec) -> bool:
        """True when ``other`` is this path or lies inside it."""
        if self.path == other.path:
            return True
        return self.path == "." or other.path.startswith(self.path + "/")


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
    fn: str = ""  # "package.module:function" for a Python function step (then cmd is a label)

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

    @property
    def root(self) -> Path:
        """The folder the pipeline's paths are relative to."""
        return self.file.parent


def load(file: Path, *, cache_dir: Path | None = None) -> Pipeline:
    """Read and parse a pipeline file."""
    pipeline, keep = load_cached(file, cache_dir=cache_dir)
    keep()
    return pipeline


def load_cached(
    file: Path, *, cache_dir: Path | None = None
) -> tuple[Pipeline, Callable[[], None]]:
    """Read and parse a pipeline file, its parsed TOML cached in ``cache_dir``: the
    second value keeps it there, once the caller found the whole pipeline valid."""
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
    return _Parser(file.name, data, file).pipeline(), keep


def parse(text: str, *, file: Path) -> Pipeline:
    """Parse pipeline TOML text; ``file`` names the file in errors and anchors paths."""
    try:
        data = tomlcache.loads(text)
    except tomlcache.TOMLDecodeError as exc:
        raise PipelineError(f"invalid TOML: {exc}", file=file.name) from exc
    return _Parser(file.name, data, file).pipeline()


class _Parser:
    def __init__(self, shown: str, data: dict[str, Any], file: Path) -> None:
        self.shown = shown
        self.data = data
        self.file = file

    def error(self, message: str, key: str) -> PipelineError:
        return PipelineError(message, file=self.shown, key=key)

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
        params = self.table(self.data.get("params", {}), "params")
        steps_table = self.table(self.data.get("steps", {}), "steps")
        steps: dict[str, Step] = {}
        for step_name, body in steps_table.items():
            if not _STEP_NAME.match(step_name):
                raise self.error(
                    "a step name may hold letters, digits, '_', '-', '.' and '@' only",
                    f"steps.{step_name}",
                )
            steps[step_name] = self.step(step_name, self.table(body, f"steps.{step_name}"), params)
        _check_outputs(self, steps)
        return Pipeline(
            name=name,
            file=self.file,
            params=params,
            steps=steps,
            remote=self.remote(),
            declared_name=header.get("name", ""),
        )

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

    def step(self, name: str, body: dict[str, Any], params: Mapping[str, Any]) -> Step:
        prefix = f"steps.{name}"
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

        def expand(value: str, key: str) -> str:
            return self.interpolate(value, key, params, used)

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
                specs.append(self.path(expand(value, where), where, output=outputs))
            return tuple(specs)

        deps = paths("deps", outputs=False)
        outs = paths("outs", outputs=True)
        metrics = paths("metrics", outputs=True)
        for spec in metrics:
            if spec.is_dir:
                raise self.error("a metrics file cannot be a folder", f"{prefix}.metrics")
        code = tuple(
            expand(value, f"{prefix}.code")
            for value in self.str_list(body.get("code", []), f"{prefix}.code")
        )
        after = tuple(self.str_list(body.get("after", []), f"{prefix}.after"))
        for param_key in self.str_list(body.get("params", []), f"{prefix}.params"):
            used[param_key] = self.lookup(params, param_key, f"{prefix}.params")
        env_table = self.table(body.get("env", {}), f"{prefix}.env")
        env = {}
        for key, value in env_table.items():
            if not isinstance(value, (str, int, float, bool)):
                raise self.error(
                    f"must be a string or a number, not {_type_name(value)}",
                    f"{prefix}.env.{key}",
                )
            env[key] = expand(_scalar_text(value), f"{prefix}.env.{key}")
        wdir = self.string(body.get("wdir", "."), f"{prefix}.wdir")
        wdir = self.path(expand(wdir, f"{prefix}.wdir"), f"{prefix}.wdir", output=False).path
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

    def lookup(self, params: Mapping[str, Any], dotted: str, key: str) -> Any:
        node: Any = params
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                raise self.error(f"unknown param {dotted!r} (not in [params])", key)
            node = node[part]
        return node

    def interpolate(
        self, text: str, key: str, params: Mapping[str, Any], used: dict[str, Any]
    ) -> str:
        def replace(match: re.Match[str]) -> str:
            if match.group(1):  # `$${...}` is a literal `${...}`
                return "${" + match.group(2) + "}"
            ref = match.group(2).strip()
            namespace, _, dotted = ref.partition(".")
            if namespace != "params" or not dotted:
                raise self.error(
                    f"unknown reference ${{{ref}}} (only ${{params.NAME}} is known; "
                    "write $${...} for a literal ${...})",
                    key,
                )
            value = self.lookup(params, dotted, key)
            used[dotted] = value
            return _scalar_text(value)

        return _REF.sub(replace, text)

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
