"""`gitpipe exp show / diff / apply`: the experiments (`repro -p` runs) lineage
recorded, compared, and one of them made the pipeline's state without running."""

from __future__ import annotations

import datetime
import json
import re
import sqlite3
from contextlib import closing

import pytest
import yaml
from conftest import Workspace, git, refused

import gitpipe
from gitpipe.core.errors import UsageError
from gitpipe.pipeline.paramsedit import set_values, toml_value, yaml_value
from gitpipe.workspace import Project
from gitpipe.workspace.experiments import Experiment

PIPELINE = """\
# an experiment's pipeline
[params]   # the knobs
seed = 1   # keep it
[params.train]
lr = 0.1   # the rate

[steps.train]
cmd = "python3 train.py"
params = ["train", "seed"]
outs = ["model.txt"]
metrics = ["metrics.json"]

[steps.size]
cmd = "wc -c < model.txt > size.txt"
deps = ["model.txt"]
outs = ["size.txt"]

[steps.other]
cmd = "echo other > other.txt"
outs = ["other.txt"]
"""

#: a step that writes other bytes each time it runs (a random part), and fails for
#: a negative seed
TRAIN = """\
import json, os, sys
p = json.loads(os.environ["GITPIPE_PARAMS"])
if p["seed"] < 0:
    sys.exit("a negative seed")
open("model.txt", "w").write(f"{p['train']['lr']} {p['seed']} " + os.urandom(4).hex())
json.dump({"acc": round(p["train"]["lr"] * 2 + p["seed"], 4), "label": "m"},
          open("metrics.json", "w"))
"""

OUTPUTS = ("model.txt", "metrics.json", "size.txt", "other.txt")


def committed(ws: Workspace) -> Workspace:
    ws.write(".gitignore", "\n".join(OUTPUTS) + "\n")
    ws.write("train.py", TRAIN)
    ws.pipeline(PIPELINE)
    ws.ok("repro")
    ws.commit("pipeline and lock")
    return ws


def shown(ws: Workspace) -> list[dict]:
    return json.loads(ws.ok("exp", "show", "--json").stdout)


def last_id(ws: Workspace) -> str:
    return shown(ws)[0]["id"]


def outputs(ws: Workspace) -> dict[str, str]:
    return {name: (ws.root / name).read_text() for name in OUTPUTS}


@pytest.fixture
def ws(workspace: Workspace) -> Workspace:
    return committed(workspace)


# -- exp show ----------------------------------------------------------------------


def test_show_lists_the_runs_given_params_newest_first_with_what_they_changed(ws):
    ws.ok("repro", "-p", "train.lr=0.3")
    ws.ok("repro")  # no -p: not an experiment
    ws.ok("repro", "-p", "seed=2", "-p", "train.lr=0.1")  # lr as committed: not changed
    first, second = shown(ws)
    assert second["overrides"] == {"train.lr": 0.3}
    assert second["changed"] == {"train.lr": {"committed": 0.1, "value": 0.3}}
    assert second["metrics"] == {"train": {"acc": 1.6}}  # numbers only
    assert first["overrides"] == {"seed": 2, "train.lr": 0.1}
    assert first["changed"] == {"seed": {"committed": 1, "value": 2}}
    assert first["state"] == second["state"] == "ok"
    assert first["time"] >= second["time"]
    assert re.fullmatch(r"[0-9a-f]{6}", first["id"])
    assert first["run"].endswith("-" + first["id"])
    assert first["commit"] == git(ws.root, "rev-parse", "HEAD").strip()


def test_show_prints_one_row_per_experiment(ws):
    ws.ok("repro", "-p", "train.lr=0.3")
    lines = ws.ok("exp", "show").stdout.splitlines()
    assert lines[0].split() == ["id", "time", "state", "params", "changed", "metrics"]
    assert lines[1].split()[0] == last_id(ws)
    assert "train.lr=0.3" in lines[1] and "acc=1.6" in lines[1] and " ok " in lines[1]


def test_without_experiments_show_says_how_to_run_one(ws):
    assert "gitpipe repro -p NAME=VALUE" in ws.ok("exp", "show").stdout
    assert shown(ws) == []


def test_a_failed_experiment_shows_as_failed(ws):
    assert ws.gitpipe("repro", "-p", "seed=-1").exit_code == 1
    (failed,) = shown(ws)
    assert failed["state"] == "failed"
    assert failed["metrics"] == {}


