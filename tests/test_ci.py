"""Issue 7's CI behaviours: `repro --frozen`, `status --check`, run summaries (and
`$GITHUB_STEP_SUMMARY`), plain output under `CI=true`, `gitpipe check` and the
`gitpipe-check` pre-commit hook this project publishes, and `gitpipe cache verify`.

Real Git repositories and the real CLI throughout; where a terminal or pre-commit is
needed, real processes.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CHAIN, CHAIN_OUTPUTS, Workspace, git, run_in_a_terminal

from gitpipe.core.hashing import Digest
from gitpipe.store import lockfile
from gitpipe.store.objects import Store
from gitpipe.store.runcache import RunCache

GITPIPE = Path(sys.executable).parent / "gitpipe"
PRE_COMMIT = Path(sys.executable).parent / "pre-commit"
PROJECT = Path(__file__).resolve().parent.parent  # this gitpipe's own repository

OUTPUTS = CHAIN_OUTPUTS


# -- helpers ---------------------------------------------------------------------


def chain(workspace: Workspace) -> Workspace:
    """Commit the three-step chain; Git ignores its outputs."""
    workspace.write("data/raw.txt", "hello world\n")
    workspace.write(".gitignore", "\n".join(OUTPUTS) + "\n")
    workspace.pipeline(CHAIN)
    workspace.commit("pipeline")
    return workspace


def executions(root: Path) -> list[tuple[str, str, str]]:
    """(run, step, state) of every execution lineage holds; [] without lineage."""
    path = root / ".gitpipe" / "lineage.db"
    if not path.exists():
        return []
    with contextlib.closing(sqlite3.connect(path)) as db:
        return db.execute("SELECT run_id, step, state FROM executions ORDER BY id").fetchall()


def ran(root: Path) -> list[str]:
    """Every step lineage says ran, in any run."""
    return [step for _, step, state in executions(root) if state == "ran"]


def last_run_id(root: Path) -> str:
    with contextlib.closing(sqlite3.connect(root / ".gitpipe" / "lineage.db")) as db:
        (run_id,) = db.execute(
            "SELECT id FROM runs ORDER BY started DESC, rowid DESC LIMIT 1"
        ).fetchone()
    return run_id


def outputs(root: Path) -> dict[str, bytes | None]:
    return {
        name: (root / name).read_bytes() if (root / name).exists() else None for name in OUTPUTS
    }


def object_path(root: Path, digest: str) -> Path:
    algorithm, hexdigest = digest.split(":")
    return root / ".gitpipe" / "cache" / "objects" / algorithm / hexdigest[:2] / hexdigest[2:]


def result_path(root: Path, key: str) -> Path:
    """The folder of a key's results in the run cache (one file per result)."""
    return RunCache(Store(root / ".gitpipe" / "cache")).path_of(Digest.parse(key))


# -- repro --frozen ---------------------------------------------------------------


def test_frozen_on_a_fresh_pipeline_exits_3_naming_each_step_and_runs_nothing(workspace):
    root = chain(workspace).root
    result = workspace.gitpipe("repro", "--frozen")
    assert result.exit_code == 3, result.output
    assert "3 step(s) would have to run" in result.stderr
    assert "first (new)" in result.stderr
    for step in ("second", "third"):
        assert f"{step} (" in result.stderr
    assert "Traceback" not in result.output
    assert outputs(root) == dict.fromkeys(OUTPUTS)
    assert not (root / "gitpipe.lock").exists()
    assert ran(root) == []


def test_frozen_restores_a_deleted_output_from_the_store_without_running(workspace):
    root = chain(workspace).root
    workspace.ok("repro")
    made = outputs(root)
    lock = (root / "gitpipe.lock").read_bytes()
    (root / "third.txt").unlink()

    result = workspace.ok("repro", "--frozen")
    assert workspace.states() == {"first": "up to date", "second": "up to date", "third": "cached"}
    assert "0 ran" in result.stdout
    assert outputs(root) == made
    assert (root / "gitpipe.lock").read_bytes() == lock


