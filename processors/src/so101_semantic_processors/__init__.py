"""ProcessorSteps shared by the suite's policies; importing this package registers them with LeRobot."""

from .actions import JointAbsoluteFromDeltaStep, JointDeltaFromAbsoluteStep, absolute_to_delta, delta_to_absolute
from .mask2former import SegVLAAddSegmentationStep, SegVLATaskClassesStep
from .perception import DepthAnythingStep, SegmenterStep, normalize_disparity
from .segdepth import (
    CenterCropSquareStep,
    DepthToDisparityStep,
    ResizeStep,
    SegmentationFromCodeStep,
    StackChannelsStep,
    disparity_from_depth,
    pack_uint8,
    packed_length,
    unpack_uint8,
)
from .segmentation_scores import SegmentationScoresFromCodeStep

__all__ = [
    "CenterCropSquareStep",
    "DepthAnythingStep",
    "DepthToDisparityStep",
    "JointAbsoluteFromDeltaStep",
    "JointDeltaFromAbsoluteStep",
    "ResizeStep",
    "SegVLAAddSegmentationStep",
    "SegVLATaskClassesStep",
    "SegmentationFromCodeStep",
    "SegmentationScoresFromCodeStep",
    "SegmenterStep",
    "StackChannelsStep",
    "absolute_to_delta",
    "delta_to_absolute",
    "disparity_from_depth",
    "normalize_disparity",
    "pack_uint8",
    "packed_length",
    "unpack_uint8",
]
