"""Code identity (issue 5): discovered code, normalised digests, `fn` steps, `why`.

Every test builds a real Git repository and drives the real CLI.  Scripts run with
this interpreter (``sys.executable``) so that they can import gitpipe.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest
from conftest import Workspace

from gitpipe.identity import statcache

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PY = sys.executable

# A shared helper two imports deep: prepare.py and train.py -> pkg/features.py ->
# pkg/util.py; report.py imports nothing of this repository.
HELPERS = {
    ".gitignore": "out/\n",
    "src/pkg/__init__.py": '"""Helpers shared by the steps."""\n',
    "src/pkg/util.py": """
        def scale(x):
            return x * 2
        """,
    "src/pkg/features.py": """
        from .util import scale


        def build(n):
            return [scale(i) for i in range(n)]
        """,
    "src/prepare.py": """
        import json
        import sys

        from pkg.features import build

        json.dump(build(int(sys.argv[1])), open("out/prepared.json", "w"))
        """,
    "src/train.py": """
        import json

        from pkg import features

        json.dump(sum(features.build(4)), open("out/model.json", "w"))
        """,
    "src/report.py": """
        import json

        json.dump({"ok": True}, open("out/report.json", "w"))
        """,
}
HELPERS_PIPELINE = f"""
[params]
n = 3

[steps.prepare]
cmd = "{PY} src/prepare.py ${{params.n}}"
outs = ["out/prepared.json"]

[steps.train]
cmd = "{PY} src/train.py"
outs = ["out/model.json"]

