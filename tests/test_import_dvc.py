"""`gitpipe import dvc` (issue #19, point 4): a DVC project's dvc.yaml written as
gitpipe.toml, so that its scripts run unchanged.

The projects below are written for these tests, shaped like the DVC projects one
meets: the get-started layout (prepare, featurize, train, evaluate; scripts in src/
reading params.yaml themselves), foreach over datasets, a matrix sweep, `vars`, a
monorepo with a pipeline whose stages run from the repository's root (`wdir: ../..`)
and one that stays in its folder.  Each is imported through the real CLI in a real
Git repository, and run where it runs offline.

Running a pipeline that reads params from params.yaml needs `[pipeline] params_files`
(issue #19 point 1, another branch): those tests run once gitpipe knows that field.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import Workspace, dag, refused, snapshot
from jsonschema import Draft202012Validator

from gitpipe.core import tomlcache
from gitpipe.pipeline import parser, spec

SCHEMA = json.loads(spec.schema_text())
#: whether gitpipe reads params files yet (issue #19 point 1)
PARAMS_FILES = "params_files" in parser.PIPELINE_FIELDS
needs_params_files = pytest.mark.skipif(
    not PARAMS_FILES, reason="needs [pipeline] params_files (issue #19 point 1)"
)


@pytest.fixture(autouse=True)
def _python_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """DVC's commands say `python`: this interpreter, as with an active venv."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")


def project(workspace: Workspace, files: dict[str, str]) -> None:
    for path, text in files.items():
        workspace.write(path, text)


def imported(workspace: Workspace, *args: str) -> tuple[str, list[str]]:
    """Run `gitpipe import dvc ARGS`: the gitpipe.toml written, and the warnings."""
    result = workspace.ok("import", "dvc", *args)
    warnings = [line for line in result.stderr.splitlines() if line]
    assert all(line.startswith("gitpipe: warning: ") for line in warnings), warnings
    return (workspace.root / "gitpipe.toml").read_text(), warnings


def valid(text: str, folder: Path) -> None:
    """The schema and gitpipe's parser take the pipeline ``text``."""
    errors = [e.message for e in Draft202012Validator(SCHEMA).iter_errors(tomlcache.loads(text))]
    assert errors == []
    spec.parse(text, file=folder / "gitpipe.toml")


# --- the get-started layout: params.yaml read by the scripts themselves -------------

