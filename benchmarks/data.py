"""Benchmarks of added data (issue 20): `gitpipe add`, `checkout` and a no-op `status`
on big data, timed as whole commands (start-up included), medians of several runs.

    python benchmarks/data.py            # 1 GiB file, 10,000 small files, 5 runs each
    python benchmarks/data.py --quick    # 64 MiB, 1,000 files, 3 runs (a smoke test)
    python benchmarks/data.py --dir /mnt/xfs   # on another file system

Each measure starts from the same state: the store, gitpipe.data and the stat cache
removed, the data file in the page cache (read once before), so that what is timed
is gitpipe's own work and not the disk.  `cp` of the same file to the same file
system is the baseline of a copy.  A no-op `status` is watched with inotify: the
number of times it opens an added file is printed (it must be 0).

Python may write its bytecode cache (``PYTHONDONTWRITEBYTECODE`` is dropped for the
commands), as an installed gitpipe has it: without it every command compiles its
modules again (about 0.1 s).  The rows "in process" time what `add` does to the
file (`Store.ingest`: copied and hashed, or linked in and hashed), no start-up,
against the digest alone in the same kind of process: the floor of any `add`,
since every byte must be hashed.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
GITPIPE = [sys.executable, "-m", "gitpipe"]
PIPELINE = """[pipeline]
name = "bench"

