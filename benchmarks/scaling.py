"""Does gitpipe's time per step stay flat as the pipeline grows? (issue 24)

A binary tree of `cp` steps: step i (1..N) copies step i // 2's output (step 1 copies
the tracked seed), so every output sits in one folder and most steps have two
dependants. At two or three sizes, ten times apart, each in a fresh repository:
`status` before anything ran, a full `repro` (with the bare commands as one `sh`
script beside it), and the first `status` after it, with peak memory. The `repro`
runs once (the 100,000-step one takes minutes); each `status` runs `STATUS_RUNS`
times for a median: the one before anything ran leaves nothing behind (checked), so
each of its runs is a first call in a fresh repository, and before each later run
of the first `status` after the `repro`, the files a `status` writes in `.gitpipe/`
(the stat cache, the parsed-file caches, the snapshot) are put back as the `repro`
left them. Issue 24's targets are marked on their rows: the `repro` rows here, the
two `status` rows (never run at 100,000 steps: ≤ 4 s and ≤ 1 GiB; first after the
10,000-step `repro`: ≤ 1.0 s) by report.judge, on their medians.
The benchmark fails loudly (exits non-zero, naming the sizes) when gitpipe's time per
step at the larger size is more than `GROWTH` times that at the smaller: cost that
grows with the number of steps (a scan of everything known, per step) is quadratic
in total.
"""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

from compare import gitpipe_row
from peers import ENV
from timing import Row, Sample, discard, run

#: how much the time per step may grow between two sizes ten times apart
GROWTH = 1.5
SEED = "seed.txt"
#: runs of each `status` measure (its median is judged)
STATUS_RUNS = 3
#: what a `status` leaves alone in `.gitpipe/` (the rest is put back between its runs)
_KEPT = ("cache", "logs", "lineage.db", "tmp")
#: the key of a row's peak memory (MiB) in its `extra`, as report.judge reads it
MEMORY = "max_rss_mib"


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


def _state_files(state: Path) -> list[Path]:
    return [path for path in sorted(state.iterdir()) if path.name not in _KEPT]


def _put_back(root: Path, saved: Path) -> None:
    """`.gitpipe/` as the `repro` left it, but for what a `status` never writes."""
    state = root / ".gitpipe"
    for path in _state_files(state):
        discard(path)
    for path in _state_files(saved):
        if path.is_dir():
            shutil.copytree(path, state / path.name)
        else:
            shutil.copy2(path, state / path.name)


def one_size(
    base: Path, gitpipe: str, n: int, runs: int = STATUS_RUNS
) -> tuple[Sample, Sample, list[Sample], list[Sample]]:
    """A fresh repository of an `n`-step tree: (full `repro`, the bare commands,
    `runs` of `status` before anything ran, `runs` of the first `status` after the
    `repro`, each on the state the `repro` left)."""
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
    never = []
    for _ in range(runs):
        never.append(_checked(run([gitpipe, "status"], root, env=ENV), f"status of {n}-step tree"))
        if (root / ".gitpipe").exists():
            raise SystemExit(f"`status` of the {n}-step tree never run left .gitpipe/ behind")
    repro = _checked(run([gitpipe, "repro", "-q"], root, env=ENV), f"repro of {n}-step tree")
    saved = base / f"state-{n}"
    state = root / ".gitpipe"
    shutil.copytree(state, saved, ignore=lambda at, names: _KEPT if Path(at) == state else ())
    first = []
    for i in range(runs):
        if i:
            _put_back(root, saved)
        sample = run([gitpipe, "status"], root, env=ENV)
        first.append(_checked(sample, f"status after {n}-step repro"))
    return repro, bare, never, first


def _judged(row: Row, limit: float, rss_mib: float | None, text: str) -> Row:
    """Issue 24's target for this row: at most `limit` (and `rss_mib` of memory)."""
    row.target = text
    row.met = row.median <= limit and (rss_mib is None or row.extra[MEMORY] <= rss_mib)
    return row


def _timed_runs(name: str, samples: list[Sample], key: str) -> Row:
    """The median of several runs, with the largest peak memory among them."""
    rss = max(sample.max_rss_mib for sample in samples)
    note = f"{len(samples)} runs, peak {rss:.0f} MiB"
    return gitpipe_row(key, name, samples, note, memory=MEMORY)


def _timed(name: str, sample: Sample, key: str, note: str = "") -> Row:
    note = "; ".join(filter(None, [note, f"peak {sample.max_rss_mib:.0f} MiB"]))
    return gitpipe_row(key, name, [sample], note, memory=MEMORY)


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
        # issue 24's targets of these two, at 100,000 and 10,000 steps: report.judge
        rows.append(
            _timed_runs(f"status, {n:,}-step tree never run", never, f"scaling/status-never/{n}")
        )
        rows.append(
            _timed_runs(
                f"first status after the {n:,}-step repro", first, f"scaling/status-first/{n}"
            )
        )
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
