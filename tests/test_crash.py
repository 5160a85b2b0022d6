"""Crash safety (issue 7): `gitpipe repro` killed with SIGKILL at each of its fault
points, or from outside during a long step, leaves the store, `gitpipe.lock` and
lineage readable and consistent, and the next `repro` finishes the work; two clones
sharing one store and running at once never corrupt it.

Every run is the installed `gitpipe` script in a process of its own; the faults are
gitpipe's own injection points (`GITPIPE_FAULT`, see `gitpipe.workspace.fault_point`),
which kill the process with a real SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from conftest import CHAIN as SHARED_CHAIN
from conftest import CHAIN_OUTPUTS, Workspace, git, make_repo

from gitpipe.core.hashing import Digest, digest_file
from gitpipe.store import lockfile
from gitpipe.store.objects import Store

GITPIPE = Path(sys.executable).parent / "gitpipe"
HEX = re.compile(r"^[0-9a-f]+$")
SUMMARY = re.compile(r"^(\d+) ran, (\d+) cached, (\d+) up to date, ", re.MULTILINE)

CHAIN = '[pipeline]\nname = "chain"\n' + SHARED_CHAIN


@pytest.fixture(autouse=True)
def _no_shared_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITPIPE_CACHE_DIR", raising=False)


# -- helpers ---------------------------------------------------------------------


def env_with(**extra: str) -> dict[str, str]:
    """The environment of a gitpipe process, as in CI."""
    return {**os.environ, "CI": "true", **extra}


def gitpipe(
    root: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(GITPIPE), *args],
        cwd=root,
        env=env or env_with(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(root: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = gitpipe(root, *args, env=env)
    assert result.returncode == 0, (args, result.stdout + result.stderr)
    return result.stdout


def counts(stdout: str) -> tuple[int, int, int]:
    """(ran, cached, up to date) from a run's closing summary."""
    match = SUMMARY.search(stdout)
    assert match, stdout
    return int(match[1]), int(match[2]), int(match[3])


def write_chain(root: Path, raw: str = "hello world\n") -> None:
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / "raw.txt").write_text(raw)
    (root / ".gitignore").write_text("\n".join(CHAIN_OUTPUTS) + "\n")
    (root / "gitpipe.toml").write_text(CHAIN)