def test_frozen_restores_every_deleted_output_of_a_chain_without_running(workspace):
    root = chain(workspace).root
    workspace.ok("repro")
    made = outputs(root)
    for name in OUTPUTS:
        (root / name).unlink()

    result = workspace.gitpipe("repro", "--frozen")
    assert result.exit_code == 0, result.output
    assert workspace.states() == dict.fromkeys(("first", "second", "third"), "cached")
    assert workspace.ran() == []
    assert outputs(root) == made


def test_frozen_after_editing_a_command_exits_3_naming_that_step_and_runs_nothing(workspace):
    root = chain(workspace).root
    workspace.ok("repro")
    made = outputs(root)
    lock = (root / "gitpipe.lock").read_bytes()
    before = executions(root)
    workspace.pipeline(CHAIN.replace("rev < first.txt", "rev < first.txt | tr O 0"))

    result = workspace.gitpipe("repro", "--frozen")
    assert result.exit_code == 3, result.output
    assert "second (command changed)" in result.stderr
    assert "first (" not in result.stderr  # it is up to date
    assert "Traceback" not in result.output
    # nothing ran; the refusal is recorded as a run of its own, saying what would have
    after = [row for row in executions(root) if row not in before]
    assert {state for _, _, state in after} == {"up to date", "would run"}
    assert {step for _, step, state in after if state == "would run"} == {"second", "third"}
    assert outputs(root) == made
    assert (root / "gitpipe.lock").read_bytes() == lock


# -- status --check ---------------------------------------------------------------


def test_status_check_exits_3_listing_the_stale_steps_and_0_when_up_to_date(workspace):
    root = chain(workspace).root
    fresh = workspace.gitpipe("status", "--check")
    assert fresh.exit_code == 3, fresh.output
    assert "3 step(s) would have to run: first (new); second (" in fresh.stderr
    assert "third (upstream will run: second)" in fresh.stderr

    workspace.ok("repro")
    assert "up to date" in workspace.ok("status", "--check").stdout

    workspace.write("data/raw.txt", "hello again\n")
    stale = workspace.gitpipe("status", "--check")
    assert stale.exit_code == 3, stale.output
    assert "first" in stale.stderr and "would have to run" in stale.stderr
    assert "dep changed: data/raw.txt" in stale.stdout  # and why
    assert (root / "first.txt").read_text() == "HELLO WORLD\n"  # nothing ran


# -- run summaries ------------------------------------------------------------------

SCORED = """
[params]
factor = 2

[steps.make]
cmd = "echo 5 > base.txt"
outs = ["base.txt"]

[steps.score]
cmd = "python3 src/score.py ${params.factor}"
deps = ["base.txt"]
metrics = ["metrics.json"]
"""
SCORE_PY = """\
import json
import sys

base = int(open("base.txt").read())
json.dump({"score": base * int(sys.argv[1]), "model": "linear"}, open("metrics.json", "w"))
"""


def scored(workspace: Workspace) -> Workspace:
    workspace.write("src/score.py", SCORE_PY)
    workspace.write(".gitignore", "base.txt\nmetrics.json\n")
    workspace.pipeline(SCORED)
    workspace.commit("pipeline")
    return workspace


