"""Names, units and class ids shared by the twin, its plugins and the policies that read its data.

They live in `so101_core` (numpy only), so the policies, processors and segmenter use them without depending on
this MuJoCo package; re-exported here so `from lerobot_env_so101_twin.constants import ...` keeps working."""

from so101_core.robot import (
    BODY_JOINTS,
    CAMERA_NAMES,
    GRIPPER_JOINT,
    JOINT_NAMES,
    MOTOR_KEYS,
    NATIVE_CAMERA_SIZE,
    TASK_DESCRIPTIONS,
    TASKS,
)
from so101_core.segmentation import (
    BACKGROUND,
    CUBE,
    MOVING_FINGER,
    NUM_SEGMENTATION_CLASSES,
    SEGMENTATION_CLASSES,
    SEGMENTATION_CODE_OFFSET_M,
    STATIC_FINGER,
    TABLE,
    UNLABELED,
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
    "SEGMENTATION_CLASSES",
    "SEGMENTATION_CODE_OFFSET_M",
    "STATIC_FINGER",
    "TABLE",
    "TASKS",
    "TASK_DESCRIPTIONS",
    "UNLABELED",
    "segmentation_from_code",
    "segmentation_to_code",
]
