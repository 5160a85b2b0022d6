"""`gitpipe diff`: two commits, or a commit and the working tree, step by step."""

from __future__ import annotations

import json
import re

import pytest
from conftest import Workspace, git, snapshot

from gitpipe.history import diff as diffs

PIPELINE = """
[pipeline]
name = "demo"

[params]
unused = 1
[params.train]
lr = 0.1

[steps.prepare]
cmd = "cp data/raw.txt prepared.txt"
deps = ["data/raw.txt"]
outs = ["prepared.txt"]

[steps.train]
cmd = "python3 src/train.py"
deps = ["prepared.txt"]
params = ["train"]
outs = ["model.txt"]
metrics = ["metrics.json"]

[steps.report]
cmd = "wc -l prepared.txt > report.txt"
deps = ["prepared.txt"]
outs = ["report.txt"]

[steps.old]
cmd = "echo old > old.txt"
outs = ["old.txt"]
"""

TRAIN = """\
import json
import os

from util import scale

lr = json.loads(os.environ["GITPIPE_PARAMS"])["train"]["lr"]
with open("model.txt", "w") as handle:
    handle.write(f"lr={lr}\\n")
with open("metrics.json", "w") as handle:
    json.dump({"acc": round(scale(0.5 + lr), 4), "rows": 10}, handle)
"""


def edit(ws: Workspace, relpath: str, old: str, new: str) -> None:
    path = ws.root / relpath
    text = path.read_text()
    assert old in text, (old, text)
    path.write_text(text.replace(old, new))


def two_commits(ws: Workspace) -> None:
    """Tag `a`, then tag `b` with one change of each kind, each with its lock."""
    ws.write("data/raw.txt", "b\na\n")
    ws.write("src/train.py", TRAIN)
    ws.write("src/util.py", "def scale(x):\n    return x\n")
    ws.write(
        ".gitignore",
        "prepared.txt\nmodel.txt\nmetrics.json\nreport.txt\nold.txt\nevaluated.txt\n",
    )
    ws.pipeline(PIPELINE)
    ws.ok("repro")
    ws.commit("a")
    git(ws.root, "tag", "a")
    edit(ws, "gitpipe.toml", "lr = 0.1", "lr = 0.2")
    edit(ws, "gitpipe.toml", '"cp data/raw.txt prepared.txt"', '"cp -p data/raw.txt prepared.txt"')
    edit(
        ws,
        "gitpipe.toml",
        'wc -l prepared.txt > report.txt"\ndeps = ["prepared.txt"]',
        'wc -l prepared.txt > report.txt"\ndeps = ["prepared.txt", "model.txt"]',
    )
    edit(ws, "gitpipe.toml", '[steps.old]\ncmd = "echo old > old.txt"\nouts = ["old.txt"]\n', "")
    with (ws.root / "gitpipe.toml").open("a") as handle:
        handle.write(
            '\n[steps.evaluate]\ncmd = "cp metrics.json evaluated.txt"\n'
            'deps = ["metrics.json"]\nouts = ["evaluated.txt"]\n'
        )
    ws.write("src/util.py", "def scale(x):\n    return x * 1\n")
    ws.ok("repro")
    ws.commit("b")
    git(ws.root, "tag", "b")


def as_json(ws: Workspace, *args: str) -> dict:
    return json.loads(ws.ok("diff", "--json", *args).stdout)


def test_a_diff_between_two_commits_shows_each_kind_of_change(workspace):
    ws = workspace
    two_commits(ws)
    result = as_json(ws, "a", "b")
    assert result["a"]["label"] == "a"
    assert result["a"]["commit"] == git(ws.root, "rev-parse", "a").strip()
    assert result["changed"] is True
    steps = {step["step"]: step for step in result["steps"]}
    assert list(steps) == ["prepare", "train", "report", "evaluate", "old"]
    assert steps["evaluate"]["status"] == "added"
    assert steps["old"]["status"] == "removed"
    prepare = steps["prepare"]
    assert prepare["command"] == {
        "old": ["cp data/raw.txt prepared.txt"],
        "new": ["cp -p data/raw.txt prepared.txt"],
    }
    assert prepare["outputs"] == []  # the same bytes
    train = steps["train"]
    assert train["command"] is None
    assert train["code"] == [{"path": "src/util.py", "change": "modified"}]
    assert train["params"] == [{"key": "train.lr", "old": 0.1, "new": 0.2}]
    assert [out["path"] for out in train["outputs"]] == ["metrics.json", "model.txt"]
    assert all(
        out["old"].startswith("b3:") and out["new"] != out["old"] for out in train["outputs"]
    )
    (acc,) = train["metrics"]
    assert (acc["file"], acc["key"], acc["old"], acc["new"]) == ("metrics.json", "acc", 0.6, 0.7)
    assert acc["delta"] == pytest.approx(0.1)
    report = steps["report"]
    assert report["edges"] == {"added": ["train"], "removed": []}
    assert report["deps"] == {"added": ["model.txt"], "removed": []}
    assert result["params"] == []


