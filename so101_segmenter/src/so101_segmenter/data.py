"""Segmentation datasets in the `dataset_index` layout, ggand0/pick-101's joint image+mask augmentations, the
"robust" recipe (geometric steps here, photometric ones in `augment`), and the grasp/default stratified split.

A frame with a disparity target (`FrameRecord.disparity`) yields it beside the mask, moved by the same geometric
steps: `Disparity` is a mask type (nearest-neighbour, never blurred across an object's edge) holding the target
plus DISPARITY_OFFSET, so the 0 that rotation and crop padding bring in marks pixels without a target."""

from __future__ import annotations

import math
import os
import random
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from .augment import PhotometricAugment
from .classes import NUM_CLASSES, UNLABELED
from .dataset_index import DISPARITY_MAX, DatasetIndex, FrameRecord

AUGMENTATIONS = ("full", "flips", "none", "robust")
DISPARITY_OFFSET = 1.0  # stored disparity in [0, 1] is yielded as [1, 2]; 0 means no target


class Disparity(tv_tensors.Mask):
    """A disparity target: moved like a mask, filled with 0 (no target) where padding comes in."""


def build_transforms(height: int, width: int, augment: str = "none") -> v2.Compose:
    """Joint transforms for (tv_tensors.Image uint8, tv_tensors.Mask[, Disparity]) -> (float image in [0, 1], int64
    mask[, float32 disparity]).

    "full" is pick-101's 640x480 recipe, "flips" its 84x84 one. "robust" crops and rotates a little, never flips
    (the fingers keep their sides), and leaves colour to `augment.PhotometricAugment`. Geometric transforms move the
    mask with the image (nearest-neighbour for masks); pixels they bring in from outside the frame are filled with
    `unlabeled`, which the losses and metrics ignore. Photometric transforms leave masks alone.
    Note: flips move the static finger to the moving finger's side of a wrist image, so the model must tell the
    fingers apart by shape rather than position.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augment!r}; choose one of {AUGMENTATIONS}")
    fill = {tv_tensors.Image: 0, tv_tensors.Mask: UNLABELED, Disparity: 0.0}
    steps: list[v2.Transform] = []
    if augment == "robust":
        aspect = width / height
        crop = v2.RandomResizedCrop((height, width), scale=(0.6, 1.0), ratio=(0.9 * aspect, 1.1 * aspect))
        steps += [v2.RandomApply([crop], p=0.7), v2.RandomApply([v2.RandomRotation(10, fill=fill)], p=0.3)]
    if augment == "full":
        steps.append(v2.RandomApply([v2.RandomResizedCrop((height, width), scale=(0.7, 1.0), ratio=(0.9, 1.1))], p=0.7))
    steps.append(v2.Resize((height, width), antialias=True))
    if augment in ("full", "flips"):
        steps += [v2.RandomHorizontalFlip(0.5), v2.RandomVerticalFlip(0.5)]
    if augment == "full":
        steps += [
            v2.RandomApply([v2.RandomRotation(15, fill=fill)], p=0.5),
            v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.1),
            v2.RandomApply([v2.GaussianBlur(kernel_size=5, sigma=(0.1, 2.0))], p=0.3),
        ]
    dtypes = {tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64, Disparity: torch.float32}
    steps += [v2.ToDtype(dtypes, scale=True)]
    return v2.Compose(steps)


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; a clear error naming the file if it is missing or not an image."""
    try:
        with Image.open(path) as img:
            return np.array(img.convert("RGB"))
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {path} does not exist") from None
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot decode image {path}: {e}") from e


