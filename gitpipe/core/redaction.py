"""How a url is shown: :func:`redact` hides what in it may be a secret.

A remote's url and a step's remote dependency are named by every message, report,
progress line and lineage row through this one function, so that a secret a user
put in a url is never echoed.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit


def redact(url: str) -> str:
    """``url`` fit to show: a user name, password or query value in it (which may be
    a secret) is replaced by ``***``."""
    parts = urlsplit(url)
    if not parts.scheme or not (parts.username or parts.password or parts.query):
        return url
    netloc = parts.netloc.rpartition("@")[2]
    if parts.username or parts.password:
        netloc = "***@" + netloc
    query = "&".join(
        f"{item.partition('=')[0]}=***" if "=" in item else "***"
        for item in parts.query.split("&")
        if item
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def redact_argv(argv: Sequence[str]) -> list[str]:
    """``argv`` fit to record: each url in it (``URL``, or ``--option=URL``) through
    :func:`redact`."""
    shown = []
    for arg in argv:
        head, eq, tail = arg.partition("=") if arg.startswith("-") else ("", "", arg)
        shown.append(head + eq + redact(tail) if "://" in tail else arg)
    return shown
