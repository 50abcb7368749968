#!/usr/bin/env bash
# The main job, from a fresh clone: set up (.venv, LeRobot 0.6.1, the suite's plugins), then scripts/demo.py with
# configs/demo.yaml:
#   1. so101-twin-record: closed-loop expert demonstrations of LiftCube in the SO-101 twin (DART noise), with
#      ground-truth segmentation + depth, recorded in simulated time by two worker processes;
#   2. segdepth-precompute: the policy-ready observation (ids + disparity, 84x84 uint8) added to a copy;
#   3. lerobot-train --policy.type=segdepth on it;
#   4. lerobot-eval on cube poses never seen in training;
#   5. a rollout video and an image of the segmentation/disparity channels the policy saw.
# Everything lands in outputs/demo/ (logs in outputs/demo/logs/). Arguments go to scripts/demo.py, e.g.
#   bash scripts/demo.sh --config_path=configs/demo_long.yaml
#   bash scripts/demo.sh --train.steps=500 --output_dir=outputs/demo_short
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
bash scripts/setup.sh
export MUJOCO_GL=${MUJOCO_GL:-egl} HF_HUB_OFFLINE=1
export HF_LEROBOT_HOME=${HF_LEROBOT_HOME:-$PWD/outputs/lerobot_home}
.venv/bin/python scripts/demo.py "$@"
echo "[demo] wall time with set-up: $(( ($(date +%s) - START) / 60 )) min $(( ($(date +%s) - START) % 60 )) s"
