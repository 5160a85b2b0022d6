"""Adversarial review of the one-planner change (planner.py, inputs.py, session.py):
cases where the views (`status --json`, `repro -n`, `why --json`, `status --check`,
`repro --frozen`) and the real `repro` disagree, or where `repro --frozen` leaves the
workspace other than gitpipe.lock names.  Driven through the real CLI in real Git
repositories."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import Workspace, git

from gitpipe.core.hashing import digest_file

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PY = sys.executable

DRY_LINE = re.compile(
    r"^(?:\S+ )?(?P<step>[\w./@\[\]=,-]+): "
    r"(?P<word>would run|would restore|up to date|waiting for approval|skipped|frozen)\b",
    re.MULTILINE,
)
DRY_WORDS = {
    "would run": "run",
    "would restore": "restore",
    "up to date": "up to date",
    "waiting for approval": "waiting",
    "skipped": "skipped",
    "frozen": "frozen",
}
#: what a run summary's state says was done with a step
DID = {"up to date": "up to date", "cached": "restore", "ran": "run", "skipped": "skipped"}


def lock_of(root: Path) -> dict:
    return tomllib.loads((root / "gitpipe.lock").read_text())["steps"]


def views(ws: Workspace, steps: tuple[str, ...], *args: str) -> dict[str, dict[str, str]]:
    """Each view's action per step (status --json, repro -n, why --json)."""
    status = {e["step"]: e["action"] for e in json.loads(ws.ok("status", "--json", *args).stdout)}
    dry = ws.ok("repro", "-n", *args)
    said = {m["step"]: DRY_WORDS[m["word"]] for m in DRY_LINE.finditer(dry.output)}
    why = {s: json.loads(ws.ok("why", s, "--json").stdout)["action"] for s in steps}
    return {
        "status --json": {s: status.get(s, "?") for s in steps},
        "repro -n": {s: said.get(s, "up to date") for s in steps},
        "why --json": why,
    }


def did(ws: Workspace, tmp_path: Path, *args: str) -> tuple[int, dict[str, str], str]:
    """Run the real repro; its exit code, each step's action and its output."""
    s_json = tmp_path / "did.json"
    outcome = ws.gitpipe("repro", "--summary-json", str(s_json), *args)
    states = {s["step"]: s["state"] for s in json.loads(s_json.read_text())["steps"]}
    return outcome.exit_code, {s: DID.get(v, v) for s, v in states.items()}, outcome.output


def frozen_in_copy(ws: Workspace, dest: Path, *args: str) -> tuple[int, str]:
    """`repro --frozen` in a copy of the workspace (it may restore)."""
    shutil.copytree(ws.root, dest, symlinks=True)
    copy = Workspace(dest, ws.runner)
    outcome = copy.gitpipe("repro", "--frozen", *args)
    return outcome.exit_code, outcome.output


# -- 1. a `when` condition on the metrics of a step that will run -----------------------

GATED = """
[steps.score]
cmd = "cp data/score.json score.json"
deps = ["data/score.json"]
metrics = ["score.json"]

[steps.deploy]
when = "${steps.score.metrics.score} >= 0.5"
cmd = "echo deployed > deployed.txt"
outs = ["deployed.txt"]
"""


def test_a_condition_on_the_metrics_of_a_step_that_will_run_is_not_decided_on_the_old_ones(
    workspace, tmp_path
):
    ws = workspace
    ws.write(".gitignore", "score.json\ndeployed.txt\n")
    ws.write("data/score.json", '{"score": 0.1}\n')
    ws.pipeline(GATED)
    ws.commit("gated")
    ws.ok("repro")
    assert ws.states() == {"score": "ran", "deploy": "skipped"}
    ws.commit("lock")

    ws.write("data/score.json", '{"score": 0.9}\n')  # score will run, and pass the gate
    seen = views(ws, ("score", "deploy"))
    code, done, output = did(ws, tmp_path)
    assert code == 0, output
    assert done == {"score": "run", "deploy": "run"}, output
    seen["repro (what it did)"] = done
    # the plan must not call deploy `skipped` (it reads metrics score has yet to write):
    # every view says it runs once score has run
    wrong = {view: d["deploy"] for view, d in seen.items() if d["deploy"] != "run"}
    assert not wrong, f"deploy: the views say {wrong}, repro ran it:\n{seen}"


