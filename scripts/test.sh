#!/usr/bin/env bash
# Set up (if needed) and run the test suite on CPU, in parallel (pytest-xdist): one worker per
# core up to 4 (TEST_WORKERS overrides; TEST_WORKERS=0 runs in this process), each module's tests
# on one worker (--dist loadscope: module fixtures such as the e2e repositories are built once),
# the long end-to-end modules first (tests/conftest.py).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH" DVC_NO_ANALYTICS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
cores=$(python -c "import os; print(len(os.sched_getaffinity(0)))")
workers=${TEST_WORKERS:-$(( cores < 4 ? cores : 4 ))}
if [ "$workers" -gt 1 ]; then
  python -m pytest -q --durations=20 -n "$workers" --dist loadscope --no-loadscope-reorder "$@"
else
  python -m pytest -q --durations=20 "$@"
fi