def test_summaries_give_states_durations_cache_hits_and_metric_changes(workspace, tmp_path):
    root = scored(workspace).root
    first_json, first_md = tmp_path / "first.json", tmp_path / "first.md"
    workspace.ok("repro", "--summary-json", str(first_json), "--summary-md", str(first_md))
    first = json.loads(first_json.read_text())
    assert first["status"] == "ok"
    assert first["counts"]["ran"] == 2
    assert first["cache_hits"] == 0

    workspace.pipeline(SCORED.replace("factor = 2", "factor = 3"))
    second_json, second_md = tmp_path / "second.json", tmp_path / "second.md"
    workspace.ok("repro", "--summary-json", str(second_json), "--summary-md", str(second_md))
    data = json.loads(second_json.read_text())
    assert data["run"] == last_run_id(root)
    assert data["status"] == "ok"
    assert data["counts"] == {
        "ran": 1,
        "cached": 0,
        "up to date": 1,
        "skipped": 0,
        "failed": 0,
        "frozen": 0,
    }
    assert data["cache_hits"] == 0
    steps = {s["step"]: s for s in data["steps"]}
    assert steps["make"]["state"] == "up to date"
    assert steps["score"]["state"] == "ran"
    assert steps["score"]["duration"] > 0
    assert "params changed: factor" in steps["score"]["reasons"]
    assert data["metrics"] == [
        {
            "step": "score",
            "file": "metrics.json",
            "name": "score",
            "before": 10,
            "after": 15,
            "delta": 5.0,
        }
    ]  # `model` did not change, so it is not listed
    markdown = second_md.read_text()
    assert markdown.startswith("### gitpipe: ok")
    assert "| step | state | time | why |" in markdown
    assert "| score | ran |" in markdown
    assert "params changed: factor" in markdown
    assert "| step | metric | before | after | change |" in markdown
    assert "| score | `metrics.json` score | 10 | 15 | +5 |" in markdown
    assert "| make |" not in markdown  # up-to-date steps are left out of the table

    # back to factor = 2: restored from the store, the metric moves back
    workspace.pipeline(SCORED)
    third_json = tmp_path / "third.json"
    workspace.ok("repro", "--summary-json", str(third_json))
    data = json.loads(third_json.read_text())
    assert data["counts"]["cached"] == 1
    assert data["counts"]["ran"] == 0
    assert data["cache_hits"] == 1
    assert {s["step"]: s["state"] for s in data["steps"]} == {
        "make": "up to date",
        "score": "cached",
    }
    assert [(m["name"], m["before"], m["after"], m["delta"]) for m in data["metrics"]] == [
        ("score", 15, 10, -5.0)
    ]


def test_github_step_summary_gets_the_markdown_by_default_and_is_appended_to(workspace, tmp_path):
    scored(workspace)
    page = tmp_path / "step-summary.md"
    page.write_text("## tests\n\nall passed\n")
    env = {"GITHUB_STEP_SUMMARY": str(page)}
    workspace.ok("repro", env=env)
    text = page.read_text()
    assert text.startswith("## tests\n\nall passed\n")  # what earlier job steps wrote stays
    assert "### gitpipe: ok" in text
    assert "| score | ran |" in text

    workspace.ok("repro", env=env)
    text = page.read_text()
    assert text.startswith("## tests\n\nall passed\n")
    assert text.count("### gitpipe: ok") == 2

    explicit = tmp_path / "explicit.md"
    workspace.ok("repro", "--summary-md", str(explicit), env=env)
    assert "### gitpipe: ok" in explicit.read_text()
    assert page.read_text() == text  # an explicit --summary-md wins


def test_an_empty_github_step_summary_file_is_written(workspace, tmp_path):
    scored(workspace)
    page = tmp_path / "step-summary.md"
    page.write_text("")
    workspace.ok("repro", env={"GITHUB_STEP_SUMMARY": str(page)})
    assert page.read_text().startswith("### gitpipe: ok")


@pytest.mark.timeout(120)
def test_with_ci_true_nothing_prints_control_codes_even_on_a_terminal(workspace, tmp_path):
    root = scored(workspace).root
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    env.update(CI="true", TERM="xterm-256color", COLUMNS="120")
    summary = tmp_path / "summary.md"
    code, output = run_in_a_terminal(root, "repro", "--summary-md", str(summary), env=env)
    assert code == 0, output
    assert "2 ran, 0 cached" in output
    assert "\x1b" not in output
    assert "\x1b" not in summary.read_text()
    for args in (("status",), ("check",), ("cache", "verify"), ("log",)):
        code, output = run_in_a_terminal(root, *args, env=env)
        assert code == 0, (args, output)
        assert "\x1b" not in output, args
    workspace.pipeline(SCORED.replace("factor = 2", "factor = 4"))
    code, output = run_in_a_terminal(root, "repro", "--frozen", env=env)
    assert code == 3, output
    assert "\x1b" not in output


# -- gitpipe check ------------------------------------------------------------------

