"""Params and metrics as flat values: one `flatten`, one metric delta for the run
summary and `gitpipe diff`."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from gitpipe.core.hashing import Digest
from gitpipe.history import diff as diffs
from gitpipe.pipeline.values import flatten, metric_delta
from gitpipe.run.summary import metric_changes
from gitpipe.store.lockfile import Lock, LockEntry

PAIRS: list[tuple[Any, Any]] = [
    (1, 3),
    (3, 1),
    (0.5, 1),
    (1, 0.25),
    (10**20, 10**20 + 1),
    (10**400, 1),
    (None, 1),
    (1, None),
    ("a", 1),
    (True, 2),
    (math.inf, 1),
    (1, -math.inf),
    (math.nan, 1),
]


def test_flatten_gives_dotted_keys_and_keeps_empty_tables():
    assert flatten({"train": {"lr": 1, "opt": {"name": "adam"}}, "seed": 0, "none": {}}) == {
        "train.lr": 1,
        "train.opt.name": "adam",
        "seed": 0,
        "none": {},
    }


def test_a_delta_needs_two_finite_numbers():
    assert metric_delta(1, 3) == 2 and isinstance(metric_delta(1, 3), int)
    assert metric_delta(0.5, 1) == 0.5
    assert metric_delta(10**20, 10**20 + 1) == 1  # integers keep every digit
    assert metric_delta(10**400, 1) == 1 - 10**400  # no float can hold them
    for old, new in [(None, 1), ("a", 1), (True, 2), (1, False)]:
        assert metric_delta(old, new) is None
    for old, new in [(math.inf, 1), (1, -math.inf), (math.nan, 1), (math.inf, math.inf)]:
        assert metric_delta(old, new) is None


def _entry(metrics: dict[str, Any]) -> LockEntry:
    return LockEntry(Digest("0" * 64), (), ".", {}, {}, {}, {}, {}, metrics=metrics)


@pytest.mark.parametrize(("old", "new"), PAIRS)
def test_the_run_summary_and_diff_give_the_same_delta(old, new):
    before = {"m.json": {} if old is None else {"x": old}}
    after = {"m.json": {} if new is None else {"x": new}}
    (row,) = metric_changes({"s": before}, {"s": after})
    step = diffs.compare_steps(
        "s",
        None,
        None,
        old_lock=Lock(steps={"s": _entry(before)}),
        new_lock=Lock(steps={"s": _entry(after)}),
    )
    (change,) = step.metrics
    assert row["delta"] == change.delta == metric_delta(old, new)
    assert type(row["delta"]) is type(change.delta)


def test_an_infinite_metric_has_no_delta_in_the_summary_nor_in_diff(workspace, tmp_path):
    ws = workspace
    ws.write(
        "src/loss.py", 'open("m.json", "w").write(\'{"loss": %s}\' % open("loss.txt").read())\n'
    )
    ws.write(".gitignore", "m.json\n")
    ws.pipeline(
        '[steps.fit]\ncmd = "python3 src/loss.py"\ndeps = ["loss.txt"]\nmetrics = ["m.json"]\n'
    )
    ws.write("loss.txt", "Infinity")
    ws.ok("repro")
    ws.commit("infinite loss")
    ws.write("loss.txt", "0.5")
    summary, page = tmp_path / "summary.json", tmp_path / "summary.md"
    ws.ok("repro", "--summary-json", str(summary), "--summary-md", str(page))
    (metric,) = json.loads(summary.read_text())["metrics"]
    assert (metric["before"], metric["after"], metric["delta"]) == (math.inf, 0.5, None)
    assert "| fit | `m.json` loss | inf | 0.5 |  |" in page.read_text()
    (step,) = json.loads(ws.ok("diff", "HEAD", "--json").stdout)["steps"]
    assert [(m["key"], m["old"], m["new"], m["delta"]) for m in step["metrics"]] == [
        ("loss", math.inf, 0.5, None)
    ]