GET_STARTED = {
    "params.yaml": """\
        prepare:
          split: 0.25
          seed: 7
        featurize:
          max_words: 4
        train:
          epochs: 3
          rate: 0.5
        """,
    "data/raw.csv": """\
        id,text,label
        1,good fast cheap,1
        2,slow bad,0
        3,good good value,1
        4,bad service slow,0
        5,fast and good,1
        6,bad,0
        7,value good,1
        8,slow slow bad,0
        """,
    "src/prepare.py": """\
        import csv
        import os
        import random
        import sys

        import yaml

        params = yaml.safe_load(open("params.yaml"))["prepare"]
        rows = list(csv.DictReader(open(sys.argv[1])))
        random.Random(params["seed"]).shuffle(rows)
        cut = int(len(rows) * params["split"])
        os.makedirs("data/prepared", exist_ok=True)
        for name, part in (("test", rows[:cut]), ("train", rows[cut:])):
            with open(f"data/prepared/{name}.csv", "w", newline="") as handle:
                writer = csv.DictWriter(handle, ["id", "text", "label"])
                writer.writeheader()
                writer.writerows(part)
        """,
    "src/featurize.py": """\
        import csv
        import json
        import os
        import sys
        from collections import Counter

        import yaml

        max_words = yaml.safe_load(open("params.yaml"))["featurize"]["max_words"]
        source, target = sys.argv[1], sys.argv[2]
        train = list(csv.DictReader(open(f"{source}/train.csv")))
        counts = Counter(w for row in train for w in row["text"].split())
        vocabulary = sorted(w for w, _ in counts.most_common(max_words))
        os.makedirs(target, exist_ok=True)
        for name in ("train", "test"):
            rows = list(csv.DictReader(open(f"{source}/{name}.csv")))
            table = [
                {"id": r["id"], "x": [r["text"].split().count(w) for w in vocabulary],
                 "y": int(r["label"])}
                for r in rows
            ]
            json.dump(table, open(f"{target}/{name}.json", "w"))
        """,
    "src/train.py": """\
        import json
        import sys

        import yaml

        params = yaml.safe_load(open("params.yaml"))["train"]
        rows = json.load(open(f"{sys.argv[1]}/train.json"))
        weights = [0.0] * len(rows[0]["x"])
        for _ in range(params["epochs"]):
            for row in rows:
                guess = sum(w * x for w, x in zip(weights, row["x"]))
                error = row["y"] - (guess > 0.5)
                weights = [w + params["rate"] * error * x for w, x in zip(weights, row["x"])]
        json.dump({"weights": weights}, open(sys.argv[2], "w"))
        """,
    "src/evaluate.py": """\
        import json
        import os
        import sys

        weights = json.load(open(sys.argv[1]))["weights"]
        rows = json.load(open(f"{sys.argv[2]}/test.json"))
        os.makedirs("eval/plots", exist_ok=True)
        right = 0
        with open("eval/plots/errors.csv", "w") as handle:
            handle.write("id,error\\n")
            for row in rows:
                guess = int(sum(w * x for w, x in zip(weights, row["x"])) > 0.5)
                right += guess == row["y"]
                handle.write(f"{row['id']},{abs(guess - row['y'])}\\n")
        json.dump({"accuracy": right / len(rows)}, open("eval/metrics.json", "w"))
        """,
    "dvc.yaml": """\
        stages:
          prepare:
            desc: Shuffle the reviews and split them into train and test.
            cmd: python src/prepare.py data/raw.csv
            deps:
              - data/raw.csv
              - src/prepare.py
            params:
              - prepare.seed
              - prepare.split
            outs:
              - data/prepared
          featurize:
            cmd: python src/featurize.py data/prepared data/features
            deps:
              - data/prepared
              - src/featurize.py
            params:
              - featurize.max_words
            outs:
              - data/features
          train:
            cmd: python src/train.py data/features model.json
            deps:
              - data/features
              - src/train.py
            params:
              - train
            outs:
              - model.json
          evaluate:
            cmd: python src/evaluate.py model.json data/features
            deps:
              - model.json
              - data/features
              - src/evaluate.py
            metrics:
              - eval/metrics.json:
                  cache: false
            plots:
              - eval/plots/errors.csv:
                  x: id
                  y: error
        """,
    ".gitignore": "/data/prepared\n/data/features\n/model.json\n/eval\n",
}

GET_STARTED_TOML = """\
# Imported from dvc.yaml by `gitpipe import dvc` (see docs/migrating-from-dvc.md).
# The commands are DVC's, unchanged; paths are relative to this file's folder.

[pipeline]
params_files = ["params.yaml"]

[steps.prepare]
desc = "Shuffle the reviews and split them into train and test."
cmd = "python src/prepare.py data/raw.csv"
deps = ["data/raw.csv", "src/prepare.py"]
params = ["prepare.seed", "prepare.split"]
outs = ["data/prepared"]

[steps.featurize]
cmd = "python src/featurize.py data/prepared data/features"
deps = ["data/prepared", "src/featurize.py"]
params = ["featurize.max_words"]
outs = ["data/features"]

[steps.train]
cmd = "python src/train.py data/features model.json"
deps = ["data/features", "src/train.py"]
params = ["train"]
outs = ["model.json"]

[steps.evaluate]
cmd = "python src/evaluate.py model.json data/features"
deps = ["model.json", "data/features", "src/evaluate.py"]
metrics = [
  "eval/metrics.json",  # cache: false in dvc.yaml
]
plots = ["eval/plots/errors.csv"]
"""


def test_the_get_started_layout_imports_stage_for_stage_with_params_yaml_as_a_params_file(
    workspace,
):
    project(workspace, GET_STARTED)
    text, warnings = imported(workspace)
    assert text == GET_STARTED_TOML
    assert warnings == [
        "gitpipe: warning: dvc.yaml, stages.evaluate.metrics[0]: eval/metrics.json has cache: "
        "false: gitpipe stores every output, and refuses one that Git tracks (untrack it with "
        "`git rm --cached eval/metrics.json`)",
        "gitpipe: warning: dvc.yaml, stages.evaluate.plots[0]: x, y of eval/plots/errors.csv "
        "not translated",
    ]
    assert (workspace.root / "dvc.yaml").read_text() == textwrap.dedent(GET_STARTED["dvc.yaml"])


