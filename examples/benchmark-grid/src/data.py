"""Write one synthetic two-class dataset as CSV: x, y, label."""

from __future__ import annotations

import argparse
import csv
import math
import random
from pathlib import Path


def points(name: str, n: int, rng: random.Random) -> list[tuple[float, float, int]]:
    rows = []
    for i in range(n):
        label = i % 2
        if name == "moons":  # two interleaved half circles
            angle = rng.uniform(0, math.pi)
            x = math.cos(angle) + (1.0 if label else 0.0)
            y = math.sin(angle) * (-1 if label else 1) + (0.5 if label else 0.0)
        elif name == "blobs":  # two round clouds
            x = rng.gauss(2.0 if label else -2.0, 1.0)
            y = rng.gauss(0.0, 1.0)
        elif name == "xor":  # the label is the sign of x * y
            x, y = rng.uniform(-1, 1), rng.uniform(-1, 1)
            label = int(x * y > 0)
        else:
            raise SystemExit(f"unknown dataset {name!r}")
        rows.append((x + rng.gauss(0, 0.15), y + rng.gauss(0, 0.15), label))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    out = Path("data") / f"{args.name}.csv"
    out.parent.mkdir(exist_ok=True)
    rng = random.Random(f"{args.name}-{args.seed}")
    with out.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["x", "y", "label"])
        for x, y, label in points(args.name, args.n, rng):
            writer.writerow([f"{x:.6f}", f"{y:.6f}", label])


if __name__ == "__main__":
    main()
