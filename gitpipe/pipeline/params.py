"""The params and the references to them.

    [params] ──► apply_overrides (`repro -p NAME=VALUE`, read by parse_override)
             ──► References of one step:
                   ${params.X}, ${matrix.X}   put in now, and the params it used noted
                   ${steps.S.metrics.M}       kept (noted as a MetricRef) for run time
                   `when = "..."`             parsed, its ${...} checked

Errors name the file and key through the parser's :class:`~gitpipe.pipeline.checks.Checks`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gitpipe.core import tomlcache
from gitpipe.core.errors import PipelineError, UsageError
from gitpipe.pipeline.checks import Checks, type_name
from gitpipe.pipeline.expr import Condition, ExprError
from gitpipe.pipeline.expr import parse as parse_condition
from gitpipe.pipeline.model import MetricRef
from gitpipe.pipeline.refs import (
    METRIC_REF,
    REF,
    map_strings,
    metric_parts,
    parts,
    ref_text,
    scalar_text,
    strings,
)


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


def apply_overrides(
    shown: str, params: dict[str, Any], overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """The params (``shown`` names where they are, in messages) with the command
    line's ``-p NAME=VALUE`` put in (each NAME must be a param already: a typo must not
    run an experiment that changes nothing)."""
    if not overrides:
        return params
    params = map_strings(params, str)  # a copy: overrides must not leak
    for dotted, value in overrides.items():
        node: Any = params
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if not isinstance(node, dict) or last not in node:
            raise UsageError(f"-p {dotted}: there is no param {dotted!r} in {shown}")
        if isinstance(node[last], dict) and not isinstance(value, dict):
            raise UsageError(
                f"-p {dotted}: {dotted!r} is a table of params; set one of them, "
                f"e.g. -p {dotted}.{next(iter(node[last]), 'NAME')}=VALUE"
            )
        node[last] = value
    return params


class References:
    """The ``${...}`` references of one step (one expansion of a matrix step): puts
    in the params and ``matrix`` values its strings name, and notes the params it
    ``used`` (dotted name -> value; each matrix value as ``matrix.X``) and the other
    steps' metrics it reads (``refs``, in the order written)."""

    def __init__(
        self, checks: Checks, params: Mapping[str, Any], matrix: Mapping[str, Any] | None
    ) -> None:
        self.checks = checks
        self.params = params
        self.matrix = matrix
        self.used: dict[str, Any] = {}
        self.refs: list[MetricRef] = []

    def lookup(
        self, values: Mapping[str, Any], dotted: str, key: str, *, what: str = "param"
    ) -> Any:
        node: Any = values
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                where = "not in [params]" if what == "param" else f"known: {', '.join(values)}"
                raise self.checks.error(f"unknown {what} {dotted!r} ({where})", key)
            node = node[part]
        return node

    def param(self, dotted: str, key: str) -> None:
        """A param the step names in its ``params`` list: used, and the metrics its
        value reads are read."""
        self.used[dotted] = self.lookup(self.params, dotted, key)
        self.refs.extend(metric_refs_in(self.used[dotted], key))

    def use_matrix(self) -> None:
        """Each matrix value is a param of its own expansion."""
        for axis, value in (self.matrix or {}).items():
            self.used[f"matrix.{axis}"] = value

    def expand(self, text: str, key: str, *, metrics: bool = True) -> str:
        """``text`` with its ``${params.X}`` and ``${matrix.X}`` references replaced;
        ``${steps.S.metrics.M}`` references are kept (and noted) to be resolved when
        the step runs, where ``metrics`` allows them, and an error elsewhere."""
        if "${" not in text:  # no reference (most strings): nothing to put in
            return text

        def metric_error() -> PipelineError:
            return self.checks.error(
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
                value = self.lookup(self.params, dotted, key)
                self.used[dotted] = value
                found = metric_refs_in(value, key)
                if found and not metrics:
                    raise metric_error()
                if metrics:
                    self.refs.extend(found)
                return scalar_text(value)
            if namespace == "matrix" and dotted and self.matrix is not None:
                return scalar_text(self.lookup(self.matrix, dotted, key, what="matrix value"))
            if namespace == "steps":
                if not metrics:
                    raise metric_error()
                step, metric = self.metric(ref, key)
                self.refs.append(MetricRef(step, metric, key))
                return "${" + ref_text(step, metric) + "}"
            known = "${params.NAME}, ${steps.STEP.metrics.NAME}" + (
                ", ${matrix.NAME}" if self.matrix is not None else ""
            )
            raise self.checks.error(
                f"unknown reference ${{{ref}}} (known: {known}; write $${{...}} for a "
                "literal ${...})",
                key,
            )

        return REF.sub(substitute, text)

    def metric(self, ref: str, key: str) -> tuple[str, str]:
        """``steps.S.metrics.M`` -> ``(S, M)``."""
        found = metric_parts(ref)
        if found is None:
            raise self.checks.error(
                f"${{{ref}}}: another step's metric is written ${{steps.STEP.metrics.NAME}}", key
            )
        return found

    def condition(self, value: Any, key: str) -> Condition:
        """A ``when`` condition: params and matrix values are known now; the metrics
        it reads are noted, to be compared when the step is about to run."""
        source = self.checks.string(value, key)

        def known_now(ref: str) -> Any:
            namespace, _, dotted = ref.partition(".")
            if namespace == "params" and dotted:
                return self.single(self.lookup(self.params, dotted, key), ref, key)
            if namespace == "matrix" and dotted and self.matrix is not None:
                return self.single(
                    self.lookup(self.matrix, dotted, key, what="matrix value"), ref, key
                )
            if namespace == "steps":
                self.metric(ref, key)
                return None
            raise self.checks.error(f"unknown reference ${{{ref}}} in the condition", key)

        try:
            when = parse_condition(source, known_now)
        except ExprError as exc:
            raise self.checks.error(f"invalid condition: {exc}", key) from exc
        self.refs.extend(MetricRef(*self.metric(ref, key), key=key) for ref in when.refs)
        return when

    def single(self, value: Any, ref: str, key: str) -> Any:
        """A value a condition compares: one number, string or boolean."""
        if isinstance(value, (bool, int, float, str)):
            return value
        raise self.checks.error(
            f"${{{ref}}} is {type_name(value)}; a condition compares single values", key
        )


def metric_refs_in(value: Any, key: str) -> list[MetricRef]:
    """The metric references in the strings of ``value`` (a param's value)."""
    return [
        MetricRef(*parts(match), key)
        for text in strings(value)
        for match in METRIC_REF.finditer(text)
    ]