@needs_params_files
def test_the_imported_get_started_pipeline_runs_its_scripts_unchanged(workspace):
    project(workspace, GET_STARTED)
    imported(workspace)
    workspace.commit("import")
    workspace.ok("repro")
    assert workspace.ran() == ["prepare", "featurize", "train", "evaluate"]
    assert "accuracy" in json.loads((workspace.root / "eval/metrics.json").read_text())
    assert "0 ran, " in workspace.ok("repro").stdout


# --- foreach (list, mapping, list of mappings) and matrix, without params -----------

DATASETS = {
    "data/north.csv": "n\n3\n4\n",
    "data/south.csv": "n\n10\n20\n30\n",
    "src/count.py": """\
        import os
        import sys

        source, target = sys.argv[1], sys.argv[2]
        os.makedirs(os.path.dirname(target), exist_ok=True)
        values = [int(line) for line in open(source).read().split()[1:]]
        open(target, "w").write(f"{len(values)} {sum(values)}\\n")
        """,
    "src/summarize.py": """\
        import argparse
        import os

        parser = argparse.ArgumentParser()
        parser.add_argument("--limit", type=int)
        parser.add_argument("--name")
        args = parser.parse_args()
        totals = sorted(open(f"counts/{n}").read() for n in os.listdir("counts"))
        os.makedirs("summary", exist_ok=True)
        open(f"summary/{args.name}.txt", "w").write("".join(totals[: args.limit]))
        """,
    "src/report.py": """\
        import os
        import sys

        fmt, width = sys.argv[1], int(sys.argv[2])
        lines = sorted(open(f"summary/{n}").read() for n in os.listdir("summary"))
        open(f"report.{fmt}", "w").write("-" * width + "\\n" + "".join(lines))
        """,
    "dvc.yaml": """\
        vars:
          - regions: [north, south]
        stages:
          count:
            foreach: ${regions}
            do:
              cmd: python src/count.py data/${item}.csv counts/${item}.txt
              deps: ["data/${item}.csv", src/count.py]
              outs: ["counts/${item}.txt"]
          summarize:
            foreach:
              small:
                limit: 1
              large:
                limit: 100
            do:
              cmd: python src/summarize.py --limit ${item.limit} --name ${key}
              deps: [counts]
              outs: ["summary/${key}.txt"]
          report:
            foreach:
              - format: txt
                width: 10
              - format: md
                width: 20
            do:
              cmd: python src/report.py ${item.format} ${item.width}
              deps: [summary]
              outs: ["report.${item.format}"]
        """,
    ".gitignore": "/counts\n/summary\n/report.*\n",
}

DATASETS_TOML = """\
# Imported from dvc.yaml by `gitpipe import dvc` (see docs/migrating-from-dvc.md).
# The commands are DVC's, unchanged; paths are relative to this file's folder.

# foreach in dvc.yaml: one step per item, count@ITEM
[steps.count]
matrix = { item = ["north", "south"] }
cmd = "python src/count.py data/${matrix.item}.csv counts/${matrix.item}.txt"
deps = ["data/${matrix.item}.csv", "src/count.py"]
outs = ["counts/${matrix.item}.txt"]

# foreach in dvc.yaml: one step per item, summarize@ITEM
[steps.summarize]
matrix = { item = [{ name = "small", limit = 1 }, { name = "large", limit = 100 }] }
cmd = "python src/summarize.py --limit ${matrix.item.limit} --name ${matrix.item.name}"
deps = ["counts"]
outs = ["summary/${matrix.item.name}.txt"]

# foreach in dvc.yaml: one step per item
[steps."report@0"]
cmd = "python src/report.py txt 10"
deps = ["summary"]
outs = ["report.txt"]

[steps."report@1"]
cmd = "python src/report.py md 20"
deps = ["summary"]
outs = ["report.md"]
"""


def test_foreach_over_a_list_a_mapping_and_a_list_of_mappings_keeps_dvcs_step_names(workspace):
    project(workspace, DATASETS)
    text, warnings = imported(workspace)
    assert text == DATASETS_TOML
    assert warnings == []
    valid(text, workspace.root)
    assert list(dag(workspace)) == [
        "count@north",
        "count@south",
        "summarize@small",
        "summarize@large",
        "report@0",
        "report@1",
    ]


