#!/usr/bin/env bash
# Install the optional torch-scatter / torch-sparse backend into .venv. There are no prebuilt wheels for
# torch 2.13 here, so pip compiles them (~12 minutes on 2 cores); pip's wheel cache makes later runs fast.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
if "$VENV/bin/python" -c "import torch_scatter, torch_sparse" 2>/dev/null; then
  exit 0
fi
MAX_JOBS=${MAX_JOBS:-2} "$VENV/bin/python" -m pip install --no-build-isolation torch-scatter torch-sparse
