"""Fit one model on one dataset's training rows; write its test accuracy as metrics."""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path

from models import MODELS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model", choices=sorted(MODELS))
    parser.add_argument("dataset")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with (Path("data") / f"{args.dataset}.csv").open() as handle:
        rows = [(float(r["x"]), float(r["y"]), int(r["label"])) for r in csv.DictReader(handle)]
    random.Random(args.seed).shuffle(rows)
    cut = len(rows) * 3 // 4
    train, test = rows[:cut], rows[cut:]
    predict = MODELS[args.model](train)
    correct = sum(predict(x, y) == label for x, y, label in test)
    result = {
        "model": args.model,
        "dataset": args.dataset,
        "accuracy": round(correct / len(test), 4),
        "test_rows": len(test),
    }
    out = Path("results") / f"{args.model}-{args.dataset}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
