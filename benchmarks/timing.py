"""Timing whole commands: wall time and peak memory of one child process tree.

`run` starts a command in its own session, waits for it with `os.wait4` (which gives
the child's own resource usage, so each measurement is of that command alone), and
kills the whole session if it runs past its time limit.

`discard` throws a workload's files away without deleting them while anything is
still timed: it moves them into a trash folder that is deleted at the end
(`use_trash`).  This machine's ext4 is mounted with `discard`, and for many seconds
after thousands of files are deleted, creating a file costs ten times as much (about
200 us against 15: `python benchmarks/timing.py` shows it), so a run timed after a
reset that deleted would pay for the reset, and the more files it creates the more:
a `checkout --pull` of 1,000 objects ranged from 0.33 to 0.72 s across repetitions.
A user's command does not follow a mass delete; no timed run here does either, for
any tool.
"""

from __future__ import annotations

import itertools
import os
import shutil
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


#: the folder `discard` moves things into (on the file system of what it throws away)
_trash: list[Path] = []
_discarded = itertools.count()


def use_trash(folder: Path) -> None:
    """Have :func:`discard` move what it throws away into ``folder`` (made now), for
    the caller to delete once nothing is timed any more."""
    folder.mkdir(parents=True, exist_ok=True)
    _trash[:] = [folder]


def discard(path: Path) -> None:
    """Throw ``path`` (a file or a folder; missing is fine) away: moved into the trash
    when there is one on its file system, else deleted now."""
    if not os.path.lexists(path):
        return
    if _trash:
        try:
            os.rename(path, _trash[0] / f"{next(_discarded)}-{path.name}")
            return
        except OSError:  # another file system: deleted, then
            pass
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _creation_cost(folder: Path, files: int = 16) -> float:
    """The median seconds to create one small file in ``folder``."""
    times = []
    for i in range(files):
        start = time.perf_counter()
        fd = os.open(folder / f"probe-{i}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"probe\n")
        os.close(fd)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


if __name__ == "__main__":  # what `discard` spares the timed runs, shown
    import sys

    base = Path(tempfile.mkdtemp(dir=sys.argv[1] if len(sys.argv) > 1 else None))
    try:
        for step, what in enumerate(("quiet", "3,000 files deleted just before")):
            if step:
                doomed = base / "doomed"
                doomed.mkdir()
                for i in range(3000):
                    (doomed / f"f{i}").write_bytes(b"x")
                shutil.rmtree(doomed)
                time.sleep(1)
            probe = base / f"probe{step}"
            probe.mkdir()
            print(f"{what}: {_creation_cost(probe) * 1e6:.0f} us to create a file")
    finally:
        shutil.rmtree(base)
