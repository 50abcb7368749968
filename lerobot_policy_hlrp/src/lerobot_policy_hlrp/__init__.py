"""HLRP policy plugin (stage 3 of HLRP, after felixmin/high-level-robot-planner): `--policy.type=hlrp`."""

from .configuration_hlrp import HLRPConfig
from .modeling_hlrp import HLRPPolicy
from .processor_hlrp import make_hlrp_pre_post_processors

__all__ = ["HLRPConfig", "HLRPPolicy", "make_hlrp_pre_post_processors"]
