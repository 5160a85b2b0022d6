"""One DVC stage read into gitpipe steps (used by :mod:`dvcimport`).

stages.NAME             ──► [steps.NAME]
  cmd (string or list)  ──► cmd, its ${...} rewritten (dvcvars)
  wdir                  ──► wdir; every path of the stage moves from the stage's
                            wdir to the import folder (then to the pipeline file's)
  deps                  ──► deps (URLs and absolute paths: warned, left out)
  outs, metrics, plots  ──► outs, metrics, plots (YAML metrics, and plots gitpipe
                            cannot draw: outs, marked)
    cache: false        ──► an output all the same, warned (DVC leaves it to Git)
    persist: true       ──► persist = true, for the whole step
  params                ──► params: "KEY", "FILE:KEY", "FILE:*"
  frozen, always_changed, desc ──► frozen, always, desc
  foreach / matrix      ──► matrix = {...} where gitpipe's matrix says the same,
                            else one step per item, named as DVC names them
"""

from __future__ import annotations

import itertools
import math
import posixpath
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gitpipe.core.errors import PipelineError
from gitpipe.pipeline import paramsedit
from gitpipe.pipeline.checks import one_line, type_name
from gitpipe.pipeline.dvcvars import Interpolation, Origin, Scope, dvc_text, walk
from gitpipe.pipeline.matrix import matrix_label
from gitpipe.pipeline.parser import STEP_NAME_CHARS

#: the stage fields translated
STAGE_FIELDS = frozenset(
    {"cmd", "deps", "outs", "metrics", "plots", "params", "wdir", "frozen"}
    | {"always_changed", "desc", "vars"}
)
#: an output's properties translated (the others are warned about)
OUT_PROPS = frozenset({"cache", "persist", "desc"})
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_AXIS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


#: the remote deps gitpipe fingerprints (docs/external-deps.md)
URL_DEPS = ("s3://", "http://", "https://")
#: the plots files `gitpipe report` draws (others become outputs)
PLOT_SUFFIXES = (".csv", ".tsv", ".json")


@dataclass
class Step:
    """One step as the import writes it; paths relative to the import folder."""

    name: str
    cmd: list[str]
    desc: str = ""
    matrix: dict[str, list[Any]] | None = None
    wdir: str = "."
    deps: list[str] = field(default_factory=list)
    #: (params file, key): "" for a key of the stage's default params file
    params: list[tuple[str, str]] = field(default_factory=list)
    #: (path, comment)
    outs: list[tuple[str, str]] = field(default_factory=list)
    metrics: list[tuple[str, str]] = field(default_factory=list)
    plots: list[tuple[str, str]] = field(default_factory=list)
    persist: bool = False
    always: bool = False
    frozen: bool = False
    comments: list[str] = field(default_factory=list)

    def output_paths(self) -> list[str]:
        return [path for path, _ in self.outs + self.metrics + self.plots]

    def render(self, name: str, rel: Callable[[str], str]) -> list[str]:
        """The step's table, named ``name``, its paths made relative by ``rel``."""
        lines = [f"# {c}" for c in self.comments]
        lines.append(f"[steps.{toml_key(name)}]")
        if self.desc:
            lines.append(f"desc = {toml_value(self.desc)}")
        if self.matrix:
            lines.append(f"matrix = {toml_value(self.matrix)}")
        cmd: Any = self.cmd[0] if len(self.cmd) == 1 else self.cmd
        lines += (
            array("cmd", [(c, "") for c in self.cmd])
            if isinstance(cmd, list)
            else [f"cmd = {toml_value(cmd)}"]
        )
        if rel(self.wdir) != ".":
            lines.append(f"wdir = {toml_value(rel(self.wdir))}")
        if self.deps:
            deps = [d if d.startswith(URL_DEPS) else rel(d) for d in self.deps]
            lines += array("deps", [(d, "") for d in deps])
        if self.params:
            entries = [(f"{rel(f)}:{k}" if f else k, "") for f, k in self.params]
            lines += array("params", entries)
        for key, items in (("outs", self.outs), ("metrics", self.metrics), ("plots", self.plots)):
            if items:
                lines += array(key, [(rel(p), c) for p, c in items])
        lines += [
            f"{flag} = true" for flag in ("persist", "always", "frozen") if getattr(self, flag)
        ]
        return lines


