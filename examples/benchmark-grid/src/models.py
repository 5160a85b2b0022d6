"""Three small classifiers in pure Python, each `fit(rows) -> predict(x, y) -> label`."""

from __future__ import annotations

from collections.abc import Callable

Row = tuple[float, float, int]
Predict = Callable[[float, float], int]


def knn(rows: list[Row], k: int = 7) -> Predict:
    def predict(x: float, y: float) -> int:
        nearest = sorted(rows, key=lambda r: (r[0] - x) ** 2 + (r[1] - y) ** 2)[:k]
        return int(sum(r[2] for r in nearest) * 2 > k)

    return predict


def centroid(rows: list[Row]) -> Predict:
    centres = {}
    for label in (0, 1):
        mine = [r for r in rows if r[2] == label]
        centres[label] = (sum(r[0] for r in mine) / len(mine), sum(r[1] for r in mine) / len(mine))

    def predict(x: float, y: float) -> int:
        return min(centres, key=lambda c: (centres[c][0] - x) ** 2 + (centres[c][1] - y) ** 2)

    return predict


def perceptron(rows: list[Row], epochs: int = 20) -> Predict:
    w = [0.0, 0.0, 0.0]
    for _ in range(epochs):
        for x, y, label in rows:
            guess = int(w[0] * x + w[1] * y + w[2] > 0)
            step = label - guess
            w = [w[0] + step * x, w[1] + step * y, w[2] + step]

    def predict(x: float, y: float) -> int:
        return int(w[0] * x + w[1] * y + w[2] > 0)

    return predict


def stump(rows: list[Row]) -> Predict:
    """One threshold on one feature: the split that classifies most training rows."""
    best = (0, 0, 0.0, 1)  # (correct, feature, threshold, label above)
    for feature in (0, 1):
        for threshold in sorted({r[feature] for r in rows})[::5]:
            above = sum(r[2] for r in rows if r[feature] > threshold)
            below = sum(r[2] for r in rows if r[feature] <= threshold)
            n_above = sum(1 for r in rows if r[feature] > threshold)
            n_below = len(rows) - n_above
            for label in (0, 1):
                correct = (above if label else n_above - above) + (
                    n_below - below if label else below
                )
                best = max(best, (correct, feature, threshold, label))
    _, feature, threshold, label = best

    def predict(x: float, y: float) -> int:
        return label if (x, y)[feature] > threshold else 1 - label

    return predict


MODELS: dict[str, Callable[[list[Row]], Predict]] = {
    "knn": knn,
    "centroid": centroid,
    "perceptron": perceptron,
    "stump": stump,
}
