"""The Python API (`import gitpipe`), driven as a notebook would drive it: on real Git
repositories, with no CLI in between; what each function returns turns into JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gitpipe
from tests.conftest import CHAIN, Workspace

TRAIN = """
[params]
lr = 0.1

[steps.prepare]
cmd = "tr a-z A-Z < data/raw.txt > prepared.txt"
deps = ["data/raw.txt"]
outs = ["prepared.txt"]

[steps.train]
cmd = "cat prepared.txt > model.txt && echo ${params.lr} >> model.txt"
deps = ["prepared.txt"]
params = ["lr"]
outs = ["model.txt"]
"""


def dumped(value: object) -> object:
    """``value.to_json()`` through json.dumps and back: it must be plain JSON."""
    return json.loads(json.dumps(value.to_json()))  # type: ignore[attr-defined]


@pytest.fixture
def chain(workspace: Workspace) -> Workspace:
    workspace.write(".gitignore", "*.txt\n!data/*.txt\n")
    workspace.write("data/raw.txt", "hello\n")
    workspace.pipeline(CHAIN)
    workspace.commit("the chain")
    return workspace


@pytest.fixture
def train(workspace: Workspace) -> Workspace:
    workspace.write(".gitignore", "*.txt\n!data/*.txt\n")
    workspace.write("data/raw.txt", "hello\n")
    workspace.pipeline(TRAIN)
    workspace.commit("train")
    return workspace


def test_repro_then_status_shows_every_step_up_to_date(chain: Workspace) -> None:
    report = gitpipe.repro(path=chain.root)
    assert report.status == "ok"
    assert [(s.step, s.state) for s in report.steps] == [
        ("first", "ran"),
        ("second", "ran"),
        ("third", "ran"),
    ]
    assert dumped(report)["counts"] == {"ran": 3}
    statuses = gitpipe.status(path=chain.root)
    assert {s.step: s.state for s in statuses} == dict.fromkeys(
        ("first", "second", "third"), "up to date"
    )
    assert [dumped(s)["action"] for s in statuses] == ["up to date"] * 3


def test_a_second_repro_does_nothing_and_restores_what_went(chain: Workspace) -> None:
    gitpipe.repro(path=chain.root)
    again = gitpipe.repro(path=chain.root)
    assert again.counts == {"up to date": 3}
    (chain.root / "second.txt").unlink()
    restored = gitpipe.repro(path=chain.root / "gitpipe.toml")
    assert {s.step: s.state for s in restored.steps}["second"] == "cached"
    assert (chain.root / "second.txt").read_text() == "OLLEH\n"


def test_repro_of_one_target_and_a_dry_run(chain: Workspace) -> None:
    planned = gitpipe.repro(path=chain.root, targets="second", dry_run=True)
    assert [(s.step, s.state) for s in planned.steps] == [
        ("first", "would run"),
        ("second", "would run"),
    ]
    assert not (chain.root / "first.txt").exists()
    done = gitpipe.repro(path=chain.root, targets=["second"])
    assert done.counts == {"ran": 2}


def test_why_says_what_repro_would_do_and_why(train: Workspace) -> None:
    gitpipe.repro(path=train.root)
    train.write("data/raw.txt", "changed\n")
    explanation = gitpipe.why("prepare", path=train.root)
    assert explanation.action == "run"
    data = dumped(explanation)
    assert data["action"] == "run"
    assert data["reasons"] and "data/raw.txt" in " ".join(data["reasons"])
    downstream = dumped(gitpipe.why("train", path=train.root))
    assert (downstream["step"], downstream["action"]) == ("train", "run")
    assert downstream["upstream"] == ["prepare"]


def test_versions_after_two_commits(train: Workspace) -> None:
    train.pipeline(TRAIN.replace("lr = 0.1", "lr = 0.2"))
    train.commit("a new learning rate")
    report = gitpipe.versions(path=train.root)
    assert len(report.releases) == 2
    assert report.current == report.releases[0].version
    assert dumped(report)["versions"][0]["changes"] == ["patch: params of train (lr)"]
    only_prepare = gitpipe.versions(path=train.root, step="prepare")
    assert len(only_prepare.releases) == 1


def test_diff_between_two_commits_shows_the_params_change(train: Workspace) -> None:
    train.pipeline(TRAIN.replace("lr = 0.1", "lr = 0.2"))
    train.commit("a new learning rate")
    result = gitpipe.diff("HEAD~1", "HEAD", path=train.root)
    (step,) = result.steps
    assert step.step == "train"
    assert [(p.key, p.old, p.new) for p in step.params] == [("lr", 0.1, 0.2)]
    assert dumped(result)["steps"][0]["params"] == [{"key": "lr", "old": 0.1, "new": 0.2}]
    assert not gitpipe.diff(path=train.root).changed  # HEAD against the working tree


def test_the_cli_prints_what_the_api_returns(train: Workspace) -> None:
    gitpipe.repro(path=train.root)
    train.pipeline(TRAIN.replace("lr = 0.1", "lr = 0.2"))
    train.commit("a new learning rate")
    diff = json.loads(train.ok("diff", "HEAD~1", "HEAD", "--json").stdout)
    assert diff == dumped(gitpipe.diff("HEAD~1", "HEAD", path=train.root))
    versions = json.loads(train.ok("versions", "--json").stdout)
    assert versions == dumped(gitpipe.versions(path=train.root))
    why = json.loads(train.ok("why", "train", "--json").stdout)
    assert why == dumped(gitpipe.why("train", path=train.root))


def test_lineage_of_an_output_names_the_step_that_made_it(chain: Workspace) -> None:
    gitpipe.repro(path=chain.root)
    origin = gitpipe.lineage("second.txt", path=chain.root)
    assert origin.step == "second"
    data = dumped(origin)
    assert data["step"] == "second"
    assert [i["step"] for i in data["inputs"]] == ["first"]
    with pytest.raises(gitpipe.UsageError, match="raw input"):
        gitpipe.lineage("data/raw.txt", path=chain.root)


def test_params_inside_a_step_are_the_step_s_own(workspace: Workspace) -> None:
    workspace.write(".gitignore", "*.json\n")
    script = "import gitpipe, json; json.dump(gitpipe.params(), open('seen.json', 'w'))"
    workspace.write("show.py", script + "\n")
    workspace.pipeline(
        f"""
        [params]
        train = {{ lr = 0.5, epochs = 3 }}
        unused = 1

        [steps.show]
        cmd = "{sys.executable} show.py"
        deps = ["show.py"]
        params = ["train.lr"]
        outs = ["seen.json"]
        """
    )
    workspace.commit()
    gitpipe.repro(path=workspace.root)
    assert json.loads((workspace.root / "seen.json").read_text()) == {"train": {"lr": 0.5}}
    gitpipe.repro(path=workspace.root, params={"train.lr": 0.25}, force=True)
    assert json.loads((workspace.root / "seen.json").read_text()) == {"train": {"lr": 0.25}}
    assert gitpipe.params() == {}  # outside a step


def test_errors_are_typed_with_the_command_s_exit_code(chain: Workspace) -> None:
    with pytest.raises(gitpipe.UsageError) as missing:
        gitpipe.why("nope", path=chain.root)
    assert missing.value.exit_code == 2
    with pytest.raises(gitpipe.UsageError):
        gitpipe.repro(path=chain.root, targets=["nope"])
    with pytest.raises(gitpipe.UsageError, match="need the names of steps"):
        gitpipe.repro(path=chain.root, single=True)
    gitpipe.repro(path=chain.root)
    chain.write("data/raw.txt", "changed\n")
    with pytest.raises(gitpipe.StaleError) as stale:
        gitpipe.repro(path=chain.root, frozen=True)
    assert stale.value.exit_code == 3
    chain.pipeline(CHAIN.replace('cmd = "rev', 'cmd = "exit 1; rev'))
    with pytest.raises(gitpipe.StepFailed) as failed:
        gitpipe.repro(path=chain.root)
    assert failed.value.exit_code == 1
    assert failed.value.report.counts["failed"] == 1  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "call",
    [
        lambda root: gitpipe.repro(root),
        lambda root: gitpipe.status(root),
        lambda root: gitpipe.why("first", root),
        lambda root: gitpipe.versions(root),
        lambda root: gitpipe.diff("HEAD", None, root),
        lambda root: gitpipe.lineage("first.txt", root),
        lambda root: gitpipe.push(root),
        lambda root: gitpipe.pull(root),
    ],
    ids=["repro", "status", "why", "versions", "diff", "lineage", "push", "pull"],
)
def test_options_are_keyword_only(chain: Workspace, call) -> None:
    with pytest.raises(TypeError, match="positional argument"):
        call(chain.root)


def test_push_and_pull_through_a_folder_remote(chain: Workspace, tmp_path: Path) -> None:
    gitpipe.repro(path=chain.root)
    remote = tmp_path / "remote"
    remote.mkdir()
    pushed = gitpipe.push(path=chain.root, remote=str(remote))
    assert (pushed.objects, pushed.results) == (3, 3)
    pulled = gitpipe.pull(path=chain.root, remote=str(remote))
    assert (pulled.objects, pulled.objects_present) == (0, 3)
    assert dumped(pulled)["direction"] == "pull"


def test_importing_gitpipe_imports_none_of_its_heavy_dependencies() -> None:
    heavy = ("typer", "rich", "click", "dulwich", "joblib", "sqlite_utils", "blake3")
    code = "import sys, gitpipe; print(sorted({m.split('.')[0] for m in sys.modules}))"
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, check=True, capture_output=True, text=True
    ).stdout
    loaded = set(json.loads(out.replace("'", '"')))
    assert loaded.isdisjoint(heavy), loaded & set(heavy)


def test_params_inside_a_step_loads_only_json_and_os_besides_gitpipe() -> None:
    # gitpipe.params() runs once in every step process that reads its params
    code = (
        "import sys; before = set(sys.modules); import gitpipe; p = gitpipe.params(); "
        "print(sorted({m for m in set(sys.modules) - before}), p)"
    )
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "GITPIPE_PARAMS": '{"train": {"lr": 0.1}}'},
    ).stdout
    loaded, params = out.rsplit("] ", 1)
    new = set(json.loads(loaded.replace("'", '"') + "]"))
    assert params.strip() == "{'train': {'lr': 0.1}}"
    heavy = {
        "pathlib",
        "dataclasses",
        "typer",
        "rich",
        "dulwich",
        "blake3",
        "sqlite3",
        "tomllib",
        "tomli",
    }
    assert heavy.isdisjoint(m.split(".")[0] for m in new), new
    ours = {m for m in new if m.startswith("gitpipe")}
    assert ours == {"gitpipe", "gitpipe.core", "gitpipe.core.errors", "gitpipe.core.stepparams"}
