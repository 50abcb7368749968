"""SegVLA's processors: SmolVLA's steps, plus the step that writes the semantic scores the config names and the
suite's two safety steps (the camera check after the rename, the clip into the joint limits before the move to the
CPU)."""

from __future__ import annotations

from typing import Any

import torch
from lerobot.processor import (
    NewLineTaskProcessorStep,
    PolicyAction,
    PolicyProcessorPipeline,
    ProcessorStep,
    TokenizerProcessorStep,
    make_default_policy_processor_steps,
    make_policy_processor_pipelines,
)

from so101_policy_common.pipeline import input_head, safety_steps

from .configuration_segvla import SegVLAConfig
from .cue_steps import SegVLATaskClassesStep


def segmentation_step(config: SegVLAConfig) -> ProcessorStep | None:
    """The step that fills the batch keys of `segmentation_feature_map`, chosen by `perception_source`."""
    build = config.perception_record.step
    if not config.segmentation_feature_map or build is None:
        return None  # cues off, or the dataset / caller already provides the scores
    return build(config)


def task_classes_step(config: SegVLAConfig) -> ProcessorStep | None:
    """The step that marks each sample's prompt nouns as its task classes (`segmentation_classes_from_task`)."""
    if not (config.segmentation_feature_map and config.segmentation_classes_from_task):
        return None
    id2label = None
    if config.perception_record.twin_classes:
        from so101_core.segmentation import SEGMENTATION_CLASSES

        id2label = {str(k): v for k, v in SEGMENTATION_CLASSES.items()}
    return SegVLATaskClassesStep(
        model_name=config.segmentation_model_name,
        synonyms=dict(config.segmentation_task_synonyms),
        id2label=id2label,
    )


def make_segvla_pre_post_processors(
    config: SegVLAConfig,
    dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None,
) -> tuple[
    PolicyProcessorPipeline[dict[str, Any], dict[str, Any]],
    PolicyProcessorPipeline[PolicyAction, PolicyAction],
]:
    steps = make_default_policy_processor_steps(config, dataset_stats)
    # Both on the raw inputs, before the device move; the prompt's nouns before the newline the tokenizer needs.
    semantic = [step for step in (segmentation_step(config), task_classes_step(config)) if step is not None]
    # what the policy reads: its RGB cameras, and the twin's segmentation beside them for ground-truth cues (a dataset's
    # other maps, depth say, are in input_features but never read)
    read = sorted(config.camera_features)
    if config.perception_record.reads_twin_segmentation:
        read += [f"{camera}_segmentation" for camera in config.segmentation_feature_map]
    cameras, clip = safety_steps(config, cameras=read)
    input_steps = [
        *input_head(config, steps, cameras),
        *semantic,
        NewLineTaskProcessorStep(),
        TokenizerProcessorStep(
            tokenizer_name=config.vlm_model_name,
            padding=config.pad_language_to,
            padding_side="right",
            max_length=config.tokenizer_max_length,
        ),
        steps.to_device,
        steps.normalize,
    ]
    return make_policy_processor_pipelines(
        input_steps=input_steps, output_steps=[steps.unnormalize, clip, steps.to_cpu]
    )
