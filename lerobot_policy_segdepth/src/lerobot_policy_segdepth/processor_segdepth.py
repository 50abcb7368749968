"""SegDepth's processors: the seed 002 observation steps and the joint-delta action mapping around LeRobot's
standard steps (rename, batch, device, normalise), so --policy.path fine-tuning, eval and rollout can override them.
"""

from __future__ import annotations

from lerobot.processor import make_default_policy_processor_steps, make_policy_processor_pipelines

from so101_semantic_processors import (
    CenterCropSquareStep,
    DepthToDisparityStep,
    JointAbsoluteFromDeltaStep,
    JointDeltaFromAbsoluteStep,
    ResizeStep,
    SegmentationFromCodeStep,
    StackChannelsStep,
)

from .configuration_segdepth import OBS_SEGDEPTH, SegDepthConfig


def segdepth_observation_steps(config: SegDepthConfig) -> list:
    """Ground-truth ids + depth of `config.camera` -> (..., 2, S, S) under observation.segdepth."""
    ids_key = f"observation.{config.camera}_segmentation_ids"
    disparity_key = f"observation.{config.camera}_disparity"
    return [
        SegmentationFromCodeStep(code_key=config.segmentation_key, ids_key=ids_key),
        DepthToDisparityStep(depth_key=config.depth_key, disparity_key=disparity_key),
        CenterCropSquareStep(keys=[ids_key, disparity_key]),
        ResizeStep(size=config.image_size, nearest_keys=[ids_key], linear_keys=[disparity_key]),
        StackChannelsStep(keys=[ids_key, disparity_key], output_key=OBS_SEGDEPTH),
    ]


def make_segdepth_pre_post_processors(config: SegDepthConfig, dataset_stats=None):
    steps = make_default_policy_processor_steps(config, dataset_stats)
    observation = [steps.rename_observations, steps.add_batch_dim, *segdepth_observation_steps(config)]
    if config.action_mode == "absolute":
        return make_policy_processor_pipelines(
            input_steps=[*observation, steps.to_device, steps.normalize],
            output_steps=[steps.unnormalize, steps.to_cpu],
        )
    to_delta = JointDeltaFromAbsoluteStep(action_scale=list(config.action_scale))
    return make_policy_processor_pipelines(
        input_steps=[*observation, to_delta, steps.to_device, steps.normalize],  # to_delta sees the raw state
        output_steps=[
            steps.unnormalize,
            JointAbsoluteFromDeltaStep(action_scale=list(config.action_scale), pair_id=to_delta.pair_id),
            steps.to_cpu,
        ],
    )
