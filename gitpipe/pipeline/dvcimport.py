"""`gitpipe import dvc`: DVC's pipeline files (dvc.yaml) written as gitpipe's.

    dvc.yaml files ──► units (one per file) ──► where each goes (:func:`translate`):
        its own folder's gitpipe.toml, nested from the import folder's, or, when its
        outputs or params files lie above its folder (`wdir: ../..`), the import
        folder's gitpipe.toml itself
    params.yaml, `vars` files, the stages' params files
                   ──► [pipeline] params_files, where gitpipe can read them
    stages.NAME    ──► [steps.NAME] (dvcstage), its ${...} rewritten (dvcvars)
    anything that does not translate ──► one warning each, never dropped silently

Pure: the files are read through the ``read`` function it is given, by their path
relative to the import folder.  docs/migrating-from-dvc.md describes the mapping.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gitpipe.core import tomlcache
from gitpipe.core.errors import PipelineError
from gitpipe.pipeline.checks import one_line, type_name
from gitpipe.pipeline.dvcstage import StageReader, Step, array, toml_key, toml_value
from gitpipe.pipeline.dvcvars import Origin, Scope

#: what a pipeline file is called
PIPELINE_FILE = "gitpipe.toml"
#: the params files gitpipe reads (docs/pipeline-file.md, params_files)
PARAMS_SUFFIXES = (".yaml", ".yml", ".json", ".toml")
#: the top-level fields of dvc.yaml this import reads
TOP_FIELDS = ("stages", "vars")

#: reads a file's text by its path relative to the import folder; a missing file
#: raises FileNotFoundError
Reader = Callable[[str], str]


@dataclass(frozen=True)
class Translation:
    """What an import writes: each pipeline file's path (relative to the import
    folder) and text, the import folder's own last; and the warnings, one line each."""

    files: dict[str, str]
    warnings: tuple[str, ...]


def load_yaml(text: str, shown: str) -> Any:
    """YAML ``text`` (``shown`` names the file in the error), safely: plain data only."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise PipelineError(f"invalid YAML{where}: {one_line(problem)}", file=shown) from exc


def load_values(text: str, file: str) -> dict[str, Any]:
    """A params or vars file's values by its suffix (YAML, JSON or TOML): a mapping."""
    if file.endswith(".json"):
        try:
            values = json.loads(text)
        except json.JSONDecodeError as exc:
            raise PipelineError(f"invalid JSON: {exc}", file=file) from exc
    elif file.endswith(".toml"):
        try:
            values = tomlcache.loads(text)
        except tomlcache.TOMLDecodeError as exc:
            raise PipelineError(f"invalid TOML: {exc}", file=file) from exc
    else:
        values = load_yaml(text, file)
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise PipelineError(
            f"must hold a mapping of names to values, not {type_name(values)}", file=file
        )
    return values


def join(folder: str, path: str) -> str:
    """``path`` relative to ``folder``, seen from the import folder, normalised."""
    return posixpath.normpath(posixpath.join(folder, path))


@dataclass
class Unit:
    """One dvc.yaml: its path, folder and data; where its steps go (``base``, the
    folder of the pipeline file) once decided."""

    source: str
    folder: str
    data: dict[str, Any]
    base: str = ""
    steps: list[Step] = field(default_factory=list)


class _Files:
    """The files an import reads besides dvc.yaml, each read once."""

    def __init__(self, read: Reader) -> None:
        self.read = read
        self.values: dict[str, dict[str, Any] | None] = {}

    def get(self, file: str) -> dict[str, Any] | None:
        """A params or vars file's values; None when it does not exist (or is not a
        file gitpipe reads as values: Python)."""
        if file not in self.values:
            try:
                text = self.read(file)
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                self.values[file] = None
            except (OSError, UnicodeDecodeError) as exc:
                raise PipelineError(f"cannot read {file} ({exc})", file=file) from exc
            else:
                readable = file.endswith(PARAMS_SUFFIXES)
                self.values[file] = load_values(text, file) if readable else {}
        return self.values[file]

    def exists(self, file: str) -> bool:
        return self.get(file) is not None