def test_an_imported_foreach_pipeline_runs_end_to_end_and_then_runs_only_what_changed(
    workspace,
):
    project(workspace, DATASETS)
    imported(workspace)
    workspace.commit("import")
    workspace.ok("repro")
    assert sorted(workspace.ran()) == sorted(dag(workspace))
    assert (workspace.root / "counts/south.txt").read_text() == "3 60\n"
    assert (workspace.root / "summary/small.txt").read_text() == "2 7\n"
    assert (workspace.root / "report.md").read_text().startswith("-" * 20 + "\n")

    workspace.write("data/north.csv", "n\n3\n5\n")
    workspace.ok("repro")
    changed = ["count@north", "summarize@small", "summarize@large", "report@0", "report@1"]
    assert workspace.ran() == changed


MATRIX = {
    "src/fit.py": """\
        import os
        import sys

        model, rate = sys.argv[1], sys.argv[2]
        os.makedirs("fits", exist_ok=True)
        open(f"fits/{model}-{rate}.txt", "w").write(f"{model} at {rate}\\n")
        """,
    "dvc.yaml": """\
        vars:
          - rates: [0.1, 0.01]
        stages:
          fit:
            matrix:
              model: [mean, median]
              rate: ${rates}
            cmd: python src/fit.py ${item.model} ${item.rate}
            deps: [src/fit.py]
            outs: ["fits/${item.model}-${item.rate}.txt"]
          grid:
            matrix:
              shape: [[1, 2], [3]]
              kind: [a]
            cmd: echo ${item.kind} ${key} > grid-${key}.txt
            outs: ["grid-${key}.txt"]
        """,
    ".gitignore": "/fits\n/grid-*\n",
}


def test_a_matrix_becomes_gitpipes_matrix_or_one_step_per_combination_named_as_dvc_does(
    workspace,
):
    project(workspace, MATRIX)
    text, warnings = imported(workspace)
    assert warnings == []
    fit = tomlcache.loads(text)["steps"]["fit"]
    assert fit["matrix"] == {"model": ["mean", "median"], "rate": [0.1, 0.01]}
    assert fit["cmd"] == "python src/fit.py ${matrix.model} ${matrix.rate}"
    assert tomlcache.loads(text)["steps"]["grid@shape0-a"]["cmd"] == (
        "echo a shape0-a > grid-shape0-a.txt"
    )
    valid(text, workspace.root)
    workspace.commit("import")
    workspace.ok("repro")
    assert workspace.ran() == [
        "fit@mean-0.1",
        "fit@mean-0.01",
        "fit@median-0.1",
        "fit@median-0.01",
        "grid@shape0-a",
        "grid@shape1-a",
    ]
    assert (workspace.root / "fits/median-0.01.txt").read_text() == "median at 0.01\n"


# --- a monorepo: several dvc.yaml files ---------------------------------------------

MONOREPO = {
    "pipelines/ingest/dvc.yaml": """\
        stages:
          fetch:
            wdir: ../..
            cmd: python pipelines/ingest/fetch.py data/raw.txt
            deps:
              - pipelines/ingest/fetch.py
            outs:
              - data/raw.txt
        """,
    "pipelines/ingest/fetch.py": """\
        import os
        import sys

        os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True)
        open(sys.argv[1], "w").write("a\\nb\\nc\\n")
        """,
    "models/churn/dvc.yaml": """\
        stages:
          fit:
            cmd: python fit.py ../../data/raw.txt model.txt
            deps:
              - ../../data/raw.txt
              - fit.py
            outs:
              - model.txt
        """,
    "models/churn/fit.py": """\
        import sys

        lines = open(sys.argv[1]).read().split()
        open(sys.argv[2], "w").write(f"{len(lines)} lines\\n")
        """,
    ".gitignore": "/data\nmodel.txt\n",
}