class StageReader:
    """Reads the stages of the dvc.yaml ``source`` (in ``folder``) into steps; the
    values of params and vars files come from ``values`` (None: no such file), those
    in ``live`` are gitpipe's params files.  Warnings go to ``warnings``."""

    def __init__(
        self,
        source: str,
        folder: str,
        values: Callable[[str], dict[str, Any] | None],
        live: set[str],
        warnings: list[str],
    ) -> None:
        self.source = source
        self.folder = folder
        self.values = values
        self.live = live
        self.warnings = warnings

    def warn(self, where: str, message: str) -> None:
        self.warnings.append(f"{where}: {message}")

    def stage(self, name: str, body: Any, scope: Scope) -> list[Step]:
        where = f"{self.source}, stages.{name}"
        if not isinstance(body, dict):
            raise PipelineError(
                f"a stage must be a mapping, not {type_name(body)}",
                file=self.source,
                key=f"stages.{name}",
            )
        if not name or any(c not in STEP_NAME_CHARS for c in name) or name[0] in ".-@":
            self.warn(
                where,
                f"stage name {name!r} cannot name a gitpipe step (letters, digits, '_', '-', "
                "'.' and '@' only); not translated: rename it in dvc.yaml and import again",
            )
            return []
        if "foreach" in body:
            return self.foreach(name, body, scope, where)
        if "matrix" in body:
            return self.matrix(name, body, scope, where)
        step = self.one(name, body, scope, where)
        return [step] if step else []

    def foreach(self, name: str, body: dict[str, Any], scope: Scope, where: str) -> list[Step]:
        interp = Interpolation(scope, where)
        items = interp.whole(body["foreach"], "foreach")
        self.warnings += interp.warnings
        for key in body:
            if key not in ("foreach", "do"):
                self.warn(where, f"{key!r} beside foreach and do is not translated")
        do = body.get("do")
        if not isinstance(do, dict) or not isinstance(items, (list, dict)) or not items:
            self.warn(
                where,
                "foreach needs a non-empty list or mapping and a `do` mapping; not translated",
            )
            return []
        self.snapshot(where + ".foreach", interp)
        fit = _foreach_as_matrix(items)
        if fit is not None:
            values, renamed = fit
            child = scope.child()
            child.renamed.update(renamed)
            step = self.one(
                name, do, child, where, matrix={"item": values}, constants=interp.constants
            )
            if step is not None:
                step.comments.append(f"foreach in {self.source}: one step per item, {name}@ITEM")
            return [step] if step else []
        return self.each(
            name,
            do,
            scope,
            where,
            dvc_items(items),
            interp,
            with_key=isinstance(items, dict),
            what="foreach",
        )

    def matrix(self, name: str, body: dict[str, Any], scope: Scope, where: str) -> list[Step]:
        interp = Interpolation(scope, where)
        raw = body["matrix"]
        axes: dict[str, list[Any]] = {}
        if isinstance(raw, dict):
            for axis, values in raw.items():
                axes[str(axis)] = interp.whole(values, f"matrix.{axis}")
        self.warnings += interp.warnings
        if not axes or not all(isinstance(v, list) and v for v in axes.values()):
            self.warn(where, "matrix needs a mapping of non-empty lists; not translated")
            return []
        self.snapshot(where + ".matrix", interp)
        rest = {k: v for k, v in body.items() if k != "matrix"}
        if all(_AXIS.fullmatch(a) for a in axes) and all(_fits(v) for v in axes.values()):
            child = scope.child()
            child.renamed.update({f"item.{a}": (f"matrix.{a}", v[0]) for a, v in axes.items()})
            step = self.one(name, rest, child, where, matrix=axes, constants=interp.constants)
            return [step] if step else []
        items = []
        for combination in itertools.product(*(list(enumerate(v)) for v in axes.values())):
            key = "-".join(
                f"{a}{i}" if isinstance(v, (dict, list)) else dvc_text(v)
                for a, (i, v) in zip(axes, combination, strict=True)
            )
            items.append((key, {a: v for a, (_, v) in zip(axes, combination, strict=True)}))
        return self.each(name, rest, scope, where, items, interp, with_key=True, what="matrix")

    def each(
        self,
        name: str,
        body: dict[str, Any],
        scope: Scope,
        where: str,
        items: list[tuple[str, Any]],
        interp: Interpolation,
        *,
        with_key: bool,
        what: str,
    ) -> list[Step]:
        """One step per item of a foreach or matrix, ``NAME@KEY`` as DVC names it,
        with ``${item}`` (and ``${key}``) written in."""
        steps = []
        for key, item in items:
            child = scope.child()
            child.names["item"] = (item, Origin())
            if with_key:
                child.names["key"] = (key, Origin())
            step = self.one(
                f"{name}@{_safe(key)}", body, child, f"{where}@{key}", constants=interp.constants
            )
            if step is not None:
                steps.append(step)
        if steps:
            steps[0].comments.append(f"{what} in {self.source}: one step per item")
        return steps

    def snapshot(self, where: str, interp: Interpolation) -> None:
        """Items read from a file are written into gitpipe.toml: say so."""
        for origin, key in interp.constants:
            self.warn(
                where,
                f"the items of ${{{key}}} in {origin.file} are written into the step as they "
                "are now; import again (or edit the step) after adding or removing items",
            )

    def one(
        self,
        name: str,
        body: dict[str, Any],
        scope: Scope,
        where: str,
        *,
        matrix: dict[str, list[Any]] | None = None,
        constants: list[tuple[Origin, str]] | tuple[()] = (),
    ) -> Step | None:
        for key in body:
            if key not in STAGE_FIELDS:
                what = " (data for people)" if key == "meta" else ""
                self.warn(where, f"{key!r}{what} is not translated")
        interp = Interpolation(scope, where)
        written = interp.text(body.get("wdir", "."), "wdir")
        if written.startswith(("/", "\\")):
            self.warn(where, f"wdir {written} is outside the repository; stage not translated")
            return None
        wdir = _path(self.folder, written)
        interp.scope = self.stage_vars(body.get("vars"), scope, wdir, where)
        raw_cmd = body.get("cmd")
        if isinstance(raw_cmd, str):
            raw_cmd = [raw_cmd]
        if (
            not isinstance(raw_cmd, list)
            or not raw_cmd
            or not all(isinstance(c, str) for c in raw_cmd)
        ):
            self.warn(where, "has no cmd (a string or a list of strings); not translated")
            return None
        cmds = [
            interp.text(c, "cmd" if len(raw_cmd) == 1 else f"cmd[{i}]")
            for i, c in enumerate(raw_cmd)
        ]
        step = Step(name, cmds, matrix=matrix, wdir=wdir)
        if "desc" in body:
            step.desc = interp.text(body["desc"], "desc")
        for i, dep in enumerate(_listed(body.get("deps"))):
            path = self.path(interp, wdir, dep, f"deps[{i}]", output=False)
            if path is not None:
                step.deps.append(path)
        persisted = []
        for kind in ("outs", "metrics", "plots"):
            persisted += self.outputs(step, kind, body.get(kind), interp, wdir)
        if persisted:
            step.persist = True
            others = [p for p in step.output_paths() if p not in persisted]
            if others:
                self.warn(
                    where,
                    f"persist: true on {', '.join(persisted)} keeps all of the step's outputs in "
                    f"place in gitpipe (persist = true), {', '.join(others)} too",
                )
        self.params(step, body.get("params"), interp, wdir)
        step.frozen = self.flag(body, "frozen", where)
        step.always = self.flag(body, "always_changed", where)
        for origin, key in [*constants, *interp.constants]:
            if origin.live and ("", key) not in step.params:
                step.params.append(("", key))
            elif not origin.live and origin.file not in step.deps:
                step.deps.append(origin.file)
        self.warnings += interp.warnings
        return step

    def stage_vars(self, value: Any, scope: Scope, wdir: str, where: str) -> Scope:
        """The scope with a stage's own `vars` (files relative to its wdir)."""
        if not value:
            return scope
        if not isinstance(value, list):
            raise PipelineError(
                f"`vars` must be a list, not {type_name(value)}", file=self.source, key=where
            )
        scope = scope.child()
        for item in value:
            if isinstance(item, dict):
                origin = Origin()
                values = item
            elif isinstance(item, str):
                file, _, keys = item.partition(":")
                file = _path(wdir, file)
                found = self.values(file)
                if found is None:
                    raise PipelineError(
                        f"vars file {file} does not exist", file=self.source, key=f"{where}.vars"
                    )
                chosen = [k.strip() for k in keys.split(",")] if keys else list(found)
                values = {k: found[k] for k in chosen if k in found}
                origin = Origin(file, file in self.live)
            else:
                self.warn(
                    where, f"vars entry {item!r} is neither a file nor a mapping; not translated"
                )
                continue
            for clash in scope.add(values, origin):
                self.warn(where, f"vars: {clash} defined twice; the first is kept")
        return scope

    def path(
        self, interp: Interpolation, wdir: str, raw: Any, key: str, *, output: bool
    ) -> str | None:
        """A stage's path seen from the import folder; None (warned) when it is none
        gitpipe can have."""
        where = f"{interp.where}.{key}"
        if not isinstance(raw, str):
            self.warn(where, f"{one_line(repr(raw))} is not a path; not translated")
            return None
        text = interp.text(raw, key)
        if not output and text.startswith(URL_DEPS):
            return text  # a remote dep: fingerprinted, never downloaded (external-deps.md)
        if _URL.match(text) or text.startswith(("/", "\\")):
            self.warn(
                where,
                f"{text} is not a path inside the repository, where gitpipe reads and writes; "
                "not translated",
            )
            return None
        path = _path(wdir, text)
        if output and (path in (".", "..") or path.startswith("../")):
            self.warn(where, f"output {path} lies outside the import folder; not translated")
            return None
        return path

    def outputs(
        self, step: Step, kind: str, value: Any, interp: Interpolation, wdir: str
    ) -> list[str]:
        """Add the stage's ``kind`` outputs to ``step``; the paths marked `persist`."""
        persisted = []
        for i, entry in enumerate(_listed(value)):
            key = f"{kind}[{i}]"
            where = f"{interp.where}.{key}"
            raw, props = entry, {}
            if isinstance(entry, dict) and len(entry) == 1:
                raw, props = next(iter(entry.items()))
                props = props or {}
            if not isinstance(props, dict):
                self.warn(where, f"the properties of {raw} are not a mapping; not translated")
                continue
            path = self.path(interp, wdir, raw, key, output=True)
            if path is None:
                continue
            notes = []
            target = {"metrics": step.metrics, "plots": step.plots}.get(kind, step.outs)
            if kind == "metrics" and not path.endswith((".json", ".toml")):
                target = step.outs
                notes.append(f"{kind} in dvc.yaml")
                self.warn(
                    where,
                    f"{path} becomes an output: gitpipe reads metrics from JSON and TOML files",
                )
            if kind == "plots" and not path.lower().endswith(PLOT_SUFFIXES):
                target = step.outs  # an image, say: an output `gitpipe report` shows
                notes.append("plots in dvc.yaml")
            if props.get("cache") is False:
                notes.append("cache: false in dvc.yaml")
                self.warn(
                    where,
                    f"{path} has cache: false: gitpipe stores every output, and refuses one that "
                    f"Git tracks (untrack it with `git rm --cached {path}`)",
                )
            if props.get("persist") is True:
                persisted.append(path)
            if isinstance(props.get("desc"), str):
                notes.append(one_line(props["desc"]))
            rest = [str(p) for p in props if p not in OUT_PROPS]
            if rest:
                self.warn(where, f"{', '.join(rest)} of {path} not translated")
            target.append((path, "; ".join(notes)))
        return persisted

    def params(self, step: Step, value: Any, interp: Interpolation, wdir: str) -> None:
        """The stage's params: a key of its default params file (params.yaml in its
        wdir), ``{FILE: [KEY, ...]}``, or ``{FILE: }`` for all of FILE."""
        default = _path(wdir, "params.yaml")
        chosen: list[tuple[str, str]] = []
        for i, entry in enumerate(_listed(value)):
            key = f"params[{i}]"
            if isinstance(entry, str):
                chosen.append((default, interp.text(entry, key)))
            elif isinstance(entry, dict):
                for file, keys in entry.items():
                    path = _path(wdir, interp.text(file, key))
                    if not keys:
                        chosen.append((path, "*"))
                    elif isinstance(keys, list):
                        chosen += [(path, interp.text(k, key)) for k in keys]
                    else:
                        self.warn(
                            f"{interp.where}.{key}",
                            f"the keys of {path} are not a list; not translated",
                        )
            else:
                self.warn(
                    f"{interp.where}.{key}",
                    f"{one_line(repr(entry))} names no params; not translated",
                )
        for file, key in chosen:
            if file not in self.live:
                if self.values(file) is not None and file not in step.deps:
                    step.deps.append(file)  # warned once, for the file
                continue
            if key != "*" and not walk(self.values(file), key.split("."))[1]:
                self.warn(f"{interp.where}.params", f"{file} has no {key!r}; not translated")
                continue
            entry = ("", key) if file == default and key != "*" else (file, key)
            if entry not in step.params:
                step.params.append(entry)

    def flag(self, body: dict[str, Any], name: str, where: str) -> bool:
        value = body.get(name, False)
        if not isinstance(value, bool):
            self.warn(where, f"{name} is {type_name(value)}, not true or false; not translated")
            return False
        return value


