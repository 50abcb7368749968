"""What `so101-seg-autolabel` does to a rendered mask and how it scores it: the unlabeled boundary band, and the
confusion and IoU against a frame's true segmentation."""

import numpy as np

from so101_segmenter.classes import CLASS_NAMES, EVAL_CLASSES, NUM_CLASSES, UNLABELED


def boundary_band(mask: np.ndarray, width: int) -> np.ndarray:
    """True within `width` pixels of a pixel of another class (a (2w+1)^2 window)."""
    if width == 0:
        return np.zeros(mask.shape, dtype=bool)
    from scipy.ndimage import maximum_filter, minimum_filter

    size = 2 * width + 1
    return maximum_filter(mask, size=size) != minimum_filter(mask, size=size)


def class_band(mask: np.ndarray, cls: int, width: int) -> np.ndarray:
    """True within `width` pixels of class `cls`'s boundary, on either side (its least certain pixels)."""
    region = mask == cls
    if width == 0 or not region.any():
        return np.zeros(mask.shape, dtype=bool)
    from scipy.ndimage import binary_dilation, binary_erosion

    structure = np.ones((2 * width + 1, 2 * width + 1), dtype=bool)
    return binary_dilation(region, structure) & ~binary_erosion(region, structure)


def confusion(label: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(NUM_CLASSES, NUM_CLASSES) counts, rows the truth, over the pixels the label does not leave unlabeled."""
    keep = label != UNLABELED
    flat = truth[keep].astype(np.int64) * NUM_CLASSES + label[keep].astype(np.int64)
    return np.bincount(flat, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)


def iou_report(matrix: np.ndarray) -> dict:
    """Per-class IoU (classes 1-5) and their mean, from a confusion matrix."""
    ious = {}
    for c in EVAL_CLASSES:
        union = matrix[c, :].sum() + matrix[:, c].sum() - matrix[c, c]
        ious[CLASS_NAMES[c]] = float(matrix[c, c] / union) if union else None
    scored = [v for v in ious.values() if v is not None]
    return {"miou": float(np.mean(scored)) if scored else None, "per_class_iou": ious}
