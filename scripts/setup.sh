#!/usr/bin/env bash
# Idempotent set-up: a virtualenv in .venv with the CPU build of torch and the project.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import freshllm, torch, fundus, lm_eval, dvc, xdist" 2>/dev/null; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q torch==2.13.0          # CPU build (GPU users: install the CUDA build first)
  # the rest with uv, in about half pip's time (the same versions: pyproject.toml pins them); with
  # pip where uv cannot be installed or fails
  .venv/bin/pip install -q uv==0.13.9 || true
  if ! { [ -x .venv/bin/uv ] && .venv/bin/uv pip install --python .venv/bin/python -q --compile-bytecode -e '.[dev]'; }; then
    .venv/bin/pip install -q -e '.[dev]'
  fi
fi
