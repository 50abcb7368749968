"""hlrp-train-laq's configuration: the datasets of frame pairs, the LAQ, the segmentation weighting, the run."""

from dataclasses import dataclass, field
from pathlib import Path

import torch

from so101_core.segmentation import check_perception_source
from so101_run_infra.dataset_ref import DatasetRef
from so101_run_infra.hub import HubPushConfig

from ..laq import LAQConfig
from .perception_sources import PERCEPTION_SOURCES, PerceptionSource


@dataclass
class PairDataConfig(DatasetRef):
    repo_id: str = "local/twin_data"  # root: a local dataset folder; None: the Hub (or LeRobot's cache) by repo_id
    camera_key: str = "observation.images.front"
    gap_s: float = 0.3  # t -> t+k in seconds; k = round(gap_s * fps), at least 1
    episodes: list[int] | None = None  # use only these episodes (None: all)
    holdout_share: float = 0.1  # share of the episodes held out for metrics.json (at least 1 when > 0)
    video_backend: str | None = None  # LeRobot's decoder (None: its default, torchcodec where available)
    cache_frames: bool = False  # decode the camera once into memory (uint8): for small datasets such as the twin's


LOSS_WEIGHTINGS = ("none", "segmentation")


def default_class_weights() -> dict[str, float]:
    # so101_core's 6-class map. The twin labels the gripper's two fingers, the cube and the table; the arm's other
    # links fall in "background" with the walls, as in the real segmenter's map, so the fingers stand for the arm
    return {
        "unlabeled": 0.1, "background": 0.1, "table": 0.1, "cube": 1.0, "static_finger": 1.0, "moving_finger": 1.0,
    }  # fmt: skip


@dataclass
class SegmentationWeightingConfig:
    # where each pixel's class comes from: "ground_truth" (the dataset's <camera>_segmentation key, recorded with
    # --robot.segmentation=true), "segmenter" (so101_segmenter's model on the RGB frames), "auto" (ground truth
    # where a dataset has it, else the segmenter)
    perception_source: str = "auto"
    segmenter_path: str | None = None  # a so101-seg-train checkpoint folder (config.json + model.safetensors)
    # weight of each class in the reconstruction loss (a weighted mean: only the ratios matter); every class of the
    # 6-class map must be given
    class_weights: dict[str, float] = field(default_factory=default_class_weights)

    @property
    def perception_record(self) -> PerceptionSource:
        """The record of `perception_source`: what it reads and whether it runs the segmenter."""
        return PERCEPTION_SOURCES[self.perception_source]

    def weight_table(self) -> torch.Tensor:
        from so101_core import SEGMENTATION_CLASSES

        names = list(SEGMENTATION_CLASSES.values())
        missing, unknown = sorted(set(names) - set(self.class_weights)), sorted(set(self.class_weights) - set(names))
        if missing or unknown:
            raise ValueError(
                f"--segmentation.class_weights must give every class of {names}: missing {missing}, unknown {unknown}"
            )
        table = torch.tensor([float(self.class_weights[n]) for n in names])
        if (table < 0).any() or table.sum() <= 0:
            raise ValueError(f"--segmentation.class_weights must be >= 0 and not all 0, got {self.class_weights}")
        return table


@dataclass
class LAQTrainConfig:
    # the corpus: every entry's frame pairs, as one training set (frames must share one size)
    datasets: list[PairDataConfig] = field(default_factory=lambda: [PairDataConfig()])
    model: LAQConfig = field(default_factory=LAQConfig)
    # "none": the plain reconstruction MSE; "segmentation": weighted per pixel by class (segmentation.*)
    loss_weighting: str = "none"
    segmentation: SegmentationWeightingConfig = field(default_factory=SegmentationWeightingConfig)
    steps: int = 100_000
    batch_size: int = 32  # per process
    lr: float = 1e-4
    weight_decay: float = 0.01  # not on the codebook, norms, biases and position embeddings
    warmup_steps: int = 1000  # linear warm-up, then cosine decay to min_lr_ratio * lr at `steps`
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0  # 0: off
    num_workers: int = 4
    seed: int = 1000
    log_freq: int = 50
    save_freq: int = 5000
    image_freq: int = 1000  # 0: only at the end
    image_pairs: int = 8  # rows of each reconstruction grid
    keep_checkpoints: int = 2  # numbered checkpoints kept (the newest ones)
    eval_max_pairs: int | None = 2048  # held-out pairs in metrics.json, evenly spread (None: all)
    mixed_precision: str = "no"  # accelerate's: "no", "bf16", "fp16"
    torch_threads: int | None = None
    output_dir: Path = Path("outputs/hlrp/laq")
    resume: bool = False
    # push output_dir/laq with a model card when training ends: --laq.push_to_hub=true --laq.repo_id=USER/NAME
    laq: HubPushConfig = field(default_factory=HubPushConfig)

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.log_freq < 1 or self.save_freq < 1:
            raise ValueError("steps, batch_size, log_freq and save_freq must be >= 1")
        if not self.datasets:
            raise ValueError("--datasets is empty: give at least one dataset")
        for i, d in enumerate(self.datasets):
            if not 0 <= d.holdout_share < 1:
                raise ValueError(f"--datasets[{i}].holdout_share must be in [0, 1), got {d.holdout_share}")
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"--loss_weighting={self.loss_weighting!r}; choose one of {list(LOSS_WEIGHTINGS)}")
        source = self.segmentation.perception_source
        check_perception_source(source, tuple(PERCEPTION_SOURCES), "--segmentation.perception_source")
        if self.segmentation.perception_record.needs_segmenter and not self.segmentation.segmenter_path:
            raise ValueError("--segmentation.perception_source=segmenter needs --segmentation.segmenter_path")
        self.segmentation.weight_table()  # every class given
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"--mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}")
        self.laq.check("laq")
