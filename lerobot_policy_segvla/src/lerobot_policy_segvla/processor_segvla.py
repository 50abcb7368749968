"""SegVLA's processors: SmolVLA's steps, plus the step that writes the semantic scores the config names and the
suite's two safety steps (the camera check after the rename, the clip into the joint limits before the move to the
CPU)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from lerobot.configs import FeatureType, PipelineFeatureType, PolicyFeature
from lerobot.processor import (
    NewLineTaskProcessorStep,
    ObservationProcessorStep,
    PolicyAction,
    PolicyProcessorPipeline,
    ProcessorStep,
    ProcessorStepRegistry,
    TokenizerProcessorStep,
    make_default_policy_processor_steps,
    make_policy_processor_pipelines,
)

from so101_segmenter.carried import CarriesSegmenter
from so101_semantic_processors.steps import ConfigFromFields, present_keys

from .configuration_segvla import SegVLAConfig
from .segmentation_scores import SegmentationScoresFromCodeStep, class_colour_image


@ProcessorStepRegistry.register("segvla_segmenter_scores")
@dataclass
class SegmenterScoresStep(CarriesSegmenter, ConfigFromFields, ObservationProcessorStep):
    """Camera images -> the suite's EfficientViT-B0 + FPN segmenter's class probabilities pooled to (C, g, g).

    The fast cue source for the real arm (~10 ms a frame on a CPU, against seconds for Mask2Former): the same form
    as the ground-truth scores (per-cell class fractions over the whole image), with softmax probabilities in place
    of one-hot labels. The weights travel with the saved pipeline (so101_segmenter.carried), so a checkpoint runs
    wherever it is copied; `segmenter_path` is read once, when a training run builds the step. `image_map` (camera
    key -> key) also writes the class-coloured image of the probabilities at the camera's size (SegVLA's
    `segmentation_image`; the camera's own key for "instead").
    """

    feature_map: dict[str, str] = field(default_factory=dict)  # camera key -> scores key
    image_map: dict[str, str] = field(default_factory=dict)
    num_classes: int = 6
    grid_size: int = 8
    segmenter_path: str | None = None
    segmenter_config: dict | None = None  # the segmenter's config.json, kept in the saved pipeline
    image_size: list[int] | None = None  # (height, width) the segmenter runs at; None: each camera's own size

    def __post_init__(self):
        if self.segmenter_config is None and self.segmenter_path is None:
            raise ValueError(
                "segmentation_source=segmenter needs --policy.segmentation_segmenter_path (a so101-seg-train"
                " checkpoint folder, e.g. outputs/segmenter/best)"
            )
        self._init_segmenter(self.num_classes)
        if self.image_size is None and self.segmenter_path is not None and self._segmenter is not None:
            from so101_segmenter.infer import trained_size

            size = trained_size(self.segmenter_path)
            self.image_size = list(size) if size else None

    def get_config(self) -> dict:
        config = super().get_config()
        if not self.image_map:  # only segmentation_image fills it: pipelines saved before it existed stay the same
            config.pop("image_map")
        return config

    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float in [0, 1] -> (B, C, h, w) class probabilities at the segmenter's size."""
        model = self.segmenter
        x = images.float().cpu()
        if self.image_size is not None and tuple(x.shape[-2:]) != tuple(self.image_size):
            x = F.interpolate(x, size=tuple(self.image_size), mode="bilinear", align_corners=False, antialias=True)
        with torch.no_grad():  # not inference_mode: in training the scores meet tensors that need their grad
            return model(x).softmax(dim=1)

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) float in [0, 1] -> (B, C, g, g) class probabilities averaged over each grid cell."""
        return F.adaptive_avg_pool2d(self.probabilities(images), self.grid_size)

    def observation(self, observation: dict) -> dict:
        observation = dict(observation)
        for camera, key in self.feature_map.items():
            if camera not in observation:
                raise KeyError(
                    f"the segmenter cue step needs camera '{camera}'; the observation has "
                    f"{present_keys(observation, 'observation.images.')}"
                )
            image = observation[camera]
            batched = image if image.ndim == 4 else image[None]
            if batched.shape[-3] != 3:
                raise ValueError(f"'{camera}' must be RGB (..., 3, H, W) in [0, 1], got {tuple(image.shape)}")
            probs = self.probabilities(batched)
            scores = F.adaptive_avg_pool2d(probs, self.grid_size).to(image.device)
            observation[key] = scores if image.ndim == 4 else scores[0]
            if camera in self.image_map:
                drawn = class_colour_image(probs)
                if drawn.shape[-2:] != batched.shape[-2:]:
                    drawn = F.interpolate(drawn, size=tuple(batched.shape[-2:]), mode="bilinear", align_corners=False)
                drawn = drawn.to(device=image.device, dtype=image.dtype)
                observation[self.image_map[camera]] = drawn if image.ndim == 4 else drawn[0]
        return observation

    def transform_features(self, features):
        obs = features.get(PipelineFeatureType.OBSERVATION, {})
        for key in self.feature_map.values():
            obs[key] = PolicyFeature(type=FeatureType.STATE, shape=(self.num_classes, self.grid_size, self.grid_size))
        for camera, key in self.image_map.items():
            if camera in obs:
                obs[key] = PolicyFeature(type=FeatureType.VISUAL, shape=obs[camera].shape)
        return features


def segmentation_step(config: SegVLAConfig) -> ProcessorStep | None:
    """The step that fills the batch keys of `segmentation_feature_map`, chosen by `segmentation_source`."""
    if not config.segmentation_feature_map or config.segmentation_source == "none":
        return None  # cues off, or the dataset / caller already provides the scores
    if config.segmentation_source == "ground_truth":
        return SegmentationScoresFromCodeStep(
            key_map={f"{camera}_segmentation": key for camera, key in config.segmentation_feature_map.items()},
            image_map={f"{camera}_segmentation": key for camera, key in config.segmentation_image_keys.items()},
            num_classes=config.segmentation_num_classes,
            grid_size=config.segmentation_grid_size,
        )
    if config.segmentation_source == "segmenter":
        return SegmenterScoresStep(
            feature_map=dict(config.segmentation_feature_map),
            image_map=dict(config.segmentation_image_keys),
            num_classes=config.segmentation_num_classes,
            grid_size=config.segmentation_grid_size,
            segmenter_path=config.segmentation_segmenter_path,
        )
    from .mask2former import SegVLAAddSegmentationStep

    return SegVLAAddSegmentationStep(
        feature_map=dict(config.segmentation_feature_map),
        model_name=config.segmentation_model_name,
        grid_size=config.segmentation_grid_size,
    )


def task_classes_step(config: SegVLAConfig) -> ProcessorStep | None:
    """The step that marks each sample's prompt nouns as its task classes (`segmentation_classes_from_task`)."""
    if not (config.segmentation_feature_map and config.segmentation_classes_from_task):
        return None
    from .mask2former import SegVLATaskClassesStep

    id2label = None
    if config.segmentation_source in ("ground_truth", "segmenter"):
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
    if config.segmentation_source == "ground_truth":
        read += [f"{camera}_segmentation" for camera in config.segmentation_feature_map]
    cameras, clip = config.safety_steps(cameras=read)
    input_steps = [
        steps.rename_observations,
        cameras,
        config.camera_resize_step(),  # a camera of another size: brought to the trained one, aspect kept
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
    return make_policy_processor_pipelines(
        input_steps=input_steps, output_steps=[steps.unnormalize, clip, steps.to_cpu]
    )
