#!/usr/bin/env bash
# On a lent GPU machine, from the repo root: sweeplab's GPU check in one command, its table in $OUT/gpu-check.md
# (the steps' output beside it, gpu-check.log), written row by row within a 5-minute budget (scripts/gpu_check.py).
# First, here: bash scripts/gpu-wheels.sh, then run this there with .gpu-wheels carried. Arguments go to
# scripts/gpu_check.py (--budget SECONDS).
set -euo pipefail
cd "$(dirname "$0")/.."

SITE=${GPU_CHECK_SITE:-/tmp/sweeplab-gpu-site}
if ! ls .gpu-wheels/*.whl >/dev/null 2>&1; then
    echo "error: no wheels in .gpu-wheels/: run bash scripts/gpu-wheels.sh where pip works, and carry .gpu-wheels" >&2
    exit 1
fi
python3 -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    .gpu-wheels/*.whl
export PYTHONPATH="$SITE:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"  # sweeplab from this tree, as it is
export PYTHONUNBUFFERED=1
OUT=${OUT:-outputs/gpu-check}  # $OUT: what the device tool brings back
mkdir -p "$OUT"
exec python3 scripts/gpu_check.py --out "$OUT/gpu-check.md" "$@"
