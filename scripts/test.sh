#!/usr/bin/env bash
# Set up (if needed), lint with ruff, then run the whole test suite, slow end-to-end tests included.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL=${MUJOCO_GL:-egl}
.venv/bin/ruff check .
# Two workers, each taking whole test files (so a file's fixtures are built once): most slow tests wait on LeRobot
# starting in a subprocess, on a rollout's real-time rate or on one-thread rendering, so two run side by side on
# two cores in little more than the time of one. PYTEST_WORKERS=0 runs them in this process, one after another.
paths=(tests)  # the whole suite, unless the arguments name test files or folders themselves
for arg in "$@"; do case "$arg" in tests|tests/*) paths=() ;; esac; done
.venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile "${paths[@]}" "$@"
