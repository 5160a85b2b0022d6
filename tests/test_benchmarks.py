"""The benchmark suite runs end to end: `benchmarks/run.py --quick` as CI's smoke test.

No timing is asserted: only that every issue-8 row is there with positive numbers, and
that without the peers their cells say so. Deselect with `-m "not benchmark"`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.benchmark

ROOT = Path(__file__).resolve().parent.parent
#: issue 8's benchmarks; the older ones (parallel, overhead, ...) are run by hand
COMPARISONS = "steps,edit,hashing,restore,startup"


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("bench") / "out.json"
    env = {**os.environ, "GITPIPE_PEERS_BIN": "/nonexistent"}
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--no-peers",
            "--only",
            COMPARISONS,
            "--json",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(out.read_text())


def test_quick_suite_measures_every_row_of_the_targets(results: dict) -> None:
    keys = {row["key"] for row in results["rows"]}
    expected = {
        *(f"{kind}/chain/{n}" for kind in ("repro", "status", "noop") for n in (10, 100, 500)),
        *(f"{kind}/fanout/{n}" for kind in ("repro", "status", "noop") for n in (10, 100)),
        "edit/chain/10",
        "digest/big",
        "small-files/1000",
        "touch-first/big",
        "touch-second/big",
        "restore/big",
        "restore-hardlink/big",
        "help",
    }
    assert expected <= keys
    for row in results["rows"]:
        assert row["median"] > 0, row
        assert row["low"] <= row["median"] <= row["high"], row


def test_quick_suite_restores_the_edited_chain_without_running_anything(
    results: dict,
) -> None:
    (edit,) = [row for row in results["rows"] if row["key"] == "edit/chain/10"]
    assert edit["extra"]["ran"] == 0
    assert edit["extra"]["cached"] == edit["extra"]["stale"] == 6


def test_the_machine_is_described_with_its_yardsticks(results: dict) -> None:
    machine = results["machine"]
    start = machine["python start (`python -c pass`, median of 15)"]
    write = machine["a 4 KiB file written and renamed (1,000, median of 3 rounds)"]
    assert start.endswith(" ms") and float(start.removesuffix(" ms")) > 0
    assert write.endswith(" µs") and float(write.removesuffix(" µs")) > 0


def test_without_peers_their_cells_say_not_installed(results: dict) -> None:
    assert set(results["peers"]) == {"DVC", "Snakemake", "make"}
    assert set(results["peers"].values()) == {"not installed"}
    status = next(row for row in results["rows"] if row["key"] == "status/chain/500")
    for peer in ("DVC", "Snakemake", "make"):
        assert status["peers"][peer]["error"] == "not installed"
        assert status["peers"][peer]["median"] is None
    assert status["target"]  # the 500-step chain is held to its target
