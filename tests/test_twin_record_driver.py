"""so101-twin-record with a policy at the controls (`--driver.policy_path`, DAgger): the policy's targets move the
arm, the expert's commands are what is recorded."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from lerobot.configs import FeatureType, PolicyFeature
from test_twin_record import SMALL, columns, config

from lerobot_env_so101_twin.commands.driver import DriverConfig, PolicyDriver
from lerobot_env_so101_twin.commands.record import record
from lerobot_env_so101_twin.commands.record_array import plan
from lerobot_env_so101_twin.config_teleoperator import SO101TwinExpertConfig
from lerobot_policy_segdepth import SegDepthConfig, SegDepthPolicy, make_segdepth_pre_post_processors


def segdepth_checkpoint(folder: Path, hold: bool) -> Path:
    """A tiny ground-truth SegDepth for SMALL's wrist camera; `hold`: its actor's last layer is zero, so it sends a
    delta of 0 (the present reading) on every frame."""
    size = (1, SMALL["observation_height"], SMALL["observation_width"])
    cfg = SegDepthConfig(
        device="cpu", push_to_hub=False, perception_source="ground_truth", image_size=32, feature_dim=8,
        hidden_dim=16, encoder_channels=8,
        input_features={"observation.images.wrist_depth": PolicyFeature(FeatureType.VISUAL, size),
                        "observation.images.wrist_segmentation": PolicyFeature(FeatureType.VISUAL, size),
                        "observation.state": PolicyFeature(FeatureType.STATE, (6,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))},
    )  # fmt: skip
    torch.manual_seed(0)
    policy = SegDepthPolicy(cfg)
    if hold:
        last = policy.actor.policy[-1]
        torch.nn.init.zeros_(last.weight)
        torch.nn.init.zeros_(last.bias)
    stats = {"observation.state": {"mean": torch.zeros(6), "std": torch.full((6,), 50.0)}}
    pre, post = make_segdepth_pre_post_processors(cfg, dataset_stats=stats)
    out = folder / "pretrained_model"
    for part in (policy, pre, post):
        part.save_pretrained(out)
    return out


def test_the_policy_drives_and_the_expert_is_recorded(tmp_path):
    """A policy that holds the arm where it is: the recorded states stay at rest while the recorded actions are the
    expert's, which keep leading away from them; the expert at the controls, the same scene moves the arm."""
    holding = segdepth_checkpoint(tmp_path / "hold", hold=True)
    robot = {"action_noise_std": 0.0}
    driven = record(config(tmp_path / "driven", 1, robot=robot, driver=DriverConfig(policy_path=str(holding))))
    expert = record(config(tmp_path / "expert", 1, robot=robot))
    assert driven["policy_success"] == "0/1" and "expert_success" not in driven
    assert "policy_success" not in expert
    d, e = columns(tmp_path / "driven"), columns(tmp_path / "expert")
    np.testing.assert_allclose(d["action"][0], e["action"][0], atol=1e-5)  # same scene and state: the same command
    arm = slice(0, 5)
    held = np.abs(d["observation.state"][:, arm] - d["observation.state"][0, arm]).max()
    moved = np.abs(e["observation.state"][:, arm] - e["observation.state"][0, arm]).max()
    assert held < 1.0 < 10.0 < moved, (held, moved)
    # each label leads the reading it was recorded with, as the expert's step towards its goal does
    lead = np.abs(d["action"][:, arm] - d["observation.state"][:, arm]).max(axis=1)
    assert (lead[1:] > 1.0).all(), lead


def test_the_policy_acts_at_the_arms_loop_rate(tmp_path):
    """Under a loop 3 physics periods long, the policy answers frames 0, 3, 6 and its target is held between;
    reset() starts an episode with a fresh answer."""
    from lerobot_env_so101_twin import SO101Twin
    from lerobot_env_so101_twin.commands.record import _dataset_features

    checkpoint = segdepth_checkpoint(tmp_path / "random", hold=False)
    robot = SO101Twin(config(tmp_path / "unused", 1).robot)
    features, (_, _, obs_proc) = _dataset_features(robot, use_videos=True)
    driver = PolicyDriver(DriverConfig(policy_path=str(checkpoint)), features, "lift", robot.name)
    answered = []
    select = driver.policy.select_action
    driver.policy.select_action = lambda batch: answered.append(len(answered)) or select(batch)
    from lerobot.utils.constants import OBS_STR
    from lerobot.utils.feature_utils import build_dataset_frame

    robot.connect()
    try:
        targets = []
        for _ in range(7):
            frame = build_dataset_frame(features, obs_proc(robot.get_observation()), prefix=OBS_STR)
            targets.append(driver.action(frame, periods_per_action=3))
            robot.send_action(targets[-1])
        assert len(answered) == 3
        assert targets[1] == targets[0] == targets[2] and targets[4] == targets[3] == targets[5]
        assert targets[3] != targets[0]  # the arm moved: the policy's answer to the fourth frame differs
        driver.reset()
        driver.action(build_dataset_frame(features, obs_proc(robot.get_observation()), prefix=OBS_STR), 3)
        assert len(answered) == 4
    finally:
        robot.disconnect()


def test_a_driver_is_refused_before_any_work(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--driver.policy_path=.*no config.json.*pretrained_model"):
        record(config(tmp_path / "nothing", 1, driver=DriverConfig(policy_path=str(tmp_path))))
    assert not (tmp_path / "nothing").exists() and not (tmp_path / ".nothing.partial").exists()
    with pytest.raises(FileNotFoundError, match=r"--driver.policy_path="):  # an array's submission, as early
        plan(config(tmp_path / "array", 1, driver=DriverConfig(policy_path=str(tmp_path))), None)
    assert not (tmp_path / ".array.partial").exists()
    checkpoint = segdepth_checkpoint(tmp_path / "c", hold=True)
    good = config(tmp_path / "ds", 1, driver=DriverConfig(policy_path=str(checkpoint)))
    with pytest.raises(ValueError, match=r"--driver.policy_path needs --teleop.expert=reactive"):
        dataclasses.replace(good, teleop=SO101TwinExpertConfig(expert="scripted"))
