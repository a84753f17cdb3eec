#!/usr/bin/env bash
# The default profile over training seeds, as a queued `dvc exp` grid, and its table.
#
#   bash scripts/seeds.sh [SEED ...]        # default: 1 2 (seed 0 is the committed run)
#
# Run in a checkout whose HEAD holds the default run (dvc.lock and metrics/ committed, as on
# main). Each seed is one experiment: models.toy.seed (the ancestor's init and generated data),
# models.toy.pretrain.seed and models.toy.sft.seed (its pre-training's and SFT's data order) and
# cpt.train.seed (cpt's data order) set to N; the world (world.seed) stays the same, so
# every seed is scored on the same items. The queue worker runs them one after another; then
# `dvc exp show --json` feeds `python -m freshllm.report.seeds`, which writes
# metrics/seeds.md (mean ± sd over the seeds, range, per-seed differences of the paper's
# comparisons) and metrics/seeds.json. Wall time of the queue is printed at the end.
set -euo pipefail
main() {
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
[ -x .venv/bin/python ] && export PATH="$ROOT/.venv/bin:$PATH"
SEEDS=("$@")
[ ${#SEEDS[@]} -gt 0 ] || SEEDS=(1 2)
export DVC_NO_ANALYTICS=1
start=$(date +%s)
for n in "${SEEDS[@]}"; do
  dvc exp run --queue -S "models.toy.seed=$n" -S "models.toy.pretrain.seed=$n" -S "models.toy.sft.seed=$n" \
    -S "cpt.train.seed=$n"
done
dvc queue start -j 1
# (status captured first: grep -q closing the pipe early would fail the pipeline under pipefail)
while status=$(dvc queue status) && grep -Eq '\b(Queued|Running)\b' <<<"$status"; do sleep 10; done
end=$(date +%s)
dvc queue status
dvc exp show --json > metrics/seeds-exps.json
python -m freshllm.report.seeds --exp-json metrics/seeds-exps.json \
  --keys models.toy.seed,cpt.train.seed --markdown metrics/seeds.md --json metrics/seeds.json
cat metrics/seeds.md
echo "queue of ${#SEEDS[@]} experiment(s): $((end - start)) s wall"
}
main "$@"
