"""SegDepth's shared names, at the bottom of its plugin: the configuration, the processor steps and the model import
them from here, and this module imports nothing, so the configuration stands on constants alone as
LeRobot's configuration files do."""

OBS_SEGDEPTH = "observation.segdepth"  # (..., 2, S, S): class ids, disparity 0-255; written by the preprocessor
DEPTH_ANYTHING_V2_SMALL = "depth-anything/Depth-Anything-V2-Small-hf"


def packed_length(channels: int, side: int) -> int:
    """int64 words that hold a uint8 (channels, side, side) image (zero-padded to whole words)."""
    return -(-channels * side * side // 8)
