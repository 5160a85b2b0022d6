"""The words for a step's state, defined once.

`status` says whether a step is up to date, stale, frozen or skipped; a run says
what it did with each step (ran, cached, failed, ...); a dry run what it would do.
Every module, view and the lineage database use these words and no others.  They
are plain strings (not an enum) on purpose: they go into JSON, SQLite rows and the
status snapshot (``marshal``) as they are, and print as themselves.
"""

from __future__ import annotations

#: ``typing.TYPE_CHECKING``, without importing `typing` on the way of a no-op status
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

# what `gitpipe status` says of a step
UP_TO_DATE: Final = "up to date"
STALE: Final = "stale"
FROZEN: Final = "frozen"  # `frozen = true`: never runs
SKIPPED: Final = "skipped"  # held back by a failed step, or its `when` condition is false

# what a run did with a step
RAN: Final = "ran"
CACHED: Final = "cached"  # restored from the store
FAILED: Final = "failed"
WAITING: Final = "waiting for approval"  # `approval = true`, and nobody approved this key
INTERRUPTED: Final = "interrupted"  # running when Ctrl-C or SIGTERM stopped the run

# what a dry run (`repro -n`) says it would do
WOULD_RUN: Final = "would run"
WOULD_RESTORE: Final = "would restore"

#: what a status line may say
STATUS_STATES: Final = frozenset({UP_TO_DATE, STALE, FROZEN, SKIPPED})
#: what a run may record of a step
RUN_STATES: Final = frozenset(
    {RAN, CACHED, UP_TO_DATE, FAILED, SKIPPED, WAITING, FROZEN, INTERRUPTED}
)
