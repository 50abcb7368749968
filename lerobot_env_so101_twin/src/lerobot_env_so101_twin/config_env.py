"""`--env.type=so101_twin`: the twin as a LeRobot env plugin, evaluated with the stock `lerobot-eval`."""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig
from lerobot.utils.constants import ACTION, OBS_IMAGES, OBS_STATE

from so101_core import TASKS

from .env import EPISODE_STEPS, depth_key, segmentation_key
from .twin_setup import TwinCameras

ENV_TYPE = "so101_twin"
GYM_NAMESPACE = f"gym_{ENV_TYPE}"


def register_gym_envs() -> None:
    for task in TASKS:
        env_id = f"{GYM_NAMESPACE}/{task}"
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point="lerobot_env_so101_twin.env:SO101TwinEnv",
                kwargs={"task": task},
                max_episode_steps=EPISODE_STEPS[task],
            )


@EnvConfig.register_subclass(ENV_TYPE)
@dataclass
class SO101TwinEnvConfig(EnvConfig, TwinCameras):
    task: str | None = "LiftCube"
    episode_length: int | None = None  # steps; default 300 (LiftCube) or 150 (ReachCube) at 30 fps
    # cameras shown in lerobot-eval's videos (None: the observed cameras), e.g. [front, wrist] with cameras=[wrist]
    render_cameras: list[str] | None = None
    reward_type: str = "dense"  # or "sparse" (1.0 on success)
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        self.check_cameras("env.", more_cameras=self.render_cameras)
        h, w = self.observation_height, self.observation_width
        self.features = {
            ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(6,)),
            "agent_pos": PolicyFeature(type=FeatureType.STATE, shape=(6,)),
        }
        self.features_map = {ACTION: ACTION, "agent_pos": OBS_STATE}
        for cam in self.cameras:
            self.features[f"pixels/{cam}"] = PolicyFeature(type=FeatureType.VISUAL, shape=(h, w, 3))
            self.features_map[f"pixels/{cam}"] = f"{OBS_IMAGES}.{cam}"
            for wanted, key in ((self.depth, depth_key(cam)), (self.segmentation, segmentation_key(cam))):
                if wanted:
                    self.features[key] = PolicyFeature(type=FeatureType.VISUAL, shape=(h, w, 1))
                    self.features_map[key] = f"observation.{key}"
        register_gym_envs()

    @property
    def gym_kwargs(self) -> dict:
        return {
            "cameras": tuple(self.cameras),
            "render_cameras": tuple(self.render_cameras) if self.render_cameras else None,
            "camera_height": self.observation_height,
            "camera_width": self.observation_width,
            "reward_type": self.reward_type,
            **{k: v for k, v in self.setup("env.").items() if k != "task"},  # the env's id names the task
            # gym's TimeLimit, in env steps (each one period or more): never before the twin's own limit
            "max_episode_steps": self.episode_periods,
            "episode_periods": self.episode_periods,  # the twin's own limit, in physics periods
        }

    @property
    def episode_periods(self) -> int:
        return self.episode_length or EPISODE_STEPS[self.task] * self.fps // 30
