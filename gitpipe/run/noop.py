"""A no-op `gitpipe repro`, answered from the status snapshot before typer, the
planner or the runner is imported (the console script's fast path, see
gitpipe/__main__.py).

When the last `status` kept its answer (gitpipe/core/snapshot.py) and every stamp
it rests on still holds, a plain `repro` runs nothing, restores nothing and leaves
gitpipe.lock alone: what it does is record the run in lineage and print its
closing line.  :func:`answer` does exactly that, through the same lineage recorder
and the same events, once it has made sure that the whole command would do no
more: every step up to date, the lock current on this very commit, the Git check
passed with the same digest, this clone registered in its store, no scratch left
by a killed restore, the workspace lock free, a plain console.  Anything else, and
it hands the command over (returns None) having printed nothing and recorded
nothing; the workspace lock it may have taken for a moment is free again, and its
file holds a pid as the command's own lock leaves it.

The run's `git_commit` and `dirty` come from `git status` (the command line
compares the index with HEAD and the working tree through dulwich, which takes
longer to import than a no-op run may last): with the file mode and line-ending
conversions left out, as dulwich compares content only; a repository with
submodules or `.gitattributes` (filters), or a Git environment variable set, is
left to the command line.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING

from gitpipe.core import snapshot
from gitpipe.core.layout import dot_git, git_check_file
from gitpipe.core.states import UP_TO_DATE

if TYPE_CHECKING:
    from gitpipe.run.lineage import LineageRecorder

#: what the command line reads from the environment that a no-op run would show
_ENVIRON = (
    "GITHUB_STEP_SUMMARY",
    "GITPIPE_BACKEND",
    "GITPIPE_DASK_SCHEDULER",
    "GITPIPE_CACHE_DIR",
    "GITPIPE_FAULT",  # the crash-safety tests' injected faults: the whole path
)
#: Git's own variables that would point `git status` elsewhere than dulwich looks
_GIT_ENVIRON = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY")


def answer(file: Path, *, quiet: bool) -> int | None:
    """Record and print a no-op `gitpipe repro` of the pipeline ``file`` (``quiet``:
    `-q`, which prints the same for a no-op) and return its exit code; None, having
    recorded and printed nothing, when the command line must do it."""
    del quiet  # a no-op run prints its closing line alone, quiet or not
    if any(os.environ.get(name) for name in (*_ENVIRON, *_GIT_ENVIRON)):
        return None
    file = file.resolve()  # the command line's root: the real folder of the file
    git = _start_git(file.parent)  # Git works while the snapshot's stamps are checked
    try:
        kept = snapshot.read(file)
        if kept is None or not _settled(kept):
            return None
        state_dir = file.parent / ".gitpipe"
        if not _prepared(file, state_dir, kept):
            return None
        checkout = _checkout(git)
        if checkout is None or checkout[0] != kept.head:
            return None  # on another commit the lock would be written
    finally:
        if git is not None and git.returncode is None:  # handed over before Git answered
            git.kill()
            git.communicate()  # waits, and closes the pipe
    lock = _try_lock(state_dir / "repro.lock")
    if lock is None:
        return None  # another repro holds the workspace: the command line waits
    try:
        if _scratch_left(state_dir / "tmp"):
            return None
        return _record(state_dir, kept, checkout)
    finally:
        lock.close()


def _settled(kept: snapshot.Snapshot) -> bool:
    """Every step up to date, the lock as a no-op run would write it, and what the
    run records known."""
    return (
        kept.lock_current
        and kept.pipeline is not None
        and kept.git_check is not None
        and bool(kept.statuses)
        and all(s.state == UP_TO_DATE and s.action == UP_TO_DATE for s in kept.statuses)
    )


def _prepared(file: Path, state_dir: Path, kept: snapshot.Snapshot) -> bool:
    """What the command line would set up before the run is already so: the state
    folder and its `.gitignore`, the Git check passed with this digest, this clone
    registered in the store beside it (not in a linked work tree's shared one)."""
    from gitpipe.store import clones

    dotgit = dot_git(file.parent)
    if dotgit is None or not dotgit.is_dir():
        return False
    top = dotgit.parent
    if (top / ".gitmodules").exists() or (top / ".gitattributes").exists():
        return False
    if not (state_dir / ".gitignore").exists():
        return False
    try:
        passed = git_check_file(state_dir).read_text()
    except OSError:
        return False
    if passed != kept.git_check:
        return False
    return clones.is_registered(state_dir / "cache", file)


def _start_git(root: Path) -> subprocess.Popen[bytes] | None:
    """`git status` in ``root``, started: what :func:`_checkout` reads."""
    command = [
        "git",
        "--no-optional-locks",  # never refresh the index: nothing is written
        "-c",
        "core.fileMode=false",
        "-c",
        "core.autocrlf=false",
        "status",
        "--porcelain=v2",
        "--branch",
        "--untracked-files=no",
        "--ignore-submodules=none",
    ]
    try:
        return subprocess.Popen(
            command,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None


def _checkout(git: subprocess.Popen[bytes] | None) -> tuple[str | None, bool] | None:
    """HEAD's commit and whether tracked files differ from it, as
    :meth:`gitpipe.history.git.Repository.checkout` tells them, from `git status`;
    None when Git cannot say."""
    if git is None:
        return None
    try:
        out, _ = git.communicate(timeout=30)
    except subprocess.SubprocessError:
        return None
    if git.returncode != 0:
        return None
    commit: str | None = None
    dirty = False
    for line in out.decode("utf-8", "replace").splitlines():
        if line.startswith("# branch.oid "):
            oid = line.removeprefix("# branch.oid ").strip()
            commit = None if oid == "(initial)" else oid
        elif line and not line.startswith("#"):
            dirty = True
    return commit, dirty


def _try_lock(path: Path) -> IO[str] | None:
    """The workspace lock `repro` takes (gitpipe.workspace.wslock.workspace_lock),
    if it is free now; its file then names this process, as the command's does."""
    import fcntl

    try:
        handle = open(path, "a+")  # noqa: SIM115 - held while the run is recorded
    except OSError:
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
    except OSError:
        handle.close()
        return None
    return handle


def _scratch_left(folder: Path) -> bool:
    """Whether a killed restore left files in the scratch folder (the command line
    clears them first)."""
    with contextlib.suppress(OSError), os.scandir(folder) as items:
        return any(item.name.startswith(".") and item.name.endswith(".tmp") for item in items)
    return False


def _record(
    state_dir: Path, kept: snapshot.Snapshot, checkout: tuple[str | None, bool]
) -> int | None:
    """The run's events, told to lineage as the command tells them, and its closing
    line printed as the plain console prints it."""
    from gitpipe.core import interrupts
    from gitpipe.run.lineage import LineageError, LineageRecorder

    try:
        recorder = LineageRecorder(state_dir / "lineage.db")
    except LineageError:
        return None  # the command line says so, and runs unrecorded
    # a signal waits for the whole record (then stops the command as one after the
    # command line's run does): never a run half-recorded, found "killed" later
    with interrupts.catching(), interrupts.held():
        return _told(recorder, kept, checkout)


def _told(
    recorder: LineageRecorder, kept: snapshot.Snapshot, checkout: tuple[str | None, bool]
) -> int:
    """:func:`_record`'s run, told to lineage and the console (as typer writes: nothing
    where no stream is attached)."""
    from gitpipe.core.console import echo
    from gitpipe.run import events as ev

    names = tuple(s.step for s in kept.statuses)
    run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + os.urandom(3).hex()
    started = time.time()
    failure: OSError | None = None
    try:
        recorder(
            ev.RunStarted(
                run_id=run_id,
                steps=names,
                dry_run=False,
                commit=checkout[0],
                dirty=checkout[1],
                argv=tuple(sys.argv[1:]),
                started=started,
                pipeline=kept.pipeline or "",
                jobs=1,
                backend="threading",
                overrides={},
            )
        )
        for status in kept.statuses:
            recorder(ev.StepFinished(status.step, ev.UP_TO_DATE, key=status.key))
        duration = time.time() - started
        counts = {ev.UP_TO_DATE: len(names)}
        finished = ev.RunFinished(run_id, "ok", counts, duration, ended=time.time())
        try:  # the console hears the end first, then lineage, whatever fails
            echo(ev.summary(finished))
        except OSError as exc:
            failure = exc
        recorder(finished)
    finally:
        try:
            recorder.close()
        except Exception as exc:  # sqlite3.Error: lineage is never fatal to a run
            recorder.error = recorder.error or f"lineage was not recorded ({exc})"
    with contextlib.suppress(OSError):  # stderr gone too: the exit code says it
        if recorder.error:
            echo(f"{time.strftime('%H:%M:%S')} gitpipe: {recorder.error}", err=True)
        if failure is not None:  # as the command says a listener's failure after a good run
            from gitpipe.core.errors import describe

            echo(f"gitpipe: the run went well, but after it: {describe(failure)}", err=True)
    if failure is not None:
        from gitpipe.core.errors import PathError

        return PathError.exit_code
    return 0
