"""Every pipeline-file error of issue 2, through the real CLI in real Git repositories.

Each error must exit 2 with one line on stderr that starts with ``gitpipe: `` and names
the file, the TOML key path and the step; it must print no traceback (unless
``--debug``) and must change nothing on disk: no ``.gitpipe/``, no ``gitpipe.lock``,
no outputs created or removed, an existing lock byte for byte the same.

Everything this file needs is defined here, so that it stands on its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import cli_runner

from gitpipe.cli import app

BOTH = pytest.mark.parametrize("command", ["repro", "status"])

# --- a real Git repository, the real CLI, and a picture of the disk -----------------


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Git repository at ``tmp_path/repo``, which is also the working directory.

    ``tmp_path`` itself is the "outside" of the repository (for symlinks and ``..``).
    """
    for name in ("GITPIPE_CACHE_DIR", "GITPIPE_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CI", "true")
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q")
    git(root, "config", "user.name", "gitpipe tests")
    git(root, "config", "user.email", "tests@gitpipe.invalid")
    git(root, "config", "commit.gpgsign", "false")
    monkeypatch.chdir(root)
    return root


def write(root: Path, relpath: str, text: str) -> Path:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def commit(root: Path, *paths: str, message: str = "change") -> None:
    git(root, "add", "--", *paths)
    git(root, "commit", "-q", "-m", message)


def pipeline(root: Path, text: str) -> None:
    """Write ``gitpipe.toml`` and commit it, as a user would."""
    write(root, "gitpipe.toml", text)
    commit(root, "gitpipe.toml", message="pipeline")


def snapshot(top: Path) -> dict[str, tuple[str, bytes | str | None, int]]:
    """Every path under ``top`` (outside ``.git/``): kind, bytes or link target, mtime.

    Folders are listed too, with their mtime, so that a file created and removed again
    (or a ``.gitpipe/`` made and left empty) shows as a change.  Symlinks are recorded,
    not followed.
    """
    state: dict[str, tuple[str, bytes | str | None, int]] = {}
    for folder, dirs, files in os.walk(top, followlinks=False):
        base = Path(folder)
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in [*dirs, *files]:
            path = base / name
            rel = path.relative_to(top).as_posix()
            st = path.lstat()
            if path.is_symlink():
                state[rel] = ("link", os.readlink(path), st.st_mtime_ns)
            elif path.is_dir():
                state[rel] = ("dir", None, st.st_mtime_ns)
            else:
                state[rel] = ("file", path.read_bytes(), st.st_mtime_ns)
    state["."] = ("dir", None, top.lstat().st_mtime_ns)
    return state


def gitpipe(*args: str) -> tuple[int, str, str]:
    """Run the CLI in-process; unexpected exceptions propagate and fail the test."""
    result = cli_runner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def refused(root: Path, *args: str, says: tuple[str, ...], names_file: bool = True) -> str:
    """Run ``gitpipe ARGS``, expect a pipeline error, and return its one-line message.

    Checks: exit 2, nothing on stdout, exactly one line on stderr starting with
    ``gitpipe: ``, no traceback, every fragment of ``says`` in the line (and the file
    name), and nothing changed anywhere under the repository's parent folder.
    """
    outside = root.parent
    fresh = not (root / ".gitpipe").exists()
    lock = root / "gitpipe.lock"
    lock_before = lock.read_bytes() if lock.exists() else None
    before = snapshot(outside)

    code, stdout, stderr = gitpipe(*args)

    assert code == 2, (code, stdout, stderr)
    assert "Traceback" not in stdout + stderr
    assert stdout == ""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    message = lines[0]
    assert message.startswith("gitpipe: "), message
    if names_file:
        assert "gitpipe.toml" in message, message
    for fragment in says:
        assert fragment in message, f"{fragment!r} not in {message!r}"

    assert snapshot(outside) == before
    if fresh:
        assert not (root / ".gitpipe").exists()
    assert (lock.read_bytes() if lock.exists() else None) == lock_before
    return message


# --- 1. TOML syntax ---------------------------------------------------------------


@BOTH
def test_a_toml_syntax_error_is_an_error_that_gives_the_line(repo, command):
    pipeline(
        repo,
        """\
        [steps.train]
        cmd = "echo hi > out.txt"
        outs = ["out.txt"
        desc = "the list above is never closed"
        """,
    )
    message = refused(repo, command, says=("invalid TOML",))
    assert "line 4" in message or "line 3" in message, message


