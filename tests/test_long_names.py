"""Outputs whose names are as long as a name may be (255 bytes, UTF-8 included) are
restored, checked out and replaced like any other: the temporary files made beside
them repeat only the start of the name.  Real Git repositories and the real CLI."""

from __future__ import annotations

import os

import pytest
from conftest import Workspace

from gitpipe.core import atomic

#: 250 bytes: an ASCII stem and two-byte characters, so that a cut could split one
LONG = "r" * 93 + "é" * 76 + ".txt"
FOLDER = "d" * 95 + "ö" * 78


def pipeline(link: str) -> str:
    return f"""
[pipeline]
link = "{link}"

[steps.make]
cmd = ["printf 'one\\n' > {LONG}", "mkdir -p {FOLDER}", "printf 'two\\n' > {FOLDER}/{LONG}"]
outs = ["{LONG}", "{FOLDER}/"]
"""


def leftovers(ws: Workspace) -> list[str]:
    return [
        f"{folder}/{name}"
        for folder, dirs, files in os.walk(ws.root)
        for name in dirs + files
        if name.endswith(".tmp")
    ]


@pytest.mark.parametrize("link", ["copy", "hardlink", "symlink"])
def test_outputs_with_the_longest_names_are_restored_and_checked_out(workspace, link):
    assert len(os.fsencode(LONG)) == 249 and len(os.fsencode(FOLDER)) == 251
    workspace.write(".gitignore", f"/{LONG}\n/{FOLDER}/\n")
    workspace.pipeline(pipeline(link))
    workspace.ok("repro")
    workspace.commit("made")
    (workspace.root / LONG).unlink()
    inner = workspace.root / FOLDER / LONG
    inner.unlink()
    out = workspace.ok("repro").stdout
    assert "1 cached" in out, out
    assert (workspace.root / LONG).read_text() == "one\n"
    assert inner.read_text() == "two\n"
    (workspace.root / LONG).unlink()
    workspace.ok("checkout")
    assert (workspace.root / LONG).read_text() == "one\n"
    assert leftovers(workspace) == []


def test_the_stem_of_a_temporary_name_keeps_whole_characters():
    assert atomic.temp_stem("short.txt") == "short.txt"
    stem = atomic.temp_stem(LONG)
    assert len(os.fsencode(stem)) <= atomic.STEM_BYTES
    assert LONG.startswith(stem) and stem.endswith("é")
    assert len(os.fsencode(f".{stem}.{2**22}-{10**9}.tmp")) < 255
