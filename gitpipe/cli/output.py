"""How commands print: plain lines or a live view, colour, JSON, sizes for people.

The Markdown that commands print (`diff --md`, `repro --summary-md`) is rendered by
the layer that owns the data (`gitpipe.history.diff`, `gitpipe.run.summary`); the
command only chooses where it goes."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

import typer

from gitpipe.core.console import plain_output


def colour() -> bool:
    """Colour only on a terminal that wants it."""
    return not plain_output() and "NO_COLOR" not in os.environ


def echo_json(value: Any) -> None:
    """Print a command's answer for machines (`--json`): indented JSON."""
    typer.echo(json.dumps(value, indent=2))


def size(n: int) -> str:
    """A number of bytes for people: 512 B, 1.5 kB, 2.0 MB, 3.1 GB."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover


def table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    """Lines of columns padded to their widest cell, two spaces apart."""
    every = [header, *rows]
    widths = [max(len(row[i]) for row in every) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in every
    ]