@BOTH
def test_a_key_without_a_value_is_a_toml_error_on_its_line(repo, command):
    pipeline(
        repo,
        """\
        [steps.train]
        cmd = "echo hi > out.txt"

        outs
        """,
    )
    refused(repo, command, says=("invalid TOML", "line 4"))


# --- 2. unknown fields and tables -------------------------------------------------


@BOTH
def test_an_unknown_field_in_a_step_is_an_error_naming_the_field_and_step(repo, command):
    pipeline(
        repo,
        """\
        [steps.train]
        cmd = "echo hi > out.txt"
        outz = ["out.txt"]
        """,
    )
    refused(repo, command, says=("steps.train.outz", "'outz'", "'train'"))


@BOTH
def test_an_unknown_top_level_table_is_an_error(repo, command):
    pipeline(
        repo,
        """\
        [stages.train]
        cmd = "echo hi > out.txt"
        """,
    )
    refused(repo, command, says=("at stages", "unknown table 'stages'"))


@BOTH
def test_an_unknown_field_in_the_pipeline_table_is_an_error(repo, command):
    pipeline(
        repo,
        """\
        [pipeline]
        nmae = "churn"
        """,
    )
    refused(repo, command, says=("pipeline.nmae", "'nmae'"))


# --- 3. wrong types ---------------------------------------------------------------


@BOTH
@pytest.mark.parametrize(
    ("field", "value", "key"),
    [
        ("deps", "3", "steps.train.deps"),
        ("deps", "[1, 2]", "steps.train.deps"),
        ("outs", "{ a = 1 }", "steps.train.outs"),
        ("always", '"yes"', "steps.train.always"),
        ("cache", "1", "steps.train.cache"),
        ("timeout", "-1", "steps.train.timeout"),
        ("timeout", "0", "steps.train.timeout"),
        ("timeout", '"10"', "steps.train.timeout"),
        ("timeout", "true", "steps.train.timeout"),
        ("env", '"A=1"', "steps.train.env"),
        ("env", "{ A = [1] }", "steps.train.env.A"),
        ("desc", "3", "steps.train.desc"),
        ("params", "3", "steps.train.params"),
    ],
)
def test_a_field_of_the_wrong_type_is_an_error_naming_its_key(repo, command, field, value, key):
    pipeline(
        repo,
        f"""\
        [params]
        seed = 1

        [steps.train]
        cmd = "echo hi > out.txt"
        {"" if field == "outs" else 'outs = ["out.txt"]'}
        {field} = {value}
        """,
    )
    refused(repo, command, says=(f"at {key}",))


@BOTH
@pytest.mark.parametrize("field", ["deps", "outs", "after", "params", "code"])
def test_a_list_holding_a_non_string_names_the_item(repo, command, field):
    pipeline(repo, f'[steps.train]\ncmd = "echo hi"\n{field} = ["ok", 3]\n')
    message = refused(repo, command, says=(f"at steps.train.{field}[1]:", "integer"))
    assert "not a list" not in message


@BOTH
@pytest.mark.parametrize("cmd", ["3", "[]", '["ok", 1]', '""'])
def test_a_command_that_is_not_a_string_or_list_of_strings_is_an_error(repo, command, cmd):
    pipeline(
        repo,
        f"""\
        [steps.train]
        cmd = {cmd}
        """,
    )
    refused(repo, command, says=("steps.train.cmd",))


@BOTH
def test_a_step_without_a_command_is_an_error(repo, command):
    pipeline(
        repo,
        """\
        [steps.train]
        outs = ["out.txt"]
        """,
    )
    refused(repo, command, says=("steps.train.cmd", "'train'"))


@BOTH
def test_a_step_that_is_not_a_table_is_an_error(repo, command):
    pipeline(repo, 'steps = { train = "echo hi" }\n')
    refused(repo, command, says=("steps.train", "must be a table"))


# --- 4. ${...} references ---------------------------------------------------------