def test_the_text_says_old_and_new_and_the_delta(workspace):
    ws = workspace
    two_commits(ws)
    text = ws.ok("diff", "a", "b").stdout
    assert "\x1b[" not in text  # no colour when not on a terminal
    lines = text.splitlines()
    assert lines[0] == (
        f"gitpipe diff: a ({git(ws.root, 'rev-parse', '--short=7', 'a').strip()}) -> "
        f"b ({git(ws.root, 'rev-parse', '--short=7', 'b').strip()})"
    )
    assert "~ train  (changed)" in lines
    assert "+ evaluate  (added)" in lines
    assert "- old  (removed)" in lines
    assert any(
        line.split()
        == [
            "command",
            "cp",
            "data/raw.txt",
            "prepared.txt",
            "->",
            "cp",
            "-p",
            "data/raw.txt",
            "prepared.txt",
        ]
        for line in lines
    )
    assert any(line.split() == ["code", "src/util.py", "(modified)"] for line in lines)
    assert any(line.split() == ["param", "train.lr", "0.1", "->", "0.2"] for line in lines)
    assert any(
        line.split() == ["metric", "metrics.json:", "acc", "0.6", "->", "0.7", "(+0.1)"]
        for line in lines
    )
    assert any(line.split()[:2] == ["output", "model.txt"] for line in lines)
    assert any(line.split() == ["edges", "+train"] for line in lines)


def test_the_markdown_table_fits_a_pull_request_comment(workspace):
    ws = workspace
    two_commits(ws)
    text = ws.ok("diff", "a", "b", "--md").stdout
    lines = text.splitlines()
    assert lines[0].startswith("**gitpipe diff** `a (")
    assert lines[2:4] == ["| step | change | before | after |", "| --- | --- | --- | --- |"]
    body = lines[4:]
    assert all(line.startswith("| ") and line.endswith(" |") for line in body)
    assert all(len(re.split(r"(?<!\\)\|", line)) == 6 for line in body)  # four cells
    assert "| `train` | param train.lr | 0.1 | 0.2 |" in body
    assert "| `train` | metric metrics.json: acc | 0.6 | 0.7 (+0.1) |" in body
    assert "| `evaluate` | added | | |" in body
    old, new = "`cp data/raw.txt prepared.txt`", "`cp -p data/raw.txt prepared.txt`"
    assert f"| `prepare` | command | {old} | {new} |" in body


#: params that reach train's command and env through ${params.X}
BY_REFERENCE = """
[params]
lr = 0.1
seed = 1

[steps.train]
cmd = "echo ${params.lr} > model.txt"
outs = ["model.txt"]
env = { SEED = "${params.seed}" }
"""


def by_reference(ws: Workspace) -> None:
    """Tag `a`; `b` changes the params only; `c` edits the command and the env and
    changes lr again."""
    ws.write(".gitignore", "model.txt\n")
    ws.pipeline(BY_REFERENCE)
    ws.commit("a")
    git(ws.root, "tag", "a")
    edit(ws, "gitpipe.toml", "lr = 0.1", "lr = 0.25")
    edit(ws, "gitpipe.toml", "seed = 1", "seed = 2")
    ws.commit("b")
    git(ws.root, "tag", "b")
    edit(ws, "gitpipe.toml", "echo ${params.lr}", "echo -n ${params.lr}")
    edit(ws, "gitpipe.toml", '"${params.seed}"', '"0${params.seed}"')
    edit(ws, "gitpipe.toml", "lr = 0.25", "lr = 0.5")
    ws.commit("c")
    git(ws.root, "tag", "c")


def test_a_param_that_reaches_a_command_by_reference_is_a_param_change_not_a_command_one(
    workspace,
):
    ws = workspace
    by_reference(ws)
    (train,) = as_json(ws, "a", "b")["steps"]
    assert train["command"] is None
    assert train["env"] == []
    assert train["params"] == [
        {"key": "lr", "old": 0.1, "new": 0.25},
        {"key": "seed", "old": 1, "new": 2},
    ]
    lines = ws.ok("diff", "a", "b").stdout.splitlines()
    assert [line.split() for line in lines[1:]] == [
        ["~", "train", "(changed)"],
        ["param", "lr", "0.1", "->", "0.25"],
        ["param", "seed", "1", "->", "2"],
    ]
    body = ws.ok("diff", "a", "b", "--md").stdout.splitlines()[4:]
    assert body == ["| `train` | param lr | 0.1 | 0.25 |", "| `train` | param seed | 1 | 2 |"]


