"""Acceptance tests for SPEC.md's "Trust" rules, driven through the real CLI in real
Git repositories (a folder remote, a bare origin, shallow clones; no mocks):

- the lock is the truth: when a step's key equals its lock entry's, the bytes
  restored are the ones the committed gitpipe.lock names, even when the run cache (or
  the remote) holds another result for that key from a non-deterministic re-run;
- one planner: `status --json`, `status --check`, `repro -n`, `why --json`,
  `repro --frozen` and the real `repro` give every step the same decision;
- `--frozen` runs nothing and writes no lock, and still reports (summaries, lineage);
- failures and approval waits still write their summaries;
- restored executable outputs keep their mode.

The fixture pipeline: `prepare` (deterministic) -> `train` (os.urandom: new bytes
every run) -> `evaluate` (metrics naming the model's hash), and `package` (from
`prepare`) writing an executable `tool.sh`. Summaries are written outside the
repository, so that `git status --porcelain` stays empty whenever nothing but the
ignored outputs may change.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import Outcome, Workspace, git

from gitpipe.core.hashing import Digest, digest_file
from gitpipe.store.objects import Store

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PY = sys.executable

SCRIPTS = {
    "src/prepare.py": """
        import pathlib

        text = pathlib.Path("data/raw.txt").read_text()
        pathlib.Path("prepared.txt").write_text(text.upper())
        """,
    "src/train.py": """
        import os
        import pathlib
        import sys

        pathlib.Path("prepared.txt").read_text()
        lr = float(sys.argv[1])
        pathlib.Path("model.bin").write_bytes(os.urandom(64) + str(lr).encode())
        """,
    "src/evaluate.py": """
        import hashlib
        import json
        import pathlib

        model = pathlib.Path("model.bin").read_bytes()
        metrics = {"model": hashlib.sha256(model).hexdigest(), "score": model[0] / 255}
        pathlib.Path("metrics.json").write_text(json.dumps(metrics))
        """,
    "src/package.py": """
        import os
        import pathlib

        text = pathlib.Path("prepared.txt").read_text()
        tool = pathlib.Path("tool.sh")
        tool.write_text("#!/bin/sh\\necho " + text.strip() + "\\n")
        os.chmod(tool, 0o755)
        """,
}

PIPELINE = f"""
[params]
lr = 0.1

[steps.prepare]
cmd = "{PY} src/prepare.py"
deps = ["data/raw.txt"]
outs = ["prepared.txt"]

[steps.train]
cmd = "{PY} src/train.py ${{params.lr}}"
deps = ["prepared.txt"]
outs = ["model.bin"]

[steps.evaluate]
cmd = "{PY} src/evaluate.py"
deps = ["model.bin"]
metrics = ["metrics.json"]

[steps.package]
cmd = "{PY} src/package.py"
deps = ["prepared.txt"]
outs = ["tool.sh"]
"""

#: each step's outputs (metrics files are outputs too)
OUTS = {
    "prepare": ("prepared.txt",),
    "train": ("model.bin",),
    "evaluate": ("metrics.json",),
    "package": ("tool.sh",),
}
STEPS = tuple(OUTS)
OUTPUTS = tuple(path for paths in OUTS.values() for path in paths)

#: the planner's decisions as the views are compared in this file
UP_TO_DATE, RESTORE, RUN, WAITING = "up to date", "restore", "run", "waiting"


# -- building workspaces ------------------------------------------------------------------


def build(ws: Workspace) -> None:
    """The fixture pipeline, its scripts and data, committed (no lock yet)."""
    for path, text in SCRIPTS.items():
        ws.write(path, text)
    ws.write("data/raw.txt", "hello truth\n")
    ws.write(".gitignore", "".join(f"{path}\n" for path in OUTPUTS))
    ws.pipeline(PIPELINE)
    ws.commit("pipeline")


def first_run(ws: Workspace) -> dict:
    """Build, run everything, commit the lock; the committed lock's steps."""
    build(ws)
    ws.ok("repro")
    assert set(ws.states().values()) == {"ran"}
    ws.commit("lock")
    return lock_of(ws.root)


def lock_of(root: Path) -> dict:
    return tomllib.loads((root / "gitpipe.lock").read_text())["steps"]


