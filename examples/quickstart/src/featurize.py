"""Step `featurize`: turn the prepared rows into standardised features.

Each feature is centred and scaled with the mean and spread of the training rows
only, so that nothing about the test rows leaks into the model.
"""

import csv
import json
import math
from pathlib import Path

TARGET = "price_k"


def features(row):
    area = float(row["area_m2"])
    rooms = float(row["rooms"])
    return {
        "area_m2": area,
        "rooms": rooms,
        "age_years": float(row["age_years"]),
        "distance_km": float(row["distance_km"]),
        "area_per_room": area / rooms,
    }


def read(path):
    with open(path, newline="") as handle:
        return [(features(row), float(row[TARGET])) for row in csv.DictReader(handle)]


def main():
    train = read("data/prepared/train.csv")
    test = read("data/prepared/test.csv")
    names = list(train[0][0])
    scale = {}
    for name in names:
        values = [x[name] for x, _ in train]
        mean = sum(values) / len(values)
        spread = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values)) or 1.0
        scale[name] = {"mean": round(mean, 6), "std": round(spread, 6)}

    out = Path("data/features")
    out.mkdir(parents=True, exist_ok=True)
    for split, rows in (("train", train), ("test", test)):
        with open(out / f"{split}.csv", "w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow([*names, TARGET])
            for x, y in rows:
                z = [(x[n] - scale[n]["mean"]) / scale[n]["std"] for n in names]
                writer.writerow([f"{v:.6f}" for v in z] + [y])
    (out / "scale.json").write_text(json.dumps(scale, indent=2, sort_keys=True) + "\n")
    print(f"{len(names)} features, {len(train)} train rows, {len(test)} test rows")


if __name__ == "__main__":
    main()
