"""One colour per segmentation class, so the twin's videos, the segmenter's training grids and the policies'
sim-to-real pictures all draw the classes alike."""

import numpy as np

from .segmentation import NUM_SEGMENTATION_CLASSES

# unlabeled black, background grey, table brown, cube red, static finger blue, moving finger green
SEGMENTATION_PALETTE = np.array(
    [[0, 0, 0], [110, 110, 110], [160, 120, 80], [230, 40, 30], [40, 100, 235], [40, 210, 80]], dtype=np.uint8
)
assert len(SEGMENTATION_PALETTE) == NUM_SEGMENTATION_CLASSES


def colorize_segmentation(ids: np.ndarray) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8; ids outside the 6-class map show as magenta."""
    ids = np.asarray(ids)
    out = np.full((*ids.shape, 3), (255, 0, 255), dtype=np.uint8)
    valid = (ids >= 0) & (ids < len(SEGMENTATION_PALETTE))
    out[valid] = SEGMENTATION_PALETTE[ids[valid].astype(np.int64)]
    return out
