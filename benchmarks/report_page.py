"""How long `gitpipe report` takes, and how large its page is, for a big pipeline.

    python benchmarks/report_page.py            # 5 repetitions, medians
    python benchmarks/report_page.py --quick    # 1 repetition

The workload (issue 21): a 500-step pipeline (chains, two matrix steps of 50, 20 steps
with metrics and 20 with plots files), run once so that the lock and lineage hold a
run; 50 versions of metrics history and 20 experiments given to the page as
`Project.metrics_history` and `Project.experiments` give them.  Each repetition is a
fresh Python process that opens the project and writes the report (gathering the
plan, lineage, outputs and plots, and rendering), timed inside it; the size is the
written file's.  Targets: at most 2 s and 2 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS, VERSIONS, EXPERIMENTS = 500, 50, 20
TARGET_SECONDS, TARGET_BYTES = 2.0, 2 << 20

#: run in a fresh process per repetition: open, write, print the seconds it took
TIMED = """
import json, sys, time
from dataclasses import dataclass
from gitpipe.workspace import Project
from gitpipe.workspace.report import write

@dataclass(frozen=True)
class Point:
    version: str
    commit: str | None
    time: float
    subject: str
    metrics: dict

@dataclass(frozen=True)
class Experiment:
    id: str
    time: float
    overrides: dict
    metrics: dict
    state: str

spec = json.loads(sys.argv[1])
history = [Point(**p) for p in spec["history"]]
experiments = [Experiment(**e) for e in spec["experiments"]]
started = time.perf_counter()
write(Project.open("."), spec["out"], history=history, experiments=experiments)
print(time.perf_counter() - started)
"""


def pipeline_text() -> str:
    """500 steps: 20 chains of 20, two matrix steps of 50, and the steps joining them."""
    parts = ['[pipeline]\nname = "big"\n']
    count = 0
    for chain in range(20):
        for link in range(20):
            name = f"c{chain}s{link}"
            dep = f'deps = ["out/c{chain}s{link - 1}.txt"]\n' if link else ""
            extra = ""
            if link == 19:
                extra = f'metrics = ["out/m{chain}.json"]\n'
                score = f"echo '{{\\\"score\\\": {chain}}}' > out/m{chain}.json"
                cmd = f"echo {name} > out/{name}.txt; {score}"
            elif link == 18:
                extra = f'plots = ["out/p{chain}.csv"]\n'
                curve = f"printf 'x,y\\\\n1,2\\\\n2,3\\\\n' > out/p{chain}.csv"
                cmd = f"echo {name} > out/{name}.txt; {curve}"
            else:
                cmd = f"echo {name} > out/{name}.txt"
            parts.append(f'[steps.{name}]\ncmd = "{cmd}"\n{dep}outs = ["out/{name}.txt"]\n{extra}')
            count += 1
    for group in ("fa", "fb"):
        parts.append(
            f"[steps.{group}]\nmatrix = {{ i = {list(range(50))} }}\n"
            f'cmd = "echo ${{matrix.i}} > out/{group}-${{matrix.i}}.txt"\n'
            f'deps = ["out/c0s19.txt"]\nouts = ["out/{group}-${{matrix.i}}.txt"]\n'
        )
        count += 50
    while count < STEPS:
        parts.append(
            f'[steps.j{count}]\ncmd = "echo > out/j{count}.txt"\n'
            f'deps = ["out/fa-{count % 50}.txt", "out/c{count % 20}s19.txt"]\n'
            f'outs = ["out/j{count}.txt"]\n'
        )
        count += 1
    return "\n".join(parts)


def history_and_experiments() -> tuple[list[dict], list[dict]]:
    def metrics(i: int) -> dict:
        return {f"c{c}s19": {"score": c + i / 10, "loss": 1 / (i + c + 1)} for c in range(20)}

    history = [
        {
            "version": f"1.{i}.0",
            "commit": f"{i:040x}",
            "time": 1.7e9 + i,
            "subject": f"version {i}",
            "metrics": metrics(i),
        }
        for i in range(VERSIONS - 1)
    ] + [{"version": "", "commit": None, "time": 1.8e9, "subject": "", "metrics": metrics(99)}]
    experiments = [
        {
            "id": f"exp-{i:02d}",
            "time": 1.7e9 + i,
            "overrides": {"train.l2": i},
            "metrics": metrics(i),
            "state": "done",
        }
        for i in range(EXPERIMENTS)
    ]
    return history, experiments


def prepare(folder: Path, env: dict[str, str]) -> None:
    folder.mkdir(parents=True)
    (folder / "gitpipe.toml").write_text(pipeline_text())
    (folder / ".gitignore").write_text("/out/\n/report.html\n")
    (folder / "out").mkdir()
    for args in (["init", "-q", "-b", "main"], ["add", "-A"]):
        subprocess.run(["git", *args], cwd=folder, check=True)
    gitpipe = [sys.executable, "-m", "gitpipe"]
    subprocess.run([*gitpipe, "repro", "-q", "-j", "2"], cwd=folder, env=env, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repetition")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args()
    repetitions = 1 if args.quick else 5
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CI": "true"}
    scratch = Path(tempfile.mkdtemp(prefix="gitpipe-report-bench-"))
    try:
        folder = scratch / "big"
        started = time.perf_counter()
        prepare(folder, env)
        print(f"set up: {STEPS} steps run once in {time.perf_counter() - started:.1f} s")
        history, experiments = history_and_experiments()
        out = folder / "report.html"
        spec = json.dumps({"history": history, "experiments": experiments, "out": str(out)})
        seconds = []
        for _ in range(repetitions):
            done = subprocess.run(
                [sys.executable, "-c", TIMED, spec],
                cwd=folder,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            seconds.append(float(done.stdout.strip().splitlines()[-1]))
        size = out.stat().st_size
        median = statistics.median(seconds)
        print(
            f"report of {STEPS} steps, {VERSIONS} versions, {EXPERIMENTS} experiments: "
            f"median {median:.2f} s over {repetitions} (target {TARGET_SECONDS:.0f} s), "
            f"{size / 1e6:.2f} MB (target {TARGET_BYTES / (1 << 20):.0f} MiB)"
        )
        if args.keep:
            print(f"kept: {out}")
        return 0 if median <= TARGET_SECONDS and size <= TARGET_BYTES else 1
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
