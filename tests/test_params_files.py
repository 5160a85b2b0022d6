"""Params files (issue #19): `[pipeline] params_files` in YAML, JSON and TOML join the
params namespace; `-p` shows in them while a run lasts, and they are put back byte
for byte after it, however it ends; `[pipeline] env` lies under every step's env."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Workspace, lock_steps, refused, snapshot

GITPIPE = Path(sys.executable).parent / "gitpipe"

#: a DVC-style params file, with comments and layout a rewrite would lose
PARAMS_YAML = """\
# params for the whole project
featurize:
  target: price     # what we predict
train:
  cv: 5
  lr: 0.1           # learning rate
"""

#: a script that reads params.yaml itself, as `--config params.yaml` scripts do
READER = """\
import json, sys, yaml
with open(sys.argv[1]) as handle:
    values = yaml.safe_load(handle)
with open(sys.argv[2], "w") as out:
    json.dump(values, out, sort_keys=True)
if len(sys.argv) > 3:
    sys.exit(int(sys.argv[3]))
"""

PIPELINE = """\
[pipeline]
params_files = ["params.yaml"]

[steps.featurize]
cmd = "python3 reader.py params.yaml features.json"
params = ["featurize.target"]
outs = ["features.json"]

[steps.train]
cmd = "python3 reader.py params.yaml model.json"
params = ["train"]
outs = ["model.json"]

