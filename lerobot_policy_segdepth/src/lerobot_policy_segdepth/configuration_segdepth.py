"""SegDepth's configuration: seed 002's DrQ-v2 policy on segmentation ids + disparity, trained by cloning."""

from __future__ import annotations

from dataclasses import dataclass, field

from lerobot.configs import NormalizationMode, PreTrainedConfig
from lerobot.optim import AdamWConfig
from lerobot.utils.constants import OBS_STATE

OBS_SEGDEPTH = "observation.segdepth"  # (..., 2, S, S): class ids, disparity 0-255; written by the preprocessor
ID_ENCODINGS = ("onehot", "embedding", "scaled")
SOURCES = ("ground_truth",)


@PreTrainedConfig.register_subclass("segdepth")
@dataclass
class SegDepthConfig(PreTrainedConfig):
    # --- observation -------------------------------------------------------------------------------
    # The camera whose segmentation and depth the policy sees (seed 002 uses the wrist camera).
    camera: str = "wrist"
    # Where ids and depth come from. "ground_truth": the twin's `observation.images.<camera>_segmentation` and
    # `_depth` keys, recorded by lerobot-record or rendered by the env.
    source: str = "ground_truth"
    image_size: int = 84
    frame_stack: int = 3
    # How class ids enter the encoder. "onehot" (default): one 0/1 channel per class. "embedding": a learned
    # `id_embedding_dim`-d vector per class. "scaled": seed 002's ids/255, which leaves 0.004 between classes
    # (pitfall R3); kept only so DrQ-v2 snapshots trained that way load.
    id_encoding: str = "onehot"
    num_classes: int = 6
    id_embedding_dim: int = 4
    use_state: bool = True  # feed observation.state (normalised) to the actor beside the image features

    # --- networks (facebookresearch/drqv2 shapes) --------------------------------------------------
    encoder_channels: int = 32
    feature_dim: int = 50
    hidden_dim: int = 256
    augment_pad: int = 4  # DrQ-v2 random shift in pixels during training; 0 turns it off

    # --- actions -----------------------------------------------------------------------------------
    # The actor emits 6-D deltas in [-1, 1]: target = present + delta * action_scale (degrees for the body
    # joints, 0-100 units for the gripper), held for `action_repeat` control steps, as seed 002's policy.
    action_scale: list[float] = field(default_factory=lambda: [4.0, 4.0, 4.0, 4.0, 4.0, 15.0])
    action_repeat: int = 1
    # "delta" (seed 002, above) or "absolute": the actor's [-1, 1] output is the absolute joint target,
    # min-max normalised with the dataset's action stats. Cloned delta policies integrate their errors.
    action_mode: str = "delta"

    # --- training ----------------------------------------------------------------------------------
    optimizer_lr: float = 3e-4
    optimizer_weight_decay: float = 0.0
    optimizer_grad_clip_norm: float = 10.0

    normalization_mapping: dict[str, NormalizationMode] = field(
        default_factory=lambda: {
            "VISUAL": NormalizationMode.IDENTITY,
            "STATE": NormalizationMode.MEAN_STD,
            "ACTION": NormalizationMode.IDENTITY,  # actions are already deltas in [-1, 1]
        }
    )

    def __post_init__(self):
        super().__post_init__()
        if self.source not in SOURCES:
            raise ValueError(f"--policy.source={self.source!r}; choose one of {list(SOURCES)}")
        if self.id_encoding not in ID_ENCODINGS:
            raise ValueError(f"--policy.id_encoding={self.id_encoding!r}; choose one of {list(ID_ENCODINGS)}")
        if self.frame_stack < 1 or self.image_size < 16 or self.action_repeat < 1:
            raise ValueError("frame_stack and action_repeat must be >= 1 and image_size >= 16")
        if self.action_mode not in ("delta", "absolute"):
            raise ValueError(f"--policy.action_mode={self.action_mode!r}; choose 'delta' or 'absolute'")
        if self.action_mode == "absolute" and self.normalization_mapping.get("ACTION") == NormalizationMode.IDENTITY:
            # the actor's tanh range [-1, 1] is what MIN_MAX maps the recorded targets to
            self.normalization_mapping = {**self.normalization_mapping, "ACTION": NormalizationMode.MIN_MAX}
        if len(self.action_scale) != 6 or min(self.action_scale) <= 0:
            raise ValueError(f"action_scale needs 6 positive entries (one per joint), got {self.action_scale}")

    @property
    def depth_key(self) -> str:
        return f"observation.images.{self.camera}_depth"

    @property
    def segmentation_key(self) -> str:
        return f"observation.images.{self.camera}_segmentation"

    @property
    def id_channels(self) -> int:
        return {"onehot": self.num_classes, "embedding": self.id_embedding_dim, "scaled": 1}[self.id_encoding]

    def validate_features(self) -> None:
        inputs = self.input_features or {}
        needed = [self.depth_key, self.segmentation_key] + ([OBS_STATE] if self.use_state else [])
        missing = [key for key in needed if key not in inputs]
        if missing:
            raise ValueError(
                f"segdepth (source={self.source}, camera={self.camera}) needs input features {missing}; "
                f"the dataset or env provides {sorted(inputs)}. Record with --robot.depth=true "
                f"--robot.segmentation=true, evaluate with --env.depth=true --env.segmentation=true, "
                f"or set --policy.camera / --policy.use_state=false."
            )
        for key in needed[:2]:
            shape = tuple(inputs[key].shape)
            if len(shape) != 3 or shape[0] != 1:
                raise ValueError(f"'{key}' must be a single-channel image (1, H, W), got shape {shape}")

    @property
    def observation_delta_indices(self) -> list[int]:
        return list(range(1 - self.frame_stack, 1))

    @property
    def action_delta_indices(self) -> None:
        return None

    @property
    def reward_delta_indices(self) -> None:
        return None

    def get_optimizer_preset(self) -> AdamWConfig:
        return AdamWConfig(
            lr=self.optimizer_lr,
            weight_decay=self.optimizer_weight_decay,
            grad_clip_norm=self.optimizer_grad_clip_norm,
        )

    def get_scheduler_preset(self) -> None:
        return None