def digest(path: Path) -> str:
    return str(digest_file(path))


def assert_outputs_are_the_locks(root: Path, lock: dict) -> None:
    for step, entry in lock.items():
        for path, recorded in entry["outs"].items():
            assert (root / path).is_file(), f"{step}: {path} is missing"
            assert digest(root / path) == recorded, (
                f"{step}: {path} is not the bytes gitpipe.lock names"
            )


def assert_lock_as_committed(root: Path) -> None:
    """gitpipe.lock (and every other tracked or unignored file) is as committed."""
    assert git(root, "status", "--porcelain") == "", git(root, "diff")


def in_store(root: Path, recorded: str) -> bool:
    return Digest.parse(recorded) in Store(root / ".gitpipe" / "cache")


def worktree(root: Path) -> dict[str, tuple[int, bytes | None, int]]:
    """Every path under root but .git and .gitpipe: mode, bytes (files) and mtime."""
    state = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel.split("/")[0] in (".git", ".gitpipe"):
            continue
        st = path.lstat()
        data = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        state[rel] = (st.st_mode, data, st.st_mtime_ns)
    return state


@contextmanager
def untouched(ws: Workspace) -> Iterator[None]:
    """Nothing outside .git and .gitpipe is created, changed, chmodded or deleted."""
    before = worktree(ws.root)
    yield
    after = worktree(ws.root)
    assert sorted(after) == sorted(before), "files were created or deleted"
    changed = [path for path in before if before[path] != after[path]]
    assert not changed, f"touched: {changed}"


class OnlyOutputsChange:
    """Taken before a command that may restore or write declared outputs; `check()`,
    after the test's own assertions, fails if any other file was created, changed,
    chmodded or deleted (gitpipe.lock included)."""

    def __init__(self, ws: Workspace, *, lock_too: bool = False) -> None:
        self.root = ws.root
        self.outputs = set(OUTPUTS) | ({"gitpipe.lock"} if lock_too else set())
        self.before = self._others()

    def _others(self) -> dict[str, tuple[int, bytes | None, int]]:
        return {p: v for p, v in worktree(self.root).items() if p not in self.outputs}

    def check(self) -> None:
        after = self._others()
        assert sorted(after) == sorted(self.before), "files besides outputs came or went"
        changed = [path for path in self.before if self.before[path] != after[path]]
        assert not changed, f"touched besides outputs: {changed}"


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder remote, named by GITPIPE_REMOTE for every command of the test."""
    folder = tmp_path / "remote"
    folder.mkdir()
    monkeypatch.setenv("GITPIPE_REMOTE", str(folder))
    return folder


def publish(ws: Workspace, tmp_path: Path) -> Path:
    """Push the workspace's main branch to a bare origin; the origin."""
    origin = tmp_path / "origin.git"
    if not origin.exists():
        git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
        git(ws.root, "remote", "add", "origin", str(origin))
    git(ws.root, "push", "-q", "-f", "origin", "main")
    return origin


def shallow_clone(origin: Path, dest: Path, ws: Workspace) -> Workspace:
    git(origin.parent, "clone", "-q", "--depth", "1", f"file://{origin}", str(dest))
    assert (dest / ".git" / "shallow").exists()
    return Workspace(dest, ws.runner)


def summary(path: Path) -> dict:
    return json.loads(path.read_text())


def summary_states(path: Path) -> dict[str, str]:
    return {s["step"]: s["state"] for s in summary(path)["steps"]}


def results_naming(folder: Path, recorded: str) -> list[Path]:
    """Result records under a store or remote folder that name a digest."""
    hexpart = recorded.partition(":")[2]
    return [
        path
        for path in (folder / "results").rglob("*")
        if path.is_file() and hexpart in path.read_text(errors="replace")
    ]


def run_ids(root: Path) -> set[str]:
    """The ids of the runs lineage holds (none before the first repro)."""
    db = root / ".gitpipe" / "lineage.db"
    if not db.exists():
        return set()
    with closing(sqlite3.connect(db)) as con:
        return {row[0] for row in con.execute("SELECT id FROM runs")}


