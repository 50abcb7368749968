"""`lerobot-rollout --robot.type=so101_follower --policy.path=<segdepth, perception_source=segmenter_depth_anything>`
on a fake arm.

LeRobot's own SO101Follower is built by the stock rollout entry point; only its Feetech bus is replaced by an
in-process fake (records every write, returns the positions it was sent) and its camera by a registered
playback camera that serves frames rendered by the twin. The policy is a tiny SegDepth checkpoint whose
preprocessor runs tiny random segmenter and Depth Anything models saved to tmp_path.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.motors import Motor
from playback_camera import PlaybackCamera  # noqa: F401  (registers --robot.cameras' type so101_playback)
from test_perception import save_tiny_depth_anything, save_tiny_segmenter

from lerobot_policy_segdepth import SegDepthConfig, SegDepthPolicy, make_segdepth_pre_post_processors
from so101_core import JOINT_NAMES
from so101_core.joint_limits import TWIN_JOINT_LIMITS, limits_from_calibration

HEIGHT, WIDTH = 60, 80
START = {"shoulder_pan": 0.0, "shoulder_lift": -20.0, "elbow_flex": 30.0, "wrist_flex": 40.0, "wrist_roll": 0.0}
START_GRIPPER = 97.0  # 3 units below the gripper's limit: the policy below pushes it open
MAX_RELATIVE_TARGET = 5.0


# ----- fakes ------------------------------------------------------------------------------------------------------
class FakeFeetechBus:
    """Stands in for FeetechMotorsBus in normalised units (degrees, gripper 0-100): no serial port, no packets."""

    instances: ClassVar[list[FakeFeetechBus]] = []

    def __init__(self, port: str, motors: dict[str, Motor], calibration=None, **_):
        self.port, self.motors, self.calibration = port, motors, calibration or {}
        self.present = {**START, "gripper": START_GRIPPER}
        self.torque = dict.fromkeys(motors, False)
        self.connected = False
        self.goal_writes: list[tuple[dict, dict, dict]] = []  # (present before, goal, torque at the time)
        self.writes: list[tuple[str, str, float]] = []
        FakeFeetechBus.instances.append(self)

    @property
    def is_connected(self) -> bool:
        return self.connected

    @property
    def is_calibrated(self) -> bool:
        return True

    def connect(self, handshake: bool = True) -> None:
        self.connected = True

    def disconnect(self, disable_torque: bool = True) -> None:
        if disable_torque:
            self.disable_torque()
        self.connected = False

    def configure_motors(self, *_, **__) -> None:
        pass

    def enable_torque(self, motors=None, num_retry: int = 0) -> None:
        for motor in [motors] if isinstance(motors, str) else motors or self.motors:
            self.torque[motor] = True

    def disable_torque(self, motors=None, num_retry: int = 0) -> None:
        for motor in [motors] if isinstance(motors, str) else motors or self.motors:
            self.torque[motor] = False

    @contextlib.contextmanager
    def torque_disabled(self, motors=None):
        self.disable_torque(motors)
        try:
            yield
        finally:
            self.enable_torque(motors)

    def write(self, data_name: str, motor: str, value, **_) -> None:
        self.writes.append((data_name, motor, value))
        if data_name == "Torque_Enable":
            self.torque[motor] = bool(value)

    def sync_read(self, data_name: str, motors=None, **_) -> dict[str, float]:
        assert self.connected, "read from a disconnected bus"
        assert data_name == "Present_Position", data_name
        return dict(self.present)

    def sync_write(self, data_name: str, values: dict[str, float], **_) -> None:
        assert self.connected, "write to a disconnected bus"
        assert data_name == "Goal_Position", data_name
        self.goal_writes.append((dict(self.present), dict(values), dict(self.torque)))
        self.present.update({k: float(v) for k, v in values.items()})  # a stiff servo reaches its goal


# ----- fixtures ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim_frames(tmp_path_factory) -> Path:
    """Wrist-camera RGB frames of the twin while the arm moves, as the real camera would deliver them."""
    from lerobot_env_so101_twin.env import SO101TwinEnv

    env = SO101TwinEnv(cameras=("wrist",), camera_height=HEIGHT, camera_width=WIDTH)
    obs, _ = env.reset(seed=0)
    frames = [obs["pixels"]["wrist"]]
    for t in range(5):
        target = obs["agent_pos"] + np.array([3.0, -3.0, 3.0, 0.0, 0.0, -5.0]) * (t % 2 * 2 - 1)
        obs, *_ = env.step(target.astype(np.float32))
        frames.append(obs["pixels"]["wrist"])
    env.close()
    path = tmp_path_factory.mktemp("playback") / "wrist.npy"
    np.save(path, np.stack(frames))
    return path


# A follower calibration as lerobot-calibrate writes it (encoder ticks); its ranges are narrower than the twin's.
CALIBRATION = {
    "shoulder_pan": (1, 0, 1400, 2700),
    "shoulder_lift": (2, 0, 900, 3200),
    "elbow_flex": (3, 0, 1000, 3100),
    "wrist_flex": (4, 0, 950, 3150),
    "wrist_roll": (5, 0, 0, 4095),
    "gripper": (6, 0, 2000, 3400),
}


def write_calibration(path: Path) -> Path:
    """CALIBRATION saved with LeRobot's own MotorCalibration and draccus, as SOFollower._save_calibration does."""
    import draccus
    from lerobot.motors import MotorCalibration

    calibration = {
        name: MotorCalibration(id=i, drive_mode=0, homing_offset=0, range_min=low, range_max=high)
        for name, (i, _, low, high) in CALIBRATION.items()
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f, draccus.config_type("json"):
        draccus.dump(calibration, f, indent=4)
    return path


@pytest.fixture(scope="module")
def calibration_file(tmp_path_factory) -> Path:
    return write_calibration(tmp_path_factory.mktemp("calibration") / "test_follower.json")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, calibration_file) -> Path:
    """A tiny segdepth checkpoint with perception_source=segmenter_depth_anything whose actor always opens the gripper
    (delta +1), its joint limits read from the follower's calibration."""
    root = tmp_path_factory.mktemp("segdepth_models")
    cfg = SegDepthConfig(
        device="cpu",
        push_to_hub=False,
        joint_limits_file=str(calibration_file),
        perception_source="segmenter_depth_anything",
        segmenter_path=str(save_tiny_segmenter(root / "segmenter")),
        depth_model=str(save_tiny_depth_anything(root / "depth_anything")),
        segmenter_input_size=32,
        depth_input_size=28,
        image_size=32,
        feature_dim=8,
        hidden_dim=16,
        encoder_channels=8,
        input_features={
            "observation.images.wrist": PolicyFeature(FeatureType.VISUAL, (3, HEIGHT, WIDTH)),
            "observation.state": PolicyFeature(FeatureType.STATE, (6,)),
        },
        output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))},
    )
    torch.manual_seed(0)
    policy = SegDepthPolicy(cfg)
    with torch.no_grad():
        policy.actor.policy[-1].bias[5] = 50.0  # tanh -> +1 on the gripper: the clip at its limit must act
    stats = {"observation.state": {"mean": torch.zeros(6), "std": torch.full((6,), 50.0)}}
    pre, post = make_segdepth_pre_post_processors(cfg, dataset_stats=stats)
    out = root / "pretrained_model"
    policy.save_pretrained(out)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    return out


