"""`gitpipe audit`: steps run again in scratch copies, outputs compared with the lock's."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
from conftest import Workspace, snapshot

PIPELINE = """
[steps.det]
cmd = "tr a-z A-Z < data/raw.txt > det.txt"
deps = ["data/raw.txt"]
outs = ["det.txt"]

[steps.rand]
cmd = "python -c \\"import os; open('rand.bin', 'wb').write(os.urandom(16))\\""
outs = ["rand.bin"]

[steps.down]
cmd = "rev < det.txt > down.txt"
deps = ["det.txt"]
outs = ["down.txt"]
"""


def _setup(workspace: Workspace, text: str = PIPELINE) -> None:
    workspace.pipeline(text)
    workspace.write("data/raw.txt", "hello\n")
    workspace.write(".gitignore", "det.txt\nrand.bin\ndown.txt\n")
    workspace.commit("pipeline")
    workspace.ok("repro")


def _real_records(root: Path) -> tuple[list, list]:
    with closing(sqlite3.connect(root / ".gitpipe" / "lineage.db")) as db:
        return (
            db.execute("SELECT * FROM runs ORDER BY id").fetchall(),
            db.execute("SELECT * FROM executions ORDER BY id").fetchall(),
        )


def _audits(root: Path) -> list[tuple[str, str, str]]:
    with closing(sqlite3.connect(root / ".gitpipe" / "lineage.db")) as db:
        return db.execute("SELECT step, verdict, outputs FROM audits ORDER BY id").fetchall()


def _untouched(root: Path) -> dict:
    """The workspace, the lock and the store: everything but lineage's database (whose
    audits table an audit adds to) and the stat cache."""
    return {
        path: state
        for path, state in snapshot(root).items()
        if path != ".gitpipe"
        and not path.startswith((".gitpipe/lineage.db", ".gitpipe/stat.db", ".gitpipe/environment"))
    }


def test_a_random_step_differs_and_fails_the_audit_while_the_others_reproduce(workspace):
    _setup(workspace)
    before, real = _untouched(workspace.root), _real_records(workspace.root)

    result = workspace.gitpipe("audit")

    assert result.exit_code == 3, result.output
    lines = result.stdout.splitlines()
    assert any(line.split() == ["det", "reproduced"] for line in lines), result.stdout
    assert any(line.split() == ["down", "reproduced"] for line in lines), result.stdout
    assert any(line.split() == ["rand", "differs", "rand.bin"] for line in lines), result.stdout
    assert "1 step(s) did not reproduce: rand" in result.stderr
    assert _untouched(workspace.root) == before  # workspace, lock, store
    assert _real_records(workspace.root) == real  # lineage's record of the real runs
    assert sorted(_audits(workspace.root)) == [
        ("det", "reproduced", "[]"),
        ("down", "reproduced", "[]"),
        ("rand", "differs", '["rand.bin"]'),
    ]


def test_a_step_marked_not_deterministic_is_reported_without_failing(workspace):
    _setup(
        workspace,
        PIPELINE.replace('outs = ["rand.bin"]', 'outs = ["rand.bin"]\ndeterministic = false'),
    )
    result = workspace.gitpipe("audit", "rand")
    assert result.exit_code == 0, result.output
    assert "rand  differs  rand.bin; deterministic = false: not a failure" in result.stdout


def test_the_deterministic_field_does_not_change_the_key(workspace):
    _setup(workspace)
    workspace.pipeline(
        PIPELINE.replace('outs = ["rand.bin"]', 'outs = ["rand.bin"]\ndeterministic = false')
    )
    assert "stale" not in workspace.ok("status").stdout


def test_a_dep_missing_from_the_workspace_comes_from_the_store(workspace):
    _setup(workspace)
    (workspace.root / "det.txt").unlink()
    result = workspace.gitpipe("audit", "down")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == ["down", "reproduced"]
    assert not (workspace.root / "det.txt").exists()


def test_a_command_reading_an_undeclared_file_fails_in_the_scratch_copy(workspace):
    text = """
    [steps.sneaky]
    cmd = "cat hidden.txt > out.txt"
    outs = ["out.txt"]
    """
    workspace.pipeline(text)
    workspace.write("hidden.txt", "x\n")
    workspace.commit()
    workspace.ok("repro")
    result = workspace.gitpipe("audit")
    assert result.exit_code == 3, result.output
    assert "sneaky  failed  the command exited with code 1" in result.stdout, result.stdout
    assert "hidden.txt" in result.stdout  # the log's last line says what was missing


def test_a_step_whose_inputs_changed_since_its_run_is_skipped(workspace):
    _setup(workspace)
    workspace.write("data/raw.txt", "other\n")
    result = workspace.gitpipe("audit", "det")
    assert result.exit_code == 0, result.output
    assert (
        "det  skipped  its inputs differ from the recorded run's (dep changed: data/raw.txt)"
        in (result.stdout)
    )


def test_sample_audits_that_many_steps_and_summary_md_writes_a_table(workspace, tmp_path):
    _setup(
        workspace,
        PIPELINE.replace('outs = ["rand.bin"]', 'outs = ["rand.bin"]\ndeterministic = false'),
    )
    summary = tmp_path / "summary.md"
    result = workspace.gitpipe("audit", "--sample", "2", "--summary-md", str(summary), "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["steps"]) == 2
    text = summary.read_text()
    assert text.startswith("## gitpipe audit: passed")
    assert "| step | verdict | outputs | note |" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("audit", "nosuch"), "there is no step named 'nosuch'"),
        (("audit", "--sample", "0"), "--sample"),
        (("audit", "later"), "no recorded result to audit for later; run `gitpipe repro` first"),
    ],
    ids=["unknown step", "sample below one", "no recorded result"],
)
def test_bad_audit_requests_exit_2_and_change_nothing(workspace, args, message):
    _setup(workspace)
    # `later` is added after the run: no lock entry
    workspace.pipeline(
        PIPELINE + '\n[steps.later]\ncmd = "echo > later.txt"\nouts = ["later.txt"]\n'
    )
    before = snapshot(workspace.root)
    result = workspace.gitpipe(*args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert snapshot(workspace.root) == before


def test_a_function_step_reproduces_in_its_scratch_copy(workspace):
    workspace.write("pkg/__init__.py", "")
    workspace.write(
        "pkg/mod.py",
        "import json\n\n\ndef fit(seed):\n"
        "    with open('model.json', 'w') as f:\n"
        "        json.dump({'seed': seed}, f)\n",
    )
    workspace.pipeline(
        '[params]\nseed = 3\n\n[steps.fit]\nfn = "pkg.mod:fit"\nparams = ["seed"]\n'
        'outs = ["model.json"]\n'
    )
    workspace.write(".gitignore", "model.json\n")
    workspace.commit()
    workspace.ok("repro")
    result = workspace.gitpipe("audit")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == ["fit", "reproduced"]