@BOTH
@pytest.mark.parametrize(
    ("where", "key"),
    [
        ('cmd = "python train.py --lr ${params.nope}"', "steps.train.cmd"),
        ('cmd = ["echo a", "echo ${params.nope}"]', "steps.train.cmd[1]"),
        ('cmd = "echo"\ndeps = ["data/${params.nope}.csv"]', "steps.train.deps[0]"),
        ('cmd = "echo"\nenv = { LR = "${params.nope}" }', "steps.train.env.LR"),
        ('cmd = "echo ${params.train.nope}"', "steps.train.cmd"),
    ],
)
def test_an_unknown_param_reference_is_an_error_naming_the_param(repo, command, where, key):
    pipeline(
        repo,
        "[params]\nseed = 1\n[params.train]\nlr = 0.1\n\n[steps.train]\n" + where + "\n",
    )
    message = refused(repo, command, says=(f"at {key}:", "unknown param"))
    assert "nope" in message


@BOTH
@pytest.mark.parametrize("ref", ["${foo}", "${env.HOME}", "${ params }", "${}"])
def test_a_reference_outside_params_is_an_error(repo, command, ref):
    pipeline(
        repo,
        f"""\
        [params]
        seed = 1

        [steps.train]
        cmd = "echo {ref} > out.txt"
        outs = ["out.txt"]
        """,
    )
    refused(repo, command, says=("at steps.train.cmd:", "unknown reference", "$${...}"))


@BOTH
def test_an_unknown_param_named_in_params_is_an_error(repo, command):
    pipeline(
        repo,
        """\
        [params]
        seed = 1

        [steps.train]
        cmd = "echo hi > out.txt"
        outs = ["out.txt"]
        params = ["train.lr"]
        """,
    )
    refused(repo, command, says=("at steps.train.params[0]:", "'train.lr'"))


def test_a_doubled_dollar_is_a_literal_reference_the_shell_expands(repo, monkeypatch, tmp_path):
    home = tmp_path / "home of the tests"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    write(repo, ".gitignore", "out.txt\n")
    commit(repo, ".gitignore")
    pipeline(
        repo,
        """\
        [steps.home]
        cmd = "echo $${HOME} > out.txt"
        outs = ["out.txt"]
        """,
    )
    code, stdout, stderr = gitpipe("repro")
    assert code == 0, stdout + stderr
    assert (repo / "out.txt").read_text() == f"{home}\n"
    # The command gitpipe resolved (and keyed) is the literal, not the expansion.
    lock = (repo / "gitpipe.lock").read_text()
    assert "echo ${HOME} > out.txt" in lock
    assert str(home) not in lock


# --- 5. cycles --------------------------------------------------------------------

CYCLE = """\
[steps.a]
cmd = "cat c.txt > a.txt"
deps = ["c.txt"]
outs = ["a.txt"]

[steps.b]
cmd = "cat a.txt > b.txt"
deps = ["a.txt"]
outs = ["b.txt"]

[steps.c]
cmd = "cat b.txt > c.txt"
deps = ["b.txt"]
outs = ["c.txt"]
"""


def printed_cycle(message: str) -> list[str]:
    """The steps of ``... cycle: x -> y -> z -> x`` as printed."""
    assert "the steps form a cycle: " in message, message
    return message.split("the steps form a cycle: ", 1)[1].split(" -> ")


def rotations(cycle: list[str]) -> list[list[str]]:
    return [[*cycle[i:], *cycle[:i], cycle[i]] for i in range(len(cycle))]


@BOTH
def test_cycle_is_an_error_that_prints_the_cycle(repo, command):
    pipeline(repo, CYCLE)
    message = refused(repo, command, says=())
    shown = printed_cycle(message)
    # In the direction data flows (a -> b -> c -> a), starting at any of its steps,
    # and the key is the table of the step it starts at.
    assert shown in rotations(["a", "b", "c"]), message
    assert f"at steps.{shown[0]}:" in message


@BOTH
def test_a_cycle_through_after_is_an_error_that_prints_the_cycle(repo, command):
    pipeline(
        repo,
        """\
        [steps.a]
        cmd = "echo a"
        after = ["b"]

        [steps.b]
        cmd = "echo b"
        after = ["a"]
        """,
    )
    message = refused(repo, command, says=())
    assert printed_cycle(message) in rotations(["a", "b"]), message