def executions_since(root: Path, before: set[str]) -> list[tuple[str, str]]:
    """(step, state) of every execution of the runs that are not in ``before``."""
    new = run_ids(root) - before
    if not new:
        return []
    with closing(sqlite3.connect(root / ".gitpipe" / "lineage.db")) as con:
        marks = ",".join("?" * len(new))
        query = f"SELECT step, state FROM executions WHERE run_id IN ({marks}) ORDER BY id"
        return con.execute(query, sorted(new)).fetchall()


def newest_run(ws: Workspace) -> dict:
    return json.loads(ws.ok("log", "--json", "--limit", "1").stdout)[0]


# -- the views ------------------------------------------------------------------------------

DRY_LINE = re.compile(
    r"^(?:\S+ )?(?P<step>[\w.\[\]=,-]+): "
    r"(?P<word>would run|would restore|would fetch|up to date)\b(?P<rest>.*)$",
    re.MULTILINE,
)
DRY_WORDS = {
    "would run": RUN,
    "would restore": RESTORE,
    "would fetch": "fetch",
    "up to date": UP_TO_DATE,
}
#: what a step's state in a run summary says was decided for it
RUN_STATES = {
    "up to date": UP_TO_DATE,
    "cached": RESTORE,
    "ran": RUN,
    "waiting for approval": WAITING,
}


def dry_run_words(outcome: Outcome) -> dict[str, str]:
    """What `repro -n` says per step; a step it does not mention is up to date."""
    said: dict[str, str] = {}
    for match in DRY_LINE.finditer(outcome.output):
        word = DRY_WORDS[match["word"]]
        if word == RUN and "needs approval" in match["rest"]:
            word = WAITING
        said[match["step"]] = word
    return {step: said.get(step, UP_TO_DATE) for step in STEPS}


def status_entries(ws: Workspace) -> dict[str, dict]:
    return {e["step"]: e for e in json.loads(ws.ok("status", "--json").stdout)}


def why_of(ws: Workspace, step: str) -> dict:
    return json.loads(ws.ok("why", step, "--json").stdout)


@dataclass
class Views:
    """Each view's decision per step, and the two exit codes."""

    status: dict[str, str | None]
    dry_run: dict[str, str]
    why: dict[str, str | None]
    check: int
    frozen: int
    outputs: str  # what --check, -n and --frozen printed, for failure messages

    def table(self, did: dict[str, str] | None = None) -> str:
        rows = [f"{'':<10}{'status':<12}{'repro -n':<12}{'why':<12}{'repro did':<12}"]
        for step in STEPS:
            cells = [self.status[step], self.dry_run[step], self.why[step]]
            cells.append((did or {}).get(step, "-"))
            rows.append(f"{step:<10}" + "".join(f"{c!s:<12}" for c in cells))
        rows.append(f"status --check: {self.check}   repro --frozen: {self.frozen}")
        return "\n".join(rows) + "\n" + self.outputs


def read_views(ws: Workspace, scratch: Path) -> Views:
    """Every view of the plan. The read-only ones run in the workspace and must not
    touch it; `repro --frozen` restores, so it runs in a copy, which it must leave
    with the same gitpipe.lock and in which it must run nothing."""
    with untouched(ws):
        entries = status_entries(ws)
        check = ws.gitpipe("status", "--check")
        dry = ws.gitpipe("repro", "-n")
        whys = {step: why_of(ws, step) for step in STEPS}
    assert dry.exit_code == 0, dry.output

    shutil.copytree(ws.root, scratch, symlinks=True)
    copy = Workspace(scratch, ws.runner)
    lock, runs = (scratch / "gitpipe.lock").read_bytes(), run_ids(scratch)
    frozen = copy.gitpipe("repro", "--frozen")
    assert (scratch / "gitpipe.lock").read_bytes() == lock, "--frozen wrote gitpipe.lock"
    ran = [step for step, state in executions_since(scratch, runs) if state == "ran"]
    assert not ran, f"--frozen ran {ran}"

    printed = "\n".join(
        f"$ gitpipe {name}\n{o.output}"
        for name, o in (("status --check", check), ("repro -n", dry), ("repro --frozen", frozen))
    )
    assert "Traceback" not in printed
    return Views(
        status={step: entries[step].get("action") for step in STEPS},
        dry_run=dry_run_words(dry),
        why={step: whys[step].get("action") for step in STEPS},
        check=check.exit_code,
        frozen=frozen.exit_code,
        outputs=printed,
    )


