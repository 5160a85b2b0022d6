"""Shared fixtures: real Git repositories made with the `git` CLI, and the real CLI."""

from __future__ import annotations

import fcntl
import inspect
import json
import os
import select
import socket
import sqlite3
import struct
import subprocess
import sys
import termios
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from gitpipe.cli import app
from gitpipe.core import tomlcache


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def make_repo(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    git(path, "init", "-q", "-b", "main")
    git(path, "config", "user.email", "test@gitpipe.invalid")
    git(path, "config", "user.name", "gitpipe tests")
    git(path, "config", "commit.gpgsign", "false")
    return path


def cli_runner() -> CliRunner:
    """typer's test runner with stdout and stderr apart on every click the metadata
    allows: click < 8.2 mixes them unless told not to (the lowest-versions job runs it)."""
    if "mix_stderr" in inspect.signature(CliRunner.__init__).parameters:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    return CliRunner()


@dataclass
class Outcome:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


@dataclass
class Workspace:
    """A Git repository holding a pipeline, driven through the real CLI."""

    root: Path
    runner: CliRunner

    def write(self, relpath: str, text: str) -> Path:
        path = self.root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    def pipeline(self, text: str) -> Path:
        return self.write("gitpipe.toml", text)

    def commit(self, message: str = "change") -> None:
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "--allow-empty", "-m", message)

    def gitpipe(self, *args: str, env: dict[str, str] | None = None) -> Outcome:
        cwd = Path.cwd()
        os.chdir(self.root)
        try:
            result = self.runner.invoke(app, list(args), env=env, catch_exceptions=False)
        finally:
            os.chdir(cwd)
        return Outcome(result.exit_code, result.stdout, result.stderr)

    def ok(self, *args: str, env: dict[str, str] | None = None) -> Outcome:
        result = self.gitpipe(*args, env=env)
        assert result.exit_code == 0, result.output
        return result

    def last_run(self) -> list[tuple[str, str]]:
        """(step, state) of the latest run, in the order the steps finished."""
        with closing(sqlite3.connect(self.root / ".gitpipe" / "lineage.db")) as db:
            (run_id,) = db.execute(
                "SELECT id FROM runs ORDER BY started DESC, rowid DESC LIMIT 1"
            ).fetchone()
            return db.execute(
                "SELECT step, state FROM executions WHERE run_id = ? ORDER BY id", (run_id,)
            ).fetchall()

    def states(self) -> dict[str, str]:
        return dict(self.last_run())

    def ran(self) -> list[str]:
        return [step for step, state in self.last_run() if state == "ran"]


#: A three-step chain over data/raw.txt, used by several test modules.
CHAIN = """
[steps.first]
cmd = "tr a-z A-Z < data/raw.txt > first.txt"
deps = ["data/raw.txt"]
outs = ["first.txt"]

[steps.second]
cmd = "rev < first.txt > second.txt"
deps = ["first.txt"]
outs = ["second.txt"]

[steps.third]
cmd = "wc -c < second.txt > third.txt"
deps = ["second.txt"]
outs = ["third.txt"]
"""
CHAIN_OUTPUTS = ("first.txt", "second.txt", "third.txt")

#: settings a developer's shell may hold that would change what the tests see
GITPIPE_SETTINGS = (
    "GITHUB_STEP_SUMMARY",
    "GITPIPE_FAULT",
    "GITPIPE_BACKEND",
    "GITPIPE_DEBUG",
    "GITPIPE_DASK_SCHEDULER",
    "GITPIPE_REMOTE",
)


@pytest.fixture(autouse=True)
def _no_outside_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test chooses these itself."""
    for name in GITPIPE_SETTINGS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.delenv("GITPIPE_CACHE_DIR", raising=False)
    monkeypatch.setenv("CI", "true")
    root = make_repo(tmp_path / "repo")
    return Workspace(root, cli_runner())


@pytest.fixture
def make_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Workspace]:
    monkeypatch.delenv("GITPIPE_CACHE_DIR", raising=False)

    def make(name: str) -> Workspace:
        return Workspace(make_repo(tmp_path / name), cli_runner())

    return make


def snapshot(root: Path) -> dict[str, tuple[int, bytes | None, int]]:
    """Every path under root except .git: mode, bytes (files) and mtime.  SQLite's own
    side files (-wal, -shm, -journal), which come and go as a database is read, are
    left out."""
    state = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel == ".git" or rel.startswith(".git/"):
            continue
        if rel.endswith(("-wal", "-shm", "-journal")):
            continue
        st = path.lstat()
        data = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        state[rel] = (st.st_mode, data, st.st_mtime_ns)
    return state


GITPIPE_SCRIPT = Path(sys.executable).parent / "gitpipe"


def run_in_a_terminal(
    root: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> tuple[int, str]:
    """`gitpipe ARGS` with a pseudo-terminal as stdin, stdout and stderr; its exit code
    and what it printed (with "\\r\\n" as "\\n").  Without ``env``: this process's
    environment as a terminal user has it (no CI, TERM=xterm)."""
    if env is None:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("CI", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
        }
        env.update(TERM="xterm", COLUMNS="120", LINES="40")
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        process = subprocess.Popen(
            [str(GITPIPE_SCRIPT), *args],
            cwd=root,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
        )
    finally:
        os.close(slave)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the other side of the terminal is closed
                break
            if not data:
                break
            chunks.append(data)
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")


def refused(workspace: Workspace, *args: str, says: tuple[str, ...], code: int = 2) -> str:
    """Run `gitpipe ARGS`, which must fail with ``code`` saying each of ``says`` and
    leave every file under the repository (outputs, lock, state) as it was."""
    before = snapshot(workspace.root)
    result = workspace.gitpipe(*args)
    assert result.exit_code == code, result.output
    for text in says:
        assert text in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert snapshot(workspace.root) == before
    return result.stderr


def dag(workspace: Workspace) -> dict[str, list[str]]:
    """Each step's parents, in the order `gitpipe dag --json` lists the steps."""
    steps = json.loads(workspace.ok("dag", "--json").stdout)["steps"]
    return {s["step"]: s["parents"] for s in steps}


def lock_steps(workspace: Workspace) -> dict[str, Any]:
    return tomlcache.loads((workspace.root / "gitpipe.lock").read_text())["steps"]


def good_run(workspace: Workspace) -> None:
    """A pipeline that ran once: what a refused command must leave as it was."""
    workspace.write(".gitignore", "*.txt\n")
    workspace.pipeline(
        """
        [steps.ok]
        cmd = "echo ok > ok.txt"
        outs = ["ok.txt"]
        """
    )
    workspace.ok("repro")


# -- a real S3-compatible server on loopback, for the remote tests ----------------------

#: the settings an S3 client reads from the environment: each remote test sets its own
AWS_SETTINGS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_PROFILE",
    "AWS_ALLOW_HTTP",
    "AWS_CHECKSUM_ALGORITHM",
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's standalone S3 server on 127.0.0.1 and a random port; stopped at the end."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port), "-H", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto's S3 server did not start") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
