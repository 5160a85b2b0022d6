"""Starting a step's command, and waiting for it, at the cost of the command itself:
its plain words without a shell, its program found with a `stat` a folder of PATH
(not an `execve` tried in each, in the forked child), the environment it inherits
taken once and again only when it changes, and its end waited for on a pidfd, so
that the scheduler's thread can run a step itself and still tick.
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import time
from collections.abc import Callable
from typing import Any

from gitpipe.store.runcache import KEY_VAR

#: characters that only a shell gives a meaning to; a command without any of them is
#: a plain list of words, which runs without a shell (as make runs such recipes)
_SHELL_CHARS = frozenset("#;&|<>()$`\\\"'*?[]{}~!^\n\t\r")
#: first words that a shell runs itself, or runs otherwise than the program of that
#: name would (dash's `echo` reads backslash escapes, /bin/echo does not)
_SHELL_WORDS = frozenset(
    (  # noqa: SIM905 (a list of words reads best as words)
        ". : [ alias bg break case cd command continue declare do done echo elif else esac "
        "eval exec exit export false fc fg fi for function getopts hash if in jobs kill let "
        "local printf pwd read readonly return select set shift source test then time times "
        "trap true type typeset ulimit umask unalias unset until wait while"
    ).split()
)


def plain_words(command: str) -> list[str] | None:
    """The words of a command that means the same without a shell, else None: one
    process fewer for each step, as in make."""
    if _SHELL_CHARS.intersection(command):
        return None
    words = [word for word in command.split(" ") if word]
    if not words or words[0] in _SHELL_WORDS or "=" in words[0]:  # VAR=value cmd
        return None
    return words


#: this process's environment as last seen, and what a command inherits of it
_INHERITED: tuple[dict[bytes, bytes], dict[bytes, bytes]] = ({}, {})


def inherited() -> dict[bytes, bytes]:
    """What a command inherits of this process's environment, encoded as the kernel
    takes it: all but the secret gitpipe signs results with, which is not the step's
    to read (or print).  Made again only when the environment has changed since."""
    global _INHERITED
    data = getattr(os.environ, "_data", None)  # CPython's own encoded copy
    if not isinstance(data, dict):
        return {os.fsencode(k): os.fsencode(v) for k, v in os.environ.items() if k != KEY_VAR}
    seen, made = _INHERITED
    if data != seen:
        secret = os.fsencode(KEY_VAR)
        made = {k: v for k, v in data.items() if k != secret}
        _INHERITED = (dict(data), made)
    return made


def start(command: str, cwd: str, env: dict[bytes, bytes], log: Any) -> Any:
    """Start one command in a process group of its own: its plain words straight,
    else (or where that program cannot be started) through the shell, which says why
    in the log as it would for a shell command."""
    options: dict[str, Any] = {
        "cwd": cwd,
        "env": env,
        "stdin": subprocess.DEVNULL,
        "stdout": log,
        "stderr": subprocess.STDOUT,
        "start_new_session": True,  # its own group, so it can be stopped whole
    }
    words = plain_words(command)
    if words is not None:
        found = program(words[0], cwd, env)
        if found is not None:
            with contextlib.suppress(OSError):  # it could not run: as if not found first
                return subprocess.Popen(words, executable=found, **options)
        try:
            return subprocess.Popen(words, **options)
        except OSError as exc:  # not found, not executable, a script with no #! line
            if exc.filename != words[0]:
                raise  # the working folder, not the program
    return subprocess.Popen(command, shell=True, **options)


def program(word: str, cwd: str, env: dict[bytes, bytes]) -> str | None:
    """The file that running ``word`` (a program's name without a folder) would run:
    the first regular, executable file of that name in a folder of the command's
    PATH (a relative folder is taken from ``cwd``), as ``execvp`` looks; None when
    there is none, or ``word`` names a folder.  One ``stat`` a folder: the forked
    child trying ``execve`` in each folder in turn costs about 40 µs a folder."""
    if os.sep in word:
        return None
    for folder in os.get_exec_path(env):  # type: ignore[arg-type] (bytes keys are taken)
        path = os.path.join(cwd, folder or os.curdir, word)
        try:
            mode = os.stat(path).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) and os.access(path, os.X_OK):
            return path
    return None


def open_log(path: str) -> Any:
    """A step's log, opened for writing; its folder is made when the open finds none
    (once a run: the steps after the first find it)."""
    try:
        return open(path, "wb")
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return open(path, "wb")


def wait_ticking(
    process: Any, deadline: float | None, waiting: Callable[[], object], tick: float
) -> int:
    """Wait for ``process`` in this thread, calling ``waiting`` every ``tick``
    seconds; woken by the process's end itself (a pidfd), not by polling, so a
    command of a millisecond costs no more than a millisecond."""
    import select

    try:
        fd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # no pidfd here: wait a tick at a time
        fd = -1
    try:
        poller = select.poll()
        if fd >= 0:
            poller.register(fd, select.POLLIN)
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise subprocess.TimeoutExpired(process.args, 0.0)
            pause = tick if deadline is None else min(tick, deadline - now)
            if fd >= 0 and not poller.poll(pause * 1000):
                waiting()
                continue
            try:
                return int(process.wait(timeout=None if fd >= 0 else pause))
            except subprocess.TimeoutExpired:
                waiting()
    finally:
        if fd >= 0:
            os.close(fd)
