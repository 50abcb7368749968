"""Class colours, overlays and image grids (the palette is `so101_core`'s, shared with the twin and the policies)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from so101_core.palette import SEGMENTATION_PALETTE as PALETTE
from so101_core.palette import colorize_segmentation as colorize

from .dataset_index import atomic_save_png

__all__ = ["PALETTE", "colorize", "image_grid", "overlay", "save_grid"]


def overlay(rgb: np.ndarray, ids: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the class colours over an (H, W, 3) uint8 image; background (1) and unlabeled (0) stay unblended."""
    out = rgb.astype(np.float32)
    colour = colorize(ids).astype(np.float32)
    blend = np.asarray(ids) >= 2
    out[blend] = (1 - alpha) * out[blend] + alpha * colour[blend]
    return out.astype(np.uint8)


def image_grid(rows: list[list[np.ndarray]], scale: int = 1, pad: int = 2) -> np.ndarray:
    """Tile equally sized (H, W, 3) uint8 images into rows, with white padding; optional integer upscaling."""
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    grid = np.full((len(rows) * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            y, x = pad + i * (h + pad), pad + j * (w + pad)
            grid[y : y + h, x : x + w] = img
    if scale > 1:
        grid = np.asarray(Image.fromarray(grid).resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.NEAREST))
    return grid


def save_grid(path: str | Path, rows: list[list[np.ndarray]], scale: int = 1) -> Path:
    path = Path(path)
    atomic_save_png(path, image_grid(rows, scale=scale))
    return path
