"""SegDepth policy plugin: `--policy.type=segdepth`."""

from .configuration_segdepth import SegDepthConfig
from .modeling_segdepth import SegDepthPolicy
from .processor_segdepth import make_segdepth_pre_post_processors

__all__ = ["SegDepthConfig", "SegDepthPolicy", "make_segdepth_pre_post_processors"]
