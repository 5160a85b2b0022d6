"""gitpipe on a real dask cluster: a `dask scheduler` and `dask worker` processes on
127.0.0.1, started from the command line as a user would, and stopped afterwards.

The workers run on this machine, so they share the workspace path with the test, as
docs/parallel.md requires. Each worker carries ``GITPIPE_TEST_WORKER`` in its
environment; steps echo it into their logs, which shows where a step really ran.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import Workspace, snapshot

distributed = pytest.importorskip("distributed")

pytestmark = pytest.mark.timeout(120)

DASK = Path(sys.executable).with_name("dask")


@dataclass
class Cluster:
    """A scheduler and its workers, each a process group of its own."""

    address: str = ""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: Path = Path()

    def workers(self) -> dict[str, str]:
        """Worker address -> the name it was started with."""
        with distributed.Client(self.address, timeout="10s", set_as_default=False) as client:
            info = client.scheduler_info(n_workers=-1)["workers"]
        return {address: str(worker["name"]) for address, worker in info.items()}

    def stop(self) -> None:
        for process in reversed(self.processes):  # workers first, the scheduler last
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in reversed(self.processes):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        # a nanny's worker process is in the nanny's group; make sure none is left
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)


@dataclass(frozen=True)
class WorkerSpec:
    name: str
    resources: str = ""
    wrap: tuple[str, ...] = ()  # a command that runs the worker (e.g. in its own namespace)


def start_cluster(base: Path, workers: list[WorkerSpec]) -> Cluster:
    """Start a scheduler and the workers, and wait until every worker has joined."""
    if not DASK.exists():
        pytest.skip(f"the dask command line is not installed next to {sys.executable}")
    base.mkdir(parents=True, exist_ok=True)
    scheduler_file = base / "scheduler.json"
    cluster = Cluster(logs=base)

    def spawn(name: str, args: list[str], env: dict[str, str]) -> None:
        with open(base / f"{name}.log", "wb") as log:
            cluster.processes.append(
                subprocess.Popen(
                    args,
                    cwd=base,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # pgid == pid: the whole group can be stopped
                )
            )

    env = {k: v for k, v in os.environ.items() if not k.startswith("GITPIPE_")}
    try:
        spawn(
            "scheduler",
            [
                str(DASK),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--dashboard-address",
                "127.0.0.1:0",
                "--scheduler-file",
                str(scheduler_file),
            ],
            env,
        )
        for worker in workers:
            local = base / f"scratch-{worker.name}"
            local.mkdir(exist_ok=True)
            args = [
                *worker.wrap,
                str(DASK),
                "worker",
                "--scheduler-file",
                str(scheduler_file),
                "--name",
                worker.name,
                "--host",
                "127.0.0.1",
                "--nworkers",
                "1",
                "--nthreads",
                "2",
                "--no-dashboard",
                "--local-directory",
                str(local),
            ]
            if worker.resources:
                args += ["--resources", worker.resources]
            spawn(f"worker-{worker.name}", args, {**env, "GITPIPE_TEST_WORKER": worker.name})
        deadline = time.monotonic() + 60
        while True:  # the scheduler writes the file once it listens
            with contextlib.suppress(OSError, ValueError, KeyError):
                cluster.address = json.loads(scheduler_file.read_text())["address"]
                break
            if cluster.processes[0].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the dask scheduler did not start; see {base}/scheduler.log")
            time.sleep(0.1)
        with distributed.Client(
            scheduler_file=str(scheduler_file), timeout="30s", set_as_default=False
        ) as client:
            client.wait_for_workers(len(workers), timeout=60)
    except BaseException:
        cluster.stop()
        raise
    return cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """Two workers with two threads each; only `big` has the resource `cpus=2`."""
    running = start_cluster(
        tmp_path_factory.mktemp("dask"),
        [WorkerSpec("big", resources="cpus=2"), WorkerSpec("small")],
    )
    try:
        yield running
    finally:
        running.stop()


# -- the pipeline ----------------------------------------------------------------

FANOUT = """
[pipeline]
name = "fanout"

[steps.upper]
cmd = ["echo worker=$GITPIPE_TEST_WORKER", "tr a-z A-Z < data/words.txt > upper.txt"]
deps = ["data/words.txt"]
outs = ["upper.txt"]
env = { LC_ALL = "C" }

[steps.sorted]
cmd = ["echo worker=$GITPIPE_TEST_WORKER", "sort data/words.txt > sorted.txt"]
deps = ["data/words.txt"]
outs = ["sorted.txt"]
env = { LC_ALL = "C" }

[steps.unique]
cmd = ["echo worker=$GITPIPE_TEST_WORKER", "sort -u data/words.txt | tr a-z A-Z > unique.txt"]
deps = ["data/words.txt"]
outs = ["unique.txt"]
env = { LC_ALL = "C" }

