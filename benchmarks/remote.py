"""Push/pull throughput of gitpipe's remotes: 1,000 small objects and one 200 MB object,
against a folder remote and a local S3-compatible server (moto's standalone server on
127.0.0.1, spoken to over HTTP by obstore, exactly as a real S3 remote is).

    python benchmarks/remote.py            # 3 repetitions each, medians
    python benchmarks/remote.py --quick    # 1 repetition, 200 objects and 20 MB

Each repetition pushes the whole store to an empty remote (a new folder, or a new
bucket) and pulls it into an empty store, through `gitpipe.store.remote.push/pull` (the
same calls `gitpipe push --all` and `gitpipe pull --all` make, without the start-up
of the command). Pulls re-hash every object before it enters the store.
`bench(base, quick)` gives the rows to benchmarks/run.py.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

from timing import discard

from gitpipe.store.objects import Store
from gitpipe.store.remote import Remote, open_remote, pull, push

MB = 1_000_000


@contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 and a free port, with credentials in the env."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-p", str(port), "-H", "127.0.0.1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    saved = {k: os.environ.get(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=2):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("moto's S3 server did not start") from None
                time.sleep(0.2)
        yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=30)
        for name in ("AWS_REGION", "AWS_ENDPOINT_URL"):
            os.environ.pop(name, None)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def new_bucket(endpoint: str) -> str:
    bucket = f"bench-{uuid.uuid4().hex[:12]}"
    request = urllib.request.Request(f"{endpoint}/{bucket}", method="PUT")
    with urllib.request.urlopen(request, timeout=30):
        pass
    return bucket


def small_store(root: Path, count: int, size: int) -> Store:
    store = Store(root)
    for _ in range(count):
        store.add_bytes(os.urandom(size))
    return store


def big_store(root: Path, size: int) -> Store:
    store = Store(root)
    source = root.parent / f"{root.name}.bin"
    with open(source, "wb") as handle:
        for _ in range(size // MB):
            handle.write(os.urandom(MB))
    from gitpipe.core.hashing import digest_file

    store.add_file(source, digest_file(source))
    discard(source)
    return store


def run(
    base: Path, store: Store, fresh_remote: Callable[[], Remote], reps: int
) -> tuple[list[float], list[float], int]:
    """Seconds per push and per pull over ``reps`` fresh remotes and stores."""
    pushes, pulls, moved = [], [], 0
    for rep in range(reps):
        remote = fresh_remote()
        started = time.perf_counter()
        report = push(store, remote, None, run_cache=False)
        pushes.append(time.perf_counter() - started)
        target = Store(base / f"pulled-{rep}")
        started = time.perf_counter()
        back = pull(target, remote, None, run_cache=False)
        pulls.append(time.perf_counter() - started)
        if back.rejected or back.objects != report.objects:
            raise SystemExit(f"pull from {remote.url} did not bring back what was pushed")
        moved = report.bytes
        discard(target.root)
    return pushes, pulls, moved


def bench(base: Path, quick: bool) -> list[dict[str, object]]:
    """Rows of (name, unit, samples, note) for benchmarks/run.py."""
    reps = 1 if quick else 3
    count, small, big = (200, 4096, 20 * MB) if quick else (1000, 4096, 200 * MB)
    workloads = {
        f"{count} x {small // 1024} KiB": small_store(base / "small", count, small),
        f"1 x {big // MB} MB": big_store(base / "big", big),
    }
    rows: list[dict[str, object]] = []
    with s3_server() as endpoint:
        kinds: dict[str, Callable[[], Remote]] = {}
        folders = iter(range(10**6))

        def folder() -> Remote:
            path = base / f"remote-{next(folders)}"
            path.mkdir()
            return open_remote(str(path), base=base)

        kinds["folder"] = folder
        kinds["s3 (moto)"] = lambda: open_remote(f"s3://{new_bucket(endpoint)}/b", base=base)
        for kind, fresh in kinds.items():
            for label, store in workloads.items():
                n = sum(1 for _ in store.iter_objects())
                pushes, pulls, moved = run(base, store, fresh, reps)
                for verb, samples in (("push", pushes), ("pull", pulls)):
                    median = statistics.median(samples)
                    note = f"{moved / MB / median:,.1f} MB/s"
                    if n > 1:
                        note = f"{n / median:,.0f} objects/s, {note}"
                    rows.append(
                        {
                            "name": f"remote {verb} {kind} {label}",
                            "unit": "s",
                            "samples": samples,
                            "note": note,
                        }
                    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gitpipe-bench-remote-") as tmp:
        rows = bench(Path(tmp), args.quick)
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(
        f"gitpipe remote benchmark ({'quick' if args.quick else 'full'}; {machine}; "
        f"obstore {version('obstore')}, moto {version('moto')})"
    )
    width = max(len(str(row["name"])) for row in rows)
    for row in rows:
        samples = row["samples"]
        assert isinstance(samples, list)
        spread = f"[{min(samples):.3f}-{max(samples):.3f}]" if len(samples) > 1 else ""
        print(
            f"  {row['name']!s:<{width}}  {statistics.median(samples):8.3f} s "
            f"{spread:<15} {row['note']}"
        )


if __name__ == "__main__":
    main()