# -- 2. generated code: a step runs a .py an upstream restore brings back ---------------

GENERATED = f"""
[steps.gen]
cmd = "{PY} src/gen.py"
deps = ["data/n.txt"]
outs = ["tool.py"]

[steps.use]
cmd = "{PY} tool.py"
deps = ["tool.py"]
outs = ["used.txt"]
"""

GEN_SCRIPT = """
import pathlib

n = pathlib.Path("data/n.txt").read_text().strip()
pathlib.Path("tool.py").write_text(
    "import pathlib\\n\\npathlib.Path('used.txt').write_text('" + n + "')\\n"
)
"""


def generated(ws: Workspace) -> dict:
    ws.write(".gitignore", "tool.py\nused.txt\n")
    ws.write("src/gen.py", GEN_SCRIPT)
    ws.write("data/n.txt", "7\n")
    ws.pipeline(GENERATED)
    ws.commit("generated code")
    ws.ok("repro")
    assert ws.states() == {"gen": "ran", "use": "ran"}
    ws.commit("lock")
    return lock_of(ws.root)


def test_generated_code_brought_back_by_a_restore_is_planned_as_a_restore(workspace, tmp_path):
    """Outputs deleted (a fresh clone with the store, `git clean`): the lock names both
    steps' outputs and the store holds them.  `repro` restores both, runs nothing; so
    must every view say, and `status --check` / `repro --frozen` must pass."""
    ws = workspace
    committed = generated(ws)
    for path in ("tool.py", "used.txt"):
        (ws.root / path).unlink()

    seen = views(ws, ("gen", "use"))
    check = ws.gitpipe("status", "--check")
    frozen, frozen_out = frozen_in_copy(ws, tmp_path / "copy")
    code, done, output = did(ws, tmp_path)
    assert code == 0, output
    assert done == {"gen": "restore", "use": "restore"}, output
    for path, recorded in committed["use"]["outs"].items():
        assert str(digest_file(ws.root / path)) == recorded
    seen["repro (what it did)"] = done
    disagree = {view: d for view, d in seen.items() if d != done}
    assert not disagree, f"the views disagree with what repro did:\n{seen}"
    assert (check.exit_code, frozen) == (0, 0), f"{check.output}\n{frozen_out}"


# -- 3. an executable bit restored inside a folder another step reads -------------------

BIN = f"""
[steps.tool]
cmd = "{PY} src/tool.py"
outs = ["bin/tool.sh"]

[steps.other]
cmd = "echo other > bin/other.txt"
outs = ["bin/other.txt"]

[steps.bundle]
cmd = "ls -l bin | cut -c1-10 > bundle.txt"
deps = ["bin/"]
outs = ["bundle.txt"]
"""

TOOL_SCRIPT = """
import os
import pathlib

pathlib.Path("bin").mkdir(exist_ok=True)
tool = pathlib.Path("bin/tool.sh")
tool.write_text("#!/bin/sh\\necho tool\\n")
os.chmod(tool, 0o755)
"""


def test_an_executable_bit_restored_in_a_folder_a_step_reads_is_projected(workspace, tmp_path):
    """bin/tool.sh lost its executable bit by hand.  `repro` restores it (the lock says
    executable), after which bundle's key (bin/ holds the bit) is the lock's again:
    nothing runs.  The plan keys bundle on bin/ without the bit restored, and says it
    runs; `status --check` and `repro --frozen` refuse a workspace `repro` restores."""
    ws = workspace
    ws.write(".gitignore", "bin/\nbundle.txt\n")
    ws.write("src/tool.py", TOOL_SCRIPT)
    ws.pipeline(BIN)
    ws.commit("bin")
    ws.ok("repro")
    ws.commit("lock")
    (ws.root / "bin/tool.sh").chmod(0o644)

    seen = views(ws, ("tool", "other", "bundle"))
    check = ws.gitpipe("status", "--check")
    frozen, frozen_out = frozen_in_copy(ws, tmp_path / "copy")
    code, done, output = did(ws, tmp_path)
    assert code == 0, output
    assert done == {"tool": "restore", "other": "up to date", "bundle": "up to date"}, output
    assert os.access(ws.root / "bin/tool.sh", os.X_OK)
    assert git(ws.root, "status", "--porcelain") == ""  # the lock as committed
    seen["repro (what it did)"] = done
    disagree = {view: d for view, d in seen.items() if d != done}
    assert not disagree, f"the views disagree with what repro did:\n{seen}"
    assert (check.exit_code, frozen) == (0, 0), f"{check.output}\n{frozen_out}"


