"""SegDepth beyond the shared contract: train/inference parity, sim/dataset parity, DrQ-v2 snapshots, bad input."""

from __future__ import annotations

import json
import shutil
from unittest.mock import patch

import pytest
import torch
from clitools import eval_in_twin, run_cli, short_train_flags
from conftest import GT_SIZE
from lerobot.datasets import LeRobotDataset, LeRobotDatasetMetadata
from lerobot.datasets.factory import resolve_delta_timestamps
from lerobot.envs.utils import preprocess_observation
from lerobot.policies import get_policy_class
from lerobot.policies.factory import make_policy, make_pre_post_processors
from lerobot.utils.import_utils import register_third_party_plugins
from run_again import mtimes
from test_perception import save_tiny_segmenter
from torch import nn

from lerobot_env_so101_twin.env import SO101TwinEnv
from lerobot_policy_segdepth import SegDepthConfig, SegDepthPolicy
from so101_run_infra.cli import OutputRefused

register_third_party_plugins()

TINY = {"image_size": 32, "feature_dim": 8, "hidden_dim": 16, "encoder_channels": 8}


def build(root, **overrides):
    meta = LeRobotDatasetMetadata("local/twin_demo", root=root)
    cfg = SegDepthConfig(device="cpu", push_to_hub=False, **{**TINY, **overrides})
    policy = make_policy(cfg, ds_meta=meta)
    pre, post = make_pre_post_processors(cfg, dataset_stats=meta.stats)
    return cfg, meta, policy.eval(), pre, post


def frame(ds: LeRobotDataset, index: int) -> dict:
    item = ds[index]
    out = {k: v for k, v in item.items() if k.startswith(("observation.", "action"))}
    out["task"] = item["task"]
    return out


def test_training_and_inference_build_identical_tensors(gt_dataset):
    """The frames (and actions) a training batch holds for step k equal what select_action sees at step k."""
    cfg, meta, policy, pre, _ = build(gt_dataset)
    history = LeRobotDataset("local/twin_demo", root=gt_dataset, delta_timestamps=resolve_delta_timestamps(cfg, meta))
    single = LeRobotDataset("local/twin_demo", root=gt_dataset)
    start = int(meta.episodes["dataset_from_index"][1])  # episode 1, so padding must not reach into episode 0
    policy.reset()
    for k in range(6):
        train = pre({k2: v[None] if hasattr(v, "ndim") else [v] for k2, v in frame(history, start + k).items()})
        infer = pre(frame(single, start + k))
        train_frames = policy.stacked_frames(train)
        infer_frames = policy.stacked_frames(infer)
        assert train_frames.shape == infer_frames.shape == (1, 6, 32, 32)
        assert torch.equal(train_frames, infer_frames), f"step {k}"
        torch.testing.assert_close(policy._mean_action(train_frames, train), policy._mean_action(infer_frames, infer))
    # at an episode's first step the history is three copies of its first frame, on both paths
    first = pre({k2: v[None] if hasattr(v, "ndim") else [v] for k2, v in frame(history, start).items()})
    segdepth = first["observation.segdepth"][0]
    assert torch.equal(segdepth[0], segdepth[2]) and torch.equal(segdepth[1], segdepth[2])


def test_env_and_dataset_give_the_policy_the_same_observation(gt_dataset):
    """lerobot-eval's env at seed 0 and the recorded episode 0 (robot seed 0) start from the same scene."""
    _, _, _, pre, _ = build(gt_dataset)
    env = SO101TwinEnv(
        cameras=("front", "wrist"), camera_height=GT_SIZE[0], camera_width=GT_SIZE[1], depth=True, segmentation=True
    )
    obs, _ = env.reset(seed=0)
    env.close()
    from_env = pre({**preprocess_observation(obs), "task": [env.task_description]})["observation.segdepth"]
    from_dataset = pre(frame(LeRobotDataset("local/twin_demo", root=gt_dataset), 0))["observation.segdepth"]
    # the env applies the recording's depth quantisation, and HEVC stores it losslessly: identical tensors
    assert torch.equal(from_env, from_dataset)


