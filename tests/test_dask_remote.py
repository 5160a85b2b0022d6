"""Steps on dask workers that cannot see the workspace go through the remote store
(issue 23): a real `dask scheduler` and two `dask worker` processes, each in a mount
namespace of its own where an empty tmpfs lies over the folder that holds the
workspaces (as in tests/test_dask.py), with a folder remote and an S3 remote (moto's
server) that the workers reach as a worker on another machine would.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Workspace, cli_runner, lock_steps, make_repo, snapshot
from test_dask import (
    OUTPUTS,
    Cluster,
    WorkerSpec,
    can_hide_a_folder_from_a_process,
    fanout,
    hiding,
    start_cluster,
)

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.timeout(120)

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def hidden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder of this module's workspaces: the workers cannot see into it."""
    return tmp_path_factory.mktemp("hidden")


@pytest.fixture(scope="module")
def blind(
    tmp_path_factory: pytest.TempPathFactory, hidden: Path, s3_server: str
) -> Iterator[Cluster]:
    """Two blind workers, `one` and `two`; they get the S3 server's endpoint and test
    credentials in their environment, as a cluster's workers would get theirs."""
    if not can_hide_a_folder_from_a_process(hidden):
        pytest.fail("unshare --user --mount is not permitted here; cannot build a blind worker")
    hide = hiding(hidden)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in {**S3_ENV, "AWS_ENDPOINT_URL": s3_server}.items():
            patch.setenv(name, value)
        running = start_cluster(
            tmp_path_factory.mktemp("dask-blind"),
            [WorkerSpec("one", wrap=hide), WorkerSpec("two", wrap=hide)],
        )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def hidden_workspace(hidden: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.delenv("GITPIPE_CACHE_DIR", raising=False)
    monkeypatch.setenv("CI", "true")
    return Workspace(make_repo(hidden / uuid.uuid4().hex[:8]), cli_runner())


@pytest.fixture
def folder_remote(tmp_path: Path) -> Path:
    remote = tmp_path / "remote"
    remote.mkdir()
    return remote


def executions(workspace: Workspace) -> dict[str, dict[str, object]]:
    """Step -> its row in the latest run."""
    db = sqlite3.connect(workspace.root / ".gitpipe" / "lineage.db")
    db.row_factory = sqlite3.Row
    with contextlib.closing(db):
        (run_id,) = db.execute(
            "SELECT id FROM runs ORDER BY started DESC, rowid DESC LIMIT 1"
        ).fetchone()
        rows = db.execute("SELECT * FROM executions WHERE run_id = ?", (run_id,)).fetchall()
    return {row["step"]: dict(row) for row in rows}


def worker_of(log: object) -> str:
    (line,) = [x for x in Path(str(log)).read_text().splitlines() if x.startswith("worker=")]
    return line.removeprefix("worker=")


def gitpipe_process(workspace: Workspace, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    script = Path(sys.executable).with_name("gitpipe")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "gitpipe"]
    base = {k: v for k, v in os.environ.items() if not k.startswith("GITPIPE_")}
    return subprocess.Popen(
        [*command, *args],
        cwd=workspace.root,
        env={**base, "CI": "true", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def one_step(workspace: Workspace, name: str, cmd: str) -> None:
    """A pipeline of one step writing out.txt, committed."""
    workspace.write(".gitignore", "out.txt\n")
    workspace.pipeline(f'[steps.{name}]\ncmd = "{cmd}"\nouts = ["out.txt"]\n')
    workspace.commit("pipeline")


def repro_in_background(
    workspace: Workspace, cluster: Cluster, remote: Path
) -> subprocess.Popen[str]:
    return gitpipe_process(
        workspace,
        "repro",
        "--backend",
        "dask",
        "--scheduler",
        cluster.address,
        env={"GITPIPE_REMOTE": str(remote)},
    )


def wait_for(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            text = path.read_text().strip()
            if text:
                return text
        time.sleep(0.05)
    raise AssertionError(f"{path} was not written in {timeout} s")


# -- the same bytes, through a folder and through S3 ------------------------------------


@pytest.mark.parametrize("kind", ["folder", "s3"])
def test_blind_workers_run_a_pipeline_through_the_remote_with_the_bytes_of_a_local_run(
    blind, hidden_workspace, make_workspace, folder_remote, s3_server, kind, monkeypatch
):
    if kind == "s3":
        for name, value in {**S3_ENV, "AWS_ENDPOINT_URL": s3_server}.items():
            monkeypatch.setenv(name, value)
        bucket = f"gitpipe-{uuid.uuid4().hex[:12]}"
        urllib.request.urlopen(urllib.request.Request(f"{s3_server}/{bucket}", method="PUT"))
        url = f"s3://{bucket}/store"
    else:
        url = str(folder_remote)
    far = fanout(hidden_workspace)
    near = fanout(make_workspace("local"))
    env = {"GITPIPE_REMOTE": url}

    far.ok("repro", "--backend", "dask", "--scheduler", blind.address, "-j", "2", env=env)
    near.ok("repro", "-j", "2")

    assert far.states() == dict.fromkeys(("upper", "sorted", "unique", "report"), "ran")
    for relpath in OUTPUTS:
        assert (far.root / relpath).read_bytes() == (near.root / relpath).read_bytes()
    assert (far.root / "gitpipe.lock").read_bytes() == (near.root / "gitpipe.lock").read_bytes()
    rows = executions(far)
    for step, row in rows.items():
        # the command ran on a blind worker; lineage says which, and what moving took
        assert worker_of(row["log"]) in {"one", "two"}, step
        assert "tcp://127.0.0.1:" in str(row["worker"])
        assert isinstance(row["transfer_seconds"], float) and row["transfer_seconds"] > 0
    assert all(row["worker"] is None for row in executions(near).values())

    # nothing is stale afterwards: a second run on the cluster runs nothing
    far.ok("repro", "--backend", "dask", "--scheduler", blind.address, "-j", "2", env=env)
    assert set(far.states().values()) == {"up to date"}


# -- what a blind worker refuses ---------------------------------------------------------


@pytest.mark.parametrize(
    "cmd",
    [
        "cat data/words.txt data/secret.txt > both.txt",
        "python3 -c 'import sys; open(sys.argv[1]).read()' data/secret.txt > both.txt",
        "sh -c '. ./data/secret.txt' > both.txt",
    ],
    ids=["cat", "python", "sh"],
)
def test_a_step_reading_a_file_it_does_not_declare_fails_on_a_blind_worker_naming_it(
    blind, hidden_workspace, folder_remote, cmd
):
    workspace = hidden_workspace
    workspace.write("data/words.txt", "b\na\n")
    workspace.write("data/secret.txt", "hidden\n")
    workspace.write(".gitignore", "both.txt\n")
    workspace.pipeline(
        f"""
        [steps.both]
        cmd = "{cmd}"
        deps = ["data/words.txt"]
        outs = ["both.txt"]
        """
    )
    workspace.commit("pipeline")

    result = workspace.gitpipe(
        "repro", "--backend", "dask", "--scheduler", blind.address,
        env={"GITPIPE_REMOTE": str(folder_remote)},
    )  # fmt: skip

    assert result.exit_code == 1, result.output
    assert "reads data/secret.txt, which it does not declare" in result.output
    assert not (workspace.root / "both.txt").exists()
    assert not (workspace.root / "gitpipe.lock").exists()
    assert workspace.states() == {"both": "failed"}


def test_forcing_the_remote_transfer_without_a_remote_is_an_error_that_changes_nothing(
    blind, hidden_workspace
):
    workspace = fanout(hidden_workspace)
    before = snapshot(workspace.root)

    result = workspace.gitpipe(
        "repro", "--backend", "dask", "--scheduler", blind.address, "--transfer", "remote"
    )

    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("gitpipe: --transfer remote needs a remote store: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert snapshot(workspace.root) == before


def test_an_unknown_transfer_is_a_usage_error(hidden_workspace):
    workspace = fanout(hidden_workspace)
    before = snapshot(workspace.root)
    result = workspace.gitpipe("repro", "--backend", "dask", "--transfer", "nfs")
    assert result.exit_code == 2
    assert "unknown transfer 'nfs' (choose one of auto, shared, remote)" in result.stderr
    assert snapshot(workspace.root) == before


# -- failures: a remote gone, Ctrl-C, a worker killed ------------------------------------


def test_a_remote_gone_mid_run_ends_the_run_with_exit_5_and_records_nothing_of_the_step(
    blind, hidden_workspace, folder_remote, tmp_path
):
    workspace = hidden_workspace
    gone = tmp_path / "gone"
    one_step(workspace, "vanish", f"mv {folder_remote} {gone} && echo made > out.txt")

    result = workspace.gitpipe(
        "repro", "--backend", "dask", "--scheduler", blind.address,
        env={"GITPIPE_REMOTE": str(folder_remote)},
    )  # fmt: skip

    assert result.exit_code == 5, result.output
    *steps, message = result.stderr.strip().splitlines()
    assert any(
        "vanish: interrupted" in line and "nothing it made was published" in line for line in steps
    )
    assert message.startswith("gitpipe: cannot write objects/b3/")
    assert message.endswith(f"to the remote folder {folder_remote} (No such file or directory)")
    assert not (workspace.root / "out.txt").exists()
    assert not (workspace.root / "gitpipe.lock").exists()


def test_ctrl_c_stops_the_command_on_the_blind_worker_and_exits_130(
    blind, hidden_workspace, folder_remote, tmp_path
):
    workspace = hidden_workspace
    pid_file = tmp_path / "pid"
    one_step(workspace, "long", f"echo $$ > {pid_file}; sleep 60; echo late > out.txt")
    process = repro_in_background(workspace, blind, folder_remote)
    try:
        pid = int(wait_for(pid_file))
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == 130, err
    deadline = time.monotonic() + 10  # the worker's shell is stopped, not left to run
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists()
    assert not (workspace.root / "out.txt").exists()
    assert executions(workspace)["long"]["state"] == "interrupted"


def test_transfer_shared_keeps_a_blind_worker_an_error_even_with_a_remote(
    blind, hidden_workspace, folder_remote
):
    workspace = fanout(hidden_workspace)
    before = {p: v for p, v in snapshot(workspace.root).items() if not p.startswith(".gitpipe")}

    result = workspace.gitpipe(
        "repro", "--backend", "dask", "--scheduler", blind.address, "--transfer", "shared",
        env={"GITPIPE_REMOTE": str(folder_remote)},
    )  # fmt: skip

    assert result.exit_code == 2, result.output
    assert "cannot see the workspace at" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    after = {p: v for p, v in snapshot(workspace.root).items() if not p.startswith(".gitpipe")}
    assert after == before
    assert list(folder_remote.iterdir()) == []


def test_a_step_whose_worker_is_killed_runs_again_on_the_other_worker(
    blind, hidden_workspace, folder_remote, tmp_path
):
    """Last in this module: it kills one of the two workers."""
    workspace = hidden_workspace
    mark = tmp_path / "mark"
    one_step(
        workspace, "slow", f"echo $GITPIPE_TEST_WORKER >> {mark}; sleep 2; echo done > out.txt"
    )
    process = repro_in_background(workspace, blind, folder_remote)
    try:
        first = wait_for(mark)
        names = {name: address for address, name in blind.workers().items()}
        assert first in names
        index = ["one", "two"].index(first) + 1  # processes: the scheduler, one, two
        os.killpg(blind.processes[index].pid, signal.SIGKILL)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()

    assert process.returncode == 0, out + err
    tries = mark.read_text().split()
    assert tries[0] == first and tries[-1] != first and len(tries) == 2
    assert (workspace.root / "out.txt").read_text() == "done\n"
    row = executions(workspace)["slow"]
    assert row["state"] == "ran"
    assert str(row["worker"]).startswith(names[tries[-1]])


# -- function steps ----------------------------------------------------------------------


FIT = """\
def fit(seed):
    if seed < 0:
        raise ValueError("seed must not be negative")
    with open("out.txt", "w") as handle:
        handle.write(str(seed))
    return {"accuracy": 0.5 + seed / 100}
"""


def test_a_function_step_on_a_blind_worker_brings_back_its_return_and_its_failure(
    blind, hidden_workspace, folder_remote
):
    ws = hidden_workspace
    ws.write("models/__init__.py", "")
    ws.write("models/fit.py", FIT)
    ws.write(".gitignore", "out.txt\n")
    ws.pipeline(
        '[params]\nseed = 3\n[steps.fit]\nfn = "models.fit:fit"\nparams = ["seed"]\n'
        'outs = ["out.txt"]\n'
    )
    ws.commit("a function step")
    env = {"GITPIPE_REMOTE": str(folder_remote)}
    ws.ok("repro", "--backend", "dask", "--scheduler", blind.address, env=env)
    assert (ws.root / "out.txt").read_text() == "3"
    assert lock_steps(ws)["fit"]["metrics"]["returned"] == {"accuracy": 0.53}

    failed = ws.gitpipe(
        "repro", "-p", "seed=-1", "--backend", "dask", "--scheduler", blind.address, env=env
    )
    assert failed.exit_code == 1
    assert "ValueError: seed must not be negative" in failed.output
