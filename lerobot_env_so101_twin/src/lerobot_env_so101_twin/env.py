"""Gymnasium environment around the twin: what `lerobot-eval --env.type=so101_twin` steps.

Observations use the keys LeRobot's `preprocess_observation` understands: `agent_pos` (the follower's six
joint positions) and `pixels/<camera>` (uint8 HWC). The optional ground truth is laid out exactly as a
dataset recorded with `lerobot-record --robot.type=so101_twin` returns it, so a policy sees the same tensors
in training and in evaluation: `images.<camera>_depth` and `images.<camera>_segmentation`, float32 (1, H, W),
depth in millimetres (LeRobot's default `depth_output_unit`) and segmentation as its depth code in mm
(`so101_core.segmentation_from_code(x, unit="mm")` gives the class ids). Both go through the same 12-bit depth
quantisation a recording does (LeRobot's default `DepthEncoderConfig`), so they equal what the dataset returns.
"""

from __future__ import annotations

import json
import logging
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from lerobot.datasets.depth_utils import dequantize_depth, quantize_depth

from so101_core import TASK_DESCRIPTIONS, segmentation_to_code

from .appearance import AppearanceRanges
from .arm import ArmParams, ArmRanges
from .simulation import TwinConfig, TwinSimulation

logger = logging.getLogger(__name__)

EPISODE_STEPS = {"LiftCube": 300, "ReachCube": 150}  # 10 s and 5 s at 30 fps


def as_stored(depth_m: np.ndarray) -> np.ndarray:
    """(H, W) metres -> (1, H, W) float32 mm, through LeRobot's default depth-map quantisation and back."""
    codes = quantize_depth(depth_m.astype(np.float32), video_backend=None)
    return dequantize_depth(torch.from_numpy(codes.astype(np.int32))[None], output_unit="mm").numpy()


def depth_key(camera: str) -> str:
    return f"images.{camera}_depth"


def segmentation_key(camera: str) -> str:
    return f"images.{camera}_segmentation"


class SO101TwinEnv(gym.Env):
    metadata: ClassVar[dict] = {"render_modes": ["rgb_array"], "render_fps": 30}

    def __init__(
        self,
        task: str = "LiftCube",
        cameras: tuple[str, ...] = ("front", "wrist"),
        camera_height: int = 480,
        camera_width: int = 640,
        depth: bool = False,
        segmentation: bool = False,
        fps: int = 30,
        render_mode: str = "rgb_array",
        reward_type: str = "dense",
        max_episode_steps: int | None = None,
        render_cameras: tuple[str, ...] | None = None,
        episode_periods: int | None = None,
        appearance: str = "none",
        appearance_ranges: AppearanceRanges | None = None,
        look_seed: int | None = None,
        arm: str = "none",
        arm_params: ArmParams | None = None,
        arm_ranges: ArmRanges | None = None,
        arm_seed: int | None = None,
    ):
        if reward_type not in ("dense", "sparse"):
            raise ValueError(f"reward_type must be 'dense' or 'sparse', got {reward_type!r}")
        # render_cameras: what env.render() shows (lerobot-eval's videos); defaults to the observed cameras
        self.render_cameras = tuple(render_cameras) if render_cameras else tuple(cameras)
        sizes = {name: (int(camera_height), int(camera_width)) for name in (*cameras, *self.render_cameras)}
        twin_config = TwinConfig(
            task=task,
            fps=fps,
            cameras=sizes,
            depth=depth,
            segmentation=segmentation,
            ground_truth_cameras=tuple(cameras),
            appearance=appearance,
            appearance_ranges=appearance_ranges or AppearanceRanges(),
            look_seed=look_seed,
            arm=arm,
            arm_params=arm_params or ArmParams(),
            arm_ranges=arm_ranges or ArmRanges(),
            arm_seed=arm_seed,
        )
        self.twin = TwinSimulation(twin_config)
        self.task = task
        self.cameras = tuple(cameras)
        self.render_mode = render_mode
        self.reward_type = reward_type
        # The episode's length in physics periods. gym.make takes `max_episode_steps` for its own TimeLimit and never
        # passes it here, so the env config gives the length again as `episode_periods`.
        self._max_episode_steps = episode_periods or max_episode_steps or EPISODE_STEPS[task] * fps // 30
        self.metadata = {**self.metadata, "render_fps": fps}

        limits = self.twin.joint_limits.astype(np.float32)
        self.action_space = spaces.Box(low=limits[:, 0], high=limits[:, 1], dtype=np.float32)
        obs: dict[str, spaces.Space] = {
            "agent_pos": spaces.Box(low=limits[:, 0] - 10, high=limits[:, 1] + 10, dtype=np.float32),
        }
        h, w = int(camera_height), int(camera_width)
        if self.cameras:
            obs["pixels"] = spaces.Dict({name: spaces.Box(0, 255, (h, w, 3), dtype=np.uint8) for name in self.cameras})
        for name in self.cameras:
            if depth:
                obs[depth_key(name)] = spaces.Box(0.0, np.inf, (1, h, w), dtype=np.float32)
            if segmentation:
                obs[segmentation_key(name)] = spaces.Box(0.0, np.inf, (1, h, w), dtype=np.float32)
        self.observation_space = spaces.Dict(obs)
        self._last_frames = None

    # LeRobot's eval loop asks vector envs for these
    @property
    def task_description(self) -> str:
        return TASK_DESCRIPTIONS[self.task]

    def _observation(self) -> dict[str, Any]:
        obs: dict[str, Any] = {"agent_pos": self.twin.follower_positions().astype(np.float32)}
        if not self.twin.config.cameras:
            return obs
        frames = self.twin.render()
        self._last_frames = frames
        if self.cameras:
            obs["pixels"] = {name: frames[name].rgb for name in self.cameras}
        for name in self.cameras:
            frame = frames[name]
            if frame.depth is not None:
                obs[depth_key(name)] = as_stored(frame.depth)
            if frame.segmentation is not None:
                obs[segmentation_key(name)] = as_stored(segmentation_to_code(frame.segmentation)[..., 0])
        return obs

    def _info(self) -> dict[str, Any]:
        return {
            "is_success": self.twin.is_success(),
            "is_grasped": self.twin.is_grasped(),
            "lift_height": self.twin.lift_height(),
            "episode_seed": self.twin.episode_seed,
            "arm_seed": self.twin.arm_draw_seed,
        }

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        episode_seed = seed if seed is not None else int(self.np_random.integers(0, 2**31 - 1))
        self.twin.reset(episode_seed)
        if not self.twin.ideal_arm:  # what lerobot-eval's log keeps of the run: each episode's arm, to replay it
            logger.info("so101_twin episode seed %s: arm %s", episode_seed, json.dumps(self.twin.arm_record()))
        return self._observation(), self._info()

    @property
    def periods_per_action(self) -> int:
        """Physics periods each action is held: the arm's loop runs at control_fps, the physics at fps."""
        return self.twin.periods_per_action

    def step(self, action):
        report = self.twin.apply_action(np.asarray(action, dtype=np.float64))
        for _ in range(self.periods_per_action):
            self.twin.step()
        success = self.twin.is_success()
        reward = float(success) if self.reward_type == "sparse" else self.twin.dense_reward()
        info = self._info()
        info["clipped_joints"] = sorted(report.clipped)
        truncated = self.twin.steps >= self._max_episode_steps
        return self._observation(), reward, success, truncated, info

    def render(self):
        frames = self._last_frames if self._last_frames is not None else self.twin.render()
        return np.concatenate([frames[name].rgb for name in self.render_cameras], axis=1)

    def close(self):
        self.twin.close()