def test_action_repeat_holds_each_action(gt_dataset):
    _, _, policy, pre, _ = build(gt_dataset, action_repeat=2)
    ds = LeRobotDataset("local/twin_demo", root=gt_dataset)
    policy.reset()
    middle = int(ds.meta.episodes["length"][0]) // 2  # the arm moving; lerobot-record's episodes vary in length
    actions = [policy.select_action(pre(frame(ds, i))) for i in range(middle, middle + 4)]
    assert torch.equal(actions[0], actions[1]) and torch.equal(actions[2], actions[3])
    assert not torch.equal(actions[1], actions[2])


def test_actions_under_bf16_autocast_are_float32_and_close(gt_dataset):
    """lerobot-eval runs a --policy.use_amp=true checkpoint under bf16 autocast and turns the action into numpy."""
    _, _, policy, pre, _ = build(gt_dataset)
    ds = LeRobotDataset("local/twin_demo", root=gt_dataset)
    policy.reset()
    reference = policy.select_action(pre(frame(ds, len(ds) // 2)))
    policy.reset()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        action = policy.select_action(pre(frame(ds, len(ds) // 2)))
    assert action.dtype == torch.float32
    action.numpy()
    torch.testing.assert_close(action, reference, atol=0.05, rtol=0.05)


def test_bad_observations_are_named(gt_dataset):
    _, _, policy, _, _ = build(gt_dataset)
    good = torch.zeros(1, 2, 32, 32)
    with pytest.raises(ValueError, match=r"integers in \[0, 5\]"):
        bad = good.clone()
        bad[0, 0, 3, 3] = 7
        policy.select_action({"observation.segdepth": bad, "observation.state": torch.zeros(1, 6)})
    with pytest.raises(ValueError, match=r"\(\.\.\., 2, 32, 32\)"):
        policy.select_action(
            {"observation.segdepth": torch.zeros(1, 2, 40, 40), "observation.state": torch.zeros(1, 6)}
        )
    with pytest.raises(ValueError, match="NaN"):
        bad = good.clone()
        bad[0, 1, 0, 0] = float("nan")
        policy.select_action({"observation.segdepth": bad, "observation.state": torch.zeros(1, 6)})
    with pytest.raises(KeyError, match="preprocessor"):
        policy.select_action({"observation.state": torch.zeros(1, 6)})


def test_a_dataset_without_ground_truth_is_refused_with_the_fix():
    from lerobot.configs import FeatureType, PolicyFeature

    cfg = SegDepthConfig(
        device="cpu",
        input_features={
            "observation.images.wrist": PolicyFeature(FeatureType.VISUAL, (3, 64, 80)),
            "observation.state": PolicyFeature(FeatureType.STATE, (6,)),
        },
        output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))},
    )
    with pytest.raises(ValueError, match=r"wrist_depth.*--robot\.depth=true"):
        SegDepthPolicy(cfg)


def test_state_and_action_sizes_come_from_the_features():
    """The actor reads the state and writes the action its features give; an action the scale does not cover is
    refused naming both."""
    from lerobot.configs import FeatureType, PolicyFeature

    def config(state: int, action: int, use_state: bool = True) -> SegDepthConfig:
        return SegDepthConfig(
            device="cpu",
            use_state=use_state,
            image_size=32,
            input_features={
                "observation.images.wrist_segmentation": PolicyFeature(FeatureType.VISUAL, (1, 32, 32)),
                "observation.images.wrist_depth": PolicyFeature(FeatureType.VISUAL, (1, 32, 32)),
                "observation.state": PolicyFeature(FeatureType.STATE, (state,)),
            },
            output_features={"action": PolicyFeature(FeatureType.ACTION, (action,))},
        )

    for state, use_state, width in ((6, True, 6), (9, True, 9), (9, False, 0)):
        cfg = config(state, 6, use_state)
        policy = SegDepthPolicy(cfg).actor.policy
        assert (policy[0].in_features, policy[-1].out_features) == (cfg.feature_dim + width, 6)
    with pytest.raises(ValueError, match=r"'action' has 7 entries.*action_scale gives 6"):
        SegDepthPolicy(config(6, 7))


# ----- DrQ-v2 snapshots -----------------------------------------------------------------------------------
def drqv2_reference(in_channels: int, feature_dim: int = 50, hidden_dim: int = 64):
    """facebookresearch/drqv2's Encoder and Actor layouts, written out independently of the plugin."""
    encoder = nn.Module()
    encoder.convnet = nn.Sequential(
        nn.Conv2d(in_channels, 32, 3, stride=2),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=1),
        nn.ReLU(),
        nn.Conv2d(32, 32, 3, stride=1),
        nn.ReLU(),
    )
    actor = nn.Module()
    actor.trunk = nn.Sequential(nn.Linear(32 * 35 * 35, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())
    actor.policy = nn.Sequential(
        nn.Linear(feature_dim, hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, 6),
    )
    return encoder, actor


def test_drqv2_snapshot_converts_and_acts_like_drqv2(tmp_path):
    torch.manual_seed(0)
    encoder, actor = drqv2_reference(in_channels=6)
    snapshot = tmp_path / "1200000_snapshot.pt"
    torch.save({"encoder": encoder.state_dict(), "actor": actor.state_dict(), "_global_step": 1200000}, snapshot)
    out = tmp_path / "segdepth_from_drqv2"
    run_cli(["segdepth-convert-drqv2", f"--snapshot_path={snapshot}", f"--output_dir={out}"], cwd=tmp_path)

    policy = get_policy_class("segdepth").from_pretrained(out)
    assert policy.config.id_encoding == "scaled" and policy.config.action_repeat == 2
    # seed 002's observation: 3 frames of (ids 0-5, disparity 0-255), oldest first
    frames = torch.stack([torch.randint(0, 6, (3, 84, 84)).float(), torch.randint(0, 256, (3, 84, 84)).float()], 1)
    with torch.no_grad():
        seed_obs = frames.reshape(1, 6, 84, 84)  # [ids_0, disp_0, ids_1, disp_1, ids_2, disp_2]
        h = encoder.convnet(seed_obs / 255.0 - 0.5).flatten(1)
        reference = torch.tanh(actor.policy(actor.trunk(h)))
        ours = policy.predict_action_chunk({"observation.segdepth": frames[None]})[:, 0]
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-6)

    # the saved postprocessor turns the deltas into joint targets around the present state
    cfg = policy.config
    cfg.pretrained_path = out
    pre, post = make_pre_post_processors(cfg, pretrained_path=str(out))
    state = torch.tensor([[0.0, -90.0, 80.0, 70.0, 0.0, 30.0]])
    code = torch.full((1, 1, 84, 84), 2000.0)  # class 1 everywhere, in mm
    depth = torch.linspace(100, 400, 84 * 84).reshape(1, 1, 84, 84)
    pre(
        {
            "observation.images.wrist_segmentation": code,
            "observation.images.wrist_depth": depth,
            "observation.state": state,
        }
    )
    targets = post(reference)
    torch.testing.assert_close(targets, state + reference * torch.tensor([4.0] * 5 + [15.0]))


def test_the_converter_run_again_does_nothing_resumes_a_kill_and_refuses_other_settings(tmp_path):
    from lerobot_policy_segdepth.commands import convert_drqv2
    from lerobot_policy_segdepth.commands.convert_drqv2 import ConvertDrQV2Config, convert

    encoder, actor = drqv2_reference(in_channels=6)
    snapshot = tmp_path / "snap.pt"
    torch.save({"encoder": encoder.state_dict(), "actor": actor.state_dict()}, snapshot)
    out = tmp_path / "out"
    command = ["segdepth-convert-drqv2", f"--snapshot_path={snapshot}", f"--output_dir={out}"]
    run_cli(command, cwd=tmp_path)
    before = mtimes(out)
    again = run_cli(command, cwd=tmp_path)
    assert again.stdout.strip().endswith(f"{out}: already made with these settings (from {snapshot}); nothing to do")
    other = run_cli([*command, "--action_repeat=3"], cwd=tmp_path, check=False)
    assert other.returncode != 0 and "Traceback" not in other.stderr, other.stderr[-3000:]
    assert f"{out} holds a conversion made with other settings (settings.action_repeat: saved 2, now 3)" in other.stderr
    assert "choose another --output_dir, or remove that folder to make it again" in other.stderr
    assert mtimes(out) == before
    torch.save({"encoder": encoder.state_dict(), "actor": actor.state_dict(), "_global_step": 5}, snapshot)
    with pytest.raises(OutputRefused, match=r"other settings \(snapshot_sha256: saved"):
        convert(ConvertDrQV2Config(snapshot_path=snapshot, output_dir=out))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(OutputRefused, match="holds nothing segdepth-convert-drqv2 wrote"):
        convert(ConvertDrQV2Config(snapshot_path=snapshot, output_dir=tmp_path / "mine"))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with patch.object(convert_drqv2, "save_policy", killed), pytest.raises(KeyboardInterrupt):
        convert(ConvertDrQV2Config(snapshot_path=snapshot, output_dir=tmp_path / "killed"))
    assert not (tmp_path / "killed").exists() and not list(tmp_path.glob(".killed*"))
    convert(ConvertDrQV2Config(snapshot_path=snapshot, output_dir=tmp_path / "killed"))
    convert(ConvertDrQV2Config(snapshot_path=snapshot, output_dir=tmp_path / "clean"))
    for name in ("model.safetensors", "config.json", convert_drqv2.RECORD):
        assert (tmp_path / "killed" / name).read_bytes() == (tmp_path / "clean" / name).read_bytes(), name


def test_converter_rejects_a_mismatched_snapshot(tmp_path):
    encoder, actor = drqv2_reference(in_channels=9)
    snapshot = tmp_path / "snap.pt"
    torch.save({"encoder": encoder.state_dict(), "actor": actor.state_dict()}, snapshot)
    proc = run_cli(
        ["segdepth-convert-drqv2", f"--snapshot_path={snapshot}", f"--output_dir={tmp_path / 'out'}"],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0 and "takes 9 channels" in proc.stderr
    assert not (tmp_path / "out").exists()
    torch.save({"encoder": encoder.state_dict()}, snapshot)
    proc = run_cli(
        ["segdepth-convert-drqv2", f"--snapshot_path={snapshot}", f"--output_dir={tmp_path / 'out'}"],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0 and "no 'actor' entry" in proc.stderr


def test_absolute_action_mode_maps_the_actor_range_onto_the_recorded_targets(gt_dataset):
    cfg, meta, policy, pre, post = build(gt_dataset, action_mode="absolute")
    assert not any("JointDelta" in type(s).__name__ for s in pre.steps)
    low = torch.as_tensor(meta.stats["action"]["min"]).float()
    high = torch.as_tensor(meta.stats["action"]["max"]).float()
    torch.testing.assert_close(post(torch.ones(1, 6)), high[None])
    torch.testing.assert_close(post(-torch.ones(1, 6)), low[None])
    # training targets are the recorded absolute actions, scaled into the actor's [-1, 1]
    ds = LeRobotDataset("local/twin_demo", root=gt_dataset, delta_timestamps=resolve_delta_timestamps(cfg, meta))
    item = frame(ds, len(ds) // 2)
    batch = pre({k: v[None] if hasattr(v, "ndim") else [v] for k, v in item.items()})
    torch.testing.assert_close(batch["action"][0], 2 * (item["action"] - low) / (high - low) - 1)
    policy.reset()
    action = post(policy.select_action(pre(frame(LeRobotDataset("local/twin_demo", root=gt_dataset), len(ds) // 2))))
    assert ((action >= low - 1e-4) & (action <= high + 1e-4)).all()


def test_an_action_lead_trains_on_the_action_that_many_periods_later(gt_dataset):
    """With action_lead=2 the training target for frame t is the delta from t's state to the recorded action at
    t + 2, computed by hand here; the loss equals the one on that target without a time axis."""
    from lerobot_policy_segdepth.actions import absolute_to_delta

    cfg, meta, policy, pre, _ = build(gt_dataset, action_lead=2)
    assert cfg.action_delta_indices == [2]
    lead = LeRobotDataset("local/twin_demo", root=gt_dataset, delta_timestamps=resolve_delta_timestamps(cfg, meta))
    single = LeRobotDataset("local/twin_demo", root=gt_dataset)
    start = int(meta.episodes["dataset_from_index"][1])
    item = frame(lead, start + 5)
    batch = pre({k: v[None] if hasattr(v, "ndim") else [v] for k, v in item.items()})
    later, state = single[start + 7]["action"], single[start + 5]["observation.state"]
    expected = absolute_to_delta(later[None], state[None], list(cfg.action_scale))
    torch.testing.assert_close(batch["action"][:, 0], expected)
    policy.train()
    torch.manual_seed(0)
    loss, _ = policy.forward(batch)
    flat = {**batch, "action": batch["action"][:, 0]}
    torch.manual_seed(0)
    assert torch.equal(loss, policy.forward(flat)[0])
    with pytest.raises(ValueError, match=r"--policy.action_lead=-1"):
        SegDepthConfig(action_lead=-1)


# ----- perception_source="segmenter": ids from the segmenter on the RGB camera, disparity from the twin's depth -----
SEGMENTER_SOURCE = {"perception_source": "segmenter", "segmenter_input_size": 32}


def by_hand_ids(segmenter_dir, rgb: torch.Tensor, input_size: int, output_size: int) -> torch.Tensor:
    """The segmenter's argmax written out: centre square, bicubic to input_size, logits bilinear to output_size."""
    import torch.nn.functional as F
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    from so101_segmenter.model import load_segmenter

    side = min(rgb.shape[-2:])
    top, left = (rgb.shape[-2] - side) // 2, (rgb.shape[-1] - side) // 2
    crop = rgb[..., top : top + side, left : left + side]
    crop = TF.resize(crop, [input_size, input_size], InterpolationMode.BICUBIC, antialias=True).clamp(0, 1)
    with torch.no_grad():
        logits = load_segmenter(segmenter_dir).eval()(crop)
    logits = F.interpolate(logits, size=(output_size, output_size), mode="bilinear", align_corners=False)
    return logits.argmax(dim=1, keepdim=True).float()


def test_segmenter_source_is_the_segmenters_ids_and_the_twins_disparity(gt_dataset, tmp_path):
    seg_dir = save_tiny_segmenter(tmp_path / "segmenter")
    cfg, meta, policy, pre, post = build(gt_dataset, segmenter_path=str(seg_dir), **SEGMENTER_SOURCE)
    assert cfg.image_keys == ["observation.images.wrist", "observation.images.wrist_depth"]
    _, _, _, gt_pre, _ = build(gt_dataset)  # the ground_truth source, for its disparity
    ds = LeRobotDataset("local/twin_demo", root=gt_dataset)
    item = frame(ds, 10)
    ours = pre(dict(item))["observation.segdepth"]
    assert ours.shape == (1, 2, 32, 32)
    ids = by_hand_ids(seg_dir, item["observation.images.wrist"][None], 32, 32)
    assert ids.unique().numel() > 1, "the tiny segmenter must give more than one class"
    assert torch.equal(ours[:, :1], ids)
    assert torch.equal(ours[:, 1], gt_pre(dict(item))["observation.segdepth"][:, 1])

    # a training batch (frame history) holds the same frame last
    history = LeRobotDataset("local/twin_demo", root=gt_dataset, delta_timestamps=resolve_delta_timestamps(cfg, meta))
    train = pre({k: v[None] if hasattr(v, "ndim") else [v] for k, v in frame(history, 10).items()})
    assert torch.equal(train["observation.segdepth"][:, -1], ours)

    # the segmenter's weights travel inside the saved checkpoint: its folder is not needed to run it
    ckpt = tmp_path / "pretrained_model"
    for part in (policy, pre, post):
        part.save_pretrained(ckpt)
    shutil.rmtree(seg_dir)
    loaded = SegDepthConfig.from_pretrained(ckpt)
    loaded.pretrained_path = ckpt
    assert loaded.perception_source == "segmenter"
    pre2, _ = make_pre_post_processors(loaded, pretrained_path=str(ckpt))
    assert torch.equal(pre2(dict(item))["observation.segdepth"], ours)


def test_segmenter_source_refuses_bad_combinations_naming_the_field(tmp_path):
    from lerobot.configs import FeatureType, PolicyFeature

    with pytest.raises(ValueError, match=r"--policy\.perception_source=segmenter needs --policy\.segmenter_path"):
        SegDepthConfig(perception_source="segmenter")
    with pytest.raises(
        ValueError, match=r"--policy\.depth_model='my/depth' is not used with --policy\.perception_source"
    ):
        SegDepthConfig(perception_source="segmenter", segmenter_path="seg", depth_model="my/depth")
    seg_dir = str(save_tiny_segmenter(tmp_path / "segmenter"))
    features = {
        "observation.images.wrist": PolicyFeature(FeatureType.VISUAL, (3, 64, 80)),
        "observation.state": PolicyFeature(FeatureType.STATE, (6,)),
    }
    cfg = SegDepthConfig(
        device="cpu",
        perception_source="segmenter",
        segmenter_path=seg_dir,
        input_features=dict(features),
        output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))},
    )
    with pytest.raises(ValueError, match=r"\['observation\.images\.wrist_depth'\].*--env\.depth=true"):
        SegDepthPolicy(cfg)
    with pytest.raises(ValueError, match=r"segmenter of 6 classes, but --policy\.num_classes=7"):
        make_pre_post_processors(SegDepthConfig(perception_source="segmenter", segmenter_path=seg_dir, num_classes=7))


@pytest.mark.slow
def test_segmenter_source_trains_and_evaluates_with_the_stock_commands(gt_dataset, tmp_path):
    """lerobot-train --policy.perception_source=segmenter on a recording with RGB and depth, then lerobot-eval in the
    twin with only --env.depth=true; the segmenter's folder is deleted in between (its weights are in the
    checkpoint). The policy leads its targets by a period and chains them, as the arm-family recipes train."""
    seg_dir = save_tiny_segmenter(tmp_path / "segmenter")
    run_cli(
        [
            "lerobot-train",
            "--policy.type=segdepth",
            "--policy.perception_source=segmenter",
            f"--policy.segmenter_path={seg_dir}",
            *[f"--policy.{k}={v}" for k, v in {**TINY, "segmenter_input_size": 32}.items()],
            "--policy.action_lead=1",
            "--policy.action_mode=chained",
            "--dataset.repo_id=local/twin_demo",
            f"--dataset.root={gt_dataset}",
            *short_train_flags(tmp_path / "train", steps=2),
        ],
        cwd=tmp_path,
    )
    ckpt = tmp_path / "train/checkpoints/last/pretrained_model"
    steps = [s["registry_name"] for s in json.loads((ckpt / "policy_preprocessor.json").read_text())["steps"]]
    assert "so101_segmenter" in steps and "so101_depth_to_disparity" in steps
    assert "so101_segmentation_from_code" not in steps and "so101_depth_anything" not in steps
    post = [s["registry_name"] for s in json.loads((ckpt / "policy_postprocessor.json").read_text())["steps"]]
    assert post.index("so101_remember_joint_target") == post.index("so101_clip_joint_targets") + 1
    shutil.rmtree(seg_dir)
    overall = eval_in_twin(ckpt, tmp_path / "eval", GT_SIZE, tmp_path, flags=("--env.depth=true",))
    assert overall["n_episodes"] == 1 and 0.0 <= overall["pc_success"] <= 100.0
    # the same stock evaluation on an arm of the `unseen` family: its camera effects reach the segmenter's RGB
    arm = ("--env.depth=true", "--env.arm=unseen", "--env.arm_seed=3")
    overall = eval_in_twin(ckpt, tmp_path / "eval_unseen_arm", GT_SIZE, tmp_path, flags=arm, episode_length=30)
    assert overall["n_episodes"] == 1 and 0.0 <= overall["pc_success"] <= 100.0
