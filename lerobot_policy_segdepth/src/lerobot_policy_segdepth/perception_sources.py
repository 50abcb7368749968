"""SegDepth's perception sources: one record per value of `--policy.perception_source`, saying what the source
reads, what it needs, what segdepth-precompute records of it, and the observation steps that turn its inputs into
class ids and disparity.

The configuration, the processor factory, segdepth-precompute, segdepth-sim2real-check and segdepth-rl-train read
these records instead of naming sources; a new source is one more record here and its step builder.

The step builders import the step modules when they run, so the configuration, which reads the records, stays at the
bottom of the plugin (tests/test_layout.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .perception import SegmenterStep


@dataclass(frozen=True)
class PerceptionSource:
    """Where a SegDepth preprocessor gets its class ids and disparity."""

    name: str
    # The camera streams read, in the order of SegDepthConfig.image_keys: "rgb" (observation.images.<camera>),
    # "depth" (its `_depth` map) and "segmentation" (its `_segmentation`, the twin's depth-coded class ids).
    reads: tuple[str, ...]
    # How the error for a missing camera ends, formatted with {camera}: what to record or render.
    missing_cameras_fix: str
    # The end of the error "--policy.perception_source=<name> needs --policy.segmenter_path=...": what the folder
    # must hold. None: the source runs no segmenter.
    segmenter_path_needed: str | None
    # Why a --policy.depth_model other than the default is refused, formatted with {depth_key}. None: the source
    # runs Depth Anything, or no model at all, and the field is not checked.
    depth_model_unused: str | None
    # The config fields segdepth-precompute records in the stored feature's info beside those every source records.
    recorded_fields: tuple[str, ...]
    # (config, ids_key, disparity_key, skip) -> the steps that write class ids under ids_key and disparity under
    # disparity_key at image_size; `skip` holds the keyword arguments that make each step skip a precomputed frame.
    steps: Callable[[Any, str, str, dict], list]
    # () -> the classes of the steps `steps` builds: where a saved preprocessor's perception block starts and ends
    # (processor_segdepth.OBSERVATION_STEP_TYPES derives from these), imported only when asked for
    step_types: Callable[[], tuple[type, ...]]

    @property
    def ground_truth(self) -> bool:
        """Ids and disparity both the twin's own (its segmentation and depth map), no model in between."""
        return "rgb" not in self.reads


def _segmenter_step(config, ids_key: str, skip: dict, disparity_key: str | None = None) -> SegmenterStep:
    """The RGB camera -> class ids at image_size, and with `disparity_key` its depth head's disparity; it crops the
    centre square itself and runs at segmenter_input_size (see perception.py). Its weights travel in the saved
    pipeline."""
    from .perception import SegmenterStep

    step = SegmenterStep(
        image_keys=[config.rgb_key],
        output_keys=[ids_key],
        output_size=config.image_size,
        device=config.perception_device,
        input_size=config.segmenter_input_size,
        checkpoint=str(config.segmenter_path),
        disparity_keys=[disparity_key] if disparity_key else [],
        **skip,
    )
    classes = step.segmenter_config.get("num_classes")
    if classes != config.num_classes:
        raise ValueError(
            f"--policy.segmenter_path={config.segmenter_path} is a segmenter of {classes} classes, but "
            f"--policy.num_classes={config.num_classes}"
        )
    return step


def _twin_steps(config, ids_key: str | None, disparity_key: str, skip: dict) -> list:
    """The twin's depth map (and, with `ids_key`, its depth-coded segmentation) -> disparity (and ids), centre
    square, image_size: all of "ground_truth", and the depth half of "segmenter" (`ids_key=None`)."""
    from .observation_steps import CenterCropSquareStep, DepthToDisparityStep, ResizeStep, SegmentationFromCodeStep

    ids = [ids_key] if ids_key else []
    code = [SegmentationFromCodeStep(code_key=config.segmentation_key, ids_key=ids_key, **skip)] if ids_key else []
    return [
        *code,
        DepthToDisparityStep(depth_key=config.depth_key, disparity_key=disparity_key, **skip),
        CenterCropSquareStep(keys=[*ids, disparity_key], **skip),
        ResizeStep(size=config.image_size, nearest_keys=ids, linear_keys=[disparity_key], **skip),
    ]


def _twin_depth_step_types() -> tuple[type, ...]:
    from .observation_steps import CenterCropSquareStep, DepthToDisparityStep, ResizeStep

    return (DepthToDisparityStep, CenterCropSquareStep, ResizeStep)


def _twin_step_types() -> tuple[type, ...]:
    from .observation_steps import SegmentationFromCodeStep

    return (SegmentationFromCodeStep, *_twin_depth_step_types())