# -- 1. the lock wins -------------------------------------------------------------------------


def test_the_committed_lock_decides_which_model_is_restored(workspace, tmp_path):
    ws = workspace
    committed = first_run(ws)
    committed_bytes = (ws.root / "gitpipe.lock").read_bytes()

    ws.ok("repro", "--force", "train")
    rerun_model = digest(ws.root / "model.bin")
    assert rerun_model != committed["train"]["outs"]["model.bin"]  # non-deterministic

    git(ws.root, "checkout", "--", "gitpipe.lock")  # the lock names the first model again
    s_json = tmp_path / "s.json"
    guard = OnlyOutputsChange(ws)
    outcome = ws.ok("repro", "--summary-json", str(s_json))

    assert digest(ws.root / "model.bin") == committed["train"]["outs"]["model.bin"], (
        f"train restored another result than the one gitpipe.lock names:\n{outcome.output}"
    )
    assert summary(s_json)["counts"]["ran"] == 0, outcome.output
    assert ws.ran() == [], outcome.output
    assert summary_states(s_json)["train"] == "cached"
    assert "0 ran" in outcome.output
    assert digest(ws.root / "metrics.json") == committed["evaluate"]["outs"]["metrics.json"]
    assert_outputs_are_the_locks(ws.root, committed)
    assert (ws.root / "gitpipe.lock").read_bytes() == committed_bytes
    assert_lock_as_committed(ws.root)
    guard.check()
    # nothing is lost: the re-run's model, replaced on disk, is still in the store
    assert in_store(ws.root, rerun_model)


# -- 2. every result travels ------------------------------------------------------------------


def test_every_result_of_a_key_is_pushed_and_a_shallow_clone_restores_the_locks_bytes(
    workspace, tmp_path, remote
):
    ws = workspace
    committed = first_run(ws)
    first_model = committed["train"]["outs"]["model.bin"]
    first = json.loads(ws.ok("push", "--json").stdout)
    assert first["results"] >= len(STEPS), first

    ws.ok("repro", "--force", "train")
    second_model = digest(ws.root / "model.bin")
    assert second_model != first_model
    second = json.loads(ws.ok("push", "--json").stdout)
    # the re-run's model and its result (train's key again, other bytes) go up too
    assert second["objects"] >= 1, second
    assert second["results"] >= 1, f"the second push found every result there: {second}"
    assert results_naming(remote, first_model), "no result on the remote names the first model"
    assert results_naming(remote, second_model), "no result on the remote names the re-run's"

    git(ws.root, "checkout", "--", "gitpipe.lock")
    origin = publish(ws, tmp_path)
    ci = shallow_clone(origin, tmp_path / "ci", ws)
    s_json = tmp_path / "ci.json"
    guard = OnlyOutputsChange(ci)
    outcome = ci.gitpipe("repro", "--frozen", "--pull", "--summary-json", str(s_json))
    assert outcome.exit_code == 0, outcome.output
    assert summary(s_json)["counts"]["ran"] == 0, outcome.output
    assert ci.ran() == []
    assert set(ci.states().values()) == {"cached"}, outcome.output
    assert digest(ci.root / "model.bin") == first_model
    assert_outputs_are_the_locks(ci.root, committed)
    assert_lock_as_committed(ci.root)
    guard.check()


def test_a_pulled_result_for_the_same_key_never_beats_the_lock(workspace, tmp_path, remote):
    """The remote learns the re-run's result for train's key first; the committed lock
    names the first model; a CI clone that pulls everything must restore the first
    model, not the one the result names."""
    ws = workspace
    committed = first_run(ws)
    first_model = committed["train"]["outs"]["model.bin"]
    ws.ok("repro", "--force", "train")
    ws.ok("push")  # what the re-run's lock names, with its result for train's key
    git(ws.root, "checkout", "--", "gitpipe.lock")
    ws.ok("push")  # what the committed lock names: the first model's bytes
    assert results_naming(remote, digest(ws.root / "model.bin"))

    origin = publish(ws, tmp_path)
    ci = shallow_clone(origin, tmp_path / "ci", ws)
    ci.ok("pull")
    guard = OnlyOutputsChange(ci)
    outcome = ci.gitpipe("repro", "--frozen")
    assert digest(ci.root / "model.bin") == first_model, (
        f"the clone restored the pulled result, not the bytes gitpipe.lock names:\n{outcome.output}"
    )
    assert outcome.exit_code == 0, outcome.output
    assert ci.ran() == []
    assert_outputs_are_the_locks(ci.root, committed)
    assert_lock_as_committed(ci.root)
    guard.check()


