#!/usr/bin/env bash
# Set up (if needed), lint with ruff, then run the whole test suite, slow end-to-end tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL=${MUJOCO_GL:-egl}
.venv/bin/ruff check .
.venv/bin/python -m pytest tests "$@"
