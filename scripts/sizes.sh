#!/usr/bin/env bash
# The toy world at several model sizes and training seeds: one `dvc exp run` of
# profiles/merges-toyworld.yaml (the default profile plus the merges grid) per (size, seed) in
# its own copy of this repository (this checkout stays untouched), each left in place with its models and its method table (metrics/merges/table.md).
#
#   bash scripts/sizes.sh DIR SIZE "SEEDS" [WORLD_SEED]    # e.g. bash scripts/sizes.sh /tmp/sz 7M "0 1 2"
#
# SIZE: 1M (the default model), 7M or 14M (Llama architecture, same vocabulary, data, steps and
# batch; learning rates of pre-training, SFT and cpt scaled by 128 / hidden size). Each run goes
# to DIR/<SIZE>-w<WORLD_SEED>-s<SEED>; its wall time is appended to DIR/times.txt. Runs use one
# thread per process (OMP_NUM_THREADS=1 unless set): the thread count changes float summation
# order, so runs compare only at the same setting, and two scripts can share a 2-core machine.
# MERGES="b050 magmax" keeps only those settings of the grid (e.g. to confirm winners on another
# world seed for less).
set -euo pipefail
# the whole script is one function, read before it runs: editing this file mid-run is safe
main() {
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/lib/sandbox.sh"
[ -n "${FRESHLLM_NO_SETUP:-}" ] || bash "$ROOT/scripts/setup.sh"
DIR="$1"; SIZE="$2"; SEEDS="${3:-0 1 2}"; WORLD="${4:-0}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
case "$SIZE" in
  1M)  keys=() ;;
  7M)  keys=(models.toy.hidden_size=256 models.toy.intermediate_size=768 models.toy.num_layers=8
             models.toy.num_heads=8 models.toy.num_kv_heads=4 models.toy.pretrain.lr=0.0015
             models.toy.sft.lr=0.0005 cpt.lr.base=0.0001 cpt.lr.instruct=0.0001) ;;
  14M) keys=(models.toy.hidden_size=384 models.toy.intermediate_size=1152 models.toy.num_layers=8
             models.toy.num_heads=6 models.toy.num_kv_heads=2 models.toy.pretrain.lr=0.001
             models.toy.sft.lr=0.000333 cpt.lr.base=0.0000667 cpt.lr.instruct=0.0000667) ;;
  *) echo "sizes.sh: unknown SIZE $SIZE (1M, 7M or 14M)" >&2; exit 2 ;;
esac
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
for seed in $SEEDS; do
  run="$DIR/$SIZE-w$WORLD-s$seed"
  ( sandbox "$ROOT" "$run" profiles/merges-toyworld.yaml "size-$SIZE"
    cd "$run"
    if [ -n "${MERGES:-}" ]; then
      python - "$MERGES" <<'PY'
import sys
from pathlib import Path
from ruamel.yaml import YAML
rt = YAML()
params = rt.load(Path("params.yaml"))
keep = sys.argv[1].split()
for name in [k for k in params["merges"] if k not in keep]:
    del params["merges"][name]
rt.dump(params, Path("params.yaml"))
PY
      git commit -qam "merges: $MERGES"
    fi
    args=()
    for k in "${keys[@]}" "models.toy.seed=$seed" "models.toy.pretrain.seed=$seed" "models.toy.sft.seed=$seed" \
                 "cpt.train.seed=$seed" "world.seed=$WORLD"; do args+=(-S "$k"); done
    start=$(date +%s)
    dvc exp run "${args[@]}" > repro.log 2>&1
    echo "$SIZE world=$WORLD seed=$seed threads=$OMP_NUM_THREADS: $(( $(date +%s) - start )) s ($run)" | tee -a "$DIR/times.txt" )
done
}
main "$@"
