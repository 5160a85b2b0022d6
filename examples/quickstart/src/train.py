"""Step `train`: fit a ridge regression (least squares with an L2 penalty) to the features.

Its params come from the `[params.train]` table, which the step declares with
`params = ["train"]`: gitpipe passes them as JSON in GITPIPE_PARAMS, and
`gitpipe.params()` reads them back as a nested dict.
"""

import json

from common import read_rows, step_params


def solve(a, b):
    """Solve a x = b by Gaussian elimination with partial pivoting."""
    n = len(b)
    m = [[*row, b[i]] for i, row in enumerate(a)]
    for col in range(n):
        pivot = max(range(col, n), key=lambda r: abs(m[r][col]))
        m[col], m[pivot] = m[pivot], m[col]
        for r in range(col + 1, n):
            factor = m[r][col] / m[col][col]
            for c in range(col, n + 1):
                m[r][c] -= factor * m[col][c]
    x = [0.0] * n
    for r in reversed(range(n)):
        x[r] = (m[r][n] - sum(m[r][c] * x[c] for c in range(r + 1, n))) / m[r][r]
    return x


def main():
    params = step_params()["train"]
    l2 = float(params["l2"])
    features = params["features"]

    rows = read_rows("data/features/train.csv")
    xs = [[1.0] + [float(row[name]) for name in features] for row in rows]
    ys = [float(row["price_k"]) for row in rows]

    # normal equations (X'X + l2 I) w = X'y; the intercept is not penalised
    k = len(xs[0])
    xtx = [[sum(x[i] * x[j] for x in xs) for j in range(k)] for i in range(k)]
    for i in range(1, k):
        xtx[i][i] += l2
    xty = [sum(x[i] * y for x, y in zip(xs, ys, strict=True)) for i in range(k)]
    weights = solve(xtx, xty)

    model = {
        "kind": "ridge",
        "l2": l2,
        "intercept": round(weights[0], 6),
        "weights": {name: round(w, 6) for name, w in zip(features, weights[1:], strict=True)},
    }
    with open("model.json", "w") as handle:
        json.dump(model, handle, indent=2)
        handle.write("\n")
    print(f"trained on {len(rows)} rows with l2={l2}")


if __name__ == "__main__":
    main()
