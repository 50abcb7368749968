#!/usr/bin/env bash
# The one-off that labelled the committed figures in docs/images/ whose runs are gone, so that their
# generators, which now draw titles and headers themselves, cannot redraw them. Each call pads a title and column
# headers onto the PNG as committed before the labels (commit 3074348) and leaves its pixels as they were
# (scripts/label_figure.py checks it); the texts are what the README, docs/ and the generators say each figure is.
# A labelled PNG is refused a second time: to redo one, start from `git show 3074348:docs/images/<name>.png`.
# twin_appearance.png is not here: examples/twin_appearance.py redraws it, title included (same pixels otherwise).
#   bash scripts/label_docs_figures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
L() { .venv/bin/python scripts/label_figure.py "$@"; }
q() { printf '"%s"' "$1"; }  # a YAML-quoted value: LeRobot's parser would read "a: b" as a mapping
IMG=${IMG:-docs/images}  # IMG=folder labels copies there instead

# segdepth-rl-train's learning curves (matplotlib, so matplotlib's DejaVu Sans); the README's RL section says which
# run each is. Evaluations: 20 episodes, cube pose seeds eval.seed .. eval.seed+19.
REACH="each evaluation: 20 episodes on cube poses 1000-1019"
L --input_path=$IMG/rl_reach_seed1.png --font=dejavu --size=12 \
  --title="$(q "segdepth-rl-train ReachCube, seed 1, from scratch (configs/rl_reach.yaml, 30 min, idle machine); $REACH")"
L --input_path=$IMG/rl_reach_seed2.png --font=dejavu --size=12 \
  --title="$(q "segdepth-rl-train ReachCube, seed 2, from scratch (configs/rl_reach.yaml, 30 min, idle machine); $REACH")"
L --input_path=$IMG/rl_reach_seed3.png --font=dejavu --size=12 \
  --title="$(q "segdepth-rl-train ReachCube, seed 3, from scratch (configs/rl_reach.yaml, 30 min, idle machine); $REACH")"
L --input_path=$IMG/rl_reach_seed3_loaded.png --font=dejavu --size=12 \
  --title="$(q "segdepth-rl-train ReachCube, seed 3, from scratch (configs/rl_reach.yaml, 30 min, beside the project's tests and benchmarks); $REACH")"
L --input_path=$IMG/rl_reach_baseline_seed1.png --font=dejavu --size=12 \
  --title="$(q "segdepth-rl-train ReachCube, seed 1, from scratch, the earlier baseline (32 encoder channels, no success bonus, 30 min); $REACH")"
L --input_path=$IMG/rl_lift_finetune_seed1.png --font=dejavu --size=12 \
  --title="$(q "segdepth-rl-train LiftCube, seed 1, fine-tuning demo run 6's clone (configs/rl_lift_finetune.yaml, TD3+BC, 60 min); each evaluation: 20 episodes on cube poses 1000-1019")"
L --input_path=$IMG/rl_lift_finetune_awr_seed1.png --font=dejavu --size=12 \
  --title="$(q "segdepth-rl-train LiftCube, seed 1, fine-tuning demo run 10's clone (configs/rl_lift_finetune_awr.yaml, advantage-weighted actor at lr 1e-5, frozen encoder, 60 min); each evaluation: 20 episodes on cube poses 2000-2019")"
L --input_path=$IMG/rl_lift_finetune_critic_seed1.png --font=dejavu --size=12 \
  --title="$(q "segdepth-rl-train LiftCube, seed 1, fine-tuning demo run 10's clone (configs/rl_lift_finetune_critic.yaml; wall minutes of the online phase, after the critic's pre-fit); each evaluation: 20 episodes on cube poses 2000-2019")"
L --input_path=$IMG/rl_lift_finetune_critic_seed2.png --font=dejavu --size=12 \
  --title="$(q "segdepth-rl-train LiftCube, seed 2, fine-tuning demo run 10's clone (configs/rl_lift_finetune_critic.yaml; wall minutes of the online phase, after the critic's pre-fit); each evaluation: 20 episodes on cube poses 2000-2019")"

