"""How fast `gitpipe metrics --history` and `gitpipe exp show` answer on a long history.

    python benchmarks/history.py            # 500 steps, 50 commits, 20 experiments
    python benchmarks/history.py --quick    # 100 steps, 10 commits, 5 experiments
    python benchmarks/history.py --json out.json

The workload is built with the real `gitpipe repro` in a temporary Git repository:
a pipeline of N steps, of which a tenth write a metrics file from `data/round.txt`
and a param; each commit changes the round, runs `repro` (only the metric steps
run) and commits the lock.  Then experiments (`repro -p boost=...`) are run on top.
Timed, several times each (median, with the spread min-max), as whole commands:

- `gitpipe metrics --history --json`, the versions cache warm (as after any repro)
  and cold (``.gitpipe/versions.db`` removed first);
- `gitpipe exp show --json`.

No timing is asserted: the numbers go into docs/performance.md.
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

GITPIPE = str(Path(sys.executable).parent / "gitpipe")
ENV = {
    **{k: v for k, v in os.environ.items() if not k.startswith("GITPIPE_")},
    "CI": "true",
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@gitpipe.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@gitpipe.invalid",
}


def sh(args: list[str], cwd: Path) -> float:
    """Run a command (it must succeed); its wall time in seconds."""
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=ENV, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed in {cwd}:\n{done.stdout}\n{done.stderr}")
    return took


def pipeline(steps: int) -> str:
    """N steps: a chain of copies, every tenth step also writing metrics."""
    parts = ["[params]\nboost = 0\n"]
    for i in range(steps):
        source = "data/raw.txt" if i == 0 else f"out/s{i - 1}.txt"
        parts.append(
            f'[steps.s{i}]\ncmd = "cp {source} out/s{i}.txt"\ndeps = ["{source}"]\n'
            f'outs = ["out/s{i}.txt"]\n'
        )
        if i % 10 == 0:
            parts.append(
                f"[steps.m{i}]\n"
                f'cmd = \'echo "{{\\"acc\\": 0.$(cat data/round.txt){i}, \\"boost\\": '
                f'${{params.boost}}, \\"loss\\": {i}}}" > m/m{i}.json\'\n'
                f'deps = ["data/round.txt"]\nparams = ["boost"]\nmetrics = ["m/m{i}.json"]\n'
            )
    return "\n".join(parts)


def build(root: Path, steps: int, commits: int, experiments: int) -> None:
    root.mkdir(parents=True)
    sh(["git", "init", "-q", "-b", "main"], root)
    (root / "data").mkdir()
    (root / "out").mkdir()
    (root / "m").mkdir()
    (root / "data" / "raw.txt").write_text("raw\n")
    (root / ".gitignore").write_text("out/\nm/\n")
    (root / "gitpipe.toml").write_text(pipeline(steps))
    for n in range(commits):
        (root / "data" / "round.txt").write_text(f"{n + 10}\n")
        sh([GITPIPE, "repro", "-q"], root)
        sh(["git", "add", "-A"], root)
        sh(["git", "commit", "-qm", f"round {n}"], root)
    for n in range(experiments):
        sh([GITPIPE, "repro", "-q", "-p", f"boost={n + 1}"], root)


def timed(args: list[str], root: Path, reps: int, *, before: list[Path] = ()) -> list[float]:
    times = []
    for _ in range(reps):
        for path in before:
            path.unlink(missing_ok=True)
        times.append(sh(args, root))
    return times


def row(name: str, times: list[float]) -> dict[str, object]:
    return {
        "benchmark": name,
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
        "runs": len(times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    parser.add_argument("--json", type=Path, help="write the rows here as JSON")
    options = parser.parse_args()
    steps, commits, experiments, reps = (100, 10, 5, 3) if options.quick else (500, 50, 20, 7)
    base = Path(tempfile.mkdtemp(prefix="gitpipe-history-"))
    try:
        root = base / "repo"
        started = time.perf_counter()
        build(root, steps, commits, experiments)
        print(
            f"built {steps} steps, {commits} commits, {experiments} experiments "
            f"in {time.perf_counter() - started:.0f} s",
            file=sys.stderr,
        )
        history = [GITPIPE, "metrics", "--history", "--json"]
        sh(history, root)  # the versions cache, as any repro leaves it
        points = json.loads(
            subprocess.run(history, cwd=root, env=ENV, capture_output=True, text=True).stdout
        )["points"]
        assert len(points) == commits, len(points)
        shown = json.loads(
            subprocess.run(
                [GITPIPE, "exp", "show", "--json"],
                cwd=root,
                env=ENV,
                capture_output=True,
                text=True,
            ).stdout
        )
        assert len(shown) == experiments, len(shown)
        label = f"{steps} steps, {commits} versions"
        rows = [
            row(f"metrics --history, {label}", timed(history, root, reps)),
            row(
                f"metrics --history, {label}, no versions cache",
                timed(history, root, max(1, reps // 3), before=[root / ".gitpipe" / "versions.db"]),
            ),
            row(
                f"exp show, {steps} steps, {experiments} experiments",
                timed([GITPIPE, "exp", "show", "--json"], root, reps),
            ),
        ]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    for item in rows:
        print(
            f"{item['benchmark']:<58} {item['median_s']:.3f} s "
            f"[{item['min_s']:.3f}-{item['max_s']:.3f}] ({item['runs']} runs)"
        )
    if options.json:
        options.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
