"""Score the models against evaluate.threshold; write metrics.json and plots/centres.csv."""

import json
import sys
from pathlib import Path

import yaml

threshold = yaml.safe_load(Path("params.yaml").read_text())["evaluate"]["threshold"]
digits = int(sys.argv[sys.argv.index("--digits") + 1])
centres = {
    model.stem: json.loads(model.read_text())["centre"]
    for model in sorted(Path("models").iterdir())
}
score = round(sum(c > threshold for c in centres.values()) / len(centres), digits)
Path("metrics.json").write_text(json.dumps({"score": score, "threshold": threshold}, indent=2))
Path("plots").mkdir(exist_ok=True)
rows = "".join(f"{model},{centre}\n" for model, centre in centres.items())
Path("plots/centres.csv").write_text("model,centre\n" + rows)