def test_a_monorepo_nests_a_pipeline_per_folder_and_runs_wdir_above_from_the_root(workspace):
    project(workspace, MONOREPO)
    result = workspace.ok("import", "dvc")
    assert result.stdout.startswith(
        "Wrote models/churn/gitpipe.toml, gitpipe.toml from models/churn/dvc.yaml, "
        "pipelines/ingest/dvc.yaml.\n"
    )
    root = (workspace.root / "gitpipe.toml").read_text()
    steps = tomlcache.loads(root)["steps"]
    # `wdir: ../..` writes above its folder: its stages join the root's file, named
    # after their folder; the other dvc.yaml stays in its folder, nested
    assert steps["ingest-fetch"] == {
        "cmd": "python pipelines/ingest/fetch.py data/raw.txt",
        "deps": ["pipelines/ingest/fetch.py"],
        "outs": ["data/raw.txt"],
    }
    assert steps["churn"]["pipeline"] == "models/churn/gitpipe.toml"
    inner = tomlcache.loads((workspace.root / "models/churn/gitpipe.toml").read_text())
    assert inner["steps"]["fit"]["deps"] == ["../../data/raw.txt", "fit.py"]
    assert not (workspace.root / "pipelines/ingest/gitpipe.toml").exists()
    valid(root, workspace.root)

    workspace.commit("import")
    workspace.ok("repro")
    assert workspace.ran() == ["ingest-fetch", "churn/fit"]
    assert dag(workspace)["churn/fit"] == ["ingest-fetch"]
    assert (workspace.root / "models/churn/model.txt").read_text() == "3 lines\n"


def test_import_dvc_of_a_subfolder_writes_its_pipeline_there(workspace):
    project(workspace, {f"sub/{k}": v for k, v in DATASETS.items()})
    result = workspace.ok("import", "dvc", "sub")
    assert result.stdout.startswith("Wrote gitpipe.toml from dvc.yaml.")
    assert (workspace.root / "sub/gitpipe.toml").read_text() == DATASETS_TOML
    assert not (workspace.root / "gitpipe.toml").exists()


# --- every field, and what does not translate ---------------------------------------

FIELDS = {
    "params.yaml": "train:\n  lr: 0.01\n  net:\n    layers: 3\n",
    "config.json": '{"report": {"digits": 2}, "other": 1}',
    "tuning.yaml": "search:\n  trials: 20\n",
    "extra.toml": "[extra]\nbatch = 8\n",
    "dvc.yaml": """\
        vars:
          - config.json:report
          - tag: v2
        stages:
          train:
            wdir: src
            cmd:
              - python train.py --lr ${train.lr} --layers ${train.net.layers} --tag ${tag}
              - echo \\${HOME} done
            deps:
              - ../data/train.csv
              - https://example.com/extra.csv
            params:
              - ../params.yaml:
                  - train.lr
              - ../tuning.yaml:
                  - search.trials
              - ../extra.toml:
            outs:
              - ../model.bin:
                  persist: true
                  desc: The weights.
              - ../logs/
            frozen: true
          report:
            desc: Sums up.
            cmd: python report.py --digits ${report.digits} --missing ${nope}
            always_changed: true
            deps: [model.bin]
            params:
              - train
            metrics:
              - summary.json:
                  remote: backup
              - scores.yaml
            outs:
              - checkpoint.txt:
                  push: false
            meta:
              owner: data-team
        plots:
          - summary.json:
              x: step
        artifacts:
          model:
            path: model.bin
        """,
}

FIELDS_TOML = """\
# Imported from dvc.yaml by `gitpipe import dvc` (see docs/migrating-from-dvc.md).
# The commands are DVC's, unchanged; paths are relative to this file's folder.

[pipeline]
params_files = ["params.yaml", "config.json", "tuning.yaml", "extra.toml"]

[steps.train]
cmd = [
  "python train.py --lr ${params.train.lr} --layers ${params.train.net.layers} --tag v2",
  "echo $${HOME} done",
]
wdir = "src"
deps = ["data/train.csv", "https://example.com/extra.csv"]
params = ["params.yaml:train.lr", "tuning.yaml:search.trials", "extra.toml:*"]
outs = [
  "model.bin",  # The weights.
  "logs/",
]
persist = true
frozen = true

[steps.report]
desc = "Sums up."
cmd = "python report.py --digits ${params.report.digits} --missing $${nope}"
deps = ["model.bin"]
params = ["train"]
outs = [
  "checkpoint.txt",
  "scores.yaml",  # metrics in dvc.yaml
]
metrics = ["summary.json"]
always = true
"""


