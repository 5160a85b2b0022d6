"""Lineage: `.gitpipe/lineage.db` and the commands that read it (log, show, lineage,
metrics), the step graph (dag), and the database's schema, migrations and failures."""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import sqlite3
import sys

import blake3
import pytest
import sqlite_utils
from conftest import Workspace, git

from gitpipe.run.lineage import MIGRATIONS, SCHEMA_VERSION

SCORE = """
import json
counts = [line.split() for line in open("counts.txt")]
words = sum(int(n) for n, _ in counts)
with open("metrics.json", "w") as out:
    json.dump({
        "words": words,
        "distinct": len(counts),
        "ratio": len(counts) / words,
        "whole": 2.0,
        "passed": True,
        "label": "first",
        "detail": {"depth": 3},
    }, out)
"""

CHAIN = f"""
[steps.clean]
cmd = "tr A-Z a-z < data/raw.txt > clean.txt"
deps = ["data/raw.txt"]
outs = ["clean.txt"]

[steps.count]
cmd = "sort clean.txt | uniq -c > counts.txt"
deps = ["clean.txt"]
outs = ["counts.txt"]
env = {{ LC_ALL = "C" }}

[steps.score]
cmd = "{sys.executable} score.py"
deps = ["score.py", "counts.txt"]
metrics = ["metrics.json"]
"""

RAW = "Apple\npear\napple\nFig\n"


def chain(workspace: Workspace) -> Workspace:
    workspace.write("data/raw.txt", RAW)
    workspace.write("score.py", SCORE)
    workspace.write(".gitignore", "clean.txt\ncounts.txt\nmetrics.json\n")
    workspace.pipeline(CHAIN)
    workspace.commit("pipeline")
    return workspace


def head(workspace: Workspace) -> str:
    return git(workspace.root, "rev-parse", "HEAD").strip()


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def lineage_db(workspace: Workspace) -> sqlite3.Connection:
    return sqlite3.connect(workspace.root / ".gitpipe" / "lineage.db")


# -- log and show ------------------------------------------------------------------


def test_log_before_any_run_says_there_is_no_lineage_yet(workspace):
    chain(workspace)
    result = workspace.gitpipe("log")
    assert result.exit_code == 5
    assert "no lineage yet" in one_line(result.stderr)
    assert "gitpipe repro" in result.stderr  # what to do next
    assert not (workspace.root / ".gitpipe" / "lineage.db").exists()


def test_log_lists_each_run_with_its_status_counts_and_commit(workspace):
    chain(workspace)
    workspace.ok("repro")

    (run,) = json.loads(workspace.ok("log", "--json").stdout)
    assert run["status"] == "ok"
    assert run["counts"] == {"ran": 3}
    assert run["git_commit"] == head(workspace)
    assert run["dirty"] is False
    assert isinstance(run["argv"], list)  # in-process, it holds pytest's own argv
    assert run["ended"] >= run["started"]

    text = workspace.ok("log").stdout
    assert run["id"] in text
    assert "3 ran" in text

    workspace.ok("repro")
    newest, oldest = json.loads(workspace.ok("log", "--json").stdout)
    assert oldest["id"] == run["id"]
    assert newest["counts"] == {"up to date": 3}


def test_show_lists_the_executions_of_a_run_by_last_id_or_prefix(workspace):
    chain(workspace)
    workspace.ok("repro")

    shown = json.loads(workspace.ok("show", "last", "--json").stdout)
    run_id = shown["run"]
    assert [(e["step"], e["state"]) for e in shown["executions"]] == [
        ("clean", "ran"),
        ("count", "ran"),
        ("score", "ran"),
    ]
    for execution in shown["executions"]:
        assert execution["exit_code"] == 0
        assert execution["key"].startswith("b3:")
        assert execution["ended"] >= execution["started"]

    assert json.loads(workspace.ok("show", run_id, "--json").stdout) == shown
    assert json.loads(workspace.ok("show", run_id[:-2], "--json").stdout) == shown
    text = workspace.ok("show", run_id[:-2]).stdout
    assert f"run {run_id}" in text
    assert "score" in text
    assert "ran" in text


