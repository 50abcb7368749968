"""What the suite's processor steps share: a saved pipeline's step config taken from the step's dataclass fields, the
keys an error about a missing one lists, and the two safety steps every policy's pipelines hold (the camera check
before the first action, the clip of every joint target into the arm's limits)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch
from lerobot.configs import FeatureType
from lerobot.processor import ActionProcessorStep, ObservationProcessorStep, ProcessorStepRegistry

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


def present_keys(observation: Mapping, prefix: str = "observation.") -> list[str]:
    """The sorted keys of `observation` that start with `prefix`: what an error about a missing key lists."""
    return sorted(key for key in observation if key.startswith(prefix))


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