def test_steps_an_experiment_found_up_to_date_show_the_locks_metrics(ws):
    ws.write("gitpipe.toml", PIPELINE.replace('"echo other', '"echo ${params.seed} other'))
    ws.write("gitpipe.toml", ws.root.joinpath("gitpipe.toml").read_text())
    ws.ok("repro", "-p", "seed=1")  # what is committed: every step is up to date
    (same,) = shown(ws)
    assert same["changed"] == {}
    assert same["metrics"] == {"train": {"acc": 1.2}}


# -- exp diff ----------------------------------------------------------------------


def test_diff_shows_two_experiments_params_and_metrics_side_by_side(ws):
    ws.ok("repro", "-p", "train.lr=0.3")
    a = last_id(ws)
    ws.ok("repro", "-p", "seed=3")
    b = last_id(ws)
    result = json.loads(ws.ok("exp", "diff", a, b, "--json").stdout)
    assert result["a"] == f"experiment {a}"
    assert result["b"] == f"experiment {b}"
    assert result["params"] == [
        {"name": "seed", "a": 1, "b": 3},
        {"name": "train.lr", "a": 0.3, "b": 0.1},
    ]
    (acc,) = result["metrics"]
    assert acc == {"step": "train", "name": "acc", "a": 1.6, "b": 3.2, "delta": pytest.approx(1.6)}
    text = ws.ok("exp", "diff", a, b).stdout
    assert re.search(r"train: acc\s+1\.6\s+3\.2\s+\+1\.6", text)
    assert re.search(r"param train\.lr\s+0\.3\s+0\.1", text)


def test_diff_against_head_reads_the_committed_params_and_lock(ws):
    ws.ok("repro", "-p", "train.lr=0.3")
    a = last_id(ws)
    head = git(ws.root, "rev-parse", "--short=7", "HEAD").strip()
    for args in ((a,), (a, "HEAD")):
        result = json.loads(ws.ok("exp", "diff", *args, "--json").stdout)
        assert result["b"] == f"HEAD ({head})"
        assert result["params"] == [{"name": "train.lr", "a": 0.3, "b": 0.1}]
        assert result["metrics"][0]["delta"] == pytest.approx(-0.4)


@pytest.mark.parametrize("args", [("nope",), ("nope", "HEAD"), ("HEAD", "nope")])
def test_diff_of_an_unknown_experiment_is_refused_and_nothing_changes(ws, args):
    ws.ok("repro", "-p", "train.lr=0.3")
    refused(ws, "exp", "diff", *args, says=("there is no experiment 'nope'", "exp show"))


# -- exp apply ---------------------------------------------------------------------


def test_apply_writes_the_param_restores_the_results_and_runs_nothing(ws):
    ws.ok("repro", "-p", "train.lr=0.3")
    exp = last_id(ws)
    made = outputs(ws)
    ws.ok("repro")  # back to the committed results
    assert outputs(ws) != made
    ws.ok("exp", "apply", exp)
    assert outputs(ws) == made
    assert set(ws.states().values()) <= {"cached", "up to date"}  # nothing ran
    changed = git(ws.root, "diff", "-U0", "gitpipe.toml").splitlines()
    assert [line for line in changed if line[:1] in "+-" and line[:3] not in ("+++", "---")] == [
        "-lr = 0.1   # the rate",
        "+lr = 0.3   # the rate",
    ]
    ws.ok("status", "--check")
    ws.ok("check")
    lock = (ws.root / "gitpipe.lock").read_text()
    assert "acc = 1.6" in lock
    assert shown(ws)[0]["state"] == "applied"
    ws.commit("keep the experiment")
    assert json.loads(ws.ok("metrics", "--history", "--json").stdout)["points"][-1]["metrics"] == {
        "train": {"acc": 1.6}
    }


def test_apply_restores_the_experiments_own_bytes_when_its_key_has_several(ws):
    ws.ok("repro", "-p", "train.lr=0.3")
    first = last_id(ws)
    made = outputs(ws)
    ws.ok("repro", "-p", "train.lr=0.3", "--force")  # the same key, other bytes
    assert outputs(ws)["model.txt"] != made["model.txt"]
    ws.ok("exp", "apply", first)
    assert outputs(ws) == made
    ws.ok("status", "--check")


def test_apply_of_the_experiment_the_workspace_holds_changes_no_output(ws):
    ws.ok("repro", "-p", "seed=4")
    made = outputs(ws)
    result = json.loads(ws.ok("exp", "apply", last_id(ws), "--json").stdout)
    assert result["params"] == {"seed": 4}
    assert result["restored"] == ["train", "size"]
    assert outputs(ws) == made
    ws.ok("status", "--check")


