"""Whether the console wants plain lines: read before typer is imported (the
fast paths in gitpipe/__main__.py) as well as by the command line."""

from __future__ import annotations

import os
import sys


def plain_output() -> bool:
    """Plain lines without control codes: in CI, or when stdout is not a terminal."""
    ci = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
    return ci or not sys.stdout.isatty() or os.environ.get("TERM") == "dumb"
