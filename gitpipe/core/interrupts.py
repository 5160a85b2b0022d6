"""Ctrl-C and SIGTERM, held back while the scheduler hands a step to a worker.

Python raises ``KeyboardInterrupt`` in the main thread at whatever bytecode it is
running when the signal arrives.  Between a pool accepting a step and the executor
noting the step's future, that loses the step: it runs on, nobody stops its command,
and the process cannot exit until the command ends by itself (a worker thread is
joined at exit).  :func:`held` marks such a stretch: a signal arriving inside it is
noted, and the interrupt is raised as the stretch ends, once the step is known.

The handler is the one the console script installs for SIGINT and SIGTERM
(:func:`install`); :func:`catching` installs it for the length of a run where the
process still has Python's own Ctrl-C handler (the library, called from a script).
A handler someone else installed is left alone, and then :func:`held` holds nothing.

Only the first signal of a run stops it.  Within :func:`stopping` (a whole run, from
its first step to its record in the lock and lineage), a signal after the one that
was raised is never raised: the run is stopping already, and raising again would
abandon that stop half-way (a command that ignores SIGTERM left running, the lock
and lineage of the steps that finished never written).  It only cuts the grace
short (:func:`hurried`): what still runs is killed at once instead of after 5 s.

    first signal ──> KeyboardInterrupt ──> stop the steps: SIGTERM, wait the grace
                                             │              ──> SIGKILL what is left
    second signal ──> noted, not raised ─────┘ (the wait ends at once)
                                             └─> lock, lineage written; exit 130
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

_SIGNALS = (signal.SIGINT, signal.SIGTERM)

#: how many :func:`held` stretches the main thread is in, and a signal that came then
_held = 0
_pending: int | None = None
#: how many :func:`stopping` scopes the main thread is in, and whether one interrupt
#: was raised in them already
_scoped = 0
_raised = False
#: set by a signal after the first, in a :func:`stopping` scope: the grace is cut short
_hurry = threading.Event()


def interrupt(signum: int, frame: FrameType | None) -> None:
    """The handler: ``KeyboardInterrupt`` now, or as the :func:`held` stretch ends;
    a signal after the first in a :func:`stopping` scope only hurries the stop."""
    global _pending
    if _raised:
        _hurry.set()
        return
    if _held:
        _pending = signum
        return
    _raise()


def _raise() -> None:
    global _raised
    if _scoped:
        _raised = True
    raise KeyboardInterrupt


def hurried() -> bool:
    """Whether a second signal asked the stop under way not to wait (any thread)."""
    return _hurry.is_set()


def install() -> None:
    """Make SIGINT and SIGTERM interrupt the main thread (SIGTERM as cleanly as Ctrl-C)."""
    for number in _SIGNALS:
        signal.signal(number, interrupt)


@contextmanager
def catching() -> Iterator[None]:
    """Within: this module's handler for a signal that still has Python's defaults
    (SIGINT's ``default_int_handler``); the handlers before are put back after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = {n: signal.getsignal(n) for n in _SIGNALS}
    swapped = {n for n, h in before.items() if h in (signal.default_int_handler,)}
    for number in swapped:
        signal.signal(number, interrupt)
    try:
        yield
    finally:
        for number in swapped:
            signal.signal(number, before[number])


@contextmanager
def held() -> Iterator[None]:
    """Within: an interrupt waits, and is raised as the outermost stretch ends (over
    an error raised inside, which it carries as its context).  In any thread but the
    main one this holds nothing: signals are handled in the main thread only."""
    global _held, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _held += 1
    try:
        yield
    finally:
        _held -= 1
        if not _held and _pending is not None:
            _pending = None
            _raise()


@contextmanager
def stopping() -> Iterator[None]:
    """Within (a run, from its first step until the lock and lineage have its end):
    the first interrupt is raised, any after it only cuts the stop's grace short
    (:func:`hurried`); this module's handler is installed as :func:`catching` does.
    As the outermost scope ends, signals interrupt again.  In any thread but the main
    one this does nothing."""
    global _scoped, _raised
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _scoped += 1
    try:
        with catching():
            yield
    finally:
        _scoped -= 1
        if not _scoped:
            _raised = False
            _hurry.clear()