def test_apply_of_an_unknown_id_is_refused_and_nothing_changes(ws):
    ws.ok("repro", "-p", "train.lr=0.3")
    refused(ws, "exp", "apply", "zzz", says=("there is no experiment 'zzz'",))


def test_apply_without_any_experiment_says_how_to_make_one(ws):
    refused(ws, "exp", "apply", "abc", says=("none is recorded yet", "repro -p"))


def test_apply_of_a_failed_experiment_is_refused_and_nothing_changes(ws):
    ws.gitpipe("repro", "-p", "seed=-1")
    refused(ws, "exp", "apply", last_id(ws), says=("is failed", "finished"))


def test_apply_when_a_step_would_have_to_run_is_refused_and_nothing_changes(ws):
    ws.ok("repro", "-p", "train.lr=0.3")
    exp = last_id(ws)
    ws.write("train.py", TRAIN + "edited = True\n")  # the step's code: another key now
    ws.ok("repro")
    refused(
        ws,
        "exp",
        "apply",
        exp,
        says=("cannot be applied without running", "train", "repro -p train.lr=0.3"),
        code=3,
    )


def test_apply_when_the_store_lost_the_experiments_outputs_is_refused(ws):
    ws.ok("repro", "-p", "train.lr=0.3")
    exp = last_id(ws)
    ws.ok("repro")
    for result in (ws.root / ".gitpipe" / "cache" / "results").rglob("*.json"):
        if "0.3" in result.read_text():
            result.unlink()
    refused(ws, "exp", "apply", exp, says=("cannot be applied",), code=3)


def test_apply_puts_the_params_and_lock_back_when_a_restore_fails(ws):
    ws.ok("repro", "-p", "train.lr=0.3")
    exp = last_id(ws)
    with closing(sqlite3.connect(ws.root / ".gitpipe" / "lineage.db")) as db:
        (digest,) = db.execute(
            "SELECT io.digest FROM io JOIN executions e ON e.id = io.execution_id"
            " WHERE e.run_id LIKE ? AND io.path = 'model.txt'",
            (f"%-{exp}",),
        ).fetchone()
    ws.ok("repro")
    algorithm, hexdigest = digest.split(":")
    stored = ws.root / ".gitpipe" / "cache" / "objects" / algorithm / hexdigest[:2] / hexdigest[2:]
    stored.chmod(0o644)
    stored.write_text("not the bytes it was\n")
    pipeline, lock = (ws.root / name for name in ("gitpipe.toml", "gitpipe.lock"))
    before = (pipeline.read_bytes(), lock.read_bytes(), outputs(ws)["model.txt"])
    result = ws.gitpipe("exp", "apply", exp)
    assert result.exit_code == 3, result.output
    assert "is corrupt" in result.stderr
    assert (pipeline.read_bytes(), lock.read_bytes(), outputs(ws)["model.txt"]) == before
    ws.ok("status", "--check")


def test_diff_against_head_without_a_commit_is_refused(workspace):
    workspace.write("train.py", TRAIN)
    workspace.pipeline(PIPELINE)
    workspace.ok("repro", "-p", "seed=2")
    refused(workspace, "exp", "diff", last_id(workspace), says=("HEAD has no commit yet",))


def test_apply_refuses_a_param_written_in_an_inline_table(workspace):
    ws = workspace
    ws.write(".gitignore", "\n".join(OUTPUTS) + "\n")
    ws.write("train.py", TRAIN)
    ws.pipeline(PIPELINE.replace("[params.train]\nlr = 0.1   # the rate", "train = { lr = 0.1 }"))
    ws.ok("repro")
    ws.commit("inline")
    ws.ok("repro", "-p", "train.lr=0.3")
    refused(ws, "exp", "apply", last_id(ws), says=("inside an inline table", "train.lr"))


def test_an_ambiguous_prefix_is_refused(ws):
    ws.ok("repro", "-p", "seed=2")
    ws.ok("repro", "-p", "seed=3")
    runs = [e["run"] for e in shown(ws)]
    common = runs[0][:8]  # the date: both runs start with it
    assert runs[1].startswith(common)
    refused(ws, "exp", "apply", common, says=("names 2 experiments",))


def test_an_experiment_is_found_by_its_run_id_too(ws):
    ws.ok("repro", "-p", "seed=2")
    run = shown(ws)[0]["run"]
    result = json.loads(ws.ok("exp", "diff", run, "--json").stdout)
    assert result["params"] == [{"name": "seed", "a": 2, "b": 1}]


# -- gitpipe diff after an experiment ---------------------------------------------------


