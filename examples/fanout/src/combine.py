"""Combine the simulations into one estimate of pi, written as a metrics file."""

import json
import math
import sys
from pathlib import Path

runs = [json.loads(Path(path).read_text()) for path in sys.argv[1:]]
samples = sum(run["samples"] for run in runs)
estimate = 4 * sum(run["inside"] for run in runs) / samples
Path("estimate.json").write_text(
    json.dumps(
        {"pi": round(estimate, 6), "error": round(abs(estimate - math.pi), 6), "samples": samples},
        indent=2,
    )
    + "\n"
)
