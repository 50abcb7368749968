"""What the suite's processor steps share: a saved pipeline's step config taken from the step's dataclass fields, the
keys an error about a missing one lists, the two safety steps every policy's pipelines hold (the camera check
before the first action, the clip of every joint target into the arm's limits), and the camera resize that brings a
frame of any size to the one the checkpoint was trained on."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from lerobot.configs import FeatureType
from lerobot.processor import ActionProcessorStep, ObservationProcessorStep, ProcessorStepRegistry

from so101_core.keys import present_keys

logger = logging.getLogger(__name__)


def _plain(value: Any) -> Any:
    """A copy of a field's value as JSON holds it: lists and dicts copied all the way down, tuples as lists."""
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


class ConfigFromFields:
    """Mixin for a dataclass processor step: `get_config` returns every field, in declaration order.

    A saved pipeline stores this dict and `from_pretrained` passes it back as keyword arguments, so the fields are
    exactly the config; a step whose saved config must differ from its fields writes its own `get_config`. List it
    before LeRobot's step class: `class MyStep(ConfigFromFields, ObservationProcessorStep)`.
    """

    def get_config(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


@ProcessorStepRegistry.register("so101_clip_joint_targets")
@dataclass
class ClipJointTargetsStep(ConfigFromFields, ActionProcessorStep):
    """Postprocessor: clip absolute joint targets (..., 6) into `limits`, one (low, high) pair per joint, so no
    action outside the arm's range reaches the motors. `source` says where the limits came from (a calibration file,
    a lerobot-find-joint-limits output, the twin's MJCF ranges); it is logged once, at the first action."""

    limits: list[list[float]] = field(default_factory=list)
    source: str = ""

    def __post_init__(self) -> None:
        self._announced = False

    def action(self, action: torch.Tensor) -> torch.Tensor:
        limits = torch.as_tensor(self.limits, dtype=action.dtype, device=action.device)
        if limits.shape != (action.shape[-1], 2):
            raise ValueError(
                f"joint limits {tuple(limits.shape)} (from {self.source or 'the checkpoint'}) do not fit actions "
                f"with {action.shape[-1]} joints"
            )
        if not self._announced:
            logger.info("clipping joint targets to %s (from %s)", self.limits, self.source or "the checkpoint")
            self._announced = True
        return torch.maximum(torch.minimum(action, limits[:, 1]), limits[:, 0])

    def transform_features(self, features):
        return features


@ProcessorStepRegistry.register("so101_require_cameras")
@dataclass
class RequireCamerasStep(ConfigFromFields, ObservationProcessorStep):
    """Preprocessor, right after the rename: refuse an observation that lacks a camera the checkpoint was trained on,
    naming the cameras the checkpoint wants and those the robot (or dataset, or env) provides.

    On a robot this runs on the first observation, before the policy computes its first action, so the arm never
    receives one. LeRobot's own check in lerobot-rollout lets a robot with fewer cameras than the policy through, and
    is skipped altogether under --rename_map; without this step the first inference would fail deep in the model on
    a KeyError. Observations that already hold one of `skip_if_present` (a precomputed dataset column made from
    the cameras) are not checked.
    """

    cameras: list[str] = field(default_factory=list)
    skip_if_present: list[str] = field(default_factory=list)

    def observation(self, observation: dict) -> dict:
        if any(key in observation for key in self.skip_if_present):
            return observation
        missing = [key for key in self.cameras if key not in observation]
        if missing:
            provided = present_keys(observation, "observation.images.")
            if all(key.endswith(("_depth", "_segmentation")) for key in missing):  # the twin's ground truth
                fix = (
                    "These are the twin's ground truth: record with --robot.depth=true --robot.segmentation=true, "
                    "evaluate with --env.depth=true --env.segmentation=true"
                )
            else:
                fix = (
                    "Add the camera to --robot.cameras, or map one of the robot's cameras onto it with "
                    f'--rename_map=\'{{"observation.images.<robot camera>": "{missing[0]}"}}\''
                )
            raise ValueError(
                f"the checkpoint wants cameras {sorted(self.cameras)}; the robot provides {provided} (names after "
                f"any --rename_map); missing {missing}. {fix}"
            )
        return observation

    def transform_features(self, features):
        return features


def visual_input_keys(config) -> list[str]:
    """The camera keys (VISUAL input features) a policy config was trained on: what RequireCamerasStep checks.
    SmolVLA's `empty_cameras` placeholders (`observation.images.empty_camera_<i>`) are filled by the policy itself."""
    features = (config.input_features or {}).items()
    return sorted(k for k, ft in features if ft.type is FeatureType.VISUAL and ".empty_camera_" not in k)


CAMERA_RESIZE_MODES = ("crop", "pad")
CAMERA_RESIZE_FLAGS = "--policy.camera_resize=crop|pad / --policy.camera_aspect_tolerance"


def aspect_loss(size: tuple[int, int], trained: tuple[int, int]) -> float:
    """The fraction of a (H, W) frame that a centre crop to the (h, w) aspect cuts off; the same fraction of the
    output is border under padding. 0 for equal aspects (480x640 to 96x128)."""
    (height, width), (h, w) = size, trained
    a, b = width * h, w * height
    return 1.0 - min(a, b) / max(a, b)


def fit_frame(frame: torch.Tensor, trained: tuple[int, int], mode: str, nearest: bool) -> torch.Tensor:
    """(..., C, H, W) -> (..., C, h, w) with the aspect ratio kept: "crop" takes the centre region of the trained
    aspect and resizes it; "pad" resizes the whole frame to fit inside and pads it with zeros, centred. Antialiased
    bilinear, or nearest (label and depth maps: no value is invented). A frame already (h, w) is returned as is."""
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2 import functional as TF

    height, width = frame.shape[-2:]
    h, w = trained
    if (height, width) == (h, w):
        return frame
    interpolation = InterpolationMode.NEAREST_EXACT if nearest else InterpolationMode.BILINEAR
    if mode == "crop":
        if width * h > w * height:  # wider than trained: cut the sides
            crop = [height, max(1, round(height * w / h))]
        else:  # taller: cut top and bottom
            crop = [max(1, round(width * h / w)), width]
        if crop != [height, width]:
            frame = TF.center_crop(frame, crop)
        return TF.resize(frame, [h, w], interpolation=interpolation, antialias=True)
    scale = min(h / height, w / width)
    inner = [min(h, max(1, round(height * scale))), min(w, max(1, round(width * scale)))]
    frame = TF.resize(frame, inner, interpolation=interpolation, antialias=True)
    top, left = (h - inner[0]) // 2, (w - inner[1]) // 2
    return TF.pad(frame, [left, top, w - inner[1] - left, h - inner[0] - top], fill=0)


@ProcessorStepRegistry.register("so101_resize_cameras")
@dataclass
class ResizeCamerasStep(ConfigFromFields, ObservationProcessorStep):
    """Preprocessor, right after the camera check: bring every camera frame to the size the checkpoint was trained
    on (`sizes`, key -> [h, w]), keeping its aspect ratio (`mode`: centre "crop" or zero "pad", see `fit_frame`).

    The same step runs in training (frames already at their size: untouched, bit for bit), in lerobot-eval and on the
    arm, so a checkpoint trained on the twin's 96x128 frames runs on a 640x480 webcam. `nearest_keys` (the twin's
    depth and segmentation maps) are resized by nearest neighbour. A frame whose aspect differs from the trained one
    by more than `aspect_tolerance` (the fraction cropped or padded, `aspect_loss`) is refused before any action,
    naming the key, both sizes and the flags. Keys absent from the observation are left to the camera check.
    """

    sizes: dict[str, list[int]] = field(default_factory=dict)
    mode: str = "crop"
    aspect_tolerance: float = 0.1
    nearest_keys: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode not in CAMERA_RESIZE_MODES:
            raise ValueError(f"camera_resize={self.mode!r}; choose one of {list(CAMERA_RESIZE_MODES)}")
        if not 0.0 <= self.aspect_tolerance < 1.0:
            raise ValueError(f"camera_aspect_tolerance={self.aspect_tolerance} must be in [0, 1)")

    def observation(self, observation: dict) -> dict:
        resized = None
        for key, trained in self.sizes.items():
            frame = observation.get(key)
            if not isinstance(frame, torch.Tensor) or frame.ndim < 3 or tuple(frame.shape[-2:]) == tuple(trained):
                continue
            size = tuple(frame.shape[-2:])
            loss = aspect_loss(size, tuple(trained))
            if loss > self.aspect_tolerance + 1e-9:
                h, w = trained
                raise ValueError(
                    f"'{key}' is {size[0]}x{size[1]} (height x width), but this checkpoint was trained on {h}x{w} "
                    f"frames: camera_resize={self.mode} would {'cut off' if self.mode == 'crop' else 'pad'} "
                    f"{loss:.0%} of the frame, more than its camera_aspect_tolerance={self.aspect_tolerance}. Give "
                    f"the camera the trained aspect {w}:{h}, e.g. 480x{round(480 * w / h)} (--robot.observation_height/"
                    "--robot.observation_width on the twin, height/width in --robot.cameras on the arm, "
                    "--env.observation_height/width in lerobot-eval), or train the checkpoint with "
                    f"{CAMERA_RESIZE_FLAGS} (recorded in its preprocessor)."
                )
            resized = resized if resized is not None else dict(observation)
            resized[key] = fit_frame(frame, tuple(trained), self.mode, key in self.nearest_keys)
        return observation if resized is None else resized

    def transform_features(self, features):
        from lerobot.configs import PipelineFeatureType, PolicyFeature

        obs = features.get(PipelineFeatureType.OBSERVATION, {})
        for key, (h, w) in self.sizes.items():
            if key in obs and len(obs[key].shape) >= 3:
                obs[key] = PolicyFeature(type=obs[key].type, shape=(*obs[key].shape[:-2], h, w))
        return features


def camera_sizes(config) -> dict[str, list[int]]:
    """The (h, w) each camera key (VISUAL input feature, (C, H, W)) of a policy config was trained on."""
    return {
        key: [int(ft.shape[-2]), int(ft.shape[-1])]
        for key, ft in (config.input_features or {}).items()
        if ft.type is FeatureType.VISUAL and len(ft.shape) == 3 and ".empty_camera_" not in key
    }


def is_map_key(key: str, channels: int) -> bool:
    """A depth or label map rather than an RGB image: the twin's `<camera>_depth` / `_segmentation`, or any
    camera feature that is not 3-channel. Resized by nearest neighbour."""
    return key.endswith(("_depth", "_segmentation")) or channels != 3