def test_diff_after_an_experiment_says_the_workspace_holds_its_results(ws):
    ws.ok("repro", "-p", "train.lr=0.3")
    exp = last_id(ws)
    text = ws.ok("diff").stdout
    assert "no step changed" in text
    assert f"holds the results of experiment {exp}" in text
    assert "metrics.json: acc  1.2 -> 1.6 (+0.4)" in text
    held = json.loads(ws.ok("diff", "--json").stdout)["workspace_metrics"]
    assert held["experiment"] == exp
    assert held["differ"] == [
        {"step": "train", "file": "metrics.json", "key": "acc", "old": 1.2, "new": 1.6,
         "delta": pytest.approx(0.4)}
    ]  # fmt: skip
    assert f"exp apply {exp}" in ws.ok("diff", "--md").stdout
    ws.ok("repro")
    assert "holds the results" not in ws.ok("diff").stdout


# -- the Python API -------------------------------------------------------------------


def test_the_python_api_lists_frozen_experiments(ws):
    ws.ok("repro", "-p", "train.lr=0.3")
    (experiment,) = Project.open(ws.root).experiments()
    assert isinstance(experiment, Experiment)
    assert experiment.overrides == {"train.lr": 0.3}
    assert experiment.metrics == {"train": {"acc": 1.6}}
    assert experiment.state == "ok"
    assert experiment.changed == {"train.lr": 0.3}
    assert json.loads(json.dumps(experiment.to_json()))["id"] == experiment.id
    assert gitpipe.experiments(path=ws.root) == (experiment,)
    with closing(sqlite3.connect(ws.root / ".gitpipe" / "lineage.db")) as db:
        runs = [row[0] for row in db.execute("SELECT id FROM runs WHERE overrides IS NOT NULL")]
    assert runs == [experiment.run_id]


# -- the params editor ------------------------------------------------------------------


def test_setting_params_changes_only_their_values():
    text = PIPELINE + '\n[params.more]\nname = "a # b"  # c\nlist = [1, 2]\ndotted.key = 1\n'
    values = {"seed": 7, "more.name": 'q"x\\y', "more.list": [3.5, "z"], "more.dotted.key": 2}
    edited = set_values(text, values)
    before, after = text.splitlines(), edited.splitlines()
    assert len(before) == len(after)
    assert [(b, a) for b, a in zip(before, after, strict=True) if b != a] == [
        ("seed = 1   # keep it", "seed = 7   # keep it"),
        ('name = "a # b"  # c', 'name = "q\\"x\\\\y"  # c'),
        ("list = [1, 2]", 'list = [3.5, "z"]'),
        ("dotted.key = 1", "dotted.key = 2"),
    ]


@pytest.mark.parametrize(
    ("text", "values", "says"),
    [
        ("[params]\nt = { a = 1 }\n", {"t.a": 2}, "inside an inline table"),
        ("params = { a = 1 }\n", {"a": 2}, "inside an inline table"),
        ("[params]\nl = [\n  1,\n]\n", {"l": [2]}, "over several lines"),
        ("[params.t]\na = 1\n", {"t": {"a": 2}}, "is a table"),
        ("[params]\na = 1\n", {"b": 2}, "no line setting params.b"),
        ("[params]\na = 1\n", {"a": {"x": 1}}, "takes a table"),
    ],
)
def test_params_the_editor_cannot_set_safely_are_refused(text, values, says):
    with pytest.raises(UsageError, match=re.escape(says)):
        set_values(text, values, name="gitpipe.toml")


@pytest.mark.parametrize(
    ("value", "written"),
    [(True, "true"), (3, "3"), (0.5, "0.5"), (1e-05, "1e-05"), (float("inf"), "inf"),
     ("é\n", '"é\\n"'), ([1, [2]], "[1, [2]]")],
)  # fmt: skip
def test_values_are_written_as_toml_reads_them_back(value, written):
    assert toml_value(value) == written
    assert set_values("[params]\nv = 0\n", {"v": value}) == f"[params]\nv = {written}\n"


def params_file_pipeline(ws: Workspace, name: str, text: str) -> None:
    """A pipeline whose `rate` and `model.depth` come from the params file ``name``,
    and `seed` from [params]; run and committed."""
    ws.write(name, text)
    ws.write(".gitignore", "out.txt\n")
    ws.pipeline(
        f'[pipeline]\nparams_files = ["{name}"]\n[params]\nseed = 1  # by hand\n'
        '[steps.a]\ncmd = "echo ${params.rate} ${params.model.depth} ${params.seed} > out.txt"\n'
        'outs = ["out.txt"]\n'
    )
    ws.ok("repro")
    ws.commit("a params file")