def test_an_unknown_or_ambiguous_run_id_is_a_one_line_lineage_error(workspace):
    chain(workspace)
    workspace.ok("repro")
    workspace.ok("repro")

    unknown = workspace.gitpipe("show", "no-such-run")
    assert unknown.exit_code == 5
    assert "no-such-run" in one_line(unknown.stderr)
    assert "Traceback" not in unknown.output

    (first, second) = [run["id"] for run in json.loads(workspace.ok("log", "--json").stdout)]
    common = ""
    for a, b in zip(first, second, strict=True):
        if a != b:
            break
        common += a
    ambiguous = workspace.gitpipe("show", common)
    assert ambiguous.exit_code == 5
    assert "2 runs" in one_line(ambiguous.stderr)


# -- lineage PATH --------------------------------------------------------------------


def test_lineage_walks_back_from_an_output_to_the_raw_inputs(workspace):
    chain(workspace)
    workspace.ok("repro")
    run_id = json.loads(workspace.ok("show", "last", "--json").stdout)["run"]
    commit = head(workspace)

    tree = json.loads(workspace.ok("lineage", "metrics.json", "--json").stdout)
    assert (tree["path"], tree["step"], tree["run"], tree["commit"], tree["state"]) == (
        "metrics.json",
        "score",
        run_id,
        commit,
        "ran",
    )
    inputs = {node["path"]: node for node in tree["inputs"]}
    assert set(inputs) == {"counts.txt", "score.py"}
    assert inputs["score.py"]["step"] is None  # a raw input: no step wrote it
    counts = inputs["counts.txt"]
    assert (counts["step"], counts["run"], counts["commit"]) == ("count", run_id, commit)
    (clean,) = counts["inputs"]
    assert (clean["path"], clean["step"]) == ("clean.txt", "clean")
    (raw,) = clean["inputs"]
    assert (raw["path"], raw["step"], raw["inputs"]) == ("data/raw.txt", None, [])
    assert raw["role"] == "dep"
    assert raw["digest"].startswith("b3:")

    text = workspace.ok("lineage", "metrics.json").stdout
    lines = text.splitlines()
    assert lines[0].startswith("metrics.json  <- step score")
    assert run_id in lines[0]
    assert commit[:10] in lines[0]
    raw_line = next(line for line in lines if "data/raw.txt" in line)
    assert "raw input" in raw_line
    assert raw_line.startswith("      data/raw.txt")  # three levels down: score, count, clean
    assert "clean.txt  <- step clean" in text
    assert "score.py  (code, raw input" in text  # a script a command runs is code


def test_lineage_of_restored_bytes_names_the_run_where_they_were_made(workspace):
    chain(workspace)
    workspace.ok("repro")
    first = json.loads(workspace.ok("show", "last", "--json").stdout)["run"]

    (workspace.root / "metrics.json").unlink()
    workspace.ok("repro")
    assert workspace.states()["score"] == "cached"
    second = json.loads(workspace.ok("show", "last", "--json").stdout)["run"]
    assert second != first

    tree = json.loads(workspace.ok("lineage", "metrics.json", "--json").stdout)
    assert (tree["step"], tree["run"], tree["state"]) == ("score", first, "ran")
    assert f"ran in run {first}" in workspace.ok("lineage", "metrics.json").stdout


def test_lineage_of_a_path_no_step_wrote_is_a_usage_error(workspace):
    chain(workspace)
    workspace.ok("repro")

    raw = workspace.gitpipe("lineage", "data/raw.txt")
    assert raw.exit_code == 2
    assert "raw input" in one_line(raw.stderr)
    as_json = workspace.gitpipe("lineage", "data/raw.txt", "--json")
    assert as_json.exit_code == 2
    assert as_json.stdout == ""

    (workspace.root / "clean.txt").write_text("edited by hand\n")
    edited = workspace.gitpipe("lineage", "clean.txt")
    assert edited.exit_code == 2
    assert "clean.txt" in one_line(edited.stderr)

    missing = workspace.gitpipe("lineage", "nowhere.txt")
    assert missing.exit_code == 2
    assert "does not exist" in one_line(missing.stderr)


