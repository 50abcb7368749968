"""The twin's ground-truth segmentation as SegVLA semantic scores: moved to `cue_steps` with SegVLA's other cue steps;
the names stay importable from here one release."""

from .cue_steps import SegmentationScoresFromCodeStep, class_colour_image, scores_from_ids

__all__ = ["SegmentationScoresFromCodeStep", "class_colour_image", "scores_from_ids"]