def translate(sources: Iterable[str], read: Reader) -> Translation:
    """Translate the dvc.yaml files ``sources`` (paths relative to the import folder,
    which ``read`` reads) into gitpipe pipeline files."""
    files = _Files(read)
    warnings: list[str] = []
    units = []
    for source in sources:
        try:
            text = read(source)
        except (OSError, UnicodeDecodeError) as exc:
            raise PipelineError(f"cannot read it ({exc})", file=source) from exc
        data = load_yaml(text, source)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise PipelineError(f"must hold a mapping, not {type_name(data)}", file=source)
        units.append(Unit(source, posixpath.dirname(source) or ".", data))
    for unit in units:
        warnings += _top_level(unit)
        candidates = _candidates(unit, files)
        probe = _read_steps(unit, files, set(candidates), [])  # where do its outputs go?
        inside = all(_inside(p, unit.folder) for s in probe for p in s.output_paths())
        unit.base = (
            unit.folder if inside and all(_inside(c, unit.folder) for c in candidates) else "."
        )
    layout: dict[str, list[Unit]] = {".": []}
    for unit in units:
        layout.setdefault(unit.base, []).append(unit)
    texts: dict[str, str] = {}
    for base in sorted(layout, key=lambda b: (b == ".", b)):
        group = layout[base]
        live = _live_params(base, group, files, warnings)
        for unit in group:
            unit.steps = _read_steps(unit, files, set(live), warnings)
        nested = [u for u in units if u.base == u.folder != "."] if base == "." else []
        texts[join(base, PIPELINE_FILE)] = render(base, group, live, nested)
    return Translation(texts, tuple(warnings))


def _top_level(unit: Unit) -> list[str]:
    warnings = []
    for name, value in unit.data.items():
        if name in TOP_FIELDS:
            continue
        many = isinstance(value, (list, dict)) and len(value) != 1
        what = (
            f" ({len(value)} entr{'ies' if many else 'y'})"
            if isinstance(value, (list, dict))
            else ""
        )
        warnings.append(
            f"{unit.source}: top-level {name!r}{what} is not translated"
            + (
                "; gitpipe reads a step's metrics and plots files"
                if name in ("metrics", "plots")
                else ""
            )
        )
    stages = unit.data.get("stages", {})
    if not isinstance(stages, dict):
        raise PipelineError(
            f"must be a mapping of stages, not {type_name(stages)}", file=unit.source, key="stages"
        )
    if not stages:
        warnings.append(f"{unit.source}: no stages to translate")
    return warnings


def _candidates(unit: Unit, files: _Files) -> list[str]:
    """The files a unit may read params from, in the order DVC meets them: the
    default params.yaml, `vars` files, then each stage's vars and params files."""
    found = []
    default = join(unit.folder, "params.yaml")
    if files.exists(default):
        found.append(default)
    found += [f for f, _ in vars_files(unit.data.get("vars"), unit.folder, unit.source)]
    for body in unit.data.get("stages", {}).values():
        if not isinstance(body, dict):
            continue
        body = body.get("do", body) if isinstance(body.get("do", body), dict) else body
        wdir = body.get("wdir", ".")
        if not isinstance(wdir, str) or "${" in wdir:
            continue
        wdir = join(unit.folder, wdir)
        found += [f for f, _ in vars_files(body.get("vars"), wdir, unit.source)]
        for entry in body.get("params", []) if isinstance(body.get("params"), list) else []:
            if isinstance(entry, str):
                found.append(join(wdir, "params.yaml"))
            elif isinstance(entry, dict):
                found += [join(wdir, f) for f in entry if isinstance(f, str) and "${" not in f]
    return [f for f in dict.fromkeys(found) if not f.endswith(".py") or files.exists(f)]


