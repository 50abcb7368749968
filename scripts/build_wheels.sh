#!/usr/bin/env bash
# Wheels of the suite's eleven distributions in dist/ (or the folder given; not so101_devtools, which only the
# examples, benchmarks and tests use), for installing one policy on a real arm's computer with what it needs of the
# workspace (so101_core, so101_run_infra, so101_policy_common, the segmenter) and nothing of the twin (no MuJoCo):
#   bash scripts/build_wheels.sh                              # here, in a fresh clone or after scripts/setup.sh
#   pip install --find-links dist lerobot_policy_segdepth     # there: dist/ copied over; PyPI gives the rest
# With uv (.venv/bin/uv after scripts/setup.sh, or on PATH) each wheel is built from its source distribution
# (uv build); without it, with pip (`python -m pip wheel`, the Python of .venv or else python3) from a copy of the
# package's folder. Either way in a temporary folder, so nothing is left in the package folders, and the build
# backend (setuptools) comes from the index as usual. UV= (empty) picks pip even where uv is installed.
# UV_BUILD_ARGS / PIP_WHEEL_ARGS add flags, e.g. UV_BUILD_ARGS=--offline where the build backend is in uv's cache,
# PIP_WHEEL_ARGS="--no-index --no-build-isolation" to build offline with the setuptools PYTHON already has.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-dist}
PACKAGES="so101_core so101_run_infra so101_policy_common so101_commands so101_segmenter lerobot_policy_segdepth lerobot_policy_segvla lerobot_policy_imf"
PACKAGES="$PACKAGES lerobot_policy_hlrp lerobot_env_so101_twin so101_segdepth_rl"
if [ -z "${UV+set}" ]; then
  UV=.venv/bin/uv
  [ -x "$UV" ] || UV=$(command -v uv || true)
fi
mkdir -p "$OUT"
if [ -n "$UV" ]; then
  for package in $PACKAGES; do
    # shellcheck disable=SC2086  # UV_BUILD_ARGS holds separate flags
    "$UV" build --quiet --out-dir "$OUT" ${UV_BUILD_ARGS:-} "$package"
  done
else
  if [ -z "${PYTHON:-}" ]; then
    PYTHON=.venv/bin/python
    [ -x "$PYTHON" ] || PYTHON=$(command -v python3 || command -v python || true)
  fi
  if [ -z "$PYTHON" ] || ! "$PYTHON" -m pip --version >/dev/null 2>&1; then
    echo "[build_wheels] needs uv or a Python with pip (python3 -m pip); set PYTHON=/path/to/python" >&2
    exit 1
  fi
  echo "[build_wheels] no uv: building with $("$PYTHON" -m pip --version | cut -d' ' -f1-2) ($PYTHON)"
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  for package in $PACKAGES; do
    cp -r "$package" "$WORK/$package"
    # shellcheck disable=SC2086  # PIP_WHEEL_ARGS holds separate flags
    "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --no-deps --wheel-dir "$OUT" ${PIP_WHEEL_ARGS:-} \
      "$WORK/$package"
  done
fi
echo "[build_wheels] $(ls "$OUT"/*.whl | wc -l) wheels in $OUT"
