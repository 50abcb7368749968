"""SegDepth's observation steps (after ggand0/pick-101's policy): segmentation ids + disparity, centre-cropped,
resized, stacked.

Every step works on tensors shaped (..., C, H, W): (B, C, H, W) at inference and (B, T, C, H, W) in training,
where LeRobot's dataset returns T past frames (`observation_delta_indices`), so training and inference run the
same code on the same values.

`skip_if_present` (every step): when that key is already in the observation, the step leaves the observation
as it is. SegDepth sets it to `observation.segdepth`, so one saved preprocessor runs on raw keys (the twin, the
real arm) and on a dataset that already holds the policy-ready observation (`segdepth-precompute`). Checkpoints
saved before the field existed load with None: the step always runs, as before.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from lerobot.configs import FeatureType, PipelineFeatureType, PolicyFeature
from lerobot.processor import ObservationProcessorStep, ProcessorStepRegistry
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from so101_core.keys import require_key
from so101_policy_common.steps import ConfigFromFields

from .constants import OBS_SEGDEPTH, packed_length

DEPTH_UNITS = {"m": 1.0, "mm": 1e-3}


def _require(observation: dict, key: str, step: str) -> torch.Tensor:
    value = require_key(observation, key, step, where="observation", prefix="observation.")
    if not isinstance(value, torch.Tensor) or value.ndim < 3:
        shape = tuple(value.shape) if hasattr(value, "shape") else type(value).__name__
        raise ValueError(f"{step}: '{key}' must be a tensor shaped (..., C, H, W), got {shape}")
    return value


def _skip(step, observation: dict) -> bool:
    """True when `step.skip_if_present` names a key the observation already holds (a precomputed dataset)."""
    return step.skip_if_present is not None and step.skip_if_present in observation


def pack_uint8(image: torch.Tensor) -> torch.Tensor:
    """uint8 (..., C, S, S) -> int64 (..., packed_length(C, S)): the same bytes as 8x fewer elements.

    LeRobot 0.6.1 returns a dataset's array columns as Python lists turned into tensors element by element, for
    every row it reads; a stored observation packed this way converts 8x fewer Python ints per frame.
    """
    if image.dtype != torch.uint8 or image.ndim < 3 or image.shape[-1] != image.shape[-2]:
        raise ValueError(f"pack_uint8 takes uint8 (..., C, S, S), got {image.dtype} {tuple(image.shape)}")
    flat = image.contiguous().reshape(*image.shape[:-3], -1)
    pad = packed_length(image.shape[-3], image.shape[-1]) * 8 - flat.shape[-1]
    if pad:
        flat = torch.cat([flat, flat.new_zeros(*flat.shape[:-1], pad)], dim=-1)
    return flat.view(torch.int64)  # little-endian hosts (x86, ARM): the words parquet stores


def unpack_uint8(packed: torch.Tensor, channels: int) -> torch.Tensor:
    """int64 (..., L) from `pack_uint8` -> uint8 (..., channels, S, S), S read from L."""
    nbytes = packed.shape[-1] * 8
    side = math.isqrt(nbytes // channels)
    if packed.dtype != torch.int64 or packed_length(channels, side) != packed.shape[-1]:
        raise ValueError(
            f"cannot unpack {packed.dtype} {tuple(packed.shape)} into uint8 ({channels}, S, S): expected int64 words "
            "written by pack_uint8"
        )
    flat = packed.contiguous().view(torch.uint8)[..., : channels * side * side]
    return flat.reshape(*packed.shape[:-1], channels, side, side)


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


class _ImageToImageStep(ConfigFromFields, ObservationProcessorStep):
    """One image key in, one of the same shape out; each subclass names the two keys in its own (saved) fields."""

    def _keys(self) -> tuple[str, str]:
        """(the key read, the key written)"""
        raise NotImplementedError

    def _convert(self, image: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def observation(self, observation: dict) -> dict:
        if _skip(self, observation):
            return observation
        source, target = self._keys()
        observation[target] = self._convert(_require(observation, source, type(self).__name__))
        return observation

    def transform_features(self, features):
        source, target = self._keys()
        obs = features.get(PipelineFeatureType.OBSERVATION, {})
        if source in obs:
            obs[target] = PolicyFeature(type=FeatureType.VISUAL, shape=obs[source].shape)
        return features


@ProcessorStepRegistry.register("so101_depth_to_disparity")
@dataclass
class DepthToDisparityStep(_ImageToImageStep):
    """`depth_key` (metric depth in `depth_unit`) -> `disparity_key`, per-frame min-max to 0-255, near = 255.

    The min-max makes the result independent of the unit, so the twin robot's raw frames in metres (what
    `lerobot-rollout` hands over) give what the dataset's millimetres give.
    """

    depth_key: str = "observation.images.wrist_depth"
    disparity_key: str = "observation.wrist_disparity"
    depth_unit: str = "mm"  # LeRobot datasets decode depth maps to millimetres by default
    skip_if_present: str | None = None

    def __post_init__(self):
        if self.depth_unit not in DEPTH_UNITS:
            raise ValueError(f"depth_unit must be one of {list(DEPTH_UNITS)}, got {self.depth_unit!r}")

    def _keys(self) -> tuple[str, str]:
        return self.depth_key, self.disparity_key

    def _convert(self, depth: torch.Tensor) -> torch.Tensor:
        return disparity_from_depth(depth * DEPTH_UNITS[self.depth_unit], self.depth_key)


@ProcessorStepRegistry.register("so101_segmentation_from_code")
@dataclass
class SegmentationFromCodeStep(_ImageToImageStep):
    """The twin's depth-coded segmentation feature -> class ids (integer-valued float32, same shape).

    LeRobot 0.6 stores single-channel per-pixel features only as depth maps; the twin writes class c as
    c + 1 metres (see `so101_core.segmentation`). Ids outside the 6-class map are an error.

    `code_unit` is the unit a dataset's frames decode to; the values themselves decide (`code_unit()` of
    `so101_core.segmentation`), since `lerobot-rollout` hands over the twin robot's raw frames in metres instead.
    """

    code_key: str = "observation.images.wrist_segmentation"
    ids_key: str = "observation.wrist_segmentation_ids"
    code_unit: str = "mm"
    skip_if_present: str | None = None

    def _keys(self) -> tuple[str, str]:
        return self.code_key, self.ids_key

    def _convert(self, code: torch.Tensor) -> torch.Tensor:
        from so101_core.segmentation import code_unit, segmentation_from_code

        try:
            return segmentation_from_code(code, unit=code_unit(code, default=self.code_unit)).float()
        except ValueError as err:
            raise ValueError(f"'{self.code_key}': {err}") from err


@ProcessorStepRegistry.register("so101_center_crop_square")
@dataclass
class CenterCropSquareStep(ConfigFromFields, ObservationProcessorStep):
    """Crop each of `keys` to the centred square of side min(H, W): 640x480 -> 480x480, as pick-101 does."""

    keys: list[str] = field(default_factory=list)
    skip_if_present: str | None = None

    def observation(self, observation: dict) -> dict:
        if _skip(self, observation):
            return observation
        for key in self.keys:
            image = _require(observation, key, type(self).__name__)
            observation[key] = TF.center_crop(image, [min(image.shape[-2:])])
        return observation

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
class ResizeStep(ConfigFromFields, ObservationProcessorStep):
    """Resize `nearest_keys` (class ids: never blend two classes) and `linear_keys` to `size` x `size`."""

    size: int = 84
    nearest_keys: list[str] = field(default_factory=list)
    linear_keys: list[str] = field(default_factory=list)
    skip_if_present: str | None = None

    def __post_init__(self):
        if self.size <= 0:
            raise ValueError(f"size must be positive, got {self.size}")

    def observation(self, observation: dict) -> dict:
        if _skip(self, observation):
            return observation
        size = [self.size, self.size]
        for keys, mode in (
            (self.nearest_keys, InterpolationMode.NEAREST_EXACT),
            (self.linear_keys, InterpolationMode.BILINEAR),
        ):
            for key in keys:
                image = _require(observation, key, type(self).__name__).float()
                observation[key] = TF.resize(image, size, interpolation=mode, antialias=True)
        return observation

    def transform_features(self, features):
        obs = features.get(PipelineFeatureType.OBSERVATION, {})
        for key in [*self.nearest_keys, *self.linear_keys]:
            if key in obs:
                *lead, _, _ = obs[key].shape
                obs[key] = PolicyFeature(type=obs[key].type, shape=(*lead, self.size, self.size))
        return features


@ProcessorStepRegistry.register("so101_stack_channels")
@dataclass
class StackChannelsStep(ConfigFromFields, ObservationProcessorStep):
    """Concatenate `keys` along the channel axis into `output_key`, e.g. ids + disparity -> (..., 2, 84, 84).

    With `drop_inputs` the inputs are removed, so intermediate images are not moved to the policy's device.
    With `quantize` the result is rounded to the uint8 grid (round, then clamp to 0-255): the values a dataset
    precomputed as uint8 holds, so the live and the stored observation are identical. When `skip_if_present` is
    in the observation, that stored tensor is only cast to float32, the live path's dtype (int64 words written by
    `pack_uint8` are unpacked to (..., len(keys), S, S) first).
    """

    keys: list[str] = field(default_factory=list)
    output_key: str = OBS_SEGDEPTH
    drop_inputs: bool = True
    quantize: bool = False
    skip_if_present: str | None = None

    def observation(self, observation: dict) -> dict:
        if _skip(self, observation):
            stored = observation[self.skip_if_present]
            if stored.dtype == torch.int64:
                stored = unpack_uint8(stored, channels=len(self.keys))
            observation[self.skip_if_present] = stored.float()
            return observation
        parts = [_require(observation, key, type(self).__name__) for key in self.keys]
        shapes = {tuple(p.shape[:-3]) + tuple(p.shape[-2:]) for p in parts}
        if len(shapes) != 1:
            raise ValueError(
                f"StackChannelsStep: {self.keys} must share leading and spatial dims, got "
                f"{[tuple(p.shape) for p in parts]}"
            )
        stacked = torch.cat([p.float() for p in parts], dim=-3)
        observation[self.output_key] = stacked.round().clamp(0, 255) if self.quantize else stacked
        if self.drop_inputs:
            for key in self.keys:
                observation.pop(key, None)
        return observation

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
