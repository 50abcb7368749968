"""`hlrp`'s processors: LeRobot's standard steps plus the instruction, newline-terminated and tokenised with the
trunk's own tokenizer (as stage 2 tokenised it), like SmolVLA's pipeline, and the suite's two safety steps (the
camera check after the rename, the clip into the joint limits before the move to the CPU)."""

from __future__ import annotations

from typing import Any

import torch
from lerobot.processor import (
    NewLineTaskProcessorStep,
    PolicyAction,
    PolicyProcessorPipeline,
    TokenizerProcessorStep,
    make_default_policy_processor_steps,
    make_policy_processor_pipelines,
)

from so101_policy_common.pipeline import input_head, safety_steps

from .configuration_hlrp import HLRPConfig


def make_hlrp_pre_post_processors(
    config: HLRPConfig, dataset_stats: dict[str, dict[str, torch.Tensor]] | None = None
) -> tuple[
    PolicyProcessorPipeline[dict[str, Any], dict[str, Any]],
    PolicyProcessorPipeline[PolicyAction, PolicyAction],
]:
    steps = make_default_policy_processor_steps(config, dataset_stats)
    cameras, clip = safety_steps(config, cameras=config.camera_keys)
    input_steps = [
        *input_head(config, steps, cameras),
        NewLineTaskProcessorStep(),
        TokenizerProcessorStep(
            tokenizer_name=config.core.vlm_model_name,
            padding="max_length",
            padding_side="right",
            max_length=config.core.tokenizer_max_length,
        ),
        steps.to_device,
        steps.normalize,
    ]
    return make_policy_processor_pipelines(
        input_steps=input_steps, output_steps=[steps.unnormalize, clip, steps.to_cpu]
    )
