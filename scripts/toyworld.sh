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
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
export PATH="$ROOT/.venv/bin:$PATH" DVC_NO_ANALYTICS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export PYTHONPATH="$DIR/src"   # the copy's code (the venv's editable install points at ROOT)
export GIT_AUTHOR_NAME="${GIT_AUTHOR_NAME:-toyworld}" GIT_AUTHOR_EMAIL="${GIT_AUTHOR_EMAIL:-toyworld@localhost}"
export GIT_COMMITTER_NAME="${GIT_COMMITTER_NAME:-toyworld}" GIT_COMMITTER_EMAIL="${GIT_COMMITTER_EMAIL:-toyworld@localhost}"

(cd "$ROOT" && git ls-files -co --exclude-standard -z) | while IFS= read -r -d '' f; do
  case "$f" in models/*|data/*|metrics/*|dvclive/*|dvc.lock) continue ;; esac
  [ -f "$ROOT/$f" ] || continue
  mkdir -p "$DIR/$(dirname "$f")"
  cp -p "$ROOT/$f" "$DIR/$f"
done
cp "$ROOT/profiles/toyworld.yaml" "$DIR/params.yaml"
cd "$DIR"
if [ ! -d .git ]; then
  git init -q -b main
fi
git add -A
git commit -qm "toy world" --allow-empty
start=$(date +%s)
dvc repro ${DVC_ARGS:-}
end=$(date +%s)
cat metrics/report.md
echo
echo "toy world grid: $((end - start)) s wall time for 'dvc repro' in $DIR"
