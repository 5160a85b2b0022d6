"""Matrix steps (issue 6): one step written, one step run per combination of values."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing

import pytest
from conftest import Workspace, dag, good_run, lock_steps, refused

TRAIN = '''
[params.models.rf]
trees = 10
[params.models.gb]
trees = 20

[steps.train]
matrix = { model = ["rf", "gb"], lr = [0.1, 0.01] }
cmd = """mkdir -p models && echo ${matrix.model} ${matrix.lr} $MODEL \\
  "$GITPIPE_PARAMS" > models/${matrix.model}-${matrix.lr}.txt"""
params = ["models.${matrix.model}"]
env = { MODEL = "env-${matrix.model}" }
outs = ["models/${matrix.model}-${matrix.lr}.txt"]

[steps.compare]
cmd = "cat models/*.txt > compare.txt"
deps = ["models/"]
outs = ["compare.txt"]

[steps.report]
cmd = "echo report > report.txt"
after = ["train"]
outs = ["report.txt"]
'''

EXPANDED = ["train@rf-0.1", "train@rf-0.01", "train@gb-0.1", "train@gb-0.01"]


def test_a_matrix_expands_to_one_step_per_combination_first_axis_slowest(workspace):
    workspace.pipeline(TRAIN)
    assert list(dag(workspace)) == [*EXPANDED, "compare", "report"]

    workspace.ok("repro")
    assert [step for step, _ in workspace.last_run()][:4] == EXPANDED
    assert sorted(p.name for p in (workspace.root / "models").iterdir()) == [
        "gb-0.01.txt",
        "gb-0.1.txt",
        "rf-0.01.txt",
        "rf-0.1.txt",
    ]
    assert set(EXPANDED) <= set(lock_steps(workspace))
    assert "train" not in lock_steps(workspace)


def test_matrix_values_reach_the_command_outs_env_and_params_of_each_expansion(workspace):
    workspace.pipeline(TRAIN)
    workspace.ok("repro")
    words = (workspace.root / "models" / "gb-0.01.txt").read_text().split(" ", 3)
    assert words[:3] == ["gb", "0.01", "env-gb"]
    assert json.loads(words[3]) == {
        "matrix": {"model": "gb", "lr": 0.01},
        "models": {"gb": {"trees": 20}},
    }
    rf = json.loads((workspace.root / "models" / "rf-0.1.txt").read_text().split(" ", 3)[3])
    assert rf == {"matrix": {"model": "rf", "lr": 0.1}, "models": {"rf": {"trees": 10}}}


def test_each_expansion_has_its_own_key_even_when_its_command_ignores_the_values(workspace):
    workspace.pipeline(
        """
        [steps.same]
        matrix = { x = [1, 2] }
        cmd = "echo same > same-${matrix.x}.txt"
        outs = ["same-${matrix.x}.txt"]

        [steps.blind]
        matrix = { x = [1, 2] }
        cmd = "echo blind"
        """
    )
    workspace.ok("repro")
    steps = lock_steps(workspace)
    assert steps["blind@1"]["key"] != steps["blind@2"]["key"]
    assert steps["blind@1"]["params"] == {"matrix.x": 1}
    assert steps["same@1"]["key"] != steps["same@2"]["key"]
    assert dict(workspace.last_run()) == {
        "same@1": "ran",
        "same@2": "ran",
        "blind@1": "ran",
        "blind@2": "ran",
    }
    with closing(sqlite3.connect(workspace.root / ".gitpipe" / "lineage.db")) as db:
        keys = dict(db.execute("SELECT step, key FROM executions WHERE step LIKE 'blind@%'"))
    assert keys == {"blind@1": steps["blind@1"]["key"], "blind@2": steps["blind@2"]["key"]}


def test_steps_after_the_matrix_step_or_reading_its_folder_wait_for_every_expansion(workspace):
    workspace.pipeline(TRAIN)
    parents = dag(workspace)
    assert sorted(parents["compare"]) == sorted(EXPANDED)
    assert sorted(parents["report"]) == sorted(EXPANDED)
    workspace.ok("repro")
    order = [step for step, _ in workspace.last_run()]
    assert max(order.index(s) for s in EXPANDED) < order.index("compare")
    assert max(order.index(s) for s in EXPANDED) < order.index("report")
    assert (workspace.root / "compare.txt").read_text().count("\n") == 4


def test_naming_the_matrix_step_selects_all_its_expansions(workspace):
    workspace.pipeline(TRAIN)
    workspace.ok("repro", "train")
    assert workspace.ran() == EXPANDED
    assert not (workspace.root / "compare.txt").exists()


def test_adding_a_value_runs_only_the_new_combinations_and_what_reads_them(workspace):
    workspace.pipeline(TRAIN)
    workspace.ok("repro")
    workspace.pipeline(
        TRAIN.replace('model = ["rf", "gb"]', 'model = ["rf", "gb", "svm"]').replace(
            "[params.models.gb]", "[params.models.svm]\ntrees = 1\n[params.models.gb]"
        )
    )
    workspace.ok("repro")
    states = workspace.states()
    assert workspace.ran() == ["train@svm-0.1", "train@svm-0.01", "compare"]
    assert {states[s] for s in EXPANDED} == {"up to date"}
    assert states["report"] == "up to date"
    assert "svm 0.01" in (workspace.root / "compare.txt").read_text()


def labels(workspace: Workspace, values: str) -> list[str]:
    workspace.pipeline(
        f"""
        [steps.t]
        matrix = {{ v = {values} }}
        cmd = "true"
        """
    )
    return list(dag(workspace))


def test_a_table_with_a_name_is_labelled_by_it_other_tables_and_lists_by_a_stable_digest(
    workspace,
):
    assert labels(
        workspace, '[{ name = "deep", depth = 9 }, { depth = 3, leaves = 8 }, [1, 2]]'
    ) == [
        "t@deep",
        "t@hef24dfb1",
        "t@hde3e56c7",
    ]


def test_characters_outside_the_safe_set_become_underscores(workspace):
    assert labels(workspace, '["a b/c", "x:y", "ok_1.5"]') == ["t@a_b_c", "t@x_y", "t@ok_1.5"]


def test_a_dash_is_kept_in_a_label(workspace):
    assert labels(workspace, '["a-b", -1]') == ["t@a-b", "t@-1"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        pytest.param(
            'matrix = { model = ["a b", "a/b"] }',
            ("steps.train.matrix.model[1]", "'a_b'"),
            id="two-values-one-label",
        ),
        pytest.param("matrix = {}", ("steps.train.matrix", "at least one list"), id="empty"),
        pytest.param(
            'matrix = { model = "rf" }',
            ("steps.train.matrix.model", "non-empty list"),
            id="axis-not-a-list",
        ),
        pytest.param(
            "matrix = { model = [] }",
            ("steps.train.matrix.model", "non-empty list"),
            id="axis-empty",
        ),
        pytest.param(
            'matrix = { "bad-name" = [1] }',
            ("steps.train.matrix.bad-name", "letters, digits and '_'"),
            id="bad-axis-name",
        ),
        pytest.param(
            'matrix = { model = ["rf"] }\nenv = { X = "${matrix.nope}" }',
            ("steps.train.env.X", "nope"),
            id="unknown-matrix-value",
        ),
    ],
)
def test_a_bad_matrix_is_refused_before_anything_runs(workspace, body, says):
    good_run(workspace)
    workspace.pipeline(
        f"""
        [steps.ok]
        cmd = "echo ok > ok.txt"
        outs = ["ok.txt"]

        [steps.train]
        cmd = "echo train"
        {body}
        """
    )
    refused(workspace, "repro", says=("gitpipe.toml", *says))


def test_a_param_named_matrix_is_refused(workspace):
    good_run(workspace)
    workspace.pipeline(
        """
        [params]
        matrix = 1

        [steps.train]
        matrix = { x = [1] }
        cmd = "echo ${matrix.x}"
        """
    )
    refused(workspace, "repro", says=("params.matrix", "clashes"))


def test_a_matrix_reference_in_a_step_without_a_matrix_is_refused(workspace):
    good_run(workspace)
    workspace.pipeline(
        """
        [steps.plain]
        cmd = "echo ${matrix.x} > p.txt"
        outs = ["p.txt"]
        """
    )
    refused(workspace, "repro", says=("steps.plain.cmd", "unknown reference ${matrix.x}"))


def test_an_expanded_name_that_is_another_steps_name_is_refused(workspace):
    good_run(workspace)
    workspace.pipeline(
        """
        [steps."train@rf"]
        cmd = "echo other"

        [steps.train]
        matrix = { model = ["rf", "gb"] }
        cmd = "echo ${matrix.model}"
        """
    )
    refused(workspace, "repro", says=("steps.train", "'train@rf'", "also the name of another"))
