"""The path rules of the pipeline file, as written (gitpipe/run/guard.py checks the
same on disk, through links):

- a path is relative to the pipeline file's folder, never absolute;
- an output lies inside that folder and is not the folder itself;
- a step does not read what it writes, nor declare an output twice;
- no two steps own the same output, and no output folder contains another;
- no output is, contains or lies inside `.git`, `.gitpipe`, the lock file or a
  pipeline file;
- a dependency may instead be a url (:func:`url`): an S3 object or an HTTP(S)
  resource, holding no credentials; an output never is.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from gitpipe.core.redaction import redact
from gitpipe.pipeline.checks import Checks
from gitpipe.pipeline.model import URL_SCHEMES, PathSpec, Step, UrlDep, out_key

#: folder names no output may be or lie inside, at any depth and in any case: Git's
#: own (a folder, or the file of a linked work tree) and gitpipe's state
RESERVED_NAMES = (".git", ".gitpipe")
#: what each reserved name is, for messages
RESERVED_WHAT = {".git": "Git's own folder", ".gitpipe": "gitpipe's own folder"}


def reserved_part(relpath: str) -> str | None:
    """The first part of a relative path that is `.git` or `.gitpipe` (in any case, as
    a case-insensitive file system reads it); None when there is none."""
    if ".git" not in relpath.casefold():  # both names hold it: no part can be either
        return None
    for part in relpath.split("/"):
        if part.casefold() in RESERVED_NAMES:
            return part
    return None


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


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SUPPORTED = ", ".join(f"{scheme}://" for scheme in URL_SCHEMES)


def is_url(raw: str) -> bool:
    """Whether a dependency as written is a url (``SCHEME://...``), not a path."""
    return _SCHEME.match(raw) is not None


def url(checks: Checks, raw: str, key: str) -> UrlDep:
    """A dependency named by its url (``${...}`` already put in): ``s3://BUCKET/KEY``,
    ``http://`` or ``https://``.  A url holding credentials is refused, and no message
    repeats them (:func:`~gitpipe.core.redaction.redact`)."""
    shown = redact(raw)
    match = _SCHEME.match(raw)
    assert match is not None
    scheme = match.group(1).lower()
    if scheme not in URL_SCHEMES:
        raise checks.error(
            f"{shown!r}: gitpipe cannot fingerprint {scheme}:// dependencies; "
            f"a url dependency is one of {_SUPPORTED}",
            key,
        )
    if any(c.isspace() for c in raw):
        raise checks.error(f"{shown!r}: a url must not hold spaces; write them as %20", key)
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - a port that is no number raises here
    except ValueError as exc:
        raise checks.error(f"{shown!r} is not a valid url ({exc})", key) from None
    if parts.username or parts.password:
        where = (
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            if scheme == "s3"
            else "~/.netrc (or the file $NETRC names)"
        )
        raise checks.error(
            f"{shown!r} holds credentials; remove them from the url and put them in {where}: "
            "gitpipe never reads credentials from the pipeline file",
            key,
        )
    if parts.fragment:
        raise checks.error(
            f"{shown!r} has a fragment (#...), which is never sent to the server; remove it", key
        )
    if scheme == "s3":
        name = parts.path.lstrip("/")
        if not parts.netloc or not name or name.endswith("/") or parts.query:
            raise checks.error(
                f"{shown!r} names no object; write s3://BUCKET/KEY (one object, "
                "not a prefix, without ?...)",
                key,
            )
    elif not parts.hostname:
        raise checks.error(f"{shown!r} names no host; write {scheme}://HOST/PATH", key)
    return UrlDep(raw)


def plain(raw: str) -> bool:
    """Whether a path as written is already what :func:`path` makes of it, as a
    dependency or as an output, without an error: relative, not a folder, and
    normalised (no part empty, "." or "..", no backslash).  Such a path holds no
    "//", so it is no url either.  Most paths are: a 100,000-step pipeline's are
    taken as they are, without building their keys or normalising them."""
    wrapped = f"/{raw}/"
    return (
        "//" not in wrapped
        and "/./" not in wrapped
        and "/../" not in wrapped
        and "\\" not in raw
        and raw[1:2] != ":"
    )


def path(checks: Checks, raw: str, key: str, *, output: bool) -> PathSpec:
    """A path as written (``${...}`` already put in), normalised; a trailing ``/``
    makes it a folder."""
    if not raw:
        raise checks.error("a path must not be empty", key)
    if output and is_url(raw):
        raise checks.error(
            f"output {redact(raw)!r} is a url; outputs are files and folders in the workspace "
            "(a url may be a dependency)",
            key,
        )
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":") or raw.startswith("\\"):
        raise checks.error(
            f"{raw!r} is an absolute path; use a path relative to the pipeline file's folder",
            key,
        )
    is_dir = raw.endswith("/")
    norm = posixpath.normpath(raw.replace("\\", "/"))
    if output and norm == ".":
        raise checks.error(
            f"output {raw!r} is the pipeline's folder itself; "
            "declare the files or folders inside it that the step writes",
            key,
        )
    if output and (norm == ".." or norm.startswith("../")):
        raise checks.error(
            f"output {raw!r} lies outside the pipeline's folder; outputs must be inside it",
            key,
        )
    return PathSpec(norm, is_dir)


