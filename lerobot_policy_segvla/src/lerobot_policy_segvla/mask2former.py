"""Mask2Former semantic scores for SegVLA: the online processor step and the code the offline command shares.

Mask2Former has no per-pixel logits (a common misreading of its outputs). It returns per-query class logits
(B, Q, C+1) and per-query mask logits (B, Q, H/4, W/4); the per-pixel class scores are

    einsum("bqc,bqhw->bchw", softmax(class)[..., :-1], sigmoid(masks))

exactly what transformers' `post_process_semantic_segmentation` computes before its argmax. The full map is
C x H/4 x W/4 (150 x 128 x 128 fp32 = 9.8 MB for a 512^2 input), so SegVLA keeps an area average of it over a
g x g grid covering the image (not SmolVLA's padding): (B, C, g, g), 38.4 kB per camera for C=150, g=8.

Batch contract (shared with lerobot_policy_segvla's SegmentationCueBuilder): for every camera key in
`feature_map`, the batch key it maps to holds float32 scores shaped (B, C, g, g) (or (B, T, C, g, g) when the
images carry a time axis). Scores are >= 0; each is a sum over queries of class probability x mask probability,
so it is usually <= 1 but not bounded by 1 where a model's masks overlap.

The offline command (`commands/precompute_segmentation.py`, segvla-precompute) calls the same `Mask2FormerSegmenter`,
so a policy trained on the stored columns sees the cues the online step would give on the same frames.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lerobot.configs import FeatureType, PipelineFeatureType, PolicyFeature
from lerobot.processor import ObservationProcessorStep, ProcessorStepRegistry

from so101_core.keys import require_key
from so101_policy_common.pretrained import pretrained_hint, require_pretrained
from so101_policy_common.steps import ConfigFromFields

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "facebook/mask2former-swin-large-ade-semantic"
# What a missing Mask2Former's error names: the step, and how to point it at a local copy.
MASK2FORMER_WHAT = "SegVLA's Mask2Former cue step (perception_source=mask2former)"
MASK2FORMER_FLAG = "--policy.segmentation_model_name=FOLDER"
DEFAULT_FEATURE_MAP = {
    "observation.images.front": "observation.segmentation.front",
    "observation.images.wrist": "observation.segmentation.wrist",
}
# Where SegVLATaskClassesStep writes each sample's prompt classes and SegVLA reads them.
TASK_CLASSES_KEY = "observation.segmentation.task_classes"
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Mask2Former's mask logits are at 1/4 of the input resolution (the pixel decoder's stride-4 features).
MASK_STRIDE = 4


def semantic_scores(class_queries_logits: torch.Tensor, masks_queries_logits: torch.Tensor) -> torch.Tensor:
    """Per-pixel class scores (B, C, h, w) from Mask2Former's (B, Q, C+1) class and (B, Q, h, w) mask logits.

    The last class column is Mask2Former's "no object" class and is dropped after the softmax.
    """
    if class_queries_logits.ndim != 3 or masks_queries_logits.ndim != 4:
        raise ValueError(
            "expected class_queries_logits (B, Q, C+1) and masks_queries_logits (B, Q, h, w), got "
            f"{tuple(class_queries_logits.shape)} and {tuple(masks_queries_logits.shape)}"
        )
    if class_queries_logits.shape[:2] != masks_queries_logits.shape[:2]:
        raise ValueError(
            f"class_queries_logits {tuple(class_queries_logits.shape)} and masks_queries_logits "
            f"{tuple(masks_queries_logits.shape)} disagree on (batch, queries)"
        )
    class_probs = class_queries_logits.softmax(dim=-1)[..., :-1]
    return torch.einsum("bqc,bqhw->bchw", class_probs, masks_queries_logits.sigmoid())


def image_region(height: int, width: int, size: int) -> tuple[int, int, int, int]:
    """(top, left, h, w) of an image of `height` x `width` inside `resize_with_pad(img, size, size)`.

    Mirrors lerobot's SmolVLA helper: aspect-preserving resize with int() truncation, padding on the top and left.
    """
    if (height, width) == (size, size):
        return 0, 0, size, size
    ratio = max(width / size, height / size)
    resized_h, resized_w = int(height / ratio), int(width / ratio)
    return size - resized_h, size - resized_w, resized_h, resized_w


def _area_weights(start: float, length: float, cells: int, grid: int, dtype: torch.dtype) -> torch.Tensor:
    """(grid, cells): the share of each map cell [i, i+1) in each of `grid` equal bins of [start, start+length).

    Bins need not fall on cell edges (a 409-pixel image strip on a 128-cell map), so each bin is an exact area
    average of the piecewise-constant map instead of adaptive_avg_pool2d's rounded integer windows.
    """
    edges = start + torch.arange(grid + 1, dtype=torch.float64) * (length / grid)
    cell = torch.arange(cells, dtype=torch.float64)
    overlap = (torch.minimum(edges[1:, None], cell + 1) - torch.maximum(edges[:-1, None], cell)).clamp_min(0)
    return (overlap / overlap.sum(dim=1, keepdim=True)).to(dtype)


def pool_scores(
    scores: torch.Tensor, regions: list[tuple[int, int, int, int]], input_size: int, grid_size: int
) -> torch.Tensor:
    """Average (N, C, h, w) score maps over a grid_size^2 grid laid on each sample's image region.

    `regions[n]` is (top, left, height, width) in pixels of the `input_size`^2 model input (see `image_region`);
    the map covers the whole input, so padding outside the region never enters the average.
    """
    n, _, h, w = scores.shape
    if len(regions) != n:
        raise ValueError(f"pool_scores got {n} score maps but {len(regions)} regions")
    sy, sx = h / input_size, w / input_size
    rows = torch.stack([_area_weights(t * sy, rh * sy, h, grid_size, scores.dtype) for t, _, rh, _ in regions])
    cols = torch.stack([_area_weights(lf * sx, rw * sx, w, grid_size, scores.dtype) for _, lf, _, rw in regions])
    return torch.einsum("ngh,nchw,nkw->ncgk", rows.to(scores.device), scores, cols.to(scores.device))


def packed_scores_length(num_classes: int, grid_size: int) -> int:
    """int64 words `pack_scores` stores per camera-frame: two float32 scores per word."""
    return -(-num_classes * grid_size * grid_size // 2)


def pack_scores(scores: torch.Tensor) -> torch.Tensor:
    """float (..., C, g, g) -> int64 (..., packed_scores_length(C, g)): the float32 bytes as little-endian int64
    words, padded with one zero score when C * g * g is odd. Lossless; `score_grid` reads them back.

    `segvla-precompute` stores this because LeRobot 0.6.1 turns an array column into tensors through Python lists,
    element by element, for the sample's row and again for every row of its action window (docs/results.md,
    "Does training wait for data?"): half the elements and no nesting, 4.9 against 9.8 ms of a loader worker's CPU
    per sample of two 6 x 8 x 8 cameras (3.4 without cues)."""
    flat = scores.float().flatten(start_dim=-3)
    if flat.shape[-1] % 2:
        flat = F.pad(flat, (0, 1))
    return flat.contiguous().view(torch.int64)


def score_grid(value: torch.Tensor, num_classes: int, grid_size: int) -> torch.Tensor:
    """Stored scores -> float (..., C, g, g): int64 words from `pack_scores` are unpacked, a flat (..., C * g * g)
    float is reshaped; scores already shaped (..., C, g, g) pass unchanged, and so does anything else (the
    callers' shape checks name it)."""
    cell = (num_classes, grid_size, grid_size)
    count = math.prod(cell)
    if value.dtype == torch.int64 and value.ndim >= 1 and value.shape[-1] == packed_scores_length(*cell[:2]):
        value = value.contiguous().view(torch.float32)[..., :count]
    if value.ndim >= 1 and value.shape[-1] == count and tuple(value.shape[-3:]) != cell:
        return value.reshape(*value.shape[:-1], *cell)
    return value


def check_segmentation_scores(value: Any, key: str, num_classes: int, grid_size: int) -> torch.Tensor:
    """Validate a batch entry against the contract: float (..., num_classes, g, g), finite, >= 0.

    Used on what the step writes and on what the offline command reads back, so a dataset made with another
    checkpoint or grid fails here, naming the key, instead of deep inside the policy.
    """
    expected = f"float scores shaped (..., {num_classes}, {grid_size}, {grid_size})"
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"'{key}': expected a tensor of {expected}, got {type(value).__name__}")
    if value.ndim < 3 or tuple(value.shape[-3:]) != (num_classes, grid_size, grid_size):
        what = "class count" if value.ndim >= 3 and value.shape[-3] != num_classes else "shape"
        raise ValueError(f"'{key}': wrong {what}: expected {expected}, got {tuple(value.shape)}")
    if not value.is_floating_point():
        raise TypeError(f"'{key}': expected {expected}, got dtype {value.dtype}")
    bad = torch.isnan(value)
    if bad.any():
        raise ValueError(f"'{key}' holds {int(bad.sum())} NaN scores of {value.numel()}; expected finite scores >= 0")
    if torch.isinf(value).any() or (value < 0).any():
        raise ValueError(f"'{key}': scores must be finite and >= 0 (min {float(value.min()):.4g})")
    return value


