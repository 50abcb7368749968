"""`imf`'s processors: LeRobot's standard pipeline pair (rename, batch, device, normalise / unnormalise, cpu).

Frames stay in [0, 1] (VISUAL is not normalised): the encoder applies SigLIP's own mean = std = 0.5, and the
cached view embeddings (imf-cache-embeddings) bypass both.
"""

from __future__ import annotations

from lerobot.processor import make_default_pre_post_processors

from .configuration_imf import IMFConfig


def make_imf_pre_post_processors(config: IMFConfig, dataset_stats=None):
    return make_default_pre_post_processors(config, dataset_stats)
