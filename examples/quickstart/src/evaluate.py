"""Step `evaluate`: score the model on the held-out test rows; write metrics.json.

gitpipe records the numbers in metrics.json (a `metrics` output) in gitpipe.lock,
so a commit's metrics can be read back without running anything.
"""

import json
import math

from common import read_rows


def main():
    with open("model.json") as handle:
        model = json.load(handle)
    rows = read_rows("data/features/test.csv")

    errors = []
    ys = []
    for row in rows:
        guess = model["intercept"] + sum(
            weight * float(row[name]) for name, weight in model["weights"].items()
        )
        y = float(row["price_k"])
        errors.append(guess - y)
        ys.append(y)

    mean_y = sum(ys) / len(ys)
    total = sum((y - mean_y) ** 2 for y in ys)
    squared = sum(e * e for e in errors)
    metrics = {
        "rows": len(rows),
        "mae": round(sum(abs(e) for e in errors) / len(errors), 4),
        "rmse": round(math.sqrt(squared / len(errors)), 4),
        "r2": round(1 - squared / total, 4),
    }
    with open("metrics.json", "w") as handle:
        json.dump(metrics, handle, indent=2, sort_keys=True)
        handle.write("\n")
    print(json.dumps(metrics, sort_keys=True))


if __name__ == "__main__":
    main()
