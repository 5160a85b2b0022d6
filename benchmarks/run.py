"""gitpipe's benchmark suite: one entry point, whole commands timed in fresh Git repos.

    python benchmarks/run.py            # the full suite (about 20 minutes with the peers)
    python benchmarks/run.py --quick    # small sizes, few repetitions (CI smoke test)
    python benchmarks/run.py --only steps,edit --json out.json --markdown table.md
    python benchmarks/run.py --no-peers # gitpipe alone; the peers' cells say so

Each benchmark builds its workload in a temporary Git repository, runs the real
`gitpipe` command several times, and reports the median and the spread (min-max).
Where DVC, Snakemake and GNU make are found (see benchmarks/peers.py), the same
workloads run under them in the same invocation and the table shows ratios. No
timing is asserted here: the numbers go into docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import compare
import report
from peers import ENV  # one environment for every benchmark: CI=true, a Git identity
from timing import Row, discard, measure, use_trash

GITPIPE = str(Path(sys.executable).parent / "gitpipe")


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


def fresh(root: Path) -> None:
    """Forget every result: outputs, lock and local state."""
    discard(root / ".gitpipe")
    discard(root / "gitpipe.lock")
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


def fast_import(root: Path, commits: list[tuple[str, dict[str, str]]]) -> None:
    """Write a linear history on `main` with `git fast-import`: (message, files) per
    commit, each a full set of changed files; then check it out."""
    root.mkdir()
    sh(["git", "init", "-q", "-b", "main"], root)
    chunks = []
    for i, (message, files) in enumerate(commits):
        body = message.encode()
        chunks.append(
            f"commit refs/heads/main\nmark :{i + 1}\n"
            f"committer bench <b@b> {1_700_000_000 + i * 60} +0000\n".encode()
            + f"data {len(body)}\n".encode()
            + body
            + b"\n"
        )
        if i:
            chunks.append(f"from :{i}\n".encode())
        for path, text in sorted(files.items()):
            data = text.encode()
            chunks.append(f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n")
        chunks.append(b"\n")
    done = subprocess.run(
        ["git", "fast-import", "--quiet"], cwd=root, env=ENV, input=b"".join(chunks)
    )
    if done.returncode != 0:
        raise SystemExit("git fast-import failed")
    sh(["git", "checkout", "-q", "-f", "main"], root)


def _pipeline(steps: int, lr: dict[int, float], extra: str = "") -> str:
    parts = ['[pipeline]\nname = "bench"\n\n[params]\nseed = 1\n']
    for i in range(steps):
        parts.append(f"[params.s{i}]\nlr = {lr.get(i, 0.1)}\n")
    for i in range(steps):
        deps = f'deps = ["out/{i - 1}.txt"]\n' if i else ""
        parts.append(
            f'[steps.s{i}]\ncmd = "python3 src/s{i}.py{extra if i % 7 == 0 else ""}"\n{deps}'
            f'params = ["s{i}"]\nouts = ["out/{i}.txt"]\n'
        )
    return "\n".join(parts)


def _script(i: int, version: int = 0) -> str:
    return (
        "import json\nimport os\n\nfrom util import helper\n\n"
        f"VERSION = {version}\n"
        f"with open('out/{i}.txt', 'w') as handle:\n"
        "    handle.write(json.dumps(helper(os.environ.get('GITPIPE_PARAMS'))))\n"
    )


def bench_versions(base: Path, quick: bool) -> list[Row]:
    """`gitpipe versions` over a long history of which a tenth touches the pipeline."""
    total, touching, steps = (400, 40, 10) if quick else (2000, 200, 20)
    every = total // touching
    lr: dict[int, float] = {}
    commits: list[tuple[str, dict[str, str]]] = []
    files = {f"src/s{i}.py": _script(i) for i in range(steps)}
    files["src/util.py"] = "def helper(x):\n    return x\n"
    files["gitpipe.toml"] = _pipeline(steps, lr)
    commits.append(("pipeline", dict(files)))
    kinds = 0
    extra = ""
    for i in range(1, total):
        if i % every:
            commits.append((f"data {i}", {f"data/part{i % 50}.csv": f"{i},x\n" * 20}))
            continue
        kinds += 1
        kind = kinds % 4
        if kind == 0:
            lr[kinds % steps] = round(0.1 + kinds / 1000, 4)
            change = {"gitpipe.toml": _pipeline(steps, lr, extra)}
        elif kind == 1:
            change = {f"src/s{kinds % steps}.py": _script(kinds % steps, kinds)}
        elif kind == 2:
            change = {"src/util.py": f"def helper(x):\n    return [x, {kinds}]\n"}
        else:
            extra = f" --v {kinds}"
            change = {"gitpipe.toml": _pipeline(steps, lr, extra)}
        commits.append((f"pipeline change {kinds}", change))
    root = base / "history"
    fast_import(root, commits)
    reps = 3 if quick else 7
    cold, warm = [], []
    for _ in range(reps):
        discard(root / ".gitpipe")
        cold.append(sh([GITPIPE, "versions"], root))
        warm.append(sh([GITPIPE, "versions"], root))
    first_line = subprocess.run(
        [GITPIPE, "versions"], cwd=root, env=ENV, capture_output=True, text=True
    ).stdout.splitlines()[0]
    note = f"{total} commits, {touching} touch the pipeline; {first_line}"
    return [
        measure(f"versions, {total} commits, no cache", "s", cold, note),
        measure(f"versions, {total} commits, cached", "s", warm),
    ]


def bench_diff(base: Path, quick: bool) -> list[Row]:
    """`gitpipe diff HEAD~1 HEAD` on a pipeline of many steps, a tenth of them changed."""
    steps = 50 if quick else 100
    files = {f"src/s{i}.py": _script(i) for i in range(steps)}
    files["src/util.py"] = "def helper(x):\n    return x\n"
    files["gitpipe.toml"] = _pipeline(steps, {})
    changed = {i: 0.5 for i in range(0, steps, 10)}
    second = {"gitpipe.toml": _pipeline(steps, changed, " --fast")}
    second.update({f"src/s{i}.py": _script(i, 1) for i in range(5, steps, 10)})
    root = base / "diff"
    fast_import(root, [("first", files), ("second", second)])
    reps = 3 if quick else 7
    floor = [sh([GITPIPE, "diff", "--help"], root) for _ in range(reps)]
    times = [sh([GITPIPE, "diff", "HEAD~1", "HEAD"], root) for _ in range(reps)]
    worktree = [sh([GITPIPE, "diff"], root) for _ in range(reps)]
    return [
        measure("start-up floor: `gitpipe diff --help`", "s", floor),
        measure(f"diff HEAD~1 HEAD, {steps}-step pipeline", "s", times),
        measure(f"diff HEAD vs working tree, {steps}-step pipeline", "s", worktree),
    ]


def _codebase(steps: int, modules: int, *, by_hand: bool) -> tuple[str, dict[str, str]]:
    """A pipeline of `steps` steps whose scripts share a code base of `modules` modules:
    module i imports module i-1 and one other, each script imports 5 of them."""
    files = {"lib/__init__.py": ""}
    for i in range(modules):
        imports = [f"from lib import m{i - 1}"] if i else []
        if i > 1:
            imports.append(f"from lib import m{(i * 7) % (i - 1)}")
        files[f"lib/m{i}.py"] = "\n".join(imports) + f"\n\nVALUE = {i}\n"
    lines = []
    for n in range(steps):
        used = [(n * 13 + k * 41) % modules for k in range(5)]
        files[f"steps/s{n}.py"] = "".join(f"from lib import m{u}\n" for u in used) + (
            f"open('out/s{n}.txt', 'w').write('{n}')\n"
        )
        cmd, code = f"python3 steps/s{n}.py", ""
        if by_hand:  # as without discovery: `sh -c` hides the script; the code is listed
            cmd = f"sh -c 'python3 steps/s{n}.py'"
            code = f'code = ["steps/s{n}.py", "lib/*.py"]\n'
        lines.append(f'[steps.s{n}]\ncmd = "{cmd}"\nouts = ["out/s{n}.txt"]\n{code}')
    return "\n".join(lines), files


def bench_codebase(base: Path, quick: bool) -> list[Row]:
    """No-op `status` with code discovery against code listed by hand (issue 5)."""
    steps, modules = (100, 50) if quick else (500, 200)
    reps = 3 if quick else 7
    rows = []
    for by_hand in (False, True):
        pipeline, files = _codebase(steps, modules, by_hand=by_hand)
        root = repo(base, "by-hand" if by_hand else "discovered", pipeline, files)
        (root / "out").mkdir()
        (root / ".gitpipe").mkdir()  # as after a first repro: status keeps its caches
        for n in range(steps):
            (root / "out" / f"s{n}.txt").write_text(str(n))
        # the stat cache trusts files only some seconds after they were written
        old = time.time() - 60
        for path in root.rglob("*"):
            if ".git" not in path.parts and path.is_file():
                os.utime(path, (old, old))
        first = sh([GITPIPE, "status"], root)
        samples = [sh([GITPIPE, "status"], root) for _ in range(reps)]
        how = "code listed by hand" if by_hand else "code discovered"
        rows.append(
            measure(
                f"no-op status, {steps} steps, {modules} modules, {how}",
                "s",
                samples,
                f"first status {first:.2f} s",
            )
        )
    return rows


def bench_remote(base: Path, quick: bool) -> list[Row]:
    """Push and pull throughput against a folder remote and a local S3 server, and the
    whole `push` and `checkout --pull` commands against DVC's (benchmarks/remote_cli.py)."""
    import remote as remote_bench  # benchmarks/remote.py, beside this script
    import remote_cli  # the whole commands against DVC's

    rows = [
        measure(r["name"], r["unit"], r["samples"], r["note"])
        for r in remote_bench.bench(base, quick)
    ]
    with remote_bench.s3_server() as endpoint:
        rows += remote_cli.bench(
            base / "commands",
            quick,
            s3_endpoint=endpoint,
            new_bucket=lambda: remote_bench.new_bucket(endpoint),
        )
    return rows


