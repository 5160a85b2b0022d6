"""Remote deps: the fingerprint of a url a step reads, asked of its server; gitpipe
never downloads it (the step's command reads it itself).

    s3://BUCKET/KEY ── HEAD through obstore ──> etag, size, version_id (a versioned bucket)
                       (gitpipe.store.remote.objectstore.head_object, handed in)
    http(s)://...   ── HEAD through urllib ──> etag
                                              else last_modified and content_length
                                              else an error naming the url

:class:`Fingerprints` asks each url once per command (what it learnt, or why it
could not, is kept), many urls at once in a small thread pool, each within
``GITPIPE_HTTP_TIMEOUT`` seconds.  A fingerprint is a small record of what the server
says of the object now; it enters the step's key as it is (gitpipe.identity.action)
and is written in the step's lock entry.  Credentials come from the environment
(``AWS_*`` for S3; ``~/.netrc``, or the file ``$NETRC`` names, for HTTP), never from
the pipeline file, and no message shows them (gitpipe.core.redaction).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from gitpipe.core.errors import RemoteDepError, UsageError
from gitpipe.core.redaction import redact

#: what a server says of an object: etag, size, version_id / etag / last_modified,
#: content_length (str or int values only, so that TOML and JSON hold it as it is)
Fingerprint = Mapping[str, str | int]
#: how an s3:// url is fingerprinted: (url, timeout in seconds) -> its fingerprint;
#: raises :class:`RemoteDepError`
S3Head = Callable[[str, float], dict[str, str | int]]

#: the reason a step has when one of its remote deps has no fingerprint now
UNREACHABLE = "remote dep unreachable"
TIMEOUT_VAR = "GITPIPE_HTTP_TIMEOUT"
DEFAULT_TIMEOUT = 10.0
#: urls asked at once
JOBS = 8


def timeout_from(environ: Mapping[str, str]) -> float:
    """``GITPIPE_HTTP_TIMEOUT`` in seconds (default 10)."""
    text = environ.get(TIMEOUT_VAR, "").strip()
    if not text:
        return DEFAULT_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise UsageError(f"{TIMEOUT_VAR} must be a positive number of seconds, not {text!r}")
    return value


def head_http(url: str, *, timeout: float, environ: Mapping[str, str]) -> dict[str, str | int]:
    """The fingerprint of an HTTP(S) resource from a HEAD request: its ETag, else its
    Last-Modified with its Content-Length.  Redirects are followed; credentials for
    the host come from the netrc file and are never sent on to another host."""
    import http.client  # here: `status` starts faster without them
    import urllib.error
    import urllib.request

    shown = redact(url)
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "gitpipe"})
    authorization = _netrc_authorization(url, environ)
    if authorization:
        request.add_unredirected_header("Authorization", authorization)

    class KeepHead(urllib.request.HTTPRedirectHandler):
        """Follow a redirect with HEAD again: urllib's own asks the new place with GET,
        which would download what gitpipe only fingerprints."""

        def redirect_request(
            self,
            req: urllib.request.Request,
            fp: Any,
            code: int,
            msg: str,
            headers: Any,
            newurl: str,
        ) -> urllib.request.Request | None:
            new = super().redirect_request(req, fp, code, msg, headers, newurl)
            if new is not None:
                new.method = req.get_method()
            return new

    try:
        opener = urllib.request.build_opener(KeepHead)
        with opener.open(request, timeout=timeout) as response:
            headers = response.headers
    except urllib.error.HTTPError as exc:
        exc.close()
        raise RemoteDepError(shown, f"HTTP {exc.code} {exc.reason}".strip()) from None
    except urllib.error.URLError as exc:
        raise RemoteDepError(shown, _cause(exc.reason, timeout)) from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise RemoteDepError(shown, _cause(exc, timeout)) from None
    etag = (headers.get("ETag") or "").strip()
    if etag:
        return {"etag": etag}
    modified = (headers.get("Last-Modified") or "").strip()
    length = (headers.get("Content-Length") or "").strip()
    if modified and length.isdigit():
        return {"last_modified": modified, "content_length": int(length)}
    raise RemoteDepError(
        shown,
        "the server sends neither an ETag nor a Last-Modified with a Content-Length, "
        "so gitpipe could not tell when it changes",
    )


def _cause(reason: object, timeout: float) -> str:
    """Why a request failed, in a phrase."""
    if isinstance(reason, TimeoutError):
        return f"no answer within {timeout:g} s (GITPIPE_HTTP_TIMEOUT)"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    text = str(reason).strip() or type(reason).__name__
    return " ".join(text.split())


def _netrc_authorization(url: str, environ: Mapping[str, str]) -> str:
    """``Basic ...`` for the url's host from the netrc file (``$NETRC``, else
    ``~/.netrc``); "" when it names none."""
    import base64
    import netrc

    host = urlsplit(url).hostname
    path = environ.get("NETRC") or os.path.expanduser("~/.netrc")
    if not host or not os.path.isfile(path):
        return ""
    try:
        found = netrc.netrc(path).authenticators(host)
    except (OSError, netrc.NetrcParseError) as exc:
        raise UsageError(f"cannot read the netrc file {path} ({exc.__class__.__name__})") from None
    if found is None:
        return ""
    login, _, password = found
    token = base64.b64encode(f"{login}:{password or ''}".encode()).decode("ascii")
    return f"Basic {token}"


class Fingerprints:
    """The fingerprints of one command's remote deps: each url asked once (what the
    server said, or why it could not be asked, is kept), many at once."""

    def __init__(self, *, environ: Mapping[str, str], s3_head: S3Head | None = None) -> None:
        self.environ = environ
        self._timeout: float | None = None  # read when a url is first asked
        self._s3_head = s3_head
        self._known: dict[str, dict[str, str | int] | RemoteDepError] = {}
        self._guard = threading.Lock()

    def prefetch(self, urls: Iterable[str]) -> None:
        """Ask each url not yet asked, at once."""
        with self._guard:
            wanted = [url for url in dict.fromkeys(urls) if url not in self._known]
        if not wanted:
            return
        if self._timeout is None:
            self._timeout = timeout_from(self.environ)
        if len(wanted) == 1:
            found = [self._ask(wanted[0])]
        else:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(JOBS, len(wanted))) as pool:
                found = list(pool.map(self._ask, wanted))
        with self._guard:
            for url, answer in zip(wanted, found, strict=True):
                self._known.setdefault(url, answer)

    def of(self, url: str) -> dict[str, str | int]:
        """The url's fingerprint; :class:`RemoteDepError` when it has none now."""
        self.prefetch([url])
        answer = self._known[url]
        if isinstance(answer, RemoteDepError):
            raise RemoteDepError(answer.url, answer.cause)
        return dict(answer)

    def failures(self, urls: Iterable[str]) -> list[RemoteDepError]:
        """Why each of ``urls`` that has no fingerprint now has none, in order."""
        urls = list(dict.fromkeys(urls))
        self.prefetch(urls)
        return [a for a in (self._known[url] for url in urls) if isinstance(a, RemoteDepError)]

    def _ask(self, url: str) -> dict[str, str | int] | RemoteDepError:
        timeout = self._timeout or DEFAULT_TIMEOUT
        try:
            if url.partition("://")[0].lower() == "s3":
                if self._s3_head is None:
                    raise RemoteDepError(redact(url), "this gitpipe cannot ask S3")
                return self._s3_head(url, timeout)
            return head_http(url, timeout=timeout, environ=self.environ)
        except RemoteDepError as exc:
            return exc
