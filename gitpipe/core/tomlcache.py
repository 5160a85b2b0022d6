"""Parsed TOML files kept beside gitpipe's local state, so unchanged files are not
parsed again.

Python's TOML parser is pure Python: a 500-step `gitpipe.lock` takes a tenth of a
second to parse, more than everything else a no-op `status` does.  This cache keeps
the parsed tables (as `marshal` data: plain dicts, lists, strings and numbers) keyed
by the file's stamp (gitpipe.core.stamps); like the stat cache, an entry whose stamp
was taken within the racy window of the file's mtime is not trusted.
Only gitpipe writes these cache files, in its own ignored `.gitpipe/` folder; a
damaged one is ignored.
"""

from __future__ import annotations

import contextlib
import marshal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from gitpipe.core import atomic
from gitpipe.core.stamps import racy, stamp_of

_VERSION = 2  # 2: keyed by the whole stamp (1: inode, mtime and size)


def _tomllib() -> ModuleType:
    """The TOML parser, imported when a file must be parsed: a command answered from
    the cache never needs it."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib


def __getattr__(name: str) -> Any:
    if name == "TOMLDecodeError":  # the parser's error; `except` looks it up only if needed
        return _tomllib().TOMLDecodeError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load(
    path: Path, cache_dir: Path | None, *, name: str = ""
) -> tuple[dict[str, Any], Callable[[], None]]:
    """Parse ``path`` (raising OSError, UnicodeDecodeError or TOMLDecodeError like
    ``tomllib``), answering from ``cache_dir`` when the file did not change.

    Returns the tables and a function that keeps them in the cache: call it once the
    caller has found them valid, so that nothing is written for a file it refuses.
    ``name`` names the cache entry (default: the file's name).
    """
    taken_ns = time.time_ns()
    st = path.stat()
    wanted = (_VERSION, stamp_of(st))
    if cache_dir is None:
        return _tomllib().loads(path.read_text(encoding="utf-8")), _nothing
    cached = cache_dir / ((name or path.name) + ".marshal")
    with contextlib.suppress(OSError, ValueError, EOFError, TypeError):
        saved, hashed_ns, data = marshal.loads(cached.read_bytes())
        if tuple(saved) == wanted and not racy(st.st_mtime_ns, hashed_ns):
            return data, _nothing
    data = _tomllib().loads(path.read_text(encoding="utf-8"))

    def keep() -> None:
        if not cache_dir.parent.is_dir():  # only where gitpipe keeps state already
            return
        with contextlib.suppress(OSError, ValueError):  # ValueError: what marshal cannot hold
            atomic.write_bytes(cached, marshal.dumps((wanted, taken_ns, data)), sync=False)

    return data, keep


def _nothing() -> None:
    return None


def loads(text: str) -> dict[str, Any]:
    return _tomllib().loads(text)
