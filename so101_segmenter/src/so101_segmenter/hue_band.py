"""Keep a band of hues out of training pixels: how the twin's `unseen` look stays unseen by the segmenter.

The twin's `unseen` look draws every colour from one saturated hue band (`AppearanceRanges.unseen_hue`, 0.70-0.88,
saturation >= 0.3). Its material colours are folded out of that band when the other looks are drawn, but shading,
image-space textures and the training augmentations (hue shifts, recolouring, colour casts) can still make pixels
of that hue. `fold_out_of_band` mirrors such pixels' hue out of the band at the nearer edge, with a margin, as the
last step before a pixel reaches the model; `in_band` is the check the tests hold every training pixel to.
HSV is computed as `colorsys` does (hue in [0, 1), saturation = chroma / value).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

MARGIN = 0.02  # hue kept between a folded pixel and the band's edge, so rounding to uint8 cannot bring it back


@dataclass(frozen=True)
class HueBand:
    low: float = 0.70
    high: float = 0.88
    min_saturation: float = 0.3

    def __post_init__(self) -> None:
        if not 0.0 <= self.low < self.high <= 1.0 or not 0.0 <= self.min_saturation <= 1.0:
            raise ValueError(
                f"hue band [{self.low}, {self.high}) with min saturation {self.min_saturation}: expected "
                "0 <= low < high <= 1 and a saturation in [0, 1]"
            )


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) float RGB in [0, 1] -> (..., 3, H, W) HSV, each in [0, 1]."""
    r, g, b = rgb.unbind(dim=-3)
    maxc, _ = rgb.max(dim=-3)
    minc, _ = rgb.min(dim=-3)
    chroma = maxc - minc
    safe = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    hue = torch.where(
        maxc == r, ((g - b) / safe) % 6.0, torch.where(maxc == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)
    )
    hue = torch.where(chroma > 0, hue / 6.0, torch.zeros_like(hue)) % 1.0
    saturation = torch.where(
        maxc > 0, chroma / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc)
    )
    return torch.stack([hue, saturation, maxc], dim=-3)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of `rgb_to_hsv`."""
    hue, saturation, value = hsv.unbind(dim=-3)
    k = torch.stack([(5.0 + hue * 6.0) % 6.0, (3.0 + hue * 6.0) % 6.0, (1.0 + hue * 6.0) % 6.0], dim=-3)
    weight = torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)
    return value.unsqueeze(-3) - (value * saturation).unsqueeze(-3) * weight


def in_band(rgb: torch.Tensor, band: HueBand, tolerance: float = 0.0) -> torch.Tensor:
    """(..., H, W) bool: the pixels of (..., 3, H, W) float RGB whose hue is in the band (saturated enough), the
    band widened by `tolerance` on every side."""
    # float64, as colorsys: a float32 saturation of exactly 0.3 can come out a hair below it
    hue, saturation, _ = rgb_to_hsv(rgb.double()).unbind(dim=-3)
    return (
        (saturation >= band.min_saturation - tolerance) & (hue >= band.low - tolerance) & (hue < band.high + tolerance)
    )


def fold_out_of_band(rgb: torch.Tensor, band: HueBand) -> torch.Tensor:
    """(..., 3, H, W) float RGB in [0, 1] with every in-band pixel's hue mirrored out of the band at the nearer edge
    (at least MARGIN beyond it); other pixels are returned unchanged."""
    hue, saturation, value = rgb_to_hsv(rgb.double()).unbind(dim=-3)
    inside = (saturation >= band.min_saturation) & (hue >= band.low) & (hue < band.high)
    if not bool(inside.any()):
        return rgb
    lower = hue - band.low < band.high - hue
    folded = (
        torch.where(
            lower,
            torch.minimum(2 * band.low - hue, torch.full_like(hue, band.low - MARGIN)),
            torch.maximum(2 * band.high - hue, torch.full_like(hue, band.high + MARGIN)),
        )
        % 1.0
    )
    out = hsv_to_rgb(torch.stack([folded, saturation, value], dim=-3)).to(rgb.dtype)
    return torch.where(inside.unsqueeze(-3), out, rgb)


def fold_uint8(rgb: np.ndarray, band: HueBand) -> np.ndarray:
    """(H, W, 3) uint8 with no pixel in the band: folded, rounded, and any pixel that rounding left in the band (a
    dark one, whose hue rounding moves far) made grey."""
    image = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).double() / 255.0
    image = (fold_out_of_band(image, band) * 255.0).round().clamp(0, 255)
    # a pixel rounded onto the band's very edge counts as in it: another HSV formula may put it a hair inside
    left = in_band(image / 255.0, band, tolerance=1e-9)
    if bool(left.any()):
        image = torch.where(left.unsqueeze(0), image.max(dim=0, keepdim=True).values.expand_as(image), image)
    return image.permute(1, 2, 0).to(torch.uint8).numpy()