def read_mask(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P", "I", "I;16"):
                raise ValueError(f"mask {path} has mode {img.mode}; expected single-channel class ids")
            mask = np.array(img)
    except FileNotFoundError:
        raise FileNotFoundError(f"mask file {path} does not exist") from None
    except UnidentifiedImageError as e:
        raise ValueError(f"cannot decode mask {path}: {e}") from e
    if mask.size and int(mask.max()) >= NUM_CLASSES:
        raise ValueError(f"mask {path} holds class id {int(mask.max())}; the class map has ids 0..{NUM_CLASSES - 1}")
    return mask.astype(np.uint8)


def read_disparity(path: Path) -> np.ndarray:
    """(H, W) float32 in [0, 1] from a uint16 disparity PNG (dataset_index.disparity_png)."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("I;16", "I"):
                raise ValueError(f"disparity {path} has mode {img.mode}; expected a 16-bit single-channel PNG")
            disparity = np.array(img, dtype=np.float32)
    except FileNotFoundError:
        raise FileNotFoundError(f"disparity file {path} does not exist") from None
    except UnidentifiedImageError as e:
        raise ValueError(f"cannot decode disparity {path}: {e}") from e
    return disparity / DISPARITY_MAX


class SegmentationDataset(Dataset):
    """Frames of one `DatasetIndex`; decoded images are cached in memory (a few thousand 84x84 frames is ~60 MB).

    Items are (image, mask), or (image, mask, disparity) with `disparity=True`: (1, H, W) float32 holding the target
    plus DISPARITY_OFFSET, 0 where there is none (a frame without a target, padding, an erased patch). A frame without
    a mask (`FrameRecord.mask` empty: frames kept for their disparity only) yields an all-unlabeled mask.
    """

    def __init__(
        self,
        index: DatasetIndex,
        records: list[FrameRecord],
        transform: v2.Compose,
        cache: bool = True,
        photometric: PhotometricAugment | None = None,
        disparity: bool = False,
    ):
        if not records:
            raise ValueError(f"{index.root}: this split holds no frames")
        self.root, self.records, self.transform, self.cache = index.root, list(records), transform, cache
        self.photometric, self.disparity = photometric, disparity
        self._cache: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}

    def __len__(self) -> int:
        return len(self.records)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        if i in self._cache:
            return self._cache[i]
        r = self.records[i]
        image = read_image(self.root / r.image)
        mask = read_mask(self.root / r.mask) if r.mask else np.full(image.shape[:2], UNLABELED, dtype=np.uint8)
        if image.shape[:2] != mask.shape:
            raise ValueError(
                f"{self.root / r.image} is {image.shape[:2]} but its mask {self.root / r.mask} is {mask.shape}"
            )
        disparity = None
        if self.disparity and r.disparity:
            disparity = read_disparity(self.root / r.disparity)
            if disparity.shape != mask.shape:
                raise ValueError(
                    f"{self.root / r.image} is {image.shape[:2]} but its disparity {self.root / r.disparity} is "
                    f"{disparity.shape}"
                )
        if self.cache:
            self._cache[i] = (image, mask, disparity)
        return image, mask, disparity

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        image, mask, disparity = self.load(i)
        img = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1).contiguous())
        if not self.disparity:
            img, target = self.transform(img, tv_tensors.Mask(torch.from_numpy(mask)))
            if self.photometric is not None:
                img, target, _ = self.photometric(img, target)
            return img, target
        if disparity is None:
            target_disparity = torch.zeros(1, *mask.shape)
        else:
            target_disparity = torch.from_numpy(disparity)[None] + DISPARITY_OFFSET
        img, target, target_disparity = self.transform(
            img, tv_tensors.Mask(torch.from_numpy(mask)), target_disparity.as_subclass(Disparity)
        )
        if self.photometric is not None:
            img, target, target_disparity = self.photometric(img, target, target_disparity)
        return img, target, target_disparity.as_subclass(torch.Tensor)


def stratified_split(
    records: list[FrameRecord], val_fraction: float = 0.15, seed: int = 0
) -> tuple[list[FrameRecord], list[FrameRecord]]:
    """Split keeping the grasp/default ratio in both parts.

    Frames of one simulator episode (same `episode`) stay together, so validation never sees a near-copy of a
    training frame; COCO frames (no episode) are split one by one. Each stratum with at least two groups gives
    validation at least one.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    groups: dict[object, list[FrameRecord]] = defaultdict(list)
    for i, r in enumerate(records):
        groups[("episode", r.episode) if r.episode is not None else ("frame", i)].append(r)
    strata: dict[bool, list[list[FrameRecord]]] = defaultdict(list)
    for members in groups.values():
        # an episode counts as "grasp" when most of its frames are, so its frames go where its majority would
        strata[2 * sum(r.grasp for r in members) > len(members)].append(members)
    rng = random.Random(seed)
    train, val = [], []
    for key in sorted(strata):
        items = strata[key]
        rng.shuffle(items)
        n_val = min(len(items) - 1, max(1, math.floor(len(items) * val_fraction + 0.5))) if len(items) > 1 else 0
        for members in items[:n_val]:
            val.extend(members)
        for members in items[n_val:]:
            train.extend(members)
    if not train or not val:
        raise ValueError(
            f"split of {len(records)} frames ({len(groups)} groups) with val_fraction={val_fraction} leaves "
            f"{len(train)} train and {len(val)} val frames: need more frames or episodes"
        )
    return train, val


def load_index(path: str | os.PathLike) -> DatasetIndex:
    index = DatasetIndex.load(path)
    if not index.records:
        raise ValueError(f"{index.path} lists no frames")
    return index
