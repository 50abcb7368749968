"""`--env.type=so101_twin`: the twin as a LeRobot env plugin, evaluated with the stock `lerobot-eval`."""

from __future__ import annotations

from dataclasses import dataclass, field

import gymnasium as gym
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.envs.configs import EnvConfig
from lerobot.utils.constants import ACTION, OBS_IMAGES, OBS_STATE

from so101_core import CAMERA_NAMES, TASKS

from .appearance import AppearanceRanges, check_level, check_look_seed
from .arm import ArmParams, ArmRanges, load_arm, read_arm_path, validate_arm
from .env import EPISODE_STEPS, depth_key, segmentation_key

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
class SO101TwinEnvConfig(EnvConfig):
    task: str | None = "LiftCube"
    fps: int = 30
    episode_length: int | None = None  # steps; default 300 (LiftCube) or 150 (ReachCube) at 30 fps
    cameras: list[str] = field(default_factory=lambda: list(CAMERA_NAMES))
    # cameras shown in lerobot-eval's videos (None: the observed cameras), e.g. [front, wrist] with cameras=[wrist]
    render_cameras: list[str] | None = None
    observation_height: int = 480
    observation_width: int = 640
    depth: bool = False  # adds observation.images.<camera>_depth, as recorded datasets hold it
    segmentation: bool = False  # adds observation.images.<camera>_segmentation (6-class ids, depth-coded)
    reward_type: str = "dense"  # or "sparse" (1.0 on success)
    # "none" (the plain twin), "shifted" (colours, textures, light, distractors and camera jitter drawn from each
    # episode's seed over appearance_ranges) or "unseen" (a look drawn from ranges no other level or the segmenter's
    # randomisation uses); the cube poses are the same in all, so one --seed evaluates one set of poses in any look
    # (appearance.py)
    appearance: str = "none"
    appearance_ranges: AppearanceRanges = field(default_factory=AppearanceRanges)
    # one look for every episode, drawn from this seed (a user's own scene while the cube moves); None: each episode
    # the look of its own seed
    look_seed: int | None = None
    # The arm the twin plays (arm.py): "none" plays arm_params (the ideal arm unless set, e.g.
    # --env.arm_params.latency_ms=67), "varied" draws an arm per episode from arm_ranges, "unseen" from the bands
    # outside them that nothing trains on; arm_seed holds one drawn arm for every episode (a user's arm is one arm)
    arm: str = "none"
    arm_params: ArmParams = field(default_factory=ArmParams)
    arm_ranges: ArmRanges = field(default_factory=ArmRanges)
    arm_seed: int | None = None
    # an arm file (so101-twin-identify's arm.json: the user's own arm, identified from their demonstrations), played
    # as arm_params; needs arm=none and arm_params left alone
    arm_path: str | None = None
    features: dict[str, PolicyFeature] = field(default_factory=dict)
    features_map: dict[str, str] = field(default_factory=dict)

    def played_arm(self) -> ArmParams:
        """The fixed arm to play: `arm_params`, or the arm file's when it was not there at parse time."""
        return load_arm(self.arm_path, "env.arm_path") if self.arm_path is not None else self.arm_params

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"--env.task={self.task!r} is not a so101_twin task; choose one of {list(TASKS)}")
        unknown = [c for c in [*self.cameras, *(self.render_cameras or [])] if c not in CAMERA_NAMES]
        if unknown:
            raise ValueError(f"--env.cameras has unknown camera(s) {unknown}; the twin has {list(CAMERA_NAMES)}")
        if self.observation_height <= 0 or self.observation_width <= 0:
            raise ValueError(
                "--env.observation_height/width must be positive, got "
                f"{self.observation_height}x{self.observation_width}"
            )
        if self.fps <= 0:
            raise ValueError(f"--env.fps must be positive, got {self.fps}")
        check_level(self.appearance, "env.appearance")
        check_look_seed(self.look_seed, self.appearance, "env.look_seed")
        self.appearance_ranges.validate()
        self.arm_params, self.arm_path = read_arm_path(self.arm_path, self.arm, self.arm_params, "env.")
        validate_arm(self.arm, self.arm_params, self.arm_ranges, self.arm_seed, self.fps, "env.")
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
            "depth": self.depth,
            "segmentation": self.segmentation,
            "fps": self.fps,
            "reward_type": self.reward_type,
            "appearance": self.appearance,
            "appearance_ranges": self.appearance_ranges,
            "look_seed": self.look_seed,
            "arm": self.arm,
            "arm_params": self.played_arm(),
            "arm_ranges": self.arm_ranges,
            "arm_seed": self.arm_seed,
            "max_episode_steps": self.episode_length or EPISODE_STEPS[self.task] * self.fps // 30,
        }