def changed_lines(ws: Workspace, name: str) -> list[str]:
    diff = git(ws.root, "diff", "-U0", name).splitlines()
    return [line for line in diff if line[:1] in "+-" and line[:3] not in ("+++", "---")]


YAML_PARAMS = """\
# the knobs
rate: 0.1   # set by hand
model:
  depth: 3  # layers
  name: "small"
"""


def test_apply_writes_a_param_into_a_yaml_params_file_keeping_its_comments(workspace):
    params_file_pipeline(workspace, "params.yaml", YAML_PARAMS)
    workspace.ok("repro", "-p", "rate=1e-05", "-p", "model.depth=5", "-p", "seed=7")
    made = (workspace.root / "out.txt").read_text()
    workspace.ok("repro")
    applied = workspace.ok("exp", "apply", last_id(workspace)).stdout
    assert "model.depth = 5, rate = 1e-05, seed = 7 in params.yaml and gitpipe.toml" in applied
    assert "commit params.yaml, gitpipe.toml and gitpipe.lock to keep it" in applied
    assert (workspace.root / "out.txt").read_text() == made
    assert changed_lines(workspace, "params.yaml") == [
        "-rate: 0.1   # set by hand",
        "+rate: 1.0e-05   # set by hand",
        "-  depth: 3  # layers",
        "+  depth: 5  # layers",
    ]
    assert changed_lines(workspace, "gitpipe.toml") == [
        "-seed = 1  # by hand",
        "+seed = 7  # by hand",
    ]
    workspace.ok("status", "--check")


def test_apply_writes_a_param_into_a_json_params_file_laid_out_as_json_dumps_does(workspace):
    text = json.dumps({"rate": 0.1, "model": {"depth": 3, "name": "small"}}, indent=4) + "\n"
    params_file_pipeline(workspace, "params.json", text)
    workspace.ok("repro", "-p", "model.depth=5")
    result = json.loads(workspace.ok("exp", "apply", last_id(workspace), "--json").stdout)
    assert result["files"] == ["params.json"]
    assert changed_lines(workspace, "params.json") == [
        '-        "depth": 3,',
        '+        "depth": 5,',
    ]
    workspace.ok("status", "--check")


def test_apply_writes_a_param_into_a_toml_params_file(workspace):
    params_file_pipeline(workspace, "params.toml", "rate = 0.1  # hand\n[model]\ndepth = 3\n")
    workspace.ok("repro", "-p", "rate=0.5")
    workspace.ok("exp", "apply", last_id(workspace))
    assert changed_lines(workspace, "params.toml") == ["-rate = 0.1  # hand", "+rate = 0.5  # hand"]
    workspace.ok("status", "--check")


def test_apply_refuses_a_json_params_file_laid_out_otherwise_and_writes_nothing(workspace):
    params_file_pipeline(workspace, "params.json", '{"rate": 0.1,\n "model": {"depth": 3}}\n')
    workspace.ok("repro", "-p", "model.depth=5", "-p", "seed=2")
    refused(
        workspace,
        "exp",
        "apply",
        last_id(workspace),
        says=("params.json is not laid out as gitpipe writes JSON", "set model.depth = 5 in it"),
    )


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("rate: 0.1\nmodel: {depth: 3}\n", "no `key: value` line setting model.depth"),
        ("rate: 0.1\nmodel:\n  depth: &d 3\n", "written as a block, an anchor"),
        ("rate: 0.1\nmodel:\n  depth: 3\n  depth2: 3\n", None),
    ],
    ids=["flow mapping", "anchor", "fine"],
)
def test_apply_refuses_a_yaml_value_it_cannot_set_on_its_line(workspace, text, says):
    params_file_pipeline(workspace, "params.yaml", text)
    workspace.ok("repro", "-p", "model.depth=5")
    if says is None:
        workspace.ok("exp", "apply", last_id(workspace))
        assert "depth: 5\n  depth2: 3\n" in (workspace.root / "params.yaml").read_text()
        return
    refused(workspace, "exp", "apply", last_id(workspace), says=("params.yaml", says))


@pytest.mark.parametrize(
    "value",
    [
        0,
        -3,
        0.5,
        1e-05,
        1e20,
        -2.5e-300,
        True,
        False,
        None,
        "a: b # c",
        "ünï\n\t'\"",
        [1, 2.5, "x"],
    ],
)
def test_a_value_written_as_yaml_reads_back_as_itself(value):
    assert yaml.safe_load(f"v: {yaml_value(value)}  # kept\n") == {"v": value}
    day = datetime.date(2026, 12, 7)
    assert yaml.safe_load(f"v: {yaml_value(day)}\n") == {"v": day}
