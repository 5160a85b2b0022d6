"""Does gitpipe's time per step stay flat as the pipeline grows? (issue 24)

A binary tree of `cp` steps: step i (1..N) copies step i // 2's output (step 1 copies
the tracked seed), so every output sits in one folder and most steps have two
dependants. At two or three sizes, ten times apart, each in a fresh repository:
`status` before anything ran, a full `repro` (with the bare commands as one `sh`
script beside it), and the first `status` after it; one run each (the 100,000-step
sizes take minutes), with peak memory. Issue 24's targets are marked on their rows.
The benchmark fails loudly (exits non-zero, naming the sizes) when gitpipe's time per
step at the larger size is more than `GROWTH` times that at the smaller: cost that
grows with the number of steps (a scan of everything known, per step) is quadratic
in total.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

from peers import ENV
from timing import Row, Sample, run

#: how much the time per step may grow between two sizes ten times apart
GROWTH = 1.5
SEED = "seed.txt"


def tree(n: int) -> tuple[str, str]:
    """The pipeline file and the bare script of an `n`-step binary tree of `cp`."""

    def dep(i: int) -> str:
        return SEED if i == 1 else f"out/s{i // 2}.txt"

    parts = ['[pipeline]\nname = "tree"\n']
    script = ["set -e", "mkdir -p out"]
    for i in range(1, n + 1):
        cmd = f"cp {dep(i)} out/s{i}.txt"
        parts.append(
            f"[steps.s{i}]\ncmd = {json.dumps(cmd)}\n"
            f"deps = [{json.dumps(dep(i))}]\nouts = [{json.dumps(f'out/s{i}.txt')}]\n"
        )
        script.append(cmd)
    return "\n".join(parts), "\n".join(script) + "\n"


def _git(root: Path, *args: str) -> None:
    done = run(["git", *args], root, env=ENV)
    if not done.ok:
        raise SystemExit(f"git {' '.join(args)} failed in {root}: {done.stderr}")


def _checked(sample: Sample, what: str) -> Sample:
    if not sample.ok:
        raise SystemExit(f"{what} failed ({sample.returncode}): {sample.stderr[-2000:]}")
    return sample


def one_size(base: Path, gitpipe: str, n: int) -> tuple[Sample, Sample, Sample, Sample]:
    """A fresh repository of an `n`-step tree: (full `repro`, the bare commands,
    `status` before anything ran, the first `status` after the `repro`)."""
    pipeline, script = tree(n)
    bare_root, root = base / f"bare-{n}", base / f"tree-{n}"
    for folder in (bare_root, root):
        folder.mkdir()
        (folder / SEED).write_text("seed\n")
    (bare_root / "run.sh").write_text(script)
    bare = _checked(run(["sh", "run.sh"], bare_root, env=ENV), f"bare {n}-step tree")
    (root / "gitpipe.toml").write_text(pipeline)
    (root / ".gitignore").write_text("/out/\n")
    _git(root, "init", "-q")
    _git(root, "add", "-A")
    _git(root, "commit", "-qm", "workload")
    never = _checked(run([gitpipe, "status"], root, env=ENV), f"status of {n}-step tree")
    repro = _checked(run([gitpipe, "repro", "-q"], root, env=ENV), f"repro of {n}-step tree")
    first = _checked(run([gitpipe, "status"], root, env=ENV), f"status after {n}-step repro")
    return repro, bare, never, first


def _judged(row: Row, limit: float, rss_mib: float | None, text: str) -> Row:
    """Issue 24's target for this row: at most `limit` (and `rss_mib` of memory)."""
    row.target = text
    row.met = row.median <= limit and (rss_mib is None or row.extra["max_rss_mib"] <= rss_mib)
    return row


def _timed(name: str, sample: Sample, key: str, note: str = "") -> Row:
    rss = sample.max_rss_mib
    return Row(
        name,
        "s",
        sample.seconds,
        sample.seconds,
        sample.seconds,
        1,
        "; ".join(filter(None, [note, f"peak {rss:.0f} MiB"])),
        {"max_rss_mib": rss},
        key=key,
    )


def bench(base: Path, gitpipe: str, quick: bool) -> list[Row]:
    sizes = (300, 3_000) if quick else (1_000, 10_000, 100_000)
    rows: list[Row] = []
    per_step: dict[int, float] = {}
    for n in sizes:
        repro, bare, never, first = one_size(base, gitpipe, n)
        per_step[n] = (repro.seconds - bare.seconds) / n * 1000
        ratio = repro.seconds / bare.seconds
        row = _timed(
            f"full repro, {n:,}-step binary tree of `cp`",
            repro,
            f"scaling/tree/{n}",
            f"bare commands {bare.seconds:.2f} s, {ratio:.1f}x",
        )
        row.extra["bare"] = bare.seconds
        rows.append(
            _judged(row, 2 * bare.seconds, 300 if n <= 10_000 else 1024, "≤ 2x the bare commands")
        )
        rows.append(
            Row(
                f"gitpipe's own cost per step, {n:,}-step tree",
                "ms",
                per_step[n],
                per_step[n],
                per_step[n],
                1,
                "(full repro - bare commands) / steps",  # no key: a row in ms, not s
            )
        )
        row = _timed(f"status, {n:,}-step tree never run", never, f"scaling/status-never/{n}")
        rows.append(_judged(row, 4.0, 1024, "≤ 4 s, ≤ 1 GiB") if n == 100_000 else row)
        row = _timed(f"first status after the {n:,}-step repro", first, f"scaling/status-first/{n}")
        rows.append(_judged(row, 1.0, None, "≤ 1.0 s") if n == 10_000 else row)
    grown = [
        f"{per_step[big]:.2f} ms per step at {big:,} against {per_step[small]:.2f} at {small:,}"
        for small, big in itertools.pairwise(sizes)
        if per_step[big] > GROWTH * max(per_step[small], 0.05)
    ]
    for row in rows:
        verdict = "" if row.met is None else f" [{'met' if row.met else 'NOT met'}: {row.target}]"
        print(f"  {row.name}: {row.median:.3f} {row.unit} ({row.note}){verdict}", flush=True)
    if grown:
        raise SystemExit(
            f"time per step grows with the number of steps (more than {GROWTH}x): "
            + "; ".join(grown)
        )
    return rows
