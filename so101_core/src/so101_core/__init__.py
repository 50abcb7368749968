"""Shared SO-101 vocabulary: joint, motor and camera names, the tasks and their prompts, the 6-class segmentation
map, the code that stores class ids in LeRobot depth-map features, and the class colours.

Numpy only, so the policies, processors and segmenter can use these on a real arm without the MuJoCo twin
(`lerobot_env_so101_twin` takes them from here too)."""

from .keys import present_keys, require_key
from .palette import SEGMENTATION_PALETTE, colorize_segmentation
from .robot import (
    BODY_JOINTS,
    CAMERA_NAMES,
    GRIPPER_JOINT,
    JOINT_NAMES,
    MOTOR_KEYS,
    NATIVE_CAMERA_SIZE,
    TASK_DESCRIPTIONS,
    TASKS,
)
from .segmentation import (
    BACKGROUND,
    CUBE,
    MOVING_FINGER,
    NUM_SEGMENTATION_CLASSES,
    PERCEPTION_SOURCES,
    SEGMENTATION_CLASSES,
    SEGMENTATION_CODE_OFFSET_M,
    STATIC_FINGER,
    TABLE,
    UNLABELED,
    check_perception_source,
    segmentation_from_code,
    segmentation_to_code,
)

__all__ = [
    "BACKGROUND",
    "BODY_JOINTS",
    "CAMERA_NAMES",
    "CUBE",
    "GRIPPER_JOINT",
    "JOINT_NAMES",
    "MOTOR_KEYS",
    "MOVING_FINGER",
    "NATIVE_CAMERA_SIZE",
    "NUM_SEGMENTATION_CLASSES",
    "PERCEPTION_SOURCES",
    "SEGMENTATION_CLASSES",
    "SEGMENTATION_CODE_OFFSET_M",
    "SEGMENTATION_PALETTE",
    "STATIC_FINGER",
    "TABLE",
    "TASKS",
    "TASK_DESCRIPTIONS",
    "UNLABELED",
    "check_perception_source",
    "colorize_segmentation",
    "present_keys",
    "require_key",
    "segmentation_from_code",
    "segmentation_to_code",
]