def _normalisation(model_name: str) -> tuple[list[float], list[float]]:
    """The checkpoint's image mean/std in [0, 1] pixel units (ImageNet's if it ships no image processor)."""
    from transformers import AutoImageProcessor

    try:
        processor = AutoImageProcessor.from_pretrained(model_name)
    except OSError:
        logger.warning("%s has no image processor config; using ImageNet mean/std", model_name)
        return [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    if not getattr(processor, "do_normalize", True):
        return [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    mean, std = list(processor.image_mean), list(processor.image_std)
    if max(mean) > 1.0:  # detectron2-style configs give mean/std in 0-255 units
        mean, std = [m / 255.0 for m in mean], [s / 255.0 for s in std]
    return mean, std


class Mask2FormerSegmenter:
    """A Mask2Former checkpoint that turns RGB images in [0, 1] into pooled semantic scores (N, C, g, g).

    Images go through SmolVLA's resize-with-pad to `input_size`^2 (black padding top/left), then the checkpoint's
    mean/std; the model runs in eval mode under inference_mode, on `device` in `dtype`; the scores are computed
    and pooled in float32.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_MODEL,
        grid_size: int = 8,
        input_size: int = 512,
        device: str | torch.device = "cpu",
        dtype: str = "float32",
    ):
        from transformers import Mask2FormerForUniversalSegmentation

        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {dtype!r}")
        self.model_name = str(model_name)
        self.grid_size = grid_size
        self.input_size = input_size
        self.device = torch.device(device)
        self.dtype = DTYPES[dtype]
        self.model = Mask2FormerForUniversalSegmentation.from_pretrained(self.model_name, dtype=self.dtype)
        self.model.to(self.device).eval()
        mean, std = _normalisation(self.model_name)
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)

    @property
    def id2label(self) -> dict[int, str]:
        return {int(k): v for k, v in self.model.config.id2label.items()}

    @property
    def num_classes(self) -> int:
        return self.model.config.num_labels

    def to(self, device: str | torch.device) -> Mask2FormerSegmenter:
        self.device = torch.device(device)
        self.model.to(self.device)
        self.mean, self.std = self.mean.to(self.device), self.std.to(self.device)
        return self

    def prepare(self, images: torch.Tensor) -> tuple[torch.Tensor, list[tuple[int, int, int, int]]]:
        """(N, 3, H, W) in [0, 1] -> normalised (N, 3, S, S) model input and each image's region in it."""
        # lerobot.policies imports every policy config: loaded here so importing this module (which registers the
        # steps) stays cheap.
        from lerobot.policies.common.vla_utils import resize_with_pad

        height, width = images.shape[-2:]
        padded = resize_with_pad(images.float(), self.input_size, self.input_size, pad_value=0)
        region = image_region(height, width, self.input_size)
        return (padded - self.mean) / self.std, [region] * images.shape[0]

    @torch.inference_mode()
    def __call__(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        """Score every (N_i, 3, H_i, W_i) tensor of `images` (sizes may differ) in one forward pass.

        Returns float32 (N_i, C, g, g) per input, on this segmenter's device.
        """
        inputs, regions = [], []
        for batch in images:
            pixels, batch_regions = self.prepare(batch.to(self.device))
            inputs.append(pixels)
            regions += batch_regions
        outputs = self.model(pixel_values=torch.cat(inputs).to(self.dtype))
        scores = semantic_scores(outputs.class_queries_logits.float(), outputs.masks_queries_logits.float())
        if scores.shape[1] != self.num_classes:
            raise ValueError(
                f"{self.model_name} returned {scores.shape[1]} classes, its config says {self.num_classes}"
            )
        pooled = pool_scores(scores, regions, self.input_size, self.grid_size)
        return list(pooled.split([len(b) for b in images]))


def _check_image(value: Any, key: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor) or value.ndim < 3 or value.shape[-3] != 3:
        shape = tuple(value.shape) if hasattr(value, "shape") else type(value).__name__
        raise ValueError(f"'{key}': expected an RGB image tensor shaped (..., 3, H, W), got {shape}")
    if value.dtype == torch.uint8:
        return value.float() / 255.0
    if not value.is_floating_point():
        raise TypeError(f"'{key}': expected float images in [0, 1] or uint8, got dtype {value.dtype}")
    if not torch.isfinite(value).all():
        raise ValueError(f"'{key}' holds NaN or infinite pixel values")
    lo, hi = float(value.min()), float(value.max())
    if lo < -1e-3 or hi > 1.0 + 1e-3:
        raise ValueError(f"'{key}': expected pixel values in [0, 1] (before normalisation), got [{lo:.3g}, {hi:.3g}]")
    return value


def check_feature_map(feature_map: dict[str, str]) -> None:
    """Camera keys and score keys must be `observation.*` (LeRobot's batch converter drops anything else)."""
    if not feature_map:
        raise ValueError("feature_map is empty: map at least one camera key to a segmentation key")
    for camera, key in feature_map.items():
        for name in (camera, key):
            if not name.startswith("observation."):
                raise ValueError(
                    f"feature_map entry {camera!r} -> {key!r}: keys must start with 'observation.' "
                    "(LeRobot's batch_to_transition drops other keys)"
                )
        if key in feature_map:
            raise ValueError(f"feature_map writes {key!r}, which is also a camera key it reads")
    if len(set(feature_map.values())) != len(feature_map):
        raise ValueError(f"feature_map sends two cameras to the same key: {feature_map}")


@ProcessorStepRegistry.register("segvla_add_segmentation")
@dataclass
class SegVLAAddSegmentationStep(ConfigFromFields, ObservationProcessorStep):
    """Runs Mask2Former on every camera in `feature_map` (one batch) and writes pooled scores under its keys.

    The upstream SegVLA notes' option B (online). Place it before normalisation. The model loads when the step is built:
    a model that is not here fails then, naming its id, not at the first frame (SegVLA's from_pretrained checks it even
    before, as lerobot-rollout loads the policy before connecting the robot). `device=None` runs the model on CUDA when
    there is one, else where the images are, so a saved pipeline works on either machine; the scores always come back on
    the images' device. Cameras missing from an observation are an error, because a policy trained with the cue would
    silently lose it.
    """

    model_name: str = DEFAULT_MODEL
    feature_map: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_FEATURE_MAP))
    grid_size: int = 8
    input_size: int = 512
    device: str | None = None
    dtype: str = "float32"

    def __post_init__(self):
        check_feature_map(self.feature_map)
        if self.grid_size <= 0 or self.input_size < self.grid_size:
            raise ValueError(f"need 0 < grid_size <= input_size, got {self.grid_size} and {self.input_size}")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {list(DTYPES)}, got {self.dtype!r}")
        self._segmenter: Mask2FormerSegmenter | None = None
        self._num_classes: int | None = None
        self.segmenter()  # loaded now: a model that is not here fails while the pipeline is made, not at a frame

    @classmethod
    def check_saved(cls, config: dict[str, Any], state_file: Path | None, has_state: bool) -> None:
        """Before the pipeline is built (a policy's from_pretrained): is the model here, or can it be fetched?"""
        require_pretrained(config.get("model_name", DEFAULT_MODEL), MASK2FORMER_WHAT, MASK2FORMER_FLAG)

    def segmenter(self, device: torch.device | str | None = None) -> Mask2FormerSegmenter:
        if self.device is not None:
            device = torch.device(self.device)
        elif torch.cuda.is_available():
            # The step usually runs before the pipeline's device move, on CPU images; the model belongs on the GPU.
            device = torch.device("cuda")
        else:
            device = torch.device(device or "cpu")
        if self._segmenter is None:
            with pretrained_hint(self.model_name, MASK2FORMER_WHAT, MASK2FORMER_FLAG):
                self._segmenter = Mask2FormerSegmenter(
                    self.model_name, self.grid_size, self.input_size, device, self.dtype
                )
        elif self._segmenter.device != device:
            self._segmenter.to(device)
        return self._segmenter

    @property
    def num_classes(self) -> int:
        if self._num_classes is None:
            if self._segmenter is not None:
                self._num_classes = self._segmenter.num_classes
            else:  # the config alone: transform_features must not load the weights
                from transformers import AutoConfig

                with pretrained_hint(self.model_name, MASK2FORMER_WHAT, MASK2FORMER_FLAG):
                    self._num_classes = AutoConfig.from_pretrained(self.model_name).num_labels
        return self._num_classes

    def observation(self, observation: dict) -> dict:
        images = []
        for camera in self.feature_map:
            image = require_key(
                observation,
                camera,
                "SegVLAAddSegmentationStep",
                "a camera",
                where="observation",
                prefix="observation.images",
            )
            images.append(_check_image(image, camera))
        segmenter = self.segmenter(images[0].device)
        flat = [img.reshape(-1, *img.shape[-3:]) for img in images]
        pooled = segmenter(flat)
        for key, img, scores in zip(self.feature_map.values(), images, pooled, strict=True):
            scores = scores.reshape(*img.shape[:-3], *scores.shape[-3:]).to(img.device)
            observation[key] = check_segmentation_scores(scores, key, segmenter.num_classes, self.grid_size)
        return observation

    def transform_features(self, features):
        obs = features.get(PipelineFeatureType.OBSERVATION, {})
        for camera, key in self.feature_map.items():
            if camera in obs:
                # STATE, as LeRobot types any non-image `observation.*` dataset column: the stored form
                # (precompute_segmentation) and the online form then declare the same feature.
                obs[key] = PolicyFeature(
                    type=FeatureType.STATE, shape=(self.num_classes, self.grid_size, self.grid_size)
                )
        return features
