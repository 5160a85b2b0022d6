"""Discovery and run time agree (issue #19): a module discovery lists as a step's
code is one its command can import, with no `env = { PYTHONPATH = "." }`."""

from __future__ import annotations

from conftest import Workspace, lock_steps

SRC_LAYOUT = {
    "src/__init__.py": "",
    "src/utils/__init__.py": "",
    "src/utils/logs.py": "def get_logger():\n    return 'logger'\n",
    "src/stages/train.py": (
        "from src.utils.logs import get_logger\n"
        "with open('model.txt', 'w') as out:\n"
        "    out.write(get_logger())\n"
    ),
}

PIPELINE = """\
[steps.train]
cmd = "python3 src/stages/train.py"
outs = ["model.txt"]
"""


def setup(ws: Workspace, header: str = "") -> None:
    for path, text in SRC_LAYOUT.items():
        ws.write(path, text)
    ws.write(".gitignore", "model.txt\n")
    ws.pipeline(header + PIPELINE)
    ws.commit("pipeline")


def test_a_script_importing_src_from_the_pipeline_folder_runs_without_any_env(workspace):
    setup(workspace)
    listed = workspace.ok("status", "-v").stdout
    assert "src/utils/logs.py" in listed
    result = workspace.ok("repro")
    assert "ModuleNotFoundError" not in result.output
    assert (workspace.root / "model.txt").read_text() == "logger"
    # the folder it got on PYTHONPATH is part of its key, as its code is
    workspace.ok("repro")
    assert workspace.ran() == []


def test_a_written_pythonpath_of_the_same_folder_keeps_the_key(workspace):
    setup(workspace)
    workspace.ok("repro")
    key = lock_steps(workspace)["train"]["key"]
    workspace.pipeline('[pipeline]\npythonpath = ["."]\n' + PIPELINE)
    workspace.ok("repro")
    assert workspace.ran() == []
    assert lock_steps(workspace)["train"]["key"] == key


def test_pythonpath_empty_stops_listing_the_module_and_status_and_repro_say_why(workspace):
    setup(workspace, "[pipeline]\npythonpath = []\n")
    status = workspace.ok("status", "-v").stdout
    assert "code: src/stages/train.py\n" in status  # the module is not listed as code
    said = (
        "import outside pythonpath: src/utils/logs.py (imported by src/stages/train.py; "
        "add '.' to [pipeline] pythonpath)"
    )
    assert said in status
    assert said in workspace.ok("repro", "-n").stdout
    result = workspace.gitpipe("repro")
    assert result.exit_code == 1
    notice, failure = result.stderr.index(said), result.stderr.index("ModuleNotFoundError")
    assert notice < failure  # said before the step ran


def test_a_written_pythonpath_folder_is_searched_and_put_on_pythonpath(workspace):
    workspace.write("lib/helpers.py", "VALUE = 'from lib'\n")
    workspace.write(
        "scripts/run.py",
        "import helpers\nwith open('out.txt', 'w') as f:\n    f.write(helpers.VALUE)\n",
    )
    workspace.write(".gitignore", "out.txt\n")
    workspace.pipeline(
        '[pipeline]\npythonpath = ["lib"]\n'
        '[steps.run]\ncmd = "python3 scripts/run.py"\nouts = ["out.txt"]\n'
    )
    workspace.commit()
    assert "lib/helpers.py" in workspace.ok("status", "-v").stdout
    workspace.ok("repro")
    assert (workspace.root / "out.txt").read_text() == "from lib"
    workspace.write("lib/helpers.py", "VALUE = 'changed'\n")
    assert "code changed: lib/helpers.py" in workspace.ok("status").stdout


def test_a_script_importing_beside_itself_gets_nothing_and_keeps_its_key(workspace):
    """As the examples do (`python3 src/train.py` importing `common`): Python finds
    the module in the script's folder, so the step's environment and key stay."""
    workspace.write("src/common.py", "X = 1\n")
    workspace.write(
        "src/train.py",
        "import os, common\nwith open('out.txt', 'w') as f:\n"
        "    f.write(os.environ.get('PYTHONPATH', 'unset'))\n",
    )
    workspace.write(".gitignore", "out.txt\n")
    workspace.pipeline('[steps.t]\ncmd = "python3 src/train.py"\nouts = ["out.txt"]\n')
    workspace.commit()
    workspace.ok("repro", env={"PYTHONPATH": ""})
    assert (workspace.root / "out.txt").read_text() in ("unset", "")
    key = lock_steps(workspace)["t"]["key"]
    workspace.pipeline(
        '[pipeline]\npythonpath = []\n[steps.t]\ncmd = "python3 src/train.py"\nouts = ["out.txt"]\n'
    )
    workspace.ok("repro")
    assert workspace.ran() == []
    assert lock_steps(workspace)["t"]["key"] == key
