"""A dask cluster for a run: connecting to its scheduler, and checking that every
worker sees the workspace at the same path (or that its steps go through the remote
store, gitpipe/run/shipping.py)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from gitpipe.core.errors import UsageError


def connect_dask(address: str, root: Path | None = None) -> Any:
    """A client of the dask cluster at ``address``; with ``root``, after checking that
    every worker sees that workspace at the same path (see :func:`check_workers`)."""
    try:
        from distributed import Client
    except ImportError as exc:
        raise UsageError(
            "the dask backend needs the `distributed` package; install gitpipe-ml[dask]"
        ) from exc
    try:
        client = Client(address, timeout="5s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise UsageError(f"cannot reach the dask scheduler at {address} ({exc})") from exc
    if root is not None:
        check_workers(client, root)
    return client


def check_workers(client: Any, root: Path, *, blind_ok: bool = False) -> dict[str, bool]:
    """Every worker must read back a probe file written under ``root/.gitpipe/tmp``;
    closes the client and raises :class:`UsageError` naming the workers that cannot,
    unless ``blind_ok`` (their steps go through the remote store). Returns each
    worker's address with whether it sees the workspace."""
    address = client.scheduler.address
    try:
        workers = client.scheduler_info().get("workers", {})
        if not workers:
            client.wait_for_workers(1, timeout=10)
        probe = root / ".gitpipe" / "tmp" / f"probe-{os.getpid()}-{time.time_ns()}"
        probe.parent.mkdir(parents=True, exist_ok=True)
        token = os.urandom(8).hex()
        probe.write_text(token)
        try:
            seen = client.run(_can_see, str(probe), token)
        finally:
            probe.unlink()
        blind = sorted(worker for worker, ok in seen.items() if not ok)
        if blind and not blind_ok:
            raise UsageError(
                f"dask worker(s) {', '.join(blind)} cannot see the workspace at {root}; "
                "workers must share it at the same path, or configure a remote store "
                "for their steps to go through (see docs/parallel.md)"
            )
        return {str(worker): bool(ok) for worker, ok in seen.items()}
    except UsageError:
        client.close()
        raise
    except Exception as exc:
        client.close()
        raise UsageError(f"cannot use the dask cluster at {address} ({exc})") from exc


def _can_see(path: str, token: str) -> bool:
    try:
        return Path(path).read_text() == token
    except OSError:
        return False