@pytest.fixture
def fake_hardware(monkeypatch):
    import lerobot.robots.so_follower.so_follower as so_follower

    FakeFeetechBus.instances.clear()
    monkeypatch.setattr(so_follower, "FeetechMotorsBus", FakeFeetechBus)
    return FakeFeetechBus.instances


def run_rollout(
    monkeypatch,
    checkpoint: Path,
    frames: Path,
    fail_after: int = -1,
    stop_after: int = -1,
    camera_name: str = "wrist",
    extra: tuple[str, ...] = ("--return_to_initial_position=false",),
) -> None:
    """The stock entry point, in-process so the fakes apply; it runs until the camera raises (no time limit,
    so the number of control steps does not depend on how busy the machine is). The robot has one camera,
    `camera_name`; `extra` flags go last."""
    from lerobot.scripts import lerobot_rollout

    camera = f"{{{camera_name}: {{type: so101_playback, frames: '{frames}', width: {WIDTH}, height: {HEIGHT}, fps: 30"
    camera += f", fail_after: {fail_after}, stop_after: {stop_after}}}}}"
    argv = [
        "lerobot-rollout",
        "--robot.type=so101_follower",
        "--robot.port=/dev/fake-follower",
        "--robot.id=test_follower",
        f"--robot.max_relative_target={MAX_RELATIVE_TARGET}",
        f"--robot.cameras={camera}",
        f"--policy.path={checkpoint}",
        "--strategy.type=base",
        "--fps=30",
        "--duration=0",
        "--device=cpu",
        "--task=Pick up the red cube and lift it.",
        "--play_sounds=false",
        *extra,
    ]
    monkeypatch.setattr(sys, "argv", argv)
    lerobot_rollout.main()


