"""What the suite's policy configs share: LeRobot's AdamW + cosine-with-warmup presets from `optimizer_*` and
`scheduler_*` fields (HLRP, IMF), the joint limits every policy's postprocessor clips into (all four), and the old
names of renamed fields, under which saved checkpoints still load (SegVLA, SegDepth)."""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from lerobot.configs.policies import CONFIG_NAME
from lerobot.optim import AdamWConfig, CosineDecayWithWarmupSchedulerConfig

from so101_core.joint_limits import TWIN_JOINT_LIMITS, TWIN_SOURCE, check_joint_limits, read_joint_limits

from .steps import CAMERA_RESIZE_MODES

logger = logging.getLogger(__name__)


class RenamedFields:
    """Mixin for a `PreTrainedConfig` whose fields were renamed: `RENAMED_FIELDS` maps each old name to its new name
    and the values renamed with it (old value -> new value).

    The config keeps each old name as a field, `<old>: str | None = None`: LeRobot parses a checkpoint's
    config.json with draccus for the class its `type` names, and draccus refuses a field it does not know, so
    without it a checkpoint that saved the old name would not load (nothing of the suite runs between the
    reading of the file and its parsing). When the config is made, a given old field's value, renamed through the
    value map, becomes the new field's, unless the new field already holds another value than its default (a flag
    given on top of an old checkpoint); the old field goes back to None, and config.json is saved without it.
    List the mixin first: `class MyConfig(RenamedFields, JointLimitsFields, PreTrainedConfig)`.
    """

    RENAMED_FIELDS: ClassVar[dict[str, tuple[str, dict[str, str]]]] = {}

    def __post_init__(self) -> None:
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        for old, (new, values) in self.RENAMED_FIELDS.items():
            value = getattr(self, old)
            if value is None:
                continue
            renamed = values.get(value, value)
            if getattr(self, new) == defaults[new]:
                setattr(self, new, renamed)
            logger.warning(
                "'%s' is the old name of '%s': %s=%r read as %s=%r (a checkpoint saved again saves the new name)",
                old, new, old, value, new, getattr(self, new),
            )  # fmt: skip
            setattr(self, old, None)
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()

    def _save_pretrained(self, save_directory: Path) -> None:
        super()._save_pretrained(save_directory)  # LeRobot's: every field, the old names too
        path = Path(save_directory) / CONFIG_NAME
        saved = json.loads(path.read_text())
        kept = {key: value for key, value in saved.items() if not (key in self.RENAMED_FIELDS and value is None)}
        path.write_text(json.dumps(kept, indent=4))


class AdamWCosinePresets:
    """Mixin for a `PreTrainedConfig` whose lerobot-train presets are AdamW and cosine decay with warmup.

    The config declares the fields (its own defaults): `optimizer_lr`, `optimizer_betas`, `optimizer_weight_decay`,
    `optimizer_grad_clip_norm`, `scheduler_warmup_steps`, `scheduler_decay_steps`, `scheduler_decay_lr`. List the
    mixin before `PreTrainedConfig`: `class MyConfig(AdamWCosinePresets, PreTrainedConfig)`.
    """

    def get_optimizer_preset(self) -> AdamWConfig:
        return AdamWConfig(
            lr=self.optimizer_lr,
            betas=self.optimizer_betas,
            weight_decay=self.optimizer_weight_decay,
            grad_clip_norm=self.optimizer_grad_clip_norm,
        )

    def get_scheduler_preset(self) -> CosineDecayWithWarmupSchedulerConfig:
        return CosineDecayWithWarmupSchedulerConfig(
            peak_lr=self.optimizer_lr,
            decay_lr=self.scheduler_decay_lr,
            num_warmup_steps=self.scheduler_warmup_steps,
            num_decay_steps=self.scheduler_decay_steps,
        )


