"""The 6-class map of ggand0/pick-101's segmenter: names and ids come from `so101_core` (numpy only, so the
segmenter still imports neither LeRobot nor the simulator), the same map the twin's ground truth and the policies
use."""

from so101_core.segmentation import (
    BACKGROUND,
    CUBE,
    MOVING_FINGER,
    NUM_SEGMENTATION_CLASSES,
    SEGMENTATION_CLASSES,
    STATIC_FINGER,
    TABLE,
    UNLABELED,
)

CLASS_NAMES: tuple[str, ...] = tuple(SEGMENTATION_CLASSES[i] for i in range(NUM_SEGMENTATION_CLASSES))
NUM_CLASSES = NUM_SEGMENTATION_CLASSES
# mIoU is reported over the classes a pixel can really belong to; "unlabeled" only marks holes in annotations.
EVAL_CLASSES: tuple[int, ...] = (BACKGROUND, TABLE, CUBE, STATIC_FINGER, MOVING_FINGER)

__all__ = [
    "BACKGROUND",
    "CLASS_NAMES",
    "CUBE",
    "EVAL_CLASSES",
    "MOVING_FINGER",
    "NUM_CLASSES",
    "STATIC_FINGER",
    "TABLE",
    "UNLABELED",
]