# The segmenter's grids (so101_segmenter.viz.save_grid: 84x84 tiles, 2 px apart, shown 3x; PIL's default font).
L --input_path=$IMG/segmenter_sim_frames.png \
  --title="$(q "so101-seg-render: domain-randomised twin frames (84x84, shown 3x) beside their exact class masks")" \
  --columns='[wrist camera frame,its class mask,front camera frame,its class mask]'
L --input_path=$IMG/segmenter_val_grid.png \
  --title="$(q "so101-seg-train's val_grid.png: 8 validation frames (84x84, shown 3x), the best model")" \
  --columns='[image,ground truth,prediction]'
L --input_path=$IMG/segmenter_infer_overlays.png \
  --title="$(q "so101-seg-infer: frames (84x84, shown 3x) beside the segmenter's predicted classes blended over them")" \
  --columns='[frame,predicted classes,frame,predicted classes]'

# LAQ's reconstruction grid (train_laq.write_grid) from the twin-scale stage 1 run in the README's HLRP section.
L --input_path=$IMG/hlrp_laq_twin_recon.png --size=11 \
  --title="$(q "LAQ at the end of twin-scale stage 1 (configs/hlrp_laq_twin.yaml, step 1500), held-out front-camera pairs at 64x64, k = 0.3 s")" \
  --columns='[frame t,frame t+k,recon. t+k]'

# examples/eval_strip.py's rollout strips: each frame is lerobot-eval's video frame, front | wrist camera side by
# side; the row banners are redrawn with the same words in a readable size (the 10 px font hid the spaces).
L --input_path=$IMG/imf_vs_diffusion_liftcube.png --size=13 \
  --title="$(q "LiftCube in the twin, lerobot-eval --seed=1000 (20 unseen cube poses), imf and diffusion - 6 frames spread over each episode, first to last")" \
  --columns='["frame 1/6 (first): front | wrist","frame 2/6: front | wrist","frame 3/6: front | wrist","frame 4/6: front | wrist","frame 5/6: front | wrist","frame 6/6 (last): front | wrist"]' \
  --banners='["0:imf seed 2 | episode 0: success, best reward 2.87","114:imf seed 1 | episode 6: failure, best reward 1.92","228:diffusion seed 1 | episode 0: failure, best reward 1.77","342:diffusion seed 1 | episode 1: failure, best reward 0.36"]'
L --input_path=$IMG/segvla_twin_rollouts.png --size=13 \
  --title="$(q "SegVLA in the twin, LiftCube, seed 1, lerobot-eval --seed=1000 (20 unseen cube poses), cues_gt and no_cues - 8 frames spread over each episode, first to last")" \
  --columns='["frame 1/8 (first): front | wrist","frame 2/8: front | wrist","frame 3/8: front | wrist","frame 4/8: front | wrist","frame 5/8: front | wrist","frame 6/8: front | wrist","frame 7/8: front | wrist","frame 8/8 (last): front | wrist"]' \
  --banners='["0:cues_gt seed 1, appearance none | episode 0: success, best reward 2.93","114:cues_gt seed 1, appearance none | episode 1: failure, best reward 1.93","228:no_cues seed 1, appearance none | episode 3: success, best reward 2.97","342:no_cues seed 1, appearance none | episode 0: failure, best reward 2.20","456:cues_gt seed 1, appearance shifted | episode 0: failure, best reward 0.32","570:no_cues seed 1, appearance shifted | episode 0: failure, best reward 0.31"]'

# benchmarks/render_comparison.py's pictures (they already had headers and row labels; its render times would
# differ if redrawn here). Its font at 16 px, its background.
L --input_path=$IMG/twin_lowpoly_vs_full.png --size=13 --background="$(q "#f5f5f5")" \
  --title="$(q "The twin's low-poly (default) and full-detail meshes, 320x240 cameras, LiftCube seed 3 posed by the scripted expert")"
L --input_path=$IMG/twin_depth_segmentation.png --size=13 --background="$(q "#f5f5f5")" \
  --title="$(q "What one step of the low-poly twin gives per camera: RGB, metric depth, 6-class segmentation (LiftCube seed 3 posed by the scripted expert)")"
