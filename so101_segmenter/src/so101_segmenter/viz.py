"""Class colours, overlays and image grids (the palette is `so101_core`'s, shared with the twin and the policies)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from so101_core.palette import SEGMENTATION_PALETTE as PALETTE
from so101_core.palette import colorize_segmentation as colorize

from .dataset_index import atomic_save_png

__all__ = ["PALETTE", "colorize", "image_grid", "labelled", "overlay", "save_grid"]


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


def labelled(grid: np.ndarray, columns: list[str], title: str | None = None, size: int = 14) -> np.ndarray:
    """`grid` under a white band: the title (wrapped to the width), then a header over each of its equal columns."""
    font = ImageFont.load_default(size=size)
    line = sum(font.getmetrics()) + 2
    width = grid.shape[1]
    lines: list[str] = []
    for word in (title or "").split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width - 8:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    band = Image.new("RGB", (width, 4 + line * (len(lines) + (1 if columns else 0))), "white")
    draw = ImageDraw.Draw(band)
    for i, text in enumerate(lines):
        draw.text((4, 2 + i * line), text, fill="black", font=font)
    for j, name in enumerate(columns):
        draw.text((round(j * width / len(columns)) + 6, 2 + len(lines) * line), name, fill="black", font=font)
    return np.concatenate([np.asarray(band), grid], axis=0)


def save_grid(
    path: str | Path,
    rows: list[list[np.ndarray]],
    scale: int = 1,
    columns: list[str] | None = None,
    title: str | None = None,
) -> Path:
    """`image_grid` as a PNG, with `labelled`'s band on top when given column names or a title."""
    path = Path(path)
    grid = image_grid(rows, scale=scale)
    if columns or title:
        grid = labelled(grid, columns or [], title)
    atomic_save_png(path, grid)
    return path
