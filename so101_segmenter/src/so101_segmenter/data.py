"""Segmentation datasets in the `dataset_index` layout, ggand0/pick-101's joint image+mask augmentations, and the
grasp/default stratified split."""

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

from .classes import NUM_CLASSES, UNLABELED
from .dataset_index import DatasetIndex, FrameRecord

AUGMENTATIONS = ("full", "flips", "none")


def build_transforms(height: int, width: int, augment: str = "none") -> v2.Compose:
    """Joint transforms for (tv_tensors.Image uint8, tv_tensors.Mask) -> (float image in [0, 1], int64 mask).

    "full" is pick-101's 640x480 recipe, "flips" its 84x84 one. Geometric transforms move the mask with the image
    (nearest-neighbour for masks); pixels they bring in from outside the frame are filled with `unlabeled`, which
    the losses and metrics ignore. Photometric transforms leave masks alone.
    Note: flips move the static finger to the moving finger's side of a wrist image, so the model must tell the
    fingers apart by shape rather than position.
    """
    if augment not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation {augment!r}; choose one of {AUGMENTATIONS}")
    fill = {tv_tensors.Image: 0, tv_tensors.Mask: UNLABELED}
    steps: list[v2.Transform] = []
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
    steps += [v2.ToDtype({tv_tensors.Image: torch.float32, tv_tensors.Mask: torch.int64}, scale=True)]
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


class SegmentationDataset(Dataset):
    """Frames of one `DatasetIndex`; decoded images are cached in memory (a few thousand 84x84 frames is ~60 MB)."""

    def __init__(self, index: DatasetIndex, records: list[FrameRecord], transform: v2.Compose, cache: bool = True):
        if not records:
            raise ValueError(f"{index.root}: this split holds no frames")
        self.root, self.records, self.transform, self.cache = index.root, list(records), transform, cache
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.records)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        if i in self._cache:
            return self._cache[i]
        r = self.records[i]
        image, mask = read_image(self.root / r.image), read_mask(self.root / r.mask)
        if image.shape[:2] != mask.shape:
            raise ValueError(
                f"{self.root / r.image} is {image.shape[:2]} but its mask {self.root / r.mask} is {mask.shape}"
            )
        if self.cache:
            self._cache[i] = (image, mask)
        return image, mask

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load(i)
        img = tv_tensors.Image(torch.from_numpy(image).permute(2, 0, 1).contiguous())
        return self.transform(img, tv_tensors.Mask(torch.from_numpy(mask)))


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
