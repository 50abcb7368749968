"""`imf`'s processors: LeRobot's standard pipeline pair (rename, batch, device, normalise / unnormalise, cpu) with the
suite's two safety steps: the camera check after the rename, the clip into the joint limits before the move to the CPU.

Frames stay in [0, 1] (VISUAL is not normalised): the encoder applies SigLIP's own mean = std = 0.5, and the
cached view embeddings (imf-cache-embeddings) bypass both.
"""

from __future__ import annotations

from lerobot.processor import make_default_policy_processor_steps, make_policy_processor_pipelines

from so101_policy_common.pipeline import input_head, safety_steps

from .configuration_imf import OBS_VIEW_EMBEDDINGS, IMFConfig


def make_imf_pre_post_processors(config: IMFConfig, dataset_stats=None):
    steps = make_default_policy_processor_steps(config, dataset_stats)
    # a copy made by imf-cache-embeddings holds the views' embeddings in place of the camera frames
    cameras, clip = safety_steps(config, skip_if_present=[OBS_VIEW_EMBEDDINGS], cameras=config.camera_keys)
    return make_policy_processor_pipelines(
        input_steps=[*input_head(config, steps, cameras), steps.to_device, steps.normalize],
        output_steps=[steps.unnormalize, clip, steps.to_cpu],
    )
