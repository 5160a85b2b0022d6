"""Running a Python function step: ``python -m gitpipe.fnstep`` in the step's folder.

The runner starts this module in a fresh interpreter for each `fn` step, so the
function always sees the code as it is now (a reused worker would keep modules
imported by an earlier step), and Ctrl-C, timeouts and logs work as for commands.

The function is called with the step's params as keyword arguments; `GITPIPE_*` is
in the environment.  A returned dict of numbers is written as JSON to
``GITPIPE_RETURN`` (and recorded as the step's metrics); an exception is printed
with its traceback (to the step's log) and summarised in one line in
``GITPIPE_FAILURE``.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import sys
import traceback
from pathlib import Path
from typing import Any


def _numbers(value: Any) -> dict[str, Any] | None:
    if not isinstance(value, dict):
        return None
    return {
        str(key): item
        for key, item in value.items()
        if isinstance(item, (int, float, bool, str))
        and not (isinstance(item, float) and not math.isfinite(item))
    }


def main() -> int:
    reference = os.environ["GITPIPE_FN"]
    module_name, _, function_name = reference.partition(":")
    root = os.environ.get("GITPIPE_ROOT", os.getcwd())
    for folder in (root, os.getcwd()):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    params = json.loads(os.environ.get("GITPIPE_PARAMS", "{}"))
    failure = os.environ.get("GITPIPE_FAILURE")
    try:
        module = importlib.import_module(module_name)
        function = getattr(module, function_name)
        print(f"gitpipe: calling {reference}({', '.join(sorted(params))})", flush=True)
        returned = function(**params)
    except BaseException as exc:
        traceback.print_exc()
        if failure:
            where = reference if not isinstance(exc, (ImportError, AttributeError)) else "import"
            line = (
                f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
            )
            Path(failure).write_text(f"{line} (in {where})\n", encoding="utf-8")
        return 1
    values = _numbers(returned)
    target = os.environ.get("GITPIPE_RETURN")
    if values is not None and target:
        Path(target).write_text(json.dumps(values, sort_keys=True), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
