"""Run-time params (issue 6): `gitpipe repro -p NAME=VALUE` runs an experiment that is
cached and recorded but leaves gitpipe.lock alone unless --lock."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from typing import Any

import pytest
from conftest import Workspace, refused

PIPELINE = """
[params]
seed = 0
flag = false
name = "x"
[params.train]
lr = 0.01

[steps.train]
cmd = "echo \\"$GITPIPE_PARAMS\\" > model.txt"
params = ["train", "seed", "flag", "name"]
outs = ["model.txt"]

[steps.size]
cmd = "wc -c < model.txt > size.txt"
deps = ["model.txt"]
outs = ["size.txt"]
"""


def committed(workspace: Workspace) -> Workspace:
    """The pipeline run and committed with its lock."""
    workspace.write(".gitignore", "model.txt\nsize.txt\n")
    workspace.pipeline(PIPELINE)
    workspace.ok("repro")
    workspace.commit("pipeline and lock")
    return workspace


def model(workspace: Workspace) -> dict[str, Any]:
    return json.loads((workspace.root / "model.txt").read_text())


def overrides(workspace: Workspace) -> list[str | None]:
    """runs.overrides of every run, oldest first."""
    with closing(sqlite3.connect(workspace.root / ".gitpipe" / "lineage.db")) as db:
        return [row[0] for row in db.execute("SELECT overrides FROM runs ORDER BY rowid")]


def test_an_experiment_runs_with_the_params_given_and_leaves_the_lock_alone(workspace):
    committed(workspace)
    lock = (workspace.root / "gitpipe.lock").read_bytes()
    workspace.ok("repro", "-p", "train.lr=0.125", "-p", "seed=1")
    assert workspace.ran() == ["train", "size"]
    assert model(workspace) == {"flag": False, "name": "x", "seed": 1, "train": {"lr": 0.125}}
    assert (workspace.root / "gitpipe.lock").read_bytes() == lock
    assert overrides(workspace)[0] is None
    assert json.loads(overrides(workspace)[-1]) == {"seed": 1, "train.lr": 0.125}


def test_after_an_experiment_a_plain_repro_restores_the_committed_results_without_running(
    workspace,
):
    committed(workspace)
    lock = (workspace.root / "gitpipe.lock").read_bytes()
    original = {name: (workspace.root / name).read_bytes() for name in ("model.txt", "size.txt")}
    workspace.ok("repro", "-p", "train.lr=0.125", "-p", "seed=1")
    experiment = (workspace.root / "model.txt").read_bytes()
    assert experiment != original["model.txt"]

    workspace.ok("repro")
    assert workspace.states() == {"train": "cached", "size": "cached"}
    for name, data in original.items():
        assert (workspace.root / name).read_bytes() == data
    assert (workspace.root / "gitpipe.lock").read_bytes() == lock
    assert overrides(workspace)[-1] is None

    workspace.ok("repro", "-p", "train.lr=0.125", "-p", "seed=1")
    assert workspace.ran() == []
    assert workspace.states()["train"] == "cached"
    assert (workspace.root / "model.txt").read_bytes() == experiment
    assert (workspace.root / "gitpipe.lock").read_bytes() == lock


@pytest.mark.parametrize(
    ("given", "name", "value"),
    [
        ("train.lr=0.02", "train", {"lr": 0.02}),
        ("seed=1", "seed", 1),
        ("flag=true", "flag", True),
        ("name=rf", "name", "rf"),
        ('name="a b"', "name", "a b"),
        ("seed=[1, 2]", "seed", [1, 2]),
    ],
)
def test_a_value_given_on_the_command_line_is_read_as_toml(workspace, given, name, value):
    committed(workspace)
    workspace.ok("repro", "-p", given)
    assert model(workspace)[name] == value


def test_lock_writes_the_experiments_params_and_results_to_the_lock(workspace):
    committed(workspace)
    lock = (workspace.root / "gitpipe.lock").read_text()
    workspace.ok("repro", "--param", "train.lr=0.02", "--lock")
    written = (workspace.root / "gitpipe.lock").read_text()
    assert written != lock
    assert "lr = 0.02" in written
    assert "lr = 0.01" not in written
    assert model(workspace)["train"] == {"lr": 0.02}


def experiment_refused(workspace: Workspace, *args: str, says: tuple[str, ...]) -> None:
    committed(workspace)
    workspace.write("model.txt", "edited by hand\n")  # a run would replace it
    runs = overrides(workspace)
    refused(workspace, "repro", *args, says=says)
    assert overrides(workspace) == runs


@pytest.mark.parametrize(
    ("args", "says"),
    [
        pytest.param(("-p", "nope=1"), ("'nope'", "no param"), id="unknown-param"),
        pytest.param(("-p", "train.nope=1"), ("'train.nope'",), id="unknown-nested-param"),
        pytest.param(("-p", "train=1"), ("'train' is a table",), id="a-table"),
        pytest.param(("-p", "x"), ("NAME=VALUE",), id="no-equals"),
        pytest.param(("-p", "=1"), ("NAME=VALUE",), id="no-name"),
        pytest.param(("-p", "seed=[1,2"), ("not a valid TOML value",), id="bad-toml"),
        pytest.param(("--lock",), ("--lock goes with -p",), id="lock-without-p"),
    ],
)
def test_a_bad_param_is_refused_and_nothing_is_written(workspace, args, says):
    experiment_refused(workspace, *args, says=says)