# -- 3. one decision, many views ---------------------------------------------------------------


def objects_only_clone(ws: Workspace, origin: Path, dest: Path) -> Workspace:
    """A fresh shallow clone that pulled the lock's objects and no result."""
    clone = shallow_clone(origin, dest, ws)
    pulled = json.loads(clone.ok("pull", "--no-run-cache", "--json").stdout)
    assert pulled["results"] == 0 and pulled["objects"] >= len(OUTPUTS), pulled
    return clone


def test_a_clone_with_objects_only_is_restored_from_the_lock_by_every_view(
    workspace, tmp_path, remote
):
    ws = workspace
    committed = first_run(ws)
    ws.ok("push")
    origin = publish(ws, tmp_path)

    one = objects_only_clone(ws, origin, tmp_path / "one")
    with untouched(one):
        entries = status_entries(one)
        check = one.gitpipe("status", "--check")
        dry = one.gitpipe("repro", "-n")
        why = why_of(one, "train")
    seen = {
        "status --json": {s: (e.get("action"), e.get("source")) for s, e in entries.items()},
        "status --check": check.exit_code,
        "repro -n": dry_run_words(dry),
        "why train --json": why.get("action"),
    }
    wanted = {
        "status --json": dict.fromkeys(STEPS, (RESTORE, "lock")),
        "status --check": 0,  # restoring is not running
        "repro -n": dict.fromkeys(STEPS, RESTORE),
        "why train --json": RESTORE,
    }
    assert seen == wanted, f"{check.output}\n{dry.output}"
    assert "would run" not in dry.output

    guard = OnlyOutputsChange(one)
    frozen = one.gitpipe("repro", "--frozen")
    assert frozen.exit_code == 0, frozen.output
    assert one.ran() == []
    assert_outputs_are_the_locks(one.root, committed)
    assert_lock_as_committed(one.root)
    guard.check()

    two = objects_only_clone(ws, origin, tmp_path / "two")
    s_json = tmp_path / "two.json"
    guard = OnlyOutputsChange(two)
    two.ok("repro", "--summary-json", str(s_json))
    assert summary_states(s_json) == dict.fromkeys(STEPS, "cached")
    assert two.ran() == []
    assert_outputs_are_the_locks(two.root, committed)
    assert_lock_as_committed(two.root)
    guard.check()


# -- 4. --pull fetches before deciding ----------------------------------------------------------


def test_pull_fetches_before_the_plan_is_made(workspace, tmp_path, remote):
    ws = workspace
    committed = first_run(ws)
    ws.ok("push")
    origin = publish(ws, tmp_path)
    ci = shallow_clone(origin, tmp_path / "ci", ws)

    with untouched(ci):
        dry = ci.gitpipe("repro", "-n", "--pull")
    assert dry.exit_code == 0, dry.output
    assert dry_run_words(dry) == dict.fromkeys(STEPS, RESTORE), dry.output
    assert "would run" not in dry.output

    guard = OnlyOutputsChange(ci)
    frozen = ci.gitpipe("repro", "--frozen", "--pull")
    assert frozen.exit_code == 0, frozen.output
    assert ci.ran() == []
    assert_outputs_are_the_locks(ci.root, committed)
    assert_lock_as_committed(ci.root)
    guard.check()


# -- 5. --frozen never executes and never writes the lock --------------------------------------


