"""Versions from first-parent history, on real repositories made with the `git` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import Workspace, cli_runner, git, make_repo

import gitpipe.cli
import gitpipe.history.shape
import gitpipe.history.walk
import gitpipe.pipeline.spec
from gitpipe.history.git import Repository, shared_state_dir
from gitpipe.history.shape import worktree_snapshot
from gitpipe.history.versions import version_for_lock
from gitpipe.store import lockfile

PIPELINE = """
[params]
seed = 1
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
"""

TRAIN = """\
from util import helper

print(helper())
"""


def start(ws: Workspace, pipeline: str = PIPELINE) -> None:
    ws.write("data/raw.txt", "raw\n")
    ws.write("src/train.py", TRAIN)
    ws.write("src/util.py", "def helper():\n    return 1\n")
    ws.write(".gitignore", "prepared.txt\nmodel.txt\nmetrics.json\n")
    ws.pipeline(pipeline)
    ws.commit("pipeline")


def listing(ws: Workspace, *args: str) -> dict:
    return json.loads(ws.ok("versions", "--json", *args).stdout)


def table(ws: Workspace, *args: str) -> list[tuple[str, list[str]]]:
    """(version, changes) per release, newest first."""
    return [(r["version"], r["changes"]) for r in listing(ws, *args)["versions"]]


def edit(ws: Workspace, relpath: str, old: str, new: str) -> None:
    path = ws.root / relpath
    text = path.read_text()
    assert old in text, (old, text)
    path.write_text(text.replace(old, new))


def test_the_first_commit_holding_the_pipeline_is_1_0_0_and_the_rest_keep_it(workspace):
    ws = workspace
    ws.write("README.md", "before\n")
    ws.commit("no pipeline yet")
    start(ws)
    ws.write("README.md", "docs\n")
    ws.commit("docs")
    ws.write("data/raw.txt", "new data\n")
    ws.commit("data")
    edit(ws, "gitpipe.toml", "[params]", "# a comment\n[params]  # trailing")
    ws.commit("a TOML comment")
    edit(ws, "src/util.py", "    return 1", "    # a comment\n    return 1  # same code")
    ws.commit("a code comment")
    result = listing(ws)
    assert result["version"] == "1.0.0"
    assert result["dirty"] is False
    assert [(r["version"], r["changes"]) for r in result["versions"]] == [
        ("1.0.0", ["first commit holding gitpipe.toml"])
    ]
    first = git(ws.root, "rev-list", "HEAD", "--", "gitpipe.toml").split()[-1]
    assert result["versions"][0]["commit"] == first


def test_structure_bumps_major_command_and_code_minor_params_patch(workspace):
    ws = workspace
    start(ws)
    edit(ws, "gitpipe.toml", "lr = 0.1", "lr = 0.2")
    ws.commit("lr")
    edit(ws, "gitpipe.toml", '"python3 src/train.py"', '"python3 src/train.py --fast"')
    ws.commit("command")
    edit(ws, "src/util.py", "return 1", "return 2")
    ws.commit("util")
    with (ws.root / "gitpipe.toml").open("a") as handle:
        handle.write('\n[steps.evaluate]\ncmd = "cp model.txt metrics.json"\n')
        handle.write('deps = ["model.txt"]\nmetrics = ["metrics.json"]\n')
    ws.commit("evaluate")
    edit(ws, "gitpipe.toml", 'outs = ["model.txt"]', 'outs = ["model.txt", "extra.txt"]')
    ws.commit("outputs")
    edit(ws, "gitpipe.toml", "[params]\nseed = 1", "[params]\nseed = 2")
    ws.commit("a param no step uses")
    assert table(ws) == [
        ("3.0.1", ["patch: params (seed)"]),
        ("3.0.0", ["major: outputs of train (+extra.txt)"]),
        ("2.0.0", ["major: +evaluate"]),
        ("1.2.0", ["minor: code of train (src/util.py)"]),
        ("1.1.0", ["minor: command of train"]),
        ("1.0.1", ["patch: params of train (train.lr)"]),
        ("1.0.0", ["first commit holding gitpipe.toml"]),
    ]
    text = ws.ok("versions").stdout.splitlines()
    assert text[0] == "gitpipe.toml: 3.0.1"
    assert text[3].split()[0] == "2.0.0"
    assert text[3].endswith("major: +evaluate")


#: a param that reaches train's command (and its env) through ${params.lr}
BY_REFERENCE = """
[params]
lr = 0.1
seed = 1

[steps.prepare]
cmd = "cp data/raw.txt prepared.txt"
deps = ["data/raw.txt"]
outs = ["prepared.txt"]

