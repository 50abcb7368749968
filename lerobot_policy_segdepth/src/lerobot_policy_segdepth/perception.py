"""Learned perception as ProcessorSteps: the EfficientViT segmenter and Depth Anything V2 (as in ggand0/pick-101).

Both steps turn RGB camera keys into what SegDepth reads from the simulator's ground truth: class ids
(0-5, integer-valued float32) and disparity normalised per frame to 0-255 with near = 255, each (..., 1, S, S).

pick-101 runs both models on the full 640x480 frame and then crops the centre square and resizes to 84x84.
Only the centre square reaches the policy, so these steps crop first and run each model at a small square
input (`input_size`), then resize the result to `output_size`; `crop_square=False, input_size=None,
output_size=None` is pick-101's literal full-frame call, kept for the benchmark. Every RGB key is pushed
through one batched forward pass, and training batches (B, T, 3, H, W) are flattened into it as well.

Both models are loaded when the step is built, never at the first frame: the segmenter's weights travel inside
the saved pipeline (so101_segmenter.carried); Depth Anything is named by its Hub id or folder (too big to copy into
every checkpoint), and a missing one is an error naming it and how to fetch it. A SegDepth policy's from_pretrained
checks both (`check_saved`) before lerobot-rollout connects the robot. The models are kept in eval mode and run
under `torch.inference_mode`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from lerobot.configs import FeatureType, PipelineFeatureType, PolicyFeature
from lerobot.processor import ObservationProcessorStep, ProcessorStepRegistry
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from so101_policy_common.pretrained import pretrained_hint, require_pretrained
from so101_policy_common.steps import ConfigFromFields
from so101_segmenter.carried import CarriesSegmenter
from so101_segmenter.metrics import minmax_255

from .constants import DEPTH_ANYTHING_V2_SMALL
from .observation_steps import _require, disparity_from_depth

# What a missing depth model's error names: the step, and the flag that points it at a local copy.
DEPTH_WHAT = "SegDepth's depth step (so101_depth_anything, Depth Anything V2)"
DEPTH_FLAG = (
    "--policy.depth_model=FOLDER when training, segdepth-sim2real-check --export_dir --depth_model=FOLDER for a "
    "checkpoint"
)
# Depth Anything's image processor normalises with the ImageNet statistics (transformers.image_utils).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def depth_anything_v2_small_config(**backbone_overrides: Any):
    """Depth-Anything-V2-Small-hf's architecture (its model card's config.json), for random-weight benchmarks.

    DINOv2-S/14 backbone (384 wide, 12 layers, 6 heads) read out after layers 9-12, DPT neck [48, 96, 192, 384],
    fusion 64, relative (disparity) head: 24.8M parameters.
    """
    from transformers import DepthAnythingConfig, Dinov2Config

    backbone = Dinov2Config(
        **{
            "hidden_size": 384,
            "num_hidden_layers": 12,
            "num_attention_heads": 6,
            "mlp_ratio": 4,
            "image_size": 518,
            "patch_size": 14,
            "layerscale_value": 1.0,
            "out_indices": [9, 10, 11, 12],
            "reshape_hidden_states": False,
            **backbone_overrides,
        }
    )
    return DepthAnythingConfig(
        backbone_config=backbone,
        patch_size=14,
        reassemble_hidden_size=384,
        reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=[48, 96, 192, 384],
        fusion_hidden_size=64,
        head_hidden_size=32,
        head_in_index=-1,
        depth_estimation_type="relative",
    )


def rgb_as_float(image: torch.Tensor, key: str) -> torch.Tensor:
    """(..., 3, H, W) uint8 0-255 or float 0-1 -> float32 0-1; anything else is an error naming `key`."""
    if image.ndim < 3 or image.shape[-3] != 3:
        raise ValueError(f"'{key}' must be an RGB image shaped (..., 3, H, W), got {tuple(image.shape)}")
    if image.dtype == torch.uint8:
        return image.detach().float() / 255.0
    image = image.detach().float()  # the models never need gradients through the camera
    if image.numel() and (float(image.min()) < -1e-3 or float(image.max()) > 1.0 + 1e-3):
        raise ValueError(
            f"'{key}' holds float values in [{float(image.min()):.3g}, {float(image.max()):.3g}]; "
            "expected RGB in [0, 1] (LeRobot's image convention) or uint8"
        )
    return image


def normalize_disparity(disparity: torch.Tensor, key: str = "disparity") -> torch.Tensor:
    """Relative disparity (..., 1, H, W) >= 0 -> per-frame min-max to [0, 255], near = 255.

    Shares `disparity_from_depth`'s normalisation (an all-equal frame becomes zeros, not a division by zero)
    by handing it the reciprocal; zero disparity (infinitely far) maps to infinite depth and back to zero.
    """
    if torch.isnan(disparity).any():
        raise ValueError(f"'{key}' holds NaN disparity values")
    if (disparity < 0).any():
        raise ValueError(f"'{key}' holds negative disparity (min {float(disparity.min()):.4g}); expected >= 0")
    return disparity_from_depth(torch.reciprocal(disparity.double()), key)


def _centre_square(image: torch.Tensor) -> torch.Tensor:
    side = min(image.shape[-2:])
    return TF.center_crop(image, [side, side])


@dataclass
class _BatchedModelStep(ConfigFromFields, ObservationProcessorStep):
    """Shared plumbing: crop, resize, one forward pass over every key and frame, resize the result back."""

    image_keys: list[str] = field(default_factory=list)
    output_keys: list[str] = field(default_factory=list)
    crop_square: bool = True
    input_size: int | None = None  # square side the model sees; None keeps the (cropped) frame size
    output_size: int | None = None  # square side written; None keeps the (cropped) frame size
    device: str | None = None  # None: CUDA when present, else CPU (a checkpoint trained on a GPU runs on a laptop)
    skip_if_present: str | None = None  # do nothing when this key is already there (see segdepth.py)

    def __post_init__(self):
        if len(self.image_keys) != len(self.output_keys) or not self.image_keys:
            raise ValueError(
                f"{type(self).__name__}: image_keys {self.image_keys} and output_keys {self.output_keys} "
                "must be non-empty and of equal length"
            )
        for name in ("input_size", "output_size"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{type(self).__name__}: {name} must be positive or None, got {value}")
        self._model = None

    # subclasses -------------------------------------------------------------------------------------------------
    def _load(self) -> torch.nn.Module:
        raise NotImplementedError

    def _keys_written(self, i: int) -> list[str]:
        """The keys image_keys[i]'s result channels go to, one each (`_infer` returns that many channels)."""
        return [self.output_keys[i]]

    def _model_size(self, height: int, width: int) -> tuple[int, int]:
        return height, width

    def _infer(self, model: torch.nn.Module, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(N, 3, h, w) float 0-1 at the model's input size -> (N, C, *size) float32, C = len(_keys_written(i))."""
        raise NotImplementedError

    # plumbing ---------------------------------------------------------------------------------------------------
    @property
    def run_device(self) -> str:
        return self.device or ("cuda" if torch.cuda.is_available() else "cpu")

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            model = self._load().to(self.run_device).eval()
            model.requires_grad_(False)
            self._model = model
        return self._model

    def load_model(self) -> torch.nn.Module:
        """Load the model now (a subclass calls it when built), so a missing one fails before the first frame."""
        return self.model

    def _frame_sizes(self, height: int, width: int) -> tuple[tuple[int, int], tuple[int, int]]:
        if self.crop_square:
            height = width = min(height, width)
        model_in = (self.input_size, self.input_size) if self.input_size else (height, width)
        out = (self.output_size, self.output_size) if self.output_size else (height, width)
        return self._model_size(*model_in), out

    def observation(self, observation: dict) -> dict:
        if self.skip_if_present is not None and self.skip_if_present in observation:
            return observation  # a precomputed dataset: the model is never loaded
        name = type(self).__name__
        model = self.model  # loaded first: the input size may depend on it (patch size)
        images = [rgb_as_float(_require(observation, key, name), key) for key in self.image_keys]
        # Cameras whose model inputs end up the same size share one forward pass, whatever their native size.
        groups: dict[tuple[tuple[int, int], tuple[int, int]], list[tuple[int, torch.Tensor]]] = {}
        for i, image in enumerate(images):
            height, width = image.shape[-2:]
            model_in, out_size = self._frame_sizes(height, width)
            frames = image.reshape(-1, 3, height, width)
            if self.crop_square:
                frames = _centre_square(frames)
            if tuple(frames.shape[-2:]) != model_in:
                frames = TF.resize(frames, list(model_in), InterpolationMode.BICUBIC, antialias=True).clamp(0, 1)
            groups.setdefault((model_in, out_size), []).append((i, frames))
        for (_, out_size), members in groups.items():
            sizes = [frames.shape[0] for _, frames in members]
            with torch.inference_mode():
                result = self._infer(model, torch.cat([f for _, f in members]).to(self.run_device), out_size)
            # clone outside inference mode: lerobot-train may feed these into autograd
            # (perception_source=segmenter_depth_anything)
            result = result.to(images[members[0][0]].device).clone()
            for (i, _), part in zip(members, result.split(sizes), strict=True):
                for c, key in enumerate(self._keys_written(i)):
                    observation[key] = part[:, c : c + 1].reshape(*images[i].shape[:-3], 1, *out_size)
        return observation

    def transform_features(self, features):
        obs = features.get(PipelineFeatureType.OBSERVATION, {})
        for image_key, output_key in zip(self.image_keys, self.output_keys, strict=True):
            if image_key in obs:
                *lead, _, height, width = obs[image_key].shape
                _, out_size = self._frame_sizes(height, width)
                for key in self._keys_written(self.output_keys.index(output_key)):
                    obs[key] = PolicyFeature(type=FeatureType.VISUAL, shape=(*lead, 1, *out_size))
        return features


@ProcessorStepRegistry.register("so101_segmenter")
@dataclass
class SegmenterStep(CarriesSegmenter, _BatchedModelStep):
    """RGB keys -> class ids (0-5) with the EfficientViT-B0 + FPN segmenter saved at `checkpoint`; with
    `disparity_keys`, also its depth head's disparity, from the same forward pass (perception_source="segmenter_depth").

    Logits are resized (bilinear) to `output_size` before the argmax, as semantic-segmentation post-processing
    does, so a small model input still gives clean class borders at the output size. Disparity is min-max
    normalised per frame to 0-255 (near = 255) at the model's resolution and then resized, as DepthAnythingStep does.
    The weights travel with the saved pipeline (so101_segmenter.carried): `checkpoint` is read once, when the step
    is first built from it.
    """

    SEGMENTER_PATH_FIELD: ClassVar[str] = "checkpoint"
    checkpoint: str = ""
    segmenter_config: dict | None = None  # the segmenter's config.json, kept in the saved pipeline
    segmenter_source: dict | None = None  # the folder it was read from and its weights' sha256 (carried.py)
    disparity_keys: list[str] = field(default_factory=list)  # one per image key, or none

    def __post_init__(self):
        super().__post_init__()
        if not self.checkpoint and self.segmenter_config is None:
            raise ValueError("SegmenterStep needs `checkpoint`: a folder written by so101_segmenter's save_segmenter")
        if self.disparity_keys and len(self.disparity_keys) != len(self.image_keys):
            raise ValueError(
                f"SegmenterStep: disparity_keys {self.disparity_keys} must name one key per image key {self.image_keys}"
            )
        self._init_segmenter()
        if self.disparity_keys and not (self.segmenter_config or {}).get("depth_head", False):
            where = self.checkpoint or "the saved pipeline's segmenter"
            raise ValueError(
                f"{where} has no depth head (its config.json has depth_head=false), but disparity is asked of it "
                "(perception_source=segmenter_depth): use a segmenter trained with so101-seg-train "
                "--model.depth_head=true"
            )
        if self._segmenter is not None:  # a saved pipeline's weights arrive in load_state_dict instead
            self.load_model()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        self._model = None
        self.load_model()

    def _load(self) -> torch.nn.Module:
        return self.segmenter

    def _keys_written(self, i: int) -> list[str]:
        return [self.output_keys[i], self.disparity_keys[i]] if self.disparity_keys else [self.output_keys[i]]

    def _infer(self, model: torch.nn.Module, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        if self.disparity_keys:
            logits, disparity = model.forward_with_disparity(images)
        else:
            logits, disparity = model(images), None
        if tuple(logits.shape[-2:]) != size:
            logits = torch.nn.functional.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        ids = logits.argmax(dim=1, keepdim=True).float()
        if disparity is None:
            return ids
        scaled = minmax_255(disparity)
        if tuple(scaled.shape[-2:]) != size:
            scaled = TF.resize(scaled, list(size), InterpolationMode.BILINEAR, antialias=True)
        return torch.cat([ids, scaled.float()], dim=1)


@ProcessorStepRegistry.register("so101_depth_anything")
@dataclass
class DepthAnythingStep(_BatchedModelStep):
    """RGB keys -> disparity 0-255 (near = 255) with transformers' DepthAnythingForDepthEstimation.

    `model` is a Hub id or a local folder. Depth Anything V2 predicts relative inverse depth already, so the
    output is only min-max normalised per frame (at the model's resolution, as pick-101 does before resizing).
    The model's input side must be a multiple of its patch size (14); `input_size=None` rounds the frame to one.
    """

    model_name_or_path: str = DEPTH_ANYTHING_V2_SMALL

    def __post_init__(self):
        super().__post_init__()
        self.load_model()

    @classmethod
    def check_saved(cls, config: dict[str, Any], state_file: Path | None, has_state: bool) -> None:
        """Before the pipeline is built (a policy's from_pretrained): is the model here, or can it be fetched?"""
        require_pretrained(config.get("model_name_or_path", DEPTH_ANYTHING_V2_SMALL), DEPTH_WHAT, DEPTH_FLAG)

    def _load(self) -> torch.nn.Module:
        from transformers import DepthAnythingForDepthEstimation

        with pretrained_hint(self.model_name_or_path, DEPTH_WHAT, DEPTH_FLAG):
            model = DepthAnythingForDepthEstimation.from_pretrained(self.model_name_or_path)
        patch = model.config.patch_size
        if self.input_size is not None and self.input_size % patch:
            raise ValueError(
                f"DepthAnythingStep: input_size={self.input_size} is not a multiple of the model's patch size "
                f"{patch} ({self.model_name_or_path}); use e.g. {max(patch, round(self.input_size / patch) * patch)}"
            )
        return model

    def _model_size(self, height: int, width: int) -> tuple[int, int]:
        patch = 14 if self._model is None else self._model.config.patch_size
        # like Depth Anything's image processor (ensure_multiple_of=patch): the nearest multiple, at least one patch
        return tuple(max(patch, round(side / patch) * patch) for side in (height, width))

    def _infer(self, model: torch.nn.Module, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        pixels = TF.normalize(images, list(IMAGENET_MEAN), list(IMAGENET_STD))
        disparity = model(pixel_values=pixels).predicted_depth[:, None]  # (N, 1, h, w), relative disparity
        scaled = normalize_disparity(disparity, self.model_name_or_path)
        if tuple(scaled.shape[-2:]) != size:
            scaled = TF.resize(scaled, list(size), InterpolationMode.BILINEAR, antialias=True)
        return scaled
