"""Photometric and occlusion augmentation for the segmenter, on one (image, mask) pair after the geometric steps.

What a look the segmenter never saw changes is mostly colour: a scene of one hue (the twin's `unseen` look keeps
every object in one hue band, told apart only by brightness and texture), a tinted or dim light, another camera's
response. So colour is made unreliable on purpose: class regions are recoloured (each its own hue, or all one hue),
their brightness reordered, the whole frame cast, greyed, gamma-, contrast- and brightness-shifted, blurred and
noised, and parts of it hidden behind random patches whose pixels are left out of the losses. Class ids come from
the mask, so recolouring follows object borders exactly.

Written here rather than with torchvision's v2 transforms because recolouring needs the mask; the generic
operations are torchvision's functional ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torchvision.transforms.v2 import functional as TF

from .classes import UNLABELED
from .hue_band import HueBand, fold_out_of_band, hsv_to_rgb, rgb_to_hsv


def _uniform(low: float, high: float, generator: torch.Generator | None = None) -> float:
    return float(low + (high - low) * torch.rand((), generator=generator))


@dataclass
class PhotometricConfig:
    # chance a frame's class regions get new hues
    recolour_prob: float = 0.5
    # of the recoloured frames, the share where every class gets the same hue (a one-hue scene)
    same_hue_prob: float = 0.5
    # each recoloured region's brightness scaled by a factor in this range (reorders which class is brighter)
    region_value: tuple[float, float] = (0.55, 1.3)
    # chance a frame is made grey
    grayscale_prob: float = 0.15
    # brightness factor range (torchvision's adjust_brightness)
    brightness: tuple[float, float] = (0.6, 1.4)
    # contrast factor range (adjust_contrast)
    contrast: tuple[float, float] = (0.6, 1.4)
    # gamma range (adjust_gamma)
    gamma: tuple[float, float] = (0.6, 1.6)
    # chance of a colour cast: each channel scaled by a factor in channel_gain
    cast_prob: float = 0.5
    # the cast's per-channel factor range
    channel_gain: tuple[float, float] = (0.7, 1.3)
    # chance of a Gaussian blur (sigma 0.3-1.2 pixels)
    blur_prob: float = 0.3
    # sensor noise: a standard deviation drawn from this range, on the 0-1 scale
    noise_std: tuple[float, float] = (0.0, 0.04)
    # patches of random colour or noise; their pixels are ignored by the losses (mask set to unlabeled)
    erase_prob: float = 0.5
    # at most this many patches per frame
    erase_max_patches: int = 3
    # a patch's sides, as shares of the frame's shorter side
    erase_side: tuple[float, float] = (0.08, 0.3)

    def validate(self) -> None:
        for name in ("recolour_prob", "same_hue_prob", "grayscale_prob", "cast_prob", "blur_prob", "erase_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--data.photometric.{name} must be in [0, 1], got {getattr(self, name)}")
        for name in ("region_value", "brightness", "contrast", "gamma", "channel_gain", "noise_std", "erase_side"):
            low, high = getattr(self, name)
            if not 0.0 <= low <= high:
                raise ValueError(
                    f"--data.photometric.{name} must be [low, high] with 0 <= low <= high, got {[low, high]}"
                )


class PhotometricAugment:
    """(image float (3, H, W) in [0, 1], mask int64 (H, W), disparity (1, H, W) or None) -> the same, augmented;
    then, with `band`, every pixel folded out of that hue band (the last step: nothing after it makes colour)."""

    def __init__(self, config: PhotometricConfig, band: HueBand | None = None) -> None:
        config.validate()
        self.config, self.band = config, band

    def _recolour(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        c = self.config
        hue, saturation, value = rgb_to_hsv(image).unbind(0)
        shared = _uniform(0.0, 1.0) if _uniform(0.0, 1.0) < c.same_hue_prob else None
        for cls in mask.unique().tolist():
            region = mask == cls
            new_hue = (shared + _uniform(-0.03, 0.03)) % 1.0 if shared is not None else _uniform(0.0, 1.0)
            hue = torch.where(region, torch.full_like(hue, new_hue), hue)
            saturation = torch.where(region, (saturation + _uniform(0.2, 0.7)).clamp(0, 1), saturation)
            value = torch.where(region, (value * _uniform(*c.region_value)).clamp(0, 1), value)
        return hsv_to_rgb(torch.stack([hue, saturation, value]))

    def _erase(self, image: torch.Tensor, mask: torch.Tensor, disparity: torch.Tensor | None):
        c = self.config
        height, width = mask.shape
        side = min(height, width)
        for _ in range(int(torch.randint(1, c.erase_max_patches + 1, ()))):
            h = max(1, round(side * _uniform(*c.erase_side)))
            w = max(1, round(side * _uniform(*c.erase_side)))
            top, left = int(torch.randint(0, height - h + 1, ())), int(torch.randint(0, width - w + 1, ()))
            flat = _uniform(0.0, 1.0) < 0.5  # one colour, or noise
            fill = torch.rand(3, 1, 1).expand(3, h, w) if flat else torch.rand(3, h, w)
            image[:, top : top + h, left : left + w] = fill
            mask[top : top + h, left : left + w] = UNLABELED
            if disparity is not None:
                disparity[:, top : top + h, left : left + w] = 0.0  # 0: no target (see data.DISPARITY_OFFSET)
        return image, mask, disparity

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, mask: torch.Tensor, disparity: torch.Tensor | None = None):
        c = self.config
        image, mask = image.clone(), mask.clone()
        disparity = None if disparity is None else disparity.clone()
        if _uniform(0.0, 1.0) < c.recolour_prob:
            image = self._recolour(image, mask)
        if _uniform(0.0, 1.0) < c.cast_prob:
            image = image * torch.empty(3, 1, 1).uniform_(*c.channel_gain)
        image = TF.adjust_brightness(image.clamp(0, 1), _uniform(*c.brightness))
        image = TF.adjust_contrast(image, _uniform(*c.contrast))
        image = TF.adjust_gamma(image.clamp(0, 1), _uniform(*c.gamma))
        if _uniform(0.0, 1.0) < c.grayscale_prob:
            image = TF.rgb_to_grayscale(image, num_output_channels=3)
        if _uniform(0.0, 1.0) < c.blur_prob:
            image = TF.gaussian_blur(image, kernel_size=5, sigma=_uniform(0.3, 1.2))
        image = image + torch.randn_like(image) * _uniform(*c.noise_std)
        if _uniform(0.0, 1.0) < c.erase_prob:
            image, mask, disparity = self._erase(image, mask, disparity)
        image = image.clamp(0, 1)
        if self.band is not None:
            image = fold_out_of_band(image, self.band)
        return image, mask, disparity


class BandFold:
    """Only the hue band's fold, for the recipes without photometric augmentation."""

    def __init__(self, band: HueBand) -> None:
        self.band = band

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, mask: torch.Tensor, disparity: torch.Tensor | None = None):
        return fold_out_of_band(image, self.band), mask, disparity
