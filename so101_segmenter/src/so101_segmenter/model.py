"""EfficientViT-B0 backbone (timm, `features_only`) + FPN decoder: a ~0.85M-parameter 6-class segmenter.

Layout follows ggand0/pick-101's `train_efficientvit_seg.py`: a 1x1 lateral conv to `fpn_channels` per
backbone stage, top-down nearest-coarser-first addition, a Conv3x3-BN-ReLU smoothing conv per level, then a 1x1
classifier on the finest (stride-4) map, upsampled to the input size. With the defaults that is 682,608 backbone +
164,230 decoder = 846,838 parameters.

With `depth_head=True` a second head on the same fused map predicts relative disparity (one channel, larger is
nearer, known only up to scale and shift: `disparity_loss` trains it so), the cheap stand-in for Depth Anything V2
that SegDepth reads beside the class ids: one backbone pass gives both.

Checkpoints are a folder with `config.json` (the `SegmenterConfig`) and `model.safetensors` (the state dict).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from so101_run_infra.atomic import save_safetensors, write_text

ARCHITECTURE = "EfficientViTFPN"
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class SegmenterConfig:
    backbone: str = "efficientvit_b0.r224_in1k"
    num_classes: int = 6
    fpn_channels: int = 64
    # ImageNet weights from the Hub for real use; tests and `load_segmenter` build with False (weights come after).
    pretrained: bool = True
    out_indices: tuple[int, ...] = (0, 1, 2, 3)
    # a relative-disparity head beside the classifier (segmenter_disparity)
    depth_head: bool = False

    def __post_init__(self) -> None:
        self.out_indices = tuple(self.out_indices)  # JSON round-trips tuples as lists
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if self.fpn_channels < 1:
            raise ValueError(f"fpn_channels must be >= 1, got {self.fpn_channels}")

    def to_dict(self) -> dict:
        return {"architecture": ARCHITECTURE, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> SegmenterConfig:
        if "architecture" not in data and "model_type" in data:
            raise ValueError(
                f"{source}: a transformers {data['model_type']!r} model, not a segmenter; expected a folder written "
                f"by so101-seg-train (config.json with architecture {ARCHITECTURE!r} + model.safetensors)"
            )
        arch = data.get("architecture", ARCHITECTURE)
        if arch != ARCHITECTURE:
            raise ValueError(f"{source}: architecture is {arch!r}, expected {ARCHITECTURE!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known - {"architecture"})
        if unknown:
            raise ValueError(f"{source}: unknown SegmenterConfig keys {unknown}; known keys are {sorted(known)}")
        return cls(**{k: v for k, v in data.items() if k in known})


class ConvBNReLU(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(nn.Conv2d(in_ch, out_ch, 3, padding=1), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class FPNDecoder(nn.Module):
    """Top-down feature pyramid over backbone stages ordered fine -> coarse; returns the finest fused map."""

    def __init__(self, in_channels: list[int], channels: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.smooth = nn.ModuleList(ConvBNReLU(channels, channels) for _ in in_channels)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x = self.smooth[-1](self.lateral[-1](features[-1]))
        for i in range(len(features) - 2, -1, -1):
            lateral = self.lateral[i](features[i])
            # Odd input sizes give stages whose sizes are not exact halves (84 -> 21, 11, 6, 3): resize to the
            # finer map's size rather than by a fixed factor of 2.
            x = F.interpolate(x, size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            x = self.smooth[i](lateral + x)
        return x


class EfficientViTFPN(nn.Module):
    """Float RGB (B, 3, H, W) in [0, 1] -> class logits (B, num_classes, H, W) at the input size."""

    def __init__(self, config: SegmenterConfig | None = None) -> None:
        # imported here, not with the module: timm (and the wandb it imports) costs every command that loads the
        # policy plugins seconds of start-up, and only a model being built needs it
        import timm

        super().__init__()
        self.config = config = config or SegmenterConfig()
        self.backbone = timm.create_model(
            config.backbone, pretrained=config.pretrained, features_only=True, out_indices=config.out_indices
        )
        # The backbone's own normalisation, so callers pass plain [0, 1] images whatever backbone is configured.
        cfg = self.backbone.pretrained_cfg
        self.register_buffer("mean", torch.tensor(cfg["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg["std"]).view(1, 3, 1, 1), persistent=False)
        self.decoder = FPNDecoder(self.backbone.feature_info.channels(), config.fpn_channels)
        self.head = nn.Conv2d(config.fpn_channels, config.num_classes, 1)
        # Depth needs more than a linear read-out of features trained for classes: one 3x3 conv of its own first.
        self.depth = (
            nn.Sequential(ConvBNReLU(config.fpn_channels, config.fpn_channels), nn.Conv2d(config.fpn_channels, 1, 1))
            if config.depth_head
            else None
        )

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def has_depth(self) -> bool:
        return self.depth is not None

    def _fused(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"EfficientViTFPN expects float RGB (B, 3, H, W) in [0, 1], got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise TypeError(f"EfficientViTFPN expects float images in [0, 1], got dtype {images.dtype}")
        return self.decoder(self.backbone((images - self.mean) / self.std))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        # A 1x1 conv and bilinear resizing are both linear (and bilinear weights sum to 1), so classifying before
        # upsampling gives the same logits as upstream's upsample-then-classify with C instead of 64 channels.
        logits = self.head(self._fused(images))
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)

    def forward_with_disparity(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class logits (B, C, H, W), relative disparity (B, 1, H, W)) from one backbone pass."""
        if self.depth is None:
            raise ValueError(
                "this segmenter has no depth head (its config.json has depth_head=false): train one with "
                "so101-seg-train --model.depth_head=true on frames with disparity targets"
            )
        fused = self._fused(images)
        size = images.shape[-2:]
        logits = F.interpolate(self.head(fused), size=size, mode="bilinear", align_corners=False)
        disparity = F.interpolate(self.depth(fused), size=size, mode="bilinear", align_corners=False)
        return logits, disparity

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Class ids (B, H, W) int64."""
        return self.forward(images).argmax(dim=1)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def save_segmenter(model: EfficientViTFPN, directory: str | Path, metadata: dict | None = None) -> Path:
    """Write `config.json` + `model.safetensors` into `directory`, each atomically (so101_run_infra.atomic).

    `metadata` (e.g. training epoch, val mIoU, image size) is stored as string metadata in the safetensors header.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    # Weights first: a reader that sees a new config.json must also see its weights.
    save_safetensors(state, directory / WEIGHTS_NAME, metadata=meta or None)
    write_text(directory / CONFIG_NAME, json.dumps(model.config.to_dict(), indent=2) + "\n")
    return directory