def files(root: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    return {name: (root / name).read_bytes() for name in names}


def wait_for(condition: Callable[[], object], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def assert_consistent(root: Path, store_dir: Path, env: dict[str, str] | None = None) -> str:
    """What a crash must never break: the store, the lock and lineage.  Returns what
    `gitpipe log` printed."""
    env = env or env_with()
    # every object re-hashes to its name, and its name is a digest, not a temp file
    objects = store_dir / "objects"
    for path in objects.rglob("*") if objects.exists() else ():
        if path.is_dir():
            assert path.parent == objects or (
                path.parent.parent == objects and len(path.name) == 2 and HEX.match(path.name)
            ), f"unexpected folder {path}"
            continue
        rel = path.relative_to(objects).parts
        assert len(rel) == 3 and rel[0] == "b3", f"stray file in the store: {path}"
        assert len(rel[1]) == 2 and len(rel[2]) == 62 and HEX.match(rel[1] + rel[2]), path
        assert digest_file(path) == Digest.parse(f"b3:{rel[1]}{rel[2]}"), f"corrupt {path}"
        assert path.stat().st_mode & 0o222 == 0, f"writable object {path}"
    verify = gitpipe(root, "cache", "verify", env=env)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "corrupt" not in verify.stdout and "broken" not in verify.stdout

    # the lock is absent, or whole (it parses) and names only outputs the store holds
    lock_path = root / "gitpipe.lock"
    if lock_path.exists():
        lock = lockfile.read(lock_path)  # raises on a half-written file
        store = Store(store_dir)
        for name, entry in lock.steps.items():
            for out, digest in entry.outs.items():
                held = store.has_tree(digest) if out.endswith("/") else digest in store
                assert held, f"the lock names {out} of {name}, which the store lacks"

    # lineage opens, is intact, and `gitpipe log` reads it (a killed run is stored as
    # running, until a reader sees its process gone and marks it killed)
    db_path = root / ".gitpipe" / "lineage.db"
    if db_path.exists():
        with contextlib.closing(sqlite3.connect(db_path)) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            statuses = {status for (status,) in db.execute("SELECT status FROM runs")}
        assert statuses <= {"ok", "running", "killed", "failed", "interrupted", "error"}, statuses
        return ok(root, "log", env=env)
    return ""


def clean_run(make_workspace: Callable[[str], Workspace], raw: str) -> dict[str, bytes]:
    """The outputs of an uninterrupted run of the chain in a workspace of its own."""
    clean = make_workspace("clean")
    write_chain(clean.root, raw)
    clean.commit("pipeline")
    clean.ok("repro")
    return files(clean.root, CHAIN_OUTPUTS)


# -- fault points ------------------------------------------------------------------

#: fault point -> (ran, cached) of the next repro: the first step is killed after
#: storing its objects (it runs again: no result names them yet), after storing its
#: result (restored), or once every step is done, while the lock is being renamed
FAULTS = {
    "objects-stored": (3, 0),
    "result-stored": (2, 1),
    "rename:gitpipe.lock": (0, 3),
}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("history", ["fresh", "over-an-earlier-lock"])
@pytest.mark.parametrize("fault", FAULTS)
def test_sigkill_at_a_fault_point_leaves_everything_consistent_and_repro_finishes(
    workspace, make_workspace, fault, history
):
    root = workspace.root
    store_dir = root / ".gitpipe" / "cache"
    write_chain(root)
    workspace.commit("pipeline")
    raw = "hello world\n"
    if history == "over-an-earlier-lock":
        ok(root, "repro")
        raw = "goodbye, cruel world\n"
        (root / "data" / "raw.txt").write_text(raw)
        workspace.commit("new data")
    lock_before = (root / "gitpipe.lock").read_bytes() if history != "fresh" else None

    killed = gitpipe(root, "repro", env=env_with(GITPIPE_FAULT=fault))
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    runs = assert_consistent(root, store_dir)
    assert "killed" in runs.splitlines()[0]  # the killed run, told as killed
    if history == "fresh":
        assert not (root / "gitpipe.lock").exists()  # only a whole lock is ever in place
    else:
        assert (root / "gitpipe.lock").read_bytes() == lock_before

    assert counts(ok(root, "repro"))[:2] == FAULTS[fault]
    assert_consistent(root, store_dir)
    assert counts(ok(root, "repro")) == (0, 0, 3)  # all up to date
    assert files(root, CHAIN_OUTPUTS) == clean_run(make_workspace, raw)


@pytest.mark.timeout(120)
def test_a_kill_while_writing_the_lock_leaves_no_stray_file_in_the_repository(workspace):
    """The lock's temporary file is not left in the repository for `git add -A`."""
    root = workspace.root
    write_chain(root)
    workspace.commit("pipeline")
    killed = gitpipe(root, "repro", env=env_with(GITPIPE_FAULT="rename:gitpipe.lock"))
    assert killed.returncode == -signal.SIGKILL
    ok(root, "repro")
    assert git(root, "status", "--porcelain", "--untracked-files=all") == "?? gitpipe.lock\n"


# -- SIGKILL from outside, during a step -----------------------------------------------

LONG = """
[pipeline]
name = "long"

[steps.first]
cmd = "tr a-z A-Z < data/raw.txt > first.txt"
deps = ["data/raw.txt"]
outs = ["first.txt"]

[steps.long]
cmd = [
    "echo $$ > pid.log; echo started > marker.log; if [ -f hold.log ]; then sleep 30; fi",
    "rev < first.txt > long.txt",
]
deps = ["first.txt"]
outs = ["long.txt"]

[steps.last]
cmd = "wc -c < long.txt > last.txt"
deps = ["long.txt"]
outs = ["last.txt"]
"""
LONG_OUTPUTS = ("first.txt", "long.txt", "last.txt")


@pytest.mark.timeout(120)
def test_sigkill_during_a_long_step_leaves_everything_consistent_and_repro_finishes(
    workspace, make_workspace
):
    root = workspace.root
    store_dir = root / ".gitpipe" / "cache"
    workspace.write("data/raw.txt", "hello world\n")
    workspace.write(".gitignore", "*.log\n" + "\n".join(LONG_OUTPUTS) + "\n")
    workspace.pipeline(LONG)
    workspace.commit("pipeline")
    (root / "hold.log").write_text("")

    step_pid = None
    process = subprocess.Popen(
        [str(GITPIPE), "repro"],
        cwd=root,
        env=env_with(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: (root / "marker.log").exists(), "the long step to start")
        wait_for(lambda: (root / "pid.log").read_text().strip(), "the step's pid")
        step_pid = int((root / "pid.log").read_text())
        assert alive(step_pid)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=15) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if step_pid is not None:
            # the step ends with gitpipe (tests/test_leftovers.py); should it not, end it
            with contextlib.suppress(ProcessLookupError):
                os.killpg(step_pid, signal.SIGKILL)
    wait_for(lambda: not alive(step_pid), "the orphaned step to end", 10)

    assert not (root / "long.txt").exists()
    assert_consistent(root, store_dir)
    assert (
        not (root / "gitpipe.lock").exists()
        or "long" not in lockfile.read(root / "gitpipe.lock").steps
    )

    (root / "hold.log").unlink()
    ran, cached, _ = counts(ok(root, "repro"))
    assert ran + cached == 3
    assert_consistent(root, store_dir)
    assert counts(ok(root, "repro")) == (0, 0, 3)

    clean = make_workspace("clean")
    clean.write("data/raw.txt", "hello world\n")
    clean.write(".gitignore", "*.log\n" + "\n".join(LONG_OUTPUTS) + "\n")
    clean.pipeline(LONG)
    clean.commit("pipeline")
    clean.ok("repro")
    assert files(root, LONG_OUTPUTS) == files(clean.root, LONG_OUTPUTS)


# -- two clones, one store, at once ----------------------------------------------------


def run_span(root: Path) -> tuple[datetime, datetime]:
    """When the (only) run in a workspace started and ended."""
    with contextlib.closing(sqlite3.connect(root / ".gitpipe" / "lineage.db")) as db:
        ((started, ended),) = db.execute("SELECT started, ended FROM runs").fetchall()
    return datetime.fromisoformat(started), datetime.fromisoformat(ended)


def shared_pipeline(count: int = 5) -> str:
    """2 * count steps: `make_i` writes ~0.6 MB, `tail_i` reads it and writes bytes that
    every `tail_i` shares (one object stored by many steps at once)."""
    parts = ['[pipeline]\nname = "shared"\n']
    for i in range(count):
        parts.append(
            f"""
[steps.make_{i}]
cmd = "sleep 0.2; seq {i} 100000 > out/make_{i}.txt"
outs = ["out/make_{i}.txt"]

[steps.tail_{i}]
cmd = "sleep 0.1; tail -n 3 out/make_{i}.txt | wc -l > out/tail_{i}.txt"
deps = ["out/make_{i}.txt"]
outs = ["out/tail_{i}.txt"]
"""
        )
    return "".join(parts)


@pytest.mark.timeout(120)
def test_two_clones_sharing_one_store_run_at_once_without_corrupting_it(tmp_path):
    origin = make_repo(tmp_path / "origin")
    (origin / ".gitignore").write_text("out/\n")
    (origin / "gitpipe.toml").write_text(shared_pipeline())
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "pipeline")
    store_dir = tmp_path / "shared-store"
    env = env_with(GITPIPE_CACHE_DIR=str(store_dir))
    clones = []
    for name in ("a", "b", "c"):
        clone = tmp_path / name
        subprocess.run(["git", "clone", "-q", str(origin), str(clone)], check=True)
        (clone / "out").mkdir()
        clones.append(clone)
    a, b, c = clones

    processes = [
        subprocess.Popen(
            [str(GITPIPE), "repro", "-j", "2"],
            cwd=clone,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for clone in (a, b)
    ]
    try:
        finished = [process.communicate(timeout=90) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (stdout, stderr) in zip(processes, finished, strict=True):
        assert process.returncode == 0, stdout + stderr
        ran, cached, _ = counts(stdout)
        assert ran + cached == 10, stdout

    (a_started, a_ended), (b_started, b_ended) = (run_span(a), run_span(b))
    assert a_started < b_ended and b_started < a_ended, "the two runs did not overlap"
    assert_consistent(a, store_dir, env)
    assert_consistent(b, store_dir, env)
    names = tuple(f"out/{kind}_{i}.txt" for kind in ("make", "tail") for i in range(5))
    assert files(a, names) == files(b, names)
    assert (a / "gitpipe.lock").read_bytes() == (b / "gitpipe.lock").read_bytes()

    assert counts(ok(c, "repro", env=env)) == (0, 10, 0)  # all restored, nothing ran
    assert files(c, names) == files(a, names)
    assert (c / "gitpipe.lock").read_bytes() == (a / "gitpipe.lock").read_bytes()
    assert_consistent(c, store_dir, env)
