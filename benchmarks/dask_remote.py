"""What running dask steps through the remote store costs (issue 23).

    python benchmarks/dask_remote.py              # 100 steps, 256 MiB, 3 repetitions
    python benchmarks/dask_remote.py --quick      # 20 steps, 16 MiB, 1 repetition

Starts a dask scheduler and two one-thread worker processes on 127.0.0.1 (a
``LocalCluster``: the workers see the workspace, so the same cluster serves both
ways of running) and a folder remote, then times:

1. **per-step overhead**: a pipeline of N independent trivial steps (``echo``), run
   with ``--transfer shared`` (in place) and with ``--transfer remote`` (inputs
   fetched into a scratch folder, outputs pushed and pulled back); the difference
   divided by N is what the remote costs per step;
2. **a large output's round trip**: one step writing S MiB (``head -c`` from a file
   of random bytes made beforehand, its only dep), through the remote against in
   place, and beside them a plain ``cp`` of the same file.

Prints a Markdown table; the numbers are quoted in docs/parallel.md.  No timing is
asserted anywhere.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from peers import ENV as PEERS_ENV

GITPIPE = str(Path(sys.executable).parent / "gitpipe")
#: the suite's environment (CI=true, a Git identity), without gitpipe's own settings
ENV = {k: v for k, v in PEERS_ENV.items() if not k.startswith("GITPIPE_")}


def sh(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env or ENV, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed in {cwd}:\n{done.stdout}\n{done.stderr}")
    return took


def workspace(base: Path, name: str, pipeline: str, files: dict[str, bytes]) -> Path:
    root = base / name
    root.mkdir()
    sh(["git", "init", "-q"], root)
    (root / "gitpipe.toml").write_text(pipeline)
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    (root / ".gitignore").write_text("out/\nbig.bin\n")
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-qm", "workload"], root)
    return root


def trivial(steps: int) -> str:
    return "".join(
        f'[steps.s{i}]\ncmd = "echo {i} > out/{i}.txt"\nouts = ["out/{i}.txt"]\n\n'
        for i in range(steps)
    )


BIG = """
[steps.big]
cmd = "head -c {size} data/random.bin > big.bin"
deps = ["data/random.bin"]
outs = ["big.bin"]
"""


def timed_runs(
    base: Path, name: str, pipeline: str, files: dict[str, bytes], how: str, scheduler: str
) -> list[float]:
    times = []
    for rep in range(REPEAT):
        root = workspace(base, f"{name}-{how}-{rep}", pipeline, files)
        remote = base / f"remote-{name}-{how}-{rep}"
        remote.mkdir()
        env = {**ENV, "GITPIPE_REMOTE": str(remote)}
        args = [GITPIPE, "repro", "--backend", "dask", "--scheduler", scheduler, "-j", "2"]
        times.append(sh([*args, "--transfer", how], root, env))
    return times


REPEAT = 3


def main() -> None:
    global REPEAT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    steps, mib = (20, 16) if options.quick else (100, 256)
    REPEAT = 1 if options.quick else 3
    from distributed import LocalCluster

    base = Path(tempfile.mkdtemp(prefix="gitpipe-bench-remote-"))
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    try:
        address = cluster.scheduler_address
        shared = timed_runs(base, "trivial", trivial(steps), {}, "shared", address)
        remote = timed_runs(base, "trivial", trivial(steps), {}, "remote", address)
        size = mib * 1024 * 1024
        data = {"data/random.bin": os.urandom(size)}
        big = BIG.format(size=size)
        big_shared = timed_runs(base, "big", big, data, "shared", address)
        big_remote = timed_runs(base, "big", big, data, "remote", address)
        source = base / "copy-source.bin"
        source.write_bytes(data["data/random.bin"])
        copies = []
        for rep in range(REPEAT):
            start = time.perf_counter()
            shutil.copyfile(source, base / f"copy-{rep}.bin")
            os.sync()
            copies.append(time.perf_counter() - start)
    finally:
        cluster.close()
        shutil.rmtree(base, ignore_errors=True)
    med = statistics.median
    per_step = (med(remote) - med(shared)) / steps * 1000
    print(f"| measure ({REPEAT} repetition(s), median) | seconds |")
    print("| --- | ---: |")
    print(f"| {steps} trivial steps, in place (`--transfer shared`) | {med(shared):.2f} |")
    through = f"{steps} trivial steps, through the remote (`--transfer remote`)"
    print(f"| {through} | {med(remote):.2f} |")
    print(f"| overhead per step through the remote | {per_step:.1f} ms |")
    print(f"| one {mib} MiB output, in place | {med(big_shared):.2f} |")
    print(f"| one {mib} MiB output, through the remote | {med(big_remote):.2f} |")
    print(f"| a plain copy of {mib} MiB (`shutil.copyfile`) | {med(copies):.2f} |")


if __name__ == "__main__":
    main()
