"""Nested pipelines: a step that runs another pipeline file.

    [steps.prep]                       sub/gitpipe.toml's steps, each renamed
    pipeline = "sub/gitpipe.toml"  ──► prep/STEP, its paths seen from here
    after = ["fetch"]                  (sub/x.csv), its own `after` plus the outer one

The parser checks the step (:func:`target`), reads the file (:func:`read`), parses it
with a parser of its own, and moves its steps into the outer pipeline (:func:`moved`).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from gitpipe.core import tomlcache
from gitpipe.core.errors import PipelineError
from gitpipe.pipeline import paths
from gitpipe.pipeline.checks import Checks
from gitpipe.pipeline.model import PathSpec, Pipeline, Step, renamed_refs

#: the fields a step that runs another pipeline file may have
NESTED_FIELDS = frozenset({"pipeline", "after", "desc"})

#: reads a pipeline file's TOML by its path relative to the reading file's folder
Reader = Callable[[str], dict[str, Any]]


def target(checks: Checks, name: str, body: dict[str, Any], chain: tuple[str, ...]) -> PathSpec:
    """The pipeline file the step ``name`` runs, relative to this pipeline's folder:
    a file, inside the outermost pipeline's folder, not one of the files in ``chain``
    (those that nest this one)."""
    prefix = f"steps.{name}"
    checks.fields(
        body,
        NESTED_FIELDS,
        prefix,
        lambda key, known: (
            f"step {name!r} runs a pipeline file, so it takes only {known}, not {key!r}"
        ),
    )
    raw = checks.string(body["pipeline"], f"{prefix}.pipeline")
    file = paths.path(checks, raw, f"{prefix}.pipeline", output=False)
    if file.is_dir or file.path == ".":
        raise checks.error("must name a pipeline file, not a folder", f"{prefix}.pipeline")
    outermost = shown(checks, file)
    if outermost == ".." or outermost.startswith("../"):
        raise checks.error(
            f"pipeline file {raw!r} lies outside the outer pipeline's folder",
            f"{prefix}.pipeline",
        )
    if outermost in chain:
        raise checks.error(
            "pipeline files nest each other: " + " -> ".join([*chain, outermost]),
            f"{prefix}.pipeline",
        )
    return file


def shown(checks: Checks, file: PathSpec) -> str:
    """The nested ``file`` as messages name it: relative to the outermost pipeline's
    folder."""
    return posixpath.normpath(posixpath.join(posixpath.dirname(checks.shown), file.path))


def read(
    checks: Checks, reader: Reader | None, file: PathSpec, key: str
) -> tuple[dict[str, Any], Reader]:
    """The TOML of the nested pipeline ``file``, through ``reader``; and the reader of
    the pipeline files it nests in turn (relative to its own folder)."""
    if reader is None:
        raise checks.error("nested pipelines cannot be read here", key)
    try:
        data = reader(file.path)
    except FileNotFoundError:
        raise checks.error(f"pipeline file {file.path!r} does not exist", key) from None
    except tomlcache.TOMLDecodeError as exc:
        raise PipelineError(f"invalid TOML: {exc}", file=shown(checks, file)) from exc
    except (OSError, UnicodeDecodeError, KeyError) as exc:
        raise checks.error(f"cannot read pipeline file {file.path!r} ({exc})", key) from exc
    folder = posixpath.dirname(file.path)
    return data, lambda relpath: reader(posixpath.join(folder, relpath))


def moved(
    inner: Pipeline, name: str, file: PathSpec, after: tuple[str, ...]
) -> tuple[dict[str, Step], dict[str, tuple[str, ...]], list[str]]:
    """The steps of the pipeline ``inner``, read from ``file``, as steps of the outer
    pipeline's step ``name``: named ``NAME/STEP``, their paths seen from the outer
    pipeline's folder, each also after the outer step's ``after``; with the groups
    they form and the pipeline files they were read from."""
    folder = posixpath.dirname(file.path)
    where = folder or "."

    def inside(step_name: str) -> str:
        return f"{name}/{step_name}"

    steps = {}
    for step in inner.steps.values():
        step_moved = replace(
            renamed_refs(step, inside),
            name=inside(step.name),
            group=inside(step.group) if step.group else name,
            deps=tuple(d.under(where) for d in step.deps),
            outs=tuple(o.under(where) for o in step.outs),
            metrics=tuple(m.under(where) for m in step.metrics),
            plots=tuple(p.under(where) for p in step.plots),
            code=tuple(posixpath.normpath(posixpath.join(where, c)) for c in step.code),
            wdir=posixpath.normpath(posixpath.join(where, step.wdir)),
            after=tuple(inside(a) for a in step.after) + after,
            template=replace(step.template, wdir=_joined(where, step.template.wdir)),
            pythonpath=None
            if step.pythonpath is None
            else tuple(posixpath.normpath(posixpath.join(where, p)) for p in step.pythonpath),
        )
        steps[step_moved.name] = step_moved
    groups = {
        inside(group): tuple(inside(m) for m in members) for group, members in inner.groups.items()
    }
    groups[name] = tuple(steps)
    includes = [file.path] + [posixpath.join(folder, i) for i in inner.includes]
    return steps, groups, includes


def _joined(folder: str, path: str) -> str:
    """``path`` seen from ``folder`` levels up, as text: a path as written may hold
    ``${...}`` references, which normalising could fold away."""
    if path == ".":
        return folder
    return path if folder == "." else posixpath.join(folder, path)
