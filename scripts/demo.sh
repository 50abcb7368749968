#!/usr/bin/env bash
# The main job, from a fresh clone: set up, record expert demonstrations in the SO-101 twin with the stock
# `lerobot-record`, and write a video and a still of what was recorded (RGB, segmentation, depth).
# Everything lands in outputs/demo/. EPISODES, EPISODE_SECONDS, HEIGHT and WIDTH override the defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL=${MUJOCO_GL:-egl}
export HF_LEROBOT_HOME=${HF_LEROBOT_HOME:-$PWD/outputs/lerobot_home}
OUT=outputs/demo
EPISODES=${EPISODES:-4}
EPISODE_SECONDS=${EPISODE_SECONDS:-7}
HEIGHT=${HEIGHT:-240}
WIDTH=${WIDTH:-320}
rm -rf "$OUT/dataset"
mkdir -p "$OUT"

echo "[demo] recording $EPISODES LiftCube episodes with the scripted expert (lerobot-record, real time)"
.venv/bin/lerobot-record \
  --robot.type=so101_twin --robot.task=LiftCube \
  --robot.camera_height="$HEIGHT" --robot.camera_width="$WIDTH" \
  --robot.depth=true --robot.segmentation=true \
  --teleop.type=so101_twin_expert \
  --dataset.repo_id=local/so101_twin_demo --dataset.root="$OUT/dataset" \
  --dataset.num_episodes="$EPISODES" --dataset.episode_time_s="$EPISODE_SECONDS" --dataset.reset_time_s=0 \
  --dataset.single_task="Pick up the red cube and lift it." \
  --dataset.push_to_hub=false --play_sounds=false 2>&1 | grep -vE "torchcodec|libavutil|Could not load|^\s" || true
test -f "$OUT/dataset/meta/info.json" || { echo "[demo] recording failed"; exit 1; }

echo "[demo] writing a preview of episode 0"
.venv/bin/python examples/preview_twin_dataset.py --root "$OUT/dataset" --repo-id local/so101_twin_demo --out "$OUT" --episode 0
echo "[demo] done: dataset in $OUT/dataset, preview video and still in $OUT"
