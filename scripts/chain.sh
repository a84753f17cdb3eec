#!/usr/bin/env bash
# The chained-updates evidence: the toy-world chain (profiles/updates-toyworld.yaml, three monthly
# updates) as `dvc exp run` experiments over training seeds and replay shares, in a temporary copy
# of this repository (this checkout stays untouched), and a table over seeds.
#
#   bash scripts/chain.sh [DIR] ["SEEDS"] ["REPLAYS"]     # defaults: a new temp dir, "0 1 2", "0.0 0.25"
#
# Each experiment sets chain.cpt.train.seed and chain.cpt.train.replay_fraction and reproduces
# the chain's targets (promote@main chain-report@main): the ancestor pair, the crawls and the
# windows are built once and reused by every experiment (DVC's run cache); the chain's cpt,
# merges, evals and gates run per experiment. The per-experiment report is in the experiment's
# metrics/chain/; DIR/metrics/chain/seeds.md is the table over seeds (mean ± standard error over
# seeds, per replay share), printed at the end with the wall time of every experiment.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
[ -n "${FRESHLLM_NO_SETUP:-}" ] || bash "$ROOT/scripts/setup.sh"
DIR="${1:-$(mktemp -d -t chain-XXXXXX)}"
SEEDS="${2:-0 1 2}"
REPLAYS="${3:-0.0 0.25}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
export PATH="$ROOT/.venv/bin:$PATH" DVC_NO_ANALYTICS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
export PYTHONPATH="$DIR/src"   # the copy's code (the venv's editable install points at ROOT)
export GIT_AUTHOR_NAME="${GIT_AUTHOR_NAME:-chain}" GIT_AUTHOR_EMAIL="${GIT_AUTHOR_EMAIL:-chain@localhost}"
export GIT_COMMITTER_NAME="${GIT_COMMITTER_NAME:-chain}" GIT_COMMITTER_EMAIL="${GIT_COMMITTER_EMAIL:-chain@localhost}"

(cd "$ROOT" && git ls-files -co --exclude-standard -z) | while IFS= read -r -d '' f; do
  case "$f" in models/*|data/*|metrics/*|dvclive/*|dvc.lock) continue ;; esac
  [ -f "$ROOT/$f" ] || continue
  mkdir -p "$DIR/$(dirname "$f")"
  cp -p "$ROOT/$f" "$DIR/$f"
done
cp "$ROOT/profiles/updates-toyworld.yaml" "$DIR/params.yaml"
cd "$DIR"
[ -d .git ] || git init -q -b main
git add -A
git commit -qm "chained updates" --allow-empty
total_start=$(date +%s)
for replay in $REPLAYS; do
  for seed in $SEEDS; do
    start=$(date +%s)
    dvc exp run -S "chain.cpt.train.seed=$seed" -S "chain.cpt.train.replay_fraction=$replay" \
      promote@main chain-report@main
    echo "experiment seed=$seed replay=$replay: $(( $(date +%s) - start )) s" | tee -a chain-times.txt
  done
done
dvc exp show --json > chain-exps.json
python "$DIR/scripts/chain_seeds.py" chain-exps.json > metrics/chain/seeds.md
cat metrics/chain/seeds.md
cat chain-times.txt
echo "chain evidence: $(( $(date +%s) - total_start )) s wall time in $DIR"
