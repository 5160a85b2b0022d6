#!/usr/bin/env bash
# Build a small Git history of the quickstart pipeline in a scratch repository, to try
# `gitpipe versions` and `gitpipe diff` on:
#
#     examples/quickstart/make-history.sh [FOLDER]    # default: a new temporary folder
#
# Each commit changes one kind of thing (docs, a param, code, a new step); before
# each, `gitpipe repro` brings the outputs up to date and gitpipe.lock is committed
# with it, so diffs show output digests and metrics as well. Set GITPIPE to the
# gitpipe to use (default: the repository's .venv, else the one on PATH).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
gitpipe="${GITPIPE:-$here/../../.venv/bin/gitpipe}"
if [ ! -x "$gitpipe" ]; then
    gitpipe="$(command -v gitpipe || true)"
fi
if [ -z "$gitpipe" ]; then
    echo "make-history.sh: no gitpipe found; set GITPIPE=/path/to/gitpipe" >&2
    exit 2
fi
gitpipe="$(cd "$(dirname "$gitpipe")" && pwd)/$(basename "$gitpipe")"
target="${1:-$(mktemp -d)/quickstart-history}"
if [ -e "$target" ]; then
    echo "make-history.sh: $target exists already; give a folder that does not" >&2
    exit 2
fi

mkdir -p "$target"
cp -R "$here/src" "$here/gitpipe.toml" "$here/.gitignore" "$target/"
mkdir "$target/data"
cp "$here/data/raw.csv" "$target/data/"
cd "$target"
git init -q -b main
git config user.name "gitpipe quickstart"
git config user.email "quickstart@gitpipe.invalid"
git config commit.gpgsign false

replace() {  # replace FILE OLD NEW: the first OLD in FILE becomes NEW
    python3 - "$@" <<'PY'
import sys

path, old, new = sys.argv[1:]
text = open(path).read()
if old not in text:
    sys.exit(f"make-history.sh: {old!r} is not in {path}")
open(path, "w").write(text.replace(old, new, 1))
PY
}

commit() {  # commit MESSAGE: repro, then commit everything with the lock
    "$gitpipe" repro -q >/dev/null
    git add -A
    git commit -q -m "$1"
    echo "  $(git log -1 --format='%h %s')"
}

echo "Building a history of the quickstart pipeline in $target:"
commit "The quickstart pipeline"

printf '# House prices\n\nA gitpipe pipeline; see gitpipe.toml.\n' > README.md
commit "A README (changes nothing gitpipe versions)"

replace gitpipe.toml "l2 = 1.0 " "l2 = 10.0"
commit "train: a stronger ridge penalty (a param)"

replace src/train.py "xtx[i][i] += l2" "xtx[i][i] += l2 * len(rows) / 100"
commit "train: scale the penalty with the number of rows (code)"

cat > src/report.py <<'PY'
"""Step `report`: the metrics as a Markdown table."""

import json

with open("metrics.json") as handle:
    metrics = json.load(handle)
with open("report.md", "w") as handle:
    handle.write("| metric | value |\n| --- | --- |\n")
    for name, value in sorted(metrics.items()):
        handle.write(f"| {name} | {value} |\n")
PY
cat >> gitpipe.toml <<'TOML'

[steps.report]
desc = "The metrics as a Markdown table."
cmd = "python3 src/report.py"
deps = ["metrics.json"]
outs = ["report.md"]
TOML
echo "/report.md" >> .gitignore
commit "report: a new step"

cat <<EOF

Now try:

  cd $target
  $gitpipe versions
  $gitpipe versions --step train
  $gitpipe diff 1.0.0 2.0.0
  $gitpipe diff HEAD~3 HEAD~1 --md

then change seed in gitpipe.toml, and ask again:

  $gitpipe versions
  $gitpipe diff
EOF