def dvc_items(items: list[Any] | dict[Any, Any]) -> list[tuple[str, Any]]:
    """A foreach's items with the keys DVC names them by: a mapping's keys, a list's
    values, or, for a list holding lists or mappings, their indexes."""
    if isinstance(items, dict):
        return [(dvc_text(k), v) for k, v in items.items()]
    if any(isinstance(v, (dict, list)) for v in items):
        return [(str(i), v) for i, v in enumerate(items)]
    return [(dvc_text(v), v) for v in items]


def _foreach_as_matrix(
    items: list[Any] | dict[Any, Any],
) -> tuple[list[Any], dict[str, tuple[str, Any]]] | None:
    """A foreach as gitpipe's matrix ``item`` (its values, and what ``${item}`` and
    ``${key}`` become), where the matrix names each step as DVC does; else None."""
    if isinstance(items, list):
        return (items, {"item": ("matrix.item", items[0])}) if _fits(items) else None
    keys = [dvc_text(k) for k in items]
    values = list(items.values())
    if all(
        isinstance(v, dict) and v.get("name", k) == k for k, v in zip(keys, values, strict=True)
    ):
        named = [{"name": k, **v} for k, v in zip(keys, values, strict=True)]
        renamed = {"item": ("matrix.item", named[0]), "key": ("matrix.item.name", keys[0])}
    elif all(_scalar(v) for v in values):
        named = [{"name": k, "value": v} for k, v in zip(keys, values, strict=True)]
        renamed = {"item": ("matrix.item.value", values[0]), "key": ("matrix.item.name", keys[0])}
    else:
        return None
    return (named, renamed) if _fits(named) else None


