"""What a gitpipe that dies leaves behind (issue 16, points 7 and 10): step names fit
on one line and in a file name."""

from __future__ import annotations

import pytest
from conftest import refused

# -- step names --------------------------------------------------------------------

LONG = "s" * 300


@pytest.mark.parametrize(
    ("key", "shown"),
    [
        (r'"two\nlines"', r"steps.two\nlines"),
        (r'"train\n"', r"steps.train\n"),  # a newline at the end once passed
        (r'"a\tb"', r"steps.a\tb"),
        (r'"bell\u0007"', r"steps.bell\x07"),
        (LONG, f"steps.{LONG}"),
    ],
    ids=["newline", "trailing-newline", "tab", "control", "300-bytes"],
)
def test_a_step_name_off_one_line_or_too_long_is_a_one_line_error(workspace, key, shown):
    workspace.pipeline(
        f"""
        [steps.{key}]
        cmd = "echo hi > out.txt"
        outs = ["out.txt"]
        """
    )
    stderr = refused(workspace, "repro", says=(f"gitpipe.toml, at {shown}:",))
    assert len(stderr.strip().splitlines()) == 1, stderr
    assert ("at most 200 bytes, not 300" in stderr) == (key == LONG)


def test_a_step_name_of_200_bytes_runs_and_names_its_log(workspace):
    name = "n" * 200
    workspace.write(".gitignore", "*.txt\n")
    workspace.pipeline(
        f"""
        [steps.{name}]
        cmd = "echo hi > out.txt"
        outs = ["out.txt"]
        """
    )
    workspace.ok("repro")
    assert [path.name for path in (workspace.root / ".gitpipe" / "logs").rglob("*.log")] == [
        f"{name}.log"
    ]


def test_a_matrix_label_that_makes_a_name_too_long_is_a_one_line_error(workspace):
    name, value = "t" * 150, "v" * 60
    workspace.pipeline(
        f"""
        [steps.{name}]
        matrix = {{ x = ["short", "{value}"] }}
        cmd = "echo ${{matrix.x}} > out-${{matrix.x}}.txt"
        outs = ["out-${{matrix.x}}.txt"]
        """
    )
    stderr = refused(
        workspace,
        "repro",
        says=(f"gitpipe.toml, at steps.{name}.matrix:", f"'{name}@{value}'", "211 bytes"),
    )
    assert len(stderr.strip().splitlines()) == 1, stderr


def test_a_key_with_a_newline_in_an_error_is_shown_on_one_line(workspace):
    workspace.pipeline(
        """
        [steps.train]
        matrix = { "lr\\nrate" = [1, 2] }
        cmd = "echo hi > out.txt"
        outs = ["out.txt"]
        """
    )
    stderr = refused(workspace, "status", says=(r"at steps.train.matrix.lr\nrate:",))
    assert len(stderr.strip().splitlines()) == 1, stderr
