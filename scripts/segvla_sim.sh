#!/usr/bin/env bash
# SegVLA in the twin, with and without segmentation cues: the same small random SmolVLM backbone (no weights can be
# downloaded here), the same demonstrations, the same steps and seeds; lerobot-train then lerobot-eval for each.
#   with cues:    --policy.segmentation_source=ground_truth on the wrist camera, the prompt's "cube" as a class token
#   without cues: an empty segmentation_feature_map, which is SmolVLA exactly
# Uses the demo's recording (bash scripts/demo.sh: wrist camera with ground-truth segmentation); set DATASET for
# another one. Everything lands in outputs/segvla_sim/. Override STEPS, BATCH, EVAL_EPISODES.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export MUJOCO_GL=${MUJOCO_GL:-egl} HF_HUB_OFFLINE=1
export HF_LEROBOT_HOME=${HF_LEROBOT_HOME:-$PWD/outputs/lerobot_home}
OUT=${OUT:-outputs/segvla_sim}
DATASET=${DATASET:-outputs/demo/dataset}
STEPS=${STEPS:-3000}
BATCH=${BATCH:-16}
EVAL_EPISODES=${EVAL_EPISODES:-20}
if [ ! -f "$DATASET/meta/info.json" ]; then
  echo "[segvla_sim] no dataset at $DATASET: run bash scripts/demo.sh first (it records one), or set DATASET" >&2
  exit 1
fi
quiet() { grep --line-buffered -vE "^(x265|Svt)\[|^encoded [0-9]+ frames|\[mp4 @|^\s*$" || true; }
rm -rf "$OUT"
mkdir -p "$OUT"

# A SmolVLM 4 text layers / 2 vision layers wide 64, images 64x64 (SmolVLA's real one is 500M at 512x512).
VLM="$OUT/smolvlm_small"
.venv/bin/python - "$VLM" <<'PY'
import sys
sys.path.insert(0, "tests")
from tiny_models import save_smolvlm
text = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16}
vision = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4}
save_smolvlm(sys.argv[1], text=text, vision=vision, image_size=64)
PY

COMMON=(--policy.type=segvla --policy.vlm_model_name="$VLM" --policy.num_vlm_layers=4
  --policy.resize_imgs_with_padding='[64,64]' --policy.chunk_size=10 --policy.n_action_steps=10
  --policy.inference_noise_seed=0 --policy.device=cpu --policy.push_to_hub=false)
CUES=(--policy.segmentation_feature_map='{"observation.images.wrist": "observation.segmentation.wrist"}'
  --policy.segmentation_source=ground_truth --policy.segmentation_num_classes=6
  --policy.segmentation_classes_from_task=true --policy.segmentation_geometry_classes='[cube,moving_finger]'
  --policy.segmentation_top_k_classes=2)
H=$(.venv/bin/python -c "import json,sys; f=json.load(open(sys.argv[1]))['features']['observation.images.wrist']; print(f['shape'][0], f['shape'][1])" "$DATASET/meta/info.json")
read -r HEIGHT WIDTH <<< "$H"

for run in cues nocues; do
  flags=("${COMMON[@]}")
  [ "$run" = cues ] && flags+=("${CUES[@]}")
  echo "[segvla_sim] $run: lerobot-train for $STEPS steps"
  .venv/bin/lerobot-train "${flags[@]}" --dataset.repo_id=local/so101_twin_liftcube --dataset.root="$DATASET" \
    --steps="$STEPS" --batch_size="$BATCH" --num_workers=2 --save_freq="$STEPS" --log_freq=200 \
    --output_dir="$OUT/train_$run" --wandb.enable=false --seed=1 2>&1 | quiet
  echo "[segvla_sim] $run: lerobot-eval on $EVAL_EPISODES new cube poses"
  .venv/bin/lerobot-eval --policy.path="$OUT/train_$run/checkpoints/last/pretrained_model" \
    --env.type=so101_twin --env.task=LiftCube --env.cameras='[wrist]' --env.segmentation=true \
    --env.observation_height="$HEIGHT" --env.observation_width="$WIDTH" \
    --eval.n_episodes="$EVAL_EPISODES" --eval.batch_size=10 --eval.use_async_envs=false --policy.device=cpu \
    --seed=1000 --output_dir="$OUT/eval_$run" 2>&1 | quiet
done

.venv/bin/python - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print("\n| segvla run | episodes | LiftCube success % | mean return | mean best-step reward |\n|---|---|---|---|---|")
for run in ("cues", "nocues"):
    o = json.loads((out / f"eval_{run}" / "eval_info.json").read_text())["overall"]
    print(f"| {run} | {o['n_episodes']} | {o['pc_success']:.1f} | {o['avg_sum_reward']:.1f} | {o['avg_max_reward']:.2f} |")
PY
