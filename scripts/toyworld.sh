#!/usr/bin/env bash
# Run the toy-world grid (profiles/toyworld.yaml) with the real pipeline (`dvc repro`) in a
# temporary copy of this repository, leaving this checkout untouched, and print the report.
#
#   bash scripts/toyworld.sh [DIR]        # DIR: where the copy goes (default: a new temp dir)
#   DVC_ARGS="--force" bash scripts/toyworld.sh /tmp/toyrun   # extra `dvc repro` arguments
#
# The copy holds the tracked and untracked-but-not-ignored files (as `git ls-files -co
# --exclude-standard` lists them), becomes its own git repository with params.yaml =
# profiles/toyworld.yaml, and runs `dvc repro`; the table is DIR/metrics/report.md, the
# Figure-1 data DIR/metrics/plots/*.csv, the wall time is printed at the end. Rerunning on
# the same DIR reuses what DVC already built.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
bash "$ROOT/scripts/setup.sh"
DIR="${1:-$(mktemp -d -t toyworld-XXXXXX)}"
source "$ROOT/scripts/lib/sandbox.sh"
sandbox "$ROOT" "$DIR" profiles/toyworld.yaml toyworld
DIR="$SANDBOX"
cd "$DIR"
start=$(date +%s)
dvc repro ${DVC_ARGS:-}
end=$(date +%s)
cat metrics/report.md
echo
echo "toy world grid: $((end - start)) s wall time for 'dvc repro' in $DIR"