@dataclass
class CameraResizeFields:
    """Mixin (through `JointLimitsFields`, which every policy of the suite lists): how the preprocessor's
    `ResizeCamerasStep` brings a camera frame of another size than the checkpoint's to that size, in training,
    lerobot-eval and on the arm alike. Both values are recorded in the saved preprocessor when it is made."""

    # "crop": scale the frame with its aspect kept and cut off the centred overhang; "pad": scale it to fit inside
    # and fill the border with zeros. Equal aspects (a 640x480 camera, a 128x96 checkpoint) do neither.
    camera_resize: str = "crop"
    # The largest fraction of a frame that may be cut off (crop) or of the input that may be border (pad) when a
    # camera's aspect differs from the trained one; beyond it the preprocessor refuses the camera.
    camera_aspect_tolerance: float = 0.1

    def __post_init__(self) -> None:
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()
        if self.camera_resize not in CAMERA_RESIZE_MODES:
            raise ValueError(
                f"--policy.camera_resize={self.camera_resize!r}; choose one of {list(CAMERA_RESIZE_MODES)}"
            )
        if not 0.0 <= self.camera_aspect_tolerance < 1.0:
            raise ValueError(
                f"--policy.camera_aspect_tolerance={self.camera_aspect_tolerance} must be in [0, 1) (the fraction "
                "of a frame that may be cropped or padded)"
            )


@dataclass
class JointLimitsFields(CameraResizeFields):
    """Mixin for a `PreTrainedConfig`: the joint limits its postprocessor clips every action into.

    A real arm's limits come from its follower calibration or a `lerobot-find-joint-limits` output
    (`--policy.joint_limits_file`), or are given as numbers (`--policy.joint_limits`); with neither, the twin's MJCF
    ranges, which fit the twin only: a checkpoint meant for a real arm gets that arm's limits at training, or
    afterwards from `so101-joint-limits` (which rewrites them in a copy of the checkpoint). List the mixin before
    `PreTrainedConfig`: `class MyConfig(JointLimitsFields, PreTrainedConfig)`. It brings `CameraResizeFields` along.
    """

    # (low, high) per joint in follower units (degrees, gripper 0-100), shoulder_pan ... gripper. None: from
    # joint_limits_file, else the SO-101 twin's MJCF ranges (so101_core.joint_limits.TWIN_JOINT_LIMITS).
    joint_limits: list[list[float]] | None = None
    # A follower calibration (lerobot-calibrate's <robot id>.json) or a saved lerobot-find-joint-limits output,
    # read into joint_limits when the config is made (kept as the record of where they came from).
    joint_limits_file: str | None = None

    def __post_init__(self) -> None:
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:
            parent()
        if self.joint_limits is None and self.joint_limits_file is not None:
            self.joint_limits = read_joint_limits(self.joint_limits_file)
        elif self.joint_limits is not None and self.joint_limits_file is not None:
            self._refuse_other_limits_file()
        if self.joint_limits is not None:
            self.joint_limits = check_joint_limits(self.joint_limits, self.joint_limits_source)

    def _refuse_other_limits_file(self) -> None:
        """A checkpoint's limits live in its saved postprocessor: a --policy.joint_limits_file given when loading it
        (lerobot-rollout, lerobot-eval) would change this config and not the clip, so the arm would move within the
        old limits while the config names the new file. Refused instead; a file that is not here is only a record."""
        path = Path(self.joint_limits_file).expanduser()
        if not path.is_file():
            return
        from_file = read_joint_limits(path)
        if any(abs(a - b) > 1e-6 for pair, other in zip(from_file, self.joint_limits, strict=True)
               for a, b in zip(pair, other, strict=True)):  # fmt: skip
            raise ValueError(
                f"--policy.joint_limits_file={path} gives {from_file}, but this config already holds the joint limits "
                f"{self.joint_limits} (a checkpoint's, or --policy.joint_limits), and a checkpoint's postprocessor "
                f"goes on clipping into those. To run a checkpoint within this arm's limits, write them into a copy: "
                f"so101-joint-limits --policy.path=<checkpoint> --joint_limits_file={path} --output_dir=<copy>"
            )

    @property
    def joint_limits_source(self) -> str:
        if self.joint_limits_file is not None:
            return f"joint_limits_file {self.joint_limits_file}"
        return "--policy.joint_limits" if self.joint_limits is not None else TWIN_SOURCE

    def resolved_joint_limits(self) -> list[list[float]]:
        """The limits the postprocessor clips into: joint_limits (given or read from the file), else the twin's."""
        return self.joint_limits if self.joint_limits is not None else [list(p) for p in TWIN_JOINT_LIMITS]
