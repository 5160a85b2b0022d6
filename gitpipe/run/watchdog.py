"""What dies with gitpipe: a watchdog that stops the process groups of a process's
commands when that process ends, however it ends (SIGKILL included).

    this process ──"+PGID" / "-PGID" lines──> pipe ──> watchdog (own session)
         │ ends (exit, crash, SIGKILL)                   │ reads EOF
         └── the kernel closes its end of the pipe ──────┴─> SIGTERM each group still
                                                             watched, SIGKILL after grace

The runner tells it each command it starts and reaps (see gitpipe/run/runner.py).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import subprocess
import sys
import threading

#: what the watchdog runs (``python -I -S -c``, so nothing on the path is imported):
#: it reads "+PGID" and "-PGID" lines from its standard input; when that pipe closes
#: (the process that started it ended) it sends SIGTERM to each group still watched,
#: and SIGKILL to those that still run after the grace given as its argument.  After
#: each read it sleeps 20 ms, so that a run of short steps (two lines a step) wakes it
#: a few times, not twice a step: the pipe holds 64 KiB, thousands of lines, and the
#: end is seen at most 20 ms late
_CODE = """
import os, signal, sys, time
groups, rest = set(), b""
while True:
    chunk = os.read(0, 65536)
    if not chunk:
        break
    *lines, rest = (rest + chunk).split(b"\\n")
    for line in lines:
        (groups.add if line[:1] == b"+" else groups.discard)(int(line[1:]))
    time.sleep(0.02)  # let lines gather: woken 50 times a second at most, not per line
def signal_all(sig):
    for group in list(groups):
        try:
            os.killpg(group, sig)
        except OSError:
            groups.discard(group)
signal_all(signal.SIGTERM)
deadline = time.monotonic() + float(sys.argv[1])
while groups and time.monotonic() < deadline:
    time.sleep(0.05)
    signal_all(0)
signal_all(signal.SIGKILL)
"""


class Watchdog:
    """Stops the process groups this process started when this process ends, however
    it ends: SIGKILL leaves no handler to run, so the stopping is done by a process
    of its own session that reads each group's start and end from a pipe; when the
    kernel closes this process's end, it terminates what is still watched (SIGTERM,
    then SIGKILL after ``grace`` seconds).

    Started with the first command, once per process (the gitpipe process, a loky
    worker, a dask worker).  Why not ``PR_SET_PDEATHSIG``: it is set between fork and
    exec (``preexec_fn``, which subprocess documents as unsafe with threads, and which
    gives up the vfork fast path), it reaches only the group's leader (a child's
    setting is cleared when it forks), and it fires when the *thread* that forked
    ends.  The pipe is closed only when the process is gone, whichever thread forked.
    """

    def __init__(self, grace: float = 5.0) -> None:
        self.grace = grace
        self._lock = threading.Lock()
        self._fd = -1
        self._process: subprocess.Popen[bytes] | None = None
        self._broken = False  # no watchdog can be started here (no interpreter)

    def watch(self, pgid: int) -> None:
        self._send(b"+%d\n" % pgid)

    def forget(self, pgid: int) -> None:
        self._send(b"-%d\n" % pgid)

    def _send(self, line: bytes) -> None:
        with self._lock:
            if self._fd < 0 and not self._start():
                return
            try:
                os.write(self._fd, line)  # shorter than PIPE_BUF: written whole or not
            except BlockingIOError:  # the watchdog does not keep up: never block a step
                pass
            except OSError:  # it is gone: the next command starts another
                self._close()

    def _start(self) -> bool:
        if self._broken or not sys.executable:
            return False
        read, write = os.pipe()  # not inherited by the commands (close-on-exec)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", "-c", _CODE, repr(self.grace)],
                stdin=read,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",
                start_new_session=True,  # no Ctrl-C or hang-up from this terminal
            )
        except OSError:
            os.close(write)
            self._broken = True
            return False
        finally:
            os.close(read)
        os.set_blocking(write, False)
        self._fd = write
        return True

    def _close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = -1

    def end(self) -> None:
        """At exit: close the pipe, and reap the watchdog if it ends at once (it
        does when no command of this process still runs)."""
        with self._lock:
            self._close()
            if self._process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(timeout=0.2)

    def _forked(self) -> None:
        """In a child forked without exec: this process's pipe end is not its own."""
        self._lock = threading.Lock()
        self._close()
        self._process = None


#: this process's watchdog, with the runner's grace (gitpipe.run.runner.GRACE)
WATCHDOG = Watchdog(grace=5.0)
atexit.register(WATCHDOG.end)
os.register_at_fork(after_in_child=WATCHDOG._forked)
