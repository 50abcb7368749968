"""The 6-class map of seed 001, the same ids as `lerobot_env_so101_twin.constants` (kept here so the segmenter
does not import LeRobot)."""

CLASS_NAMES: tuple[str, ...] = ("unlabeled", "background", "table", "cube", "static_finger", "moving_finger")
NUM_CLASSES = len(CLASS_NAMES)
UNLABELED, BACKGROUND, TABLE, CUBE, STATIC_FINGER, MOVING_FINGER = range(NUM_CLASSES)
# mIoU is reported over the classes a pixel can really belong to; "unlabeled" only marks holes in annotations.
EVAL_CLASSES: tuple[int, ...] = (BACKGROUND, TABLE, CUBE, STATIC_FINGER, MOVING_FINGER)
