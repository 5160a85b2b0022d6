"""Issue 6: steps reading other steps' metrics, `when` conditions and approvals."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from typing import Any

import pytest
from conftest import Workspace, dag, good_run, lock_steps, refused

# -- metrics -> params ---------------------------------------------------------------

TUNED = """
[params]
best = 0.05
loss = 0.3
lr = "${steps.tune.metrics.best_lr}"
label = "lr=${steps.tune.metrics.best_lr}"

[steps.tune]
cmd = "echo '{\\"best_lr\\": ${params.best}, \\"loss\\": ${params.loss}}' > tune.json"
metrics = ["tune.json"]

[steps.train]
cmd = "echo ${steps.tune.metrics.best_lr} $LR \\"$GITPIPE_PARAMS\\" > train.txt"
env = { LR = "${steps.tune.metrics.best_lr}" }
params = ["lr", "label"]
outs = ["train.txt"]
"""


def tuned(workspace: Workspace, *, best: float = 0.05, loss: float = 0.3) -> None:
    workspace.pipeline(
        TUNED.replace("best = 0.05", f"best = {best}").replace("loss = 0.3", f"loss = {loss}")
    )


def trained(workspace: Workspace) -> tuple[str, str, dict[str, Any]]:
    cmd, env, params = (workspace.root / "train.txt").read_text().split(" ", 2)
    return cmd, env, json.loads(params)


def test_a_metric_reference_fills_the_command_env_and_typed_params(workspace):
    tuned(workspace)
    workspace.ok("repro")
    assert trained(workspace) == ("0.05", "0.05", {"lr": 0.05, "label": "lr=0.05"})


def test_a_metric_reference_is_an_edge_without_any_file_between_the_steps(workspace):
    tuned(workspace)
    assert dag(workspace)["train"] == ["tune"]
    workspace.ok("repro")
    assert workspace.last_run() == [("tune", "ran"), ("train", "ran")]


@pytest.mark.parametrize(
    "reader",
    [
        'cmd = "echo ${steps.tune.metrics.best_lr}"',
        'cmd = "true"\nenv = { LR = "${steps.tune.metrics.best_lr}" }',
        'cmd = "true"\nparams = ["lr"]',
    ],
    ids=["cmd", "env", "param"],
)
def test_each_place_a_metric_is_read_makes_an_edge(workspace, reader):
    workspace.pipeline(
        f"""
        [params]
        lr = "${{steps.tune.metrics.best_lr}}"

        [steps.tune]
        cmd = "echo '{{\\"best_lr\\": 1}}' > tune.json"
        metrics = ["tune.json"]

        [steps.reader]
        {reader}
        """
    )
    assert dag(workspace) == {"tune": [], "reader": ["tune"]}


def test_a_new_metric_value_reruns_the_reader_the_same_value_does_not(workspace):
    tuned(workspace)
    workspace.ok("repro")
    key = lock_steps(workspace)["train"]["key"]

    tuned(workspace, loss=0.2)  # tune's metrics change, best_lr does not
    workspace.ok("repro")
    assert workspace.states() == {"tune": "ran", "train": "up to date"}
    assert lock_steps(workspace)["train"]["key"] == key

    tuned(workspace, loss=0.2, best=0.125)
    workspace.ok("repro")
    assert workspace.ran() == ["tune", "train"]
    assert trained(workspace)[2]["lr"] == 0.125
    assert lock_steps(workspace)["train"]["key"] != key


def test_a_metric_missing_when_the_reader_runs_fails_it_naming_what_there_is(workspace):
    workspace.pipeline(TUNED.replace('metrics.best_lr}"\nlabel', 'metrics.nope}"\nlabel'))
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1
    assert "'nope'" in result.stderr
    assert "best_lr, loss" in result.stderr
    assert workspace.states() == {"tune": "ran", "train": "failed"}
    assert not (workspace.root / "train.txt").exists()


@pytest.mark.parametrize(
    ("reader", "says"),
    [
        pytest.param(
            'cmd = "echo ${steps.ghost.metrics.x}"',
            ("steps.reader.cmd", "names no step"),
            id="unknown-step",
        ),
        pytest.param(
            'cmd = "echo ${steps.ok.metrics.x}"',
            ("steps.reader.cmd", "declares no metrics"),
            id="step-without-metrics",
        ),
        pytest.param(
            'cmd = "echo ${steps.reader.metrics.x} > r.json"\nmetrics = ["r.json"]',
            ("steps.reader.cmd", "its own metrics"),
            id="itself",
        ),
        pytest.param(
            'cmd = "echo ${steps.sweep.metrics.x}"',
            ("steps.reader.cmd", "expands to several steps", "sweep@1"),
            id="matrix-group",
        ),
        pytest.param(
            'cmd = "true"\ndeps = ["${steps.tune.metrics.x}.txt"]',
            ("steps.reader.deps[0]", "a path cannot read"),
            id="in-deps",
        ),
        pytest.param(
            'cmd = "true"\nouts = ["out-${steps.tune.metrics.x}"]',
            ("steps.reader.outs[0]", "a path cannot read"),
            id="in-outs",
        ),
        pytest.param(
            'cmd = "echo ${steps.tune.x}"',
            ("steps.reader.cmd", "${steps.STEP.metrics.NAME}"),
            id="malformed",
        ),
    ],
)
def test_a_bad_metric_reference_is_refused_before_anything_runs(workspace, reader, says):
    good_run(workspace)
    workspace.pipeline(
        f"""
        [steps.ok]
        cmd = "echo ok > ok.txt"
        outs = ["ok.txt"]

        [steps.tune]
        cmd = "echo '{{}}' > tune.json"
        metrics = ["tune.json"]

        [steps.sweep]
        matrix = {{ n = [1, 2] }}
        cmd = "echo '{{}}' > s${{matrix.n}}.json"
        metrics = ["s${{matrix.n}}.json"]

        [steps.reader]
        {reader}
        """
    )
    refused(workspace, "repro", says=("gitpipe.toml", *says))


# -- when ----------------------------------------------------------------------------

GATED = """
[params]
accuracy = 0.85

