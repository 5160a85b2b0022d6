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

from gitpipe.core.console import plain_output, size  # noqa: F401 (the views use size)


def colour() -> bool:
    """Colour only on a terminal that wants it."""
    return not plain_output() and "NO_COLOR" not in os.environ


def echo_json(value: Any) -> None:
    """Print a command's answer for machines (`--json`): indented JSON."""
    typer.echo(json.dumps(value, indent=2))


def table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    """Lines of columns padded to their widest cell, two spaces apart."""
    every = [header, *rows]
    widths = [max(len(row[i]) for row in every) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in every
    ]
