"""One error boundary: whatever the system refuses (no space, a read-only store, a
FIFO, a device, a link loop, a file truncated while it is read), gitpipe says so in
one line with the path and the cause, exits with its code, never hangs, never dies
of a signal, and loses nothing: the lock, the outputs and lineage stay as they were
or record what happened.

The disk-full and read-only cases need file systems of their own: each runs the real
`gitpipe` in a mount namespace of its own (`unshare --mount`, as root), with a small
tmpfs or a read-only bind mount over the store, which vanish with the namespace."""

from __future__ import annotations

import functools
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import blake3
import pytest
from conftest import make_repo

import gitpipe
from gitpipe.core.hashing import Digest, digest_file
from gitpipe.store.objects import Store
from tests.conftest import Workspace, lock_steps, snapshot

SOURCE = Path(gitpipe.__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(180)


def gitpipe_process(
    root: Path, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """The real `gitpipe ARGS` in its own process: a hang fails the test after
    ``timeout`` seconds instead of hanging it."""
    return subprocess.run(
        [sys.executable, "-m", "gitpipe", *args],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(SOURCE), "CI": "true"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@functools.cache
def _why_no_namespace() -> str:
    """Why mount namespaces cannot be used here ("" when they can)."""
    if shutil.which("unshare") is None:
        return "`unshare` (util-linux) is not installed"
    if os.geteuid() != 0:
        return "mounting a tmpfs in a mount namespace needs root here"
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         "mount -t tmpfs -o size=64k tmpfs /mnt && mount -o remount,ro /mnt"],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    if done.returncode != 0:
        return f"this machine refuses a tmpfs in a mount namespace: {done.stderr.strip()}"
    return ""


def in_namespace(root: Path, script: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run a shell script in ``root`` in a mount namespace of its own, where
    `gitpipe` is this checkout's; the mounts it makes vanish with it."""
    reason = _why_no_namespace()
    if reason:
        pytest.skip(reason)
    prelude = f'set -u\ngitpipe() {{ "{sys.executable}" -m gitpipe "$@"; }}\n'
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", prelude + script],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(SOURCE), "CI": "true"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def said_once(stderr: str, *texts: str) -> str:
    """The one `gitpipe:` error line of a failed command, holding each of ``texts``;
    no traceback anywhere."""
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("gitpipe: ")]
    assert len(errors) == 1, stderr
    for text in texts:
        assert text in errors[0], stderr
    return errors[0]


def runs(root: Path) -> list[tuple[str, str]]:
    """(run id, status) of every run in lineage, oldest first."""
    with closing(sqlite3.connect(root / ".gitpipe" / "lineage.db")) as db:
        return db.execute("SELECT id, status FROM runs ORDER BY started, rowid").fetchall()


TWO_STEPS = """
[steps.copy]
cmd = "cp data/raw.bin copy.bin"
deps = ["data/raw.bin"]
outs = ["copy.bin"]

[steps.small]
cmd = "echo small > small.txt"
outs = ["small.txt"]
"""

SMALL = """
[steps.small]
cmd = "echo small > small.txt"
outs = ["small.txt"]
"""


# -- the store cannot be written -------------------------------------------------


def test_a_read_only_store_fails_the_steps_in_one_line_with_exit_5_and_loses_nothing(
    workspace: Workspace,
) -> None:
    workspace.write("data/raw.bin", "one\n")
    workspace.pipeline(TWO_STEPS)
    workspace.commit()
    workspace.ok("repro")
    workspace.write("data/raw.bin", "two\n")
    workspace.write("copy.bin", "edited by hand\n")  # bytes the store does not hold
    workspace.write(
        "gitpipe.toml",
        TWO_STEPS + '\n[steps.fresh]\ncmd = "echo new > fresh.txt"\nouts = ["fresh.txt"]\n',
    )
    store = workspace.root / ".gitpipe" / "cache"
    before_store = snapshot(store)
    before_lock = lock_steps(workspace)

    done = in_namespace(
        workspace.root,
        "mount --bind .gitpipe/cache .gitpipe/cache\n"
        "mount -o remount,bind,ro .gitpipe/cache\n"
        "gitpipe repro --keep-going",
    )

    assert done.returncode == 5, done.stderr
    line = said_once(done.stderr, str(store), "Read-only file system")
    assert "failed" in line
    # bytes made by hand that could not be kept in the store are not replaced; the
    # new step ran, and its outputs could not be stored
    assert (workspace.root / "copy.bin").read_text() == "edited by hand\n"
    assert "copy: failed: its old output copy.bin could not be put aside" in done.stderr
    assert "fresh: failed: its output fresh.txt could not be stored" in done.stderr
    assert snapshot(store) == before_store
    assert lock_steps(workspace) == before_lock  # what it names is still in the store
    assert runs(workspace.root)[-1][1] == "failed"
    assert workspace.states() == {"copy": "failed", "small": "up to date", "fresh": "failed"}


def test_a_full_store_fails_that_step_only_and_its_siblings_go_on_with_keep_going(
    workspace: Workspace,
) -> None:
    (workspace.root / "data").mkdir()
    (workspace.root / "data" / "raw.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    workspace.pipeline(TWO_STEPS)
    workspace.commit()
    store = workspace.root / ".gitpipe" / "cache"

    done = in_namespace(
        workspace.root,
        "mkdir -p .gitpipe/cache\n"
        "mount -t tmpfs -o size=1m tmpfs .gitpipe/cache\n"
        "gitpipe repro --keep-going; echo rc=$?\n"
        # nothing half-written is left in the store: no temporary file, and every
        # object hashes to its name
        "echo tmp=$(ls -A .gitpipe/cache/tmp | wc -l)\n"
        "gitpipe cache verify >/dev/null; echo verify=$?\n",
    )

    assert "rc=5" in done.stdout, done.stderr
    said_once(done.stderr, "copy", str(store), "No space left on device")
    assert "tmp=0" in done.stdout and "verify=0" in done.stdout, done.stdout + done.stderr
    assert workspace.states() == {"copy": "failed", "small": "ran"}
    assert "copy" not in lock_steps(workspace)
    assert "small" in lock_steps(workspace)
    assert runs(workspace.root)[-1][1] == "failed"


def test_a_full_store_stops_new_steps_without_keep_going_as_any_failure_does(
    workspace: Workspace,
) -> None:
    (workspace.root / "data").mkdir()
    (workspace.root / "data" / "raw.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    workspace.pipeline(TWO_STEPS)
    workspace.commit()

    done = in_namespace(
        workspace.root,
        "mkdir -p .gitpipe/cache\n"
        "mount -t tmpfs -o size=1m tmpfs .gitpipe/cache\n"
        "gitpipe repro -j 1",
    )

    assert done.returncode == 5, done.stderr
    said_once(done.stderr, "No space left on device")
    assert workspace.states() == {"copy": "failed", "small": "skipped"}
    assert not (workspace.root / "small.txt").exists()


def test_an_output_folder_that_cannot_be_removed_fails_its_step_and_its_bytes_stay_stored(
    workspace: Workspace,
) -> None:
    workspace.write("data/raw.bin", "one\n")
    workspace.pipeline(
        """
        [steps.tree]
        cmd = "mkdir -p out/busy && cp data/raw.bin out/copy.bin"
        deps = ["data/raw.bin"]
        outs = ["out/"]
        """
        + SMALL
    )
    workspace.commit()
    workspace.ok("repro")
    workspace.write("data/raw.bin", "two\n")

    # a file system mounted inside the output: removing the folder fails half-way, as
    # it does when a process still writes into it (ENOTEMPTY)
    done = in_namespace(
        workspace.root,
        "mount -t tmpfs -o size=64k tmpfs out/busy\ngitpipe repro --keep-going; echo rc=$?\n",
    )

    assert "rc=5" in done.stdout, done.stderr
    said_once(done.stderr, "its old output out/ could not be put aside", "Device or resource busy")
    assert workspace.states() == {"tree": "failed", "small": "up to date"}
    named = Digest.parse(lock_steps(workspace)["tree"]["outs"]["out/"])
    assert Store(workspace.root / ".gitpipe" / "cache").has_tree(named)  # nothing lost
    assert runs(workspace.root)[-1][1] == "failed"


def test_a_full_disk_is_not_called_a_damaged_lineage_database(workspace: Workspace) -> None:
    workspace.write("data/raw.bin", "one\n")
    workspace.pipeline(TWO_STEPS)
    workspace.commit()
    workspace.ok("repro")
    workspace.write("data/raw.bin", "two\n")

    done = in_namespace(
        workspace.root,
        # .gitpipe as it is, on a tmpfs of its own that is then filled to the brim
        "cp -a .gitpipe ../saved && mount -t tmpfs -o size=2m tmpfs .gitpipe\n"
        "cp -a ../saved/. .gitpipe/ && rm -rf ../saved\n"
        "dd if=/dev/zero of=.gitpipe/filler bs=4k 2>/dev/null\n"
        "gitpipe repro; echo rc=$?\n"
        "rm .gitpipe/filler\n"
        "gitpipe log --json >/dev/null; echo log=$?\n",
    )

    assert "rc=5" in done.stdout, done.stderr
    assert "damaged" not in done.stderr and "move it away" not in done.stderr, done.stderr
    assert "No space left on device" in done.stderr
    assert "Traceback" not in done.stderr
    assert "log=0" in done.stdout, done.stderr  # the history is still there


def test_a_read_only_lineage_database_is_left_alone_not_called_damaged(
    workspace: Workspace,
) -> None:
    workspace.write("data/raw.bin", "one\n")
    workspace.pipeline(TWO_STEPS)
    workspace.commit()
    workspace.ok("repro")

    done = in_namespace(
        workspace.root,
        "mount --bind .gitpipe .gitpipe && mount -o remount,bind,ro .gitpipe\n"
        "gitpipe log; echo rc=$?\n",
    )

    assert "rc=5" in done.stdout, done.stderr
    line = said_once(done.stderr, "lineage.db", "left as it is")
    assert "damaged" not in line and "move it away" not in line
    assert len(runs(workspace.root)) == 1


def test_a_damaged_lineage_database_is_called_so_and_the_run_goes_on(
    workspace: Workspace,
) -> None:
    workspace.pipeline(SMALL)
    workspace.commit()
    (workspace.root / ".gitpipe").mkdir()
    (workspace.root / ".gitpipe" / "lineage.db").write_bytes(b"not sqlite at all\n" * 100)

    ran = workspace.ok("repro")
    assert "is damaged (file is not a database); move it away" in ran.stderr
    assert (workspace.root / "small.txt").exists()
    result = workspace.gitpipe("log")
    assert result.exit_code == 5
    said_once(result.stderr, "lineage.db is damaged", "move it away")


def test_a_read_only_state_folder_refuses_repro_in_one_line(workspace: Workspace) -> None:
    workspace.pipeline(SMALL)
    workspace.commit()
    workspace.ok("repro")

    done = in_namespace(
        workspace.root,
        "mount --bind .gitpipe .gitpipe && mount -o remount,bind,ro .gitpipe\n"
        "gitpipe repro --force",
    )

    assert done.returncode == 5, done.stderr
    said_once(done.stderr, "workspace lock", "repro.lock", "Read-only file system")


# -- what is not a file or a folder ------------------------------------------------


ONE_DEP = """
[steps.read]
cmd = "wc -c < {dep} > n.txt"
deps = ["{dep}"]
outs = ["n.txt"]
"""


@pytest.mark.parametrize("command", ["repro", "status"])
def test_a_fifo_as_a_dependency_is_refused_in_one_line_without_hanging(
    workspace: Workspace, command: str
) -> None:
    workspace.pipeline(ONE_DEP.format(dep="data/in.txt"))
    workspace.commit()
    (workspace.root / "data").mkdir()
    os.mkfifo(workspace.root / "data" / "in.txt")

    done = gitpipe_process(workspace.root, command)

    assert done.returncode == 5, done.stderr
    said_once(done.stderr, "data/in.txt is a FIFO (named pipe), not a regular file")
    assert not (workspace.root / "n.txt").exists()


def test_a_fifo_inside_a_dependency_folder_is_refused_in_one_line(workspace: Workspace) -> None:
    workspace.pipeline(ONE_DEP.format(dep="data/").replace("< data/", "< data/a"))
    workspace.write("data/a", "x\n")
    workspace.commit()
    os.mkfifo(workspace.root / "data" / "pipe")

    done = gitpipe_process(workspace.root, "repro")

    assert done.returncode == 5, done.stderr
    said_once(done.stderr, "data/pipe is a FIFO")


def test_dev_zero_linked_as_a_dependency_is_refused_not_read_for_ever(
    workspace: Workspace,
) -> None:
    workspace.pipeline(ONE_DEP.format(dep="data/zero"))
    workspace.commit()
    (workspace.root / "data").mkdir()
    (workspace.root / "data" / "zero").symlink_to("/dev/zero")

    done = gitpipe_process(workspace.root, "repro")

    assert done.returncode == 5, done.stderr
    said_once(done.stderr, "data/zero is a character device")


@pytest.mark.parametrize(
    ("command", "code", "says"),
    [
        ("status", 5, "cannot read data/loop (Too many levels of symbolic links)"),
        ("why read", 5, "cannot read data/loop (Too many levels of symbolic links)"),
        ("dag", 5, "cannot read data/loop (Too many levels of symbolic links)"),
        # repro's checks before it changes anything see a path that does not exist
        ("repro", 2, "dependency 'data/loop' of step 'read' does not exist"),
    ],
)
def test_a_symbolic_link_loop_as_a_dependency_is_one_line(
    workspace: Workspace, command: str, code: int, says: str
) -> None:
    workspace.pipeline(ONE_DEP.format(dep="data/loop"))
    workspace.commit()
    (workspace.root / "data").mkdir()
    (workspace.root / "data" / "loop").symlink_to("loop")

    done = gitpipe_process(workspace.root, *command.split())

    assert done.returncode == code, done.stderr
    said_once(done.stderr, says)


def test_a_symbolic_link_loop_inside_a_dependency_folder_is_one_line_exit_5(
    workspace: Workspace,
) -> None:
    workspace.pipeline(ONE_DEP.format(dep="data/").replace("< data/", "< data/a"))
    workspace.write("data/a", "x\n")
    workspace.commit()
    (workspace.root / "data" / "loop").symlink_to("loop")

    done = gitpipe_process(workspace.root, "status")

    assert done.returncode == 5, done.stderr
    said_once(done.stderr, "cannot read data/loop", "Too many levels of symbolic links")


def test_a_fifo_in_an_output_folder_fails_that_step_and_its_siblings_go_on(
    workspace: Workspace,
) -> None:
    workspace.pipeline(
        """
        [steps.maker]
        cmd = "mkdir -p out && echo x > out/f && mkfifo out/pipe"
        outs = ["out/"]

        [steps.sibling]
        cmd = "echo s > s.txt"
        outs = ["s.txt"]

        [steps.after_sibling]
        cmd = "cat s.txt > t.txt"
        deps = ["s.txt"]
        outs = ["t.txt"]
        """
    )
    workspace.commit()

    done = gitpipe_process(workspace.root, "repro", "--keep-going", "-j", "1")

    # the step made something gitpipe cannot store: that step failed, as a step
    # whose command fails does (exit 1), and nothing else did
    assert done.returncode == 1, done.stderr
    said_once(done.stderr, "step 'maker' failed")
    assert "maker: failed: out/pipe is a FIFO (named pipe)" in done.stderr
    assert workspace.states() == {"maker": "failed", "sibling": "ran", "after_sibling": "ran"}
    assert set(lock_steps(workspace)) == {"sibling", "after_sibling"}


# -- a file that changes while it is read ----------------------------------------


def _wait_until_open(pid: int, path: Path, deadline: float) -> bool:
    """Poll /proc until process ``pid`` has ``path`` open (True) or ends (False)."""
    fds = Path(f"/proc/{pid}/fd")
    target = str(path)
    while time.monotonic() < deadline:
        try:
            names = os.listdir(fds)
        except OSError:
            return False
        for name in names:
            try:
                if os.readlink(fds / name) == target:
                    return True
            except OSError:
                continue
        time.sleep(0.0005)
    return False


def test_a_dependency_truncated_while_it_is_hashed_never_kills_gitpipe_with_sigbus(
    workspace: Workspace,
) -> None:
    workspace.pipeline(ONE_DEP.format(dep="big.bin"))
    workspace.write(".gitignore", "big.bin\n")
    workspace.commit()
    big = workspace.root / "big.bin"
    block = os.urandom(1024 * 1024)
    caught = []
    for _attempt in range(4):
        with open(big, "wb") as handle:
            for _ in range(512):
                handle.write(block)
        (workspace.root / ".gitpipe" / "stat.db").unlink(missing_ok=True)  # hash it again
        process = subprocess.Popen(
            [sys.executable, "-m", "gitpipe", "status"],
            cwd=workspace.root,
            env={**os.environ, "PYTHONPATH": str(SOURCE), "CI": "true"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        truncated = threading.Event()

        def truncate(pid: int = process.pid, truncated: threading.Event = truncated) -> None:
            if _wait_until_open(pid, big, time.monotonic() + 60):
                os.truncate(big, 4096)  # the pages past 4 KiB are gone from under it
                truncated.set()

        thread = threading.Thread(target=truncate)
        thread.start()
        _, stderr = process.communicate(timeout=120)
        thread.join()
        assert process.returncode not in (-signal.SIGBUS, 128 + signal.SIGBUS), stderr
        assert "Traceback" not in stderr
        if truncated.is_set() and process.returncode != 0:
            assert process.returncode == 5, stderr
            said_once(stderr, "big.bin changed while it was being read; run again")
            caught.append(process.returncode)
            break
    assert caught, "the truncation never came while the file was being read"


# -- listeners, the last line of defence -----------------------------------------


def test_a_summary_that_cannot_be_written_does_not_hide_the_run_or_leave_it_running(
    workspace: Workspace,
) -> None:
    workspace.pipeline(SMALL)
    workspace.commit()
    (workspace.root / "plain-file").write_text("a file, not a folder\n")

    result = workspace.gitpipe("repro", "--summary-json", "plain-file/summary.json")

    assert result.exit_code == 5, result.output
    assert "1 ran" in result.stdout  # the run's own result, told first
    said_once(result.stderr, "cannot write the run summary plain-file/summary.json")
    assert runs(workspace.root)[-1][1] == "ok"
    assert "small" in lock_steps(workspace)


def test_a_failed_run_with_an_unwritable_summary_still_says_the_step_failed(
    workspace: Workspace,
) -> None:
    workspace.pipeline(
        """
        [steps.broken]
        cmd = "exit 3"
        outs = ["never.txt"]
        """
    )
    workspace.commit()
    (workspace.root / "plain-file").write_text("a file, not a folder\n")

    result = workspace.gitpipe("repro", "--summary-json", "plain-file/summary.json")

    assert result.exit_code == 1, result.output
    said_once(result.stderr, "step 'broken' failed")
    assert "after the run: cannot write the run summary" in result.stderr  # a notice
    assert runs(workspace.root)[-1][1] == "failed"


def test_an_os_error_no_part_of_gitpipe_expected_is_one_line_and_exit_5(
    workspace: Workspace,
) -> None:
    workspace.pipeline(SMALL)
    workspace.commit()
    (workspace.root / ".gitpipe").write_text("a file where gitpipe keeps its state\n")

    result = workspace.gitpipe("repro")

    assert result.exit_code == 5, result.output
    said_once(result.stderr, str(workspace.root / ".gitpipe"))
    assert not (workspace.root / "small.txt").exists()


def test_a_sqlite_error_no_part_of_gitpipe_expected_is_one_line_and_exit_5(
    workspace: Workspace,
) -> None:
    workspace.pipeline(SMALL)
    workspace.commit()
    (workspace.root / ".gitpipe").mkdir()
    with closing(sqlite3.connect(workspace.root / ".gitpipe" / "lineage.db")) as db:
        db.execute("PRAGMA user_version = 3")  # migrated, say, but without its tables

    result = workspace.gitpipe("log")

    assert result.exit_code == 5, result.output
    said_once(result.stderr, "no such table")


@pytest.mark.parametrize(
    "size", [0, 1, 1024 * 1024 - 1, 1024 * 1024 + 1, 8 * 1024 * 1024, 21 * 1024 * 1024 + 7]
)
def test_a_file_read_through_buffers_has_the_blake3_digest_of_its_bytes(
    tmp_path: Path, size: int
) -> None:
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    assert digest_file(tmp_path / "f").hex == blake3.blake3(data).hexdigest()
    with pytest.raises(gitpipe.PathError, match="changed while it was being read"):
        digest_file(tmp_path / "f", size=size + 1)  # not the size its caller saw


def test_a_bug_is_one_line_exit_70_and_its_traceback_only_with_debug(tmp_path):
    """An exception no layer turned into an error (forced here through a
    sitecustomize) is a bug: one line that says so, exit 70; --debug shows the
    traceback."""
    repo = tmp_path / "repo"
    make_repo(repo)
    (repo / "gitpipe.toml").write_text('[steps.a]\ncmd = "true"\n')
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import gitpipe.workspace as w\n"
        "def boom(*args, **kwargs):\n"
        "    raise ZeroDivisionError('on purpose')\n"
        "w.Project.__init__ = boom\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{hook}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    done = subprocess.run(
        [sys.executable, "-m", "gitpipe", "status"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 70
    assert done.stderr == (
        "gitpipe: internal error (ZeroDivisionError: on purpose); this is a bug in gitpipe: "
        "run again with --debug for the traceback, and report it\n"
    )
    debug = subprocess.run(
        [sys.executable, "-m", "gitpipe", "--debug", "status"],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
    )
    assert debug.returncode == 1 and "Traceback" in debug.stderr and "on purpose" in debug.stderr


@pytest.mark.parametrize("command", ["status", "repro", "push", "log"])
def test_a_removed_current_folder_is_one_line_naming_it_exit_2(tmp_path, command):
    from conftest import GITPIPE_SCRIPT

    gone = tmp_path / "gone"
    gone.mkdir()
    script = f'cd "{gone}" && rmdir "{gone}" && exec "{GITPIPE_SCRIPT}" {command}'
    result = subprocess.run(
        ["sh", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "gitpipe: the current folder no longer exists (removed while this shell was in "
        "it); `cd` into the repository again\n"
    )
    assert result.stdout == ""
    assert sorted(tmp_path.iterdir()) == []  # nothing made anywhere
