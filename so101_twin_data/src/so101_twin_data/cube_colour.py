"""The cube's colour in one recording, learnt from the frames where the twin's label of it is surest.

Once the jaws hold the cube its pose follows from the joints, and its label is right (per-frame cube IoU 1.00 on
the front camera in the twin's tests); before the grasp the joints say only where the grasp found it, which is not
always where it stood. So `so101-seg-autolabel` learns what the cube looks like in this scene from the held frames
(RGB histograms of the labelled cube's pixels and of everything else, a few pixels off its edge), and places the
standing cube where the earlier frames show that colour. Histograms rather than the segmenter: the segmenter is what
is being adapted, and in a look it never saw it finds the cube poorly (the shipped one: IoU 0.27 on the user's
scene), while a scene holds one cube colour.
"""

from __future__ import annotations

import numpy as np

from so101_segmenter.classes import CUBE, UNLABELED


class CubeColour:
    """P(cube | RGB) from two RGB histograms (`bins` per channel), the classes weighted equally."""

    def __init__(self, bins: int = 16):
        self.bins = bins
        self.cube = np.zeros(bins**3)
        self.rest = np.zeros(bins**3)

    def _cells(self, rgb: np.ndarray) -> np.ndarray:
        q = (np.asarray(rgb, dtype=np.int64) * self.bins) // 256
        return (q[..., 0] * self.bins + q[..., 1]) * self.bins + q[..., 2]

    def add(self, rgb: np.ndarray, label: np.ndarray, margin: int = 2) -> None:
        """Count an image's pixels (H, W, 3 uint8) by its label (H, W): the cube's, eroded by `margin` pixels, and
        the rest, kept `margin` pixels off the cube; unlabeled pixels are left out."""
        from scipy.ndimage import binary_dilation, binary_erosion

        cube = label == CUBE
        structure = np.ones((2 * margin + 1, 2 * margin + 1), dtype=bool)
        inside = binary_erosion(cube, structure) if margin else cube
        outside = ~(binary_dilation(cube, structure) if margin else cube) & (label != UNLABELED)
        cells = self._cells(rgb)
        self.cube += np.bincount(cells[inside], minlength=self.bins**3)
        self.rest += np.bincount(cells[outside], minlength=self.bins**3)

    @property
    def ready(self) -> bool:
        return self.cube.sum() > 0 and self.rest.sum() > 0

    def probability(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W) float32 in [0, 1]: how much each pixel looks like the cube (0.5 where neither histogram has seen
        its colour)."""
        if not self.ready:
            raise ValueError("the cube's colour model has no pixels of the cube or of the rest yet")
        # add-half smoothing over each histogram's own total, so the cube's few pixels weigh as much as the rest's many
        cube = (self.cube + 0.5) / (self.cube.sum() + 0.5 * self.cube.size)
        rest = (self.rest + 0.5) / (self.rest.sum() + 0.5 * self.rest.size)
        table = (cube / (cube + rest)).astype(np.float32)
        return table[self._cells(rgb)]


def soft_overlap(probability: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    """(intersection, union) of a probability map and a binary mask: summed over frames, their ratio is a soft IoU."""
    m = mask.astype(np.float32)
    inter = float((probability * m).sum())
    return inter, float(probability.sum() + m.sum()) - inter
