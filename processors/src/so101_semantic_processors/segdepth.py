"""Seed 002's observation steps: segmentation ids + disparity, centre-cropped, resized, stacked.

Every step works on tensors shaped (..., C, H, W): (B, C, H, W) at inference and (B, T, C, H, W) in training,
where LeRobot's dataset returns T past frames (`observation_delta_indices`), so training and inference run the
same code on the same values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from lerobot.configs import FeatureType, PipelineFeatureType, PolicyFeature
from lerobot.processor import ObservationProcessorStep, ProcessorStepRegistry
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

DEPTH_UNITS = {"m": 1.0, "mm": 1e-3}


def _require(observation: dict, key: str, step: str) -> torch.Tensor:
    if key not in observation:
        present = sorted(k for k in observation if k.startswith("observation."))
        raise KeyError(f"{step} needs '{key}' in the observation; it has {present}")
    value = observation[key]
    if not isinstance(value, torch.Tensor) or value.ndim < 3:
        shape = tuple(value.shape) if hasattr(value, "shape") else type(value).__name__
        raise ValueError(f"{step}: '{key}' must be a tensor shaped (..., C, H, W), got {shape}")
    return value


def disparity_from_depth(depth: torch.Tensor, key: str = "depth") -> torch.Tensor:
    """Metric depth (..., 1, H, W) -> disparity normalised per frame to [0, 255], near = 255.

    A frame whose disparity is all equal (a flat wall, a blank camera) becomes all zeros rather than a
    division by zero. NaN or non-positive depth is an error: it means a broken sensor or decoder.
    """
    if torch.isnan(depth).any():
        raise ValueError(f"'{key}' holds NaN depth values")
    if (depth <= 0).any():
        raise ValueError(f"'{key}' holds non-positive depth values (min {float(depth.min()):.4g}); expected > 0")
    disparity = 1.0 / depth.double()
    flat = disparity.flatten(start_dim=-3)
    lo = flat.min(dim=-1).values[..., None, None, None]
    hi = flat.max(dim=-1).values[..., None, None, None]
    span = hi - lo
    scaled = torch.where(span > 0, (disparity - lo) / span.clamp_min(1e-12), torch.zeros_like(disparity))
    return (scaled * 255.0).float()


@ProcessorStepRegistry.register("so101_depth_to_disparity")
@dataclass
class DepthToDisparityStep(ObservationProcessorStep):
    """`depth_key` (metric depth in `depth_unit`) -> `disparity_key`, per-frame min-max to 0-255, near = 255."""

    depth_key: str = "observation.images.wrist_depth"
    disparity_key: str = "observation.wrist_disparity"
    depth_unit: str = "mm"  # LeRobot datasets decode depth maps to millimetres by default

    def __post_init__(self):
        if self.depth_unit not in DEPTH_UNITS:
            raise ValueError(f"depth_unit must be one of {list(DEPTH_UNITS)}, got {self.depth_unit!r}")

    def observation(self, observation: dict) -> dict:
        depth = _require(observation, self.depth_key, type(self).__name__)
        observation[self.disparity_key] = disparity_from_depth(depth * DEPTH_UNITS[self.depth_unit], self.depth_key)
        return observation

    def get_config(self) -> dict[str, Any]:
        return {"depth_key": self.depth_key, "disparity_key": self.disparity_key, "depth_unit": self.depth_unit}

    def transform_features(self, features):
        obs = features.get(PipelineFeatureType.OBSERVATION, {})
        if self.depth_key in obs:
            obs[self.disparity_key] = PolicyFeature(type=FeatureType.VISUAL, shape=obs[self.depth_key].shape)
        return features


@ProcessorStepRegistry.register("so101_segmentation_from_code")
@dataclass
class SegmentationFromCodeStep(ObservationProcessorStep):
    """The twin's depth-coded segmentation feature -> class ids (integer-valued float32, same shape).

    LeRobot 0.6 stores single-channel per-pixel features only as depth maps; the twin writes class c as
    c + 1 metres (see `lerobot_env_so101_twin.constants`). Ids outside the 6-class map are an error.
    """

    code_key: str = "observation.images.wrist_segmentation"
    ids_key: str = "observation.wrist_segmentation_ids"
    code_unit: str = "mm"

    def observation(self, observation: dict) -> dict:
        from lerobot_env_so101_twin.constants import segmentation_from_code

        code = _require(observation, self.code_key, type(self).__name__)
        try:
            ids = segmentation_from_code(code, unit=self.code_unit)
        except ValueError as err:
            raise ValueError(f"'{self.code_key}': {err}") from err
        observation[self.ids_key] = ids.float()
        return observation

    def get_config(self) -> dict[str, Any]:
        return {"code_key": self.code_key, "ids_key": self.ids_key, "code_unit": self.code_unit}

    def transform_features(self, features):
        obs = features.get(PipelineFeatureType.OBSERVATION, {})
        if self.code_key in obs:
            obs[self.ids_key] = PolicyFeature(type=FeatureType.VISUAL, shape=obs[self.code_key].shape)
        return features


@ProcessorStepRegistry.register("so101_center_crop_square")
@dataclass
class CenterCropSquareStep(ObservationProcessorStep):
    """Crop each of `keys` to the centred square of side min(H, W): 640x480 -> 480x480, as seed 002 does."""

    keys: list[str] = field(default_factory=list)

    def observation(self, observation: dict) -> dict:
        for key in self.keys:
            image = _require(observation, key, type(self).__name__)
            observation[key] = TF.center_crop(image, [min(image.shape[-2:])])
        return observation

    def get_config(self) -> dict[str, Any]:
        return {"keys": list(self.keys)}

    def transform_features(self, features):
        obs = features.get(PipelineFeatureType.OBSERVATION, {})
        for key in self.keys:
            if key in obs:
                *lead, h, w = obs[key].shape
                side = min(h, w)
                obs[key] = PolicyFeature(type=obs[key].type, shape=(*lead, side, side))
        return features


@ProcessorStepRegistry.register("so101_resize")
@dataclass
class ResizeStep(ObservationProcessorStep):
    """Resize `nearest_keys` (class ids: never blend two classes) and `linear_keys` to `size` x `size`."""

    size: int = 84
    nearest_keys: list[str] = field(default_factory=list)
    linear_keys: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.size <= 0:
            raise ValueError(f"size must be positive, got {self.size}")

    def observation(self, observation: dict) -> dict:
        size = [self.size, self.size]
        for keys, mode in (
            (self.nearest_keys, InterpolationMode.NEAREST_EXACT),
            (self.linear_keys, InterpolationMode.BILINEAR),
        ):
            for key in keys:
                image = _require(observation, key, type(self).__name__).float()
                observation[key] = TF.resize(image, size, interpolation=mode, antialias=True)
        return observation

    def get_config(self) -> dict[str, Any]:
        return {"size": self.size, "nearest_keys": list(self.nearest_keys), "linear_keys": list(self.linear_keys)}

    def transform_features(self, features):
        obs = features.get(PipelineFeatureType.OBSERVATION, {})
        for key in [*self.nearest_keys, *self.linear_keys]:
            if key in obs:
                *lead, _, _ = obs[key].shape
                obs[key] = PolicyFeature(type=obs[key].type, shape=(*lead, self.size, self.size))
        return features


@ProcessorStepRegistry.register("so101_stack_channels")
@dataclass
class StackChannelsStep(ObservationProcessorStep):
    """Concatenate `keys` along the channel axis into `output_key`, e.g. ids + disparity -> (..., 2, 84, 84).

    With `drop_inputs` the inputs are removed, so intermediate images are not moved to the policy's device.
    """

    keys: list[str] = field(default_factory=list)
    output_key: str = "observation.segdepth"
    drop_inputs: bool = True

    def observation(self, observation: dict) -> dict:
        parts = [_require(observation, key, type(self).__name__) for key in self.keys]
        shapes = {tuple(p.shape[:-3]) + tuple(p.shape[-2:]) for p in parts}
        if len(shapes) != 1:
            raise ValueError(
                f"StackChannelsStep: {self.keys} must share leading and spatial dims, got "
                f"{[tuple(p.shape) for p in parts]}"
            )
        observation[self.output_key] = torch.cat([p.float() for p in parts], dim=-3)
        if self.drop_inputs:
            for key in self.keys:
                observation.pop(key, None)
        return observation

    def get_config(self) -> dict[str, Any]:
        return {"keys": list(self.keys), "output_key": self.output_key, "drop_inputs": self.drop_inputs}

    def transform_features(self, features):
        obs = features.get(PipelineFeatureType.OBSERVATION, {})
        if all(key in obs for key in self.keys) and self.keys:
            *lead, _, h, w = obs[self.keys[0]].shape
            channels = sum(obs[key].shape[-3] for key in self.keys)
            obs[self.output_key] = PolicyFeature(type=FeatureType.VISUAL, shape=(*lead, channels, h, w))
            if self.drop_inputs:
                for key in self.keys:
                    obs.pop(key)
        return features
