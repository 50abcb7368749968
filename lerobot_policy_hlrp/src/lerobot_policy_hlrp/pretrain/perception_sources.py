"""HLRP's perception sources: where the LAQ's segmentation weighting reads a pixel's class from, one record per value
of `--segmentation.perception_source`, read by the config's check and by hlrp-train-laq's choice per dataset. The
pattern of every policy with sources: the field `perception_source`, the record `PerceptionSource` in
`PERCEPTION_SOURCES`, the config's `perception_record`."""

from dataclasses import dataclass


@dataclass(frozen=True)
class PerceptionSource:
    """Where the segmentation weighting reads a pixel's class from."""

    name: str
    # reads the dataset's <camera>_segmentation key where the dataset has one
    ground_truth: bool
    # reads nothing else: a dataset without that key gives no classes (or is refused under segmentation weighting)
    only_ground_truth: bool
    # runs so101_segmenter's model, so --segmentation.segmenter_path must be given
    needs_segmenter: bool


# The values of so101_core's PERCEPTION_SOURCES the weighting can read its classes from, in the order the error for
# an unknown one lists them.
PERCEPTION_SOURCES: dict[str, PerceptionSource] = {
    source.name: source
    for source in (
        PerceptionSource("auto", ground_truth=True, only_ground_truth=False, needs_segmenter=False),
        PerceptionSource("ground_truth", ground_truth=True, only_ground_truth=True, needs_segmenter=False),
        PerceptionSource("segmenter", ground_truth=False, only_ground_truth=False, needs_segmenter=True),
    )
}
