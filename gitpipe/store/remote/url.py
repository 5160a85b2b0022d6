"""Which remote: the one a url names (:func:`open_remote`), and the one a command
uses (:func:`for_project`: ``--remote``, else ``$GITPIPE_REMOTE``, else the pipeline
file's ``[remote] url``)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlsplit

from gitpipe.core.errors import UsageError
from gitpipe.store.remote.base import redact
from gitpipe.store.remote.folder import DirectoryRemote
from gitpipe.store.runcache import Signer

if TYPE_CHECKING:
    from gitpipe.pipeline.spec import Pipeline
    from gitpipe.store.remote.objectstore import ObjectStoreRemote

ENV_VAR = "GITPIPE_REMOTE"
#: url schemes served by :class:`~gitpipe.store.remote.objectstore.ObjectStoreRemote`
OBJECT_STORE_SCHEMES = frozenset({"s3", "s3a", "gs", "az", "abfs", "abfss"})


def open_remote(
    url: str, *, base: Path, environ: Mapping[str, str] | None = None
) -> DirectoryRemote | ObjectStoreRemote:
    """The remote at ``url``: a folder path (relative to ``base``), ``file://PATH``, or
    an object store url such as ``s3://BUCKET/PREFIX``. Its credentials and its
    results' :class:`~gitpipe.store.runcache.Signer` come from ``environ`` (default: this
    process's environment)."""
    text = url.strip()
    if not text:
        raise UsageError("the remote's url is empty")
    environ = os.environ if environ is None else environ
    scheme, sep, _ = text.partition("://")
    if not sep:
        path = Path(os.path.normpath(base / Path(text).expanduser()))
        return DirectoryRemote(path, url=text, signer=Signer.from_environ(environ))
    scheme = scheme.lower()
    if scheme == "file":
        parts = urlsplit(text)
        if parts.netloc not in ("", "localhost"):
            raise UsageError(f"a file:// remote must be on this machine, not {redact(text)!r}")
        return DirectoryRemote(
            Path(unquote(parts.path)), url=text, signer=Signer.from_environ(environ)
        )
    if scheme in OBJECT_STORE_SCHEMES:
        from gitpipe.store.remote.objectstore import ObjectStoreRemote  # imports obstore

        return ObjectStoreRemote(text, environ=environ)
    raise UsageError(
        f"unknown remote scheme {scheme}:// in {redact(text)!r}; use a folder, file://PATH "
        "or s3://BUCKET/PREFIX"
    )


class Configured(Protocol):
    """What :func:`for_project` reads of a project (a :class:`gitpipe.workspace.Project`)."""

    @property
    def root(self) -> Path: ...

    @property
    def environ(self) -> Mapping[str, str]: ...

    @property
    def pipeline(self) -> Pipeline: ...


def for_project(
    project: Configured, url: str | None = None, *, cwd: Path
) -> DirectoryRemote | ObjectStoreRemote:
    """The remote a command uses: ``url`` (``--remote``), else ``$GITPIPE_REMOTE``, else
    the pipeline file's ``[remote] url``. A relative folder is taken from ``cwd`` for
    the first two and from the pipeline file's folder for the last."""
    environ = project.environ
    if url and url.strip():
        return open_remote(url, base=cwd, environ=environ)
    if environ.get(ENV_VAR, "").strip():
        return open_remote(environ[ENV_VAR], base=cwd, environ=environ)
    configured = project.pipeline.remote
    if configured:
        return open_remote(configured, base=project.root, environ=environ)
    raise UsageError(
        f"no remote is configured; pass --remote URL, set {ENV_VAR}, or add "
        '[remote] with url = "..." to the pipeline file'
    )
