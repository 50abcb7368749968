"""SegDepth's processors: pick-101's observation steps and the joint-delta action mapping around LeRobot's
standard steps (rename, batch, device, normalise), so --policy.path fine-tuning, eval and rollout can override them.

The observation steps depend on `config.perception_source`; the policy's weights do not. `with_perception_source`
swaps them in a loaded preprocessor, so one checkpoint runs on the simulator's ground truth and on the two perception
models.

Every observation step skips its work when `observation.segdepth` is already in the observation, so the same
saved preprocessor serves raw keys (lerobot-eval in the twin, the real arm) and a dataset precomputed by
`segdepth-precompute` (which runs these very steps). The last step rounds the observation to the uint8 grid the
precomputed copy stores, so both give identical tensors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from lerobot.processor import (
    PolicyProcessorPipeline,
    ProcessorStepRegistry,
    make_default_policy_processor_steps,
    make_policy_processor_pipelines,
)

from so101_core.segmentation import check_perception_source
from so101_policy_common.pipeline import input_head, safety_steps
from so101_policy_common.steps import ClipJointTargetsStep, RequireCamerasStep

from .actions import JointAbsoluteFromDeltaStep, JointDeltaFromAbsoluteStep, RememberJointTargetStep
from .configuration_segdepth import OBS_SEGDEPTH, SegDepthConfig
from .observation_steps import StackChannelsStep
from .perception_sources import PERCEPTION_SOURCES

# The perception block of a saved preprocessor: every step a perception source builds, and the stack after them.
OBSERVATION_STEP_TYPES = (
    *dict.fromkeys(kind for source in PERCEPTION_SOURCES.values() for kind in source.step_types()),
    StackChannelsStep,
)


@ProcessorStepRegistry.register("segdepth_clip_joint_targets")
@dataclass
class LegacyClipJointTargetsStep(ClipJointTargetsStep):
    """The clip under the registry name segdepth pipelines saved by 0.1 give it, so those checkpoints load, and save
    the config they saved (`source` only once set)."""

    def get_config(self) -> dict:
        config = super().get_config()
        return config if config["source"] else {"limits": config["limits"]}


def segdepth_observation_steps(config: SegDepthConfig) -> list:
    """Ids + disparity of `config.camera` -> (..., 2, S, S) under observation.segdepth, on the uint8 grid.

    Each step does nothing when observation.segdepth is already there (a precomputed dataset).
    """
    ids_key = f"observation.{config.camera}_segmentation_ids"
    disparity_key = f"observation.{config.camera}_disparity"
    skip = {"skip_if_present": OBS_SEGDEPTH}
    stack = StackChannelsStep(keys=[ids_key, disparity_key], output_key=OBS_SEGDEPTH, quantize=True, **skip)
    return [*config.perception_record.steps(config, ids_key, disparity_key, skip), stack]


def with_perception_source(preprocessor: PolicyProcessorPipeline, config: SegDepthConfig, **fields) -> SegDepthConfig:
    """Replace, in place, the observation steps of a (loaded) SegDepth preprocessor with those for `config`
    updated by `fields` (e.g. perception_source="segmenter_depth_anything", segmenter_path=...). Normaliser stats and
    the action pair are kept.

    Returns the updated config.
    """
    check_perception_source(
        fields.get("perception_source", config.perception_source), tuple(PERCEPTION_SOURCES), "perception_source"
    )
    previous, config = config, dataclasses.replace(config, **fields)
    at = [i for i, step in enumerate(preprocessor.steps) if isinstance(step, OBSERVATION_STEP_TYPES)]
    if not at or at != list(range(at[0], at[-1] + 1)):
        raise ValueError(
            "with_perception_source: the preprocessor has no contiguous block of SegDepth observation steps; it holds "
            f"{[type(s).__name__ for s in preprocessor.steps]}"
        )
    preprocessor.steps[at[0] : at[-1] + 1] = segdepth_observation_steps(config)
    # The camera check follows the perception source: the RGB camera for the models, the twin's depth and
    # segmentation else.
    for step in preprocessor.steps:
        if isinstance(step, RequireCamerasStep):
            step.cameras = sorted((set(step.cameras) - set(previous.image_keys)) | set(config.image_keys))
    return config


def make_segdepth_pre_post_processors(config: SegDepthConfig, dataset_stats=None):
    steps = make_default_policy_processor_steps(config, dataset_stats)
    cameras, clip = safety_steps(config, skip_if_present=[OBS_SEGDEPTH], cameras=config.image_keys)
    observation = [*input_head(config, steps, cameras), *segdepth_observation_steps(config)]
    if config.action_mode == "absolute":
        return make_policy_processor_pipelines(
            input_steps=[*observation, steps.to_device, steps.normalize],
            output_steps=[steps.unnormalize, clip, steps.to_cpu],
        )
    chained = list(config.chained_joints) if config.action_mode == "chained" else []
    to_delta = JointDeltaFromAbsoluteStep(
        action_scale=list(config.action_scale), chained=chained, history=config.action_history
    )
    remember = [RememberJointTargetStep(pair_id=to_delta.pair_id)] if chained or config.action_history else []
    return make_policy_processor_pipelines(
        input_steps=[*observation, to_delta, steps.to_device, steps.normalize],  # to_delta sees the raw state
        output_steps=[
            steps.unnormalize,
            JointAbsoluteFromDeltaStep(action_scale=list(config.action_scale), pair_id=to_delta.pair_id),
            clip,
            *remember,  # the clipped target, which a chained step adds to next, or the history shows
            steps.to_cpu,
        ],
    )
