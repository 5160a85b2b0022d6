"""Write a large file of pseudo-random bytes: the stand-in for a feature matrix."""

import argparse
import random
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--megabytes", type=int, required=True)
parser.add_argument("--seed", type=int, required=True)
parser.add_argument("--out", type=Path, required=True)
args = parser.parse_args()

rng = random.Random(args.seed)
args.out.parent.mkdir(parents=True, exist_ok=True)
with args.out.open("wb") as out:
    for _ in range(args.megabytes):
        out.write(rng.randbytes(1024 * 1024))
