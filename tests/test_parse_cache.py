"""The parsed pipeline is kept in `.gitpipe/parsed/pipeline.pickle` and used only while
every file it was read from keeps its stamp, for the same overrides."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from conftest import Workspace

from gitpipe.pipeline import spec

OUTER = """
[params]
word = "one"

[steps.inner]
pipeline = "sub/gitpipe.toml"

[steps.say]
cmd = "echo ${params.word} > said.txt"
outs = ["said.txt"]
"""

INNER = """
[steps.count]
cmd = "echo 1 > n.txt"
outs = ["n.txt"]
"""


def age(*paths: Path) -> None:
    """Move the files' mtimes out of the racy window, each to a distinct time."""
    for i, path in enumerate(paths):
        then = time.time() - 60 - i
        os.utime(path, (then, then))


def commands(workspace: Workspace) -> dict[str, str]:
    statuses = json.loads(workspace.ok("status", "--json").stdout)
    return {s["step"]: s for s in statuses}


def pickled(workspace: Workspace) -> Path:
    return workspace.root / ".gitpipe" / "parsed" / "pipeline.pickle"


def test_a_parsed_pipeline_is_kept_and_reused(workspace: Workspace) -> None:
    outer = workspace.pipeline(OUTER)
    inner = workspace.write("sub/gitpipe.toml", INNER)
    age(outer, inner)
    workspace.ok("repro")
    assert pickled(workspace).is_file()
    before = pickled(workspace).read_bytes()
    workspace.ok("status")
    assert pickled(workspace).read_bytes() == before  # answered from it, not rewritten
    cache = workspace.root / ".gitpipe" / "parsed"
    first = spec.load_cached(outer.resolve(), cache_dir=cache)[0]
    assert list(first.steps) == ["inner/count", "say"]


def test_the_parse_is_kept_before_the_run_and_stays_when_a_step_fails(
    workspace: Workspace,
) -> None:
    outer = workspace.pipeline(OUTER.replace("echo ${params.word} > said.txt", "exit 3"))
    inner = workspace.write("sub/gitpipe.toml", INNER)
    age(outer, inner)
    workspace.gitpipe("repro", "--dry-run")
    assert not pickled(workspace).exists()  # a dry run writes nothing
    failed = workspace.gitpipe("repro")
    assert failed.exit_code != 0
    assert pickled(workspace).is_file()  # kept once every check passed, before the run
    cache = workspace.root / ".gitpipe" / "parsed"
    assert list(spec.load_cached(outer.resolve(), cache_dir=cache)[0].steps) == [
        "inner/count",
        "say",
    ]


def test_an_edit_of_the_same_size_is_seen(workspace: Workspace) -> None:
    outer = workspace.pipeline(OUTER)
    inner = workspace.write("sub/gitpipe.toml", INNER)
    age(outer, inner)
    workspace.ok("repro")
    outer.write_text(OUTER.replace('"one"', '"two"'))  # same size
    age(outer)
    assert "params changed: word" in commands(workspace)["say"]["reasons"]


def test_an_edit_of_a_nested_file_is_seen(workspace: Workspace) -> None:
    outer = workspace.pipeline(OUTER)
    inner = workspace.write("sub/gitpipe.toml", INNER)
    age(outer, inner)
    workspace.ok("repro")
    assert commands(workspace)["inner/count"]["state"] == "up to date"
    inner.write_text(INNER.replace("echo 1", "echo 2"))
    age(inner)
    assert "command changed" in commands(workspace)["inner/count"]["reasons"]


def test_overrides_are_not_answered_from_the_plain_parse(workspace: Workspace) -> None:
    outer = workspace.pipeline(OUTER)
    inner = workspace.write("sub/gitpipe.toml", INNER)
    age(outer, inner)
    workspace.ok("repro")
    workspace.ok("repro", "-p", "word=three")
    assert (workspace.root / "said.txt").read_text() == "three\n"
    workspace.ok("repro")
    assert (workspace.root / "said.txt").read_text() == "one\n"


def test_a_damaged_cache_is_parsed_again(workspace: Workspace) -> None:
    outer = workspace.pipeline(OUTER)
    inner = workspace.write("sub/gitpipe.toml", INNER)
    age(outer, inner)
    workspace.ok("repro")
    pickled(workspace).write_bytes(b"not a pickle")
    assert commands(workspace)["say"]["state"] == "up to date"


def test_a_file_changed_within_the_racy_window_is_not_cached(workspace: Workspace) -> None:
    outer = workspace.pipeline(OUTER)
    inner = workspace.write("sub/gitpipe.toml", INNER)
    soon = time.time_ns() + 5 * 10**9  # as if written while repro reads them
    os.utime(inner, ns=(soon, soon))
    workspace.ok("repro")
    assert not pickled(workspace).exists()
    age(outer, inner)
    workspace.ok("repro")
    assert pickled(workspace).exists()
