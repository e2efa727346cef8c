#!/usr/bin/env bash
# Create .venv and install deftx with its test dependencies. Idempotent; safe to run again.
# torch is pinned to the CPU build first, so that pip does not pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[dev,plot]"
echo "deftx installed in .venv (activate with: source .venv/bin/activate)" >&2