# -- lineage PATH follows exactly the bytes there -------------------------------------

NOISE = """
import os, sys
with open(sys.argv[2], "wb") as out:
    out.write(os.urandom(int(sys.argv[1])))
"""

NOISY = f"""
[params]
size = 8

[steps.noise]
cmd = "{sys.executable} noise.py ${{params.size}} noise.bin"
deps = ["noise.py"]
outs = ["noise.bin"]

[steps.double]
cmd = "cat noise.bin noise.bin > double.bin"
deps = ["noise.bin"]
outs = ["double.bin"]
"""


def noisy(workspace: Workspace) -> Workspace:
    """Two steps whose outputs differ every time `noise` runs."""
    workspace.write("noise.py", NOISE)
    workspace.write(".gitignore", "*.bin\n")
    workspace.pipeline(NOISY)
    workspace.commit("noisy")
    return workspace


def last_run_id(workspace: Workspace) -> str:
    return json.loads(workspace.ok("show", "last", "--json").stdout)["run"]


def lineage_json(workspace: Workspace, path: str) -> dict:
    return json.loads(workspace.ok("lineage", path, "--json").stdout)


def b3(workspace: Workspace, path: str) -> str:
    return "b3:" + blake3.blake3((workspace.root / path).read_bytes()).hexdigest()


def test_lineage_of_bytes_restored_after_an_edit_and_a_revert_names_the_run_that_made_them(
    workspace,
):
    noisy(workspace)
    workspace.ok("repro")
    first, commit = last_run_id(workspace), head(workspace)
    made = b3(workspace, "noise.bin")

    workspace.pipeline(NOISY.replace("size = 8", "size = 9"))  # not committed
    workspace.ok("repro")
    second = last_run_id(workspace)
    tree = lineage_json(workspace, "noise.bin")
    assert (tree["run"], tree["state"], tree["dirty"], tree["restored"]) == (
        second,
        "ran",
        True,
        None,
    )
    assert "commit " + commit[:10] + "+dirty" in workspace.ok("lineage", "noise.bin").stdout

    git(workspace.root, "checkout", "gitpipe.toml")
    workspace.ok("repro")
    assert workspace.states() == {"noise": "cached", "double": "cached"}
    third = last_run_id(workspace)
    assert b3(workspace, "noise.bin") == made

    tree = lineage_json(workspace, "double.bin")
    assert (tree["step"], tree["run"], tree["state"], tree["dirty"]) == (
        "double",
        first,
        "ran",
        False,
    )
    assert (tree["restored"]["run"], tree["restored"]["state"]) == (third, "cached")
    assert tree["restored"]["dirty"] is False
    (noise,) = [node for node in tree["inputs"] if node["path"] == "noise.bin"]
    assert (noise["step"], noise["run"], noise["digest"]) == ("noise", first, made)
    assert noise["restored"] is None  # what `double` read in the first run was new then

    assert lineage_json(workspace, "noise.bin")["run"] == first
    text = workspace.ok("lineage", "double.bin").stdout.splitlines()
    assert text[0] == (
        f"double.bin  <- step double (ran in run {first}, commit {commit[:10]}; "
        f"restored from the store in run {third}, commit {commit[:10]})"
    )
    assert text[1].startswith(f"  noise.bin  <- step noise (ran in run {first}, ")


