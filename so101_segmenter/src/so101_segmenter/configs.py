"""Configs of `so101-seg-train` and `so101-seg-eval`, parsed by LeRobot's `parser.wrap` as its commands parse theirs.

A run is a YAML file plus dotted flags that override it:

    so101-seg-train --config_path=configs/segmenter_train.yaml --optim.lr=3e-4 --output_dir=outputs/seg_lr3e-4
    so101-seg-train --data.path=data/dataset_v0                        # no file: every other field at its default

Every field is validated when its dataclass is built (from the command line, a file or Python), and errors name the
flag and what it expects.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from so101_run_infra.hub import HubPushConfig

from .augment import PhotometricConfig
from .data import AUGMENTATIONS
from .hue_band import HueBand

LOSSES = ("iou", "ce", "iou+ce")


def _positive(flag: str, value: float | None, *, allow_none: bool = False, allow_zero: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or value < 0 or (value == 0 and not allow_zero):
        expected = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"--{flag} must be {expected}{' (or null)' if allow_none else ''}, got {value}")


def _choice(flag: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"--{flag} must be one of {', '.join(choices)}, got {value!r}")


@dataclass
class ImageDataConfig:
    # dataset folder with index.json (written by so101-seg-masks or so101-seg-render); required
    path: Path | None = None
    # frames and masks are resized to img_height x img_width (nearest for masks)
    img_height: int = 480
    # see img_height
    img_width: int = 640

    def __post_init__(self) -> None:
        _positive("data.img_height", self.img_height)
        _positive("data.img_width", self.img_width)

    def require_path(self) -> None:
        if self.path is None:
            raise ValueError("--data.path is required: a dataset folder with index.json")


@dataclass
class DataConfig(ImageDataConfig):
    # held-out dataset folder, evaluated with the best model at the end (test_metrics.json)
    test_path: Path | None = None
    # pick-101's recipes: full at 640x480, flips at 84x84 (flips swap the fingers' sides: see the segmenter README);
    # robust: small crops and rotations, then data.photometric's recolouring, casts, greying, blur, noise, patches
    augment: str = "full"
    # the colour augmentation of augment=robust (ignored otherwise)
    photometric: PhotometricConfig = field(default_factory=PhotometricConfig)
    # [low, high, min_saturation]: no training pixel keeps a hue in [low, high) at that saturation or more (folded
    # out, after every augmentation); the twin's recipes keep `--env.appearance=unseen`'s band [0.70, 0.88, 0.3]
    # out. null: no band
    excluded_hue_band: list[float] | None = None
    # share of the frames (whole episodes, grasp/default ratio kept) held out for validation and early stopping
    val_fraction: float = 0.15
    # DataLoader worker processes (0: load in the main process)
    num_workers: int = 0
    # frames mixed into training beside --data.path's, e.g. so101-seg-render's randomised twin frames, what the
    # starting segmenter learnt from: fine-tuned on one scene alone it forgets the others. Never validated or tested on
    replay_path: Path | None = None
    # replay frames per training frame of --data.path (a fixed random subset of replay_path, drawn with --seed)
    replay_ratio: float = 1.0
    # share of the frames of --data.path (whole episodes, grasp/default ratio kept; the same frames whatever --seed)
    # held out from training and validation and scored with the best model at the end (test_metrics.json): a test
    # set for one labelled export with no separate test folder; 0: none
    test_fraction: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _choice("data.augment", self.augment, AUGMENTATIONS)
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"--data.val_fraction must be in (0, 1), got {self.val_fraction}")
        if not 0 <= self.test_fraction < 1:
            raise ValueError(f"--data.test_fraction must be in [0, 1), got {self.test_fraction}")
        if self.test_fraction and self.test_path is not None:
            raise ValueError("--data.test_fraction and --data.test_path both name a test set: give one of them")
        _positive("data.num_workers", self.num_workers, allow_zero=True)
        _positive("data.replay_ratio", self.replay_ratio)
        self.photometric.validate()
        if self.excluded_hue_band is not None:
            if len(self.excluded_hue_band) != 3:
                raise ValueError(
                    f"--data.excluded_hue_band must be [low, high, min_saturation], got {self.excluded_hue_band}"
                )
            self.hue_band()

    def hue_band(self) -> HueBand | None:
        if self.excluded_hue_band is None:
            return None
        try:
            return HueBand(*map(float, self.excluded_hue_band))
        except ValueError as e:
            raise ValueError(f"--data.excluded_hue_band={self.excluded_hue_band}: {e}") from None


@dataclass
class ModelConfig(HubPushConfig):
    """The segmenter trained, and where it is pushed when training ends (--model.push_to_hub, --model.repo_id,
    --model.private, --model.tags, --model.license: lerobot-train's --policy.* spelling; off by default)."""

    # ImageNet backbone weights from the Hub; false: random backbone init (no download)
    pretrained: bool = True
    # fine-tuning: the segmenter whose weights start this run, e.g. on labelled frames of the real arm. `shipped`:
    # the twin segmenter that ships with this package (no render or training first); or a so101-seg-train checkpoint
    # folder (config.json + model.safetensors: <output_dir>/best). --model.pretrained is then unused. A resumed run
    # starts from its own last/ instead; null: train from scratch
    init_from: Path | None = None
    # a relative-disparity head beside the classifier, trained on the frames' disparity targets (so101-seg-render
    # writes the twin's; so101-seg-disparity a teacher's); SegDepth's --policy.perception_source=segmenter_depth reads
    # it.
    # A run that starts from --model.init_from keeps the starting segmenter's head, or gains a new one
    depth_head: bool = False
    # EfficientViTFPN's decoder width (64: the segmenter README's 0.85M parameters); a new model only
    fpn_channels: int = 64


@dataclass
class OptimConfig:
    # AdamW's peak learning rate; a cosine schedule takes it to min_lr over the epochs
    lr: float = 1e-4
    # AdamW's decoupled weight decay
    weight_decay: float = 1e-4
    # cosine schedule floor (eta_min)
    min_lr: float = 1e-6

    def __post_init__(self) -> None:
        _positive("optim.lr", self.lr)
        _positive("optim.weight_decay", self.weight_decay, allow_zero=True)
        _positive("optim.min_lr", self.min_lr, allow_zero=True)
        if self.min_lr > self.lr:
            raise ValueError(f"--optim.min_lr ({self.min_lr}) must not exceed --optim.lr ({self.lr})")


@dataclass
class TrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    # best/, last/ (resume), metrics.jsonl, val_grid.png, test_metrics.json, train_config.yaml
    output_dir: Path = Path("outputs/efficientvit_seg")
    # validation frames in val_grid.png
    grid_size: int = 8
    # iou (soft IoU over classes 1-5), ce (cross-entropy) or iou+ce (their sum, the cross-entropy weighted per class
    # by class_weights); all ignore class 0
    loss: str = "iou"
    # cross-entropy weight per class id 0-5 for loss=iou+ce, e.g. [0,1,1,3,1,1] counts a cube pixel 3 times; null: 1
    class_weights: list[float] | None = None
    # the depth head's loss (scale- and shift-invariant L1 on disparity) is added times this
    depth_loss_weight: float = 1.0
    # the cosine schedule's length; a resumed run may be given more
    epochs: int = 100
    # training frames per step (validation uses max(batch_size, 16))
    batch_size: int = 4
    # epochs without a val mIoU gain before stopping
    patience: int = 20
    # stop after this many minutes of training (then evaluate); null: no limit
    time_limit_min: float | None = None
    # torch intra-op threads; null: torch's choice (one per core, >10x slower per step on a CPU shared with other
    # jobs here: 1.55 s vs 0.10 s per 16x84x84 step, its threads spin waiting for each other)
    threads: int | None = None
    # seeds python, numpy, torch, the train/val split and the loader's shuffling
    seed: int = 0

    def __post_init__(self) -> None:
        self.data.require_path()
        self.model.check("model")
        _choice("loss", self.loss, LOSSES)
        if self.class_weights is not None and (self.loss != "iou+ce" or len(self.class_weights) != 6):
            raise ValueError(
                f"--class_weights={self.class_weights}: give 6 weights (one per class id) with --loss=iou+ce"
            )
        _positive("depth_loss_weight", self.depth_loss_weight, allow_zero=True)
        _positive("model.fpn_channels", self.model.fpn_channels)
        _positive("epochs", self.epochs)
        _positive("batch_size", self.batch_size)
        _positive("patience", self.patience)
        _positive("time_limit_min", self.time_limit_min, allow_none=True)
        _positive("threads", self.threads, allow_none=True)
        _positive("grid_size", self.grid_size)


@dataclass
class EvalConfig:
    # a save_segmenter folder (e.g. outputs/.../best); required
    segmenter_path: Path | None = None
    data: ImageDataConfig = field(default_factory=ImageDataConfig)
    # write the metrics JSON here
    output: Path | None = None
    # score only the frames of this camera (e.g. wrist, SegDepth's); null: every frame
    camera: str | None = None

    def __post_init__(self) -> None:
        if self.segmenter_path is None:
            raise ValueError("--segmenter_path is required: a save_segmenter folder (e.g. outputs/.../best)")
        self.data.require_path()
