"""Issue 6: nested pipeline files, and hooks around each step."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from conftest import Workspace, dag, lock_steps, refused

from gitpipe.core.errors import StepFailed, UsageError
from gitpipe.workspace import HookCall, Project

INNER = """
[params]
n = 1

[steps.make]
cmd = "echo ${params.n} > made.txt"
outs = ["made.txt"]

[steps.copy]
cmd = "cp made.txt copied.txt"
deps = ["made.txt"]
outs = ["copied.txt"]

[steps.other]
cmd = "echo other > other.txt"
outs = ["other.txt"]
"""

OUTER = """
[steps.prep]
pipeline = "sub/gitpipe.toml"
desc = "the sub-pipeline"

[steps.use]
cmd = "cp sub/copied.txt used.txt"
deps = ["sub/copied.txt"]
outs = ["used.txt"]

[steps.last]
cmd = "echo last > last.txt"
outs = ["last.txt"]
after = ["prep"]
"""

INNER_STEPS = ["prep/make", "prep/copy", "prep/other"]


def nested(workspace: Workspace) -> Workspace:
    workspace.write(".gitignore", "*.txt\n")
    workspace.write("sub/gitpipe.toml", INNER)
    workspace.pipeline(OUTER)
    return workspace


def test_inner_steps_are_named_outer_slash_inner_with_their_paths_seen_from_outside(workspace):
    nested(workspace)
    parents = dag(workspace)
    assert list(parents) == [*INNER_STEPS, "use", "last"]
    assert parents["prep/copy"] == ["prep/make"]
    assert parents["use"] == ["prep/copy"]  # through sub/copied.txt
    assert sorted(parents["last"]) == sorted(INNER_STEPS)

    workspace.ok("repro")
    assert (workspace.root / "sub" / "made.txt").read_text() == "1\n"
    assert (workspace.root / "used.txt").read_text() == "1\n"
    steps = lock_steps(workspace)
    assert set(steps) == {*INNER_STEPS, "use", "last"}
    assert steps["prep/copy"]["outs"].keys() == {"sub/copied.txt"}
    order = [step for step, _ in workspace.last_run()]
    assert max(order.index(s) for s in INNER_STEPS) < order.index("last")

    status = workspace.ok("status").stdout
    assert {line.split()[0] for line in status.splitlines() if line.strip()} >= set(INNER_STEPS)


def test_naming_the_outer_step_selects_every_inner_step(workspace):
    nested(workspace)
    workspace.ok("repro", "prep")
    assert workspace.ran() == INNER_STEPS
    assert not (workspace.root / "used.txt").exists()


def test_editing_an_inner_param_reruns_only_that_inner_step_and_what_reads_it(workspace):
    nested(workspace)
    workspace.ok("repro")
    workspace.write("sub/gitpipe.toml", INNER.replace("n = 1", "n = 2"))
    workspace.ok("repro")
    assert workspace.ran() == ["prep/make", "prep/copy", "use"]
    assert workspace.states()["prep/other"] == "up to date"
    assert workspace.states()["last"] == "up to date"
    assert (workspace.root / "used.txt").read_text() == "2\n"


def test_diff_between_commits_shows_inner_steps_by_their_outer_names(workspace):
    nested(workspace)
    workspace.ok("repro")
    workspace.commit("one")
    workspace.write("sub/gitpipe.toml", INNER.replace("n = 1", "n = 2"))
    workspace.ok("repro")
    workspace.commit("two")
    shown = workspace.ok("diff", "HEAD~1", "HEAD").stdout
    assert "prep/make" in shown
    assert "param n" in shown
    assert "prep/other" not in shown


def test_pipeline_files_nesting_each_other_are_refused(workspace):
    nested(workspace)
    workspace.ok("repro")
    workspace.write("sub/gitpipe.toml", INNER + '\n[steps.back]\npipeline = "../gitpipe.toml"\n')
    refused(workspace, "repro", says=("nest each other", "steps.back.pipeline"))


@pytest.mark.parametrize(
    ("prep", "says"),
    [
        pytest.param(
            'pipeline = "nowhere/gitpipe.toml"',
            ("steps.prep.pipeline", "'nowhere/gitpipe.toml' does not exist"),
            id="missing-file",
        ),
        pytest.param(
            'pipeline = "sub/gitpipe.toml"\ncmd = "true"',
            ("steps.prep.cmd", "takes only after, desc, pipeline"),
            id="cmd",
        ),
        pytest.param(
            'pipeline = "sub/gitpipe.toml"\nmatrix = { x = [1] }',
            ("steps.prep.matrix",),
            id="matrix",
        ),
        pytest.param('pipeline = "sub/"', ("steps.prep.pipeline", "not a folder"), id="folder"),
    ],
)
def test_a_bad_nested_pipeline_step_is_refused(workspace, prep, says):
    nested(workspace)
    workspace.ok("repro")
    workspace.pipeline(OUTER.replace('pipeline = "sub/gitpipe.toml"', prep))
    refused(workspace, "repro", says=("gitpipe.toml", *says))


# -- hooks ---------------------------------------------------------------------------

HOOKS = """
[hooks]
before_step = ["echo $GITPIPE_HOOK $GITPIPE_STEP $GITPIPE_STATE >> hooks.out"]
after_step = [
  "echo $GITPIPE_HOOK $GITPIPE_STEP $GITPIPE_STATE >> hooks.out",
  "echo $GITPIPE_RUN_ID $GITPIPE_LOG >> context.out",
]
on_failure = ["echo $GITPIPE_HOOK $GITPIPE_STEP $GITPIPE_STATE >> hooks.out"]
"""

GOOD = """
[steps.good]
cmd = "echo good > good.txt"
outs = ["good.txt"]
"""

STEPS = (
    GOOD
    + """