def test_frozen_refuses_a_changed_param_runs_nothing_writes_no_lock_and_reports(
    workspace, tmp_path
):
    ws = workspace
    committed = first_run(ws)
    ws.pipeline(PIPELINE.replace("lr = 0.1", "lr = 0.2"))
    lock_before = (ws.root / "gitpipe.lock").read_bytes()
    runs_before = {run["id"] for run in json.loads(ws.ok("log", "--json").stdout)}

    s_json, s_md = tmp_path / "s.json", tmp_path / "s.md"
    with untouched(ws):  # outputs' bytes, modes and mtimes included
        refused = ws.gitpipe(
            "repro", "--frozen", "--summary-json", str(s_json), "--summary-md", str(s_md)
        )
    assert refused.exit_code == 3, refused.output
    assert "Traceback" not in refused.output
    assert "train" in refused.stderr and "params changed: lr" in refused.stderr, refused.stderr
    assert "evaluate" in refused.output, f"the downstream step is not named: {refused.output}"
    assert (ws.root / "gitpipe.lock").read_bytes() == lock_before
    assert_outputs_are_the_locks(ws.root, committed)

    assert s_json.is_file() and s_md.is_file(), "--frozen wrote no summary"
    data = summary(s_json)
    assert data["status"] != "ok", data
    assert data["counts"]["ran"] == 0, data
    train = next(s for s in data["steps"] if s["step"] == "train")
    assert train["state"] not in ("ran", "cached", "up to date"), train
    assert any("params changed" in reason for reason in train["reasons"]), train
    assert "train" in s_md.read_text()

    # lineage: this invocation is a run, not ok, in which nothing ran
    run = newest_run(ws)
    assert run["id"] not in runs_before, "--frozen recorded no run in lineage"
    assert run["id"] == data["run"]
    assert run["status"] != "ok", run
    assert not run["counts"].get("ran"), run
    assert "ran" not in ws.states().values()

    # on GitHub Actions, the Markdown goes to $GITHUB_STEP_SUMMARY by default
    step_summary = tmp_path / "step-summary.md"
    with untouched(ws):
        again = ws.gitpipe("repro", "--frozen", env={"GITHUB_STEP_SUMMARY": str(step_summary)})
    assert again.exit_code == 3, again.output
    assert step_summary.is_file(), "--frozen wrote nothing to $GITHUB_STEP_SUMMARY"
    assert "train" in step_summary.read_text()
    assert (ws.root / "gitpipe.lock").read_bytes() == lock_before


# -- 6. failures and approval waits still report ---------------------------------------------

FAILING = f"""
[steps.prepare]
cmd = "{PY} src/prepare.py"
deps = ["data/raw.txt"]
outs = ["prepared.txt"]

[steps.boom]
cmd = "{PY} src/boom.py"
deps = ["prepared.txt"]
outs = ["boom.txt"]
"""

WAITING_PIPELINE = f"""
[steps.prepare]
cmd = "{PY} src/prepare.py"
deps = ["data/raw.txt"]
outs = ["prepared.txt"]

[steps.publish]
approval = true
cmd = "{PY} src/package.py"
deps = ["prepared.txt"]
outs = ["tool.sh"]
"""


def test_a_failed_step_writes_both_summaries_and_a_failed_run(workspace, tmp_path):
    ws = workspace
    build(ws)
    ws.write("src/boom.py", "import sys\n\nsys.exit(1)\n")
    ws.write(".gitignore", "prepared.txt\nboom.txt\n")
    ws.pipeline(FAILING)
    ws.commit("a failing step")
    s_json, s_md = tmp_path / "s.json", tmp_path / "s.md"
    failed = ws.gitpipe("repro", "--summary-json", str(s_json), "--summary-md", str(s_md))
    assert failed.exit_code == 1, failed.output
    assert "boom" in failed.stderr
    assert not (ws.root / "boom.txt").exists()
    assert (ws.root / "prepared.txt").is_file()  # what succeeded is kept
    assert summary_states(s_json) == {"prepare": "ran", "boom": "failed"}
    assert summary(s_json)["status"] == "failed"
    assert "boom" in s_md.read_text() and "failed" in s_md.read_text()
    assert ws.states() == {"prepare": "ran", "boom": "failed"}
    assert newest_run(ws)["status"] == "failed"
    # nothing but the lock (for prepare) and ignored outputs was written
    assert git(ws.root, "status", "--porcelain") == "?? gitpipe.lock\n"


