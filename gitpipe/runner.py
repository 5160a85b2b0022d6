"""Running a step's commands: a shell per command, in its own process group, with the
output captured in the step's log and the ``GITPIPE_*`` context in its environment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Invocation:
    """Everything needed to run one step's commands; picklable for worker processes."""

    step: str
    commands: tuple[str, ...]
    cwd: str
    env: Mapping[str, str]
    log: str
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    exit_code: int
    duration: float
    message: str = ""  # why it failed, in one sentence; empty on success

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def execute(invocation: Invocation) -> Outcome:
    """Run the commands in order, stopping at the first failure."""
    start = time.monotonic()
    Path(invocation.log).parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **invocation.env}
    deadline = None if invocation.timeout is None else start + invocation.timeout
    with open(invocation.log, "wb") as log:
        for index, command in enumerate(invocation.commands):
            log.write(f"$ {command}\n".encode())
            log.flush()
            try:
                process = subprocess.Popen(
                    command,
                    shell=True,
                    cwd=invocation.cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, so it can be stopped whole
                )
            except OSError as exc:  # e.g. the working folder does not exist
                log.write(f"cannot start: {exc}\n".encode())
                return Outcome(
                    127,
                    time.monotonic() - start,
                    f"cannot start {which_of(index, invocation)}: "
                    f"{exc.strerror} ({invocation.cwd})",
                )
            try:
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                code = process.wait(timeout=remaining)
            except subprocess.TimeoutExpired:
                _stop(process)
                return Outcome(
                    124,
                    time.monotonic() - start,
                    f"timed out after {invocation.timeout:g} s",
                )
            except BaseException:  # Ctrl-C, SIGTERM: stop the whole group, then go on up
                _stop(process)
                raise
            if code != 0:
                which = which_of(index, invocation)
                shown = f"signal {-code}" if code < 0 else f"code {code}"
                return Outcome(
                    code if code > 0 else 128 - code,
                    time.monotonic() - start,
                    f"{which} exited with {shown} (log: {invocation.log})",
                )
    return Outcome(0, time.monotonic() - start)


def _stop(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """Terminate a command's process group, then kill it if it does not stop."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def which_of(index: int, invocation: Invocation) -> str:
    count = len(invocation.commands)
    return f"command {index + 1} of {count}" if count > 1 else "the command"