# -- 4. SIGKILL during a restore ----------------------------------------------------------

KILLED = f"""
[steps.big]
cmd = "{PY} -c \\"open('data/big.bin', 'wb').write(bytes(range(256)) * (1 << 19))\\""
outs = ["data/big.bin"]

[steps.small]
cmd = "echo small > data/small.txt"
outs = ["data/small.txt"]

[steps.reader]
cmd = "ls -a data | sort > listing.txt"
deps = ["data/"]
outs = ["listing.txt"]
"""


def test_a_restore_killed_midway_leaves_nothing_outside_the_outputs(workspace, tmp_path):
    """`repro` is killed (SIGKILL) while it restores data/big.bin from the store.  Run
    again, it must restore the lock's bytes and leave the workspace as the lock names
    it: no temporary file of the killed restore left in data/, which reader reads (a
    left-over makes reader's key differ from the lock's for ever: it runs, and the
    lock then names a listing with the debris in it)."""
    ws = workspace
    ws.write(".gitignore", "data/\nlisting.txt\n")
    ws.pipeline(KILLED)
    ws.commit("pipeline")
    ws.ok("repro")
    ws.commit("lock")
    committed = lock_of(ws.root)
    (ws.root / "data/big.bin").unlink()

    env = {k: v for k, v in os.environ.items() if k != "GITPIPE_FAULT"}
    gitpipe = Path(sys.executable).parent / "gitpipe"
    process = subprocess.Popen([str(gitpipe), "repro"], cwd=ws.root, env=env)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            scratch = ws.root / ".gitpipe" / "tmp"
            if scratch.is_dir() and any(n.startswith(".big.bin.") for n in os.listdir(scratch)):
                process.send_signal(signal.SIGKILL)
                break
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL, "the restore finished before the kill"

    outcome = ws.gitpipe("repro")
    assert outcome.exit_code == 0, outcome.output
    assert sorted(os.listdir(ws.root / "data")) == ["big.bin", "small.txt"], outcome.output
    # what the killed restore left in gitpipe's own scratch folder is gone too
    assert not [n for n in os.listdir(ws.root / ".gitpipe" / "tmp") if n.endswith(".tmp")]
    assert "ran" not in ws.states().values(), outcome.output
    assert str(digest_file(ws.root / "data/big.bin")) == committed["big"]["outs"]["data/big.bin"]
    assert git(ws.root, "status", "--porcelain") == "", git(ws.root, "diff")


# -- 5. a hard-linked output whose mode was changed by hand -------------------------------


def test_frozen_that_passes_leaves_a_hardlinked_output_with_the_mode_the_lock_names(workspace):
    """With `link = "hardlink"` the output is the stored object under a second name.
    Someone makes it executable by hand (root ignores its 0444): `status` says
    `out modified: out.txt (executable bit); restores gitpipe.lock's outputs`, and
    `repro --frozen` exits 0 saying it restored it, yet the restore hard-links the
    same inode again (whose mode is now 0755): the workspace still differs from the
    lock, and every later `repro` "restores" it again."""
    ws = workspace
    ws.write(".gitignore", "out.txt\n")
    ws.pipeline(
        """
        [steps.make]
        cmd = "echo hello > out.txt"
        outs = ["out.txt"]
        link = "hardlink"
        """
    )
    ws.commit("pipeline")
    ws.ok("repro")
    ws.commit("lock")
    out = ws.root / "out.txt"
    assert out.stat().st_nlink == 2  # it is the stored object
    out.chmod(0o755)

    frozen = ws.gitpipe("repro", "--frozen")
    assert frozen.exit_code == 0, frozen.output
    assert ws.states() == {"make": "cached"}
    assert not os.access(out, os.X_OK), (
        f"--frozen passed, but out.txt is still executable ({oct(out.stat().st_mode)}); "
        f"gitpipe.lock names it not executable:\n{frozen.output}"
    )
    assert "up to date" in ws.ok("status").stdout
