"""The params of the step this process runs for, as gitpipe passed them.

gitpipe puts a step's params in ``GITPIPE_PARAMS`` (JSON) when it starts the step;
`gitpipe.params()`, called inside every step that reads its params, reads them
here.  It runs once per step process, so it imports only ``json`` and ``os``."""

from __future__ import annotations

import json
import os
from typing import Any

from gitpipe.core.errors import UsageError

#: the environment variable a step's params come in
ENV = "GITPIPE_PARAMS"


def current_params() -> dict[str, Any]:
    """The params of the step this process runs for (``GITPIPE_PARAMS``); {} outside one."""
    raw = os.environ.get(ENV)
    if not raw:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise UsageError(f"{ENV} is not valid JSON") from exc
    return value if isinstance(value, dict) else {}
