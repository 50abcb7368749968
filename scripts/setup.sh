#!/usr/bin/env bash
# Idempotent set-up on a fresh machine: .venv (Python 3.12) with LeRobot 0.6.1, the suite's plugins as editable
# installs, and the test tools. Safe to re-run; a second run takes seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

# System libraries: Mesa EGL for MuJoCo's headless CPU renderer (llvmpipe), and FFmpeg's shared libraries so
# torchcodec (LeRobot's default video decoder, ~25% faster here than its PyAV fallback) can load.
SYSTEM_LIBS="libEGL_mesa.so.0:libegl1 libegl-mesa0 libgl1-mesa-dri|libavutil.so.57:libavutil57 libavcodec59 libavformat59 libavdevice59 libavfilter8 libswscale6 libswresample4"
MISSING=""
IFS='|' read -ra CHECKS <<< "$SYSTEM_LIBS"
for check in "${CHECKS[@]}"; do
  ldconfig -p | grep -q "${check%%:*}" || MISSING="$MISSING ${check#*:}"
done
if [ -n "$MISSING" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "[setup] installing system libraries:$MISSING"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $MISSING >/dev/null
  else
    echo "[setup] warning: missing system libraries ($MISSING); install them with your package manager" >&2
  fi
fi

PYTHON=${PYTHON:-python3.12}  # .python-version selects 3.12.1 through pyenv
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade "uv>=0.5" 2>/dev/null
# torch<2.12 is LeRobot 0.6.1's own bound; PyPI's build runs on the CPU here. The smolvla and timm-dep extras pin
# the transformers/timm versions LeRobot itself is tested with (SegVLA, the segmenter, Depth Anything V2);
# core-scripts and kinematics bring what the real arm's commands need beyond that: rerun (--display_data=true, the
# camera aid's viewer), pynput (the record and rollout keys) and placo (lerobot-find-joint-limits).
.venv/bin/uv pip install --python .venv/bin/python -q \
  "torch>=2.7,<2.12" "lerobot[feetech,dataset,training,smolvla,timm-dep,diffusion,core-scripts,kinematics]>=0.6.1,<0.7" pycocotools \
  -e ./so101_core -e ./so101_run_infra -e ./lerobot_env_so101_twin -e ./so101_policy_common -e './so101_commands[vlm,cluster,serve]' -e ./so101_segmenter -e ./so101_twin_data -e ./lerobot_policy_segdepth -e ./lerobot_policy_segvla -e ./so101_segdepth_rl -e ./lerobot_policy_imf -e ./lerobot_policy_hlrp -e ./so101_devtools \
  -r requirements-dev.txt
# Bytecode for everything installed: with PYTHONDONTWRITEBYTECODE set (as on some CI images and this project's
# machines) Python would otherwise compile LeRobot, torch and transformers from source on every start, ~25 s per
# command instead of ~10 s (every lerobot-* command, each recording worker, each test subprocess).
.venv/bin/python -m compileall -q -j 2 .venv/lib/python3.12/site-packages so101_core/src so101_run_infra/src lerobot_env_so101_twin/src \
  so101_policy_common/src so101_commands/src so101_devtools/src so101_segmenter/src so101_twin_data/src lerobot_policy_segdepth/src lerobot_policy_segvla/src so101_segdepth_rl/src lerobot_policy_imf/src lerobot_policy_hlrp/src >/dev/null 2>&1 || true
echo "[setup] ready: $(.venv/bin/python -c 'import lerobot, torch, mujoco; print("lerobot", lerobot.__version__, "| torch", torch.__version__, "| mujoco", mujoco.__version__)')"
