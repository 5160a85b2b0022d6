"""Step fields beyond the basics: env, wdir, timeout, metrics, persist, cache, selection."""

from __future__ import annotations

import json
import sys

from conftest import Workspace


def test_steps_get_their_context_and_params_in_the_environment(workspace):
    workspace.write(
        "show.py",
        """
        import json, os, gitpipe
        with open("context.json", "w") as out:
            json.dump({"step": os.environ["GITPIPE_STEP"],
                       "run": os.environ["GITPIPE_RUN_ID"],
                       "params": gitpipe.params(),
                       "mode": os.environ["MODE"]}, out)
        """,
    )
    workspace.pipeline(
        f"""
        [params]
        seed = 3
        [params.train]
        lr = 0.1

        [steps.show]
        cmd = "{sys.executable} show.py ${{params.seed}}"
        deps = ["show.py"]
        params = ["train"]
        env = {{ MODE = "fast" }}
        outs = ["context.json"]
        """
    )
    workspace.ok("repro")
    context = json.loads((workspace.root / "context.json").read_text())
    assert context["step"] == "show"
    assert context["run"]
    assert context["params"] == {"seed": 3, "train": {"lr": 0.1}}
    assert context["mode"] == "fast"


def test_wdir_sets_where_the_command_runs_while_paths_stay_relative_to_the_pipeline(workspace):
    workspace.write("sub/input.txt", "in sub\n")
    workspace.pipeline(
        """
        [steps.here]
        cmd = "cp input.txt ../copied.txt"
        wdir = "sub"
        deps = ["sub/input.txt"]
        outs = ["copied.txt"]
        """
    )
    workspace.ok("repro")
    assert (workspace.root / "copied.txt").read_text() == "in sub\n"


def test_a_missing_wdir_fails_the_step_with_a_clear_message(workspace):
    workspace.pipeline(
        """
        [steps.lost]
        cmd = "true"
        wdir = "nowhere"
        outs = ["x.txt"]
        """
    )
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1
    assert "cannot start the command: No such file or directory" in result.stderr
    assert "Traceback" not in result.output


def test_a_step_over_its_timeout_is_stopped_and_fails(workspace):
    workspace.pipeline(
        """
        [steps.slow]
        cmd = "sleep 30; echo late > late.txt"
        outs = ["late.txt"]
        timeout = 0.5
        """
    )
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1
    assert "timed out after 0.5 s" in result.stderr
    assert not (workspace.root / "late.txt").exists()


def test_metrics_are_outputs_whose_values_are_recorded_in_the_lock(workspace):
    workspace.pipeline(
        """
        [steps.evaluate]
        cmd = '''echo '{"accuracy": 0.91, "loss": {"train": 0.2}, "tags": [1]}' > m.json'''
        metrics = ["m.json"]
        """
    )
    workspace.ok("repro")
    lock = (workspace.root / "gitpipe.lock").read_text()
    assert '[steps.evaluate.metrics."m.json"]' in lock
    assert "accuracy = 0.91" in lock
    assert '"loss.train" = 0.2' in lock
    (workspace.root / "m.json").unlink()
    workspace.ok("repro")
    assert workspace.states() == {"evaluate": "cached"}


def test_persist_keeps_outputs_and_is_never_restored(workspace):
    workspace.pipeline(
        """
        [params]
        n = 1

        [steps.append]
        cmd = "echo ${params.n} >> history.txt"
        outs = ["history.txt"]
        persist = true
        """
    )
    workspace.ok("repro")
    text = (workspace.root / "gitpipe.toml").read_text()
    workspace.write("gitpipe.toml", text.replace("n = 1", "n = 2"))
    workspace.ok("repro")
    workspace.write("gitpipe.toml", text)
    workspace.ok("repro")
    assert workspace.states() == {"append": "ran"}
    assert (workspace.root / "history.txt").read_text() == "1\n2\n1\n"


def test_cache_false_runs_again_instead_of_restoring(workspace):
    workspace.pipeline(
        """
        [steps.fresh]
        cmd = "date +%s%N > t.txt"
        outs = ["t.txt"]
        cache = false
        """
    )
    workspace.ok("repro")
    (workspace.root / "t.txt").unlink()
    workspace.ok("repro")
    assert workspace.states() == {"fresh": "ran"}


def chain(workspace: Workspace) -> None:
    workspace.write("a.txt", "a\n")
    workspace.pipeline(
        """
        [steps.one]
        cmd = "cp a.txt one.txt"
        deps = ["a.txt"]
        outs = ["one.txt"]

        [steps.two]
        cmd = "cp one.txt two.txt"
        deps = ["one.txt"]
        outs = ["two.txt"]

        [steps.three]
        cmd = "cp two.txt three.txt"
        deps = ["two.txt"]
        outs = ["three.txt"]

        [steps.apart]
        cmd = "echo apart > apart.txt"
        outs = ["apart.txt"]
        after = ["one"]
        """
    )


def test_a_target_runs_with_its_upstream_only(workspace):
    chain(workspace)
    workspace.ok("repro", "two")
    assert workspace.ran() == ["one", "two"]


def test_single_runs_only_the_named_step(workspace):
    chain(workspace)
    workspace.ok("repro", "one")
    workspace.ok("repro", "--single", "two")
    assert workspace.ran() == ["two"]
    assert not (workspace.root / "three.txt").exists()


def test_downstream_runs_the_step_and_what_depends_on_it(workspace):
    chain(workspace)
    workspace.ok("repro")
    workspace.ok("repro", "--downstream", "two", "--force")
    assert workspace.ran() == ["two", "three"]


def test_force_runs_up_to_date_steps_again(workspace):
    chain(workspace)
    workspace.ok("repro")
    workspace.ok("repro", "--force")
    assert workspace.ran() == ["one", "two", "three", "apart"]


def test_after_orders_steps_without_a_file_edge(workspace):
    chain(workspace)
    workspace.ok("repro", "apart")
    assert workspace.ran() == ["one", "apart"]


def test_an_unreadable_metrics_file_fails_only_that_step(workspace):
    workspace.pipeline(
        """
        [steps.broken]
        cmd = "echo nope > m.json"
        metrics = ["m.json"]

        [steps.fine]
        cmd = "echo fine > fine.txt"
        outs = ["fine.txt"]
        """
    )
    result = workspace.gitpipe("repro", "--keep-going")
    assert result.exit_code == 1
    assert "broken: failed: metrics file m.json is not valid JSON" in result.stderr
    assert workspace.states() == {"broken": "failed", "fine": "ran"}


def test_a_link_to_a_folder_inside_a_folder_output_fails_the_step(workspace):
    workspace.pipeline(
        """
        [steps.loop]
        cmd = "mkdir -p out && echo x > out/f && ln -s .. out/up"
        outs = ["out/"]
        """
    )
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1
    assert "out/up is a link to a folder" in result.stderr
    assert "Traceback" not in result.output


def test_nested_params_are_written_sorted_in_the_lock(workspace):
    workspace.pipeline(
        """
        [params.train]
        zeta = 1
        alpha = 2

        [steps.t]
        cmd = "echo > t.txt"
        params = ["train"]
        outs = ["t.txt"]
        """
    )
    workspace.ok("repro")
    lock = (workspace.root / "gitpipe.lock").read_text()
    assert lock.index("alpha = 2") < lock.index("zeta = 1")