[steps.report]
cmd = "{PY} src/report.py"
outs = ["out/report.json"]
"""


def shared_helpers(workspace: Workspace) -> Workspace:
    for path, text in HELPERS.items():
        workspace.write(path, text)
    workspace.pipeline(HELPERS_PIPELINE)
    workspace.commit("pipeline with a shared helper")
    return workspace


def statuses(workspace: Workspace, *args: str) -> dict[str, dict]:
    return {s["step"]: s for s in json.loads(workspace.ok("status", "--json", *args).stdout)}


def lock(workspace: Workspace) -> dict:
    return tomllib.loads((workspace.root / "gitpipe.lock").read_text())


def up_to_date(workspace: Workspace) -> bool:
    """A repro that runs and restores nothing."""
    workspace.ok("repro")
    return workspace.ran() == [] and set(workspace.states().values()) == {"up to date"}


def log_of(outcome_text: str) -> str:
    """The step log a failure line names: `... (log: PATH)`."""
    match = re.search(r"\(log: ([^)]+\.log)\)", outcome_text)
    assert match, outcome_text
    return Path(match.group(1)).read_text()


# -- 1. discovery -------------------------------------------------------------------


def test_editing_a_helper_two_imports_deep_reruns_exactly_the_steps_that_import_it(workspace):
    shared_helpers(workspace)
    workspace.ok("repro")
    assert sorted(workspace.ran()) == ["prepare", "report", "train"]

    workspace.write(
        "src/pkg/util.py",
        """
        def scale(x):
            return x * 3
        """,
    )
    now = statuses(workspace)
    assert now["prepare"]["reasons"] == ["code changed: src/pkg/util.py"]
    assert now["train"]["reasons"] == ["code changed: src/pkg/util.py"]
    assert now["report"]["state"] == "up to date"

    workspace.ok("repro")
    assert sorted(workspace.ran()) == ["prepare", "train"]
    assert workspace.states()["report"] == "up to date"
    assert json.loads((workspace.root / "out/prepared.json").read_text()) == [0, 3, 6]


def test_status_lists_each_steps_code_files(workspace):
    shared_helpers(workspace)
    helper_code = [
        "src/pkg/__init__.py",
        "src/pkg/features.py",
        "src/pkg/util.py",
    ]
    now = statuses(workspace)
    assert now["prepare"]["code"] == [*helper_code, "src/prepare.py"]
    assert now["train"]["code"] == [*helper_code, "src/train.py"]
    assert now["report"]["code"] == ["src/report.py"]

    text = workspace.ok("status", "-v").stdout
    assert "code: src/pkg/__init__.py, src/pkg/features.py, src/pkg/util.py, src/prepare.py" in text
    assert "code: src/report.py" in text


# A package reached through every import form: `from pkg import submodule`, a
# relative import, `from .. import` from a subpackage, package __init__ files and an
# import inside a function.
FORMS = {
    ".gitignore": "out/\n",
    "src/app.py": """
        import os
        import sys

        from pkg import util


        def late():
            from pkg.deep import inner

            return inner.X


        out = os.path.join(os.environ["GITPIPE_ROOT"], "out", os.environ["GITPIPE_STEP"])
        with open(out, "w") as f:
            f.write(str(util.K + late()))
        """,
    "src/pkg/__init__.py": "",
    "src/pkg/util.py": "from .consts import K\n",
    "src/pkg/consts.py": "K = 1\n",
    "src/pkg/deep/__init__.py": "from .. import consts\n",
    "src/pkg/deep/inner.py": "X = 10\n",
    "src/pkg/unused.py": "",
    "src/pkg/main.py": """
        import os

        from . import util

        out = os.path.join(os.environ["GITPIPE_ROOT"], "out", os.environ["GITPIPE_STEP"])
        with open(out, "w") as f:
            f.write(str(util.K))
        """,
}
APP_CODE = [
    "src/app.py",
    "src/pkg/__init__.py",
    "src/pkg/consts.py",
    "src/pkg/deep/__init__.py",
    "src/pkg/deep/inner.py",
    "src/pkg/util.py",
]
MAIN_CODE = ["src/pkg/__init__.py", "src/pkg/consts.py", "src/pkg/main.py", "src/pkg/util.py"]
# step -> its command; those marked True really run here (uv and poetry need not be
# installed: their steps are only inspected)
FORM_STEPS = {
    "direct": (f"{PY} src/app.py", True),
    "envvar": (f"VAR=1 {PY} src/app.py", True),
    "cd": (f"cd src && {PY} app.py", True),
    "uv": ("uv run python src/app.py", False),
    "poetry": ("poetry run python src/app.py", False),
    "module": (f"PYTHONPATH=src {PY} -m pkg.main", True),
    "module_cd": (f"cd src && {PY} -m pkg.main", True),
    "uv_module": ("uv run python -m pkg.main", False),
}


def forms(workspace: Workspace) -> Workspace:
    for path, text in FORMS.items():
        workspace.write(path, text)
    steps = "\n".join(
        f'[steps.{name}]\ncmd = "{command}"\nouts = ["out/{name}"]\n'
        for name, (command, _) in FORM_STEPS.items()
    )
    workspace.pipeline(steps)
    (workspace.root / "out").mkdir()
    workspace.commit("every form")
    return workspace


def test_every_import_form_and_command_form_discovers_the_same_code(workspace):
    forms(workspace)
    now = statuses(workspace)
    for name in ("direct", "envvar", "cd", "uv", "poetry"):
        assert now[name]["code"] == APP_CODE, name
    for name in ("module", "module_cd", "uv_module"):
        assert now[name]["code"] == MAIN_CODE, name


def test_an_edit_anywhere_in_the_discovered_code_makes_every_form_stale(workspace):
    forms(workspace)
    runnable = [name for name, (_, runs) in FORM_STEPS.items() if runs]
    workspace.ok("repro", *runnable)
    assert sorted(workspace.ran()) == sorted(runnable)
    assert (workspace.root / "out/cd").read_text() == "11"
    assert (workspace.root / "out/module").read_text() == "1"

    # imported only inside a function, by app.py
    workspace.write("src/pkg/deep/inner.py", "X = 20\n")
    now = statuses(workspace, *runnable)
    assert {name for name, s in now.items() if s["state"] == "stale"} == {"direct", "envvar", "cd"}
    assert now["cd"]["reasons"] == ["code changed: src/pkg/deep/inner.py"]
    workspace.ok("repro", *runnable)
    assert sorted(workspace.ran()) == ["cd", "direct", "envvar"]

    # reached by a relative import, by everyone
    workspace.write("src/pkg/consts.py", "K = 2\n")
    workspace.ok("repro", *runnable)
    assert sorted(workspace.ran()) == sorted(runnable)
    assert (workspace.root / "out/module_cd").read_text() == "2"

    # a module nothing imports is nobody's code
    workspace.write("src/pkg/unused.py", "Y = 1\n")
    assert {s["state"] for s in statuses(workspace, *runnable).values()} == {"up to date"}


def test_standard_library_and_third_party_imports_are_not_code(workspace):
    workspace.write(".gitignore", "out/\n")
    workspace.write(
        "src/x.py",
        """
        import json
        from collections import OrderedDict

        try:
            import numpy
        except ImportError:
            numpy = None

        json.dump(OrderedDict(a=1), open("out/x.json", "w"))
        """,
    )
    workspace.pipeline(f'[steps.x]\ncmd = "{PY} src/x.py"\nouts = ["out/x.json"]\n')
    workspace.commit()
    assert statuses(workspace)["x"]["code"] == ["src/x.py"]
    workspace.ok("repro")
    assert workspace.ran() == ["x"]


def test_a_dynamic_import_is_not_seen_until_listed_in_code(workspace):
    workspace.write(".gitignore", "out/\n")
    workspace.write("src/pkg/__init__.py", "")
    workspace.write("src/pkg/hidden.py", "VALUE = 1\n")
    workspace.write(
        "src/run.py",
        """
        import importlib

        hidden = importlib.import_module("pkg.hidden")
        open("out/run.txt", "w").write(str(hidden.VALUE))
        """,
    )
    step = f'[steps.run]\ncmd = "{PY} src/run.py"\nouts = ["out/run.txt"]\n'
    workspace.pipeline(step)
    workspace.commit()
    workspace.ok("repro")
    assert statuses(workspace)["run"]["code"] == ["src/run.py"]

    # what gitpipe cannot see: the edit goes unnoticed (this is why `code` exists)
    workspace.write("src/pkg/hidden.py", "VALUE = 2\n")
    assert statuses(workspace)["run"]["state"] == "up to date"

    workspace.pipeline(step + 'code = ["src/pkg/hidden.py"]\n')
    now = statuses(workspace)["run"]
    assert now["code"] == ["src/pkg/hidden.py", "src/run.py"]
    assert now["state"] == "stale"
    workspace.ok("repro")
    assert (workspace.root / "out/run.txt").read_text() == "2"

    workspace.write("src/pkg/hidden.py", "VALUE = 3\n")
    assert statuses(workspace)["run"]["reasons"] == ["code changed: src/pkg/hidden.py"]


def test_code_globs_add_files_of_any_language_digested_as_bytes(workspace):
    workspace.write(".gitignore", "out/\n")
    workspace.write("sql/a.sql", "SELECT 1;\n")
    workspace.write("sql/b.sql", "SELECT 2;\n")
    workspace.pipeline(
        """
        [steps.query]
        cmd = "mkdir -p out && cat sql/*.sql > out/all.sql"
        code = ["sql/*.sql"]
        outs = ["out/all.sql"]
        """
    )
    workspace.commit()
    assert statuses(workspace)["query"]["code"] == ["sql/a.sql", "sql/b.sql"]
    workspace.ok("repro")
    workspace.write("sql/b.sql", "SELECT 2; -- only a comment\n")
    assert statuses(workspace)["query"]["reasons"] == ["code changed: sql/b.sql"]


def test_a_script_reads_its_params_with_gitpipe_params(workspace):
    workspace.write(".gitignore", "out/\n")
    workspace.write(
        "src/p.py",
        """
        import json

        import gitpipe

        json.dump(gitpipe.params(), open("out/params.json", "w"), sort_keys=True)
        """,
    )
    workspace.pipeline(
        f"""
        [params]
        seed = 7
        [params.train]
        lr = 0.1

        [steps.p]
        cmd = "{PY} src/p.py --seed ${{params.seed}}"
        params = ["train"]
        outs = ["out/params.json"]
        """
    )
    workspace.commit()
    workspace.ok("repro")
    assert json.loads((workspace.root / "out/params.json").read_text()) == {
        "seed": 7,
        "train": {"lr": 0.1},
    }


def test_editing_a_module_of_a_namespace_package_reruns_the_step(workspace):
    workspace.write(".gitignore", "out/\n")
    workspace.write("src/lib/helpers.py", "K = 1\n")
    workspace.write(
        "src/run.py",
        """
        from lib import helpers

        open("out/run.txt", "w").write(str(helpers.K))
        """,
    )
    workspace.pipeline(f'[steps.run]\ncmd = "{PY} src/run.py"\nouts = ["out/run.txt"]\n')
    workspace.commit()
    workspace.ok("repro")
    workspace.write("src/lib/helpers.py", "K = 2\n")
    workspace.ok("repro")
    assert workspace.ran() == ["run"]


# -- 2, 3. normalised code digests -----------------------------------------------------

SCRIPT = '''\
"""Scale the numbers."""

import json
import sys

FACTOR = 3  # tuned by hand


def scale(values, factor=FACTOR):
    """Multiply each value by factor."""
    result = [value * factor for value in values]
    return result


json.dump(scale([1, 2, 3]), open(sys.argv[1], "w"))
'''


def scaling(workspace: Workspace, extra: str = "", header: str = "") -> Workspace:
    workspace.write(".gitignore", "out/\n")
    workspace.write("src/scale.py", SCRIPT)
    workspace.write("src/other.py", SCRIPT)
    workspace.pipeline(
        f"""
        {header}
        [steps.scale]
        cmd = "{PY} src/scale.py out/scaled.json"
        outs = ["out/scaled.json"]
        {extra}

        [steps.other]
        cmd = "{PY} src/other.py out/other.json"
        outs = ["out/other.json"]
        """
    )
    workspace.commit()
    workspace.ok("repro")
    assert sorted(workspace.ran()) == ["other", "scale"]
    return workspace


COSMETIC = {
    "comment": ("# tuned by hand", "# chosen after three experiments"),
    "new comment": ("import sys\n", "import sys  # for argv\n# a comment line\n"),
    "module docstring": ('"""Scale the numbers."""', '"""Scale the numbers.\n\nAt length.\n"""'),
    "function docstring": ('    """Multiply each value by factor."""\n', ""),
    "blank lines": ("\n\n\ndef", "\n\n\n\n\n\ndef"),
    "reflowed arguments": (
        "def scale(values, factor=FACTOR):",
        "def scale(\n    values,\n    factor=FACTOR,\n):",
    ),
    "parentheses": (
        "result = [value * factor for value in values]",
        "result = ([(value * factor) for value in (values)])",
    ),
}


@pytest.mark.parametrize(("old", "new"), COSMETIC.values(), ids=COSMETIC.keys())
def test_a_cosmetic_edit_of_a_script_reruns_nothing(workspace, old, new):
    scaling(workspace)
    assert old in SCRIPT
    workspace.write("src/scale.py", SCRIPT.replace(old, new))
    assert statuses(workspace)["scale"]["state"] == "up to date"
    assert up_to_date(workspace)


def test_a_cosmetic_edit_of_a_helper_reruns_nothing(workspace):
    shared_helpers(workspace)
    workspace.ok("repro")
    workspace.write(
        "src/pkg/util.py",
        '''
        """Small numeric helpers."""


        def scale(x):  # double it
            """Twice x."""
            return (x * 2)
        ''',
    )
    assert up_to_date(workspace)


MEANINGFUL = {
    "default value": ("factor=FACTOR", "factor=2"),
    "module constant": ("FACTOR = 3", "FACTOR = 4"),
    "local variable renamed": (
        "result = [value * factor for value in values]\n    return result",
        "scaled = [value * factor for value in values]\n    return scaled",
    ),
}


@pytest.mark.parametrize(("old", "new"), MEANINGFUL.values(), ids=MEANINGFUL.keys())
def test_changing_what_runs_reruns_the_step(workspace, old, new):
    scaling(workspace)
    workspace.write("src/scale.py", SCRIPT.replace(old, new))
    assert statuses(workspace)["scale"]["reasons"] == ["code changed: src/scale.py"]
    workspace.ok("repro")
    assert workspace.ran() == ["scale"]
    assert workspace.states()["other"] == "up to date"


@pytest.mark.parametrize(
    ("extra", "header"),
    [('code_digest = "bytes"', ""), ("", '[pipeline]\ncode_digest = "bytes"')],
    ids=["step", "pipeline"],
)
def test_with_bytes_code_digests_a_comment_edit_reruns_the_step(workspace, extra, header):
    scaling(workspace, extra=extra, header=header)
    workspace.write("src/scale.py", SCRIPT.replace("# tuned by hand", "# another comment"))
    workspace.write("src/other.py", SCRIPT.replace("# tuned by hand", "# another comment"))
    workspace.ok("repro")
    # a pipeline-wide setting covers both steps; a step's own only that step
    assert sorted(workspace.ran()) == (["scale"] if extra else ["other", "scale"])


def test_a_step_can_keep_normalised_digests_in_a_bytes_pipeline(workspace):
    scaling(workspace, extra='code_digest = "ast"', header='[pipeline]\ncode_digest = "bytes"')
    workspace.write("src/scale.py", SCRIPT.replace("# tuned by hand", "# another comment"))
    workspace.write("src/other.py", SCRIPT.replace("# tuned by hand", "# another comment"))
    workspace.ok("repro")
    assert workspace.ran() == ["other"]


def test_a_script_listed_in_deps_is_keyed_by_its_code_digest(workspace):
    scaling(workspace, extra='deps = ["src/scale.py"]')
    entry = lock(workspace)["steps"]["scale"]
    assert "src/scale.py" in entry["code"]
    assert "src/scale.py" not in entry.get("deps", {})

    workspace.write("src/scale.py", SCRIPT.replace("# tuned by hand", "# another comment"))
    assert up_to_date(workspace)
    workspace.write("src/scale.py", SCRIPT.replace("FACTOR = 3", "FACTOR = 5"))
    workspace.ok("repro")
    assert workspace.ran() == ["scale"]


# -- 6. code that does not parse --------------------------------------------------------


def test_a_script_with_a_syntax_error_is_stale_and_fails_as_python_would(workspace):
    scaling(workspace)
    workspace.write("src/scale.py", SCRIPT.replace("def scale(values,", "def scale(values"))
    now = statuses(workspace)["scale"]
    assert now["state"] == "stale"
    assert "code unreadable: src/scale.py" in now["reasons"]
    assert "code unreadable: src/scale.py" in workspace.ok("status").stdout

    failed = workspace.gitpipe("repro")
    assert failed.exit_code == 1
    assert "SyntaxError" in failed.stderr
    assert "scale: failed" in failed.stderr
    assert "SyntaxError" in log_of(failed.stderr)
    assert workspace.states() == {"scale": "failed", "other": "up to date"}


def test_a_helper_with_a_syntax_error_is_named_as_unreadable(workspace):
    shared_helpers(workspace)
    workspace.ok("repro")
    workspace.write("src/pkg/util.py", "def scale(x:\n    return x\n")
    now = statuses(workspace)
    assert "code unreadable: src/pkg/util.py" in now["prepare"]["reasons"]
    assert "code unreadable: src/pkg/util.py" in now["train"]["reasons"]
    assert now["report"]["state"] == "up to date"
    failed = workspace.gitpipe("repro")
    assert failed.exit_code == 1
    assert "SyntaxError" in failed.stderr


# -- 4. function steps ---------------------------------------------------------------------

FN_MODULE = """
import json
import os

