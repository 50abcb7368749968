"""The stock LeRobot commands driving the twin end to end: record, load, train, evaluate, roll out, teleoperate."""

import numpy as np
import pytest
import torch
from clitools import TASK, eval_in_twin, record_twin_dataset, rollout_in_twin, run_cli
from conftest import GT_SIZE

from lerobot_env_so101_twin.simulation import REST_POSE, TwinConfig, TwinSimulation
from so101_core import CUBE, MOTOR_KEYS, segmentation_from_code

pytestmark = pytest.mark.slow

SIZE = GT_SIZE


def test_recorded_dataset_looks_like_a_real_so101_dataset(gt_dataset):
    from lerobot.datasets import LeRobotDataset

    ds = LeRobotDataset("local/twin_demo", root=gt_dataset)
    assert ds.num_episodes == 2 and ds.fps == 30
    assert ds.meta.features["observation.state"]["names"] == list(MOTOR_KEYS)
    assert ds.meta.features["action"]["names"] == list(MOTOR_KEYS)
    assert ds.meta.features["observation.images.front"]["dtype"] == "video"
    assert ds.meta.features["observation.images.front"]["shape"] == (*SIZE, 3)
    for cam in ("front", "wrist"):
        for kind in ("depth", "segmentation"):
            assert ds.meta.features[f"observation.images.{cam}_{kind}"]["info"]["is_depth_map"]
    item = ds[0]
    assert item["observation.images.front"].shape == (3, *SIZE)
    assert item["observation.images.wrist_depth"].shape == (1, *SIZE)
    assert item["task"] == TASK
    # units: degrees for the body joints, 0-100 for the gripper, starting from the rest pose
    np.testing.assert_allclose(item["observation.state"].numpy(), REST_POSE, atol=0.5)
    states = torch.stack([ds[i]["observation.state"] for i in range(0, ds.num_frames, 10)])
    assert states[:, 5].min() >= -0.5 and states[:, 5].max() <= 100.5
    assert (states[:, :5].abs() < 180).all()


def test_segmentation_survives_storage_exactly(gt_dataset):
    """Every episode's first frame is the seeded reset scene: re-render it and compare pixel for pixel."""
    from lerobot.datasets import LeRobotDataset

    ds = LeRobotDataset("local/twin_demo", root=gt_dataset)
    twin = TwinSimulation(TwinConfig(cameras=dict.fromkeys(("front", "wrist"), SIZE), depth=True, segmentation=True))
    try:
        for episode in range(ds.num_episodes):
            first = int(ds.meta.episodes["dataset_from_index"][episode])
            item = ds[first]
            twin.reset(seed=episode)  # robot seed 0 + episode index
            frames = twin.render()
            for cam in ("front", "wrist"):
                stored = segmentation_from_code(item[f"observation.images.{cam}_segmentation"][0], unit="mm")
                np.testing.assert_array_equal(stored.numpy(), frames[cam].segmentation)
                depth_m = item[f"observation.images.{cam}_depth"][0].numpy() / 1000.0
                near = frames[cam].depth < 2.0
                # 12-bit log quantisation over 0.01-10 m: ~1.3 mm steps at half a metre
                np.testing.assert_allclose(depth_m[near], frames[cam].depth[near], atol=4e-3)
            # the cube's centre projects onto class 3 in the front camera
            stored = segmentation_from_code(item["observation.images.front_segmentation"][0], unit="mm").numpy()
            assert (stored == CUBE).sum() > 5
    finally:
        twin.close()


def test_existing_dataset_root_is_never_overwritten(gt_dataset):
    before = {p: p.stat().st_mtime_ns for p in gt_dataset.rglob("*") if p.is_file()}
    proc = run_cli(
        [
            "lerobot-record",
            "--robot.type=so101_twin",
            "--teleop.type=so101_twin_expert",
            "--dataset.repo_id=local/twin_demo",
            f"--dataset.root={gt_dataset}",
            "--dataset.num_episodes=1",
            "--dataset.episode_time_s=1",
            f"--dataset.single_task={TASK}",
            "--dataset.push_to_hub=false",
            "--play_sounds=false",
        ],
        cwd=gt_dataset.parent,
        check=False,
    )
    assert proc.returncode != 0
    assert "FileExistsError" in proc.stderr + proc.stdout
    assert {p: p.stat().st_mtime_ns for p in gt_dataset.rglob("*") if p.is_file()} == before


def test_unknown_task_is_a_clear_cli_error(tmp_path):
    proc = run_cli(
        [
            "lerobot-record",
            "--robot.type=so101_twin",
            "--robot.task=StackCubes",
            "--teleop.type=so101_twin_expert",
            "--dataset.repo_id=local/x",
            f"--dataset.root={tmp_path / 'x'}",
            "--dataset.single_task=x",
            "--dataset.push_to_hub=false",
        ],
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode != 0
    assert "not a so101_twin task" in proc.stderr + proc.stdout
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def act_checkpoint(tmp_path_factory):
    """Record a plain (RGB + state) dataset, then train LeRobot's ACT on it for two steps."""
    base = tmp_path_factory.mktemp("train")
    record_twin_dataset(base / "plain", 1, 2, SIZE, ground_truth=False)
    run_cli(
        [
            "lerobot-train",
            "--policy.type=act",
            "--policy.pretrained_backbone_weights=null",
            "--policy.dim_model=32",
            "--policy.n_encoder_layers=1",
            "--policy.n_decoder_layers=1",
            "--policy.dim_feedforward=64",
            "--policy.chunk_size=5",
            "--policy.n_action_steps=5",
            "--policy.device=cpu",
            "--policy.push_to_hub=false",
            "--dataset.repo_id=local/twin_demo",
            f"--dataset.root={base / 'plain'}",
            "--steps=2",
            "--batch_size=2",
            "--num_workers=0",
            "--save_freq=2",
            f"--output_dir={base / 'out'}",
            "--wandb.enable=false",
        ],
        cwd=base,
    )
    return base / "out/checkpoints/last/pretrained_model"


def test_lerobot_eval_in_the_twin(act_checkpoint, tmp_path):
    out = tmp_path / "eval"
    overall = eval_in_twin(act_checkpoint, out, SIZE, tmp_path, episode_length=20, episodes=2)
    assert overall["n_episodes"] == 2
    assert 0.0 <= overall["pc_success"] <= 100.0
    assert len(list(out.rglob("*.mp4"))) == 2


def test_lerobot_rollout_drives_the_twin_like_the_follower(act_checkpoint, tmp_path):
    rollout_in_twin(act_checkpoint, SIZE, tmp_path)


def test_lerobot_teleoperate_with_the_expert(tmp_path):
    proc = run_cli(
        [
            "lerobot-teleoperate",
            "--robot.type=so101_twin",
            "--robot.cameras=[]",
            "--teleop.type=so101_twin_expert",
            "--teleop_time_s=2",
            "--fps=30",
        ],
        cwd=tmp_path,
    )
    assert "twin SO101Twin disconnected" in proc.stdout + proc.stderr
