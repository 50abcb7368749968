#!/usr/bin/env bash
# Wheels of the suite's nine distributions in dist/ (or the folder given), for installing one policy on a real
# arm's computer with what it needs of the workspace (so101_core, the processors, the segmenter) and nothing of
# the twin (no MuJoCo):
#   bash scripts/build_wheels.sh                              # here, after scripts/setup.sh (or with uv on PATH)
#   pip install --find-links dist lerobot_policy_segdepth     # there: dist/ copied over; PyPI gives the rest
# Each wheel is built from its source distribution in a temporary folder (uv build), so nothing is left in the
# package folders. UV_BUILD_ARGS adds flags, e.g. UV_BUILD_ARGS=--offline where the build backend is in uv's cache.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-dist}
UV=.venv/bin/uv
[ -x "$UV" ] || UV=$(command -v uv || true)
if [ -z "$UV" ]; then
  echo "[build_wheels] needs uv: run scripts/setup.sh first, or pip install uv" >&2
  exit 1
fi
PACKAGES="so101_core processors so101_segmenter lerobot_policy_segdepth lerobot_policy_segvla lerobot_policy_imf"
PACKAGES="$PACKAGES lerobot_policy_hlrp lerobot_env_so101_twin so101_segdepth_rl"
for package in $PACKAGES; do
  # shellcheck disable=SC2086  # UV_BUILD_ARGS holds separate flags
  "$UV" build --quiet --out-dir "$OUT" ${UV_BUILD_ARGS:-} "$package"
done
echo "[build_wheels] $(ls "$OUT"/*.whl | wc -l) wheels in $OUT"
