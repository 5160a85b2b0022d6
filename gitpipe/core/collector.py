"""Python's cyclic garbage collector, paused while a large pipeline is built.

A pipeline of 100,000 steps is a few million objects made in one go (the parsed
TOML, the steps, the graph), none of them garbage and none in a cycle.  Python's
collector walks each container it allocates when its youngest generation fills,
again in the middle one, and again in every collection of the oldest: a sixth of a
`status` of such a pipeline never run.  :func:`paused` stops it while the pipeline is
built; afterwards, in the console script (which says so with :func:`for_command`),
what survived is frozen (``gc.freeze``): moved out of reach of every later
collection, as the process ends soon.  A notebook or script that imports gitpipe
has its collector started again as it was and nothing frozen.

Cycles made while paused are collected at the next collection, or, frozen, when the
process ends: building the pipeline makes none but those of an error being raised.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_freeze = False  # whether :func:`paused` freezes what it built (the console script)


def for_command() -> None:
    """Say that this process is one gitpipe command: what :func:`paused` built lives
    until it ends, so it is frozen, never walked again."""
    global _freeze
    _freeze = True


@contextmanager
def paused() -> Iterator[None]:
    """No collection while the block runs; the collector as it was afterwards."""
    if not gc.isenabled():  # already stopped by the caller: theirs to start again
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        if _freeze:
            gc.freeze()
        gc.enable()