[steps.train]
cmd = "python3 src/train.py ${params.lr}"
deps = ["prepared.txt"]
outs = ["model.txt"]
env = { SEED = "${params.seed}" }
"""


def test_a_param_that_reaches_a_command_by_reference_is_a_params_change(workspace):
    ws = workspace
    start(ws, BY_REFERENCE)
    edit(ws, "gitpipe.toml", "lr = 0.1", "lr = 0.25")
    ws.commit("lr")
    assert table(ws)[0] == ("1.0.1", ["patch: params of train (lr)"])
    edit(ws, "gitpipe.toml", "train.py ${params.lr}", "train.py --lr ${params.lr}")
    ws.commit("train's command")
    assert table(ws)[0] == ("1.1.0", ["minor: command of train"])
    edit(ws, "gitpipe.toml", "train.py --lr ${params.lr}", "train.py --rate ${params.lr}")
    edit(ws, "gitpipe.toml", "lr = 0.25", "lr = 0.5")
    ws.commit("both")
    edit(ws, "gitpipe.toml", "seed = 1", "seed = 2")
    ws.commit("a param that reaches train's env")
    edit(ws, "gitpipe.toml", '"${params.seed}"', '"0${params.seed}"')
    ws.commit("train's env")
    assert table(ws) == [
        ("1.3.0", ["minor: command of train (env SEED)"]),
        ("1.2.1", ["patch: params of train (seed)"]),
        ("1.2.0", ["minor: command of train", "patch: params of train (lr)"]),
        ("1.1.0", ["minor: command of train"]),
        ("1.0.1", ["patch: params of train (lr)"]),
        ("1.0.0", ["first commit holding gitpipe.toml"]),
    ]
    assert table(ws, "--step", "train") == table(ws)
    assert table(ws, "--step", "prepare") == [("1.0.0", ["first commit holding gitpipe.toml"])]
    text = ws.ok("versions").stdout.splitlines()
    assert text[3].split()[0] == "1.2.0"
    assert text[3].endswith("minor: command of train; patch: params of train (lr)")


def test_a_rewrite_of_a_command_that_runs_the_same_thing_keeps_the_version(workspace):
    ws = workspace
    start(ws, BY_REFERENCE.replace('env = { SEED = "${params.seed}" }', 'params = ["lr"]'))
    edit(ws, "gitpipe.toml", "train.py ${params.lr}", "train.py 0.1")  # the value it had
    assert listing(ws)["version"] == listing(ws, "--step", "train")["version"] == "1.0.0"
    ws.commit("the same command, written out")
    assert table(ws) == [("1.0.0", ["first commit holding gitpipe.toml"])]
    edit(ws, "gitpipe.toml", "lr = 0.1", "lr = 0.2")
    ws.commit("lr, which the command no longer reads")
    assert table(ws)[0] == ("1.0.1", ["patch: params of train (lr)"])


def test_a_param_in_an_output_path_is_structure_and_a_matrix_value_is_a_param(workspace):
    ws = workspace
    start(
        ws,
        """
        [params]
        tag = "a"

        [steps.train]
        matrix = { cfg = [{ name = "small", lr = 0.1 }, { name = "big", lr = 0.2 }] }
        cmd = "echo ${matrix.cfg.lr} > model-${params.tag}-${matrix.cfg.name}.txt"
        outs = ["model-${params.tag}-${matrix.cfg.name}.txt"]
        """,
    )
    edit(ws, "gitpipe.toml", "lr = 0.1", "lr = 0.15")
    ws.commit("a matrix value, under the same name")
    edit(ws, "gitpipe.toml", 'tag = "a"', 'tag = "b"')
    ws.commit("a param that names the outputs")
    assert table(ws) == [
        (
            "2.0.0",
            [
                "major: outputs of train@small (+model-b-small.txt, -model-a-small.txt)",
                "major: outputs of train@big (+model-b-big.txt, -model-a-big.txt)",
                "patch: params of train@small, train@big (tag)",
            ],
        ),
        ("1.0.1", ["patch: params of train@small (matrix.cfg.lr)"]),
        ("1.0.0", ["first commit holding gitpipe.toml"]),
    ]


def test_each_step_has_its_own_version(workspace):
    ws = workspace
    start(ws)
    edit(ws, "gitpipe.toml", "lr = 0.1", "lr = 0.2")
    ws.commit("lr")
    edit(ws, "gitpipe.toml", '"cp data/raw.txt prepared.txt"', '"cp -p data/raw.txt prepared.txt"')
    ws.commit("prepare's command")
    edit(ws, "gitpipe.toml", 'deps = ["prepared.txt"]', 'deps = ["data/raw.txt"]')
    ws.commit("train reads the raw data")
    assert table(ws, "--step", "prepare") == [
        ("1.1.0", ["minor: command of prepare"]),
        ("1.0.0", ["first commit holding gitpipe.toml"]),
    ]
    assert table(ws, "--step", "train") == [
        (
            "2.0.0",
            [
                "major: edges of train (-prepare)",
                "major: inputs of train (+data/raw.txt, -prepared.txt)",
            ],
        ),
        ("1.0.1", ["patch: params of train (train.lr)"]),
        ("1.0.0", ["first commit holding gitpipe.toml"]),
    ]
    assert listing(ws)["version"] == "2.0.0"
    result = ws.gitpipe("versions", "--step", "nope")
    assert result.exit_code == 2
    assert "no step named 'nope'" in result.stderr


def test_a_step_added_later_starts_at_1_0_0_and_a_removed_one_continues_when_back(workspace):
    ws = workspace
    start(ws)
    body = '\n[steps.evaluate]\ncmd = "cp model.txt metrics.json"\ndeps = ["model.txt"]\n'
    with (ws.root / "gitpipe.toml").open("a") as handle:
        handle.write(body)
    ws.commit("evaluate")
    edit(ws, "gitpipe.toml", "metrics.json", "metrics2.json")
    ws.commit("evaluate's command")
    edit(ws, "gitpipe.toml", body.replace("metrics.json", "metrics2.json"), "")
    ws.commit("no evaluate")
    with (ws.root / "gitpipe.toml").open("a") as handle:
        handle.write(body)
    ws.commit("evaluate again")
    assert [v for v, _ in table(ws, "--step", "evaluate")] == ["2.0.0", "1.1.0", "1.0.0"]
    assert [v for v, _ in table(ws)] == ["4.0.0", "3.0.0", "2.1.0", "2.0.0", "1.0.0"]


def test_uncommitted_changes_show_as_dirty_without_guessing_the_next_bump(workspace):
    ws = workspace
    start(ws)
    edit(ws, "gitpipe.toml", "[params]", "# only a comment\n[params]")
    assert listing(ws)["version"] == "1.0.0"
    edit(ws, "gitpipe.toml", "lr = 0.1", "lr = 0.3")
    result = listing(ws)
    assert (result["version"], result["dirty"]) == ("1.0.0+dirty", True)
    assert ws.ok("versions").stdout.splitlines()[0] == (
        "gitpipe.toml: 1.0.0+dirty (the working tree differs from HEAD)"
    )
    assert listing(ws, "--step", "train")["version"] == "1.0.0+dirty"
    assert listing(ws, "--step", "prepare")["version"] == "1.0.0"
    edit(ws, "gitpipe.toml", "lr = 0.3", "lr = 0.1")
    ws.write("src/util.py", "def helper():\n    return 5\n")
    assert listing(ws)["version"] == "1.0.0+dirty"
    ws.write("src/extra.py", "x = 1\n")  # untracked, imported by nobody
    ws.write("src/util.py", "def helper():\n    return 1\n")
    assert listing(ws)["version"] == "1.0.0"


def test_history_follows_first_parents_through_merges(workspace):
    ws = workspace
    start(ws)
    git(ws.root, "checkout", "-q", "-b", "feature")
    edit(ws, "gitpipe.toml", "lr = 0.1", "lr = 0.2")
    ws.commit("feature: lr")
    edit(ws, "src/util.py", "return 1", "return 2")
    ws.commit("feature: util")
    git(ws.root, "checkout", "-q", "main")
    ws.write("README.md", "main moves on\n")
    ws.commit("main: docs")
    git(ws.root, "merge", "-q", "--no-ff", "-m", "merge feature", "feature")
    merge = git(ws.root, "rev-parse", "HEAD").strip()
    releases = listing(ws)["versions"]
    assert [(r["version"], r["changes"]) for r in releases] == [
        ("1.1.0", ["minor: code of train (src/util.py)", "patch: params of train (train.lr)"]),
        ("1.0.0", ["first commit holding gitpipe.toml"]),
    ]
    assert releases[0]["commit"] == merge
    git(ws.root, "checkout", "-q", "feature")
    assert [v for v, _ in table(ws)] == ["1.1.0", "1.0.1", "1.0.0"]


def test_a_code_file_renamed_with_git_mv_is_a_code_change(workspace):
    ws = workspace
    ws.write("lib/a.py", "VALUE = 1\n")
    ws.pipeline(
        """
        [steps.build]
        cmd = "echo built > out.txt"
        code = ["lib/*.py"]
        outs = ["out.txt"]
        """
    )
    ws.commit("pipeline")
    git(ws.root, "mv", "lib/a.py", "lib/b.py")
    ws.commit("rename")
    assert table(ws)[0] == ("1.1.0", ["minor: code of build (lib/a.py -> lib/b.py)"])


def test_a_pipeline_in_a_subfolder_is_versioned_by_what_it_uses(workspace):
    ws = workspace
    ws.write("web/app.py", "print('not ours')\n")
    ws.write("ml/data/raw.txt", "raw\n")
    ws.write("ml/src/train.py", TRAIN)
    ws.write("ml/src/util.py", "def helper():\n    return 1\n")
    ws.write("ml/gitpipe.toml", PIPELINE)
    ws.commit("ml pipeline")
    ws.write("web/app.py", "print('still not ours')\n")
    ws.write("ml/README.md", "notes\n")
    ws.commit("unrelated")
    edit(ws, "ml/src/util.py", "return 1", "return 2")
    ws.commit("util")
    result = listing(ws, "-f", "ml/gitpipe.toml")
    assert result["pipeline"] == "ml/gitpipe.toml"
    assert [(r["version"], r["changes"]) for r in result["versions"]] == [
        ("1.1.0", ["minor: code of train (src/util.py)"]),
        ("1.0.0", ["first commit holding gitpipe.toml"]),
    ]
    from_inside = ws.ok("-C", "ml", "versions", "--json")
    assert json.loads(from_inside.stdout)["version"] == "1.1.0"


def test_a_linked_worktree_has_its_own_head_and_finds_the_main_state_folder(workspace):
    ws = workspace
    start(ws)
    other = ws.root.parent / "other"
    git(ws.root, "worktree", "add", "-q", str(other), "-b", "other")
    edit(Workspace(other, ws.runner), "gitpipe.toml", "lr = 0.1", "lr = 0.5")
    Workspace(other, ws.runner).commit("other: lr")
    linked = Workspace(other, ws.runner)
    assert listing(linked)["version"] == "1.0.1"
    assert listing(ws)["version"] == "1.0.0"
    assert shared_state_dir(other) == ws.root.resolve() / ".gitpipe"
    (other / "ml").mkdir()
    assert shared_state_dir(other / "ml") == ws.root.resolve() / "ml" / ".gitpipe"
    assert shared_state_dir(ws.root) is None
    assert shared_state_dir(ws.root.parent) is None
    with Repository.find(other) as repo:
        assert repo.is_linked_worktree
        assert repo.resolve("main") == git(ws.root, "rev-parse", "main").strip()
        assert repo.resolve("HEAD") == git(other, "rev-parse", "HEAD").strip()


def test_a_detached_head_is_versioned_from_where_it_stands(workspace):
    ws = workspace
    start(ws)
    edit(ws, "gitpipe.toml", "lr = 0.1", "lr = 0.2")
    ws.commit("lr")
    git(ws.root, "checkout", "-q", "--detach", "HEAD~1")
    assert listing(ws)["version"] == "1.0.0"
    git(ws.root, "checkout", "-q", "--detach", "main")
    assert listing(ws)["version"] == "1.0.1"


def test_every_kind_of_revision_resolves_as_git_resolves_it(workspace):
    ws = workspace
    start(ws)
    git(ws.root, "tag", "-a", "v-annotated", "-m", "an annotated tag")
    git(ws.root, "tag", "light")
    edit(ws, "gitpipe.toml", "lr = 0.1", "lr = 0.2")
    ws.commit("lr")
    git(ws.root, "checkout", "-q", "-b", "side", "HEAD~1")
    ws.write("side.txt", "x\n")
    ws.commit("side")
    git(ws.root, "checkout", "-q", "main")
    git(ws.root, "merge", "-q", "--no-ff", "-m", "merge side", "side")
    git(ws.root, "pack-refs", "--all")
    assert not (ws.root / ".git" / "refs" / "tags" / "light").exists()
    head = git(ws.root, "rev-parse", "HEAD").strip()
    git(ws.root, "checkout", "-q", "--detach", "HEAD")
    revisions = [
        "HEAD",
        "@",
        head,
        head[:7],
        head.upper()[:10],
        "main",
        "refs/heads/main",
        "heads/main",
        "side",
        "v-annotated",
        "light",
        "tags/light",
        "HEAD~1",
        "HEAD~",
        "HEAD^",
        "HEAD^2",
        "main^1~1",
        "HEAD~2",
        "v-annotated^{}",
        "main^0",
    ]
    with Repository.find(ws.root) as repo:
        for rev in revisions:
            expected = git(ws.root, "rev-parse", "--verify", f"{rev}^{{commit}}").strip()
            assert repo.resolve(rev) == expected, rev


def test_version_names_resolve_wherever_a_revision_is_expected(workspace):
    ws = workspace
    start(ws)
    edit(ws, "gitpipe.toml", "lr = 0.1", "lr = 0.2")
    ws.commit("lr")
    ws.write("README.md", "docs\n")
    ws.commit("docs: still 1.0.1")
    result = json.loads(ws.ok("diff", "1.0.0", "1.0.1", "--json").stdout)
    assert result["b"]["commit"] == git(ws.root, "rev-parse", "HEAD").strip()
    assert result["a"]["commit"] == git(ws.root, "rev-parse", "HEAD~2").strip()
    assert [s["step"] for s in result["steps"]] == ["train"]
    assert json.loads(ws.ok("diff", "v1.0.1~1", "--json").stdout)["a"]["commit"] == (
        git(ws.root, "rev-parse", "HEAD~1").strip()
    )
    git(ws.root, "tag", "1.0.0", "HEAD")  # a Git name wins over a version name
    result = json.loads(ws.ok("diff", "1.0.0", "HEAD", "--json").stdout)
    assert result["a"]["commit"] == result["b"]["commit"]
    missing = ws.gitpipe("diff", "7.0.0")
    assert missing.exit_code == 4
    assert missing.stderr.count("\n") == 1
    assert "no commit on HEAD's first-parent history carries version 7.0.0" in missing.stderr


def test_an_invalid_pipeline_at_a_commit_keeps_the_version(workspace):
    ws = workspace
    start(ws)
    (ws.root / "gitpipe.toml").write_text("[steps.train\n")
    ws.commit("broken")
    ws.pipeline(PIPELINE.replace("lr = 0.1", "lr = 0.2"))
    ws.commit("fixed, with a new lr")
    assert table(ws) == [
        ("1.0.1", ["patch: params of train (train.lr)"]),
        ("1.0.0", ["first commit holding gitpipe.toml"]),
    ]


def test_a_repository_without_commits_says_so_and_repro_still_works(workspace):
    ws = workspace
    ws.write("in.txt", "1\n")
    ws.write(".gitignore", "out.txt\n")
    ws.pipeline(
        """
        [steps.copy]
        cmd = "cp in.txt out.txt"
        deps = ["in.txt"]
        outs = ["out.txt"]
        """
    )
    result = ws.ok("versions")
    assert result.stdout.startswith("no commits yet")
    assert listing(ws)["versions"] == []
    diff = ws.gitpipe("diff")
    assert diff.exit_code == 4
    assert diff.stderr.count("\n") == 1
    assert "has no commits yet" in diff.stderr
    ws.ok("repro")
    assert (ws.root / "out.txt").read_text() == "1\n"
    lock = lockfile.read(ws.root / "gitpipe.lock")
    # the first commit holding the pipeline will be 1.0.0: the lock says so already
    assert lock.version == "1.0.0"
    assert version_for_lock(ws.root, ws.root / "gitpipe.toml", lock.fingerprint) == "1.0.0"


def stamp_version(ws: Workspace, pipeline: str = "gitpipe.toml") -> str:
    """What a repro does at its end: write the version next to the fingerprint."""
    path = lockfile.path_for(ws.root / pipeline)
    lock = lockfile.read(path)
    version = version_for_lock(path.parent, ws.root / pipeline, lock.fingerprint)
    lockfile.write(path, lockfile.Lock(lock.name, lock.fingerprint, lock.steps, version=version))
    return version


SHELL_PIPELINE = """
[pipeline]
name = "demo"  # the default, the folder's name, differs between clones

