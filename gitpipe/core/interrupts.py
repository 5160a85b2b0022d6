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


def interrupt(signum: int, frame: FrameType | None) -> None:
    """The handler: ``KeyboardInterrupt`` now, or as the :func:`held` stretch ends."""
    global _pending
    if _held:
        _pending = signum
        return
    raise KeyboardInterrupt


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
            raise KeyboardInterrupt