def test_lineage_after_a_forced_rerun_tells_old_bytes_from_new(workspace):
    noisy(workspace)
    workspace.ok("repro")
    first = last_run_id(workspace)
    made_first = b3(workspace, "noise.bin")
    workspace.ok("repro", "--force", "noise")
    second = last_run_id(workspace)
    assert workspace.states() == {"noise": "ran"}

    assert lineage_json(workspace, "noise.bin")["run"] == second
    tree = lineage_json(workspace, "double.bin")  # not made again yet: from the first bytes
    (noise,) = tree["inputs"]
    assert (tree["run"], noise["run"], noise["digest"]) == (first, first, made_first)

    workspace.ok("repro")
    third = last_run_id(workspace)
    tree = lineage_json(workspace, "double.bin")
    (noise,) = tree["inputs"]
    assert (tree["run"], noise["run"]) == (third, second)
    assert noise["digest"] == b3(workspace, "noise.bin") != made_first


def test_lineage_follows_what_a_step_read_when_later_runs_wrote_the_same_bytes(workspace):
    workspace.write("data/raw.txt", "ab\n")
    workspace.write("noise.py", NOISE)
    workspace.write(".gitignore", "*.txt\n*.bin\n!data/raw.txt\n")
    workspace.pipeline(
        f"""
        [steps.first]
        cmd = "cut -c1 data/raw.txt > first.txt"
        deps = ["data/raw.txt"]
        outs = ["first.txt"]

        [steps.second]
        cmd = "{sys.executable} noise.py 8 second.bin"
        deps = ["first.txt", "noise.py"]
        outs = ["second.bin"]
        """
    )
    workspace.commit("pipeline")
    workspace.ok("repro")
    first = last_run_id(workspace)
    raw_then = b3(workspace, "data/raw.txt")

    workspace.write("data/raw.txt", "ac\n")  # `first` writes the same bytes from it
    workspace.commit("other data")
    workspace.ok("repro")
    second = last_run_id(workspace)
    assert workspace.states() == {"first": "ran", "second": "up to date"}

    tree = lineage_json(workspace, "second.bin")
    assert tree["run"] == first
    (made_from,) = [node for node in tree["inputs"] if node["path"] == "first.txt"]
    assert made_from["run"] == first  # not the later run that wrote the same bytes
    assert made_from["inputs"][0]["digest"] == raw_then
    assert lineage_json(workspace, "first.txt")["run"] == second

    workspace.write("data/raw.txt", "ab\n")
    workspace.commit("the data again")
    workspace.ok("repro")
    assert workspace.states()["first"] == "cached"
    third = last_run_id(workspace)
    tree = lineage_json(workspace, "first.txt")
    assert (tree["run"], tree["restored"]["run"]) == (first, third)
    assert tree["inputs"][0]["digest"] == raw_then


def test_lineage_prints_a_shared_upstream_once_and_says_see_above_after(workspace):
    diamond(workspace)
    workspace.ok("repro")

    text = workspace.ok("lineage", "join.txt").stdout
    assert "no run recorded" not in text
    assert "raw input" in text
    source = [line for line in text.splitlines() if line.strip().startswith("source.txt")]
    assert len(source) == 2, text
    assert source[0].strip().startswith("source.txt  <- step source (ran in run ")
    assert source[1].strip() == "source.txt  <- step source (see above)"
    assert text.count("data/raw.txt") == 1

    tree = lineage_json(workspace, "join.txt")
    left, right = sorted(tree["inputs"], key=lambda node: node["path"])
    (first,) = left["inputs"]
    (second,) = [node for node in right["inputs"] if node["path"] == "source.txt"]
    assert (first["seen"], second["seen"]) == (False, True)
    assert first["execution"] == second["execution"]
    assert first["inputs"] and not second["inputs"]


SPLIT = """
import os
os.makedirs("parts", exist_ok=True)
for name in ("a.bin", "b.bin"):
    with open(f"parts/{name}", "wb") as out:
        out.write(os.urandom(8))
with open("tool.py", "w") as out:
    out.write(f"open('tool.txt', 'w').write({os.urandom(4).hex()!r})\\n")
"""


