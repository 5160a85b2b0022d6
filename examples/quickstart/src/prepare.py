"""Step `prepare`: drop incomplete rows from data/raw.csv and split it into train and test.

Reads its params from the command line: gitpipe writes them into the command with
${params.seed} and ${params.test_fraction}.
"""

import argparse
import csv
import math
import random
from pathlib import Path

COLUMNS = ["area_m2", "rooms", "age_years", "distance_km", "price_k"]


def is_complete(row):
    try:
        return all(math.isfinite(float(row[column])) for column in COLUMNS)
    except (KeyError, TypeError, ValueError):
        return False


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--test-fraction", type=float, required=True)
    args = parser.parse_args()

    with open("data/raw.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if is_complete(row)]
    random.Random(args.seed).shuffle(rows)
    n_test = round(len(rows) * args.test_fraction)
    splits = {"test": rows[:n_test], "train": rows[n_test:]}

    out = Path("data/prepared")
    out.mkdir(parents=True, exist_ok=True)
    for name, part in splits.items():
        with open(out / f"{name}.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["id", *COLUMNS], lineterminator="\n")
            writer.writeheader()
            writer.writerows(part)
        print(f"{name}: {len(part)} rows")


if __name__ == "__main__":
    main()
