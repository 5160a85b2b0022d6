"""Running a Python function step: ``python -m gitpipe.run.fnstep`` in the step's folder.

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


def _numbers(value: Any, prefix: str = "") -> dict[str, Any] | None:
    """A returned dict's scalar values, nested dicts flattened to dotted keys."""
    if not isinstance(value, dict):
        return None
    flat: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, dict):
            flat.update(_numbers(item, name + ".") or {})
        elif isinstance(item, (int, float, bool, str)) and not (
            isinstance(item, float) and not math.isfinite(item)
        ):
            flat[name] = item
    return flat


def main() -> int:
    reference = os.environ["GITPIPE_FN"]
    module_name, _, function_name = reference.partition(":")
    root = os.environ.get("GITPIPE_ROOT", os.getcwd())
    # where discovery looks for modules: the step's folder, the pipeline's, its src/
    for folder in (os.path.join(root, "src"), root, os.getcwd()):
        if os.path.isdir(folder) and folder not in sys.path:
            sys.path.insert(0, folder)
    params = json.loads(os.environ.get("GITPIPE_PARAMS", "{}"))
    failure = os.environ.get("GITPIPE_FAILURE")
    try:
        module = importlib.import_module(module_name)
        function = getattr(module, function_name)
        print(f"gitpipe: calling {reference}({', '.join(sorted(params))})", flush=True)
        returned = function(**params)
    except SystemExit as exc:
        if exc.code in (None, 0):  # sys.exit() or sys.exit(0): a success, returning nothing
            return 0
        traceback.print_exc()
        if failure:
            Path(failure).write_text(f"SystemExit: {exc.code} (in {reference})\n")
        return 1
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