def test_lineage_finds_the_maker_of_files_inside_folders_and_of_generated_code(workspace):
    workspace.write("split.py", SPLIT)
    workspace.write(".gitignore", "parts/\n*.txt\ntool.py\n")
    workspace.pipeline(
        f"""
        [steps.split]
        cmd = "{sys.executable} split.py"
        outs = ["parts/", "tool.py"]

        [steps.one]
        cmd = "cat parts/a.bin > one.txt"
        deps = ["parts/a.bin"]
        outs = ["one.txt"]

        [steps.all]
        cmd = "cat parts/a.bin parts/b.bin > all.txt"
        deps = ["parts"]
        outs = ["all.txt"]

        [steps.tool]
        cmd = "{sys.executable} tool.py"
        deps = ["tool.py"]
        outs = ["tool.txt"]

        [steps.join]
        cmd = "cat one.txt all.txt tool.txt > join.txt"
        deps = ["one.txt", "all.txt", "tool.txt"]
        outs = ["join.txt"]
        """
    )
    workspace.commit("pipeline")
    workspace.ok("repro")
    run_id = last_run_id(workspace)

    text = workspace.ok("lineage", "join.txt").stdout
    assert "no run recorded" not in text
    assert "no recorded run" not in text
    raw = [line.strip().split()[0] for line in text.splitlines() if "raw input" in line]
    assert sorted(raw) == ["split.py", "split.py"] or raw == ["split.py"], text
    assert "    parts  <- step split (ran in run" in text  # `all` read it first
    assert "    parts/a.bin  <- step split, in parts/ (see above)" in text
    assert "    tool.py  <- step split (see above)" in text

    tree = lineage_json(workspace, "join.txt")
    nodes = {}
    stack = [tree]
    while stack:
        node = stack.pop()
        nodes.setdefault(node["path"], []).append(node)
        stack.extend(node["inputs"])
    (tool,) = nodes["tool.py"]
    assert (tool["role"], tool["step"], tool["run"]) == ("code", "split", run_id)
    (part,) = nodes["parts/a.bin"]
    assert (part["step"], part["within"], part["run"]) == ("split", "parts/", run_id)
    assert all(
        node["step"] for path, found in nodes.items() for node in found if path != "split.py"
    )

    for path in ("parts/a.bin", "parts", "parts/", "./parts/../one.txt"):
        found = lineage_json(workspace, path)
        assert (found["step"], found["run"]) == ("split" if "one" not in path else "one", run_id)


def test_lineage_says_when_no_recorded_run_wrote_an_upstream_outputs_bytes(workspace):
    chain(workspace)
    workspace.ok("repro")
    (workspace.root / ".gitpipe" / "lineage.db").unlink()  # a history that begins later
    workspace.ok("repro", "--force", "--single", "score")

    text = workspace.ok("lineage", "metrics.json").stdout.splitlines()
    assert text[0].startswith("metrics.json  <- step score (ran in run ")
    (counts,) = [line for line in text if "counts.txt" in line]
    assert counts.startswith(
        "  counts.txt  (dep, an output of step count, but no recorded run wrote these bytes, b3:"
    )
    tree = lineage_json(workspace, "metrics.json")
    (node,) = [n for n in tree["inputs"] if n["path"] == "counts.txt"]
    assert (node["step"], node["run"], node["inputs"]) == (None, None, [])


def test_lineage_of_an_output_linked_from_the_store_names_the_output(workspace):
    workspace.write("noise.py", NOISE)
    workspace.write(".gitignore", "*.bin\n")
    workspace.pipeline(
        f"""
        [steps.noise]
        cmd = "{sys.executable} noise.py 8 noise.bin"
        outs = ["noise.bin"]
        link = "symlink"
        """
    )
    workspace.commit("pipeline")
    workspace.ok("repro")
    assert (workspace.root / "noise.bin").is_symlink()

    tree = lineage_json(workspace, "noise.bin")
    assert (tree["path"], tree["step"], tree["run"]) == (
        "noise.bin",
        "noise",
        last_run_id(workspace),
    )
    assert workspace.ok("lineage", "noise.bin").stdout.startswith("noise.bin  <- step noise")