[steps.size]
cmd = "wc -c < big.bin > size.txt"
deps = ["big.bin"]
outs = ["size.txt"]
"""


def sh(args: list[str], cwd: Path) -> float:
    """Run a command; its wall time in seconds (it must succeed)."""
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    took = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {done.stderr.strip()}")
    return took


def median(
    runs: int, before: Callable[[], None], timed: Callable[[], float]
) -> tuple[float, float, float]:
    """(median, min, max) of ``runs`` timings, each after ``before``."""
    samples = []
    for _ in range(runs):
        before()
        samples.append(timed())
    return statistics.median(samples), min(samples), max(samples)


def repo(base: Path) -> Path:
    root = base / "repo"
    root.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=root, check=True)
    (root / "gitpipe.toml").write_text(PIPELINE)
    (root / ".gitignore").write_text("size.txt\n")
    return root


def fresh(root: Path) -> None:
    """Forget every added byte: the store, gitpipe.data, the stat cache and the
    status snapshot; a file left read-only by a link made writable again."""
    shutil.rmtree(root / ".gitpipe", ignore_errors=True)
    (root / "gitpipe.data").unlink(missing_ok=True)
    for path in (root / "big.bin", *(root / "many").rglob("*")):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o644)


def warm(path: Path) -> None:
    with open(path, "rb") as handle:
        while handle.read(1 << 24):
            pass


def write_big(path: Path, size: int) -> None:
    block = os.urandom(1 << 20)
    with open(path, "wb") as handle:
        for i in range(size >> 20):
            handle.write(block[i % 7 :] + block[: i % 7])  # no two blocks alike


def write_many(folder: Path, count: int) -> None:
    for i in range(count):
        sub = folder / f"d{i // 1000:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05d}.bin").write_bytes(os.urandom(1024))


def opens_during(paths: list[Path], action: Callable[[], float]) -> tuple[float, int]:
    """Time ``action`` while inotify counts the opens of ``paths``."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK)
    for path in paths:
        libc.inotify_add_watch(fd, str(path).encode(), 0x20)  # IN_OPEN
    try:
        took = action()
        opens = 0
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                break
            offset = 0
            while offset < len(data):
                length = struct.unpack_from("iIII", data, offset)[3]
                opens += 1
                offset += 16 + length
    finally:
        os.close(fd)
    return took, opens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 MiB, 1,000 files, 3 runs")
    parser.add_argument("--dir", type=Path, default=None, help="where to work (a file system)")
    parser.add_argument("--runs", type=int, default=None)
    args = parser.parse_args()
    size = (64 if args.quick else 1024) << 20
    count = 1_000 if args.quick else 10_000
    runs = args.runs or (3 if args.quick else 5)
    env_path = str(HERE.parent)
    os.environ["PYTHONPATH"] = env_path + os.pathsep + os.environ.get("PYTHONPATH", "")
    os.environ.pop("GITPIPE_CACHE_DIR", None)
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    rows: list[tuple[str, tuple[float, float, float], str]] = []
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="gitpipe-data-bench-") as tmp:
        base = Path(tmp)
        root = repo(base)
        big = root / "big.bin"
        write_big(big, size)
        write_many(root / "many", count)
        label = f"{size >> 20} MiB"

        def cp() -> float:
            (base / "copy.bin").unlink(missing_ok=True)
            return sh(["cp", str(big), str(base / "copy.bin")], base)

        baseline = median(runs, lambda: warm(big), cp)
        rows.append((f"cp of {label} (baseline)", baseline, ""))
        add = median(
            runs, lambda: (fresh(root), warm(big)), lambda: sh([*GITPIPE, "add", "big.bin"], root)
        )
        rows.append((f"add {label}, link = copy", add, f"{add[0] / baseline[0]:.2f}x cp"))
        digest = median(
            runs, lambda: warm(big), lambda: sh([sys.executable, "-c", _DIGEST, str(big)], root)
        )
        rows.append((f"digest of {label} alone (a process reading it once)", digest, ""))

        def stored(link: bool) -> tuple[float, float, float]:
            """``Store.ingest`` of the file, in process, each time into an empty store."""
            code = _ADD.format(link=link)
            return median(runs, lambda: (fresh(root), warm(big)), lambda: timed_inside(root, code))

        inproc = stored(link=False)
        rows.append(
            (
                f"add {label}, link = copy, in process",
                inproc,
                f"the store work: {inproc[0] / baseline[0]:.2f}x cp",
            )
        )
        digest_in = median(runs, lambda: warm(big), lambda: timed_inside(root, _DIGEST_INSIDE))
        rows.append((f"digest of {label} alone, in process", digest_in, "the floor of any add"))
        least = tuple(c + d for c, d in zip(baseline, digest_in, strict=True))
        rows.append(
            (
                "cp + digest in process (what an add by copy must do)",
                (least[0], least[1], least[2]),
                f"add by copy: {add[0] / least[0]:.2f}x that as a command, "
                f"{inproc[0] / least[0]:.2f}x in process",
            )
        )
        hard_in = stored(link=True)
        rows.append(
            (
                f"add {label}, link = hardlink, in process",
                hard_in,
                f"{hard_in[0] / digest_in[0]:.2f}x the digest alone",
            )
        )
        hard = median(
            runs,
            lambda: (fresh(root), warm(big)),
            lambda: sh([*GITPIPE, "add", "--link", "hardlink", "big.bin"], root),
        )
        rows.append((f"add {label}, link = hardlink", hard, "one read: the digest"))
        again = median(
            runs, lambda: None, lambda: sh([*GITPIPE, "add", "--link", "hardlink", "big.bin"], root)
        )
        rows.append((f"add {label} again, unchanged (stat cache)", again, "nothing read"))

        def drop_big() -> None:
            big.unlink(missing_ok=True)

        linked = median(runs, drop_big, lambda: sh([*GITPIPE, "checkout", "big.bin"], root))
        rows.append((f"checkout {label}, link = hardlink", linked, "a link: not read"))
        linked_in = median(runs, drop_big, lambda: timed_inside(root, _CHECKOUT))
        rows.append((f"checkout {label}, link = hardlink, in process", linked_in, ""))
        floor = median(runs, lambda: None, lambda: sh([*GITPIPE, "--help"], root))
        rows.append(("start-up floor: gitpipe --help", floor, ""))
        fresh(root)
        sh([*GITPIPE, "add", "big.bin"], root)
        copied = median(runs, drop_big, lambda: sh([*GITPIPE, "checkout", "big.bin"], root))
        rows.append(
            (f"checkout {label}, link = copy", copied, f"{copied[0] / baseline[0]:.2f}x cp")
        )

        many = median(runs, lambda: fresh(root), lambda: sh([*GITPIPE, "add", "many"], root))
        rows.append((f"add a folder of {count:,} files of 1 KiB", many, ""))

        # a no-op status: the step ran, the data is as recorded; count opens of it
        fresh(root)
        then = time.time() - 3600  # data older than the stat cache's racy window
        os.utime(big, (then, then))
        sh([*GITPIPE, "add", "big.bin"], root)
        sh([*GITPIPE, "repro"], root)
        samples, opens = [], 0
        for _ in range(runs):
            took, seen = opens_during([big], lambda: sh([*GITPIPE, "status"], root))
            samples.append(took)
            opens += seen
        status = (statistics.median(samples), min(samples), max(samples))
        rows.append(
            (f"no-op status, step reading {label} of added data", status, f"{opens} open(s) of it")
        )

    width = max(len(name) for name, _, _ in rows)
    print(f"{'measure':<{width}}  median [min-max]          note")
    for name, (mid, low, high), note in rows:
        print(f"{name:<{width}}  {_s(mid)} [{_s(low)}-{_s(high)}]  {note}")


def timed_inside(root: Path, code: str) -> float:
    """Run ``code`` in a new Python in ``root``; the seconds it prints (what it
    times itself, start-up and imports left out)."""
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"in-process timing failed: {done.stderr.strip()}")
    return float(done.stdout.split()[-1])


def _s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


_DIGEST = "import sys; from gitpipe.core.hashing import digest_file; digest_file(sys.argv[1])"
_DIGEST_INSIDE = (
    "import time; from gitpipe.core.hashing import digest_file; "
    "t = time.perf_counter(); digest_file('big.bin'); print(time.perf_counter() - t)"
)
_CHECKOUT = (
    "import time; from gitpipe.workspace import Project, reproduce; "
    "p = Project.open('.'); t = time.perf_counter(); "
    "p.checkout(['big.bin']); print(time.perf_counter() - t)"
)
_ADD = (
    "import time; from pathlib import Path; from gitpipe.store.objects import Store; "
    "s = Store(Path('.gitpipe/cache')); t = time.perf_counter(); "
    "s.ingest('big.bin', link={link}); print(time.perf_counter() - t)"
)


if __name__ == "__main__":
    main()