def test_every_stage_field_translates_and_what_does_not_is_named_one_line_each(workspace):
    project(workspace, FIELDS)
    text, warnings = imported(workspace)
    assert text == FIELDS_TOML
    assert [w.removeprefix("gitpipe: warning: ") for w in warnings] == [
        "dvc.yaml: top-level 'plots' (1 entry) is not translated; gitpipe reads a step's "
        "metrics and plots files",
        "dvc.yaml: top-level 'artifacts' (1 entry) is not translated",
        "dvc.yaml, stages.train: persist: true on model.bin keeps all of the step's outputs "
        "in place in gitpipe (persist = true), logs/ too",
        "dvc.yaml, stages.report: 'meta' (data for people) is not translated",
        "dvc.yaml, stages.report.outs[0]: push of checkpoint.txt not translated",
        "dvc.yaml, stages.report.metrics[0]: remote of summary.json not translated",
        "dvc.yaml, stages.report.metrics[1]: scores.yaml becomes an output: gitpipe reads "
        "metrics from JSON and TOML files",
        "dvc.yaml, stages.report.cmd: ${nope} names nothing in vars, params.yaml or the item; "
        "kept as the text ${nope}",
    ]


def test_a_params_file_whose_names_clash_with_another_is_read_as_values_and_a_dependency(
    workspace,
):
    project(
        workspace,
        {
            "params.yaml": "train:\n  lr: 0.1\n",
            "other.yaml": "train:\n  lr: 0.5\nseed: 3\n",
            "dvc.yaml": """\
                vars:
                  - other.yaml:seed
                stages:
                  fit:
                    cmd: python fit.py --seed ${seed}
                    params:
                      - train.lr
                      - other.yaml:
                          - train.lr
                    outs: [fit.txt]
                """,
        },
    )
    text, warnings = imported(workspace)
    steps = tomlcache.loads(text)
    assert steps["pipeline"] == {"params_files": ["params.yaml"]}
    assert steps["steps"]["fit"] == {
        "cmd": "python fit.py --seed 3",
        "deps": ["other.yaml"],
        "params": ["train.lr"],
        "outs": ["fit.txt"],
    }
    assert warnings == [
        "gitpipe: warning: other.yaml: not a params file of gitpipe.toml, as 'train.lr' is also "
        "in params.yaml (gitpipe's params are one namespace); its values are written in where "
        "used, and the steps using them depend on the whole file"
    ]


def test_a_stages_default_params_file_is_params_yaml_in_its_wdir_and_tables_merge(workspace):
    project(
        workspace,
        {
            "params.yaml": "lr: 0.1\nnet:\n  depth: 2\n",
            "src/params.yaml": "depth: 4\nnet:\n  width: 8\n",
            "dvc.yaml": """\
                stages:
                  fit:
                    wdir: src
                    cmd: python fit.py
                    params: [depth]
                    outs: [../fit.txt]
                """,
        },
    )
    text, warnings = imported(workspace)
    data = tomlcache.loads(text)
    assert data["pipeline"] == {"params_files": ["params.yaml", "src/params.yaml"]}
    assert data["steps"]["fit"]["params"] == ["depth"]
    assert warnings == []


# --- errors: nothing written ---------------------------------------------------------


def test_an_existing_gitpipe_toml_is_not_overwritten_without_force(workspace):
    project(workspace, DATASETS)
    workspace.write("gitpipe.toml", "# mine\n")
    refused(
        workspace,
        "import",
        "dvc",
        says=("gitpipe: gitpipe.toml exists already; pass --force to overwrite it\n",),
    )
    workspace.ok("import", "dvc", "--force")
    assert (workspace.root / "gitpipe.toml").read_text() == DATASETS_TOML


def test_a_nested_pipeline_file_in_the_way_refuses_the_whole_import(workspace):
    project(workspace, MONOREPO)
    workspace.write("models/churn/gitpipe.toml", "# mine\n")
    refused(
        workspace,
        "import",
        "dvc",
        says=("gitpipe: models/churn/gitpipe.toml exists already; pass --force",),
    )