def test_an_edited_command_shows_as_written_next_to_the_params_it_is_given(workspace):
    ws = workspace
    by_reference(ws)
    (train,) = as_json(ws, "b", "c")["steps"]
    assert train["command"] == {
        "old": ["echo ${params.lr} > model.txt"],
        "new": ["echo -n ${params.lr} > model.txt"],
    }
    assert train["env"] == [{"key": "SEED", "old": "${params.seed}", "new": "0${params.seed}"}]
    assert train["params"] == [{"key": "lr", "old": 0.25, "new": 0.5}]
    lines = ws.ok("diff", "b", "c").stdout.splitlines()
    assert " ".join(" ".join(lines[1:]).split()) == (  # a long command pair takes two lines
        "~ train (changed)"
        " command echo ${params.lr} > model.txt -> echo -n ${params.lr} > model.txt"
        ' env SEED "${params.seed}" -> "0${params.seed}"'
        " param lr 0.25 -> 0.5"
    )
    body = ws.ok("diff", "b", "c", "--md").stdout.splitlines()[4:]
    assert body == [
        "| `train` | command | `echo ${params.lr} > model.txt`"
        " | `echo -n ${params.lr} > model.txt` |",
        '| `train` | env SEED | "${params.seed}" | "0${params.seed}" |',
        "| `train` | param lr | 0.25 | 0.5 |",
    ]


def test_unchanged_steps_are_left_out_unless_all_is_asked(workspace):
    ws = workspace
    two_commits(ws)
    edit(ws, "gitpipe.toml", "lr = 0.2", "lr = 0.3")
    assert [s["step"] for s in as_json(ws)["steps"]] == ["train"]
    everything = as_json(ws, "--all")
    assert [(s["step"], s["status"]) for s in everything["steps"]] == [
        ("prepare", "unchanged"),
        ("train", "changed"),
        ("report", "unchanged"),
        ("evaluate", "unchanged"),
    ]
    same = ws.ok("diff", "b", "HEAD")
    assert same.stdout.splitlines()[1] == "no step changed"
    assert as_json(ws, "b", "HEAD")["changed"] is False
    assert ws.ok("diff", "b", "HEAD", "--md").stdout.endswith("No step changed.\n")


def test_diff_defaults_to_head_against_the_working_tree(workspace):
    ws = workspace
    two_commits(ws)
    edit(ws, "gitpipe.toml", "lr = 0.2", "lr = 0.3")
    edit(ws, "gitpipe.toml", "unused = 1", "unused = 2")
    ws.write("src/util.py", "def scale(x):\n    # a comment changes no code\n    return x * 1\n")
    result = as_json(ws)
    assert result["a"]["label"] == "HEAD"
    assert result["b"] == {
        "label": "working tree",
        "commit": None,
        "fingerprint": result["b"]["fingerprint"],
    }
    (train,) = result["steps"]
    assert train["params"] == [{"key": "train.lr", "old": 0.2, "new": 0.3}]
    assert train["code"] == []
    assert result["params"] == [{"key": "unused", "old": 1, "new": 2}]
    ws.ok("repro", "train")
    (train,) = as_json(ws, "HEAD")["steps"]  # the working tree's lock, not HEAD's
    assert train["metrics"][0]["new"] == 0.8


def test_diff_reads_git_objects_and_touches_neither_the_work_tree_nor_the_index(workspace):
    ws = workspace
    two_commits(ws)
    git(ws.root, "checkout", "-q", "a")
    edit(ws, "gitpipe.toml", "lr = 0.1", "lr = 0.4")  # uncommitted
    git(ws.root, "add", "gitpipe.toml")  # staged, so the index holds something of its own
    ws.write("notes.txt", "untracked\n")
    files = snapshot(ws.root)
    index = (ws.root / ".git" / "index").read_bytes()
    head = (ws.root / ".git" / "HEAD").read_bytes()
    for args in (("a", "b"), ("b", "a", "--json"), ("b",), (), ("main~1", "b", "--md")):
        ws.ok("diff", *args)
    assert snapshot(ws.root) == files
    assert (ws.root / ".git" / "index").read_bytes() == index
    assert (ws.root / ".git" / "HEAD").read_bytes() == head
    assert git(ws.root, "status", "--porcelain") == "M  gitpipe.toml\n?? notes.txt\n"