CHECKED = """
[params]
greeting = "hello"

[steps.make]
cmd = "python3 src/make.py ${params.greeting}"
outs = ["made.txt"]

[steps.use]
cmd = "tr a-z A-Z < made.txt > used.txt"
deps = ["made.txt"]
outs = ["used.txt"]
"""
MAKE_PY = """\
import sys

open("made.txt", "w").write(sys.argv[1] + "\\n")
"""


def checked(workspace: Workspace) -> Workspace:
    workspace.write("src/make.py", MAKE_PY)
    workspace.write(".gitignore", "made.txt\nused.txt\n")
    workspace.pipeline(CHECKED)
    workspace.commit("pipeline")
    workspace.ok("repro")
    return workspace


def test_check_passes_when_the_lock_matches(workspace):
    checked(workspace)
    result = workspace.ok("check")
    assert "gitpipe.lock matches the pipeline" in result.stdout


@pytest.mark.parametrize(
    ("what", "edit", "reason"),
    [
        (
            "command",
            lambda w: w.pipeline(CHECKED.replace("python3 src/make.py", "python3 -B src/make.py")),
            "command changed",
        ),
        (
            "param",
            lambda w: w.pipeline(CHECKED.replace('greeting = "hello"', 'greeting = "howdy"')),
            "params changed: greeting",
        ),
        (
            "script",
            lambda w: w.write("src/make.py", MAKE_PY.replace("sys.argv[1]", "sys.argv[1].title()")),
            "code changed",
        ),
    ],
    ids=["command", "param", "script"],
)
def test_check_exits_3_naming_the_step_after_an_edit(workspace, what, edit, reason):
    root = checked(workspace).root
    made = (root / "made.txt").read_bytes()
    edit(workspace)
    result = workspace.gitpipe("check")
    assert result.exit_code == 3, result.output
    assert "gitpipe.lock does not match the pipeline for 1 step(s): make (" in result.stderr
    assert reason in result.stderr, result.stderr
    assert "use (" not in result.stderr  # its own inputs did not change
    assert "run `gitpipe repro` and commit gitpipe.lock" in result.stderr
    assert (root / "made.txt").read_bytes() == made  # check runs nothing


def test_check_ignores_a_missing_final_output(workspace):
    root = checked(workspace).root
    (root / "used.txt").unlink()
    assert "matches" in workspace.ok("check").stdout


def test_check_ignores_missing_outputs_even_when_a_step_reads_them(workspace):
    root = checked(workspace).root
    for name in ("made.txt", "used.txt"):
        (root / name).unlink()
    result = workspace.gitpipe("check")
    assert result.exit_code == 0, result.output
    assert result.stdout == "gitpipe.lock matches the pipeline\n"
    assert not (root / "made.txt").exists()  # check runs nothing


def test_check_on_an_invalid_pipeline_exits_2_naming_the_key(workspace):
    root = checked(workspace).root
    workspace.pipeline(CHECKED.replace('outs = ["used.txt"]', 'outz = ["used.txt"]'))
    result = workspace.gitpipe("check")
    assert result.exit_code == 2, result.output
    assert "gitpipe.toml" in result.stderr
    assert "steps.use.outz" in result.stderr
    assert "Traceback" not in result.output
    assert (root / "used.txt").exists()


# -- gitpipe cache verify -----------------------------------------------------------


