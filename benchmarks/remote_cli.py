"""`gitpipe push` and `gitpipe checkout --pull` against `dvc push` and `dvc pull`, as
whole commands, on one step's 1,000 x 4 KiB outputs (issue 24's push/pull target).

    python benchmarks/run.py --only remote          # these rows and remote.py's
    python benchmarks/remote_cli.py [--quick]       # these rows alone

One Git repository per tool holds one step writing `out/` of 1,000 random 4 KiB files,
run once. Then, in turns (gitpipe, DVC, gitpipe, ...), each repetition:

- push: the remote emptied (not timed), then `gitpipe push --remote R` against
  `dvc push` (a `dvc remote add -d` folder);
- pull until the outputs are in the workspace: the store and `out/` removed (not
  timed), then `gitpipe checkout --pull --remote R` (fetch what the lock names, put
  it in place) against `dvc pull` (fetch and checkout).

Against a local S3-compatible server (moto, as benchmarks/remote.py starts it) gitpipe
runs alone when DVC's S3 support (`dvc[s3]`) is not installed beside it; the peer's
cell says so. DVC is found as benchmarks/peers.py finds it ($GITPIPE_PEERS_BIN).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import peers
from peers import ENV, NOT_INSTALLED
from timing import Result, Row, Sample, discard, run, use_trash

GITPIPE = str(Path(sys.executable).parent / "gitpipe")
FILES = 1_000
SIZE = 4096

GENERATE = f"""import os
os.makedirs("out", exist_ok=True)
for i in range({FILES}):
    with open(f"out/{{i:04d}}.bin", "wb") as handle:
        handle.write(os.urandom({SIZE}))
"""
GITPIPE_PIPELINE = '[steps.gen]\ncmd = "python3 gen.py"\ndeps = ["gen.py"]\nouts = ["out/"]\n'
DVC_PIPELINE = "stages:\n  gen:\n    cmd: python3 gen.py\n    deps: [gen.py]\n    outs: [out]\n"


def _ok(args: list[str], cwd: Path, env: dict[str, str]) -> Sample:
    sample = run(args, cwd, env=env, timeout=300)
    if not sample.ok:
        raise SystemExit(f"{' '.join(args)} failed in {cwd}:\n{sample.stdout}\n{sample.stderr}")
    return sample


def _empty(folder: Path) -> None:
    discard(folder)
    folder.mkdir(parents=True)


def _repo(root: Path, files: dict[str, str]) -> Path:
    peers.new_repo(root, {"gen.py": GENERATE, ".gitignore": "/out/\n", **files})
    return root


def _dvc_supports_s3(dvc: str) -> bool:
    done = subprocess.run([dvc, "version"], env=ENV, capture_output=True, text=True)
    return "s3 (" in done.stdout


def _row(key: str, name: str, ours: list[float], theirs: Result, note: str) -> Row:
    mine = Result.of(ours)
    assert mine.median is not None and mine.low is not None and mine.high is not None
    row = Row(name, "s", mine.median, mine.low, mine.high, mine.runs, note, key=key)
    row.peers["DVC"] = theirs
    return row


def bench(
    base: Path, quick: bool, *, s3_endpoint: str | None = None, new_bucket: Callable[[], str]
) -> list[Row]:
    """Rows ``push/folder/1000`` and ``pull/folder/1000`` (and ``.../s3/...`` when an
    S3 endpoint is given), each gitpipe against DVC measured in turns."""
    reps = 3 if quick else 7
    # the S3 server's endpoint and credentials, set in this process after peers.ENV was made
    env = {**ENV, **{k: v for k, v in os.environ.items() if k.startswith("AWS_")}}
    gp = _repo(base / "gitpipe", {"gitpipe.toml": GITPIPE_PIPELINE})
    _ok([GITPIPE, "repro", "-q"], gp, env)
    dvc = peers.find_program("dvc")
    droot = None
    if dvc:
        droot = _repo(base / "dvc", {})
        _ok([dvc, "init", "-q"], droot, env)
        (droot / "dvc.yaml").write_text(DVC_PIPELINE)
        _ok([dvc, "remote", "add", "-d", "bench", str(base / "dvc-remote")], droot, env)
        _ok([dvc, "repro", "-q"], droot, env)
    rows: list[Row] = []
    kinds: list[tuple[str, str, Callable[[], str]]] = [("folder", "folder", lambda: "")]
    if s3_endpoint:
        kinds.append(("s3", "S3 (moto)", new_bucket))
    for kind, label, bucket in kinds:
        pushes, pulls, dvc_pushes, dvc_pulls = [], [], [], []
        dvc_why = NOT_INSTALLED
        if dvc and kind == "s3" and not _dvc_supports_s3(dvc):
            dvc_why = "not installed (dvc[s3])"
        for _ in range(reps):
            if kind == "folder":
                url = str(base / "gitpipe-remote")
                _empty(Path(url))
            else:
                url = f"s3://{bucket()}/store"
            pushes.append(_ok([GITPIPE, "push", "--remote", url], gp, env).seconds)
            discard(gp / ".gitpipe" / "cache")
            discard(gp / "out")
            pulls.append(_ok([GITPIPE, "checkout", "--pull", "--remote", url], gp, env).seconds)
            if dvc and droot and kind == "folder":
                _empty(base / "dvc-remote")
                dvc_pushes.append(_ok([dvc, "push", "-q"], droot, env).seconds)
                discard(droot / ".dvc" / "cache")
                discard(droot / "out")
                dvc_pulls.append(_ok([dvc, "pull", "-q"], droot, env).seconds)
        theirs = {
            "push": Result.of(dvc_pushes, "dvc push") if dvc_pushes else Result.failed(dvc_why),
            "pull": Result.of(dvc_pulls, "dvc pull") if dvc_pulls else Result.failed(dvc_why),
        }
        what = f"{FILES} x {SIZE // 1024} KiB, {label} remote"
        rows.append(_row(f"push/{kind}/{FILES}", f"push {what}", pushes, theirs["push"], ""))
        rows.append(
            _row(
                f"pull/{kind}/{FILES}",
                f"pull + restore {what}",
                pulls,
                theirs["pull"],
                "gitpipe checkout --pull",
            )
        )
    return rows


def main() -> None:
    import tempfile

    import remote as remote_bench  # benchmarks/remote.py: the moto server

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="gitpipe-bench-remote-cli-") as tmp,
        remote_bench.s3_server() as endpoint,
    ):
        use_trash(Path(tmp) / "trash")  # deleted with the rest, once nothing is timed
        rows = bench(
            Path(tmp),
            args.quick,
            s3_endpoint=endpoint,
            new_bucket=lambda: remote_bench.new_bucket(endpoint),
        )
    for row in rows:
        dvc = row.peers["DVC"]
        versus = (
            f"dvc {dvc.median:.3f} s, {dvc.median / row.median:.1f}x"
            if dvc.median is not None
            else f"dvc {dvc.error}"
        )
        print(f"{row.name:<55} {row.median:.3f} s [{row.low:.3f}-{row.high:.3f}]  {versus}")


if __name__ == "__main__":
    main()
