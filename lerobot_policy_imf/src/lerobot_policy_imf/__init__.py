"""Multiview SigLIP2 + improved-MeanFlow/AttnRes policy plugin: `--policy.type=imf`."""

from .configuration_imf import IMFConfig
from .modeling_imf import IMFPolicy
from .processor_imf import make_imf_pre_post_processors

__all__ = ["IMFConfig", "IMFPolicy", "make_imf_pre_post_processors"]
