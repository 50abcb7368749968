"""SegVLA's processors: SmolVLA's steps, plus the step that writes the semantic scores the config names."""

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

from so101_semantic_processors.segmentation_scores import SegmentationScoresFromCodeStep

from .configuration_segvla import SegVLAConfig


def segmentation_step(config: SegVLAConfig) -> ProcessorStep | None:
    """The step that fills the batch keys of `segmentation_feature_map`, chosen by `segmentation_source`."""
    if not config.segmentation_feature_map or config.segmentation_source == "none":
        return None  # cues off, or the dataset / caller already provides the scores
    if config.segmentation_source == "ground_truth":
        return SegmentationScoresFromCodeStep(
            key_map={f"{camera}_segmentation": key for camera, key in config.segmentation_feature_map.items()},
            num_classes=config.segmentation_num_classes,
            grid_size=config.segmentation_grid_size,
        )
    from so101_semantic_processors.mask2former import SegVLAAddSegmentationStep

    return SegVLAAddSegmentationStep(
        feature_map=dict(config.segmentation_feature_map),
        model_name=config.segmentation_model_name,
        grid_size=config.segmentation_grid_size,
    )


def task_classes_step(config: SegVLAConfig) -> ProcessorStep | None:
    """The step that marks each sample's prompt nouns as its task classes (`segmentation_classes_from_task`)."""
    if not (config.segmentation_feature_map and config.segmentation_classes_from_task):
        return None
    from so101_semantic_processors.mask2former import SegVLATaskClassesStep

    id2label = None
    if config.segmentation_source == "ground_truth":
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
    input_steps = [
        steps.rename_observations,
        steps.add_batch_dim,
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
    return make_policy_processor_pipelines(input_steps=input_steps, output_steps=[steps.unnormalize, steps.to_cpu])
