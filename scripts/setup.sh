#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: .venv (Python 3.12) with LeRobot 0.6.1, the suite's plugins as editable
# installs, and the test tools. Safe to re-run; a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

# Headless OpenGL for MuJoCo's CPU renderer (Mesa llvmpipe through EGL).
if ! ldconfig -p | grep -q "libEGL_mesa.so.0"; then
  echo "[setup] installing Mesa EGL (libegl1 libegl-mesa0 libgl1-mesa-dri)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libegl1 libegl-mesa0 libgl1-mesa-dri >/dev/null
fi

PYTHON=${PYTHON:-python3.12}  # .python-version selects 3.12.1 through pyenv
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade "uv>=0.5" 2>/dev/null
# torch<2.12 is LeRobot 0.6.1's own bound; PyPI's build runs on the CPU here.
.venv/bin/uv pip install --python .venv/bin/python -q \
  "torch>=2.7,<2.12" "lerobot[feetech,dataset,training]>=0.6.1,<0.7" \
  -e ./lerobot_env_so101_twin -e ./processors -e ./lerobot_policy_segdepth \
  -r requirements-dev.txt
echo "[setup] ready: $(.venv/bin/python -c 'import lerobot, torch, mujoco; print("lerobot", lerobot.__version__, "| torch", torch.__version__, "| mujoco", mujoco.__version__)')"
