"""What the console is given: whether it wants plain lines, sizes for people, short
lists ("a, b and 3 more") and lines written as typer writes them; read before typer
is imported (the fast paths in gitpipe/__main__.py) as well as by the command line."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence


def plain_output() -> bool:
    """Plain lines without control codes: in CI, or when stdout is not a terminal."""
    ci = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
    return ci or not sys.stdout.isatty() or os.environ.get("TERM") == "dumb"


def size(n: int) -> str:
    """A number of bytes for people: 512 B, 1.5 kB, 2.0 MB, 3.1 GB."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover


#: the control codes typer takes out of what it writes to a file or a pipe
_ANSI = re.compile(r"\033\[[;?0-9]*[a-zA-Z]")


def echo(text: str, *, err: bool = False) -> None:
    """``text`` and a newline on stdout (``err``: stderr), flushed, as ``typer.echo``
    writes a line: its control codes taken out unless the stream is a terminal, and
    nothing at all where no stream is attached (Python's is None: the descriptor was
    closed).  For the fast paths, which import no typer."""
    stream = sys.stderr if err else sys.stdout
    if stream is None:
        return
    try:
        terminal = stream.isatty()
    except (OSError, ValueError):
        terminal = False
    line = f"{text if terminal else _ANSI.sub('', text)}\n"
    buffer = getattr(stream, "buffer", None)
    if buffer is not None and _ascii(getattr(stream, "encoding", None) or "ascii"):
        # click takes a stream set up for ASCII (PYTHONIOENCODING=ascii, a C locale
        # without UTF-8 mode) for a misconfigured one, and writes UTF-8 under it
        stream.flush()
        buffer.write(line.encode("utf-8", "replace"))
        buffer.flush()
        return
    stream.write(line)
    stream.flush()


def _ascii(encoding: str) -> bool:
    """Whether ``encoding`` is ASCII by any of its names (click's is_ascii_encoding)."""
    import codecs

    try:
        return codecs.lookup(encoding).name == "ascii"
    except LookupError:
        return False


def first_of(
    items: Sequence[str], limit: int, *, sep: str = ", ", more: str = " and {} more"
) -> str:
    """The first ``limit`` items joined by ``sep``, then ``more`` (a format with one
    ``{}`` for how many were left out) when there were more: ``a, b, c and 2 more``,
    ``a; b; and 2 more`` (``more="; and {} more"``), ``a, b (and 2 more)``."""
    shown = sep.join(items[:limit])
    left = len(items) - limit
    return shown + more.format(left) if left > 0 else shown
