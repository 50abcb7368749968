"""SegVLA's perception sources (where its cues come from): one record per value of `--policy.perception_source`,
saying where the preprocessor gets the semantic scores of the cued cameras, over which classes, from which inputs,
and the step that writes them. The pattern of every policy with sources: the field `perception_source`, the record
`PerceptionSource` in `PERCEPTION_SOURCES`, the config's `perception_record`.

The configuration and the processor factory read these records instead of naming sources; a new source is one more
record here and its step builder. The step builders import the step modules when they run, so the configuration,
which reads the records, loads no model code.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lerobot.processor import ProcessorStep


@dataclass(frozen=True)
class PerceptionSource:
    """Where a SegVLA preprocessor gets the scores of `segmentation_feature_map`."""

    name: str
    # Scores over the suite's six classes (so101_core's SEGMENTATION_CLASSES): class names resolve through that map,
    # segmentation_num_classes must be 6, and the class-coloured segmentation image can be drawn.
    twin_classes: bool
    # The twin's depth-coded segmentation beside each cued camera (`<camera>_segmentation`) is a preprocessor input.
    reads_twin_segmentation: bool
    # config -> the step that writes the scores; None: nothing computed (the dataset or the caller gives them).
    step: Callable[[Any], ProcessorStep] | None


def _scores_from_twin_segmentation(config) -> ProcessorStep:
    from .cue_steps import SegmentationScoresFromCodeStep

    return SegmentationScoresFromCodeStep(
        key_map={f"{camera}_segmentation": key for camera, key in config.segmentation_feature_map.items()},
        image_map={f"{camera}_segmentation": key for camera, key in config.segmentation_image_keys.items()},
        num_classes=config.segmentation_num_classes,
        grid_size=config.segmentation_grid_size,
    )


def _scores_from_segmenter(config) -> ProcessorStep:
    from .cue_steps import SegmenterScoresStep

    return SegmenterScoresStep(
        feature_map=dict(config.segmentation_feature_map),
        image_map=dict(config.segmentation_image_keys),
        num_classes=config.segmentation_num_classes,
        grid_size=config.segmentation_grid_size,
        segmenter_path=config.segmentation_segmenter_path,
        stored_scores_fingerprint=getattr(config, "_stored_segmenter_fingerprint", None),
    )


def _scores_from_mask2former(config) -> ProcessorStep:
    from .mask2former import SegVLAAddSegmentationStep

    return SegVLAAddSegmentationStep(
        feature_map=dict(config.segmentation_feature_map),
        model_name=config.segmentation_model_name,
        grid_size=config.segmentation_grid_size,
    )


# In the order the error for an unknown source lists them.
PERCEPTION_SOURCES: dict[str, PerceptionSource] = {
    source.name: source
    for source in (
        PerceptionSource(name="none", twin_classes=False, reads_twin_segmentation=False, step=None),
        PerceptionSource(
            name="ground_truth",
            twin_classes=True,
            reads_twin_segmentation=True,
            step=_scores_from_twin_segmentation,
        ),
        PerceptionSource(
            name="segmenter", twin_classes=True, reads_twin_segmentation=False, step=_scores_from_segmenter
        ),
        PerceptionSource(
            name="mask2former", twin_classes=False, reads_twin_segmentation=False, step=_scores_from_mask2former
        ),
    )
}
