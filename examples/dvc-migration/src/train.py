"""Fit one model (--model mean|median, --smoothing N) to the prepared word lengths."""

import argparse
import json
from pathlib import Path

import yaml

parser = argparse.ArgumentParser()
parser.add_argument("--model")
parser.add_argument("--smoothing", type=int)
args = parser.parse_args()
epochs = yaml.safe_load(Path("params.yaml").read_text())["train"]["epochs"]
sizes = sorted(
    len(word)
    for part in sorted(Path("data/prepared").iterdir())
    for word in json.loads(part.read_text())
)
centre = sum(sizes) / len(sizes) if args.model == "mean" else sizes[len(sizes) // 2]
Path("models").mkdir(exist_ok=True)
out = Path(f"models/{args.model}-{args.smoothing}.json")
out.write_text(json.dumps({"centre": centre + args.smoothing * epochs}))
