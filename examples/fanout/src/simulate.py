"""Estimate pi by throwing random points at the unit square (standard library only)."""

import argparse
import json
import random
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--seed", type=int, required=True)
parser.add_argument("--samples", type=int, required=True)
parser.add_argument("--out", type=Path, required=True)
args = parser.parse_args()

rng = random.Random(args.seed)
inside = sum(1 for _ in range(args.samples) if rng.random() ** 2 + rng.random() ** 2 <= 1.0)
args.out.parent.mkdir(parents=True, exist_ok=True)
args.out.write_text(json.dumps({"seed": args.seed, "samples": args.samples, "inside": inside}))
