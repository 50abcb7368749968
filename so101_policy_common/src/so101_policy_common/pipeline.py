"""The steps every policy's processors share, built from its config (a `JointLimitsFields` config, which holds their
settings as data): the camera check and the joint-limit clip (`safety_steps`), and the head of the preprocessor
(`input_head`): LeRobot's rename, the camera check, the resize of a camera to its trained size
(`camera_resize_step`), LeRobot's batch dimension."""

from __future__ import annotations

from .policy_config import JointLimitsFields
from .steps import (
    ClipJointTargetsStep,
    RequireCamerasStep,
    ResizeCamerasStep,
    camera_sizes,
    is_map_key,
    visual_input_keys,
)


def safety_steps(
    config: JointLimitsFields, skip_if_present: list[str] | None = None, cameras: list[str] | None = None
) -> tuple[RequireCamerasStep, ClipJointTargetsStep]:
    """The camera check for the preprocessor (right after the rename) and the clip for the postprocessor (on the
    absolute joint targets, before the move to the CPU) that every policy of the suite holds. `cameras`: the keys
    the policy reads (default: its VISUAL input features)."""
    wanted = sorted(cameras) if cameras else visual_input_keys(config)
    check = RequireCamerasStep(cameras=wanted, skip_if_present=list(skip_if_present or []))
    clip = ClipJointTargetsStep(limits=config.resolved_joint_limits(), source=config.joint_limits_source)
    return check, clip


def camera_resize_step(config: JointLimitsFields) -> ResizeCamerasStep:
    """The preprocessor step, right after the camera check, that resizes each camera to its input feature's size
    (depth and label maps by nearest neighbour), as `camera_resize` and `camera_aspect_tolerance` say."""
    features = config.input_features or {}
    sizes = camera_sizes(config)
    nearest = sorted(key for key in sizes if is_map_key(key, int(features[key].shape[0])))
    return ResizeCamerasStep(
        sizes=sizes, mode=config.camera_resize, aspect_tolerance=config.camera_aspect_tolerance, nearest_keys=nearest
    )


def input_head(config: JointLimitsFields, steps, check: RequireCamerasStep) -> list:
    """The steps every policy's preprocessor starts with: LeRobot's rename (`steps`, from
    make_default_policy_processor_steps), the camera check `check` (from `safety_steps`), the resize of a camera of
    another size to the trained one (aspect kept), LeRobot's batch dimension."""
    return [steps.rename_observations, check, camera_resize_step(config), steps.add_batch_dim]