def test_rollout_on_the_fake_follower_respects_the_safety_limits(
    monkeypatch, checkpoint, sim_frames, fake_hardware, calibration_file
):
    run_rollout(monkeypatch, checkpoint, sim_frames, stop_after=9)
    (bus,) = fake_hardware
    assert len(bus.goal_writes) == 8, "one read at connect, then one action per camera frame"
    limits = dict(zip(JOINT_NAMES, limits_from_calibration(calibration_file), strict=True))
    assert limits["shoulder_pan"] == pytest.approx([-57.14, 57.14])  # (2700 - 1400) / 2 * 360 / 4095 = 57.14
    for step, (present, goal, torque) in enumerate(bus.goal_writes):
        assert set(goal) == set(JOINT_NAMES)
        assert all(torque.values()), f"step {step}: goal written with torque off"
        for joint, value in goal.items():
            assert abs(value - present[joint]) <= MAX_RELATIVE_TARGET + 1e-6, (step, joint, present[joint], value)
            low, high = limits[joint]
            assert low - 1e-6 <= value <= high + 1e-6, (step, joint, value, (low, high))
    grippers = [goal["gripper"] for _, goal, _ in bus.goal_writes]
    # the policy asks for +15 every step: 97 -> 100 (clipped to the limit, not 102) and held there
    assert grippers[0] == pytest.approx(100.0) and all(g == pytest.approx(100.0) for g in grippers)
    body_moves = [abs(goal[j] - present[j]) for present, goal, _ in bus.goal_writes for j in JOINT_NAMES[:5]]
    assert max(body_moves) > 0.1, "the policy never moved a body joint"
    assert not bus.is_connected and not any(bus.torque.values()), "rollout ended with torque on"


def test_an_exception_mid_rollout_leaves_torque_disabled(monkeypatch, checkpoint, sim_frames, fake_hardware):
    with pytest.raises(RuntimeError, match="unplugged"):
        run_rollout(monkeypatch, checkpoint, sim_frames, fail_after=4)
    (bus,) = fake_hardware
    assert bus.goal_writes, "the failure should come after the arm was moving"
    assert all(bus.goal_writes[-1][2].values()), "torque was on while the policy drove the arm"
    assert not any(bus.torque.values()), f"torque left enabled after the exception: {bus.torque}"
    assert not bus.is_connected


def test_the_twin_limits_are_the_twins_mjcf_ranges_and_only_the_fallback():
    from lerobot_env_so101_twin.simulation import TwinSimulation

    np.testing.assert_allclose(np.array(TWIN_JOINT_LIMITS), TwinSimulation().joint_limits, atol=0.006)
    cfg = SegDepthConfig()
    assert cfg.joint_limits is None and cfg.joint_limits_source == "the so101_twin's MJCF ranges"
    np.testing.assert_allclose(np.array(cfg.resolved_joint_limits()), np.array(TWIN_JOINT_LIMITS))


# ----- SegVLA with segmenter cues ---------------------------------------------------------------------------------
def segvla_checkpoint(root: Path, cameras: tuple[str, ...], chunk_size: int = 4) -> Path:
    """A tiny SegVLA whose cues come from a tiny 6-class segmenter (weights inside the checkpoint) on `cameras`."""
    import shutil

    from test_segvla import save_segmenter_checkpoint

    from lerobot_policy_segvla import SegVLAConfig, SegVLAPolicy, make_segvla_pre_post_processors
    from so101_devtools.tiny_models import save_smolvlm

    keys = {camera: f"observation.images.{camera}" for camera in cameras}
    save_segmenter_checkpoint(root / "segmenter")
    cfg = SegVLAConfig(
        vlm_model_name=str(save_smolvlm(root / "smolvlm")),
        num_vlm_layers=2,
        resize_imgs_with_padding=(32, 32),
        chunk_size=chunk_size,
        n_action_steps=chunk_size,
        num_steps=2,
        device="cpu",
        push_to_hub=False,
        segmentation_feature_map={key: f"observation.segmentation.{camera}" for camera, key in keys.items()},
        perception_source="segmenter",
        segmentation_segmenter_path=str(root / "segmenter"),
        segmentation_num_classes=6,
        segmentation_geometry_classes=["cube", "moving_finger"],
        input_features={key: PolicyFeature(FeatureType.VISUAL, (3, HEIGHT, WIDTH)) for key in keys.values()}
        | {"observation.state": PolicyFeature(FeatureType.STATE, (6,))},
        output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))},
    )
    torch.manual_seed(0)
    policy = SegVLAPolicy(cfg)
    stats = {
        "observation.state": {"mean": torch.zeros(6), "std": torch.full((6,), 50.0)},
        "action": {"mean": torch.tensor([*START.values(), START_GRIPPER]), "std": torch.full((6,), 2.0)},
    }
    pre, post = make_segvla_pre_post_processors(cfg, dataset_stats=stats)
    out = root / "pretrained_model"
    for part in (policy, pre, post):
        part.save_pretrained(out)
    shutil.rmtree(root / "segmenter")  # the checkpoint carries the segmenter's weights
    return out


