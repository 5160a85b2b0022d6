"""The pipeline file's TOML tables, parsed into the step model.

    [pipeline]  name, the steps' defaults (code_digest, link), env (under each
                step's), pythonpath, params_files ─► paramfiles: merged with [params]
    [params]    + `repro -p` ─► params.apply_overrides
    [steps.X]   a step name ─► pipeline = "..."  ─► nested: a Parser of that file
                              matrix = {...}    ─► matrix.combinations ─┐
                              otherwise                                 ├► step_fields
    all steps   ─► paths: outputs owned once, none protected; metric references
    [hooks] [remote]
                ─► model.Pipeline

The parser checks everything that can be known without the disk or Git (fields,
types, ``${...}`` references, path shapes, overlapping outputs); the graph checks
edges and cycles, the run layer what needs the disk.  It reads no file itself: a
nested pipeline file comes from the ``read`` function it is given, a params file
from ``read_bytes``, and a pipeline
without ``[pipeline] name`` is named after its folder as the file system resolves it.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from gitpipe.pipeline import nested, paramfiles
from gitpipe.pipeline.checks import Checks, type_name
from gitpipe.pipeline.matrix import combinations
from gitpipe.pipeline.model import (
    CODE_DIGESTS,
    HOOK_EVENTS,
    LINKS,
    Hooks,
    ParamsFile,
    PathSpec,
    Pipeline,
    Step,
    out_places,
)
from gitpipe.pipeline.params import References, apply_overrides
from gitpipe.pipeline.paths import check_outputs, check_protected, path
from gitpipe.pipeline.refs import scalar_text
from gitpipe.pipeline.step_fields import check_env_entry, parse_step, read_environment

TOP_LEVEL = frozenset({"pipeline", "params", "steps", "remote", "hooks"})
PIPELINE_FIELDS = frozenset(
    {"name", "code_digest", "link", "params_files", "env", "pythonpath", "environment"}
)
HOOK_FIELDS = frozenset({*HOOK_EVENTS, "fail"})
REMOTE_FIELDS = frozenset({"url"})
#: what a step name is made of; it does not start with '.', '-' or '@'
STEP_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-@")
#: a name of those characters, not starting with '.', '-' or '@' (what step_name checks)
_PLAIN_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]*")
#: the longest step name, in bytes: a step's log is `.gitpipe/logs/RUN/NAME.log` (and
#: its pid file `NAME.pid`), and a file name holds at most 255 bytes (NAME_MAX); a
#: matrix step's expansions (`NAME@LABEL`) and a nested pipeline's steps (`OUTER/NAME`)
#: are held to it too
MAX_NAME_BYTES = 200


class Parser(Checks):
    """Parses the TOML ``data`` of the pipeline file ``file`` (``shown`` in messages)."""

    def __init__(
        self,
        shown: str,
        data: dict[str, Any],
        file: Path,
        *,
        read: nested.Reader | None = None,
        read_bytes: paramfiles.BytesReader | None = None,
        overrides: Mapping[str, Any] | None = None,
        chain: tuple[str, ...] = (),
    ) -> None:
        super().__init__(shown)
        self.data = data
        self.file = file
        self.read = read
        self.read_bytes = read_bytes
        self.env: dict[str, Any] = {}  # [pipeline] env, under each step's
        self.files: dict[str, paramfiles.FileParams] = {}  # params files, as written
        self.pythonpath: tuple[str, ...] | None = None  # [pipeline] pythonpath
        self.overrides = dict(overrides or {})
        self.chain = chain or (file.name,)  # the pipeline files that nest this one
        self.code_digest = "ast"  # [pipeline]'s defaults for each step, once read
        self.link = "copy"
        self.environment: str | tuple[str, ...] = "imports"

    def pipeline(self) -> Pipeline:
        self.fields(
            self.data,
            TOP_LEVEL,
            "",
            lambda key, known: f"unknown table {key!r} (expected one of: {known})",
        )
        header = self.table(self.data.get("pipeline", {}), "pipeline")
        self.fields(header, PIPELINE_FIELDS, "pipeline", lambda key, _: f"unknown field {key!r}")
        name = header.get("name", self.file.resolve().parent.name)
        if not isinstance(name, str) or not name:
            raise self.error("must be a non-empty string", "pipeline.name")
        self.code_digest = self.choice(
            header.get("code_digest", "ast"), CODE_DIGESTS, "pipeline.code_digest"
        )
        self.link = self.choice(header.get("link", "copy"), LINKS, "pipeline.link")
        if "environment" in header:
            self.environment = read_environment(self, header["environment"], "pipeline.environment")
        files = paramfiles.read_files(self, header.get("params_files", []), self.read_bytes)
        params, origin = paramfiles.merge(
            self, self.table(self.data.get("params", {}), "params"), files
        )
        where = f"{self.shown}'s [params]" + (" or its params files" if files else "")
        params = apply_overrides(where, params, self.overrides)
        self.files = {
            file.written: paramfiles.FileParams(
                file, values, paramfiles.own_keys(file, values, origin)
            )
            for file, values in files
        }
        self.env = self.pipeline_env(header, params)
        self.pythonpath = self.read_pythonpath(header)
        steps_table = self.table(self.data.get("steps", {}), "steps")
        steps: dict[str, Step] = {}
        groups: dict[str, tuple[str, ...]] = {}
        includes: list[str] = []
        reads: list[str] = []
        for step_name, body in steps_table.items():
            self.step_name(step_name)
            if not isinstance(body, dict):  # the key is made only for the error
                self.table(body, f"steps.{step_name}")
            if "pipeline" in body:
                expansion, nested_groups, nested_files, nested_reads = self.nested(step_name, body)
                groups.update(nested_groups)  # with step_name -> its steps
                includes += nested_files
                reads += nested_reads
            elif "matrix" in body:
                expansion = self.matrix(step_name, body, params)
                groups[step_name] = tuple(expansion)
            else:  # most steps: the checks of check_expansion that can fail for them
                step = self.step(step_name, body, params)
                if step_name in steps:  # a name a matrix step or a nested pipeline made
                    self.check_expansion(step_name, body, {step_name: step}, steps, steps_table)
                steps[step_name] = step
                continue
            self.check_expansion(step_name, body, expansion, steps, steps_table)
            steps.update(expansion)
        check_outputs(self, steps)
        self.check_params_files(steps, [file for file, _ in files])
        check_protected(self, self.file.name, steps, includes)
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
            params_files=tuple(file for file, _ in files),
            params_origin=origin if files else {},
            pythonpath=self.pythonpath,
            read_files=tuple(dict.fromkeys([*(f.path for f, _ in files), *reads])),
            link=self.link,
        )

    def check_params_files(self, steps: Mapping[str, Step], files: list[ParamsFile]) -> None:
        """No step writes a params file: the params are known before any step runs."""
        if not files:
            return
        for step in steps.values():
            for spec, key in out_places(step):
                for file in files:
                    if spec.contains(PathSpec(file.path)):
                        raise self.error(
                            f"output {str(spec)!r} of step {step.name!r} is the params file "
                            f"{file.written!r} or holds it; params must be known before any "
                            "step runs",
                            key,
                        )

    def pipeline_env(self, header: Mapping[str, Any], params: Mapping[str, Any]) -> dict[str, Any]:
        """``[pipeline] env``, checked as a step's ``env`` is (its ``${params...}``
        are put in for each step, as if the step had written them)."""
        env = self.table(header.get("env", {}), "pipeline.env")
        refs = References(self, params, None)
        for key, value in env.items():
            if not isinstance(value, (str, int, float, bool)):
                raise self.error(
                    f"must be a string or a number, not {type_name(value)}", f"pipeline.env.{key}"
                )
            check_env_entry(self, key, scalar_text(value), "pipeline.env")
            refs.expand(scalar_text(value), f"pipeline.env.{key}")
        return env

    def read_pythonpath(self, header: Mapping[str, Any]) -> tuple[str, ...] | None:
        """``[pipeline] pythonpath``: folders relative to the pipeline's folder (None:
        not written, each step gets what its code discovery needs)."""
        if "pythonpath" not in header:
            return None
        found = []
        for i, raw in enumerate(self.str_list(header["pythonpath"], "pipeline.pythonpath")):
            found.append(path(self, raw, f"pipeline.pythonpath[{i}]", output=False).path)
        return tuple(dict.fromkeys(found))

    def step_name(self, name: str) -> None:
        """A step's name: one line of letters, digits, '_', '-', '.' and '@' (not
        first), short enough to name its log file."""
        if len(name) <= MAX_NAME_BYTES and _PLAIN_NAME.fullmatch(name):  # ASCII: a byte each
            return
        key = f"steps.{name}"
        bad = next(
            (c for i, c in enumerate(name) if c not in STEP_NAME_CHARS or (i == 0 and c in ".-@")),
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

    def step(
        self,
        name: str,
        body: dict[str, Any],
        params: Mapping[str, Any],
        *,
        matrix: Mapping[str, Any] | None = None,
        group: str = "",
    ) -> Step:
        if self.env and isinstance(body.get("env", {}), dict):  # the step's own env wins
            body = {**body, "env": {**self.env, **body.get("env", {})}}
        step = parse_step(
            self,
            name,
            body,
            params,
            code_digest=self.code_digest,
            link=self.link,
            environment=self.environment,
            matrix=matrix,
            group=group,
            files=self.files,
        )
        return step if self.pythonpath is None else replace(step, pythonpath=self.pythonpath)

    def matrix(self, name: str, body: dict[str, Any], params: Mapping[str, Any]) -> dict[str, Step]:
        """A matrix step's expansions, ``NAME@LABEL`` each."""
        if "matrix" in params:
            raise self.error(
                "a param named 'matrix' clashes with ${matrix.NAME}; rename it", "params.matrix"
            )
        steps: dict[str, Step] = {}
        for values, label in combinations(self, name, body["matrix"]):
            full = f"{name}@{label}"
            if full in steps:
                raise self.error(
                    f"two combinations of step {name!r} are both named {full!r}; "
                    "give such values distinct labels (see docs/sweeps.md)",
                    f"steps.{name}.matrix",
                )
            steps[full] = self.step(full, body, params, matrix=values, group=name)
        return steps

    def nested(
        self, name: str, body: dict[str, Any]
    ) -> tuple[dict[str, Step], dict[str, tuple[str, ...]], list[str], list[str]]:
        """A step that runs another pipeline file: that file's steps, named
        ``NAME/STEP``, their paths seen from this pipeline's folder (see
        gitpipe.pipeline.nested); with their groups, the pipeline files they were read
        from and the other files read for them (params files)."""
        file = nested.target(self, name, body, self.chain)
        data, read = nested.read(self, self.read, file, f"steps.{name}.pipeline")
        shown = nested.shown(self, file)
        folder = posixpath.dirname(file.path)
        outer_bytes = self.read_bytes
        read_bytes = (
            None
            if outer_bytes is None
            else lambda relpath: outer_bytes(posixpath.normpath(posixpath.join(folder, relpath)))
        )
        inner = Parser(
            shown,
            data,
            self.file.parent / file.path,
            read=read,
            read_bytes=read_bytes,
            chain=(*self.chain, shown),
        ).pipeline()
        after = tuple(self.str_list(body.get("after", []), f"steps.{name}.after"))
        steps, groups, files = nested.moved(inner, name, file, after)
        reads = [posixpath.normpath(posixpath.join(folder, f)) for f in inner.read_files]
        return steps, groups, files, reads

    def check_expansion(
        self,
        name: str,
        body: dict[str, Any],
        expansion: Mapping[str, Step],
        steps: Mapping[str, Step],
        steps_table: Mapping[str, Any],
    ) -> None:
        """The names the step table ``name`` expands to are short enough to name a log
        file, and name no other step."""
        for full in expansion:
            if len(full.encode()) > MAX_NAME_BYTES:
                raise self.error(
                    f"step {name!r} expands to a step name of {len(full.encode())} "
                    f"bytes ({full!r}), over the {MAX_NAME_BYTES} a name may have (its "
                    "log file is named after it); "
                    + (
                        "give the matrix values shorter labels (a table's `name`)"
                        if "matrix" in body
                        else "give the steps shorter names"
                    ),
                    f"steps.{name}.matrix" if "matrix" in body else f"steps.{name}",
                )
            if full in steps or (full in steps_table and full != name):
                raise self.error(
                    f"step {name!r} expands to {full!r}, which is also the name of another step",
                    f"steps.{name}",
                )

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
        self.fields(
            table,
            HOOK_FIELDS,
            "hooks",
            lambda key, known: f"unknown field {key!r} (expected one of: {known})",
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
        self.fields(
            table,
            REMOTE_FIELDS,
            "remote",
            lambda key, known: f"unknown field {key!r} (expected: {known})",
        )
        url = self.string(table.get("url", ""), "remote.url").strip()
        if "url" in table and not url:
            raise self.error("must be a non-empty string", "remote.url")
        return url


def parse_data(
    data: dict[str, Any],
    file: Path,
    *,
    read: nested.Reader | None = None,
    read_bytes: paramfiles.BytesReader | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Pipeline:
    """The pipeline the TOML tables ``data`` of ``file`` describe; ``read`` gives the
    tables of a nested pipeline file by its path relative to ``file``'s folder, and
    ``read_bytes`` the bytes of a params file."""
    return Parser(
        file.name, data, file, read=read, read_bytes=read_bytes, overrides=overrides
    ).pipeline()