def test_an_unknown_revision_is_a_git_error_in_one_line(workspace):
    ws = workspace
    two_commits(ws)
    for args in (("nope",), ("a", "HEAD~9"), ("a^^^^^",), ("a..b",)):
        result = ws.gitpipe("diff", *args)
        assert result.exit_code == 4, args
        assert result.stderr.startswith("gitpipe: ")
        assert result.stderr.count("\n") == 1, result.stderr
        assert "Traceback" not in result.output
    assert "goes past the first commit" in ws.gitpipe("diff", "a", "HEAD~9").stderr


def test_json_and_markdown_cannot_be_asked_together(workspace):
    ws = workspace
    two_commits(ws)
    result = ws.gitpipe("diff", "--json", "--md")
    assert result.exit_code == 2
    assert result.stderr == "gitpipe: choose one of --json and --md\n"  # not click's usage


def test_a_diff_works_in_a_subfolder_pipeline_and_from_before_it_existed(workspace):
    ws = workspace
    ws.write("README.md", "a larger repository\n")
    ws.commit("before the pipeline")
    ws.write("ml/in.txt", "1\n")
    ws.write("ml/gitpipe.toml", '[steps.copy]\ncmd = "cp in.txt out.txt"\ndeps = ["in.txt"]\n')
    ws.commit("pipeline")
    result = as_json(ws, "HEAD~1", "HEAD", "-f", "ml/gitpipe.toml")
    assert [(s["step"], s["status"]) for s in result["steps"]] == [("copy", "added")]
    result = as_json(ws, "HEAD", "HEAD~1", "-f", "ml/gitpipe.toml")
    assert [(s["step"], s["status"]) for s in result["steps"]] == [("copy", "removed")]


def test_an_invalid_pipeline_on_one_side_names_the_side(workspace):
    ws = workspace
    two_commits(ws)
    (ws.root / "gitpipe.toml").write_text("[steps.x\n")
    ws.commit("broken")
    result = ws.gitpipe("diff", "a", "HEAD")
    assert result.exit_code == 2
    assert result.stderr.startswith("gitpipe: at HEAD: gitpipe.toml")


def test_the_text_renderer_styles_by_role_so_the_cli_can_colour_it(workspace):
    ws = workspace
    two_commits(ws)
    result = diffs.diff(ws.root / "gitpipe.toml", "a", "b", state_dir=ws.root / ".gitpipe")
    roles: set[str] = set()

    def style(text: str, role: str) -> str:
        roles.add(role)
        return f"<{role}>{text}</{role}>"

    text = diffs.render_text(result, style=style)
    assert "<new>0.2</new>" in text
    assert "<old>0.1</old>" in text
    assert {"heading", "added", "removed", "changed", "old", "new"} <= roles


def test_an_added_step_shows_all_it_is_and_a_removed_one_all_it_was(workspace):
    ws = workspace
    two_commits(ws)
    steps = {step["step"]: step for step in as_json(ws, "a", "b")["steps"]}
    evaluate, old = steps["evaluate"], steps["old"]
    assert evaluate["command"] == {"old": [], "new": ["cp metrics.json evaluated.txt"]}
    assert evaluate["deps"] == {"added": ["metrics.json"], "removed": []}
    assert evaluate["outs"] == {"added": ["evaluated.txt"], "removed": []}
    assert evaluate["edges"] == {"added": ["train"], "removed": []}
    assert old["command"] == {"old": ["echo old > old.txt"], "new": []}
    assert old["outs"] == {"added": [], "removed": ["old.txt"]}

    lines = ws.ok("diff", "a", "b").stdout.splitlines()
    at = lines.index("+ evaluate  (added)")
    shown = [line.split() for line in lines[at + 1 : at + 6]]
    assert ["command", "(none)", "->", "cp", "metrics.json", "evaluated.txt"] in shown
    assert ["deps", "+metrics.json"] in shown


def test_a_metric_delta_is_shown_to_the_precision_of_its_values():
    assert diffs.delta_text(0.9731 - 0.9715, 0.9715, 0.9731) == "+0.0016"
    assert diffs.delta_text(0.7 - 0.6, 0.6, 0.7) == "+0.1"
    assert diffs.delta_text(3, 1, 4) == "+3"
    assert diffs.delta_text(2.5e-12 - 1e-12, 1e-12, 2.5e-12) == "+1.5e-12"
    assert diffs.delta_text(None, None, 1) == ""