# -- metrics --------------------------------------------------------------------------


def test_metrics_shows_the_latest_values_with_their_types(workspace):
    chain(workspace)
    workspace.ok("repro")

    values = json.loads(workspace.ok("metrics", "--json").stdout)
    assert values == {
        "score": {
            "metrics.json": {
                "detail.depth": 3,
                "distinct": 3,
                "label": "first",
                "passed": True,
                "ratio": 0.75,
                "whole": 2.0,
                "words": 4,
            }
        }
    }
    found = values["score"]["metrics.json"]
    assert type(found["words"]) is int
    assert type(found["detail.depth"]) is int
    assert type(found["whole"]) is float
    assert type(found["ratio"]) is float
    assert found["passed"] is True

    text = workspace.ok("metrics").stdout
    assert "score  metrics.json  ratio = 0.75" in text
    assert "score  metrics.json  words = 4" in text

    workspace.write("data/raw.txt", RAW + "kiwi\n")
    workspace.commit("more data")
    workspace.ok("repro")
    latest = json.loads(workspace.ok("metrics", "--json").stdout)["score"]["metrics.json"]
    assert (latest["words"], latest["distinct"], latest["ratio"]) == (5, 4, 0.8)


def test_metrics_before_any_metrics_are_recorded(workspace):
    workspace.write("data/raw.txt", RAW)
    workspace.write(".gitignore", "clean.txt\n")
    workspace.pipeline(CHAIN.split("[steps.count]")[0])
    workspace.commit("pipeline")
    workspace.ok("repro")
    assert json.loads(workspace.ok("metrics", "--json").stdout) == {}
    assert "no metrics" in workspace.ok("metrics").stdout


# -- dag ---------------------------------------------------------------------------

DIAMOND = """
[steps.source]
cmd = "cp data/raw.txt source.txt"
deps = ["data/raw.txt"]
outs = ["source.txt"]

[steps.left]
cmd = "tr a-z A-Z < source.txt > left.txt"
deps = ["source.txt"]
outs = ["left.txt"]

[steps.right]
cmd = "cat source.txt extra.txt > right.txt"
deps = ["source.txt", "extra.txt"]
outs = ["right.txt"]

[steps.join]
cmd = "cat left.txt right.txt > join.txt"
deps = ["left.txt", "right.txt"]
outs = ["join.txt"]
"""

EDGES = [["source", "left"], ["source", "right"], ["left", "join"], ["right", "join"]]


def diamond(workspace: Workspace) -> Workspace:
    workspace.write("data/raw.txt", "a\nb\n")
    workspace.write("extra.txt", "c\n")
    workspace.write(".gitignore", "source.txt\nleft.txt\nright.txt\njoin.txt\n")
    workspace.pipeline(DIAMOND)
    workspace.commit("diamond")
    return workspace


def dag_states(workspace: Workspace) -> dict[str, str]:
    graph = json.loads(workspace.ok("dag", "--json").stdout)
    return {step["step"]: step["state"] for step in graph["steps"]}


def test_dag_renders_the_graph_with_each_steps_state(workspace):
    diamond(workspace)

    graph = json.loads(workspace.ok("dag", "--json").stdout)
    assert sorted(graph["edges"]) == sorted(EDGES)
    parents = {step["step"]: sorted(step["parents"]) for step in graph["steps"]}
    assert parents == {
        "source": [],
        "left": ["source"],
        "right": ["source"],
        "join": ["left", "right"],
    }
    assert set(dag_states(workspace).values()) == {"stale"}

    mermaid = workspace.ok("dag", "--mermaid").stdout
    assert mermaid.startswith("graph TD")
    assert mermaid.count("-->") == len(EDGES)
    assert "s_source --> s_left" in mermaid
    assert "s_right --> s_join" in mermaid

    dot = workspace.ok("dag", "--dot").stdout
    assert dot.startswith("digraph")
    assert dot.count(" -> ") == len(EDGES)
    assert '"left" -> "join";' in dot
    assert dot.rstrip().endswith("}")

    text = workspace.ok("dag").stdout
    assert "join" in text
    assert "left, right" in text

    both = workspace.gitpipe("dag", "--mermaid", "--dot")
    assert both.exit_code == 2
    one_line(both.stderr)


