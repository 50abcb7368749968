"""SO-101 digital twin for LeRobot: an env (`so101_twin`), a robot (`so101_twin`) and a scripted expert
teleoperator (`so101_twin_expert`), found by LeRobot's `register_third_party_plugins()`."""

import os

# MuJoCo picks its OpenGL backend when first imported: default to headless EGL before anything imports it.
os.environ.setdefault("MUJOCO_GL", "egl")

from so101_core import (
    MOTOR_KEYS,
    SEGMENTATION_CLASSES,
    segmentation_from_code,
    segmentation_to_code,
)

from .config_env import SO101TwinEnvConfig, register_gym_envs
from .config_robot import SO101TwinConfig
from .config_teleoperator import SO101TwinExpertConfig
from .robot import SO101Twin
from .teleoperator import SO101TwinExpert

register_gym_envs()

__all__ = [
    "MOTOR_KEYS",
    "SEGMENTATION_CLASSES",
    "SO101Twin",
    "SO101TwinConfig",
    "SO101TwinEnvConfig",
    "SO101TwinExpert",
    "SO101TwinExpertConfig",
    "segmentation_from_code",
    "segmentation_to_code",
]
