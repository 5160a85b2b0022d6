"""`gitpipe metrics --history`: each step's metrics per version, read from the
gitpipe.lock of each commit on HEAD's first-parent line (nothing checked out), and
the working tree's, with deltas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import Workspace, git, make_repo, refused, snapshot

import gitpipe
from gitpipe.store import lockfile
from gitpipe.workspace import Project
from gitpipe.workspace.experiments import MetricsHistory, VersionMetrics

PIPELINE = """
[params]
scale = 10

[steps.train]
cmd = "python3 train.py"
deps = ["data/n.txt"]
params = ["scale"]
outs = ["model.txt"]
metrics = ["metrics.json"]

[steps.size]
cmd = "wc -c < model.txt > size.txt"
deps = ["model.txt"]
outs = ["size.txt"]
"""

TRAIN = """\
import json, os
n = int(open("data/n.txt").read())
scale = json.loads(os.environ["GITPIPE_PARAMS"])["scale"]
open("model.txt", "w").write("x" * n)
json.dump({"acc": n / scale, "nested": {"loss": scale - n}, "label": "run", "ok": True},
          open("metrics.json", "w"))
"""


def set_n(ws: Workspace, n: int) -> None:
    ws.write("data/n.txt", f"{n}\n")


def history(ws: Workspace, *args: str) -> dict:
    return json.loads(ws.ok("metrics", "--history", "--json", *args).stdout)


def built(ws: Workspace) -> dict[str, str]:
    """A first-parent line: a commit without a lock, three that record results (one
    of them a merge of a branch whose own commit is off the line), and a commit that
    leaves the lock alone.  The commits by name."""
    ws.write(".gitignore", "model.txt\nsize.txt\nmetrics.json\n")
    ws.write("train.py", TRAIN)
    ws.pipeline(PIPELINE)
    set_n(ws, 5)
    ws.commit("pipeline, no lock yet")
    ws.ok("repro")
    ws.commit("first results")
    set_n(ws, 7)
    ws.ok("repro")
    ws.commit("more data")
    ws.write("README.md", "notes\n")
    ws.commit("readme only")
    git(ws.root, "checkout", "-q", "-b", "feature")
    set_n(ws, 8)
    ws.ok("repro")
    ws.commit("on a branch")
    git(ws.root, "checkout", "-q", "main")
    git(ws.root, "merge", "-q", "--no-ff", "-m", "merge the branch", "feature")
    ws.ok("repro")  # the merged data's results are those the branch recorded
    names = {}
    for line in git(ws.root, "log", "--all", "--format=%H %s").splitlines():
        sha, subject = line.split(" ", 1)
        names[subject] = sha
    return names


def test_each_commit_that_recorded_results_is_a_point_oldest_first(workspace):
    commits = built(workspace)
    points = history(workspace)["points"]
    assert [p["subject"] for p in points] == ["first results", "more data", "merge the branch"]
    assert [p["commit"] for p in points] == [
        commits["first results"],
        commits["more data"],
        commits["merge the branch"],
    ]
    assert [p["metrics"]["train"]["acc"] for p in points] == [0.5, 0.7, 0.8]
    # only numbers: text and booleans are left out, nested values are dotted
    assert points[0]["metrics"] == {"train": {"acc": 0.5, "nested.loss": 5}}
    assert commits["on a branch"] not in [p["commit"] for p in points]


def test_points_carry_the_versions_gitpipe_versions_derives(workspace):
    built(workspace)
    workspace.write("gitpipe.toml", PIPELINE.replace("scale = 10", "scale = 20"))
    workspace.ok("repro")
    workspace.commit("a new scale")
    versions = json.loads(workspace.ok("versions", "--json").stdout)["versions"]
    by_commit = {v["commit"]: v["version"] for v in versions}
    points = history(workspace)["points"]
    assert points[-1]["version"] == by_commit[points[-1]["commit"]] == "1.0.1"
    assert {p["version"] for p in points[:-1]} == {"1.0.0"}


def test_deltas_are_measured_from_the_point_before(workspace):
    built(workspace)
    points = history(workspace)["points"]
    assert points[0]["deltas"] == {}
    assert points[1]["deltas"] == {"train": {"acc": pytest.approx(0.2), "nested.loss": -2}}
    assert points[2]["deltas"]["train"]["nested.loss"] == -1


def test_the_working_tree_is_a_point_only_when_its_lock_records_other_metrics(workspace):
    built(workspace)
    assert all(p["commit"] is not None for p in history(workspace)["points"])
    set_n(workspace, 9)
    workspace.ok("repro")
    last = history(workspace)["points"][-1]
    assert last["commit"] is None
    assert last["subject"] == "working tree"
    assert last["version"] == "1.0.0+dirty"
    assert last["metrics"]["train"]["acc"] == 0.9
    assert last["deltas"]["train"]["acc"] == pytest.approx(0.1)


def test_n_keeps_the_newest_points(workspace):
    built(workspace)
    points = history(workspace, "-n", "2")["points"]
    assert [p["subject"] for p in points] == ["more data", "merge the branch"]
    assert points[0]["deltas"] == {}  # the point before it is not shown: no delta


def test_the_json_holds_plain_values_in_a_fixed_shape(workspace):
    built(workspace)
    result = history(workspace)
    assert list(result) == ["points"]
    for point in result["points"]:
        assert list(point) == ["version", "commit", "time", "subject", "metrics", "deltas"]
        assert isinstance(point["time"], (int, float))


def test_the_text_shows_one_row_per_version_with_each_metric_and_its_delta(workspace):
    built(workspace)
    lines = workspace.ok("metrics", "--history").stdout.splitlines()
    assert lines[0].split() == ["version", "commit", "acc", "nested.loss"]
    assert lines[1].split() == ["1.0.0", lines[1].split()[1], "0.5", "5"]
    assert "0.7 (+0.2)" in lines[2] and "3 (-2)" in lines[2]
    assert len(lines) == 4


def test_several_steps_with_metrics_are_told_apart_by_step(workspace):
    built(workspace)
    workspace.write(
        "gitpipe.toml",
        PIPELINE
        + '\n[steps.score]\ncmd = "echo \'{\\"f1\\": 0.25}\' > score.json"\n'
        + 'metrics = ["score.json"]\n',
    )
    workspace.write(".gitignore", "model.txt\nsize.txt\nmetrics.json\nscore.json\n")
    workspace.ok("repro")
    header = workspace.ok("metrics", "--history").stdout.splitlines()[0].split()
    assert header == ["version", "commit", "score.f1", "train.acc", "train.nested.loss"]


def test_reading_history_checks_nothing_out(workspace):
    built(workspace)
    workspace.ok("metrics", "--history")  # the versions cache is written once
    root = workspace.root
    files = snapshot(root)
    index = (root / ".git" / "index").read_bytes()
    status = git(root, "status", "--porcelain")
    workspace.ok("metrics", "--history", "--json")
    assert snapshot(root) == files
    assert (root / ".git" / "index").read_bytes() == index
    assert git(root, "status", "--porcelain") == status


def test_no_metrics_yet_says_so(workspace):
    workspace.pipeline('[steps.a]\ncmd = "echo a > a.txt"\nouts = ["a.txt"]\n')
    workspace.commit("no lock")
    assert "no commit on HEAD's first-parent history records metrics" in (
        workspace.ok("metrics", "--history").stdout
    )
    assert history(workspace) == {"points": []}


def test_outside_git_the_history_is_refused_and_nothing_is_written(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    root = tmp_path / "plain"
    root.mkdir()
    (root / "gitpipe.toml").write_text('[steps.a]\ncmd = "echo a > a.txt"\nouts = ["a.txt"]\n')
    monkeypatch.chdir(root)
    ws = Workspace(root, CliRunner())
    refused(ws, "metrics", "--history", says=("not inside a Git repository",), code=4)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("metrics", "-n", "2"), "-n goes with --history"),
        (("metrics", "--history", "-n", "0"), "-n takes a positive number"),
    ],
)
def test_bad_options_are_refused_and_nothing_is_written(workspace, args, says):
    built(workspace)
    refused(workspace, *args, says=(says,))


def test_the_python_api_returns_frozen_points(workspace):
    built(workspace)
    result = Project.open(workspace.root).metrics_history(limit=1)
    assert isinstance(result, MetricsHistory)
    (point,) = result.points
    assert isinstance(point, VersionMetrics)
    assert point.subject == "merge the branch"
    assert point.metrics == {"train": {"acc": 0.8, "nested.loss": 2}}
    assert json.loads(json.dumps(result.to_json()))["points"][0]["version"] == "1.0.0"
    assert gitpipe.metrics_history(path=workspace.root, limit=1) == result


def test_the_metrics_of_a_lock_are_read_as_a_whole_parse_reads_them():
    for path in Path(__file__).parent.parent.glob("examples/*/gitpipe.lock"):
        text = path.read_text()
        whole = {s: dict(e.metrics) for s, e in lockfile.loads(text).steps.items() if e.metrics}
        assert lockfile.metrics_of(text) == whole, path
    text = lockfile.Lock(
        fingerprint="f",
        steps={
            "a@x.y": lockfile.LockEntry(
                key=lockfile.Digest("0" * 64),
                cmd=("echo '[steps.fake.metrics]'",),
                wdir=".",
                deps={},
                code={},
                params={"p": [1, 2]},
                env={},
                outs={"m.json": lockfile.Digest("1" * 64)},
                metrics={"m.json": {"a.b": 1.5, "t": "x"}, "n.toml": {"c": 2}},
            )
        },
    ).dumps()
    assert lockfile.metrics_of(text) == {
        "a@x.y": {"m.json": {"a.b": 1.5, "t": "x"}, "n.toml": {"c": 2}}
    }


def test_a_lock_of_a_newer_schema_is_refused_by_the_metrics_reader():
    with pytest.raises(lockfile.LockfileError, match="schema 99"):
        lockfile.metrics_of("[gitpipe]\nschema = 99\n")


def test_a_second_repository_without_commits_has_no_points(tmp_path, monkeypatch):
    root = make_repo(tmp_path / "empty")
    (root / "gitpipe.toml").write_text('[steps.a]\ncmd = "echo a > a.txt"\nouts = ["a.txt"]\n')
    assert Project.open(root).metrics_history().points == ()
