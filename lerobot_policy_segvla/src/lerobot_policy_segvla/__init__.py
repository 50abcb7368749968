"""SegVLA policy plugin: `--policy.type=segvla`, LeRobot's SmolVLA plus segmentation cues."""

from .configuration_segvla import SegVLAConfig
from .modeling_segvla import SegmentationCueBuilder, SegVLAPolicy
from .processor_segvla import make_segvla_pre_post_processors

__all__ = ["SegVLAConfig", "SegVLAPolicy", "SegmentationCueBuilder", "make_segvla_pre_post_processors"]
