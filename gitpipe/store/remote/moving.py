"""What every transfer shares: the work of many threads, its progress, and its report.

:func:`each` runs one phase of a push or pull on a thread pool (:func:`thread_pool`)
and hands back what became of each item in a fixed order: a value, or
:class:`Rejected` (failed verification; :class:`Damaged`: this copy's bytes are not
its digest's, another copy may be good) or :class:`Missing` (the sending side lacks
it). :func:`tally` counts an object's fate into the :class:`TransferReport`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from gitpipe.core.hashing import Digest


@dataclass(frozen=True, slots=True)
class Progress:
    """How far one phase of a transfer is: ``done`` of ``total`` items, ``bytes`` moved.

    Phases: ``checking`` (what the remote has), ``results``, ``objects``,
    ``folder files`` (the files that folders' manifests list) and ``other copies``
    (objects whose first copy on a remote was damaged or gone, from the next)."""

    phase: str
    done: int
    total: int
    bytes: int = 0


ProgressListener = Callable[[Progress], None]


def ignore_progress(progress: Progress) -> None:
    """The listener that listens to nothing."""
    return None


@dataclass(frozen=True, slots=True)
class Rejection:
    """Something refused: ``what`` (``object b3:…`` or ``result b3:…``) and why."""

    what: str
    reason: str

    def __str__(self) -> str:
        return f"{self.what} ({self.reason})"


@dataclass(slots=True)
class TransferReport:
    """What a push or pull did. ``objects``/``results`` were transferred; ``*_present``
    were on the receiving side already; ``unavailable`` were wanted but the sending
    side lacks them; ``rejected`` failed verification and were not written;
    ``skipped`` are pack indexes on the remote that were not used (the pack they name
    is not there, or the index cannot be read) and that no wanted object needed:
    warnings, not errors."""

    direction: str  # push | pull
    url: str
    objects: int = 0
    bytes: int = 0
    objects_present: int = 0
    results: int = 0
    results_present: int = 0
    unavailable: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    skipped: list[Rejection] = field(default_factory=list)
    duration: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "remote": self.url,
            "objects": self.objects,
            "bytes": self.bytes,
            "objects_present": self.objects_present,
            "results": self.results,
            "results_present": self.results_present,
            "unavailable": list(self.unavailable),
            "rejected": [{"what": r.what, "reason": r.reason} for r in self.rejected],
            "skipped": [{"what": r.what, "reason": r.reason} for r in self.skipped],
            "duration": round(self.duration, 3),
        }


class Rejected(Exception):
    """Something from the other side failed verification."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Damaged(Rejected):
    """A copy from the other side whose bytes are not its digest's: another copy of
    the same object may be good."""


class Missing(Exception):
    """The sending side does not have it."""


@contextlib.contextmanager
def thread_pool(jobs: int) -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="gitpipe-remote")
    try:
        yield pool
    except BaseException:
        # an error or Ctrl-C: start nothing more; what runs finishes and tidies itself
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def each(
    pool: ThreadPoolExecutor,
    items: Collection[Any],
    work: Callable[[Any], tuple[Any, int]],
    phase: str,
    progress: ProgressListener,
) -> Iterator[tuple[Any, Any]]:
    """Run ``work`` on every item in the pool, reporting progress from this thread as
    each finishes; then yield (item, value or Rejected or Missing) in the items'
    order, so that a report says the same whichever thread was quicker. Any other
    error stops the phase: what has not started is cancelled."""
    if not items:
        return
    futures = {pool.submit(work, item): item for item in items}
    total, done, moved = len(futures), 0, 0
    progress(Progress(phase, 0, total, 0))
    outcomes: dict[Future[tuple[Any, int]], Any] = {}
    try:
        for future in as_completed(futures):
            try:
                value, size = future.result()
            except (Rejected, Missing) as exc:
                value, size = exc, 0
            done += 1
            moved += size
            progress(Progress(phase, done, total, moved))
            outcomes[future] = value
    finally:
        for future in futures:
            future.cancel()
    for future, item in futures.items():
        yield item, outcomes[future]


def tally(report: TransferReport, digest: Digest, value: Any) -> bool:
    """Count what became of one object (its size, or Rejected, or Missing) in the
    report; True when it moved."""
    if isinstance(value, Rejected):
        report.rejected.append(Rejection(f"object {digest}", value.reason))
        return False
    if isinstance(value, Missing):
        report.unavailable.append(f"object {digest}")
        return False
    report.objects += 1
    report.bytes += value
    return True