[params]
n = 1

[steps.copy]
cmd = "cp in.txt out.txt"
deps = ["in.txt"]
outs = ["out.txt"]

[steps.count]
cmd = "wc -c out.txt > count.txt"
deps = ["out.txt"]
params = ["n"]
outs = ["count.txt"]
"""


def shell_history(ws: Workspace) -> None:
    """1.0.0, 1.0.1 (params), then a commit of the lock that keeps 1.0.1."""
    ws.write("in.txt", "1\n")
    ws.write(".gitignore", "out.txt\ncount.txt\n")
    ws.pipeline(SHELL_PIPELINE)
    ws.commit("pipeline")
    edit(ws, "gitpipe.toml", "n = 1", "n = 2")
    ws.commit("n")
    ws.ok("repro")
    assert stamp_version(ws) == "1.0.1"
    ws.commit("lock")


def clone(ws: Workspace, name: str, *args: str) -> Workspace:
    target = ws.root.parent / name
    subprocess.run(
        ["git", "clone", "-q", *args, f"file://{ws.root}", str(target)],
        check=True,
        capture_output=True,
    )
    return Workspace(target, ws.runner)


def test_a_shallow_clone_says_unknown_instead_of_guessing(workspace):
    ws = workspace
    shell_history(ws)
    edit(ws, "gitpipe.toml", "n = 2", "n = 3")
    ws.commit("n again, lock not updated")
    shallow = clone(ws, "shallow", "--depth", "1")
    result = listing(shallow)
    assert result["shallow"] is True
    assert result["version"] == "unknown"
    assert [r["version"] for r in result["versions"]] == ["unknown"]
    text = shallow.ok("versions").stdout
    assert "unknown (shallow clone; fetch more history)" in text
    assert "1.0" not in text
    step = listing(shallow, "--step", "count")
    assert step["version"] == "unknown"
    deeper = clone(ws, "deeper", "--depth", "2")
    assert [r["version"] for r in listing(deeper)["versions"]] == ["1.0.2", "1.0.1"]
    assert listing(deeper)["version"] == "1.0.2"
    git(shallow.root, "fetch", "-q", "--unshallow")
    assert listing(shallow) == {**listing(ws), "shallow": False}


def test_a_shallow_clone_knows_its_version_when_its_lock_matches(workspace):
    ws = workspace
    shell_history(ws)
    shallow = clone(ws, "shallow", "--depth", "1")
    result = listing(shallow)
    assert result["version"] == "1.0.1"
    assert result["versions"][0]["changes"] == ["version from gitpipe.lock"]
    edit(shallow, "gitpipe.toml", "n = 2", "n = 9")
    assert listing(shallow)["version"] == "1.0.1+dirty"
    edit(shallow, "gitpipe.toml", "n = 9", "n = 2")
    shallow.ok("repro")
    assert stamp_version(shallow) == "1.0.1"
    assert git(shallow.root, "status", "--porcelain") == ""
    assert listing(shallow, "--step", "count")["version"] == "unknown"


def test_versions_never_enter_a_key_a_rebase_that_renumbers_nothing_runs_nothing(workspace):
    ws = workspace
    ws.write("in.txt", "1\n")
    ws.write(".gitignore", "out.txt\ncount.txt\n")
    ws.pipeline(SHELL_PIPELINE)
    ws.commit("pipeline")
    git(ws.root, "checkout", "-q", "-b", "feature")
    edit(ws, "gitpipe.toml", "n = 1", "n = 2")
    ws.commit("feature: n")
    git(ws.root, "checkout", "-q", "main")
    ws.write("README.md", "main: docs\n")
    ws.commit("main: docs")
    git(ws.root, "checkout", "-q", "feature")
    ws.ok("repro")
    before_versions = listing(ws)
    before_keys = {s["step"]: s["key"] for s in json.loads(ws.ok("status", "--json").stdout)}
    before_lineage = json.loads(ws.ok("lineage", "count.txt", "--json").stdout)
    old_head = git(ws.root, "rev-parse", "HEAD").strip()
    git(ws.root, "rebase", "-q", "main")
    assert git(ws.root, "rev-parse", "HEAD").strip() != old_head
    after_versions = listing(ws)
    assert after_versions["version"] == before_versions["version"] == "1.0.1"
    assert [r["version"] for r in after_versions["versions"]] == ["1.0.1", "1.0.0"]
    after_keys = {s["step"]: s["key"] for s in json.loads(ws.ok("status", "--json").stdout)}
    assert after_keys == before_keys
    assert all(s["state"] == "up to date" for s in json.loads(ws.ok("status", "--json").stdout))
    ws.ok("repro")
    assert ws.ran() == []
    assert json.loads(ws.ok("lineage", "count.txt", "--json").stdout) == before_lineage


def test_a_repeated_listing_reads_only_new_commits(workspace, monkeypatch):
    ws = workspace
    start(ws)
    for i in range(15):
        ws.write("README.md", f"docs {i}\n")
        ws.commit(f"docs {i}")
    edit(ws, "gitpipe.toml", "lr = 0.1", "lr = 0.2")
    ws.commit("lr")
    parsed: list[str] = []
    real = gitpipe.pipeline.spec.parse
    monkeypatch.setattr(
        gitpipe.pipeline.spec,
        "parse",
        lambda text, *, file, **readers: parsed.append(text) or real(text, file=file, **readers),
    )
    assert [v for v, _ in table(ws)] == ["1.0.1", "1.0.0"]
    # the pipeline's two contents, and the work tree; the 15 other commits cost no parse
    assert len(parsed) == 3
    parsed.clear()
    assert [v for v, _ in table(ws)] == ["1.0.1", "1.0.0"]
    assert len(parsed) == 1  # only the work tree, for +dirty
    ws.write("README.md", "one more\n")
    ws.commit("docs")
    parsed.clear()
    assert listing(ws)["version"] == "1.0.1"
    assert len(parsed) <= 2  # the cached commit it resumes from, and the work tree
    assert (ws.root / ".gitpipe" / "versions.db").is_file()
    assert git(ws.root, "status", "--porcelain") == ""


def test_the_version_a_repro_writes_is_the_one_the_commit_will_have(workspace):
    ws = workspace
    start(ws)
    file = ws.root / "gitpipe.toml"
    head = worktree_snapshot(file).fingerprint
    assert version_for_lock(ws.root, file, head) == "1.0.0"
    edit(ws, "gitpipe.toml", "lr = 0.1", "lr = 0.2")
    # uncommitted: HEAD's version bumped by the change (params: patch), not "+dirty",
    # so that committing this lock with the change leaves nothing to rewrite
    assert version_for_lock(ws.root, file, worktree_snapshot(file).fingerprint) == "1.0.1"
    ws.commit("lr")
    assert version_for_lock(ws.root, file, worktree_snapshot(file).fingerprint) == "1.0.1"


def test_outside_git_a_lock_has_no_version(tmp_path):
    (tmp_path / "gitpipe.toml").write_text('[steps.a]\ncmd = "true"\n')
    assert version_for_lock(tmp_path, tmp_path / "gitpipe.toml", "b3:00") == ""


def test_repro_writes_the_version_next_to_the_fingerprint(workspace):
    ws = workspace
    start(ws, PIPELINE.replace('"python3 src/train.py"', '"python3 src/train.py > model.txt"'))
    ws.ok("repro")
    lock = lockfile.read(ws.root / "gitpipe.lock")
    assert lock.fingerprint == worktree_snapshot(ws.root / "gitpipe.toml").fingerprint
    assert lock.version == "1.0.0"
    text = (ws.root / "gitpipe.lock").read_text()
    assert 'fingerprint = "b3:' in text
    assert '\nversion = "1.0.0"\n' in text
    edit(ws, "src/util.py", "return 1", "return 2")
    ws.ok("repro")
    assert lockfile.read(ws.root / "gitpipe.lock").version == "1.1.0"  # code: minor
    ws.commit("util, with the lock")
    lock_text = (ws.root / "gitpipe.lock").read_text()
    ws.ok("repro")
    assert lockfile.read(ws.root / "gitpipe.lock").version == "1.1.0"
    assert (ws.root / "gitpipe.lock").read_text() == lock_text  # no churn after a commit


def test_the_lock_keeps_reading_files_written_before_it_had_a_version(tmp_path):
    old = '[gitpipe]\nschema = 1\n\n[pipeline]\nname = "p"\nfingerprint = "b3:abc"\n'
    path = tmp_path / "gitpipe.lock"
    path.write_text(old)
    lock = lockfile.read(path)
    assert (lock.name, lock.fingerprint, lock.version) == ("p", "b3:abc", "")
    assert "version" not in lock.dumps()
    stamped = lockfile.Lock("p", "b3:abc", version="2.1.0")
    text = stamped.dumps()
    assert 'fingerprint = "b3:abc"\nversion = "2.1.0"\n' in text
    assert lockfile.loads(text).version == "2.1.0"


def test_outside_a_git_repository_versions_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "gitpipe.toml").write_text('[steps.a]\ncmd = "true"\n')
    result = cli_runner().invoke(gitpipe.cli.app, ["versions"])
    assert result.exit_code == 4
    assert "not inside a Git repository" in result.stderr


def test_a_fresh_repository_made_elsewhere_is_found_from_a_subfolder(tmp_path):
    root = make_repo(tmp_path / "r")
    (root / "deep" / "er").mkdir(parents=True)
    with Repository.find(root / "deep" / "er") as repo:
        assert repo.top == root.resolve()
        assert repo.head_commit() is None
        assert repo.shallow() == frozenset()


def test_a_commit_keeps_its_version_exactly_when_its_fingerprint_is_unchanged(workspace):
    ws = workspace
    start(ws)
    edits = [
        ("gitpipe.toml", "[params]", "# a comment\n[params]"),  # keeps
        ("gitpipe.toml", 'params = ["train"]', 'params = ["train"]\nafter = ["prepare"]'),
        ("gitpipe.toml", 'outs = ["model.txt"]', 'metrics = ["model.txt"]'),
        ("gitpipe.toml", 'params = ["train"]', 'params = ["train"]\nenv = { MODE = "fast" }'),
        ("gitpipe.toml", 'params = ["train"]', 'params = ["train"]\ndesc = "fit"'),  # keeps
        ("gitpipe.toml", 'params = ["train"]', 'params = ["train"]\ntimeout = 60'),  # keeps
        ("gitpipe.toml", "seed = 1", "seed = 1.0"),
        ("gitpipe.toml", 'outs = ["prepared.txt"]', 'outs = ["prepared.txt"]\nwdir = "."'),
        ("src/util.py", "return 1", "return (1)"),  # keeps: the same syntax tree
        ("src/util.py", "return (1)", "return 1.0"),
    ]
    for path, old, new in edits:
        edit(ws, path, old, new)
        ws.commit(f"{path}: {new}")
    file = ws.root / "gitpipe.toml"
    with Repository.find(ws.root) as repo:
        points = gitpipe.history.walk.history(repo, file).points
        snapshots = gitpipe.history.shape.Snapshots(
            repo, gitpipe.history.shape.PipelinePath.of(repo, file)
        )
        prints = [snapshots.snapshot(repo.commit(p.commit).tree)[0].fingerprint for p in points]
    assert len(points) == len(edits) + 1
    kept = []
    for i in range(len(points) - 1):
        same_version = points[i].version == points[i + 1].version
        assert same_version == (prints[i] == prints[i + 1]), (i, points[i].changes)
        kept.append(same_version)
    # newest first: util 1.0, util (1), wdir ".", seed 1.0, timeout, desc, env, metrics,
    # after, a comment
    assert kept == [False, True, True, False, True, True, False, False, False, True]
    assert [str(c) for c in points[3].changes] == ["patch: params (seed)"]
    assert [str(c) for c in points[6].changes] == ["minor: command of train (env MODE)"]
    assert [str(c) for c in points[7].changes] == ["major: outputs of train (metrics +model.txt)"]
    assert [str(c) for c in points[8].changes] == ["major: edges of train (after +prepare)"]


def test_the_quickstart_script_builds_a_history_to_try_versions_and_diff(tmp_path, monkeypatch):
    monkeypatch.delenv("GITPIPE_CACHE_DIR", raising=False)
    script = Path(__file__).parent.parent / "examples" / "quickstart" / "make-history.sh"
    target = tmp_path / "history"
    env = {**os.environ, "GITPIPE": str(Path(sys.executable).parent / "gitpipe"), "CI": "true"}
    done = subprocess.run(
        ["bash", str(script), str(target)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert "gitpipe versions" in done.stdout
    ws = Workspace(target, cli_runner())
    assert table(ws) == [
        ("2.0.0", ["major: +report"]),
        ("1.1.0", ["minor: code of train (src/train.py)"]),
        ("1.0.1", ["patch: params of train (train.l2)"]),
        ("1.0.0", ["first commit holding gitpipe.toml"]),
    ]
    result = json.loads(ws.ok("diff", "1.0.0", "2.0.0", "--json").stdout)
    assert [(s["step"], s["status"]) for s in result["steps"]] == [
        ("train", "changed"),
        ("evaluate", "changed"),
        ("report", "added"),
    ]
    assert {m["key"] for m in result["steps"][1]["metrics"]} == {"mae", "r2", "rmse"}
    assert git(target, "status", "--porcelain") == ""


def test_a_linked_worktree_shares_the_store_and_keeps_its_own_lineage(workspace):
    ws = workspace
    ws.write("in.txt", "1\n")
    ws.write(".gitignore", "out.txt\ncount.txt\n")
    ws.pipeline(SHELL_PIPELINE)
    ws.commit("pipeline")
    ws.ok("repro")
    other = ws.root.parent / "other"
    git(ws.root, "worktree", "add", "-q", str(other), "-b", "other")
    linked = Workspace(other, ws.runner)
    linked.ok("repro")
    assert linked.states() == {"copy": "cached", "count": "cached"}
    assert (other / "out.txt").read_text() == "1\n"
    assert not (other / ".gitpipe" / "cache").exists()
    assert ws.states() == {"copy": "ran", "count": "ran"}  # each its own lineage