from pkg import helper


def train(seed, train):
    if seed < 0:
        raise ValueError(f"seed must be >= 0, not {seed}")
    with open("out/model.json", "w") as f:
        json.dump({"seed": seed, "lr": train["lr"], "step": os.environ["GITPIPE_STEP"]}, f)
    return {"accuracy": helper.accuracy(seed), "epochs": 3, "notes": ["not", "a number"]}
"""
FN_PIPELINE = """
[params]
seed = {seed}
[params.train]
lr = 0.1

[steps.fit]
fn = "pkg.mod:train"
params = ["seed", "train"]
outs = ["out/model.json"]
"""


def function_step(workspace: Workspace, seed: int = 42) -> Workspace:
    workspace.write(".gitignore", "out/\n")
    workspace.write("pkg/__init__.py", "")
    workspace.write("pkg/mod.py", FN_MODULE)
    workspace.write("pkg/helper.py", "def accuracy(seed):\n    return 0.5 + seed / 1000\n")
    workspace.write("pkg/other.py", "UNRELATED = 1\n")
    workspace.pipeline(FN_PIPELINE.format(seed=seed))
    (workspace.root / "out").mkdir()
    workspace.commit("a function step")
    return workspace


def test_a_function_step_runs_with_its_params_as_keyword_arguments(workspace):
    function_step(workspace)
    assert statuses(workspace)["fit"]["code"] == ["pkg/__init__.py", "pkg/helper.py", "pkg/mod.py"]
    workspace.ok("repro")
    assert workspace.ran() == ["fit"]
    assert json.loads((workspace.root / "out/model.json").read_text()) == {
        "seed": 42,
        "lr": 0.1,
        "step": "fit",
    }


def test_a_function_step_caches_and_restores_like_a_command_step(workspace):
    function_step(workspace)
    workspace.ok("repro")
    produced = (workspace.root / "out/model.json").read_bytes()
    assert up_to_date(workspace)

    (workspace.root / "out/model.json").unlink()
    workspace.ok("repro")
    assert workspace.states() == {"fit": "cached"}
    assert (workspace.root / "out/model.json").read_bytes() == produced

    workspace.pipeline(FN_PIPELINE.format(seed=7))
    workspace.ok("repro")
    assert workspace.ran() == ["fit"]
    workspace.pipeline(FN_PIPELINE.format(seed=42))
    workspace.ok("repro")
    assert workspace.states() == {"fit": "cached"}
    assert (workspace.root / "out/model.json").read_bytes() == produced


def test_a_function_steps_returned_numbers_are_its_metrics(workspace):
    function_step(workspace)
    workspace.ok("repro")
    returned = {"accuracy": 0.542, "epochs": 3}
    assert lock(workspace)["steps"]["fit"]["metrics"]["returned"] == returned
    assert "[steps.fit.metrics.returned]" in (workspace.root / "gitpipe.lock").read_text()
    assert json.loads(workspace.ok("metrics", "--json").stdout) == {"fit": {"returned": returned}}
    assert "fit  returned  accuracy = 0.542" in workspace.ok("metrics").stdout


def test_a_function_step_that_raises_fails_with_its_traceback_in_the_log(workspace):
    function_step(workspace, seed=-1)
    failed = workspace.gitpipe("repro")
    assert failed.exit_code == 1
    assert "fit: failed: ValueError: seed must be >= 0, not -1 (in pkg.mod:train)" in failed.stderr
    log = log_of(failed.stderr)
    assert "Traceback (most recent call last)" in log
    assert 'raise ValueError(f"seed must be >= 0, not {seed}")' in log
    assert "ValueError: seed must be >= 0, not -1" in log
    assert workspace.states() == {"fit": "failed"}
    assert not (workspace.root / "gitpipe.lock").exists()


def test_editing_a_function_steps_module_reruns_it_and_an_unrelated_module_does_not(workspace):
    function_step(workspace)
    workspace.ok("repro")
    workspace.write("pkg/other.py", "UNRELATED = 2\n")
    assert up_to_date(workspace)

    workspace.write("pkg/helper.py", "def accuracy(seed):\n    return 0.25 + seed / 1000\n")
    assert statuses(workspace)["fit"]["reasons"] == ["code changed: pkg/helper.py"]
    workspace.ok("repro")
    assert workspace.ran() == ["fit"]
    assert lock(workspace)["steps"]["fit"]["metrics"]["returned"]["accuracy"] == 0.292

    workspace.write("pkg/mod.py", FN_MODULE.replace('"epochs": 3', '"epochs": 4'))
    workspace.ok("repro")
    assert workspace.ran() == ["fit"]


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('fn = "pkg.mod:train"\ncmd = "echo hi"', "steps.fit.fn"),
        ('outs = ["out/model.json"]', "steps.fit.cmd"),
        ('fn = "nocolon"', "steps.fit.fn"),
        ('fn = "pkg.mod:"', "steps.fit.fn"),
        ('fn = "pkg-mod:train"', "steps.fit.fn"),
    ],
    ids=["fn and cmd", "neither", "no colon", "no function", "not a module name"],
)
def test_a_malformed_function_step_is_a_pipeline_error(workspace, body, key):
    workspace.pipeline(f"[steps.fit]\n{body}\n")
    workspace.commit()
    for command in ("status", "repro"):
        result = workspace.gitpipe(command)
        assert result.exit_code == 2, result.output
        assert key in result.stderr
        assert "Traceback" not in result.output
    assert not (workspace.root / ".gitpipe").exists()


# -- 5. why ------------------------------------------------------------------------------


def test_why_shows_the_changed_file_and_param_with_old_and_new_values(workspace):
    shared_helpers(workspace)
    workspace.ok("repro")
    old_util = lock(workspace)["steps"]["prepare"]["code"]["src/pkg/util.py"]
    workspace.write("src/pkg/util.py", "def scale(x):\n    return x * 3\n")
    workspace.pipeline(HELPERS_PIPELINE.replace("n = 3", "n = 4"))

    text = workspace.ok("why", "prepare").stdout
    assert text.startswith("prepare: stale (")
    assert "code changed: src/pkg/util.py" in text
    assert re.search(r"code src/pkg/util\.py\s+changed: b3:\w+ -> b3:\w+", text), text
    assert re.search(r"param n\s+changed: 3 -> 4", text), text
    assert re.search(r"code src/pkg/features\.py\s+same", text), text
    assert "param n were 3 (it is 4)" in text

    why = json.loads(workspace.ok("why", "prepare", "--json").stdout)
    assert why["state"] == "stale"
    assert "src/pkg/util.py" in why["code"]
    changed = {
        (c["kind"], c["name"]): c for c in why["lock"]["components"] if c["change"] == "changed"
    }
    assert set(changed) == {("command", ""), ("code", "src/pkg/util.py"), ("param", "n")}
    util = changed["code", "src/pkg/util.py"]
    assert util["then"] == old_util
    assert util["now"].startswith("b3:") and util["now"] != old_util
    assert (changed["param", "n"]["then"], changed["param", "n"]["now"]) == (3, 4)
    nearest = {(c["kind"], c["name"]) for c in why["nearest_result"]["differences"]}
    assert nearest == set(changed)


def test_why_after_a_param_is_changed_back_says_repro_restores_it(workspace):
    shared_helpers(workspace)
    workspace.ok("repro")
    workspace.pipeline(HELPERS_PIPELINE.replace("n = 3", "n = 5"))
    workspace.ok("repro")
    assert workspace.ran() == ["prepare"]
    workspace.pipeline(HELPERS_PIPELINE)

    why = json.loads(workspace.ok("why", "prepare", "--json").stdout)
    assert why["state"] == "stale"
    assert why["nearest_result"]["differences"] == []
    params = [c for c in why["lock"]["components"] if c["kind"] == "param"]
    assert params == [{"kind": "param", "name": "n", "now": 3, "then": 5, "change": "changed"}]
    assert "`gitpipe repro` restores it" in workspace.ok("why", "prepare").stdout

    workspace.ok("repro")
    assert workspace.states()["prepare"] == "cached"


def test_why_an_up_to_date_step_says_so(workspace):
    shared_helpers(workspace)
    workspace.ok("repro")
    text = workspace.ok("why", "report").stdout
    assert text.splitlines()[0] == "report: up to date"
    assert "code: src/report.py" in text
    why = json.loads(workspace.ok("why", "report", "--json").stdout)
    assert why["state"] == "up to date"
    assert why["reasons"] == []
    assert all(c["change"] == "same" for c in why["lock"]["components"])
    assert why["nearest_result"] == {"key": why["key"], "differences": []}


def test_why_a_step_that_never_ran_says_there_is_nothing_to_compare(workspace):
    shared_helpers(workspace)
    text = workspace.ok("why", "report").stdout
    assert "gitpipe.lock has no entry for it" in text
    assert "no stored result of this step to compare with" in text


def test_why_an_unknown_step_is_a_usage_error(workspace):
    shared_helpers(workspace)
    result = workspace.gitpipe("why", "nope")
    assert result.exit_code == 2
    assert "nope" in result.stderr
    assert "Traceback" not in result.output


# -- 8. discovery is cached -----------------------------------------------------------------


def test_a_second_status_reads_no_file_content(workspace, monkeypatch):
    shared_helpers(workspace)
    workspace.ok("repro")
    # old mtimes: the stat cache trusts what it hashed well after a file last changed
    old = time.time() - 3600
    for path in workspace.root.rglob("*"):
        if ".git" not in path.relative_to(workspace.root).parts[:1]:
            os.utime(path, (old, old))

    hashed: list[str] = []
    read: list[str] = []
    real_digest_file = statcache.digest_file
    real_read_bytes = Path.read_bytes

    def digest_file(path, **kwargs):
        hashed.append(Path(path).relative_to(workspace.root).as_posix())
        return real_digest_file(path, **kwargs)

    def read_bytes(self):
        if self.is_relative_to(workspace.root):
            relative = self.relative_to(workspace.root).as_posix()
            if relative not in ("gitpipe.toml", "gitpipe.lock") and not relative.startswith(".git"):
                read.append(relative)
        return real_read_bytes(self)

    monkeypatch.setattr(statcache, "digest_file", digest_file)
    monkeypatch.setattr(Path, "read_bytes", read_bytes)

    workspace.ok("status")  # the new mtimes: every file is hashed again, once
    assert "src/pkg/util.py" in hashed
    hashed.clear()
    read.clear()

    assert statuses(workspace)["prepare"]["code"][-1] == "src/prepare.py"
    assert hashed == []
    assert read == []

    # an edit: only the edited file is hashed and parsed again
    workspace.write("src/pkg/util.py", "def scale(x):\n    return x * 5\n")
    workspace.ok("status")
    assert hashed == ["src/pkg/util.py"]
    assert read == ["src/pkg/util.py"]


# -- bugs found while writing these tests ---------------------------------------------------


def test_a_steps_key_does_not_depend_on_what_was_digested_before(make_workspace):
    keys = []
    for name, first in (("one", ()), ("two", ("marker",))):
        workspace = make_workspace(name)
        workspace.write("conf/empty.cfg", "")
        workspace.write("src/pkg/__init__.py", "")
        workspace.write("src/run.py", "import pkg\n")
        workspace.pipeline(
            f"""
            [steps.marker]
            cmd = "true"
            code = ["conf/empty.cfg"]

            [steps.run]
            cmd = "{PY} src/run.py"
            """
        )
        workspace.commit()
        for step in (*first, "run"):
            workspace.ok("repro", step)
        keys.append(lock(workspace)["steps"]["run"]["key"])
    assert keys[0] == keys[1]


def test_a_code_path_above_the_pipeline_folder_is_code_like_any_other(workspace):
    """docs/code.md: "a `code` entry or a script above the pipeline folder
    (`../shared/helpers.py`) is code like any other" (it was once left out silently)."""
    workspace.write("shared/helpers.py", "X = 1\n")
    workspace.write("analysis/run.py", "print(1)\n")
    workspace.write(
        "analysis/gitpipe.toml",
        f'[steps.a]\ncmd = "{PY} run.py"\ncode = ["../shared/helpers.py"]\n',
    )
    workspace.commit()
    (before,) = json.loads(workspace.ok("-C", "analysis", "status", "--json").stdout)
    assert before["code"] == ["../shared/helpers.py", "run.py"]

    workspace.ok("-C", "analysis", "repro")
    workspace.write("shared/helpers.py", "X = 2\n")
    (after,) = json.loads(workspace.ok("-C", "analysis", "status", "--json").stdout)
    assert after["state"] == "stale"
    assert after["reasons"] == ["code changed: ../shared/helpers.py"]


