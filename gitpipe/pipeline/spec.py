"""The pipeline file, read: the pipeline layer's public face.

    gitpipe.toml ─► load_cached: reads the file and the files it nests (their parsed
                    TOML kept by gitpipe.core.tomlcache), and keeps the parsed
                    pipeline in the state folder, by the stamps of those files
    TOML text ───► parse
                 ─► gitpipe.pipeline.parser ─► gitpipe.pipeline.model.Pipeline

    gitpipe.schema.json (beside this module) ─► schema_text: the file's JSON Schema,
                    for editors (`gitpipe schema`)

Reading files happens here, at the edge; the parser and the model below it are pure.
The step model and the helpers other layers use (``spec.Step``, ``spec.resolve``,
``spec.reserved_part``, ...) are re-exported, so that ``from gitpipe.pipeline import
spec`` is all a caller needs.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from gitpipe.core import atomic, collector, stamps, tomlcache
from gitpipe.core.errors import PipelineError
from gitpipe.core.layout import DEFAULT_FILE
from gitpipe.pipeline.model import (
    HOOK_EVENTS,
    Hooks,
    MetricRef,
    ParamsFile,
    PathSpec,
    Pipeline,
    Step,
    Template,
    UrlDep,
    out_key,
    out_places,
    resolve,
)
from gitpipe.pipeline.params import parse_override
from gitpipe.pipeline.parser import parse_data
from gitpipe.pipeline.paths import RESERVED_NAMES, RESERVED_WHAT, relation, reserved, reserved_part
from gitpipe.pipeline.refs import render

__all__ = [
    "DEFAULT_FILE",
    "HOOK_EVENTS",
    "RESERVED_NAMES",
    "RESERVED_WHAT",
    "Hooks",
    "MetricRef",
    "ParamsFile",
    "PathSpec",
    "Pipeline",
    "Step",
    "Template",
    "UrlDep",
    "load_cached",
    "out_key",
    "out_places",
    "parse",
    "parse_override",
    "relation",
    "render",
    "reserved",
    "reserved_part",
    "resolve",
    "schema_text",
]

#: the JSON Schema of the pipeline file, shipped in this package; tests/test_schema.py
#: holds it to the parser (its fields, types and choices)
SCHEMA_FILE = "gitpipe.schema.json"


def load_cached(
    file: Path,
    *,
    cache_dir: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    params_bytes: Callable[[Path], bytes] = Path.read_bytes,
) -> tuple[Pipeline, Callable[[], None]]:
    """Read and parse a pipeline file (and the pipeline files its steps nest), the
    parsed TOML cached in ``cache_dir``: the second value keeps it there, once the
    caller found the whole pipeline valid.  ``overrides`` replace params by dotted name
    (`repro -p`); ``params_bytes`` reads a params file.  The parsed pipeline itself is
    cached there too, by the stamps of every file it was read from (and of the
    parser's own modules)."""
    with collector.paused():  # millions of objects for 100,000 steps, none garbage
        return _load_cached(file, cache_dir, overrides, params_bytes)


def _load_cached(
    file: Path,
    cache_dir: Path | None,
    overrides: Mapping[str, Any] | None,
    params_bytes: Callable[[Path], bytes],
) -> tuple[Pipeline, Callable[[], None]]:
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

    def read_bytes(relpath: str) -> bytes:  # a params file
        path = file.parent / relpath
        read_from.append(path)
        return params_bytes(path)

    pipeline = parse_data(data, file, read=read_nested, read_bytes=read_bytes, overrides=overrides)

    def keep_all() -> None:
        for each in keeps:
            each()
        if cache_dir is not None:
            _to_pickle(cache_dir, key, read_from, pipeline, started_ns)

    return pipeline, keep_all


_PICKLED = "pipeline.pickle"


def _pickle_key(file: Path, overrides: Mapping[str, Any] | None) -> tuple[Any, ...]:
    """What a cached parse depends on besides its files: where the file is (its
    folder names the pipeline), the overrides, and the parser's code (this layer's
    modules and the TOML cache's)."""
    sources = [*sorted(Path(__file__).parent.glob("*.py")), Path(tomlcache.__file__)]
    code = tuple(stamps.stamp(source) for source in sources)
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
    read_bytes: Callable[[str], bytes] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Pipeline:
    """Parse pipeline TOML text; ``file`` names the file in errors and anchors paths.
    ``read`` gives the text of a nested pipeline file by its path relative to
    ``file``'s folder, ``read_bytes`` the bytes of a params file (default: from the
    disk)."""
    try:
        data = tomlcache.loads(text)
    except tomlcache.TOMLDecodeError as exc:
        raise PipelineError(f"invalid TOML: {exc}", file=file.name) from exc
    reader = read or (lambda relpath: (file.parent / relpath).read_text(encoding="utf-8"))
    return parse_data(
        data,
        file,
        read=lambda relpath: tomlcache.loads(reader(relpath)),
        read_bytes=read_bytes or (lambda relpath: (file.parent / relpath).read_bytes()),
        overrides=overrides,
    )


def schema_text() -> str:
    """The JSON Schema (draft 2020-12) of the pipeline file, as shipped: an editor
    that reads it flags a misspelt field or a wrong type as the file is written."""
    return resources.files(__package__).joinpath(SCHEMA_FILE).read_text(encoding="utf-8")