[steps.evaluate]
cmd = "echo '{\\"accuracy\\": ${params.accuracy}}' > m.json"
metrics = ["m.json"]

[steps.deploy]
cmd = "echo deployed > deploy.txt"
when = "${steps.evaluate.metrics.accuracy} >= 0.9"
outs = ["deploy.txt"]

[steps.notify]
cmd = "cp deploy.txt notify.txt"
deps = ["deploy.txt"]
outs = ["notify.txt"]

[steps.other]
cmd = "echo other > other.txt"
outs = ["other.txt"]
"""


def test_a_false_condition_skips_the_step_and_its_dependents_and_the_run_succeeds(workspace):
    workspace.pipeline(GATED)
    result = workspace.ok("repro")
    assert workspace.states() == {
        "evaluate": "ran",
        "deploy": "skipped",
        "notify": "skipped",
        "other": "ran",
    }
    assert "deploy: skipped, condition false: 0.85 >= 0.9" in result.stderr
    assert not (workspace.root / "deploy.txt").exists()
    assert not (workspace.root / "notify.txt").exists()

    status = workspace.ok("status").stdout
    lines = {line.split()[0]: line for line in status.splitlines() if line.strip()}
    assert "skipped" in lines["deploy"]
    assert "0.85 >= 0.9" in lines["deploy"]
    assert "skipped" in lines["notify"]
    assert "skipped" not in lines["other"]


def test_a_true_condition_runs_the_step(workspace):
    workspace.pipeline(GATED)
    workspace.ok("repro")
    workspace.pipeline(GATED.replace("accuracy = 0.85", "accuracy = 0.95"))
    workspace.ok("repro")
    assert workspace.ran() == ["evaluate", "deploy", "notify"]
    assert (workspace.root / "notify.txt").read_text() == "deployed\n"


def test_a_condition_on_params_is_decided_when_the_file_is_read(workspace):
    workspace.pipeline(
        """
        [params]
        mode = "quick"

        [steps.full]
        cmd = "echo full > full.txt"
        when = "${params.mode} == 'full' or not true"
        outs = ["full.txt"]
        """
    )
    result = workspace.ok("repro")
    assert workspace.states() == {"full": "skipped"}
    # the params are shown filled in, as the metrics are
    assert "full: skipped, condition false: 'quick' == 'full' or not true" in result.stderr


def test_a_false_condition_on_a_param_and_a_metric_shows_both_values(workspace):
    workspace.pipeline(
        """
        [params]
        dry_run = true

        [steps.evaluate]
        cmd = "echo '{\\"accuracy\\": 0.95}' > m.json"
        metrics = ["m.json"]

        [steps.deploy]
        cmd = "echo deployed > deploy.txt"
        when = "not ${params.dry_run} and ${steps.evaluate.metrics.accuracy} >= 0.9"
        outs = ["deploy.txt"]
        """
    )
    result = workspace.ok("repro")
    assert workspace.states()["deploy"] == "skipped"
    assert "deploy: skipped, condition false: not true and 0.95 >= 0.9" in result.stderr
    assert "${" not in result.stderr.partition("condition false:")[2].partition("(when")[0]


@pytest.mark.parametrize(
    "when",
    [
        "${steps.evaluate.metrics.accuracy} >>= 0.9",
        "__import__('os').system('touch pwned')",
        "0.8 < ${steps.evaluate.metrics.accuracy} < 1",
        "accuracy > 0.9",
        "${nowhere.x} > 1",
        "(${steps.evaluate.metrics.accuracy} > 0.9",
    ],
)
def test_a_malformed_condition_is_refused_naming_its_key(workspace, when):
    good_run(workspace)
    workspace.pipeline(
        GATED.replace(
            'when = "${steps.evaluate.metrics.accuracy} >= 0.9"', f"when = {json.dumps(when)}"
        )
    )
    refused(workspace, "repro", says=("gitpipe.toml", "steps.deploy.when"))
    assert not (workspace.root / "pwned").exists()


# -- approvals -----------------------------------------------------------------------

GUARDED = """
[steps.release]
cmd = "cp data.txt release.txt"
deps = ["data.txt"]
outs = ["release.txt"]
approval = true