def test_a_missing_code_file_is_a_pipeline_error(workspace):
    workspace.write("src/run.py", "print(1)\n")
    workspace.pipeline(f'[steps.a]\ncmd = "{PY} src/run.py"\ncode = ["src/missing.py"]\n')
    workspace.commit()
    result = workspace.gitpipe("status")
    assert result.exit_code == 2
    assert "steps.a.code[0]" in result.stderr
    assert "src/missing.py" in result.stderr


def test_why_an_up_to_date_step_does_not_offer_to_restore_it(workspace):
    shared_helpers(workspace)
    workspace.ok("repro")
    assert "restores it" not in workspace.ok("why", "report").stdout


def test_generated_code_is_read_after_the_step_that_writes_it(workspace):
    """A module written by one step and imported by the next is that step's code, as
    it is once written, not as it was when the run started."""
    workspace.write(
        "make.py", "import sys\nopen('gen/values.py', 'w').write(f'N = {sys.argv[1]}')\n"
    )
    workspace.write(
        "use.py", "from gen import values\nopen('used.txt', 'w').write(str(values.N))\n"
    )
    workspace.write("gen/__init__.py", "")
    pipeline = """
        [params]
        n = 1

        [steps.make]
        cmd = "{py} make.py ${{params.n}}"
        outs = ["gen/values.py"]

        [steps.use]
        cmd = "{py} use.py"
        deps = ["gen/values.py"]
        outs = ["used.txt"]
        """
    workspace.pipeline(pipeline.format(py=sys.executable))
    workspace.ok("repro")
    first = json.loads(workspace.ok("status", "--json").stdout)
    assert "gen/values.py" in first[1]["code"]
    workspace.pipeline(pipeline.format(py=sys.executable).replace("n = 1", "n = 2"))
    workspace.ok("repro")
    assert workspace.states() == {"make": "ran", "use": "ran"}
    assert (workspace.root / "used.txt").read_text() == "2"
    # the lock records the new module's code digest: nothing is stale afterwards
    assert {s["state"] for s in json.loads(workspace.ok("status", "--json").stdout)} == {
        "up to date"
    }