def check_own_paths(checks: Checks, step: Step) -> None:
    """A step declares each output once and reads none of them."""
    outs = step.all_outs
    seen: set[str] = set()
    for index, spec in enumerate(outs if len(outs) > 1 else ()):  # one is declared once
        if spec.path in seen:
            raise checks.error(
                f"output {str(spec)!r} is declared twice in step {step.name!r}",
                out_key(step, index),
            )
        seen.add(spec.path)
    for i, dep in enumerate(step.deps):
        for out in outs:
            d, o = dep.path, out.path  # one holds the other only if it starts with it
            if not (d.startswith(o) or o.startswith(d) or "." in (d, o)):
                continue
            if out.contains(dep) or dep.contains(out):
                both = f"{str(dep)!r}" if dep.path == out.path else f"{str(dep)!r} and {str(out)!r}"
                raise checks.error(
                    f"{both} {'is' if dep.path == out.path else 'are'} both a dependency and "
                    f"an output of step {step.name!r}; a step cannot read what it writes",
                    f"steps.{step.name}.deps[{i}]",
                )


def check_outputs(checks: Checks, steps: Mapping[str, Step]) -> None:
    """No two steps may own the same or overlapping outputs."""
    # path -> (step name, step, index in its all_outs): the key is named on error only
    owner: dict[str, tuple[str, Step, int]] = {}
    for name, step in steps.items():
        for index, spec in enumerate(step.all_outs):
            other = owner.setdefault(spec.path, (name, step, index))[0]
            if other != name:
                raise checks.error(
                    f"steps {other!r} and {name!r} both declare the output {str(spec)!r}; "
                    "each output must belong to one step",
                    out_key(step, index),
                )
    free: set[str] = set()  # folders no output is, nor any folder above them
    for out, (name, step, index) in owner.items():
        folder = out.rpartition("/")[0]
        if not folder or folder in free:  # most outputs share a few folders
            continue
        parts = out.split("/")
        for i in range(1, len(parts)):
            ancestor = "/".join(parts[:i])
            if ancestor in owner:
                other = owner[ancestor][0]
                who = (
                    f"step {name!r} declares"
                    if other == name
                    else (f"steps {other!r} and {name!r} declare")
                )
                raise checks.error(
                    f"{who} overlapping outputs {ancestor + '/'!r} and {out!r}; "
                    "an output folder must not contain another output",
                    out_key(step, index),
                )
        free.add(folder)


def check_protected(
    checks: Checks, file_name: str, steps: Mapping[str, Step], includes: list[str]
) -> None:
    """No output is, contains or lies inside `.git`, `.gitpipe`, the lock of the
    pipeline file ``file_name`` or a pipeline file, as written (with ``-p`` values put
    in); gitpipe/run/guard.py checks the same on disk, through links, and the store
    wherever it is."""
    # the lock, as gitpipe.store.lockfile.path_for names it
    lock = posixpath.splitext(file_name)[0] + ".lock"
    places = {
        file_name: f"the pipeline file {file_name}",
        lock: f"{lock}, the pipeline's lock file",
    }
    for include in includes:
        places.setdefault(include, f"the pipeline file {include}")
    # a path is, holds or lies inside a place only if both start with the same part
    firsts = {place.partition("/")[0] for place in places}
    for step_name, step in steps.items():
        for index, spec in enumerate(step.all_outs):
            # no part of the path can be .git or .gitpipe, in any case, without this
            found = ".git" in spec.path.casefold() and reserved(spec.path)
            if not found and spec.path.partition("/")[0] in firsts:
                found = next(
                    (
                        (r, what)
                        for place, what in places.items()
                        if (r := relation(spec.path, place))
                    ),
                    None,
                )
            if found:
                raise checks.error(
                    f"output {str(spec)!r} of step {step_name!r} {found[0]} {found[1]}; "
                    "gitpipe never writes there, choose another path",
                    out_key(step, index),
                )
