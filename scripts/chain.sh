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
#
#   CHAIN_PROFILE=profiles/updates6-toyworld.yaml CHAIN_SET="chain.cpt_from=ancestor world.seed=1" \
#     bash scripts/chain.sh DIR "0"         # another profile, and -S overrides for every experiment
set -euo pipefail
# the whole script is one function, read before it runs: editing this file mid-run is safe
main() {
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
[ -n "${FRESHLLM_NO_SETUP:-}" ] || bash "$ROOT/scripts/setup.sh"
DIR="${1:-$(mktemp -d -t chain-XXXXXX)}"
SEEDS="${2:-0 1 2}"
REPLAYS="${3:-0.0 0.25}"
source "$ROOT/scripts/lib/sandbox.sh"
sandbox "$ROOT" "$DIR" "${CHAIN_PROFILE:-profiles/updates-toyworld.yaml}" chain
DIR="$SANDBOX"
cd "$DIR"
total_start=$(date +%s)
for replay in $REPLAYS; do
  for seed in $SEEDS; do
    start=$(date +%s)
    extra=()
    for kv in ${CHAIN_SET:-}; do extra+=(-S "$kv"); done
    dvc exp run -S "chain.cpt.train.seed=$seed" -S "chain.cpt.train.replay_fraction=$replay" "${extra[@]}" \
      promote@main chain-report@main
    echo "experiment seed=$seed replay=$replay: $(( $(date +%s) - start )) s" | tee -a chain-times.txt
  done
done
dvc exp show --json > chain-exps.json
python -m freshllm.report.seeds --chain --exp-json chain-exps.json --markdown metrics/chain/seeds.md
cat metrics/chain/seeds.md
cat chain-times.txt
echo "chain evidence: $(( $(date +%s) - total_start )) s wall time in $DIR"
}
main "$@"