@BOTH
def test_a_cycle_among_other_steps_prints_only_the_cycle(repo, command):
    write(repo, "raw.txt", "raw\n")
    commit(repo, "raw.txt")
    pipeline(
        repo,
        "[steps.start]\ncmd = 'cat raw.txt > start.txt'\ndeps = ['raw.txt']\n"
        "outs = ['start.txt']\n\n"
        + CYCLE.replace('deps = ["c.txt"]', 'deps = ["c.txt", "start.txt"]'),
    )
    message = refused(repo, command, says=())
    assert printed_cycle(message) in rotations(["a", "b", "c"]), message


@BOTH
def test_after_naming_an_unknown_step_is_an_error(repo, command):
    pipeline(
        repo,
        """\
        [steps.a]
        cmd = "echo a"
        after = ["b", "nope"]

        [steps.b]
        cmd = "echo b"
        """,
    )
    refused(repo, command, says=("at steps.a.after[1]:", "'nope'", "'a'"))


# --- 6. a path both dep and out of one step ----------------------------------------


@BOTH
@pytest.mark.parametrize(
    ("deps", "outs", "shown"),
    [
        ('["x"]', '["x"]', "'x'"),
        ('["./x"]', '["x"]', "'x'"),
        ('["x"]', '["./x"]', "'x'"),
        ('["sub/../x"]', '["x"]', "'x'"),
        ('["data/x.csv"]', '["data/"]', "'data/x.csv'"),
        ('["data/"]', '["data/x.csv"]', "'data/'"),
    ],
)
def test_a_path_both_dep_and_out_of_one_step_is_an_error(repo, command, deps, outs, shown):
    pipeline(
        repo,
        f"""\
        [steps.train]
        cmd = "echo hi"
        deps = {deps}
        outs = {outs}
        """,
    )
    refused(
        repo,
        command,
        says=("at steps.train.deps", shown, "both a dependency and an output", "'train'"),
    )


@BOTH
def test_a_path_both_dep_and_metrics_file_of_one_step_is_an_error(repo, command):
    pipeline(
        repo,
        """\
        [steps.train]
        cmd = "echo hi"
        deps = ["metrics.json"]
        metrics = ["./metrics.json"]
        """,
    )
    refused(repo, command, says=("steps.train", "'metrics.json'", "both a dependency"))


# --- 7. the same out twice in one step ---------------------------------------------


@BOTH
@pytest.mark.parametrize(
    ("fields", "key"),
    [
        ('outs = ["x", "x"]', "outs[1]"),
        ('outs = ["x", "./x"]', "outs[1]"),
        ('outs = ["data/", "data"]', "outs[1]"),
        ('outs = ["m.json"]\nmetrics = ["m.json"]', "metrics[0]"),
    ],
)
def test_the_same_out_twice_in_one_step_is_an_error(repo, command, fields, key):
    pipeline(repo, f'[steps.train]\ncmd = "echo hi"\n{fields}\n')
    refused(repo, command, says=(f"at steps.train.{key}:", "declared twice"))


# --- 8. outputs owned by two steps ------------------------------------------------


@BOTH
@pytest.mark.parametrize(("first", "second"), [("x.csv", "x.csv"), ("x.csv", "./x.csv")])
def test_two_steps_owning_the_same_output_is_an_error_naming_both(repo, command, first, second):
    pipeline(
        repo,
        f"""\
        [steps.one]
        cmd = "echo 1 > x.csv"
        outs = ["{first}"]

        [steps.two]
        cmd = "echo 2 > x.csv"
        outs = ["{second}"]
        """,
    )
    refused(repo, command, says=("at steps.two.outs", "'one'", "'two'", "'x.csv'"))


@BOTH
@pytest.mark.parametrize(
    ("one", "two"),
    [
        ("data/", "data/x.csv"),
        ("data/x.csv", "data/"),
        ("data/", "data/deep/er/x.csv"),
    ],
)
def test_overlapping_outputs_of_two_steps_are_an_error_naming_both(repo, command, one, two):
    pipeline(
        repo,
        f"""\
        [steps.one]
        cmd = "echo 1"
        outs = ["{one}"]

        [steps.two]
        cmd = "echo 2"
        outs = ["{two}"]
        """,
    )
    message = refused(repo, command, says=("'one'", "'two'", "overlapping", "'data/'"))
    assert "at steps.one.outs" in message or "at steps.two.outs" in message


@BOTH
def test_an_output_inside_another_output_of_the_same_step_is_an_error(repo, command):
    pipeline(
        repo,
        """\
        [steps.one]
        cmd = "echo 1"
        outs = ["data/", "data/x.csv"]
        """,
    )
    refused(repo, command, says=("at steps.one.outs", "'one'", "overlapping"))


