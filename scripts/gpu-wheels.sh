#!/usr/bin/env bash
# Here, before a GPU check: the wheels the lent GPU machine lacks, for its Python 3.12, into .gpu-wheels/
# (ignored by git; name it in the device run's carry). That machine has torch, torchvision, numpy, scikit-learn,
# scipy, onnx, onnxruntime, onnxscript, matplotlib, rich, joblib and PyYAML (/work/.library/device/KINDS.md), and no
# network. Tracking stays off there: mlflow and its dependencies are too large to carry, so neither is optuna
# (searches) carried: scripts/gpu-check.sh runs neither. Then: bash scripts/gpu-check.sh on that machine.
set -euo pipefail
cd "$(dirname "$0")/.."

WHEELS=.gpu-wheels
CARRY_LIMIT_BYTES=$((64 * 1024 * 1024))  # the working tree and the carried paths together, per device run
# sweeplab itself travels as its source (PYTHONPATH=src), so the check always runs the tree as it is.
PURE_WHEELS=("hydra-core>=1.3.2,<1.4" "omegaconf>=2.3,<2.4" "hydra-joblib-launcher>=1.2,<1.3")
SDIST_ONLY="antlr4-python3-runtime==4.9.3"  # Hydra's parser; published as an sdist only, so built into a wheel here

PYTHON=python3
[ -x .venv/bin/python ] && PYTHON=.venv/bin/python

rm -rf "$WHEELS"
mkdir -p "$WHEELS"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 --dest "$WHEELS" "${PURE_WHEELS[@]}"
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WHEELS" "$SDIST_ONLY"

for wheel in "$WHEELS"/*.whl; do
    case "$wheel" in
        *-py3-none-any.whl | *-py2.py3-none-any.whl) ;;
        *) echo "error: $wheel is not a pure-Python wheel: it may not install on the GPU machine's Python 3.12" >&2
           exit 1 ;;
    esac
done

wheel_bytes=$(du -cb "$WHEELS"/*.whl | tail -n 1 | cut -f 1)
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | xargs -0 du -cb 2>/dev/null \
    | awk '$2 == "total" { sum += $1 } END { print sum + 0 }')
ls -1 "$WHEELS"
echo "wheels: $((wheel_bytes / 1024)) KiB in $WHEELS/; with the working tree ($((tree_bytes / 1024)) KiB):" \
    "$(((wheel_bytes + tree_bytes) / 1024)) KiB of the $((CARRY_LIMIT_BYTES / 1024 / 1024)) MiB a device run carries"
if ((wheel_bytes + tree_bytes > CARRY_LIMIT_BYTES)); then
    echo "error: over the carry limit: the device run would be refused" >&2
    exit 1
fi