def _segmenter_step_types() -> tuple[type, ...]:
    from .perception import SegmenterStep

    return (SegmenterStep,)


def _segmenter_and_twin_depth_step_types() -> tuple[type, ...]:
    return (*_segmenter_step_types(), *_twin_depth_step_types())


def _segmenter_and_depth_anything_step_types() -> tuple[type, ...]:
    from .perception import DepthAnythingStep

    return (*_segmenter_step_types(), DepthAnythingStep)


def _ground_truth_steps(config, ids_key: str, disparity_key: str, skip: dict) -> list:
    return _twin_steps(config, ids_key, disparity_key, skip)


def _segmenter_and_twin_depth_steps(config, ids_key: str, disparity_key: str, skip: dict) -> list:
    # ids as "segmenter_depth_anything" computes them, disparity as "ground_truth" does
    return [_segmenter_step(config, ids_key, skip), *_twin_steps(config, None, disparity_key, skip)]


def _segmenter_depth_head_steps(config, ids_key: str, disparity_key: str, skip: dict) -> list:
    return [_segmenter_step(config, ids_key, skip, disparity_key)]


def _segmenter_and_depth_anything_steps(config, ids_key: str, disparity_key: str, skip: dict) -> list:
    from .perception import DepthAnythingStep

    # The models crop the centre square themselves and run on it at a small size (see perception.py).
    segmenter = _segmenter_step(config, ids_key, skip)
    depth = DepthAnythingStep(
        image_keys=[config.rgb_key],
        output_keys=[disparity_key],
        output_size=config.image_size,
        device=config.perception_device,
        input_size=config.depth_input_size,
        model_name_or_path=config.depth_model,
        **skip,
    )
    return [segmenter, depth]


_FROM_RGB = "add the camera '{camera}' (RGB) to the robot, dataset or env"
_SEGMENTER_RECORDED = ("segmenter_path", "segmenter_input_size")

# In the order the error for an unknown source lists them.
PERCEPTION_SOURCES: dict[str, PerceptionSource] = {
    source.name: source
    for source in (
        PerceptionSource(
            name="ground_truth",
            reads=("depth", "segmentation"),
            missing_cameras_fix=(
                "Record with --robot.depth=true --robot.segmentation=true, evaluate with --env.depth=true "
                "--env.segmentation=true"
            ),
            segmenter_path_needed=None,
            depth_model_unused=None,
            recorded_fields=(),
            steps=_ground_truth_steps,
            step_types=_twin_step_types,
        ),
        PerceptionSource(
            name="segmenter",
            reads=("rgb", "depth"),
            missing_cameras_fix=(
                "add the camera '{camera}' (RGB) and its depth: record with --robot.depth=true, evaluate with "
                "--env.depth=true"
            ),
            segmenter_path_needed=(
                "<so101-seg-train checkpoint folder, e.g. outputs/segmenter/best>: the segmenter that turns the RGB "
                "camera into class ids"
            ),
            depth_model_unused=(
                "whose depth is the twin's '{depth_key}'; drop it, or use "
                "--policy.perception_source=segmenter_depth_anything for Depth Anything"
            ),
            recorded_fields=_SEGMENTER_RECORDED,
            steps=_segmenter_and_twin_depth_steps,
            step_types=_segmenter_and_twin_depth_step_types,
        ),
        PerceptionSource(
            name="segmenter_depth",
            reads=("rgb",),
            missing_cameras_fix=_FROM_RGB,
            segmenter_path_needed=(
                "<so101-seg-train checkpoint folder of a segmenter with a depth head (--model.depth_head=true)>: it "
                "gives both ids and disparity"
            ),
            depth_model_unused=(
                "whose disparity is the segmenter's depth head; drop it, or use "
                "--policy.perception_source=segmenter_depth_anything"
            ),
            recorded_fields=_SEGMENTER_RECORDED,
            steps=_segmenter_depth_head_steps,
            step_types=_segmenter_step_types,
        ),
        PerceptionSource(
            name="segmenter_depth_anything",
            reads=("rgb",),
            missing_cameras_fix=_FROM_RGB,
            segmenter_path_needed=(
                "<folder written by so101_segmenter> (and --policy.depth_model if not the Hub's "
                "Depth-Anything-V2-Small-hf)"
            ),
            depth_model_unused=None,
            recorded_fields=("segmenter_path", "depth_model", "segmenter_input_size", "depth_input_size"),
            steps=_segmenter_and_depth_anything_steps,
            step_types=_segmenter_and_depth_anything_step_types,
        ),
    )
}