[steps.evaluate]
cmd = "echo ${params.train.lr} > score.txt"
outs = ["score.txt"]
"""


def setup(ws: Workspace, pipeline: str = PIPELINE) -> Path:
    ws.write("params.yaml", PARAMS_YAML)
    ws.write("reader.py", READER)
    ws.write(".gitignore", "*.json\n*.txt\n*.log\n")
    ws.pipeline(pipeline)
    ws.commit("pipeline")
    return ws.root / "params.yaml"


def env_for_subprocess() -> dict[str, str]:
    return {**os.environ, "CI": "true"}


def wait_for(condition: Callable[[], object], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


# -- the params namespace ----------------------------------------------------------


def test_params_file_values_are_params_everywhere_params_are(workspace):
    setup(workspace)
    workspace.ok("repro")
    assert json.loads((workspace.root / "model.json").read_text())["train"]["lr"] == 0.1
    assert (workspace.root / "score.txt").read_text() == "0.1\n"
    locked = lock_steps(workspace)
    assert locked["train"]["params"] == {"train": {"cv": 5, "lr": 0.1}}
    assert locked["featurize"]["params"] == {"featurize.target": "price"}
    assert locked["evaluate"]["params"] == {"train.lr": 0.1}


def test_editing_train_cv_in_params_yaml_reruns_only_the_steps_that_select_it(workspace):
    params = setup(workspace)
    workspace.ok("repro")
    params.write_text(PARAMS_YAML.replace("cv: 5", "cv: 10"))
    status = workspace.ok("status").stdout
    assert "params changed: train.cv" in status
    workspace.ok("repro")
    assert workspace.ran() == ["train"]
    assert workspace.states()["evaluate"] == "up to date"
    assert workspace.states()["featurize"] == "up to date"


def test_a_comment_edit_in_a_params_file_reruns_nothing(workspace):
    params = setup(workspace)
    workspace.ok("repro")
    params.write_text("# reworded\n" + PARAMS_YAML.replace("# learning rate", ""))
    workspace.ok("repro")
    assert workspace.ran() == []


def test_json_and_toml_params_files_join_the_namespace_beside_params(workspace):
    workspace.write("conf/model.json", '{"model": {"depth": 3, "kind": "tree"}}\n')
    workspace.write("conf/data.toml", "[data]\nrows = 100\n")
    workspace.write(".gitignore", "*.txt\n")
    workspace.pipeline(
        """\
        [pipeline]
        params_files = ["conf/model.json", "conf/data.toml"]

        [params]
        seed = 7

        [steps.fit]
        cmd = "echo ${params.model.depth} ${params.data.rows} ${params.seed} > fit.txt"
        params = ["conf/model.json:*"]
        outs = ["fit.txt"]
        """
    )
    workspace.commit()
    workspace.ok("repro")
    assert (workspace.root / "fit.txt").read_text() == "3 100 7\n"
    assert lock_steps(workspace)["fit"]["params"] == {
        "data.rows": 100,
        "model": {"depth": 3, "kind": "tree"},
        "model.depth": 3,
        "seed": 7,
    }
    workspace.write("conf/data.toml", "[data]\nrows = 200\n")
    assert "params changed: data.rows" in workspace.ok("status").stdout


def test_file_entries_select_what_that_file_defines_and_check_it(workspace):
    workspace.write("a.yaml", "train:\n  lr: 1\nshared:\n  x: 1\n")
    workspace.write("b.json", '{"shared": {"y": 2}, "other": 3}\n')
    workspace.pipeline(
        """\
        [pipeline]
        params_files = ["a.yaml", "b.json"]

        [steps.all_of_b]
        cmd = "true"
        params = ["b.json:*"]

        [steps.one_of_a]
        cmd = "true"
        params = ["a.yaml:train.lr"]
        """
    )
    workspace.commit()
    workspace.ok("repro")
    locked = lock_steps(workspace)
    # `shared` is a table both files add to: b.json's part of it is `shared.y`
    assert locked["all_of_b"]["params"] == {"other": 3, "shared.y": 2}
    assert locked["one_of_a"]["params"] == {"train.lr": 1}

    text = (workspace.root / "gitpipe.toml").read_text()
    workspace.write("gitpipe.toml", text.replace('"a.yaml:train.lr"', '"b.json:train.lr"'))
    refused(
        workspace,
        "status",
        says=(
            "at steps.one_of_a.params[0]: param 'train.lr' is not defined in params file 'b.json'",
        ),
    )
    workspace.write("gitpipe.toml", text.replace('"a.yaml:train.lr"', '"c.yaml:*"'))
    refused(
        workspace,
        "repro",
        says=("'c.yaml' is not one of [pipeline] params_files (they are: a.yaml, b.json)",),
    )


# -- errors: one line, exit 2, nothing written --------------------------------------


def test_a_key_defined_in_two_params_files_is_an_error_naming_both(workspace):
    workspace.write("one.yaml", "train:\n  lr: 1\n")
    workspace.write("two.json", '{"train": {"lr": 2}}\n')
    workspace.pipeline('[pipeline]\nparams_files = ["one.yaml", "two.json"]\n')
    workspace.commit()
    message = refused(
        workspace,
        "status",
        says=("param 'train.lr' is defined in both one.yaml and two.json",),
    )
    assert message.count("\n") == 1


def test_a_key_in_a_params_file_and_in_params_is_an_error_naming_both(workspace):
    workspace.write("params.yaml", "seed: 1\n")
    workspace.pipeline('[pipeline]\nparams_files = ["params.yaml"]\n[params]\nseed = 2\n')
    workspace.commit()
    refused(
        workspace,
        "repro",
        says=(
            "gitpipe.toml, at pipeline.params_files[0]: param 'seed' is defined in both "
            "[params] and params.yaml",
        ),
    )


def test_a_missing_params_file_is_an_error_naming_it(workspace):
    workspace.pipeline('[pipeline]\nparams_files = ["conf/params.yaml"]\n')
    workspace.commit()
    refused(workspace, "repro", says=("params file 'conf/params.yaml' does not exist",))
    refused(workspace, "status", says=("params file 'conf/params.yaml' does not exist",))


def test_bad_yaml_is_one_line_exit_2_and_nothing_is_written(workspace):
    setup(workspace)
    workspace.ok("repro")
    workspace.write("params.yaml", "train:\n  lr: [0.1\n  cv: 5\n")
    message = refused(workspace, "repro", says=("params file 'params.yaml': invalid YAML:",))
    assert message.count("\n") == 1, message
    assert "Traceback" not in message


def test_a_params_file_that_is_no_mapping_or_of_another_kind_is_refused(workspace):
    workspace.write("list.yaml", "- 1\n- 2\n")
    workspace.write("params.ini", "[a]\nb = 1\n")
    workspace.pipeline('[pipeline]\nparams_files = ["list.yaml"]\n')
    workspace.commit()
    refused(
        workspace,
        "status",
        says=("params file 'list.yaml' must hold a mapping at its top, not a list",),
    )
    workspace.pipeline('[pipeline]\nparams_files = ["params.ini"]\n')
    refused(workspace, "status", says=("must end in .yaml, .yml, .json or .toml",))


def test_a_p_override_of_no_param_names_the_params_files_too(workspace):
    setup(workspace)
    before = snapshot(workspace.root)
    result = workspace.gitpipe("repro", "-p", "train.nope=1")
    assert result.exit_code == 2
    assert "there is no param 'train.nope' in gitpipe.toml's [params] or its params files" in (
        result.stderr
    )
    assert snapshot(workspace.root) == before


# -- -p: the file shows the override while the run lasts -----------------------------


def test_a_script_reading_params_yaml_itself_sees_a_p_override_and_the_file_is_put_back(
    workspace,
):
    params = setup(workspace)
    original = params.read_bytes()
    workspace.ok("repro", "-p", "train.lr=0.5", "-j", "2")
    seen = json.loads((workspace.root / "model.json").read_text())
    assert seen["train"] == {"cv": 5, "lr": 0.5}
    # the steps running beside it read the same rewritten file
    assert json.loads((workspace.root / "features.json").read_text())["train"]["lr"] == 0.5
    assert (workspace.root / "score.txt").read_text() == "0.5\n"
    assert params.read_bytes() == original
    assert not (workspace.root / ".gitpipe" / "params-saved").exists()
    # an experiment leaves the lock alone; the next plain run runs what the values change
    workspace.ok("repro")
    assert sorted(workspace.ran()) == ["evaluate", "train"]
    assert workspace.states()["featurize"] == "cached"  # featurize.target was not overridden
    assert json.loads((workspace.root / "model.json").read_text())["train"]["lr"] == 0.1


def test_a_failing_step_with_p_leaves_the_params_file_byte_identical(workspace):
    params = setup(
        workspace,
        PIPELINE.replace("params.yaml model.json", "params.yaml model.json 3"),
    )
    original = params.read_bytes()
    result = workspace.gitpipe("repro", "-p", "train.cv=9")
    assert result.exit_code == 1, result.output
    assert json.loads((workspace.root / "model.json").read_text())["train"]["cv"] == 9
    assert params.read_bytes() == original
    assert not (workspace.root / ".gitpipe" / "params-saved").exists()


def test_a_dry_run_and_a_frozen_run_never_rewrite_a_params_file(workspace):
    params = setup(workspace)
    workspace.ok("repro")
    stamp = params.stat()
    workspace.ok("repro", "-n", "-p", "train.lr=0.5")
    result = workspace.gitpipe("repro", "--frozen", "-p", "train.lr=0.5")
    assert result.exit_code == 3, result.output
    after = params.stat()
    assert (after.st_ino, after.st_mtime_ns) == (stamp.st_ino, stamp.st_mtime_ns)


def _start_held_run(root: Path, *args: str) -> subprocess.Popen[str]:
    """`gitpipe repro -p train.lr=0.5` whose train step waits while hold.log exists,
    in a process group of its own (as a shell's foreground job)."""
    (root / "hold.log").write_text("")
    return subprocess.Popen(
        [str(GITPIPE), "repro", "-p", "train.lr=0.5", *args],
        cwd=root,
        env=env_for_subprocess(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


HELD = PIPELINE.replace(
    'cmd = "python3 reader.py params.yaml model.json"',
    'cmd = "python3 reader.py params.yaml model.json; touch started.log; '
    'while [ -f hold.log ]; do sleep 0.1; done"',
)


@pytest.mark.timeout(90)
def test_ctrl_c_during_a_run_with_p_puts_the_params_file_back(workspace):
    params = setup(workspace, HELD)
    original = params.read_bytes()
    root = workspace.root
    process = _start_held_run(root)
    try:
        wait_for(lambda: (root / "started.log").exists(), "the train step to start")
        assert b"lr: 0.5" in params.read_bytes()
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, stderr
    assert params.read_bytes() == original
    assert not (root / ".gitpipe" / "params-saved").exists()


@pytest.mark.timeout(90)
def test_after_sigkill_the_next_status_puts_the_params_file_back(workspace):
    params = setup(workspace, HELD)
    original = params.read_bytes()
    mode = params.stat().st_mode
    root = workspace.root
    process = _start_held_run(root)
    try:
        wait_for(lambda: (root / "started.log").exists(), "the train step to start")
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=15)
        assert process.returncode == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        with contextlib.suppress(ProcessLookupError):  # the step dies with gitpipe
            os.killpg(process.pid, signal.SIGKILL)
        (root / "hold.log").unlink()
    assert params.read_bytes() != original  # the killed run could not put it back
    workspace.ok("status")
    assert params.read_bytes() == original
    assert params.stat().st_mode == mode
    assert not (root / ".gitpipe" / "params-saved").exists()
    workspace.ok("repro")
    assert json.loads((root / "model.json").read_text())["train"]["lr"] == 0.1


def test_a_params_file_edited_after_a_killed_run_is_left_alone_and_the_copy_named(workspace):
    params = setup(workspace)
    root = workspace.root
    saved = root / ".gitpipe" / "params-saved"
    saved.mkdir(parents=True)
    # as a killed run leaves it: the original saved, then the file rewritten
    (saved / "0.saved").write_bytes(params.read_bytes())
    from gitpipe.core.hashing import digest_bytes

    manifest = {
        "files": [
            {
                "path": "params.yaml",
                "saved": "0.saved",
                "original": str(digest_bytes(params.read_bytes())),
                "shown": str(digest_bytes(b"train: {lr: 0.5}\n")),
                "mode": 0o644,
            }
        ]
    }
    (saved / "manifest.json").write_text(json.dumps(manifest))
    params.write_text("train:\n  lr: 0.7  # edited by hand\n")
    result = workspace.gitpipe("status")
    assert result.exit_code == 5, result.output
    says = "params file params.yaml was edited while a run with -p showed its override"
    assert says in result.stderr
    assert str(saved / "0.saved") in result.stderr
    assert params.read_text() == "train:\n  lr: 0.7  # edited by hand\n"


# -- versions and diff read the params files from Git --------------------------------


def test_diff_and_versions_show_a_params_file_change_between_commits(workspace):
    params = setup(workspace)
    workspace.ok("repro")
    workspace.commit("first")
    params.write_text(PARAMS_YAML.replace("lr: 0.1", "lr: 0.2"))
    workspace.ok("repro")
    workspace.commit("second")

    changes = json.loads(workspace.ok("diff", "--json", "HEAD~1", "HEAD").stdout)
    by_step = {s["step"]: s for s in changes["steps"]}
    assert [p["key"] for p in by_step["train"]["params"]] == ["train.lr"]
    assert [p["key"] for p in by_step["evaluate"]["params"]] == ["train.lr"]
    assert "featurize" not in by_step  # unchanged steps are left out
    text = workspace.ok("diff", "HEAD~1", "HEAD").stdout
    assert "train.lr" in text and "0.1" in text and "0.2" in text

    versions = workspace.ok("versions").stdout
    assert "params" in versions and "train.lr" in versions, versions
    # the work tree against HEAD: nothing changed
    assert "train.lr" not in workspace.ok("diff").stdout


# -- [pipeline] env ------------------------------------------------------------------


def test_pipeline_env_lies_under_each_steps_env_and_enters_its_key(workspace):
    workspace.write(".gitignore", "*.txt\n")
    workspace.pipeline(
        """\
        [pipeline]
        env = { MODE = "fast", LEVEL = 1 }

        [steps.a]
        cmd = "echo $MODE $LEVEL > a.txt"
        outs = ["a.txt"]

        [steps.b]
        cmd = "echo $MODE $LEVEL > b.txt"
        env = { MODE = "slow" }
        outs = ["b.txt"]
        """
    )
    workspace.commit()
    workspace.ok("repro")
    assert (workspace.root / "a.txt").read_text() == "fast 1\n"
    assert (workspace.root / "b.txt").read_text() == "slow 1\n"
    assert lock_steps(workspace)["a"]["env"] == {"LEVEL": "1", "MODE": "fast"}

    text = (workspace.root / "gitpipe.toml").read_text()
    workspace.write("gitpipe.toml", text.replace('MODE = "fast"', 'MODE = "quick"'))
    workspace.ok("repro")
    assert workspace.ran() == ["a"]  # b's own MODE wins: its key did not change
    assert (workspace.root / "a.txt").read_text() == "quick 1\n"


def test_a_step_writing_its_env_as_the_pipeline_would_has_the_same_key(workspace):
    workspace.write(".gitignore", "*.txt\n")
    workspace.pipeline(
        '[steps.a]\ncmd = "echo $MODE > a.txt"\nenv = { MODE = "fast" }\nouts = ["a.txt"]\n'
    )
    workspace.commit()
    workspace.ok("repro")
    key = lock_steps(workspace)["a"]["key"]
    workspace.pipeline(
        '[pipeline]\nenv = { MODE = "fast" }\n[steps.a]\ncmd = "echo $MODE > a.txt"\n'
        'outs = ["a.txt"]\n'
    )
    workspace.ok("repro")
    assert workspace.ran() == []
    assert lock_steps(workspace)["a"]["key"] == key


def test_pipeline_env_with_an_unknown_param_is_refused_where_it_is_written(workspace):
    workspace.pipeline('[pipeline]\nenv = { X = "${params.nope}" }\n[steps.a]\ncmd = "true"\n')
    workspace.commit()
    refused(workspace, "status", says=("at pipeline.env.X: unknown param 'nope'",))


def test_a_step_cannot_write_a_params_file(workspace):
    workspace.write("conf/params.yaml", "seed: 1\n")
    workspace.pipeline(
        '[pipeline]\nparams_files = ["conf/params.yaml"]\n'
        '[steps.a]\ncmd = "true"\nouts = ["conf/"]\n'
    )
    workspace.commit()
    refused(
        workspace,
        "repro",
        says=(
            "at steps.a.outs[0]: output 'conf/' of step 'a' is the params file "
            "'conf/params.yaml' or holds it",
        ),
    )


def test_a_step_cannot_write_a_params_file_through_a_linked_folder(workspace):
    workspace.write("conf/params.yaml", "seed: 1\n")
    os.symlink("conf", workspace.root / "alias")
    workspace.pipeline(
        '[pipeline]\nparams_files = ["conf/params.yaml"]\n'
        '[steps.a]\ncmd = "echo seed: 2 > alias/params.yaml"\nouts = ["alias/params.yaml"]\n'
    )
    workspace.commit()
    refused(
        workspace,
        "repro",
        says=(
            "at steps.a.outs[0]: output 'alias/params.yaml' of step 'a' is the params file "
            "conf/params.yaml; gitpipe never writes there",
        ),
    )
    assert (workspace.root / "conf/params.yaml").read_text() == "seed: 1\n"


def test_p_shows_in_json_and_toml_params_files_too_and_both_are_put_back(workspace):
    json_file = workspace.write("conf/model.json", '{"model": {"depth": 3}}\n')
    toml_file = workspace.write("conf/data.toml", "# rows to read\n[data]\nrows = 100\n")
    workspace.write(".gitignore", "*.txt\n")
    workspace.pipeline(
        """\
        [pipeline]
        params_files = ["conf/model.json", "conf/data.toml"]

        [steps.fit]
        cmd = "cat conf/model.json conf/data.toml > seen.txt"
        params = ["conf/model.json:*", "conf/data.toml:*"]
        outs = ["seen.txt"]
        """
    )
    workspace.commit()
    before = json_file.read_bytes(), toml_file.read_bytes()
    workspace.ok("repro", "-p", "model.depth=7", "-p", "data.rows=5")
    seen = (workspace.root / "seen.txt").read_text()
    assert '"depth": 7' in seen and "rows = 5" in seen
    assert (json_file.read_bytes(), toml_file.read_bytes()) == before


def test_a_step_may_not_use_a_null_param_but_its_neighbours_yes(workspace):
    workspace.write("params.yaml", "train:\n  depth: null\n  lr: 0.1\n")
    workspace.pipeline(
        '[pipeline]\nparams_files = ["params.yaml"]\n[steps.a]\ncmd = "true"\nparams = ["train"]\n'
    )
    workspace.commit()
    refused(
        workspace,
        "repro",
        says=("at steps.a.params: param 'train.depth' is null; a param a step uses needs a value",),
    )
    workspace.pipeline(
        '[pipeline]\nparams_files = ["params.yaml"]\n'
        '[steps.a]\ncmd = "true"\nparams = ["train.lr"]\n'
    )
    workspace.ok("repro")
    assert lock_steps(workspace)["a"]["params"] == {"train.lr": 0.1}


@pytest.mark.timeout(90)
def test_while_a_run_with_p_shows_its_override_other_commands_read_the_committed_params(
    workspace,
):
    """A status, or a repro that waits for the workspace, during a `-p` run reads the
    params the pipeline holds, never the run's override: else the waiting repro would
    key its steps on the override and store what the committed params made under it."""
    params = setup(workspace, HELD)
    root = workspace.root
    workspace.ok("repro")  # everything up to date with lr = 0.1
    (root / "started.log").unlink()
    process = _start_held_run(root, "train")
    try:
        wait_for(lambda: (root / "started.log").exists(), "the train step to start")
        assert b"lr: 0.5" in params.read_bytes()  # the file shows the override now
        status = json.loads(workspace.ok("status", "--json").stdout)
        states = {s["step"]: s for s in status}
        # evaluate writes ${params.train.lr}: the override would make it stale; train's
        # outputs are away while it runs, but its params are the committed ones
        assert states["evaluate"]["state"] == "up to date", states["evaluate"]
        assert states["featurize"]["state"] == "up to date"
        assert not [r for r in states["train"]["reasons"] if "param" in str(r)], states["train"]
        waiting = subprocess.Popen(
            [str(GITPIPE), "repro", "evaluate"],
            cwd=root,
            env=env_for_subprocess(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(1.0)  # it parses now, then waits for the workspace
        (root / "hold.log").unlink()
        _, held_err = process.communicate(timeout=60)
        assert process.returncode == 0, held_err
        _, err = waiting.communicate(timeout=60)
        assert waiting.returncode == 0, err
    finally:
        for each in (process,):
            if each.poll() is None:
                os.killpg(each.pid, signal.SIGKILL)
                each.wait()
    assert b"lr: 0.1" in params.read_bytes()
    assert (root / "score.txt").read_text() == "0.1\n"
    assert "lr = 0.1" in (root / "gitpipe.lock").read_text()
    workspace.ok("status", "--check")


JSON_PARAMS = """
[pipeline]
params_files = ["params.json"]

[steps.a]
cmd = "cat params.json > o.txt"
params = ["params.json:*"]
outs = ["o.txt"]
"""


def test_p_writes_a_date_into_a_json_params_file_as_its_text_and_refuses_nan(workspace):
    workspace.write("params.json", '{"lr": 0.1}\n')
    workspace.write(".gitignore", "o.txt\n")
    workspace.pipeline(JSON_PARAMS)
    workspace.commit("json params")
    workspace.ok("repro")
    workspace.ok("repro", "-p", "lr=2024-01-01")
    assert json.loads((workspace.root / "o.txt").read_text()) == {"lr": "2024-01-01"}
    assert (workspace.root / "params.json").read_text() == '{"lr": 0.1}\n'  # put back
    refused_under_lock(workspace, "repro", "-p", "lr=nan", says=("params.json", "JSON"))


def test_a_params_file_outside_the_pipelines_folder_is_refused(workspace, tmp_path):
    (tmp_path / "outside.yaml").write_text("lr: 0.1\n")
    workspace.pipeline('[pipeline]\nparams_files = ["../outside.yaml"]\n[steps.a]\ncmd = "true"\n')
    refused(workspace, "status", says=("must lie inside the pipeline's folder",))


def test_p_refuses_to_replace_a_linked_params_file(workspace, tmp_path):
    (workspace.root / "conf").mkdir()
    (workspace.root / "conf" / "real.json").write_text('{"lr": 0.1}\n')
    os.symlink("conf/real.json", workspace.root / "params.json")
    workspace.write(".gitignore", "o.txt\n")
    workspace.pipeline(JSON_PARAMS)
    workspace.commit("linked params")
    workspace.ok("repro")
    refused_under_lock(workspace, "repro", "-p", "lr=0.5", says=("params.json is a link",))
    assert (workspace.root / "params.json").is_symlink()


def refused_under_lock(workspace: Workspace, *args: str, says: tuple[str, ...]) -> None:
    """As conftest's `refused`, for a refusal made once a repro holds the workspace:
    gitpipe's own state (the workspace lock, its caches) may change, nothing else."""

    def mine(files: dict) -> dict:
        return {k: v for k, v in files.items() if k.split("/")[0] != ".gitpipe"}

    before = snapshot(workspace.root)
    result = workspace.gitpipe(*args)
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and all(text in result.stderr for text in says)
    assert mine(snapshot(workspace.root)) == mine(before)


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ('{ "A=B" = "x" }', "'A=B' is not a name an environment variable can have"),
        ('{ "" = "x" }', "'' is not a name"),
        ('{ A = "x\\u0000y" }', "cannot hold a NUL"),
    ],
)
def test_an_env_the_system_cannot_set_is_refused_where_it_is_written(workspace, env, says):
    workspace.pipeline(f'[pipeline]\nenv = {env}\n[steps.s]\ncmd = "true"\n')
    refused(workspace, "status", says=(says, "pipeline.env"))
    workspace.pipeline(f'[steps.s]\ncmd = "true"\nenv = {env}\n')
    refused(workspace, "status", says=(says, "steps.s.env"))


def test_versions_says_why_heads_pipeline_cannot_be_read(workspace):
    """A commit whose params file is missing holds no valid pipeline: `versions` says
    so, naming the file, rather than that no commit holds the pipeline."""
    workspace.write(".gitignore", "o.txt\n")
    workspace.pipeline('[pipeline]\nparams_files = ["params.yaml"]\n[steps.a]\ncmd = "true"\n')
    workspace.commit("the params file left out")
    workspace.write("params.yaml", "lr: 0.1\n")  # in the work tree only
    said = workspace.ok("versions").stdout
    assert said.startswith("gitpipe.toml is not valid at HEAD (")
    assert "params file 'params.yaml' does not exist" in said
    invalid = json.loads(workspace.ok("versions", "--json").stdout)["invalid"]
    assert "params.yaml" in invalid