[steps.report]
cmd = [
    "echo worker=$GITPIPE_TEST_WORKER",
    "mkdir -p report",
    "cp unique.txt report/unique.txt",
    "sort upper.txt sorted.txt > report/all.txt",
    "wc -l < sorted.txt > report/count.txt",
]
deps = ["upper.txt", "sorted.txt", "unique.txt"]
outs = ["report/"]
env = { LC_ALL = "C" }
"""

OUTPUTS = ("upper.txt", "sorted.txt", "unique.txt", "report/all.txt", "report/count.txt")
WORDS = "pear\napple\nfig\napple\nbanana\n"


def fanout(workspace: Workspace, pipeline: str = FANOUT) -> Workspace:
    workspace.write("data/words.txt", WORDS)
    workspace.write(".gitignore", "upper.txt\nsorted.txt\nunique.txt\nreport/\n")
    workspace.pipeline(pipeline)
    workspace.commit("pipeline")
    return workspace


def latest_run(workspace: Workspace) -> dict[str, object]:
    db = sqlite3.connect(workspace.root / ".gitpipe" / "lineage.db")
    db.row_factory = sqlite3.Row
    with contextlib.closing(db):
        row = db.execute("SELECT * FROM runs ORDER BY started DESC, rowid DESC LIMIT 1").fetchone()
        return dict(row)


def where_steps_ran(workspace: Workspace) -> dict[str, str]:
    """Step -> the `GITPIPE_TEST_WORKER` its command saw (empty: not on a test worker)."""
    with contextlib.closing(sqlite3.connect(workspace.root / ".gitpipe" / "lineage.db")) as db:
        (run_id,) = db.execute(
            "SELECT id FROM runs ORDER BY started DESC, rowid DESC LIMIT 1"
        ).fetchone()
        rows = db.execute(
            "SELECT step, log FROM executions WHERE run_id = ? AND state = 'ran'", (run_id,)
        ).fetchall()
    where = {}
    for step, log in rows:
        lines = [line for line in Path(log).read_text().splitlines() if line.startswith("worker=")]
        assert len(lines) == 1, f"{step}: {lines}"
        where[step] = lines[0].removeprefix("worker=")
    return where


# -- tests -----------------------------------------------------------------------


def test_a_pipeline_on_the_cluster_gives_the_same_bytes_as_a_local_run(cluster, make_workspace):
    remote = fanout(make_workspace("on-dask"))
    local = fanout(make_workspace("local"))

    remote.ok("repro", "--backend", "dask", "--scheduler", cluster.address, "-j", "2")
    local.ok("repro", "-j", "2")

    assert remote.states() == dict.fromkeys(("upper", "sorted", "unique", "report"), "ran")
    for relpath in OUTPUTS:
        assert (remote.root / relpath).read_bytes() == (local.root / relpath).read_bytes()
    assert (remote.root / "report" / "count.txt").read_text().strip() == "5"
    # the same inputs give the same keys and digests, wherever the steps ran
    assert (remote.root / "gitpipe.lock").read_bytes() == (local.root / "gitpipe.lock").read_bytes()

    run = latest_run(remote)
    assert (run["backend"], run["jobs"], run["status"]) == ("dask", 2, "ok")
    assert latest_run(local)["backend"] == "threading"
    # the commands ran on the cluster's workers, not in this process
    assert set(where_steps_ran(remote).values()) <= {"big", "small"}
    assert set(where_steps_ran(local).values()) == {""}

    # nothing is stale afterwards, and a second run on the cluster runs nothing
    remote.ok("repro", "--backend", "dask", "--scheduler", cluster.address, "-j", "2")
    assert set(remote.states().values()) == {"up to date"}


@pytest.mark.parametrize("backend_from", ["option", "environment"])
def test_the_scheduler_address_can_come_from_the_environment(cluster, workspace, backend_from):
    fanout(workspace)
    env = {"GITPIPE_DASK_SCHEDULER": cluster.address}
    if backend_from == "option":
        workspace.ok("repro", "--backend", "dask", "-j", "2", env=env)
    else:
        workspace.ok("repro", "-j", "2", env={**env, "GITPIPE_BACKEND": "dask"})

    assert set(workspace.states().values()) == {"ran"}
    assert latest_run(workspace)["backend"] == "dask"
    assert set(where_steps_ran(workspace).values()) <= {"big", "small"}


def test_jobs_zero_on_dask_takes_as_many_slots_as_the_cluster_has_threads(cluster, workspace):
    fanout(workspace)
    workspace.ok("repro", "--backend", "dask", "--scheduler", cluster.address, "-j", "0")
    assert latest_run(workspace)["jobs"] == 4  # two workers with two threads each


def test_no_jobs_option_on_dask_takes_as_many_slots_as_the_cluster_has_threads(cluster, workspace):
    fanout(workspace)
    workspace.ok("repro", "--backend", "dask", "--scheduler", cluster.address)
    assert latest_run(workspace)["jobs"] == 4


def test_a_step_needing_two_cpus_runs_on_the_worker_that_has_them(cluster, workspace):
    workspace.write("data/words.txt", WORDS)
    workspace.write(".gitignore", "heavy.txt\nlight.txt\n")
    workspace.pipeline(
        """
        [steps.heavy]
        cmd = ["echo worker=$GITPIPE_TEST_WORKER", "sort -r data/words.txt > heavy.txt"]
        deps = ["data/words.txt"]
        outs = ["heavy.txt"]
        resources = { cpus = 2 }

        [steps.light]
        cmd = ["echo worker=$GITPIPE_TEST_WORKER", "cp heavy.txt light.txt"]
        deps = ["heavy.txt"]
        outs = ["light.txt"]
        """
    )
    workspace.commit("pipeline")

    workspace.ok("repro", "--backend", "dask", "--scheduler", cluster.address, "-j", "2")

    assert workspace.last_run() == [("heavy", "ran"), ("light", "ran")]
    assert (workspace.root / "heavy.txt").read_text() == "pear\nfig\nbanana\napple\napple\n"
    where = where_steps_ran(workspace)
    assert where["heavy"] == "big"  # dask placed it by the resource: only `big` has cpus=2
    assert where["light"] in {"big", "small"}


def test_an_unreachable_scheduler_is_a_one_line_error_that_changes_nothing(workspace):
    fanout(workspace)
    before = snapshot(workspace.root)
    script = Path(sys.executable).with_name("gitpipe")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "gitpipe"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITPIPE_")}

    # port 1 (tcpmux) has no listener here: the connection is refused
    result = subprocess.run(
        [*command, "repro", "--backend", "dask", "--scheduler", "tcp://127.0.0.1:1", "-j", "2"],
        cwd=workspace.root,
        env={**env, "CI": "true"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("gitpipe: cannot reach the dask scheduler at tcp://127.0.0.1:1")
    assert "Traceback" not in result.stdout + result.stderr
    # the scheduler is tried before gitpipe creates anything, its state folder included
    assert snapshot(workspace.root) == before


def test_connect_dask_checks_that_every_worker_reads_the_workspace(cluster, workspace):
    from gitpipe.run.runner import connect_dask

    fanout(workspace)
    client = connect_dask(cluster.address, workspace.root)
    try:
        assert len(client.scheduler_info()["workers"]) == 2
    finally:
        client.close()
    # the probe the workers read back is removed again
    assert list((workspace.root / ".gitpipe" / "tmp").iterdir()) == []


def hiding(folder: Path, then: str = 'exec "$@"') -> tuple[str, ...]:
    """A command prefix that runs a program (or the shell code ``then``) in a mount
    namespace of its own, where an empty tmpfs lies over ``folder``."""
    return (
        "unshare",
        "--user",
        "--map-root-user",
        "--mount",
        "sh",
        "-c",
        f'mount -t tmpfs gitpipe-test "$0" && {then}',
        str(folder),
    )


def can_hide_a_folder_from_a_process(folder: Path) -> bool:
    """Whether this machine lets an unprivileged process have a mount namespace of its own."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        hiding(folder, then='test -z "$(ls -A "$0")"'), capture_output=True, timeout=30
    )
    return probe.returncode == 0