[steps.announce]
cmd = "cp release.txt announce.txt"
deps = ["release.txt"]
outs = ["announce.txt"]

[steps.other]
cmd = "echo other > other.txt"
outs = ["other.txt"]
"""


def guarded(workspace: Workspace) -> Workspace:
    workspace.write("data.txt", "v1\n")
    workspace.pipeline(GUARDED)
    return workspace


def approvals(workspace: Workspace) -> list[dict[str, Any]]:
    with closing(sqlite3.connect(workspace.root / ".gitpipe" / "lineage.db")) as db:
        db.row_factory = sqlite3.Row
        return [dict(row) for row in db.execute("SELECT * FROM approvals ORDER BY id")]


def waits(workspace: Workspace) -> str:
    """`gitpipe repro`, which stops before `release` (exit 3, no prompt: CI=true)."""
    result = workspace.gitpipe("repro")
    assert result.exit_code == 3, result.output
    states = workspace.states()
    assert states["release"] == "waiting for approval"
    assert states["announce"] == "skipped"
    return result.stderr


@pytest.mark.timeout(60)
def test_a_step_asking_for_approval_waits_while_the_others_run(workspace):
    guarded(workspace)
    stderr = waits(workspace)
    assert workspace.states()["other"] == "ran"
    assert "release: waiting for approval" in stderr
    assert "gitpipe approve release" in stderr
    assert not (workspace.root / "release.txt").exists()
    assert "release" not in lock_steps(workspace)


@pytest.mark.timeout(60)
def test_gitpipe_approve_records_who_approved_which_key_then_repro_runs_it(workspace):
    guarded(workspace)
    waits(workspace)
    approved = workspace.ok("approve", "release", env={"GITPIPE_USER": "alice"})
    assert "approved release" in approved.stdout
    assert "alice" in approved.stdout

    workspace.ok("repro")
    assert workspace.ran() == ["release", "announce"]
    assert workspace.states()["other"] == "up to date"
    (row,) = approvals(workspace)
    assert row["step"] == "release"
    assert row["key"] == lock_steps(workspace)["release"]["key"]
    assert row["approved_by"] == "alice"
    assert row["approved_at"][:4].isdigit() and "T" in row["approved_at"]


@pytest.mark.timeout(60)
def test_an_approval_holds_for_one_key_only(workspace):
    guarded(workspace)
    workspace.ok("repro", "--approve", "release")
    workspace.write("data.txt", "v2\n")
    waits(workspace)
    assert (workspace.root / "release.txt").read_text() == "v1\n"
    assert len(approvals(workspace)) == 1


@pytest.mark.timeout(60)
def test_repro_approve_runs_the_step_and_records_the_approval_with_the_run(workspace):
    guarded(workspace)
    workspace.ok("repro", "--approve", "release", env={"GITPIPE_USER": "bob"})
    assert workspace.ran() == ["release", "announce", "other"]
    (row,) = approvals(workspace)
    with closing(sqlite3.connect(workspace.root / ".gitpipe" / "lineage.db")) as db:
        (run_id,) = db.execute("SELECT id FROM runs ORDER BY rowid DESC LIMIT 1").fetchone()
    assert row["run_id"] == run_id
    assert row["approved_by"] == "bob"
    assert row["key"] == lock_steps(workspace)["release"]["key"]


@pytest.mark.timeout(60)
def test_a_result_restored_from_the_cache_needs_no_new_approval(workspace):
    guarded(workspace)
    workspace.ok("repro", "--approve", "release")
    with closing(sqlite3.connect(workspace.root / ".gitpipe" / "lineage.db")) as db, db:
        db.execute("DELETE FROM approvals")  # as in a clone that shares only the cache
    (workspace.root / "release.txt").unlink()
    workspace.ok("repro")
    assert workspace.states()["release"] == "cached"
    assert (workspace.root / "release.txt").read_text() == "v1\n"


def test_approving_a_step_that_does_not_ask_for_approval_is_refused(workspace):
    guarded(workspace)
    workspace.ok("repro", "--approve", "release")
    refused(workspace, "approve", "other", says=("'other'", "does not ask for approval"))
    refused(workspace, "approve", "ghost", says=("'ghost'",))


def test_repro_approve_of_a_step_that_does_not_ask_for_approval_is_refused(workspace):
    guarded(workspace)
    workspace.ok("repro", "--approve", "release")
    refused(workspace, "repro", "--approve", "other", says=("'other'",))


def test_status_says_a_step_needs_approval_until_it_is_approved(workspace):
    guarded(workspace)
    workspace.ok("repro", "other")  # state exists; release never ran

    def release() -> dict[str, Any]:
        statuses = json.loads(workspace.ok("status", "--json").stdout)
        return next(s for s in statuses if s["step"] == "release")

    assert release()["state"] == "stale"
    assert "needs approval" in release()["reasons"]
    workspace.ok("approve", "release")
    assert release()["state"] == "stale"
    assert "needs approval" not in release()["reasons"]
