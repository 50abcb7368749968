"""The twin's ground-truth segmentation as SegVLA semantic scores, so simulated cues carry real signal.

Mask2Former's scores (softmax(class)[..., :-1] x sigmoid(masks), summed over queries) pooled to a g x g grid are
what SegVLA reads; for the twin the same form comes from one-hot class ids: each cell of the grid holds the
fraction of its pixels that belong to each class.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from lerobot.configs import FeatureType, PipelineFeatureType, PolicyFeature
from lerobot.processor import ObservationProcessorStep, ProcessorStepRegistry

from so101_semantic_processors.steps import ConfigFromFields, present_keys


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


@ProcessorStepRegistry.register("so101_segmentation_scores_from_code")
@dataclass
class SegmentationScoresFromCodeStep(ConfigFromFields, ObservationProcessorStep):
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

    def get_config(self) -> dict:
        config = super().get_config()
        if not self.image_map:  # only segmentation_image fills it: pipelines saved before it existed stay the same
            config.pop("image_map")
        return config

    def observation(self, observation: dict) -> dict:
        from so101_core.segmentation import code_unit, segmentation_from_code

        observation = dict(observation)
        for code_key, scores_key in self.key_map.items():
            if code_key not in observation:
                raise KeyError(
                    f"SegmentationScoresFromCodeStep needs '{code_key}' (record with --robot.segmentation=true,"
                    f" evaluate with --env.segmentation=true); the observation has {present_keys(observation)}"
                )
            code = observation[code_key]
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
