"""The examples leave their tracked files alone: each one, run twice from a fresh clone
of this repository, leaves `git status` clean, and its second run runs nothing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

import gitpipe
from gitpipe.store import lockfile

REPO = Path(gitpipe.__file__).resolve().parents[1]
EXAMPLES = sorted(p.parent.name for p in (REPO / "examples").glob("*/gitpipe.toml"))


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=120
    )
    assert done.returncode == 0, f"{args}:\n{done.stdout}{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (REPO / ".git").exists():
        pytest.skip("gitpipe is not running from a Git checkout")
    target = tmp_path_factory.mktemp("fresh") / "gitpipe"
    run("git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(target), cwd=REPO)
    return target


def test_every_example_is_found():
    assert {"quickstart", "benchmark-grid", "fanout", "large-outputs"} <= set(EXAMPLES)


def environment_differences(example: str) -> list[str]:
    """Where this interpreter and its packages differ from what the example's lock
    records for its Python steps (part of their keys: docs/environment.md)."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    differ = set()
    for entry in lockfile.read(REPO / "examples" / example / "gitpipe.lock").steps.values():
        recorded = entry.environment or {}
        if recorded.get("python", here) != here:
            differ.add(f"Python {recorded['python']} (here {here})")
        for name, version in recorded.get("packages", {}).items():
            try:
                installed = metadata.version(name)
            except metadata.PackageNotFoundError:
                installed = "none"
            if installed != version:
                differ.add(f"{name} {version} (here {installed})")
    return sorted(differ)


@pytest.mark.parametrize("example", EXAMPLES)
def test_an_example_run_twice_from_a_fresh_clone_leaves_git_status_clean(clone, example):
    differ = environment_differences(example)
    if differ:  # its Python steps rightly run again and rewrite the lock
        pytest.skip(
            f"examples/{example}/gitpipe.lock was made with {', '.join(differ)}: run "
            f"`gitpipe -C examples/{example} repro` here and commit its lock (CI pins these "
            "in .ci/constraints.txt)"
        )
    # the gitpipe under test, and this interpreter as the steps' `python3` (as with an
    # active venv), without a cache or remote from the developer's shell
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("GITPIPE_") and k != "GITHUB_STEP_SUMMARY"
    }
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = str(REPO)
    gitpipe_repro = (sys.executable, "-m", "gitpipe", "-C", f"examples/{example}", "repro")

    run(*gitpipe_repro, cwd=clone, env=env)
    second = run(*gitpipe_repro, cwd=clone, env=env)

    assert re.search(r"^0 ran, ", second, re.MULTILINE), second
    status = run(
        *("git", "status", "--porcelain", "--untracked-files=all", f"examples/{example}"),
        cwd=clone,
    )
    assert status == "", status