def test_segvla_with_segmenter_cues_drives_the_fake_follower(monkeypatch, tmp_path, sim_frames, fake_hardware):
    from lerobot_policy_segvla.cue_steps import SegmenterScoresStep

    checkpoint = segvla_checkpoint(tmp_path, ("wrist",))
    calls = []
    original = SegmenterScoresStep.probabilities
    monkeypatch.setattr(
        SegmenterScoresStep, "probabilities", lambda self, images: calls.append(images.shape) or original(self, images)
    )
    run_rollout(monkeypatch, checkpoint, sim_frames, stop_after=6)
    (bus,) = fake_hardware
    assert len(bus.goal_writes) == 5 and all(set(goal) == set(JOINT_NAMES) for _, goal, _ in bus.goal_writes)
    for present, goal, torque in bus.goal_writes:
        assert all(torque.values())
        assert all(abs(goal[j] - present[j]) <= MAX_RELATIVE_TARGET + 1e-6 for j in JOINT_NAMES)
    assert calls and calls[0] == (1, 3, HEIGHT, WIDTH)  # the segmenter saw the camera's frames
    assert not bus.is_connected and not any(bus.torque.values())


MISSING_FRONT = (
    r"the checkpoint wants cameras \['observation\.images\.front', 'observation\.images\.wrist'\]; the robot "
    r"provides \['observation\.images\.wrist'\] \(names after any --rename_map\); missing "
    r"\['observation\.images\.front'\]"
)


def test_segvla_wanting_a_camera_the_robot_lacks_never_moves_the_arm(monkeypatch, tmp_path, sim_frames, fake_hardware):
    """LeRobot's own check lets a robot with fewer cameras than the policy through; the checkpoint's camera check
    refuses it at the first observation, before the policy computes an action."""
    checkpoint = segvla_checkpoint(tmp_path, ("front", "wrist"))
    with pytest.raises(ValueError, match=MISSING_FRONT):
        run_rollout(monkeypatch, checkpoint, sim_frames, stop_after=6)
    (bus,) = fake_hardware
    assert bus.goal_writes == [], "a goal was written although the checkpoint's camera is missing"
    assert not any(bus.torque.values()) and not bus.is_connected


def test_a_missing_camera_is_refused_under_rename_map_too(monkeypatch, tmp_path, sim_frames, fake_hardware):
    """With --rename_map LeRobot skips its camera check altogether. The robot's one camera, `cam0`, is renamed to
    the checkpoint's `wrist`; `front` is still missing. LeRobot's teardown then returns the arm to where it
    started (return_to_initial_position's default): every goal it writes is the position the arm already holds."""
    checkpoint = segvla_checkpoint(tmp_path, ("front", "wrist"))
    rename = '--rename_map={"observation.images.cam0": "observation.images.wrist"}'
    with pytest.raises(ValueError, match=MISSING_FRONT):
        run_rollout(monkeypatch, checkpoint, sim_frames, stop_after=6, camera_name="cam0", extra=(rename,))
    (bus,) = fake_hardware
    start = {**START, "gripper": START_GRIPPER}
    for present, goal, _ in bus.goal_writes:
        assert present == pytest.approx(start) and goal == pytest.approx(start), "the arm moved: a camera is missing"
    assert not any(bus.torque.values()) and not bus.is_connected
