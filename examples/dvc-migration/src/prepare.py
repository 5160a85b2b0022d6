"""Keep the words of one region (argv[1]) at least prepare.min_length long."""

import json
import sys
from pathlib import Path

import yaml

region = sys.argv[1]
least = yaml.safe_load(Path("params.yaml").read_text())["prepare"]["min_length"]
words = Path(f"data/{region}.csv").read_text().split()[1:]
Path("data/prepared").mkdir(parents=True, exist_ok=True)
kept = [w for w in words if len(w) >= least]
Path(f"data/prepared/{region}.json").write_text(json.dumps(kept))