@BOTH
def test_a_metrics_file_inside_another_steps_output_folder_is_an_error(repo, command):
    pipeline(
        repo,
        """\
        [steps.one]
        cmd = "echo 1"
        outs = ["reports/"]

        [steps.two]
        cmd = "echo 2"
        metrics = ["reports/metrics.json"]
        """,
    )
    refused(repo, command, says=("'one'", "'two'", "overlapping"))


@BOTH
@pytest.mark.parametrize(
    "second",
    ['metrics = ["reports/metrics.json"]', 'metrics = ["m.json"]'],
    ids=["overlapping", "same"],
)
def test_a_clash_on_a_metrics_file_names_the_metrics_key(repo, command, second):
    pipeline(
        repo,
        f"""\
        [steps.one]
        cmd = "echo 1"
        outs = ["reports/", "m.json"]

        [steps.two]
        cmd = "echo 2"
        {second}
        """,
    )
    refused(repo, command, says=("at steps.two.metrics", "'one'", "'two'"))


@BOTH
def test_the_same_metrics_file_twice_names_the_metrics_key(repo, command):
    pipeline(repo, '[steps.train]\ncmd = "echo hi"\nmetrics = ["m.json", "./m.json"]\n')
    refused(repo, command, says=("at steps.train.metrics", "declared twice"))


# --- 9. outputs outside the repository --------------------------------------------


@BOTH
@pytest.mark.parametrize("field", ["outs", "metrics"])
def test_an_absolute_output_path_is_an_error(repo, command, tmp_path, field):
    target = tmp_path / "elsewhere.json"
    pipeline(
        repo,
        f"""\
        [steps.train]
        cmd = "echo hi"
        {field} = ["{target}"]
        """,
    )
    refused(repo, command, says=(f"at steps.train.{field}[0]:", "absolute path"))
    assert not target.exists()


@BOTH
@pytest.mark.parametrize(
    ("out", "says"),
    [
        ("../x.txt", "outside"),
        ("..", "outside"),
        ("sub/../../x.txt", "outside"),
        (".", "folder itself"),
        ("./", "folder itself"),
    ],
)
def test_an_output_above_the_pipeline_folder_is_an_error(repo, command, out, says):
    pipeline(
        repo,
        f"""\
        [steps.train]
        cmd = "echo hi > ../x.txt"
        outs = ["{out}"]
        """,
    )
    refused(repo, command, says=("at steps.train.outs[0]:", says))


