#!/usr/bin/env bash
# HLRP's three stages at twin scale on this project's CPU machine (README "HLRP"), each reading the previous one's
# artifact: record, stage 1 (LAQ), stage 2 (shared trunk, online LAQ labels), stage 3 (lerobot-train from the
# artifact, and the same policy without stage 2), then lerobot-eval of both on 20 unseen LiftCube poses.
#   bash examples/hlrp_twin.sh            # each step is skipped when its output exists (re-run to continue)
set -euo pipefail
cd "$(dirname "$0")/.."
export MUJOCO_GL=egl
BIN=.venv/bin
OUT=outputs/hlrp
stamp() { echo "[hlrp-twin $(date -u +%H:%M:%S)] $*"; }

[ -d $OUT/twin_data ] || { stamp "recording (stages 1-2)"; $BIN/so101-twin-record --config_path=configs/hlrp_twin_pretrain_data.yaml; }
[ -d $OUT/twin_finetune_data ] || { stamp "recording (stage 3)"; $BIN/so101-twin-record --config_path=configs/hlrp_twin_finetune_data.yaml; }
[ -d $OUT/smolvlm_twin ] || $BIN/hlrp-make-random-vlm --size=twin --output_dir=$OUT/smolvlm_twin
[ -f $OUT/laq_twin/laq/model.safetensors ] || { stamp "stage 1: LAQ"; $BIN/hlrp-train-laq --config_path=configs/hlrp_laq_twin.yaml; }
[ -f $OUT/trunk_twin/artifact/manifest.json ] || { stamp "stage 2: trunk"; $BIN/hlrp-train-trunk --config_path=configs/hlrp_trunk_twin.yaml; }
for run in finetune scratch; do
  ckpt=$OUT/${run}_twin/checkpoints/last/pretrained_model
  [ -f $ckpt/model.safetensors ] || { stamp "stage 3: $run"; $BIN/lerobot-train --config_path=configs/hlrp_${run}_twin.yaml; }
  [ -f $OUT/eval_${run}/eval_info.json ] || {
    stamp "lerobot-eval: $run"
    $BIN/lerobot-eval --policy.path=$ckpt --env.type=so101_twin --env.task=LiftCube --env.cameras='[front,wrist]' \
      --env.observation_height=96 --env.observation_width=128 --env.depth=false --env.segmentation=false \
      --eval.n_episodes=20 --eval.batch_size=10 --eval.use_async_envs=false --seed=1000 --policy.device=cpu \
      --output_dir=$OUT/eval_${run} > $OUT/eval_${run}.log 2>&1
  }
  .venv/bin/python -c "import json; o=json.load(open('$OUT/eval_${run}/eval_info.json'))['overall']; print('$run', 'success', o['pc_success'], 'return', round(o['avg_sum_reward'], 1))"
done
