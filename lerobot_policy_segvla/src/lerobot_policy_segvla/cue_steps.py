"""SegVLA's cue steps: the processor steps that write the class scores SegVLA's cues read, per cue source, and the
prompt's classes that every source can add.

- `SegmentationScoresFromCodeStep` (perception_source=ground_truth): the twin's depth-coded segmentation as
  one-hot class fractions per grid cell, the form Mask2Former's pooled scores have, so simulated cues carry real
  signal;
- `SegmenterScoresStep` (perception_source=segmenter): the suite's segmenter's softmax pooled the same way;
- `SegVLATaskClassesStep` (segmentation_classes_from_task, any source): the nouns of each task prompt as a multi-hot
  class mask.

Mask2Former's own step (`SegVLAAddSegmentationStep`) stays in `mask2former.py` beside the model code it shares with
`segvla-precompute`. The registry names are those saved pipelines carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lerobot.configs import FeatureType, PipelineFeatureType, PolicyFeature
from lerobot.processor import ObservationProcessorStep, ProcessorStepRegistry

from so101_core.keys import require_key
from so101_policy_common.pretrained import pretrained_hint, require_pretrained
from so101_policy_common.steps import ConfigFromFields
from so101_segmenter.carried import CarriesSegmenter

from .mask2former import (
    DEFAULT_MODEL,
    MASK2FORMER_FLAG,
    MASK2FORMER_WHAT,
    TASK_CLASSES_KEY,
    packed_scores_length,
    score_grid,
)


def scores_from_ids(ids: torch.Tensor, num_classes: int, grid_size: int) -> torch.Tensor:
    """Class ids (..., H, W) -> per-cell class fractions (..., num_classes, g, g), float32 in [0, 1].

    Cells follow adaptive average pooling, so H and W need not be multiples of g.
    """
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_classes):
        raise ValueError(f"class ids span [{int(ids.min())}, {int(ids.max())}], outside 0..{num_classes - 1}")
    one_hot = F.one_hot(ids.long(), num_classes).movedim(-1, -3).float()  # (..., C, H, W)
    lead = one_hot.shape[:-3]
    pooled = F.adaptive_avg_pool2d(one_hot.reshape(-1, *one_hot.shape[-3:]), grid_size)
    return pooled.reshape(*lead, num_classes, grid_size, grid_size)


def class_colour_image(probs: torch.Tensor) -> torch.Tensor:
    """Class probabilities (..., C, H, W) -> the suite's palette colours they weigh, (..., 3, H, W) in [0, 1].

    One-hot labels give the palette exactly; a segmenter's softmax gives the expected colour, so an unsure pixel
    looks unsure rather than confidently wrong.
    """
    from so101_core import SEGMENTATION_PALETTE

    palette = torch.as_tensor(SEGMENTATION_PALETTE, dtype=probs.dtype, device=probs.device) / 255.0  # (C, 3)
    if probs.shape[-3] != palette.shape[0]:
        raise ValueError(f"class_colour_image needs {palette.shape[0]} class scores, got {probs.shape[-3]}")
    return torch.einsum("...chw,cd->...dhw", probs, palette)


class SavesImageMapWhenSet:
    """Mixin for a step with an `image_map` field: its saved config leaves the map out while it is empty, so the
    pipelines saved before `segmentation_image` existed stay the same."""

    def get_config(self) -> dict:
        config = super().get_config()
        if not self.image_map:
            config.pop("image_map")
        return config


@ProcessorStepRegistry.register("so101_segmentation_scores_from_code")
@dataclass
class SegmentationScoresFromCodeStep(SavesImageMapWhenSet, ConfigFromFields, ObservationProcessorStep):
    """Depth-coded ground-truth segmentation keys -> one-hot scores pooled to (..., C, g, g).

    `key_map` maps each code key (`observation.images.<cam>_segmentation`) to its scores key
    (e.g. `observation.segmentation.<cam>`). Codes decode with `so101_core.segmentation`. `image_map` maps code keys
    to the keys that get the class-coloured image (3, H, W) of the same labels (SegVLA's `segmentation_image`).
    """

    key_map: dict[str, str] = field(default_factory=dict)
    image_map: dict[str, str] = field(default_factory=dict)
    num_classes: int = 6
    grid_size: int = 8
    # LeRobot's dataset decoder returns depth maps in millimetres; the values decide (so101_core.segmentation's
    # code_unit), since lerobot-rollout hands over the twin robot's raw frames in metres instead
    code_unit: str = "mm"

    def __post_init__(self):
        if self.grid_size < 1:
            raise ValueError(f"grid_size must be >= 1, got {self.grid_size}")
        from so101_core.segmentation import NUM_SEGMENTATION_CLASSES

        if self.num_classes != NUM_SEGMENTATION_CLASSES:
            raise ValueError(
                f"the twin's ground truth has {NUM_SEGMENTATION_CLASSES} classes; num_classes is {self.num_classes}"
            )

    def observation(self, observation: dict) -> dict:
        from so101_core.segmentation import code_unit, segmentation_from_code

        observation = dict(observation)
        for code_key, scores_key in self.key_map.items():
            hint = "record with --robot.segmentation=true, evaluate with --env.segmentation=true"
            code = require_key(
                observation,
                code_key,
                "SegmentationScoresFromCodeStep",
                hint,
                where="observation",
                prefix="observation.",
            )
            if code.ndim < 3 or code.shape[-3] != 1:
                raise ValueError(f"'{code_key}' must be shaped (..., 1, H, W), got {tuple(code.shape)}")
            try:
                ids = segmentation_from_code(code[..., 0, :, :], unit=code_unit(code, default=self.code_unit))
            except ValueError as err:
                raise ValueError(f"'{code_key}': {err}") from err
            observation[scores_key] = scores_from_ids(ids, self.num_classes, self.grid_size).to(code.device)
            if code_key in self.image_map:
                one_hot = F.one_hot(ids.long(), self.num_classes).movedim(-1, -3).float()
                observation[self.image_map[code_key]] = class_colour_image(one_hot).to(code.device)
        return observation

    def transform_features(self, features):
        obs = features.get(PipelineFeatureType.OBSERVATION, {})
        for code_key, scores_key in self.key_map.items():
            if code_key in obs:
                shape = (self.num_classes, self.grid_size, self.grid_size)
                obs[scores_key] = PolicyFeature(type=FeatureType.STATE, shape=shape)
                if code_key in self.image_map:
                    obs[self.image_map[code_key]] = PolicyFeature(
                        type=FeatureType.VISUAL, shape=(3, *obs[code_key].shape[-2:])
                    )
        return features


@ProcessorStepRegistry.register("segvla_segmenter_scores")
@dataclass
class SegmenterScoresStep(SavesImageMapWhenSet, CarriesSegmenter, ConfigFromFields, ObservationProcessorStep):
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
    segmenter_source: dict | None = None  # the folder it was read from and its weights' sha256 (carried.py)
    image_size: list[int] | None = None  # (height, width) the segmenter runs at; None: each camera's own size
    # The fingerprint of the segmenter that computed the training dataset's stored scores (`segvla-precompute
    # --segmenter_path`): a batch that holds a scores key keeps it instead of running the segmenter again (so
    # training reads its cues instead of computing them in the training process); None: always compute.
    stored_scores_fingerprint: str | None = None

    def __post_init__(self):
        if self.segmenter_config is None and self.segmenter_path is None:
            raise ValueError(
                "--policy.perception_source=segmenter needs --policy.segmentation_segmenter_path (a so101-seg-train"
                " checkpoint folder, e.g. outputs/segmenter/best)"
            )
        self._init_segmenter(self.num_classes)
        stored = self.stored_scores_fingerprint
        if stored is not None and self._segmenter is not None and stored != self.segmenter_fingerprint:
            raise ValueError(
                f"the dataset's stored scores {sorted(self.feature_map.values())} were computed by segmenter "
                f"{stored}, not by --policy.segmentation_segmenter_path={self.segmenter_path} "
                f"({self.segmenter_fingerprint}): precompute them again with that segmenter (segvla-precompute "
                "--segmenter_path=...) or train on the dataset without them"
            )
        if self.image_size is None and self.segmenter_path is not None and self._segmenter is not None:
            from so101_segmenter.infer import trained_size

            size = trained_size(self.segmenter_path)
            self.image_size = list(size) if size else None

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
            image = require_key(
                observation,
                camera,
                "the segmenter cue step",
                "a camera",
                where="observation",
                prefix="observation.images.",
            )
            batched = image if image.ndim == 4 else image[None]
            if batched.shape[-3] != 3:
                raise ValueError(f"'{camera}' must be RGB (..., 3, H, W) in [0, 1], got {tuple(image.shape)}")
            if self.stored_scores_fingerprint and key in observation and camera not in self.image_map:
                # lerobot-train's batches give dataset columns a time axis of 1 (B, 1, C, g, g); the policy takes both
                cell = (self.num_classes, self.grid_size, self.grid_size)
                stored = score_grid(observation[key], *cell[:2])
                if tuple(stored.shape[-3:]) != cell or stored.shape[: image.ndim - 3] != image.shape[:-3]:
                    raise ValueError(
                        f"stored scores '{key}' are {tuple(observation[key].shape)}; expected float (..., {cell}) or"
                        f" segvla-precompute's int64 (..., {packed_scores_length(*cell[:2])}) for camera '{camera}'"
                        f" of {tuple(image.shape)}"
                    )
                observation[key] = stored
                continue
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


@ProcessorStepRegistry.register("segvla_task_classes")
@dataclass
class SegVLATaskClassesStep(ConfigFromFields, ObservationProcessorStep):
    """Optional per-sample classes (the upstream SegVLA notes'): the nouns of each task prompt -> a multi-hot (B, C)
    class mask.

    Names resolve through the class map of whatever produced the scores: the Mask2Former checkpoint's own
    id2label (with the ADE synonym table, `ade20k.DEFAULT_SYNONYMS`, plus `synonyms`), or `id2label` when given
    (the twin's ground-truth classes; then only `synonyms` apply, the ADE table naming classes such a map lacks).
    The mask goes under `output_key`, an `observation.*` key so LeRobot's batch converter keeps it; SegVLA gives
    the marked classes class tokens ahead of the top-k.
    """

    model_name: str = DEFAULT_MODEL
    output_key: str = TASK_CLASSES_KEY
    synonyms: dict[str, str] = field(default_factory=dict)
    id2label: dict[str, str] | None = None

    def __post_init__(self):
        if not self.output_key.startswith("observation."):
            raise ValueError(f"output_key must start with 'observation.', got {self.output_key!r}")
        self._parser = None
        self.parser()  # the class map now (Mask2Former's config, by name), not at the first frame

    @classmethod
    def check_saved(cls, config: dict[str, Any], state_file: Path | None, has_state: bool) -> None:
        """Before the pipeline is built: the class map is the saved id2label, or Mask2Former's config by name."""
        if config.get("id2label") is None:
            require_pretrained(config.get("model_name", DEFAULT_MODEL), MASK2FORMER_WHAT, MASK2FORMER_FLAG)

    def class_map(self) -> dict:
        if self.id2label is not None:
            return dict(self.id2label)
        from transformers import AutoConfig

        with pretrained_hint(self.model_name, MASK2FORMER_WHAT, MASK2FORMER_FLAG):
            return AutoConfig.from_pretrained(self.model_name).id2label

    def parser(self):
        if self._parser is None:
            from .ade20k import DEFAULT_SYNONYMS, PromptClassParser

            id2label = self.class_map()
            synonyms = dict(self.synonyms) if self.id2label is not None else {**DEFAULT_SYNONYMS, **self.synonyms}
            self._parser = PromptClassParser(id2label, synonyms)
            self._num_classes = len(id2label)
        return self._parser

    def observation(self, observation: dict) -> dict:
        from lerobot.processor import TransitionKey

        task = (self.transition.get(TransitionKey.COMPLEMENTARY_DATA) or {}).get("task")
        if task is None:
            raise KeyError("SegVLATaskClassesStep needs the task prompt (complementary data 'task'); there is none")
        prompts = [task] if isinstance(task, str) else list(task)
        parser = self.parser()
        mask = torch.zeros(len(prompts), self._num_classes)
        for row, ids in enumerate(parser.batch(prompts)):
            mask[row, ids] = 1.0
        observation[self.output_key] = mask
        return observation

    def transform_features(self, features):
        obs = features.get(PipelineFeatureType.OBSERVATION, {})
        obs[self.output_key] = PolicyFeature(type=FeatureType.STATE, shape=(len(self.class_map()),))
        return features