def test_cache_verify_finds_a_corrupt_object_and_repair_removes_it_and_its_result(workspace):
    root = chain(workspace).root
    workspace.ok("repro")
    clean = workspace.ok("cache", "verify")
    assert "3 objects, 3 results checked" in clean.stdout

    entry = lockfile.read(root / "gitpipe.lock").steps["second"]
    digest, key = str(entry.outs["second.txt"]), str(entry.key)
    target = object_path(root, digest)
    target.chmod(0o644)
    data = bytearray(target.read_bytes())
    data[0] ^= 0x01
    target.write_bytes(bytes(data))
    target.chmod(0o444)

    found = workspace.gitpipe("cache", "verify")
    assert found.exit_code == 5, found.output
    assert f"corrupt object {digest}" in found.stdout
    assert "--repair" in found.stderr
    assert target.exists()  # verifying alone removes nothing

    repaired = workspace.gitpipe("cache", "verify", "--repair")
    assert repaired.exit_code == 0, repaired.output
    assert f"corrupt object {digest} (removed)" in repaired.stdout
    assert f"broken result {key}/" in repaired.stdout and "(removed)" in repaired.stdout
    assert not target.exists()
    assert not result_path(root, key).exists()
    assert "2 objects, 2 results checked" in workspace.ok("cache", "verify").stdout

    # a fresh checkout's repro: first is restored, second runs again (its result is
    # gone), third is restored since second made the same bytes
    made = outputs(root)
    for name in OUTPUTS:
        (root / name).unlink()
    workspace.ok("repro")
    assert workspace.states() == {"first": "cached", "second": "ran", "third": "cached"}
    assert outputs(root) == made
    assert target.exists()
    again = workspace.ok("cache", "verify")
    assert "3 objects, 3 results checked" in again.stdout
    assert "corrupt" not in again.stdout


# -- the pre-commit hook --------------------------------------------------------------


def hooks_repository(destination: Path) -> str:
    """A Git clone of this project at its HEAD, with the working tree's hook file,
    package and build configuration committed on top; returns the commit to pin."""
    git(PROJECT, "rev-parse", "HEAD")  # this project must be a Git repository
    subprocess.run(
        ["git", "clone", "-q", str(PROJECT), str(destination)], check=True, capture_output=True
    )
    for name in (".pre-commit-hooks.yaml", "pyproject.toml", "README.md"):
        shutil.copyfile(PROJECT / name, destination / name)
    shutil.rmtree(destination / "gitpipe")
    shutil.copytree(
        PROJECT / "gitpipe",
        destination / "gitpipe",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    git(
        destination, "add", "-A", ".pre-commit-hooks.yaml", "pyproject.toml", "README.md", "gitpipe"
    )
    if git(destination, "status", "--porcelain", "--untracked-files=no").strip():
        git(
            destination,
            "-c",
            "user.name=gitpipe tests",
            "-c",
            "user.email=test@gitpipe.invalid",
            "-c",
            "commit.gpgsign=false",
            "commit",
            "-q",
            "-m",
            "the working tree's hook and package",
        )
    return git(destination, "rev-parse", "HEAD").strip()


@pytest.mark.timeout(600)
def test_the_published_pre_commit_hook_passes_on_a_matching_lock_and_fails_naming_the_step(
    workspace, tmp_path
):
    if not PRE_COMMIT.exists():
        pytest.skip("pre-commit is in the dev extra: pip install -e '.[dev]'")
    hooks = tmp_path / "hooks"
    rev = hooks_repository(hooks)
    root = chain(workspace).root
    workspace.ok("repro")
    workspace.write(
        ".pre-commit-config.yaml",
        f"""\
        repos:
          - repo: {hooks}
            rev: {rev}
            hooks:
              - id: gitpipe-check
        """,
    )
    workspace.commit("lock and hook")
    env = {
        **os.environ,
        "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home"),
        "CI": "true",
        "PRE_COMMIT_COLOR": "never",
    }

    def pre_commit() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(PRE_COMMIT), "run", "--all-files"],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=540,
        )

    passed = pre_commit()
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "gitpipe check" in passed.stdout and "Passed" in passed.stdout

    workspace.pipeline(CHAIN.replace("rev < first.txt", "rev < first.txt | tr O 0"))
    failed = pre_commit()
    output = failed.stdout + failed.stderr
    assert failed.returncode != 0, output
    assert "Failed" in output
    assert "- exit code: 3" in output
    assert "second (command changed)" in output
    assert "first (" not in output


def test_the_hook_file_offers_gitpipe_check_as_a_python_hook():
    yaml = pytest.importorskip("yaml")  # pre-commit's own dependency

    hooks = yaml.safe_load((PROJECT / ".pre-commit-hooks.yaml").read_text())
    (hook,) = [h for h in hooks if h["id"] == "gitpipe-check"]
    assert hook["entry"] == "gitpipe check"
    assert hook["language"] == "python"
    assert hook["pass_filenames"] is False