@pytest.mark.parametrize(
    ("files", "says"),
    [
        (
            {"dvc.yaml": "stages:\n  a:\n    cmd: [echo\n"},
            "gitpipe: dvc.yaml: invalid YAML at line 4, column 1: expected ',' or ']', but got "
            "'<stream end>'\n",
        ),
        (
            {"dvc.yaml": "- just\n- a list\n"},
            "gitpipe: dvc.yaml: must hold a mapping, not a list\n",
        ),
        (
            {"dvc.yaml": "stages: [a, b]\n"},
            "gitpipe: dvc.yaml, at stages: must be a mapping of stages, not a list\n",
        ),
        (
            {"dvc.yaml": "stages:\n  a: echo\n"},
            "gitpipe: dvc.yaml, at stages.a: a stage must be a mapping, not a string\n",
        ),
        (
            {"dvc.yaml": "vars: [config.yaml]\nstages: {}\n"},
            "gitpipe: dvc.yaml, at vars: vars file config.yaml does not exist\n",
        ),
        (
            {"dvc.yaml": "stages: {}\n", "params.yaml": "a: [1\n"},
            "gitpipe: params.yaml: invalid YAML at line 2, column 1: expected ',' or ']', but "
            "got '<stream end>'\n",
        ),
        (
            {"dvc.yaml": "stages: {}\n", "params.yaml": "- 1\n"},
            "gitpipe: params.yaml: must hold a mapping of names to values, not a list\n",
        ),
        ({"other.yaml": "stages: {}\n"}, "gitpipe: there is no dvc.yaml in . or its subfolders\n"),
    ],
    ids=[
        "bad YAML",
        "not a mapping",
        "stages not a mapping",
        "a stage not a mapping",
        "a missing vars file",
        "bad YAML in params.yaml",
        "params.yaml not a mapping",
        "no dvc.yaml",
    ],
)
def test_a_dvc_project_that_cannot_be_read_is_one_error_line_and_nothing_written(
    workspace, files, says
):
    project(workspace, files)
    stderr = refused(workspace, "import", "dvc", says=(says,))
    assert stderr == says


def test_dry_run_prints_the_pipeline_and_writes_nothing(workspace):
    project(workspace, DATASETS)
    before = snapshot(workspace.root)
    result = workspace.ok("import", "dvc", "--dry-run")
    assert result.stdout == DATASETS_TOML
    assert snapshot(workspace.root) == before


# --- end to end: scripts that read params.yaml, foreach, matrix and vars -------------

#: examples/dvc-migration: a DVC project and the gitpipe.toml its import wrote
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "dvc-migration"
EXAMPLE_FILES = {
    path: (EXAMPLE / path).read_text()
    for path in (
        *("dvc.yaml", "params.yaml", "config.json", ".gitignore"),
        *("data/north.csv", "data/south.csv"),
        *("src/prepare.py", "src/train.py", "src/evaluate.py"),
    )
}
TRAINED = ["train@mean-0", "train@mean-1", "train@median-0", "train@median-1"]


def test_the_example_project_imports_foreach_matrix_and_vars_with_its_params_live(workspace):
    project(workspace, EXAMPLE_FILES)
    text, warnings = imported(workspace)
    assert text == (EXAMPLE / "gitpipe.toml").read_text()  # committed as it came out
    assert len(warnings) == 2  # cache: false, and the plot's x and y
    data = tomlcache.loads(text)
    assert data["pipeline"] == {"params_files": ["params.yaml", "config.json"]}
    assert data["steps"]["prepare"]["matrix"] == {"item": ["north", "south"]}
    assert data["steps"]["train"]["params"] == ["train.epochs"]
    assert data["steps"]["evaluate"]["cmd"] == (
        "python src/evaluate.py --digits ${params.report.digits}"
    )


@needs_params_files
def test_an_imported_pipeline_reading_params_yaml_itself_reruns_only_the_steps_selecting_an_edit(
    workspace,
):
    project(workspace, EXAMPLE_FILES)
    imported(workspace)
    workspace.commit("import")
    workspace.ok("repro")
    assert workspace.ran() == ["prepare@north", "prepare@south", *TRAINED, "evaluate"]
    assert json.loads((workspace.root / "metrics.json").read_text())["threshold"] == 0.5

    def edit(old: str, new: str) -> list[str]:
        path = workspace.root / "params.yaml"
        path.write_text(path.read_text().replace(old, new))
        workspace.ok("repro")
        return workspace.ran()

    assert edit("threshold: 0.5", "threshold: 2.5") == ["evaluate"]
    assert json.loads((workspace.root / "metrics.json").read_text())["threshold"] == 2.5
    assert edit("seed: 1", "seed: 2") == []  # no step selects train.seed
    # every train@ step selects train.epochs; evaluate reads what they wrote
    assert sorted(edit("epochs: 3", "epochs: 4")) == sorted([*TRAINED, "evaluate"])


