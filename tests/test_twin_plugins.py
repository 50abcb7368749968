"""The twin's plugins as LeRobot sees them: discovery in a fresh process, and the follower's exact features."""

import importlib.metadata
import json
import subprocess
import sys

import numpy as np
import pytest

from lerobot_env_so101_twin import SO101Twin, SO101TwinConfig, SO101TwinEnvConfig, SO101TwinExpert
from lerobot_env_so101_twin.config_teleoperator import SO101TwinExpertConfig


def test_distribution_name_is_discoverable():
    dist = importlib.metadata.distribution("lerobot_env_so101_twin")
    # LeRobot matches the METADATA Name literally: hyphens would be silently ignored
    assert dist.metadata["Name"] == "lerobot_env_so101_twin"


def test_lerobot_discovers_env_robot_and_teleop_in_a_fresh_process():
    code = """
import json
from lerobot.utils.import_utils import register_third_party_plugins
register_third_party_plugins()
from lerobot.envs.configs import EnvConfig
from lerobot.robots import RobotConfig, make_robot_from_config
from lerobot.teleoperators import TeleoperatorConfig, make_teleoperator_from_config
robot = make_robot_from_config(RobotConfig.get_choice_class("so101_twin")())
teleop = make_teleoperator_from_config(TeleoperatorConfig.get_choice_class("so101_twin_expert")())
print(json.dumps({
    "env": "so101_twin" in EnvConfig.get_known_choices(),
    "robot": type(robot).__module__ + "." + type(robot).__name__,
    "teleop": type(teleop).__module__ + "." + type(teleop).__name__,
}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found == {
        "env": True,
        "robot": "lerobot_env_so101_twin.robot.SO101Twin",
        "teleop": "lerobot_env_so101_twin.teleoperator.SO101TwinExpert",
    }


def test_features_match_the_real_so101_follower(tmp_path):
    from lerobot.cameras.opencv import OpenCVCameraConfig
    from lerobot.robots.so_follower import SO101Follower, SO101FollowerConfig

    cams = {n: OpenCVCameraConfig(index_or_path=0, width=640, height=480, fps=30) for n in ("front", "wrist")}
    real = SO101Follower(SO101FollowerConfig(port="/dev/null", id="t", cameras=cams, calibration_dir=tmp_path))
    twin = SO101Twin(SO101TwinConfig(calibration_dir=tmp_path))
    assert twin.action_features == real.action_features
    assert twin.observation_features == real.observation_features  # same keys, order and (480, 640, 3)
    # ground truth adds depth-map features beside each camera
    gt = SO101Twin(SO101TwinConfig(depth=True, segmentation=True, calibration_dir=tmp_path)).observation_features
    assert {k: v for k, v in gt.items() if k.endswith(("_depth", "_segmentation"))} == {
        "front_depth": (480, 640, 1),
        "front_segmentation": (480, 640, 1),
        "wrist_depth": (480, 640, 1),
        "wrist_segmentation": (480, 640, 1),
    }


def test_robot_steps_clips_and_resets(tmp_path):
    robot = SO101Twin(
        SO101TwinConfig(observation_height=48, observation_width=64, max_relative_target=10.0, calibration_dir=tmp_path)
    )
    with pytest.raises(RuntimeError, match="not connected"):
        robot.get_observation()
    robot.connect()
    try:
        obs = robot.get_observation()
        assert obs["front"].shape == (48, 64, 3) and obs["front"].dtype == np.uint8
        start = np.array([obs[k] for k in robot.action_features])
        sent = robot.send_action({k: v + 50.0 for k, v in zip(robot.action_features, start, strict=True)})
        # capped at 10 units from the present position, as so101_follower's max_relative_target does
        np.testing.assert_allclose(
            np.array(list(sent.values())), np.minimum(start + 10.0, robot.twin.joint_limits[:, 1])
        )
        assert robot.last_clip_report.clipped
        with pytest.raises(KeyError, match=r"gripper\.pos"):
            robot.send_action({"shoulder_pan.pos": 0.0})
        version = robot.scene_version
        robot.reset_scene(4)
        assert robot.scene_version == version + 1
    finally:
        robot.disconnect()
    assert not robot.is_connected


def test_expert_teleop_drives_the_connected_twin(tmp_path):
    robot = SO101Twin(SO101TwinConfig(cameras=[], calibration_dir=tmp_path))
    teleop = SO101TwinExpert(SO101TwinExpertConfig(calibration_dir=tmp_path))
    teleop.connect()
    with pytest.raises(RuntimeError, match="exactly one connected so101_twin"):
        teleop.get_action()
    robot.connect()
    try:
        robot.reset_scene(2)
        for _ in range(8 * 30):
            robot.send_action(teleop.get_action())
        assert robot.twin.is_success()
    finally:
        robot.disconnect()
        teleop.disconnect()


def test_recorded_float32_actions_replay_an_episode_exactly(tmp_path):
    """A dataset stores float32 actions: sent again from the same scene and noise seed they reproduce the episode
    joint for joint, through the grasp (where a 1e-7 difference grows to degrees within a second)."""
    config = SO101TwinConfig(cameras=[], task="LiftCube", action_noise_std=1.0, calibration_dir=tmp_path)
    robot = SO101Twin(config)
    teleop = SO101TwinExpert(SO101TwinExpertConfig(calibration_dir=tmp_path))
    robot.connect()
    teleop.connect()
    try:
        robot.reset_scene(1)
        recorded, states, lifted = [], [], False
        for _ in range(8 * 30):
            action = teleop.get_action()
            recorded.append(np.array(list(action.values()), dtype=np.float32))  # what the dataset keeps
            robot.send_action(action)
            states.append(robot.twin.joint_positions())
            lifted |= robot.twin.is_success()
        assert lifted  # the episode grasped and lifted the cube
        robot.reset_scene(1)
        for t, action in enumerate(recorded):
            robot.send_action(dict(zip(robot.action_features, action.tolist(), strict=True)))
            np.testing.assert_array_equal(robot.twin.joint_positions(), states[t], err_msg=f"step {t}")
    finally:
        robot.disconnect()
        teleop.disconnect()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"task": "Nope"}, "not a so101_twin task"),
        ({"observation_height": 0}, "must be positive"),
        ({"cameras": ["top"]}, "unknown camera"),
    ],
)
def test_env_config_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SO101TwinEnvConfig(**kwargs)


def test_env_features_follow_the_dataset_layout():
    from lerobot.envs.utils import env_to_policy_features

    cfg = SO101TwinEnvConfig(observation_height=48, observation_width=64, depth=True, segmentation=True)
    feats = env_to_policy_features(cfg)
    assert feats["observation.images.front"].shape == (3, 48, 64)
    assert feats["observation.images.wrist_segmentation"].shape == (1, 48, 64)
    assert feats["observation.state"].shape == (6,)
    assert feats["action"].shape == (6,)


def test_the_robot_the_env_and_the_simulation_share_one_setup():
    """One dataclass holds what the three share; the robot and the env add the cameras with one size spelling, and
    refuse the same bad value naming their own flag."""
    from dataclasses import fields

    from lerobot_env_so101_twin.simulation import TwinConfig
    from lerobot_env_so101_twin.twin_setup import TwinCameras, TwinSetup

    shared = {f.name for f in fields(TwinSetup)}
    assert {"task", "fps", "depth", "segmentation", "appearance", "look_seed", "arm", "arm_params"} <= shared
    for config in (SO101TwinConfig, SO101TwinEnvConfig, TwinConfig):
        assert issubclass(config, TwinSetup), config
    for config in (SO101TwinConfig, SO101TwinEnvConfig):
        assert issubclass(config, TwinCameras)
        assert {f.name for f in fields(TwinCameras)} <= {f.name for f in fields(config)}
    for prefix, config in (("robot", SO101TwinConfig), ("env", SO101TwinEnvConfig)):
        with pytest.raises(ValueError, match=rf"--{prefix}\.look_seed=3 fixes a drawn look"):
            config(look_seed=3)
        with pytest.raises(ValueError, match=rf"--{prefix}\.observation_height/observation_width must be positive"):
            config(observation_width=0)
    robot, env = (
        SO101TwinConfig(appearance="unseen", look_seed=61),
        SO101TwinEnvConfig(appearance="unseen", look_seed=61),
    )
    assert {name: getattr(robot, name) for name in shared} == {name: getattr(env, name) for name in shared}


def test_the_robots_former_camera_size_flags_still_work_and_say_the_new_name(caplog):
    import draccus

    with caplog.at_level("WARNING"):
        robot = draccus.parse(SO101TwinConfig, args=["--camera_height=96", "--camera_width=128"])
    assert (robot.observation_height, robot.observation_width) == (96, 128)
    assert (robot.camera_height, robot.camera_width) == (None, None)
    said = [r.getMessage() for r in caplog.records]
    assert "--robot.camera_height is now --robot.observation_height; the old name will go" in said
    assert "--robot.camera_width is now --robot.observation_width; the old name will go" in said


@pytest.mark.parametrize("length", [45, 450])
def test_the_episode_length_flag_sets_the_twins_own_limit_longer_or_shorter_than_the_tasks(length):
    """--env.episode_length beyond the task's 300 periods lengthens the episode: gym.make keeps `max_episode_steps`
    for its TimeLimit, so the twin gets its own limit from the config too."""
    import gymnasium as gym

    cfg = SO101TwinEnvConfig(task="LiftCube", episode_length=length, cameras=[])
    env = gym.make(cfg.gym_id, disable_env_checker=True, **cfg.gym_kwargs)
    env.reset(seed=0)
    rest = np.array([0.0, -98.0, 70.0, 90.0, 0.0, 20.0])
    steps, done = 0, False
    while not done:
        _, _, terminated, truncated, _ = env.step(rest)
        steps, done = steps + 1, terminated or truncated
    assert (steps, env.unwrapped.twin.steps) == (length, length)
    env.close()