def test_dag_states_follow_staleness(workspace):
    diamond(workspace)
    workspace.ok("repro")
    assert set(dag_states(workspace).values()) == {"up to date"}
    assert "up to date" in workspace.ok("dag", "--mermaid").stdout

    workspace.write("extra.txt", "changed\n")  # a dependency of `right` only
    assert dag_states(workspace) == {
        "source": "up to date",
        "left": "up to date",
        "right": "stale",
        "join": "stale",  # it reads what `right` will write
    }
    mermaid = workspace.ok("dag", "--mermaid").stdout
    assert ":::stale" in mermaid
    assert ":::fresh" in mermaid

    workspace.ok("repro")
    assert set(dag_states(workspace).values()) == {"up to date"}


def test_dag_shows_a_step_its_when_skips_in_every_rendering(workspace):
    workspace.write(".gitignore", "*.txt\n")
    workspace.pipeline(
        """
        [params]
        mode = "quick"

        [steps.make]
        cmd = "echo made > made.txt"
        outs = ["made.txt"]

        [steps.full]
        cmd = "echo full > full.txt"
        when = "${params.mode} == 'full'"
        outs = ["full.txt"]

        [steps.report]
        cmd = "cp full.txt report.txt"
        deps = ["full.txt"]
        outs = ["report.txt"]
        """
    )
    workspace.commit("gated")
    assert dag_states(workspace) == {"make": "stale", "full": "skipped", "report": "skipped"}

    mermaid = workspace.ok("dag", "--mermaid").stdout
    assert 's_full["full<br/><i>skipped</i>"]:::skipped' in mermaid
    assert 's_report["report<br/><i>skipped</i>"]:::skipped' in mermaid
    assert "s_full --> s_report" in mermaid
    named = {line.rsplit(":::", 1)[1] for line in mermaid.splitlines() if ":::" in line}
    defined = {line.split()[1] for line in mermaid.splitlines() if "classDef" in line}
    assert named <= defined, mermaid
    assert '"full" [label="full\\nskipped"' in workspace.ok("dag", "--dot").stdout
    assert "full    [skipped]" in workspace.ok("dag").stdout


# -- the schema is an interface -------------------------------------------------------


def test_the_schema_is_versioned_and_plain_sql_finds_who_wrote_a_path(workspace):
    chain(workspace)
    workspace.ok("repro")

    with contextlib.closing(lineage_db(workspace)) as db:
        (version,) = db.execute("PRAGMA user_version").fetchone()
        assert version == SCHEMA_VERSION
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"runs", "executions", "artifacts", "io", "params", "metrics"} <= tables

        # the first example query of docs/lineage.md
        rows = db.execute(
            "SELECT r.id, r.git_commit, e.step, e.state"
            " FROM io JOIN executions e ON e.id = io.execution_id"
            " JOIN runs r ON r.id = e.run_id"
            " WHERE io.role = 'out' AND io.path = 'counts.txt'"
            " ORDER BY e.id DESC"
        ).fetchall()
        (run_id,) = db.execute("SELECT id FROM runs").fetchone()
        assert rows == [(run_id, head(workspace), "count", "ran")]

        # and what that execution read, with the bytes' size from artifacts
        reads = db.execute(
            "SELECT io.path, io.role, a.size FROM io"
            " JOIN executions e ON e.id = io.execution_id"
            " JOIN artifacts a ON a.digest = io.digest"
            " WHERE e.step = 'count' AND io.role != 'out'"
        ).fetchall()
        assert reads == [("clean.txt", "dep", len(RAW))]

        metric = db.execute(
            "SELECT m.value, m.text FROM metrics m JOIN executions e ON e.id = m.execution_id"
            " WHERE e.step = 'score' AND m.name = 'words'"
        ).fetchone()
        assert metric == (4.0, "4")


