"""Params files: ``[pipeline] params_files``, read into the params namespace.

    params.yaml ─┐ decode (PyYAML safe_load, json, tomllib): a mapping at the top
    conf/x.json ─┼─► merge with [params]: tables merge, a value defined twice is an
    [params] ────┘   error naming both places ─► one namespace, and each file's own
                     keys (ParamsFile) for `FILE:*`, `FILE:KEY` and `repro -p`

Pure: the bytes come from the reader the parser is given (the work tree, or a Git
tree for versions and diff).  PyYAML is imported here and nowhere else, and only
when a YAML file is read.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gitpipe.core import tomlcache
from gitpipe.pipeline.checks import Checks, type_name
from gitpipe.pipeline.model import ParamsFile
from gitpipe.pipeline.refs import map_strings
from gitpipe.pipeline.values import jsonable

#: the place a key written in the pipeline file's `[params]` is named by
IN_PARAMS = "[params]"
#: the suffixes a params file may have, and how each is read
FORMATS = {".yaml": "yaml", ".yml": "yaml", ".json": "json", ".toml": "toml"}

#: reads a file's bytes by its path relative to the pipeline's folder (raising
#: FileNotFoundError when there is none)
BytesReader = Callable[[str], bytes]


@dataclass(frozen=True, slots=True)
class FileParams:
    """A params file as steps select from it: its values as written and the dotted
    keys that name exactly what it defines (``FILE:*``)."""

    file: ParamsFile
    values: Mapping[str, Any]
    own: list[str]


def select(checks: Checks, files: Mapping[str, FileParams], entry: str, key: str) -> list[str]:
    """The dotted keys a step's ``params`` entry ``FILE:*`` or ``FILE:KEY`` selects."""
    name, _, dotted = entry.rpartition(":")
    found = files.get(name)
    if found is None:
        listed = ", ".join(files) or "none"
        raise checks.error(
            f"{name!r} is not one of [pipeline] params_files (they are: {listed})", key
        )
    if dotted == "*":
        return list(found.own)
    if not defines(found.values, dotted):
        raise checks.error(f"param {dotted!r} is not defined in params file {name!r}", key)
    return [dotted]


def check_not_null(checks: Checks, dotted: str, value: Any, key: str) -> None:
    """A param a step uses has a value: a YAML or JSON ``null`` has none in
    gitpipe.lock (TOML), so a step may not select one (its script may still read it
    from the file)."""
    if value is None:
        raise checks.error(
            f"param {dotted!r} is null; a param a step uses needs a value (gitpipe.lock, "
            "TOML, has no null): give it one, or select the keys beside it",
            key,
        )
    if isinstance(value, dict):
        for name, inner in value.items():
            check_not_null(checks, f"{dotted}.{name}", inner, key)
    elif isinstance(value, list):
        for i, inner in enumerate(value):
            check_not_null(checks, f"{dotted}[{i}]", inner, key)


def format_of(path: str) -> str:
    """``yaml``, ``json`` or ``toml``, by the file's suffix ("" for another)."""
    return FORMATS.get(posixpath.splitext(path)[1].lower(), "")


