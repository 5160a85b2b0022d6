"""One step's table in the pipeline file, read into a :class:`~gitpipe.pipeline.model.Step`.

    [steps.NAME]   cmd | fn ─► the command, its ${...} put in (params.References)
                   deps, outs, metrics, wdir ─► paths (gitpipe.pipeline.paths);
                                                a url in deps ─► UrlDep
                   params, code, after, env, when, timeout, resources, flags
                ─► Step (and its own paths checked: no output twice, none read)

docs/pipeline-file.md describes each field; adding one starts at STEP_FIELDS (and,
when it changes what the step computes, at the key: gitpipe.identity.action).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from gitpipe.pipeline import paramfiles
from gitpipe.pipeline.checks import Checks, type_name
from gitpipe.pipeline.model import (
    CODE_DIGESTS,
    ENVIRONMENTS,
    LINKS,
    PathSpec,
    Step,
    Template,
    UrlDep,
)
from gitpipe.pipeline.params import References
from gitpipe.pipeline.paths import check_own_paths, is_url, path, plain, url
from gitpipe.pipeline.refs import scalar_text

STEP_FIELDS = frozenset(
    {
        "cmd",
        "fn",
        "deps",
        "outs",
        "metrics",
        "plots",
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
        "retries",
        "resources",
        "code_digest",
        "link",
        "matrix",
        "when",
        "approval",
        "environment",
        "deterministic",
    }
)
_FN = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*$")


def parse_step(
    checks: Checks,
    name: str,
    body: dict[str, Any],
    params: Mapping[str, Any],
    *,
    code_digest: str,
    link: str,
    environment: str | tuple[str, ...] = "imports",
    matrix: Mapping[str, Any] | None = None,
    group: str = "",
    files: Mapping[str, paramfiles.FileParams] | None = None,
) -> Step:
    """The step ``name`` from its table ``body``: one expansion of the matrix step
    ``group`` when ``matrix`` holds its values.  ``code_digest`` and ``link`` are the
    pipeline's defaults (``[pipeline]``); ``files`` the params files, by name as
    written, that ``params = ["FILE:KEY"]`` entries select from."""
    prefix = f"steps.{group or name}"
    if not STEP_FIELDS.issuperset(body):
        checks.fields(
            body,
            STEP_FIELDS,
            prefix,
            lambda key, known: f"unknown field {key!r} in step {name!r} (known fields: {known})",
        )
    refs = References(checks, params, matrix)
    fn, cmd, raw_cmds = _command(checks, refs, name, body, prefix)

    urls: dict[UrlDep, None] = {}  # the urls among deps, in order, each once

    def paths(key: str, *, outputs: bool) -> tuple[PathSpec, ...]:
        if key not in body:
            return ()
        values = checks.str_list(body[key], f"{prefix}.{key}")
        specs = []
        for i, value in enumerate(values):
            if "${" not in value and plain(value):  # most: as written (see plain)
                specs.append(PathSpec(value))
                continue
            where = f"{prefix}.{key}[{i}]"
            raw = refs.expand(value, where, metrics=False)
            if not outputs and is_url(raw):
                urls[url(checks, raw, where)] = None
            else:
                specs.append(path(checks, raw, where, output=outputs))
        return tuple(specs)

    deps = paths("deps", outputs=False)
    outs = paths("outs", outputs=True)
    metrics = paths("metrics", outputs=True)
    for spec in metrics:
        if spec.is_dir:
            raise checks.error("a metrics file cannot be a folder", f"{prefix}.metrics")
    plots = paths("plots", outputs=True)
    for spec in plots:
        if spec.is_dir:
            raise checks.error("a plots file cannot be a folder", f"{prefix}.plots")
    # a field a step does not write is its default, without its checks' cost: a
    # 100,000-step pipeline is read field by field on every status never run before
    code = (
        tuple(
            refs.expand(value, f"{prefix}.code", metrics=False)
            for value in checks.str_list(body["code"], f"{prefix}.code")
        )
        if "code" in body
        else ()
    )
    after = tuple(checks.str_list(body["after"], f"{prefix}.after")) if "after" in body else ()
    listed = checks.str_list(body["params"], f"{prefix}.params") if "params" in body else ()
    for i, param_key in enumerate(listed):
        where = f"{prefix}.params[{i}]"
        entry = refs.expand(param_key, where, metrics=False)
        for dotted in (
            paramfiles.select(checks, files or {}, entry, where) if ":" in entry else [entry]
        ):
            refs.param(dotted, where)
    if matrix:
        refs.use_matrix()
    for dotted, value in refs.used.items():
        paramfiles.check_not_null(checks, dotted, value, f"{prefix}.params")
    env_written, env = _env(checks, refs, body, prefix) if "env" in body else ({}, {})
    wdir_written, wdir = ".", "."
    if "wdir" in body:
        wdir_written = checks.string(body["wdir"], f"{prefix}.wdir")
        wdir = path(
            checks,
            refs.expand(wdir_written, f"{prefix}.wdir", metrics=False),
            f"{prefix}.wdir",
            output=False,
        ).path
    when = refs.condition(body["when"], f"{prefix}.when") if "when" in body else None
    timeout = _timeout(checks, body, prefix) if "timeout" in body else None
    resources = _resources(checks, body, prefix) if "resources" in body else {}
    step = Step(
        name=name,
        cmd=cmd,
        deps=deps,
        outs=outs,
        metrics=metrics,
        plots=plots,
        params=dict(sorted(refs.used.items())) if refs.used else {},
        code=code,
        after=after,
        env=dict(sorted(env.items())) if env else {},
        wdir=wdir,
        timeout=timeout,
        resources=resources,
        fn=fn,
        group=group,
        matrix=dict(matrix or {}),
        when=when,
        metric_refs=tuple(dict.fromkeys(refs.refs)) if refs.refs else (),
        template=Template(
            cmd=tuple(raw_cmds),
            env=dict(sorted(env_written.items())) if env_written else {},
            wdir=wdir_written,
        ),
        urls=tuple(urls) if urls else (),
        **_flags(checks, body, prefix, code_digest=code_digest, link=link, environment=environment),
    )
    check_own_paths(checks, step)
    return step


#: the fields :func:`_flags` reads, in the order their errors are found
_FLAGS = (
    "always",
    "cache",
    "persist",
    "frozen",
    "desc",
    "retries",
    "code_digest",
    "link",
    "approval",
    "environment",
    "deterministic",
)
_FLAG_SET = frozenset(_FLAGS)


def _flags(checks: Checks, body: dict[str, Any], prefix: str, **defaults: Any) -> dict[str, Any]:
    """The flags and choices ``body`` writes, checked, over ``defaults`` (the
    pipeline's ``code_digest``, ``link`` and ``environment``); any other it does not
    write is left out, for the step's default.  Most steps write none of them."""
    found: dict[str, Any] = defaults
    if _FLAG_SET.isdisjoint(body):
        return found
    for name in _FLAGS:
        if name not in body:
            continue
        if name == "desc":
            found[name] = checks.string(body[name], f"{prefix}.desc")
        elif name == "retries":
            found[name] = _retries(checks, body, prefix)
        elif name == "code_digest":
            found[name] = checks.choice(body[name], CODE_DIGESTS, f"{prefix}.code_digest")
        elif name == "link":
            found[name] = checks.choice(body[name], LINKS, f"{prefix}.link")
        elif name == "environment":
            found[name] = read_environment(checks, body[name], f"{prefix}.environment")
        else:
            found[name] = checks.boolean(body, name, prefix, False)
    return found


def read_environment(checks: Checks, value: Any, key: str) -> str | tuple[str, ...]:
    """``environment``: one of ``ENVIRONMENTS``, or a list of commands whose
    ``--version`` enters the key (docs/environment.md)."""
    if isinstance(value, list):
        if not all(isinstance(c, str) and c.strip() and c == c.strip() for c in value):
            raise checks.error("must list command names (non-empty strings)", key)
        return tuple(dict.fromkeys(value))
    if not isinstance(value, str):
        raise checks.error(
            f"must be one of {', '.join(map(repr, ENVIRONMENTS))} or a list of commands, "
            f"not {type_name(value)}",
            key,
        )
    return checks.choice(value, ENVIRONMENTS, key)


def _command(
    checks: Checks, refs: References, name: str, body: dict[str, Any], prefix: str
) -> tuple[str, tuple[str, ...], list[str]]:
    """``fn`` ("" for a command step), ``cmd`` with its references put in, and ``cmd``
    as written; a function step's "command" is its reference."""
    if "cmd" not in body and "fn" not in body:
        raise checks.error(
            f"step {name!r} has neither `cmd` (a command) nor `fn` (a Python function)",
            f"{prefix}.cmd",
        )
    if "cmd" in body and "fn" in body:
        raise checks.error(
            f"step {name!r} has both `cmd` and `fn`; give one of them", f"{prefix}.fn"
        )
    fn = ""
    if "fn" in body:
        fn = checks.string(body["fn"], f"{prefix}.fn")
        if not _FN.match(fn):
            raise checks.error(
                f"{fn!r} is not a function reference like 'package.module:function'",
                f"{prefix}.fn",
            )
    raw_cmd = body.get("cmd", [fn])
    if isinstance(raw_cmd, str):  # most steps: one command
        one = refs.expand(raw_cmd, f"{prefix}.cmd")
        if not one.strip():
            raise checks.error("a command must not be empty", f"{prefix}.cmd")
        return fn, (one,), [raw_cmd]
    if not (isinstance(raw_cmd, list) and raw_cmd and all(isinstance(c, str) for c in raw_cmd)):
        raise checks.error("must be a string or a non-empty list of strings", f"{prefix}.cmd")
    raw_cmds = raw_cmd
    cmd = tuple(
        refs.expand(c, f"{prefix}.cmd" + (f"[{i}]" if len(raw_cmds) > 1 else ""))
        for i, c in enumerate(raw_cmds)
    )
    if any(not c.strip() for c in cmd):
        raise checks.error("a command must not be empty", f"{prefix}.cmd")
    return fn, cmd, raw_cmds


def _env(
    checks: Checks, refs: References, body: dict[str, Any], prefix: str
) -> tuple[dict[str, str], dict[str, str]]:
    """``env`` as written (numbers and booleans as text) and with its references put in."""
    written: dict[str, str] = {}
    env = {}
    for key, value in checks.table(body.get("env", {}), f"{prefix}.env").items():
        if not isinstance(value, (str, int, float, bool)):
            raise checks.error(
                f"must be a string or a number, not {type_name(value)}", f"{prefix}.env.{key}"
            )
        written[key] = scalar_text(value)
        check_env_entry(checks, key, written[key], f"{prefix}.env")
        env[key] = refs.expand(written[key], f"{prefix}.env.{key}")
    return written, env


def check_env_entry(checks: Checks, name: str, text: str, where: str) -> None:
    """An environment variable the system can set: a name without ``=`` or NUL, and
    a value without NUL (else the step fails when it starts, not when it is read)."""
    if not name or "=" in name or "\0" in name:
        raise checks.error(f"{name!r} is not a name an environment variable can have", where)
    if "\0" in text:
        raise checks.error("an environment variable's value cannot hold a NUL", f"{where}.{name}")


def _timeout(checks: Checks, body: dict[str, Any], prefix: str) -> float | None:
    timeout = body.get("timeout")
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise checks.error("must be a positive number of seconds", f"{prefix}.timeout")
    return float(timeout)


def _retries(checks: Checks, body: dict[str, Any], prefix: str) -> int:
    retries = body.get("retries", 1)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise checks.error("must be a whole number of 0 or more", f"{prefix}.retries")
    return retries


def _resources(checks: Checks, body: dict[str, Any], prefix: str) -> dict[str, float]:
    resources = {}
    for key, value in checks.table(body.get("resources", {}), f"{prefix}.resources").items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise checks.error("must be a positive number", f"{prefix}.resources.{key}")
        if key == "cpus" and not isinstance(value, int):
            raise checks.error("must be a whole number", f"{prefix}.resources.cpus")
        resources[key] = value
    return resources
