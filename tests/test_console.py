"""The console helpers messages share: a long list named a few at a time, and a
line written as typer writes it (for the fast paths, which import no typer)."""

from __future__ import annotations

import io
import os
import sys

import pytest
import typer

from gitpipe.core.console import echo, first_of

NAMES = ["a", "b", "c", "d", "e"]


@pytest.mark.parametrize(
    ("items", "limit", "options", "expected"),
    [
        ([], 3, {}, ""),
        (["a"], 3, {}, "a"),
        (NAMES[:3], 3, {}, "a, b, c"),
        (NAMES[:4], 3, {}, "a, b, c and 1 more"),
        (NAMES, 3, {}, "a, b, c and 2 more"),
        (NAMES, 5, {}, "a, b, c, d, e"),
        (NAMES, 2, {"sep": "; ", "more": "; and {} more"}, "a; b; and 3 more"),
        (NAMES[:2], 2, {"sep": "; ", "more": "; and {} more"}, "a; b"),
        (NAMES, 3, {"more": " (and {} more)"}, "a, b, c (and 2 more)"),
        (tuple(NAMES), 4, {}, "a, b, c, d and 1 more"),
        (["{x}", "{}"], 1, {}, "{x} and 1 more"),  # only ``more`` is a format
    ],
)
def test_first_of_names_the_first_few_then_how_many_more(
    items: list[str], limit: int, options: dict[str, str], expected: str
) -> None:
    assert first_of(items, limit, **options) == expected


def test_echo_writes_a_line_as_typer_does_without_control_codes_in_a_pipe(
    capsys: pytest.CaptureFixture[str],
) -> None:
    echo("\033[1mbold\033[0m words")
    echo("to stderr", err=True)
    typer.echo("\033[1mbold\033[0m words")
    typer.echo("to stderr", err=True)
    out, err = capsys.readouterr()
    assert out == "bold words\n" * 2
    assert err == "to stderr\n" * 2


def test_echo_keeps_control_codes_for_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    main, other = os.openpty()
    with open(other, "w") as terminal, open(main, "rb", buffering=0) as screen:
        monkeypatch.setattr(sys, "stdout", terminal)
        echo("\033[1mbold\033[0m")
        assert screen.read(64).replace(b"\r\n", b"\n") == b"\033[1mbold\033[0m\n"


@pytest.mark.parametrize("err", [False, True], ids=["stdout", "stderr"])
def test_echo_writes_nothing_where_no_stream_is_attached_as_typer(
    monkeypatch: pytest.MonkeyPatch, err: bool
) -> None:
    """A closed descriptor makes Python's stream None: typer writes nothing there."""
    monkeypatch.setattr(sys, "stderr" if err else "stdout", None)
    typer.echo("words", err=err)
    echo("words", err=err)


@pytest.mark.parametrize("encoding", ["ascii", "latin-1", "utf-8"])
@pytest.mark.parametrize("err", [False, True], ids=["stdout", "stderr"])
def test_echo_writes_the_bytes_typer_writes_whatever_the_stream_s_encoding(
    monkeypatch: pytest.MonkeyPatch, encoding: str, err: bool
) -> None:
    """typer (click) writes UTF-8 to a stream set up for ASCII (PYTHONIOENCODING=ascii,
    a C locale without UTF-8 mode), and to any other through the stream itself."""
    text = "café \ufffd \033[1mbold\033[0m"
    written = []
    for writer in (typer.echo, echo):
        buffer = io.BytesIO()
        stream = io.TextIOWrapper(buffer, encoding=encoding, errors="backslashreplace")
        monkeypatch.setattr(sys, "stderr" if err else "stdout", stream)
        writer(text, err=err)
        stream.flush()
        written.append(buffer.getvalue())
    assert written[0] == written[1]