def test_a_version_1_database_is_migrated_and_keeps_its_runs(workspace):
    chain(workspace)
    path = workspace.root / ".gitpipe" / "lineage.db"
    path.parent.mkdir()
    old = sqlite_utils.Database(path)
    MIGRATIONS[0](old)
    old["runs"].insert(
        {
            "id": "20200101T000000Z-0ld0ld",
            "started": "2020-01-01T00:00:00.000+00:00",
            "ended": "2020-01-01T00:00:01.000+00:00",
            "git_commit": None,
            "dirty": None,
            "argv": '["repro"]',
            "host": "old-host",
            "status": "ok",
        }
    )
    old.execute("PRAGMA user_version = 1")
    old.conn.commit()
    old.close()

    result = workspace.ok("repro")
    assert (workspace.root / "metrics.json").exists()
    assert "lineage" not in result.stderr  # a migration is not a problem worth a notice

    with contextlib.closing(lineage_db(workspace)) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        runs = db.execute("SELECT id, host, backend FROM runs ORDER BY started").fetchall()
    assert runs[0] == ("20200101T000000Z-0ld0ld", "old-host", None)
    assert len(runs) == 2
    assert runs[1][2] == "threading"
    assert workspace.ran() == ["clean", "count", "score"]
    listed = [run["id"] for run in json.loads(workspace.ok("log", "--json").stdout)]
    assert listed[-1] == "20200101T000000Z-0ld0ld"


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def newer_database(path) -> None:
    path.parent.mkdir(exist_ok=True)
    db = sqlite_utils.Database(path)
    db["runs"].insert({"id": "from-the-future", "flavour": "unknown to this gitpipe"})
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.conn.commit()
    db.close()


def corrupt_database(path) -> None:
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(random.Random(3).randbytes(8192))


FOREIGN = {"newer": newer_database, "corrupt": corrupt_database}
KINDS = ["newer", "corrupt"]


def lineage_files(workspace: Workspace) -> list[str]:
    return sorted(p.name for p in (workspace.root / ".gitpipe").glob("lineage*"))


@pytest.mark.parametrize("kind", KINDS)
def test_a_foreign_lineage_database_does_not_stop_repro_and_is_left_untouched(workspace, kind):
    chain(workspace)
    path = workspace.root / ".gitpipe" / "lineage.db"
    FOREIGN[kind](path)
    before = digest(path)
    files = lineage_files(workspace)

    result = workspace.ok("repro")

    assert (workspace.root / "metrics.json").exists()
    assert (workspace.root / "gitpipe.lock").exists()
    assert "3 ran" in result.stdout
    notice = one_line(result.stderr)
    assert "lineage" in notice
    assert "not recorded" in notice
    assert digest(path) == before
    assert lineage_files(workspace) == files  # no -wal or -shm next to it either


@pytest.mark.parametrize("kind", KINDS)
def test_reading_a_foreign_lineage_database_is_a_one_line_error_that_changes_nothing(
    workspace, kind
):
    chain(workspace)
    path = workspace.root / ".gitpipe" / "lineage.db"
    FOREIGN[kind](path)
    before = digest(path)
    files = lineage_files(workspace)

    for command in (["log"], ["show", "last"], ["metrics", "--json"]):
        result = workspace.gitpipe(*command)
        assert result.exit_code == 5, (command, result.output)
        assert "lineage" in one_line(result.stderr)
        assert "Traceback" not in result.output
    assert digest(path) == before
    assert lineage_files(workspace) == files