def test_a_worker_that_cannot_see_the_workspace_is_an_error_before_anything_runs(
    make_workspace, tmp_path
):
    """A real blind worker: a `dask worker` in a mount namespace of its own, where an
    empty tmpfs lies over the workspace folder. It runs on this machine and reaches the
    scheduler over TCP like any other worker, but sees an empty folder where the
    workspace is, as a worker on another machine without the shared mount would."""
    workspace = fanout(make_workspace("hidden"))
    if not can_hide_a_folder_from_a_process(workspace.root):
        pytest.skip("unshare --user --mount is not permitted here; cannot build a blind worker")
    hide = hiding(workspace.root)
    blind_cluster = start_cluster(
        tmp_path / "cluster", [WorkerSpec("sighted"), WorkerSpec("blind", wrap=hide)]
    )
    try:
        names = blind_cluster.workers()
        (blind,) = [address for address, name in names.items() if name == "blind"]
        (sighted,) = [address for address, name in names.items() if name == "sighted"]
        before = {p: v for p, v in snapshot(workspace.root).items() if not p.startswith(".gitpipe")}

        result = workspace.gitpipe(
            "repro", "--backend", "dask", "--scheduler", blind_cluster.address, "-j", "2"
        )
    finally:
        blind_cluster.stop()

    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert message.startswith("gitpipe: dask worker(s) ")
    assert blind in message
    assert sighted not in message
    assert f"cannot see the workspace at {workspace.root}" in message
    # nothing ran: no outputs, no lock, no logs, no run in lineage
    after = {p: v for p, v in snapshot(workspace.root).items() if not p.startswith(".gitpipe")}
    assert after == before
    assert not (workspace.root / "gitpipe.lock").exists()
    assert not (workspace.root / ".gitpipe" / "logs").exists()
    assert not (workspace.root / ".gitpipe" / "lineage.db").exists()
    assert list((workspace.root / ".gitpipe" / "tmp").iterdir()) == []
