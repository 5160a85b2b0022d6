"""Gather every result into one table (Markdown and CSV) and name the best model."""

from __future__ import annotations

import csv
import json
from pathlib import Path


def main() -> None:
    results = [json.loads(p.read_text()) for p in sorted(Path("results").glob("*.json"))]
    models = sorted({r["model"] for r in results})
    datasets = sorted({r["dataset"] for r in results})
    score = {(r["model"], r["dataset"]): r["accuracy"] for r in results}
    lines = [
        "| model | " + " | ".join(datasets) + " | mean |",
        "| --- |" + " ---: |" * (len(datasets) + 1),
    ]
    means = {}
    for model in models:
        values = [score.get((model, d)) for d in datasets]
        known = [v for v in values if v is not None]
        means[model] = sum(known) / len(known)
        cells = " | ".join("" if v is None else f"{v:.3f}" for v in values)
        lines.append(f"| {model} | {cells} | {means[model]:.3f} |")
    Path("report.md").write_text("\n".join(lines) + "\n")
    with Path("report.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", "dataset", "accuracy"])
        for r in results:
            writer.writerow([r["model"], r["dataset"], r["accuracy"]])
    best = max(means, key=means.__getitem__)
    Path("best.json").write_text(
        json.dumps({"best_model": best, "best_accuracy": round(means[best], 4)}, indent=2) + "\n"
    )


if __name__ == "__main__":
    main()