def _fits(values: list[Any]) -> bool:
    """Whether gitpipe's matrix takes these values and labels them readably, each
    apart: plain values, or mappings each with a string ``name``."""
    plain = all(_scalar(v) for v in values) or all(
        isinstance(v, dict) and isinstance(v.get("name"), str) and _toml(v) for v in values
    )
    labels = [matrix_label(v) for v in values] if plain else []
    return plain and len(set(labels)) == len(labels)


def _scalar(value: Any) -> bool:
    return isinstance(value, (str, int, bool)) or (
        isinstance(value, float) and math.isfinite(value)
    )


def _toml(value: Any) -> bool:
    """Whether TOML can hold the value (YAML's null and dates it cannot, as such)."""
    if isinstance(value, dict):
        return all(isinstance(k, str) and _toml(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_toml(v) for v in value)
    return _scalar(value)


def _safe(key: str) -> str:
    """An item's key as part of a step name."""
    return re.sub(r"[^A-Za-z0-9_.@-]", "_", key) or "_"


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _path(folder: str, path: str) -> str:
    """``path`` relative to ``folder``, seen from the import folder; a trailing ``/``
    (a folder) kept."""
    found = posixpath.normpath(posixpath.join(folder, path))
    return found + "/" if path.endswith("/") and found != "." else found


# --- TOML, written by hand: comments beside values, arrays short or one per line ----


def toml_value(value: Any) -> str:
    """One TOML value, inline: tables too (params edits refuse those)."""
    if isinstance(value, dict):
        inner = ", ".join(f"{toml_key(str(k))} = {toml_value(v)}" for k, v in value.items())
        return "{ " + inner + " }" if inner else "{}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, (bool, int, float, str)):
        return paramsedit.toml_value(value)
    return paramsedit.toml_value(str(value))


def toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else toml_value(key)


def array(key: str, items: list[tuple[Any, str]]) -> list[str]:
    """``key = [...]``: on one line when short and without comments, else one value
    per line, each with its comment."""
    one = f"{key} = {toml_value([v for v, _ in items])}"
    if len(one) <= 100 and not any(c for _, c in items):
        return [one]
    lines = [f"{key} = ["]
    for value, comment in items:
        lines.append(f"  {toml_value(value)}," + (f"  # {comment}" if comment else ""))
    return [*lines, "]"]
