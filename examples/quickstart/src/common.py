"""Helpers shared by several steps.

gitpipe finds this module by itself: `train.py` and `evaluate.py` import it, so it
is part of those two steps' code. Edit a function here and both re-run; edit a
comment and neither does.
"""

import csv
import json
import os


def read_rows(path):
    """The rows of a CSV file, as dicts."""
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def step_params():
    """This step's params (`gitpipe.params()`), also under a python3 without gitpipe."""
    try:
        import gitpipe
    except ImportError:
        return json.loads(os.environ.get("GITPIPE_PARAMS") or "{}")
    return gitpipe.params()