[steps.bad]
cmd = "echo oops; exit 4"
outs = ["bad.txt"]
"""
)


def hooked(workspace: Workspace, hooks: str = HOOKS, steps: str = STEPS) -> Workspace:
    workspace.write(".gitignore", "*.txt\n*.out\n")
    workspace.pipeline(hooks + steps)
    return workspace


def calls(workspace: Workspace) -> list[str]:
    path = workspace.root / "hooks.out"
    lines = path.read_text().splitlines() if path.exists() else []
    path.unlink(missing_ok=True)
    return lines


def latest_run_id(workspace: Workspace) -> str:
    with closing(sqlite3.connect(workspace.root / ".gitpipe" / "lineage.db")) as db:
        (run_id,) = db.execute("SELECT id FROM runs ORDER BY rowid DESC LIMIT 1").fetchone()
    return str(run_id)


def test_hooks_run_around_steps_and_after_a_failure_in_order(workspace):
    hooked(workspace)
    result = workspace.gitpipe("repro", "--keep-going")
    assert result.exit_code == 1
    assert calls(workspace) == [
        "before_step good running",
        "after_step good ran",
        "before_step bad running",
        "after_step bad failed",
        "on_failure bad failed",
    ]
    run_id, log = (workspace.root / "context.out").read_text().splitlines()[0].split(" ")
    assert run_id == latest_run_id(workspace)
    assert log.endswith(f"{run_id}/good.log")
    assert "echo good" in Path(log).read_text()


def test_a_restored_step_gets_only_its_after_step_hook(workspace):
    hooked(workspace, steps=GOOD)
    workspace.ok("repro")
    calls(workspace)
    (workspace.root / "good.txt").unlink()
    workspace.ok("repro")
    assert workspace.states() == {"good": "cached"}
    assert calls(workspace) == ["after_step good cached"]


def test_a_failing_before_step_hook_fails_the_step_without_running_it(workspace):
    hooked(workspace, hooks='[hooks]\nbefore_step = ["exit 7"]\n', steps=GOOD)
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1
    assert "before_step hook `exit 7` failed for step 'good'" in result.stderr
    assert workspace.states() == {"good": "failed"}
    assert not (workspace.root / "good.txt").exists()


def test_a_failing_after_step_hook_fails_the_run_but_keeps_the_steps_result(workspace):
    hooked(workspace, hooks='[hooks]\nafter_step = ["exit 7"]\n', steps=GOOD)
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1
    assert "after_step hook `exit 7` failed for step 'good'" in result.stderr
    assert workspace.states() == {"good": "ran"}
    assert "good" in lock_steps(workspace)
    assert (workspace.root / "good.txt").read_text() == "good\n"


def test_with_fail_false_a_failing_hook_is_a_notice_and_the_run_succeeds(workspace):
    hooked(
        workspace,
        hooks='[hooks]\nfail = false\nbefore_step = ["exit 7"]\nafter_step = ["exit 8"]\n',
        steps=GOOD,
    )
    result = workspace.ok("repro")
    assert "hook `exit 7` failed" in result.output
    assert "hooks.fail = false" in result.output
    assert workspace.states() == {"good": "ran"}
    assert (workspace.root / "good.txt").read_text() == "good\n"


@pytest.mark.parametrize(
    ("hooks", "key"),
    [
        ('[hooks]\nafter_run = ["true"]\n', "hooks.after_run"),
        ("[hooks]\nbefore_step = 1\n", "hooks.before_step"),
        ('[hooks]\nbefore_step = [""]\n', "hooks.before_step"),
        ("[hooks]\nfail = 1\n", "hooks.fail"),
    ],
)
def test_a_bad_hooks_table_is_refused(workspace, hooks, key):
    hooked(workspace, hooks="", steps=GOOD)
    workspace.ok("repro")
    workspace.pipeline(hooks + GOOD)
    refused(workspace, "repro", says=("gitpipe.toml", key))


def test_the_python_api_calls_hook_functions_with_a_hookcall(workspace):
    hooked(workspace, hooks="")
    seen: list[HookCall] = []
    project = Project.open(workspace.root)
    with pytest.raises(StepFailed):
        project.repro(
            keep_going=True,
            hooks={
                "before_step": seen.append,
                "after_step": [seen.append],
                "on_failure": seen.append,
            },
        )
    assert [(c.event, c.step, c.state) for c in seen] == [
        ("before_step", "good", "running"),
        ("after_step", "good", "ran"),
        ("before_step", "bad", "running"),
        ("after_step", "bad", "failed"),
        ("on_failure", "bad", "failed"),
    ]
    assert {c.run_id for c in seen} == {latest_run_id(workspace)}


def test_a_raising_hook_function_fails_the_run(workspace):
    hooked(workspace, hooks="", steps=GOOD)

    def refuse(call: HookCall) -> None:
        raise RuntimeError(f"no {call.step} today")

    with pytest.raises(StepFailed, match="no good today"):
        Project.open(workspace.root).repro(hooks={"after_step": refuse})
    assert (workspace.root / "good.txt").exists()


def test_an_unknown_hook_event_is_a_usage_error_before_anything_runs(workspace):
    hooked(workspace, hooks="")
    with pytest.raises(UsageError, match="unknown hook 'after_run'"):
        Project.open(workspace.root).repro(hooks={"after_run": print})
    assert not (workspace.root / "good.txt").exists()
    assert not (workspace.root / ".gitpipe" / "lineage.db").exists()
