#!/usr/bin/env bash
# The whole test suite from a bare machine with Python and pip: a venv, sweeplab with its test,
# server, ray, docs and timm extras, the system packages the tests need (Chromium, PostgreSQL), then pytest (extra arguments go to pytest).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet -e ".[test,server,ray,docs,timm]"
bash scripts/install-test-deps.sh
exec .venv/bin/python -m pytest "$@"