def test_an_approval_wait_writes_both_summaries(workspace, tmp_path):
    ws = workspace
    build(ws)
    ws.write(".gitignore", "prepared.txt\ntool.sh\n")
    ws.pipeline(WAITING_PIPELINE)
    ws.commit("a step that needs approval")
    s_json, s_md = tmp_path / "s.json", tmp_path / "s.md"
    waiting = ws.gitpipe("repro", "--summary-json", str(s_json), "--summary-md", str(s_md))
    assert waiting.exit_code == 3, waiting.output
    assert "gitpipe approve publish" in waiting.output
    assert not (ws.root / "tool.sh").exists()
    assert s_json.is_file() and s_md.is_file(), "an approval wait wrote no summary"
    states = summary_states(s_json)
    assert states["prepare"] == "ran"
    assert "approval" in states.get("publish", ""), states
    assert "publish" in s_md.read_text()
    assert newest_run(ws)["status"] != "ok"
    assert git(ws.root, "status", "--porcelain") == "?? gitpipe.lock\n"


# -- 7. executable outputs keep their mode -----------------------------------------------------


def executable(path: Path) -> bool:
    return os.access(path, os.X_OK) and bool(path.stat().st_mode & 0o111)


def test_an_executable_output_restored_from_the_lock_stays_executable(workspace, tmp_path, remote):
    ws = workspace
    committed = first_run(ws)
    assert executable(ws.root / "tool.sh")
    ws.ok("push")
    origin = publish(ws, tmp_path)

    clone = objects_only_clone(ws, origin, tmp_path / "clone")
    guard = OnlyOutputsChange(clone)
    clone.ok("repro")
    assert clone.ran() == []
    assert_outputs_are_the_locks(clone.root, committed)
    assert executable(clone.root / "tool.sh"), oct((clone.root / "tool.sh").stat().st_mode)
    guard.check()

    # the mode is part of the output: a tool.sh that lost it is not up to date
    (clone.root / "tool.sh").chmod(0o644)
    with untouched(clone):
        text = clone.ok("status").stdout
        package = status_entries(clone)["package"]
        check = clone.gitpipe("status", "--check")
    line = next(line for line in text.splitlines() if line.startswith("package "))
    assert "up to date" not in line and "stale" in line, text
    assert package["state"] != "up to date", package
    assert package.get("action") == RESTORE, package
    assert check.exit_code == 0, check.output  # restoring is not running

    guard = OnlyOutputsChange(clone)
    clone.ok("repro")
    assert clone.ran() == []
    assert executable(clone.root / "tool.sh")
    assert_lock_as_committed(clone.root)
    guard.check()


# -- 8. status never calls a step that will run "up to date" ------------------------------------


def test_status_never_says_up_to_date_for_a_step_that_will_run(workspace):
    ws = workspace
    first_run(ws)
    ws.write("data/raw.txt", "a new source\n")
    with untouched(ws):
        text = ws.ok("status").stdout
        entries = status_entries(ws)
    lines = {step: next(x for x in text.splitlines() if x.startswith(f"{step} ")) for step in STEPS}
    said_up_to_date = [line for line in lines.values() if "up to date" in line]
    assert not said_up_to_date, f"these steps will run:\n{text}"
    assert {s: e.get("action") for s, e in entries.items()} == dict.fromkeys(STEPS, RUN), entries
    assert all(e["state"] != "up to date" for e in entries.values()), entries


# -- 9. status -v says why code is unknown ------------------------------------------------------


@pytest.mark.parametrize("missing", ["prepared.txt", "data/raw.txt"])
def test_status_verbose_never_says_none_found_for_code_it_did_not_look_for(workspace, missing):
    """Every step here has a script; when gitpipe did not compute a step's code (its
    key could not be computed), `status -v` says why instead of `none found`."""
    ws = workspace
    first_run(ws)
    (ws.root / missing).unlink()
    with untouched(ws):
        outcome = ws.gitpipe("status", "-v")
    assert outcome.exit_code in (0, 2), outcome.output  # data/raw.txt: maybe a usage error
    assert "Traceback" not in outcome.output
    assert "none found" not in outcome.stdout, outcome.stdout
    if outcome.exit_code == 0:
        lines = outcome.stdout.splitlines()
        for step in STEPS:
            (at,) = [i for i, line in enumerate(lines) if line.startswith(f"{step} ")]
            code = lines[at + 1].strip()
            assert code.startswith("code:") and code != "code:", outcome.stdout


# -- the views agree ------------------------------------------------------------------------