def decode(path: str, data: bytes) -> Any:
    """The values of a params file's bytes; raises ValueError with the parser's own
    message (kept to one line) when they are not valid YAML, JSON or TOML."""
    kind = format_of(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 text ({exc.reason})") from exc
    if kind == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON: {exc}") from exc
    if kind == "toml":
        try:
            return tomlcache.loads(text)
        except tomlcache.TOMLDecodeError as exc:
            raise ValueError(f"invalid TOML: {exc}") from exc
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError("invalid YAML: " + " ".join(str(exc).split())) from exc


def encode(path: str, values: Mapping[str, Any]) -> bytes:
    """A params file's values written back in its own format (for a run with ``-p``:
    comments and layout are not kept, the original bytes are put back after it)."""
    kind = format_of(path)
    if kind == "json":
        try:  # a TOML date from -p as its ISO text (as GITPIPE_PARAMS has it); no NaN
            text = json.dumps(jsonable(values), indent=2, ensure_ascii=False, allow_nan=False)
        except ValueError as exc:
            raise ValueError(f"JSON cannot hold the value ({exc})") from exc
        return (text + "\n").encode()
    if kind == "toml":
        import tomli_w

        return tomli_w.dumps(dict(values)).encode()
    import yaml

    return yaml.safe_dump(dict(values), sort_keys=False, allow_unicode=True).encode()


def read_files(
    checks: Checks, entries: Any, read: BytesReader | None
) -> list[tuple[ParamsFile, dict[str, Any]]]:
    """The files ``[pipeline] params_files`` names, each with its values."""
    found = []
    for i, raw in enumerate(checks.str_list(entries, "pipeline.params_files")):
        key = f"pipeline.params_files[{i}]"
        if raw.startswith("/") or not raw.strip():
            raise checks.error(f"{raw!r} must be a path relative to the pipeline's folder", key)
        path = posixpath.normpath(raw.replace("\\", "/"))
        if path == ".." or path.startswith("../"):
            # a run with -p rewrites it, and versions read it from the pipeline's tree
            raise checks.error(f"params file {raw!r} must lie inside the pipeline's folder", key)
        if not format_of(path):
            raise checks.error(f"params file {raw!r} must end in .yaml, .yml, .json or .toml", key)
        if any(path == other.path for other, _ in found):
            raise checks.error(f"params file {raw!r} is listed twice", key)
        if read is None:
            raise checks.error("params files cannot be read here", key)
        try:
            data = read(path)
        except FileNotFoundError:
            raise checks.error(f"params file {raw!r} does not exist", key) from None
        except (OSError, KeyError) as exc:
            raise checks.error(f"cannot read params file {raw!r} ({exc})", key) from exc
        try:
            values = decode(path, data)
        except ValueError as exc:
            raise checks.error(f"params file {raw!r}: {exc}", key) from exc
        if not isinstance(values, dict):
            raise checks.error(
                f"params file {raw!r} must hold a mapping at its top, not {type_name(values)}",
                key,
            )
        for name in _bad_keys(values):
            raise checks.error(f"params file {raw!r}: key {name!r} is not a string", key)
        found.append((ParamsFile(raw, path, format_of(path), tuple(sorted(values))), values))
    return found


def _bad_keys(values: Any, prefix: str = "") -> list[str]:
    """Keys (of a YAML mapping, say) that are not strings: they cannot be params."""
    bad = []
    if isinstance(values, dict):
        for key, value in values.items():
            if not isinstance(key, str):
                bad.append(f"{prefix}{key}")
            else:
                bad += _bad_keys(value, f"{prefix}{key}.")
    return bad


def merge(
    checks: Checks, params: dict[str, Any], files: list[tuple[ParamsFile, dict[str, Any]]]
) -> tuple[dict[str, Any], dict[str, str]]:
    """``[params]`` and the files' values in one namespace, and where each leaf value
    (dotted) was defined.  Tables merge; a value defined in two places (or a table
    in one and a value in another) is an error naming both."""
    merged: dict[str, Any] = {}
    origin: dict[str, str] = {}
    places = [(IN_PARAMS, params, "params")] + [
        (file.written, values, f"pipeline.params_files[{i}]")
        for i, (file, values) in enumerate(files)
    ]
    for place, values, key in places:
        _merge_into(checks, merged, origin, values, "", place, key)
    return merged, origin


def _merge_into(
    checks: Checks,
    into: dict[str, Any],
    origin: dict[str, str],
    values: Mapping[str, Any],
    prefix: str,
    place: str,
    key: str,
) -> None:
    for name, value in values.items():
        dotted = prefix + name
        if name not in into:
            into[name] = map_strings(value, str)  # a copy
            for leaf in _leaves(value, dotted):
                origin[leaf] = place
            continue
        if isinstance(into[name], dict) and isinstance(value, dict):
            _merge_into(checks, into[name], origin, value, dotted + ".", place, key)
            continue
        other = next(
            (origin[leaf] for leaf in origin if leaf == dotted or leaf.startswith(dotted + ".")),
            IN_PARAMS,
        )
        raise checks.error(f"param {dotted!r} is defined in both {other} and {place}", key)


def _leaves(value: Any, dotted: str) -> list[str]:
    if isinstance(value, dict) and value:
        return [leaf for k, v in value.items() for leaf in _leaves(v, f"{dotted}.{k}")]
    return [dotted]


def own_keys(file: ParamsFile, values: Mapping[str, Any], origin: Mapping[str, str]) -> list[str]:
    """The dotted keys that name exactly what ``file`` defines: a whole top-level
    table where no other place adds to it, else the file's keys inside it."""

    def walk(node: Mapping[str, Any], prefix: str) -> list[str]:
        keys = []
        for name, value in node.items():
            dotted = prefix + name
            shared = any(
                place != file.written
                for leaf, place in origin.items()
                if leaf == dotted or leaf.startswith(dotted + ".")
            )
            if shared and isinstance(value, dict) and value:
                keys += walk(value, dotted + ".")
            else:
                keys.append(dotted)
        return keys

    return walk(values, "")


def defines(values: Mapping[str, Any], dotted: str) -> bool:
    """Whether the values of a file hold the dotted key."""
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True