def test_values_read_from_a_params_file_at_import_are_named_and_their_key_selected(workspace):
    project(
        workspace,
        {
            "params.yaml": "datasets: [iris, wine]\nlayers: [8, 4]\ntrain:\n  lr: 0.1\n",
            "hyper.py": "LR = 0.1\n",
            "dvc.yaml": """\
                stages:
                  fit:
                    foreach: ${datasets}
                    do:
                      cmd: python fit.py ${item} --first ${layers[0]} ${train}
                      params:
                        - hyper.py:
                            - LR
                      outs: ["${item}.txt"]
                """,
        },
    )
    text, warnings = imported(workspace)
    fit = tomlcache.loads(text)["steps"]["fit"]
    assert fit == {
        "matrix": {"item": ["iris", "wine"]},
        "cmd": "python fit.py ${matrix.item} --first 8 $${train}",
        "deps": ["hyper.py"],
        "params": ["datasets", "layers"],
        "outs": ["${matrix.item}.txt"],
    }
    assert [w.removeprefix("gitpipe: warning: ") for w in warnings] == [
        "hyper.py: not a params file of gitpipe.toml, as gitpipe reads params from YAML, JSON "
        "and TOML files only; its values are written in where used, and the steps using them "
        "depend on the whole file",
        "dvc.yaml, stages.fit.foreach: the items of ${datasets} in params.yaml are written into "
        "the step as they are now; import again (or edit the step) after adding or removing "
        "items",
        "dvc.yaml, stages.fit.cmd: ${layers[0]} indexes a list, which ${params...} cannot: its "
        "value '8' is written in, and the step selects 'layers'",
        "dvc.yaml, stages.fit.cmd: ${train} is a table; DVC turns it into command-line flags, "
        "gitpipe does not; kept as the text ${train}",
    ]


def test_a_folder_that_is_not_there_is_one_error_line(workspace):
    stderr = refused(workspace, "import", "dvc", "nowhere", says=("nowhere is not a folder",))
    assert stderr == "gitpipe: nowhere is not a folder\n"


def test_import_dvc_is_listed_in_help(workspace):
    assert "dvc  Write gitpipe.toml from dvc.yaml" in workspace.ok("import", "--help").stdout


def test_a_stage_gitpipe_cannot_name_or_place_is_named_in_a_warning_and_left_out(workspace):
    project(
        workspace,
        {
            "dvc.yaml": (
                "stages:\n"
                '  "a\\"b": {cmd: "true"}\n'
                "  away: {cmd: ls, wdir: /etc}\n"
                "  fine: {cmd: echo hi > o.txt, outs: [o.txt]}\n"
            )
        },
    )
    text, warnings = imported(workspace)
    assert "[steps.fine]" in text and "away" not in text and 'a\\"b' not in text
    assert [w.removeprefix("gitpipe: warning: ") for w in warnings] == [
        "dvc.yaml, stages.a\"b: stage name 'a\"b' cannot name a gitpipe step (letters, "
        "digits, '_', '-', '.' and '@' only); not translated: rename it in dvc.yaml and "
        "import again",
        "dvc.yaml, stages.away: wdir /etc is outside the repository; stage not translated",
    ]
    workspace.ok("status")  # what was written, gitpipe reads


def test_an_import_gitpipe_could_not_read_is_refused_and_nothing_written(workspace):
    # two stages writing one file: DVC itself refuses that dvc.yaml, and so does gitpipe
    project(
        workspace,
        {
            "dvc.yaml": (
                "stages:\n  one: {cmd: echo 1 > o.txt, outs: [o.txt]}\n"
                "  two: {cmd: echo 2 > o.txt, outs: [o.txt]}\n"
            )
        },
    )
    stderr = refused(workspace, "import", "dvc", says=("not one gitpipe can read", "o.txt"))
    assert stderr.count("\n") == 1
    assert not (workspace.root / "gitpipe.toml").exists()
