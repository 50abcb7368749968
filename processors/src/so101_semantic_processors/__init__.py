"""ProcessorSteps shared by the suite's policies; importing this package registers them with LeRobot."""

from .actions import JointAbsoluteFromDeltaStep, JointDeltaFromAbsoluteStep, absolute_to_delta, delta_to_absolute
from .segdepth import (
    CenterCropSquareStep,
    DepthToDisparityStep,
    ResizeStep,
    SegmentationFromCodeStep,
    StackChannelsStep,
    disparity_from_depth,
)

__all__ = [
    "CenterCropSquareStep",
    "DepthToDisparityStep",
    "JointAbsoluteFromDeltaStep",
    "JointDeltaFromAbsoluteStep",
    "ResizeStep",
    "SegmentationFromCodeStep",
    "StackChannelsStep",
    "absolute_to_delta",
    "delta_to_absolute",
    "disparity_from_depth",
]