def load_config(directory: str | Path) -> SegmenterConfig:
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no segmenter config: {path} does not exist (expected a save_segmenter folder)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return SegmenterConfig.from_dict(data, source=str(path))


def load_segmenter(
    directory: str | Path,
    device: str | torch.device = "cpu",
    num_classes: int | None = None,
    depth_head: bool = False,
) -> EfficientViTFPN:
    """Build the model from `config.json` (never downloading: pretrained=False) and load `model.safetensors`.

    `num_classes`, when given, is what the caller needs; a checkpoint with another class count is an error, and so is
    one without a depth head when `depth_head` is asked for. The model is returned in eval mode.
    """
    directory = Path(directory)
    config = load_config(directory)
    if num_classes is not None and config.num_classes != num_classes:
        raise ValueError(
            f"{directory / CONFIG_NAME}: checkpoint has num_classes={config.num_classes}, expected {num_classes}"
        )
    if depth_head and not config.depth_head:
        raise ValueError(
            f"{directory / CONFIG_NAME}: this segmenter has no depth head (depth_head=false), but a disparity is "
            "asked of it: use a segmenter trained with so101-seg-train --model.depth_head=true"
        )
    config.pretrained = False
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise FileNotFoundError(f"no segmenter weights: {weights} does not exist")
    model = EfficientViTFPN(config)
    try:
        state = load_file(weights)
    except Exception as e:
        raise ValueError(f"{weights}: cannot read safetensors file ({e})") from e
    load_checked_state(model, state, f"{weights}", f"{directory / CONFIG_NAME}")
    return model.to(device).eval()


def load_checked_state(model: EfficientViTFPN, state: dict[str, torch.Tensor], source: str, built_from: str) -> None:
    """`model.load_state_dict(state)`, or a ValueError naming `source` (where the weights came from), `built_from`
    (where the config came from) and the first missing, unexpected and wrongly shaped tensors."""
    config = model.config
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong_shape:
        raise ValueError(
            f"{source} does not match the {ARCHITECTURE} built from {built_from}"
            f" (backbone={config.backbone!r}, num_classes={config.num_classes}, fpn_channels={config.fpn_channels},"
            f" depth_head={config.depth_head}):"
            f" missing {missing[:5]}{'...' if len(missing) > 5 else ''},"
            f" unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''},"
            f" wrong shapes {wrong_shape[:5]}"
        )
    model.load_state_dict(state)
