"""Timing whole commands: wall time and peak memory of one child process tree.

`run` starts a command in its own session, waits for it with `os.wait4` (which gives
the child's own resource usage, so each measurement is of that command alone), and
kills the whole session if it runs past its time limit.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Sample:
    """One run of one command."""

    seconds: float
    max_rss_mib: float  # the largest resident set of any process in the tree
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def run(
    args: Sequence[str],
    cwd: Path,
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
) -> Sample:
    """Run `args` in `cwd`; return its wall time, peak memory, exit code and output."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(args),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        fired = threading.Event()

        def kill() -> None:
            fired.set()
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            if timer:
                timer.cancel()
        took = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        return Sample(
            seconds=took,
            max_rss_mib=usage.ru_maxrss / 1024,
            returncode=proc.returncode,
            stdout=out.read().decode(errors="replace"),
            stderr=err.read().decode(errors="replace"),
            timed_out=fired.is_set(),
        )


@dataclass
class Result:
    """One tool's numbers on one measure, or why there are none (`error`)."""

    median: float | None = None
    low: float | None = None
    high: float | None = None
    runs: int = 0
    note: str = ""
    error: str = ""  # "not installed", "fails (RecursionError)", "timed out after 60 s", ...
    extrapolated: bool = False

    @classmethod
    def of(cls, samples: Sequence[float], note: str = "") -> Result:
        return cls(statistics.median(samples), min(samples), max(samples), len(samples), note=note)

    @classmethod
    def failed(cls, error: str, note: str = "") -> Result:
        return cls(error=error, note=note)


@dataclass
class Row:
    """One measure: gitpipe's numbers, and the peers' and baselines' on the same work."""

    name: str
    unit: str
    median: float
    low: float
    high: float
    runs: int
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)
    key: str = ""  # a stable id for machines: "status/chain/500"
    peers: dict[str, Result] = field(default_factory=dict)  # DVC, Snakemake, make
    baseline: dict[str, Result] = field(default_factory=dict)  # cp, b3sum, bare commands
    target: str = ""
    met: bool | None = None


def measure(name: str, unit: str, samples: list[float], note: str = "", **extra: float) -> Row:
    return Row(
        name,
        unit,
        statistics.median(samples),
        min(samples),
        max(samples),
        len(samples),
        note,
        extra,
    )
