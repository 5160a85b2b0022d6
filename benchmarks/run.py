"""gitpipe's benchmark suite: one entry point, whole commands timed in fresh Git repos.

    python benchmarks/run.py            # the full suite
    python benchmarks/run.py --quick    # fewer repetitions and smaller sizes (CI smoke test)
    python benchmarks/run.py --only parallel,overhead --json out.json

Each benchmark builds its workload in a temporary Git repository, runs the real
`gitpipe` command several times, and reports the median and the spread (min-max).
No timing is asserted here: the numbers go into docs/performance.md and notes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

GITPIPE = str(Path(sys.executable).parent / "gitpipe")
ENV = {
    **os.environ,
    "CI": "true",
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "b@b",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "b@b",
}


@dataclass
class Row:
    name: str
    unit: str
    median: float
    low: float
    high: float
    runs: int
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)


def sh(args: list[str], cwd: Path, *, check: bool = True) -> float:
    """Run a command; return its wall time in seconds."""
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True)
    took = time.perf_counter() - start
    if check and done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed in {cwd}:\n{done.stdout}\n{done.stderr}")
    return took


def repo(base: Path, name: str, pipeline: str, files: dict[str, str] | None = None) -> Path:
    root = base / name
    root.mkdir()
    sh(["git", "init", "-q"], root)
    (root / "gitpipe.toml").write_text(pipeline)
    for rel, text in (files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", "workload"], root)
    return root


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


def fresh(root: Path) -> None:
    """Forget every result: outputs, lock and local state."""
    shutil.rmtree(root / ".gitpipe", ignore_errors=True)
    (root / "gitpipe.lock").unlink(missing_ok=True)
    sh(["git", "clean", "-qfdx", "-e", "gitpipe.toml"], root)


def bench_parallel(base: Path, quick: bool) -> list[Row]:
    """8 independent 1-second steps, -j 1 against -j 8."""
    width, seconds = (4, 0.5) if quick else (8, 1.0)
    pipeline = "\n".join(
        f'[steps.s{i}]\ncmd = "sleep {seconds}; echo {i} > o{i}.txt"\nouts = ["o{i}.txt"]\n'
        for i in range(width)
    )
    root = repo(base, "parallel", pipeline)
    rows = []
    reps = 1 if quick else 3
    times: dict[int, list[float]] = {}
    for jobs in (1, width):
        times[jobs] = []
        for _ in range(reps):
            fresh(root)
            times[jobs].append(sh([GITPIPE, "repro", "-q", "-j", str(jobs)], root))
        rows.append(measure(f"{width} x {seconds:g} s steps, -j {jobs}", "s", times[jobs]))
    speedup = statistics.median(times[1]) / statistics.median(times[width])
    rows.append(
        Row(f"speed-up of -j {width}", "x", speedup, speedup, speedup, reps, f"ideal {width}x")
    )
    return rows


def bench_overhead(base: Path, quick: bool) -> list[Row]:
    """A chain of N trivial steps: gitpipe's own cost per step, full and no-op."""
    n = 50 if quick else 100
    pipeline = "\n".join(
        f'[steps.s{i}]\ncmd = "cp s{i - 1}.txt s{i}.txt"\ndeps = ["s{i - 1}.txt"]\n'
        f'outs = ["s{i}.txt"]\n'
        for i in range(1, n + 1)
    )
    root = repo(base, "overhead", pipeline, {"s0.txt": "0\n"})
    reps = 2 if quick else 5
    bare, full, noop, status = [], [], [], []
    for _ in range(reps):
        fresh(root)
        start = time.perf_counter()
        for i in range(1, n + 1):
            subprocess.run(["/bin/sh", "-c", f"cp s{i - 1}.txt s{i}.txt"], cwd=root, check=True)
        bare.append(time.perf_counter() - start)
        fresh(root)
        full.append(sh([GITPIPE, "repro", "-q"], root))
        noop.append(sh([GITPIPE, "repro", "-q"], root))
        status.append(sh([GITPIPE, "status"], root))
    per_step = (statistics.median(full) - statistics.median(bare)) / n * 1000
    return [
        measure(f"{n} bare `sh -c cp` commands", "s", bare),
        measure(f"full repro, {n}-step chain", "s", full),
        Row(
            f"gitpipe's own cost per step ({n}-step chain)",
            "ms",
            per_step,
            per_step,
            per_step,
            reps,
            "(full repro - bare commands) / steps",
        ),
        measure(f"no-op repro, {n}-step chain", "s", noop),
        measure(f"no-op status, {n}-step chain", "s", status),
    ]


BENCHMARKS: dict[str, Callable[[Path, bool], list[Row]]] = {
    "parallel": bench_parallel,
    "overhead": bench_overhead,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    chosen = [name for name in args.only.split(",") if name] or list(BENCHMARKS)
    unknown = sorted(set(chosen) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="gitpipe-bench-") as tmp:
        for name in chosen:
            base = Path(tmp) / name
            base.mkdir()
            rows += BENCHMARKS[name](base, args.quick)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"gitpipe benchmarks ({'quick' if args.quick else 'full'}; {machine})")
    width = max(len(row.name) for row in rows)
    for row in rows:
        spread = f"[{row.low:.3f}-{row.high:.3f}]" if row.runs > 1 else ""
        print(f"  {row.name:<{width}}  {row.median:9.3f} {row.unit:<2} {spread:<17} {row.note}")
    if args.json:
        args.json.write_text(
            json.dumps(
                {"machine": machine, "quick": args.quick, "rows": [asdict(row) for row in rows]},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