def symlinked_out(repo: Path, tmp_path: Path) -> Path:
    """A folder ``link`` in the repository that points outside it, and a step writing
    ``link/out.txt``; returns the outside folder."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / "link").symlink_to(outside, target_is_directory=True)
    commit(repo, "link")
    pipeline(
        repo,
        """\
        [steps.first]
        cmd = "echo first > first.txt"
        outs = ["first.txt"]

        [steps.train]
        cmd = "echo hi > link/out.txt"
        outs = ["link/out.txt"]
        """,
    )
    return outside


def test_an_output_through_a_symlink_out_of_the_repository_is_an_error(repo, tmp_path):
    outside = symlinked_out(repo, tmp_path)
    refused(
        repo,
        "repro",
        says=("at steps.train.outs[0]:", "'link/out.txt'", "'train'", "outside the repository"),
    )
    assert list(outside.iterdir()) == []
    assert not (repo / "first.txt").exists()


def test_status_refuses_an_output_through_a_symlink_out_of_the_repository(repo, tmp_path):
    symlinked_out(repo, tmp_path)
    refused(repo, "status", says=("at steps.train.outs[0]:", "'link/out.txt'", "outside"))


def test_an_output_that_is_itself_a_symlink_out_of_the_repository_is_an_error(repo, tmp_path):
    (repo / "sub").mkdir()
    (repo / "sub" / "out.txt").symlink_to(tmp_path / "elsewhere.txt")
    pipeline(
        repo,
        """\
        [steps.inside]
        cmd = "echo hi > sub/kept.txt"
        outs = ["sub/kept.txt"]

        [steps.train]
        cmd = "echo hi > sub/out.txt"
        outs = ["sub/out.txt"]
        """,
    )
    refused(repo, "status", says=("at steps.train.outs[0]:", "'sub/out.txt'", "outside"))


def test_an_output_through_a_relative_symlink_to_a_parent_folder_is_an_error(repo, tmp_path):
    (repo / "up").symlink_to("..", target_is_directory=True)
    pipeline(
        repo,
        """\
        [steps.train]
        cmd = "echo hi > up/escaped.txt"
        outs = ["up/escaped.txt"]
        """,
    )
    refused(repo, "repro", says=("at steps.train.outs[0]:", "outside the repository"))
    assert not (tmp_path / "escaped.txt").exists()


def test_an_output_through_a_symlink_inside_the_repository_is_allowed(repo):
    (repo / "real").mkdir()
    (repo / "link").symlink_to("real", target_is_directory=True)
    write(repo, ".gitignore", "real/\n")
    commit(repo, "link", ".gitignore")
    pipeline(
        repo,
        """\
        [steps.train]
        cmd = "echo hi > link/out.txt"
        outs = ["link/out.txt"]
        """,
    )
    code, stdout, stderr = gitpipe("repro")
    assert code == 0, stdout + stderr
    assert (repo / "real" / "out.txt").read_text() == "hi\n"


# --- 10. outputs tracked by Git ---------------------------------------------------


@pytest.mark.parametrize(
    ("tracked", "out", "untrack"),
    [
        ("model.pkl", "model.pkl", "model.pkl"),
        ("data/prepared/part-0.csv", "data/prepared/", "data/prepared"),
    ],
)
def test_an_output_tracked_by_git_is_an_error_that_says_how_to_untrack_it(
    repo, tracked, out, untrack
):
    write(repo, tracked, "committed bytes\n")
    commit(repo, tracked)
    pipeline(
        repo,
        f"""\
        [steps.first]
        cmd = "echo first > first.txt"
        outs = ["first.txt"]

        [steps.train]
        cmd = "echo made > {tracked}"
        outs = ["{out}"]
        """,
    )
    refused(
        repo,
        "repro",
        says=("at steps.train.outs", "'train'", "tracked by Git", f"git rm -r --cached {untrack}"),
    )
    assert (repo / tracked).read_text() == "committed bytes\n"
    assert not (repo / "first.txt").exists()


def test_status_refuses_an_output_tracked_by_git(repo):
    write(repo, "model.pkl", "committed bytes\n")
    commit(repo, "model.pkl")
    pipeline(
        repo,
        """\
        [steps.train]
        cmd = "echo made > model.pkl"
        outs = ["model.pkl"]
        """,
    )
    refused(repo, "status", says=("steps.train.outs", "git rm -r --cached model.pkl"))


@BOTH
def test_an_output_tracked_after_a_check_passed_is_refused_the_next_time(repo, command):
    pipeline(
        repo,
        """\
        [steps.train]
        cmd = "echo made > model.pkl"
        outs = ["model.pkl"]
        """,
    )
    index = repo / ".git" / "index"
    old = 1_600_000_000 * 10**9  # outside the racy window: a passed check is remembered
    os.utime(index, ns=(old, old))
    assert gitpipe(command)[0] in (0, 3)
    assert gitpipe(command)[0] in (0, 3)  # from the remembered check

    write(repo, "model.pkl", "committed bytes\n")
    git(repo, "add", "-f", "model.pkl")
    os.utime(index, ns=(old + 10**9, old + 10**9))
    refused(repo, command, says=("steps.train.outs", "git rm -r --cached model.pkl"))


def test_an_output_tracked_by_git_in_a_pipeline_in_a_subfolder_names_the_top_path(repo):
    write(repo, "project/model.pkl", "committed bytes\n")
    commit(repo, "project/model.pkl")
    write(
        repo,
        "project/gitpipe.toml",
        """\
        [steps.train]
        cmd = "echo made > model.pkl"
        outs = ["model.pkl"]
        """,
    )
    commit(repo, "project/gitpipe.toml")
    refused(
        repo,
        "repro",
        "-f",
        "project/gitpipe.toml",
        says=("steps.train.outs", "git rm -r --cached project/model.pkl"),
    )


# --- 11. unknown target steps -----------------------------------------------------

TWO_STEPS = """\
[steps.first]
cmd = "echo first > first.txt"
outs = ["first.txt"]

