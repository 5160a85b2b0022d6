"""Parsed TOML files kept beside gitpipe's local state, so unchanged files are not
parsed again.

Python's TOML parser is pure Python: a 500-step `gitpipe.lock` takes a tenth of a
second to parse, more than everything else a no-op `status` does.  This cache keeps
the parsed tables (as `marshal` data: plain dicts, lists, strings and numbers) keyed
by the file's stamp (gitpipe.core.stamps); like the stat cache, an entry whose stamp
was taken within the racy window of the file's mtime is not trusted.  Each entry
also holds the blake3 digest of the bytes it was parsed from: when the stamp does not
answer (a racy entry, a file rewritten with the same bytes), the file is read and
digested, and the same digest is the same tables, with no parse.  That is how a
file gitpipe has just written itself (`gitpipe.lock`, see :func:`prime`) is read
without a parse by the next command, however soon it comes.
Only gitpipe writes these cache files, in its own ignored `.gitpipe/` folder; a
damaged one is ignored.
"""

from __future__ import annotations

import contextlib
import marshal
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from gitpipe.core import atomic
from gitpipe.core.stamps import racy, stamp_of

_VERSION = 3  # 3: with the content's digest; 2: keyed by the whole stamp (1: inode, mtime and size)


def _tomllib() -> ModuleType:
    """The TOML parser, imported when a file must be parsed: a command answered from
    the cache never needs it.  ``tomli`` where it is installed: its wheels are
    compiled (mypyc), 1.6 times as fast as the standard library's pure-Python copy
    of it on a 100,000-step pipeline file, which a `status` of a pipeline never run
    must parse (docs/performance.md); else ``tomllib``, the same parser."""
    try:
        import tomli as tomllib
    except ImportError:  # pragma: no cover - tomli is a dependency; a broken install
        import tomllib
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
    held: str | None = None  # the digest of the bytes the cached tables came from
    with contextlib.suppress(OSError, ValueError, EOFError, TypeError):
        saved, hashed_ns, held, data = marshal.loads(cached.read_bytes())
        if tuple(saved) == wanted and not racy(st.st_mtime_ns, hashed_ns):
            return data, _nothing
    raw = path.read_bytes()
    digest = _digest(raw)
    if held is not None and held == digest:  # the same bytes: the same tables
        return data, _keeper(cached, wanted, taken_ns, digest, data)
    # universal newlines, as `read_text` reads: a lone CR ends a line too
    data = _tomllib().loads(raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n"))
    return data, _keeper(cached, wanted, taken_ns, digest, data)


def prime(path: Path, cache_dir: Path, raw: bytes, data: dict[str, Any]) -> None:
    """Note that ``path``, which gitpipe has just written as ``raw`` (the UTF-8 of
    ``tomli_w.dumps(data)``), parses to ``data``: the next :func:`load` reads and
    digests the file and, finding these bytes, does not parse it.  ``data`` is kept
    as the parser would give it (tables after the other values of their table, as
    tomli_w writes them; tuples as lists); data the parser might give otherwise (a
    date, an array of tables) is not kept.  A cache only: failures are ignored."""
    with contextlib.suppress(OSError, _Unsuitable):
        parsed = _as_parsed(data)
        taken_ns = time.time_ns()
        wanted = (_VERSION, stamp_of(path.stat()))
        cached = cache_dir / (path.name + ".marshal")
        _keeper(cached, wanted, taken_ns, _digest(raw), parsed)()


class _Unsuitable(Exception):
    """A value whose parse might differ from what was written."""


def _as_parsed(value: Any) -> Any:
    """``value`` as tomllib would read it back from tomli_w's text: ``value`` itself
    where it already is (a 100,000-step lock's tables are a few hundred MB: a copy
    of them was the peak of a `repro`'s memory)."""
    if isinstance(value, dict):
        items = [(k, _as_parsed(v)) for k, v in value.items()]
        tables = [isinstance(v, dict) for _, v in items]
        if (
            type(value) is dict
            and all(v is value[k] for k, v in items)
            and tables == sorted(tables)  # no table before another value
        ):
            return value
        return {
            **{k: v for k, v in items if not isinstance(v, dict)},
            **{k: v for k, v in items if isinstance(v, dict)},
        }
    if isinstance(value, (list, tuple)):
        items = [_as_parsed(v) for v in value]
        if any(isinstance(v, dict) for v in items):
            raise _Unsuitable  # an array of tables, or inline ones: tomli_w decides
        if type(value) is list and all(v is w for v, w in zip(items, value, strict=True)):
            return value
        return items
    if isinstance(value, (str, int, float)):  # bool is an int
        return value
    raise _Unsuitable


def _digest(raw: bytes) -> str:
    import blake3  # only when a stamp did not answer: not on a no-op command's path

    return blake3.blake3(raw).hexdigest()


def _keeper(
    cached: Path, wanted: tuple[int, Any], taken_ns: int, digest: str, data: dict[str, Any]
) -> Callable[[], None]:
    def keep() -> None:
        if not cached.parent.parent.is_dir():  # only where gitpipe keeps state already
            return
        with contextlib.suppress(OSError, ValueError):  # ValueError: what marshal cannot hold
            entry = marshal.dumps((wanted, taken_ns, digest, data))
            atomic.write_bytes(cached, entry, sync=False)

    return keep


def _nothing() -> None:
    return None


def loads(text: str) -> dict[str, Any]:
    return _tomllib().loads(text)
