"""The 6-class segmentation map and the code that carries class ids through LeRobot's depth-map features."""

import numpy as np

# The 6-class map of ggand0/pick-101's segmenter and policy, which the real EfficientViT segmenter also emits
# (pick-101's simulator used 5 classes, one fewer: its real pipeline fed 0-5 to a policy trained on 0-4).
SEGMENTATION_CLASSES: dict[int, str] = {
    0: "unlabeled",
    1: "background",
    2: "table",
    3: "cube",
    4: "static_finger",
    5: "moving_finger",
}
NUM_SEGMENTATION_CLASSES = len(SEGMENTATION_CLASSES)
UNLABELED, BACKGROUND, TABLE, CUBE, STATIC_FINGER, MOVING_FINGER = range(NUM_SEGMENTATION_CLASSES)

# Where a config's class ids (and, for SegDepth, disparity) come from: the field `perception_source` of SegVLA's and
# SegDepth's policy configs and of hlrp-train-laq's segmentation weighting, one vocabulary. Each config accepts the
# values that make sense for it (`check_perception_source`).
PERCEPTION_SOURCES: dict[str, str] = {
    "none": "nothing computed: the dataset already holds the result, or the cues are off",
    "ground_truth": "the twin's exact segmentation (and depth map), recorded beside the camera or rendered",
    "segmenter": "the suite's segmenter on the RGB camera; depth, where read, from the recording's depth map",
    "segmenter_depth": "the suite's segmenter with its depth head on the RGB camera: ids and disparity, RGB alone",
    "segmenter_depth_anything": "the suite's segmenter on the RGB camera, disparity from Depth Anything V2",
    "mask2former": "Mask2Former (ADE20K's 150 classes) on the RGB camera",
    "auto": "ground_truth where the dataset records it, else segmenter",
}


def check_perception_source(value: str, accepted: tuple[str, ...], flag: str) -> None:
    """A ValueError naming `flag` (e.g. "--policy.perception_source") and the `accepted` values unless `value` is one
    of them; each accepted value is one of PERCEPTION_SOURCES."""
    unknown = [a for a in accepted if a not in PERCEPTION_SOURCES]
    if unknown:
        raise ValueError(f"{unknown} are not perception sources; the vocabulary is {list(PERCEPTION_SOURCES)}")
    if value not in accepted:
        raise ValueError(f"{flag}={value!r}; choose one of {list(accepted)}")


# LeRobot 0.6 stores per-pixel single-channel camera features only as depth maps (lossless 12-bit HEVC,
# log-quantised metres). Segmentation ids ride that path as "class id + 1 metres": every class lands on
# a code hundreds of quanta away from its neighbours, so rounding the decoded value recovers it exactly.
SEGMENTATION_CODE_OFFSET_M = 1.0


def segmentation_to_code(ids: np.ndarray) -> np.ndarray:
    """Class ids (H, W) uint8 -> the (H, W, 1) float32 metres a LeRobot depth-map feature stores."""
    return (ids.astype(np.float32) + SEGMENTATION_CODE_OFFSET_M)[..., None]


# Codes in metres are 1-6, in millimetres 1000-6000: a bound between the two tells them apart.
_CODE_UNIT_BOUND = 100.0


def code_unit(code, default: str = "mm") -> str:
    """The unit a segmentation code arrives in, read from its values: "m" or "mm" (`default` when it is empty).

    LeRobot hands a policy a dataset's depth maps in the dataset's `depth_output_unit` (millimetres by default) but,
    at inference (`lerobot-rollout`), a robot's frames as the robot gives them: the twin's are float32 metres,
    LeRobot's unit for raw float depth (`lerobot.configs.infer_depth_unit`). Class c is c + 1 m = (c + 1) * 1000 mm,
    so the two never overlap: a code whose values all lie below 100 is in metres, one whose values all lie above
    in millimetres. A mixture is neither; `default` is returned and decoding it then fails with the range it found.
    """
    if code.reshape(-1).shape[0] == 0:  # numpy arrays and torch tensors alike
        return default
    lo, hi = float(code.min()), float(code.max())
    if hi < _CODE_UNIT_BOUND:
        return "m"
    if lo >= _CODE_UNIT_BOUND:
        return "mm"
    return default


def segmentation_from_code(code, unit: str = "m"):
    """Inverse of `segmentation_to_code` for numpy arrays or torch tensors decoded from a dataset or given by a robot.

    `unit` is the unit the values are in: "m", "mm", or "auto" to read it from the values (`code_unit`). The result
    has the input's layout and int64 dtype.
    """
    if unit == "auto":
        unit = code_unit(code)
    scale = {"m": 1.0, "mm": 1e-3}.get(unit)
    if scale is None:
        raise ValueError(f"unit must be 'm', 'mm' or 'auto', got {unit!r}")
    if isinstance(code, np.ndarray):
        ids = np.rint(code.astype(np.float64) * scale - SEGMENTATION_CODE_OFFSET_M).astype(np.int64)
        lo, hi = int(ids.min(initial=0)), int(ids.max(initial=0))
    else:  # torch.Tensor, used only through its methods: so101_core itself does not need torch
        ids = (code.double() * scale - SEGMENTATION_CODE_OFFSET_M).round().long()
        lo, hi = (int(ids.min()), int(ids.max())) if ids.numel() else (0, 0)
    if lo < 0 or hi >= NUM_SEGMENTATION_CLASSES:
        raise ValueError(
            f"segmentation code decodes to ids in [{lo}, {hi}], outside the class map"
            f" 0..{NUM_SEGMENTATION_CLASSES - 1}: is this a segmentation feature, and is unit={unit!r} right?"
        )
    return ids