def vars_files(value: Any, folder: str, source: str) -> list[tuple[str, list[str] | None]]:
    """The files a `vars` list names (``file`` or ``file:key,key``), with the keys it
    selects (None: all of them)."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise PipelineError(
            f"`vars` must be a list, not {type_name(value)}", file=source, key="vars"
        )
    found = []
    for item in value:
        if isinstance(item, str):
            file, _, keys = item.partition(":")
            found.append(
                (join(folder, file), [k.strip() for k in keys.split(",")] if keys else None)
            )
    return found


def _inside(path: str, folder: str) -> bool:
    """Whether ``path`` lies in ``folder`` (both seen from the import folder)."""
    if folder == ".":
        return path != ".." and not path.startswith("../")
    return path == folder or path.startswith(folder + "/")


def _live_params(
    base: str, units: list[Unit], files: _Files, warnings: list[str]
) -> dict[str, dict[str, Any]]:
    """The params files the pipeline file in ``base`` reads (their values, by path):
    each that gitpipe can read, inside ``base``, whose names no earlier one has."""
    live: dict[str, dict[str, Any]] = {}
    merged: dict[str, Any] = {}  # the namespace so far, each value with its file
    for file in dict.fromkeys(f for u in units for f in _candidates(u, files)):
        values = files.get(file)
        if values is None:
            warnings.append(
                f"{file}: does not exist; the params selected from it are not translated"
            )
            continue
        why = ""
        if not file.endswith(PARAMS_SUFFIXES):
            why = "gitpipe reads params from YAML, JSON and TOML files only"
        elif not _inside(file, base):
            why = f"it lies outside {base}"
        else:
            clash = _clash(merged, values)
            if clash:
                name, other = clash
                why = f"{name!r} is also in {other} (gitpipe's params are one namespace)"
        if why:
            warnings.append(
                f"{file}: not a params file of {join(base, PIPELINE_FILE)}, as {why}; its values "
                "are written in where used, and the steps using them depend on the whole file"
            )
            continue
        live[file] = values
        _merge(merged, values, file)
    return live


def _clash(
    merged: dict[str, Any], values: dict[str, Any], prefix: str = ""
) -> tuple[str, str] | None:
    """The first name ``values`` defines that ``merged`` has a value for (tables
    merge), with the file it is in."""
    for name, value in values.items():
        if name not in merged:
            continue
        if isinstance(merged[name], dict) and isinstance(value, dict):
            found = _clash(merged[name], value, f"{prefix}{name}.")
            if found:
                return found
            continue
        there = merged[name]
        while isinstance(there, dict):  # a table of values: name one of its files
            there = next(iter(there.values()))
        return prefix + name, there
    return None


def _merge(merged: dict[str, Any], values: dict[str, Any], file: str) -> None:
    """Add ``values`` (which do not clash) to ``merged``, each leaf as its file."""
    for name, value in values.items():
        if isinstance(value, dict) and value:
            _merge(merged.setdefault(name, {}), value, file)
        else:
            merged[name] = file


def _read_steps(unit: Unit, files: _Files, live: set[str], warnings: list[str]) -> list[Step]:
    """The unit's steps, its names' ``${...}`` rewritten for the params files in
    ``live``."""
    scope = Scope()
    default = join(unit.folder, "params.yaml")
    loaded = [(default, None)] if files.exists(default) else []
    for item in unit.data.get("vars") or []:
        if isinstance(item, dict):
            clashes = scope.add(item, Origin())
            warnings += [
                f"{unit.source}: vars: {c} defined twice; the first is kept" for c in clashes
            ]
        elif isinstance(item, str):
            loaded += vars_files([item], unit.folder, unit.source)
        else:
            warnings.append(
                f"{unit.source}: vars entry {item!r} is neither a file nor a mapping; "
                "not translated"
            )
    for file, keys in dict.fromkeys((f, tuple(k) if k else None) for f, k in loaded):
        values = files.get(file)
        if values is None:
            raise PipelineError(f"vars file {file} does not exist", file=unit.source, key="vars")
        chosen = values if keys is None else {k: values[k] for k in keys if k in values}
        clashes = scope.add(chosen, Origin(file, file in live))
        if file != default:
            warnings += [
                f"{unit.source}: vars: {c} defined twice; the first is kept" for c in clashes
            ]
    reader = StageReader(unit.source, unit.folder, files.get, live, warnings)
    steps: list[Step] = []
    for name, body in unit.data.get("stages", {}).items():
        steps += reader.stage(str(name), body, scope)
    return steps


# --- writing TOML --------------------------------------------------------------------

HEADER = """\
# Imported from {sources} by `gitpipe import dvc` (see docs/migrating-from-dvc.md).
# The commands are DVC's, unchanged; paths are relative to this file's folder.
"""


def render(base: str, units: list[Unit], live: Mapping[str, Any], nested: list[Unit]) -> str:
    """The pipeline file in ``base`` for ``units``, nesting the files of ``nested``."""
    sources = ", ".join(u.source for u in units) or "the dvc.yaml files of its subfolders"
    lines = [HEADER.format(sources=sources)]
    if live:
        lines += ["[pipeline]", *array("params_files", [(_rel(f, base), "") for f in live]), ""]
    taken: set[str] = set()
    for unit in units:
        prefix = "" if unit.folder == base else _label(unit.folder, base, taken) + "-"
        if prefix:
            lines.append(f"# the stages of {unit.source}, whose paths reach above its folder")
        for step in unit.steps:
            name = _unique(prefix + step.name, taken)
            lines += [*step.render(name, lambda p: _rel(p, base)), ""]
    for unit in nested:
        name = _unique(_label(unit.folder, base, taken), taken)
        lines += [
            f"[steps.{toml_key(name)}]",
            f"pipeline = {toml_value(_rel(join(unit.folder, PIPELINE_FILE), base))}",
            f"desc = {toml_value('the stages of ' + unit.source)}",
            "",
        ]
    return "\n".join(lines).rstrip("\n") + "\n"


def _rel(path: str, base: str) -> str:
    folder = path.endswith("/")
    found = posixpath.relpath(path, base) if base != "." else posixpath.normpath(path)
    return found + "/" if folder and found != "." else found


def _label(folder: str, base: str, taken: set[str]) -> str:
    """A readable, unused name for a unit in ``folder``: its last folder's, else its
    whole path's."""
    short = re.sub(r"[^A-Za-z0-9_.-]", "_", posixpath.basename(folder)).lstrip(".-") or "sub"
    if short not in taken:
        return short
    return re.sub(r"[^A-Za-z0-9_.-]", "_", _rel(folder, base).replace("/", "-")).lstrip(".-")


def _unique(name: str, taken: set[str]) -> str:
    found, n = name, 2
    while found in taken:
        found, n = f"{name}-{n}", n + 1
    taken.add(found)
    return found