[steps.second]
cmd = "cat first.txt > second.txt"
deps = ["first.txt"]
outs = ["second.txt"]
"""


@BOTH
@pytest.mark.parametrize("targets", [["nope"], ["first", "nope"]])
def test_an_unknown_target_step_is_an_error_listing_the_steps(repo, command, targets):
    pipeline(repo, TWO_STEPS)
    refused(
        repo,
        command,
        *targets,
        says=("no step named 'nope'", "first, second"),
    )
    assert not (repo / "first.txt").exists()


@pytest.mark.parametrize("flag", ["--single", "--downstream", "--force", "--dry-run"])
def test_an_unknown_target_step_is_an_error_with_any_flag(repo, flag):
    pipeline(repo, TWO_STEPS)
    refused(repo, "repro", flag, "nope", says=("no step named 'nope'",))


# --- 12. a missing dependency at run time -----------------------------------------


def test_a_missing_dependency_is_an_error_before_any_step_runs(repo):
    pipeline(
        repo,
        """\
        [steps.first]
        cmd = "echo first > first.txt"
        outs = ["first.txt"]

        [steps.train]
        cmd = "cat data/raw.csv > model.txt"
        deps = ["data/raw.csv"]
        outs = ["model.txt"]
        """,
    )
    refused(
        repo,
        "repro",
        says=("at steps.train.deps[0]:", "'data/raw.csv'", "'train'", "does not exist"),
    )
    assert not (repo / "first.txt").exists()
    assert not (repo / "model.txt").exists()


def test_a_missing_dependency_names_its_own_index(repo):
    write(repo, "code.py", "print('hi')\n")
    commit(repo, "code.py")
    pipeline(
        repo,
        """\
        [steps.train]
        cmd = "python code.py > model.txt"
        deps = ["code.py", "data/"]
        outs = ["model.txt"]
        """,
    )
    refused(repo, "repro", says=("at steps.train.deps[1]:", "'data/'", "'train'"))


@pytest.mark.parametrize("args", [["train"], ["--single", "train"], ["--dry-run"]])
def test_a_missing_dependency_is_an_error_however_the_step_is_selected(repo, args):
    pipeline(
        repo,
        """\
        [steps.first]
        cmd = "echo first > first.txt"
        outs = ["first.txt"]

        [steps.train]
        cmd = "cat first.txt raw.csv > model.txt"
        deps = ["first.txt", "raw.csv"]
        outs = ["model.txt"]
        """,
    )
    refused(repo, "repro", *args, says=("at steps.train.deps[1]:", "'raw.csv'"))
    assert not (repo / "first.txt").exists()


def test_a_dependency_that_another_step_produces_need_not_exist_yet(repo):
    pipeline(repo, TWO_STEPS)
    code, stdout, stderr = gitpipe("repro")
    assert code == 0, stdout + stderr
    assert (repo / "second.txt").read_text() == "first\n"


# --- 13. usage errors -------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--single", "--downstream", "-s"])
def test_single_or_downstream_without_step_names_is_a_usage_error(repo, flag):
    pipeline(repo, TWO_STEPS)
    refused(repo, "repro", flag, says=("need the names of steps",), names_file=False)
    assert not (repo / "first.txt").exists()


def test_single_and_downstream_together_is_a_usage_error(repo):
    pipeline(repo, TWO_STEPS)
    refused(
        repo,
        "repro",
        "--single",
        "--downstream",
        "first",
        says=("cannot be used together",),
        names_file=False,
    )


@BOTH
def test_a_missing_pipeline_file_is_an_error_that_says_what_to_do(repo, command):
    refused(repo, command, says=("gitpipe init", "-f FILE"))


# --- an existing lock and state stay as they were ---------------------------------

GOOD = """\
[steps.make]
cmd = "echo made > made.txt"
outs = ["made.txt"]
"""

BROKEN = {
    "syntax": GOOD + "[steps.broken\n",
    "unknown field": GOOD + '[steps.other]\ncmd = "echo"\noutz = ["x"]\n',
    "wrong type": GOOD + '[steps.other]\ncmd = "echo"\nalways = "yes"\n',
    "unknown reference": GOOD + '[steps.other]\ncmd = "echo ${params.nope}"\n',
    "cycle": GOOD + CYCLE,
    "dep and out": GOOD + '[steps.other]\ncmd = "echo"\ndeps = ["./o"]\nouts = ["o"]\n',
    "same output": GOOD + '[steps.other]\ncmd = "echo"\nouts = ["made.txt"]\n',
    "overlapping": GOOD
    + '[steps.other]\ncmd = "echo"\nouts = ["d/"]\n[steps.third]\ncmd = "echo"\nouts = ["d/x"]\n',
    "outside": GOOD + '[steps.other]\ncmd = "echo"\nouts = ["../x"]\n',
}

RUN_TIME = {
    "missing dep": GOOD + '[steps.other]\ncmd = "echo"\ndeps = ["raw.csv"]\nouts = ["o"]\n',
    "tracked": GOOD + '[steps.other]\ncmd = "echo"\nouts = ["tracked.txt"]\n',
    "symlink": GOOD + '[steps.other]\ncmd = "echo"\nouts = ["link/o"]\n',
    "unknown target": GOOD,
}


def after_a_good_run(repo: Path, tmp_path: Path) -> None:
    """A committed pipeline and lock, a filled .gitpipe/, then the output deleted so that
    a run that restored or ran anything would show."""
    write(repo, ".gitignore", "made.txt\n")
    write(repo, "tracked.txt", "tracked\n")
    (tmp_path / "outside").mkdir()
    (repo / "link").symlink_to(tmp_path / "outside", target_is_directory=True)
    commit(repo, ".gitignore", "tracked.txt", "link")
    pipeline(repo, GOOD)
    code, stdout, stderr = gitpipe("repro")
    assert code == 0, stdout + stderr
    assert (repo / "gitpipe.lock").exists()
    assert (repo / ".gitpipe" / "lineage.db").exists()
    commit(repo, "gitpipe.lock", message="lock")
    (repo / "made.txt").unlink()


@BOTH
@pytest.mark.parametrize("case", sorted(BROKEN))
def test_an_invalid_pipeline_leaves_the_lock_state_and_outputs_untouched(
    repo, tmp_path, command, case
):
    after_a_good_run(repo, tmp_path)
    write(repo, "gitpipe.toml", BROKEN[case])
    refused(repo, command, says=())
    assert not (repo / "made.txt").exists()


@pytest.mark.parametrize(
    ("case", "args"),
    [
        ("missing dep", ["repro"]),
        ("tracked", ["repro"]),
        ("tracked", ["status"]),
        ("symlink", ["repro"]),
        ("symlink", ["status"]),
        ("unknown target", ["repro", "nope"]),
        ("unknown target", ["status", "nope"]),
    ],
)
def test_a_run_time_pipeline_error_leaves_the_lock_state_and_outputs_untouched(
    repo, tmp_path, case, args
):
    after_a_good_run(repo, tmp_path)
    write(repo, "gitpipe.toml", RUN_TIME[case])
    refused(repo, *args, says=())
    assert not (repo / "made.txt").exists()


def test_status_reports_a_missing_dependency_as_a_reason_and_changes_nothing(repo):
    pipeline(
        repo,
        """\
        [steps.train]
        cmd = "cat raw.csv > model.txt"
        deps = ["raw.csv"]
        outs = ["model.txt"]
        """,
    )
    before = snapshot(repo.parent)
    code, stdout, stderr = gitpipe("status")
    assert (code, stderr) == (0, "")
    assert stdout.split() == ["train", "stale", "dep", "missing:", "raw.csv"]
    assert snapshot(repo.parent) == before


# --- --debug ----------------------------------------------------------------------


def console(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The installed console script, as a user runs it."""
    script = Path(sys.executable).with_name("gitpipe")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "gitpipe"]
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_debug_shows_a_traceback_and_the_default_does_not(repo):
    pipeline(repo, CYCLE)
    before = snapshot(repo.parent)

    plain = console("repro")
    assert plain.returncode == 2
    assert "Traceback" not in plain.stdout + plain.stderr
    assert plain.stderr.startswith("gitpipe: gitpipe.toml, at steps.")
    assert len(plain.stderr.splitlines()) == 1

    for debug in (console("--debug", "repro"), console("repro", env={"GITPIPE_DEBUG": "1"})):
        assert debug.returncode == 2
        assert "Traceback (most recent call last)" in debug.stderr
        assert "PipelineError" in debug.stderr
        # the one-line message still comes last
        assert debug.stderr.splitlines()[-1] == plain.stderr.splitlines()[0]

    assert snapshot(repo.parent) == before