def _up_to_date(ws: Workspace, tmp_path: Path, env: pytest.MonkeyPatch) -> Workspace:
    first_run(ws)
    return ws


def _objects_only(ws: Workspace, tmp_path: Path, env: pytest.MonkeyPatch) -> Workspace:
    first_run(ws)
    (tmp_path / "remote").mkdir()
    env.setenv("GITPIPE_REMOTE", str(tmp_path / "remote"))
    ws.ok("push")
    return objects_only_clone(ws, publish(ws, tmp_path), tmp_path / "clone")


def _outputs_deleted(ws: Workspace, tmp_path: Path, env: pytest.MonkeyPatch) -> Workspace:
    first_run(ws)
    for path in OUTPUTS:
        (ws.root / path).unlink()
    return ws


def _lock_edited_back(ws: Workspace, tmp_path: Path, env: pytest.MonkeyPatch) -> Workspace:
    first_run(ws)
    ws.ok("repro", "--force", "train")
    git(ws.root, "checkout", "--", "gitpipe.lock")
    return ws


def _source_edited(ws: Workspace, tmp_path: Path, env: pytest.MonkeyPatch) -> Workspace:
    first_run(ws)
    ws.write("data/raw.txt", "an edited source\n")
    return ws


def _dependency_missing(ws: Workspace, tmp_path: Path, env: pytest.MonkeyPatch) -> Workspace:
    first_run(ws)
    (ws.root / "prepared.txt").unlink()  # train's and package's dependency
    return ws


def _param_changed(ws: Workspace, tmp_path: Path, env: pytest.MonkeyPatch) -> Workspace:
    first_run(ws)
    ws.pipeline(PIPELINE.replace("lr = 0.1", "lr = 0.2"))
    return ws


def plan(**actions: str) -> dict[str, str]:
    """Each step's expected decision; a step not named is up to date."""
    return {step: actions.get(step, UP_TO_DATE) for step in STEPS}


TABLE = {
    "up to date": (_up_to_date, plan()),
    "objects only": (_objects_only, dict.fromkeys(STEPS, RESTORE)),
    "outputs deleted": (_outputs_deleted, dict.fromkeys(STEPS, RESTORE)),
    # train's key is the lock's, its bytes are not: restore the lock's model, after
    # which evaluate (never re-run by --force train) matches the lock again
    "lock edited back": (_lock_edited_back, plan(train=RESTORE)),
    "source edited": (_source_edited, dict.fromkeys(STEPS, RUN)),
    # restoring prepared.txt brings back the lock's bytes: nothing downstream changes
    "dependency missing": (_dependency_missing, plan(prepare=RESTORE)),
    "param changed": (_param_changed, plan(train=RUN, evaluate=RUN)),
}


@pytest.mark.parametrize("state", list(TABLE))
def test_every_view_gives_each_step_the_same_decision(
    state, workspace, tmp_path, monkeypatch: pytest.MonkeyPatch
):
    make, expected = TABLE[state]
    ws = make(workspace, tmp_path, monkeypatch)
    committed = lock_of(ws.root)

    views = read_views(ws, tmp_path / "frozen-copy")
    s_json = tmp_path / "real.json"
    guard = OnlyOutputsChange(ws, lock_too=RUN in expected.values())
    real = ws.gitpipe("repro", "--summary-json", str(s_json))
    assert real.exit_code == 0, real.output
    did = {step: RUN_STATES.get(s, s) for step, s in summary_states(s_json).items()}
    table = views.table(did)

    per_view = {"status --json": views.status, "repro -n": views.dry_run, "why --json": views.why}
    per_view["repro (what it did)"] = did
    disagree = [s for s in STEPS if len({view.get(s) for view in per_view.values()}) > 1]
    assert not disagree, f"{state}: the views disagree on {disagree}:\n{table}"
    must_run = any(action in (RUN, WAITING) for action in views.status.values())
    assert (views.check, views.frozen) == ((3, 3) if must_run else (0, 0)), table
    assert views.status == expected, f"{state}:\n{table}"

    if not must_run:  # restored and up-to-date steps are the lock's bytes, the lock as is
        assert_outputs_are_the_locks(ws.root, committed)
        assert_lock_as_committed(ws.root)
    guard.check()