def bench_scaling(base: Path, quick: bool) -> list[Row]:
    """Time per step of a full repro at sizes ten times apart; fails if it grows."""
    import scaling  # benchmarks/scaling.py, beside this script

    return scaling.bench(base, GITPIPE, quick)


BENCHMARKS: dict[str, Callable[[Path, bool], list[Row]]] = {
    "parallel": bench_parallel,
    "overhead": bench_overhead,
    "versions": bench_versions,
    "diff": bench_diff,
    "codebase": bench_codebase,
    "remote": bench_remote,
    "scaling": bench_scaling,
}
#: the benchmarks of issue 8, which run the peers too
COMPARISONS = compare.COMPARISONS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    parser.add_argument("--only", default="", help="comma-separated benchmark names")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    parser.add_argument(
        "--no-peers", action="store_true", help="run gitpipe alone, not DVC, Snakemake, make"
    )
    parser.add_argument(
        "--tmp", type=Path, help="where the workloads go (default: the system's temp folder)"
    )
    parser.add_argument(
        "--reflink-dir",
        type=Path,
        help="also time the restore in this folder, on a file system with reflinks "
        "(an XFS or Btrfs mount: see docs/performance.md)",
    )
    args = parser.parse_args()
    known = [*COMPARISONS, *BENCHMARKS]
    chosen = [name for name in args.only.split(",") if name] or known
    unknown = sorted(set(chosen) - set(known))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(known)}")
    plan = replace(
        compare.Plan.make(quick=args.quick, peers_enabled=not args.no_peers),
        reflink_dir=args.reflink_dir,
    )
    rows: list[Row] = []
    failed: list[str] = []
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gitpipe-bench-", dir=args.tmp) as tmp:
        use_trash(Path(tmp) / "trash")  # deleted with the rest, once nothing is timed
        machine = report.describe_machine(Path(tmp), plan.tools)
        for name in chosen:
            base = Path(tmp) / name
            base.mkdir()
            began = time.perf_counter()
            try:
                if name in COMPARISONS:
                    rows += COMPARISONS[name](base, plan)
                else:
                    rows += BENCHMARKS[name](base, args.quick)
            except SystemExit as exc:  # one broken benchmark must not lose the others
                failed.append(name)
                print(f"benchmark {name} failed: {exc}", file=sys.stderr, flush=True)
            print(f"  {name}: {time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)
            discard(base)
    report.judge(rows, plan)
    took = time.perf_counter() - started
    machine["suite"] = f"{'quick' if args.quick else 'full'}, {took:.0f} s"
    print(report.text(rows, machine))
    if args.markdown:
        args.markdown.write_text(report.markdown(rows, machine))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine,
                    "quick": args.quick,
                    "seconds": took,
                    "peers": {name: tool.version() for name, tool in plan.tools.items()},
                    "rows": [asdict(row) for row in rows],
                },
                indent=2,
            )
        )
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
