#!/usr/bin/env bash
# The main job, from a fresh clone, with the stock LeRobot commands throughout:
#   1. set up (.venv, LeRobot 0.6.1, the suite's plugins);
#   2. lerobot-record: closed-loop expert demonstrations of LiftCube in the SO-101 twin (DART noise), with
#      ground-truth segmentation + depth;
#   3. lerobot-train --policy.type=segdepth on them;
#   4. lerobot-eval of the trained policy and of a random-weight one, on cube poses never seen in training;
#   5. a rollout video and an image of the segmentation/disparity channels the policy saw.
# Everything lands in outputs/demo/. Override the sizes with EPISODES, EPISODE_SECONDS, STEPS, EVAL_EPISODES,
# RANDOM_EPISODES, and add flags with RECORD_ARGS / POLICY_ARGS.
set -euo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
bash scripts/setup.sh
export MUJOCO_GL=${MUJOCO_GL:-egl}
export HF_LEROBOT_HOME=${HF_LEROBOT_HOME:-$PWD/outputs/lerobot_home}
OUT=${OUT:-outputs/demo}
EPISODES=${EPISODES:-24}
EPISODE_SECONDS=${EPISODE_SECONDS:-5}
STEPS=${STEPS:-1000}
BATCH=${BATCH:-32}
# DART: the twin perturbs every executed command by 1 deg of OU noise while the dataset keeps the closed-loop
# expert's clean commands, so the demonstrations show the way back from the states a cloned policy drifts into.
RECORD_ARGS=${RECORD_ARGS:---robot.action_noise_std=1.0}
POLICY_ARGS=${POLICY_ARGS:-}  # extra --policy.* flags for lerobot-train, e.g. "--policy.augment_pad=0"
EVAL_EPISODES=${EVAL_EPISODES:-20}
RANDOM_EPISODES=${RANDOM_EPISODES:-10}
H=120 W=160  # the real wrist camera's 4:3, scaled down; segdepth crops it square and resizes to 84x84
TASK="Pick up the red cube and lift it."
# drop the video encoders' chatter; keep progress, results and errors
quiet() { grep --line-buffered -vE "^(x265|Svt)\[|^encoded [0-9]+ frames|\[mp4 @|^\s*$" || true; }
rm -rf "$OUT"
mkdir -p "$OUT"

echo "[demo] 1/4 recording $EPISODES expert episodes (lerobot-record, real time at 30 fps)"
.venv/bin/lerobot-record \
  --robot.type=so101_twin --robot.task=LiftCube --robot.cameras='[wrist]' \
  --robot.camera_height=$H --robot.camera_width=$W --robot.depth=true --robot.segmentation=true \
  --teleop.type=so101_twin_expert $RECORD_ARGS \
  --dataset.repo_id=local/so101_twin_liftcube --dataset.root="$OUT/dataset" \
  --dataset.num_episodes="$EPISODES" --dataset.episode_time_s="$EPISODE_SECONDS" --dataset.reset_time_s=0 \
  --dataset.single_task="$TASK" --dataset.push_to_hub=false --play_sounds=false 2>&1 | quiet
test -f "$OUT/dataset/meta/info.json" || { echo "[demo] recording failed"; exit 1; }

echo "[demo] 2/4 training segdepth for $STEPS steps (lerobot-train)"
.venv/bin/lerobot-train \
  --policy.type=segdepth --policy.device=cpu --policy.push_to_hub=false $POLICY_ARGS \
  --dataset.repo_id=local/so101_twin_liftcube --dataset.root="$OUT/dataset" \
  --steps="$STEPS" --batch_size="$BATCH" --num_workers=2 --save_freq="$STEPS" --log_freq=100 \
  --output_dir="$OUT/train" --wandb.enable=false --seed=1 2>&1 | quiet
CKPT="$OUT/train/checkpoints/last/pretrained_model"
test -f "$CKPT/model.safetensors" || { echo "[demo] training failed"; exit 1; }

EVAL_ARGS=(--env.type=so101_twin --env.task=LiftCube --env.cameras='[wrist]' --env.render_cameras='[front,wrist]'
  --env.observation_height=$H --env.observation_width=$W --env.depth=true --env.segmentation=true
  --eval.batch_size=10 --eval.use_async_envs=false --policy.device=cpu --seed=1000)
echo "[demo] 3/4 evaluating on $EVAL_EPISODES new cube poses (lerobot-eval): trained, then random weights"
.venv/bin/lerobot-eval --policy.path="$CKPT" --eval.n_episodes="$EVAL_EPISODES" --output_dir="$OUT/eval_trained" \
  "${EVAL_ARGS[@]}" 2>&1 | quiet
.venv/bin/lerobot-eval --policy.type=segdepth --eval.n_episodes="$RANDOM_EPISODES" --output_dir="$OUT/eval_random" \
  "${EVAL_ARGS[@]}" 2>&1 | quiet

echo "[demo] 4/4 rollout video and the channels the policy saw"
.venv/bin/python examples/segdepth_policy_view.py --policy "$CKPT" --out "$OUT" --seed 1000 2>&1 | quiet

.venv/bin/python - "$OUT" "$START" <<'PY'
import json, sys, time
from pathlib import Path
out, start = Path(sys.argv[1]), float(sys.argv[2])
rows = []
for name in ("trained", "random"):
    overall = json.loads((out / f"eval_{name}" / "eval_info.json").read_text())["overall"]
    rows.append((name, overall["n_episodes"], overall["pc_success"], overall["avg_sum_reward"]))
print("\n| policy | episodes | LiftCube success % | mean return |\n|---|---|---|---|")
for name, n, pc, ret in rows:
    print(f"| segdepth ({name}) | {n} | {pc:.1f} | {ret:.1f} |")
print(f"\nvideos: {out}/eval_trained/videos, {out}/policy_view.mp4; channels: {out}/policy_channels.png")
print(f"demo wall time: {(time.time() - start) / 60:.1f} min")
PY
