"""The object-store remote: S3 (and other object stores) through obstore, the
``gitpipe-ml[s3]`` extra, imported only when such a remote is opened, or an
``s3://`` remote dep is fingerprinted (:func:`head_object`).

Credentials come only from the environment (``AWS_*`` variables, or the container,
web-identity and instance-metadata providers those variables point at), never from
a file in the repository or from the url. Every call to obstore is in
:class:`ObjectStoreRemote`, so a change of its API touches one class.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from gitpipe.core.errors import RemoteDepError, RemoteError, UsageError
from gitpipe.store.naming import OBJECTS
from gitpipe.store.remote.base import Remote, redact
from gitpipe.store.runcache import Signer

_CHUNK = 8 * 1024 * 1024  # download stream chunks


def describe(exc: BaseException) -> str:
    """One line from an object-store error: the server's code and message when it
    sent one, else the first line (obstore appends a multi-line debug dump)."""
    text = str(exc).split("\n\nDebug source:")[0].strip()
    code = re.search(r"<Code>([^<]*)</Code>", text)
    if code:
        message = re.search(r"<Message>([^<]*)</Message>", text)
        return f"{code.group(1)}: {message.group(1)}" if message else code.group(1)
    line = text.splitlines()[0] if text else type(exc).__name__
    line = line.removeprefix("Generic S3 error: ")
    return line if len(line) <= 300 else line[:297] + "..."


def _s3_store(
    s3_store: Any,
    bucket: str,
    *,
    prefix: str | None,
    environ: Mapping[str, str],
    retry: Mapping[str, Any],
    options: Mapping[str, Any] | None = None,
) -> Any:
    """obstore's ``S3Store`` for ``bucket``: the endpoint (an S3-compatible server)
    and the credentials from the environment, none from elsewhere."""
    endpoint = next(
        (
            environ[name]
            for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT")
            if environ.get(name)
        ),
        "",
    )
    client = dict(options or {})
    # an S3-compatible server the user named with http:// is meant to be used
    if endpoint.startswith("http://"):
        client["allow_http"] = True
    return s3_store(bucket, prefix=prefix, client_options=client, retry_config=retry)


def head_object(url: str, timeout: float, *, environ: Mapping[str, str]) -> dict[str, str | int]:
    """The fingerprint of the object ``s3://BUCKET/KEY`` (a step's remote dep, see
    gitpipe.identity.external): its ETag and size, and its version id when the
    bucket keeps versions.  One HEAD request, retried briefly, within ``timeout``
    seconds; :class:`RemoteDepError` naming the url (redacted) when it fails."""
    parts = urlsplit(url)
    shown = redact(url)
    try:
        import obstore
        from obstore.exceptions import BaseError, NotFoundError
        from obstore.store import S3Store
    except ImportError as exc:
        raise UsageError(
            f"the remote dep {shown} needs gitpipe's s3 extra: pip install 'gitpipe-ml[s3]'"
        ) from exc
    retry = {"max_retries": 2, "retry_timeout": timedelta(seconds=timeout)}
    options = {"timeout": f"{timeout:g}s", "connect_timeout": f"{timeout:g}s"}
    try:
        store = _s3_store(
            S3Store, parts.netloc, prefix=None, environ=environ, retry=retry, options=options
        )
        meta = obstore.head(store, parts.path.lstrip("/"))
    except (FileNotFoundError, NotFoundError):
        raise RemoteDepError(shown, "no such object") from None
    except (BaseError, OSError) as exc:
        raise RemoteDepError(shown, describe(exc)) from None
    found: dict[str, str | int] = {"etag": str(meta.get("e_tag") or ""), "size": int(meta["size"])}
    if meta.get("version"):
        found["version_id"] = str(meta["version"])
    if not found["etag"]:
        del found["etag"]
    return found


class ObjectStoreRemote(Remote):
    """An object store (``s3://BUCKET/PREFIX``; also ``gs://`` and ``az://``) through
    obstore. Its sync calls release the GIL, so a thread pool moves many objects at
    once; large uploads go in parts; requests are retried with backoff."""

    jobs = 16
    #: retries with exponential backoff and jitter, bounded so that an unreachable
    #: remote fails in seconds, not minutes
    RETRY: ClassVar[dict[str, Any]] = {"max_retries": 4, "retry_timeout": timedelta(seconds=60)}

    def __init__(self, url: str, *, environ: Mapping[str, str]) -> None:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        try:
            import obstore
            from obstore.exceptions import BaseError, NotFoundError
            from obstore.store import S3Store, from_url
        except ImportError as exc:
            raise UsageError(
                f"{scheme}:// remotes need gitpipe's s3 extra: pip install 'gitpipe-ml[s3]'"
            ) from exc
        if parts.username or parts.password:
            raise UsageError(
                f"the remote url {redact(url)!r} holds credentials; remove them and set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment instead"
            )
        if parts.query or parts.fragment or not parts.netloc:
            raise UsageError(
                f"the remote url {redact(url)!r} is not of the form {scheme}://BUCKET/PREFIX"
            )
        self.url = redact(url)
        self.signer = Signer.from_environ(environ)
        self._obs = obstore
        self._errors: tuple[type[BaseException], ...] = (BaseError, OSError)
        self._missing: tuple[type[BaseException], ...] = (FileNotFoundError, NotFoundError)
        self._checked = False
        try:
            if scheme in ("s3", "s3a"):
                self.store: Any = _s3_store(
                    S3Store,
                    parts.netloc,
                    prefix=parts.path.strip("/") or None,
                    environ=environ,
                    retry=self.RETRY,
                )
            else:
                self.store = from_url(url, retry_config=self.RETRY)  # type: ignore[arg-type]
        except self._errors as exc:
            raise RemoteError(f"cannot use the remote {redact(url)}: {describe(exc)}") from exc

    def _fail(self, doing: str, exc: BaseException) -> RemoteError:
        return RemoteError(
            f"cannot {doing} the remote {self.url} ({describe(exc)}); check the url, "
            "AWS_ENDPOINT_URL if you use one, and the AWS_* credentials in the environment"
        )

    def check(self) -> None:
        if not self._checked:
            self._first_object("reach")
            self._checked = True

    def empty(self) -> bool:
        return not self._first_object("list")

    def _first_object(self, doing: str) -> bool:
        try:
            for chunk in self._obs.list(self.store, f"{OBJECTS}/", chunk_size=1):
                return bool(chunk)
        except self._errors as exc:
            raise self._fail(doing, exc) from exc
        return False

    def exists(self, name: str) -> bool:
        try:
            self._obs.head(self.store, name)
        except self._missing:
            return False
        except self._errors as exc:
            raise self._fail(f"look for {name} on", exc) from exc
        return True

    def listing(self, prefix: str) -> set[str]:
        found: set[str] = set()
        try:
            for chunk in self._obs.list(self.store, prefix, chunk_size=1000):
                found.update(meta["path"] for meta in chunk)
        except self._errors as exc:
            raise self._fail("list", exc) from exc
        return found

    def upload(self, source: Path, name: str) -> None:
        try:
            self._obs.put(self.store, name, source)
        except self._errors as exc:
            raise self._fail(f"write {name} to", exc) from exc

    def download(self, name: str, target: Path) -> bool:
        try:
            result = self._obs.get(self.store, name)
            with open(target, "wb") as handle:
                for chunk in result.stream(min_chunk_size=_CHUNK):
                    handle.write(chunk)
        except self._missing:
            return False
        except self._errors as exc:
            raise self._fail(f"read {name} from", exc) from exc
        return True

    def read(self, name: str, *, limit: int | None = None) -> bytes | None:
        try:
            result = self._obs.get(self.store, name)
            if limit is None or result.meta["size"] <= limit:
                return bytes(result.bytes())
            kept = bytearray()  # too large: the first limit + 1 bytes, the rest unread
            for chunk in result.stream(min_chunk_size=min(_CHUNK, limit + 1)):
                kept += chunk
                if len(kept) > limit:
                    break
            return bytes(kept[: limit + 1])
        except self._missing:
            return None
        except self._errors as exc:
            raise self._fail(f"read {name} from", exc) from exc

    def write(self, name: str, data: bytes) -> None:
        try:
            self._obs.put(self.store, name, data)
        except self._errors as exc:
            raise self._fail(f"write {name} to", exc) from exc
