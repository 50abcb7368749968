"""SegDepth's configuration: pick-101's DrQ-v2 policy on segmentation ids + disparity (ggand0/pick-101), trained by
cloning."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import ClassVar

from lerobot.configs import FeatureType, NormalizationMode, PolicyFeature, PreTrainedConfig
from lerobot.optim import AdamWConfig
from lerobot.utils.constants import ACTION, OBS_STATE

from so101_core.segmentation import check_perception_source
from so101_policy_common.policy_config import JointLimitsFields, RenamedFields
from so101_run_infra.config_decoding import renamed_field

from .constants import DEPTH_ANYTHING_V2_SMALL, OBS_SEGDEPTH, packed_length
from .perception_sources import PERCEPTION_SOURCES, PerceptionSource

# What `segdepth-precompute` records in the stored feature's info and the policy must match.
PRECOMPUTED_MUST_MATCH = ("camera", "image_size", "num_classes")
ID_ENCODINGS = ("onehot", "embedding", "scaled")
ACTION_MODES = ("delta", "absolute", "chained")
# A config.json or precomputed copy saved before the rename names perception_source "source", and its value
# segmenter_depth_anything "models".
LEGACY_VALUES = {"models": "segmenter_depth_anything"}

logger = logging.getLogger(__name__)


@PreTrainedConfig.register_subclass("segdepth")
@dataclass
class SegDepthConfig(RenamedFields, JointLimitsFields, PreTrainedConfig):
    RENAMED_FIELDS: ClassVar[dict] = {"source": ("perception_source", LEGACY_VALUES)}  # see RenamedFields

    # --- observation -------------------------------------------------------------------------------
    # The camera whose segmentation and depth the policy sees (pick-101 uses the wrist camera).
    camera: str = "wrist"
    # Where ids and depth come from. "ground_truth": the twin's `observation.images.<camera>_segmentation` and
    # `_depth` keys, recorded by lerobot-record or rendered by the env. "segmenter_depth_anything": the RGB key
    # `observation.images.<camera>` through the EfficientViT segmenter (ids) and Depth Anything V2 (disparity), as
    # pick-101. "segmenter": ids from the segmenter on the RGB camera, depth from the twin's depth map
    # (`observation.images.<camera>` and `_depth`): the twin-side stand-in for "segmenter_depth_anything" where
    # Depth Anything's weights cannot be had. "segmenter_depth": ids and disparity both from the segmenter on the RGB
    # camera, through its depth head (so101-seg-train --model.depth_head=true), one small network in place of the
    # segmenter and Depth Anything: RGB alone, at control rate on a CPU. The policy's weights are the same for all:
    # only the preprocessor differs.
    perception_source: str = "ground_truth"
    # perception_source as checkpoints of 0.2.0 saved it ("models" for segmenter_depth_anything): read into
    # perception_source when given (RenamedFields); never saved.
    source: str | None = None
    # --- the segmenter's sources (segmenter_path, segmenter_input_size, perception_device); depth_model and
    # depth_input_size for "segmenter_depth_anything" only -------------------------------------------------------
    segmenter_path: str | None = None  # a folder written by so101_segmenter's save_segmenter
    depth_model: str = DEPTH_ANYTHING_V2_SMALL  # Hub id or local folder of a DepthAnythingForDepthEstimation
    # Both models see only the centre square, resized to these sides (Depth Anything: a multiple of 14), rather
    # than pick-101's full 640x480 frame; their outputs are resized to image_size.
    segmenter_input_size: int = 168
    depth_input_size: int = 196
    perception_device: str | None = None  # where the two models run; None: CUDA when present, else CPU
    image_size: int = 84
    frame_stack: int = 3
    # Train on a copy made by `segdepth-precompute --stack_frames=true`, whose rows already hold the frame stack:
    # LeRobot then reads one row per sample instead of a delta window of frame_stack rows (4x less loader CPU).
    # Training only; inference keeps its own frame buffer either way.
    stacked_frames: bool = False
    # How class ids enter the encoder. "onehot" (default): one 0/1 channel per class. "embedding": a learned
    # `id_embedding_dim`-d vector per class. "scaled": pick-101's ids/255, which leaves 0.004 between classes
    # (almost no signal); kept only so DrQ-v2 snapshots trained that way load.
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
    # joints, 0-100 units for the gripper), held for `action_repeat` control steps, as pick-101's policy.
    action_scale: list[float] = field(default_factory=lambda: [4.0, 4.0, 4.0, 4.0, 4.0, 15.0])
    action_repeat: int = 1
    # "delta" (pick-101's, above) or "absolute": the actor's [-1, 1] output is the absolute joint target,
    # min-max normalised with the dataset's action stats. Cloned delta policies integrate their errors.
    # "chained": for `chained_joints`, a delta added to the target sent last, not to the present reading (trained on
    # the recorded target minus the one before), so a reading that lags the targets (latency, a slow loop) does not
    # pull them back.
    action_mode: str = "delta"
    # The gripper is left out by default: from its reading, its step is a steady squeeze on the cube.
    chained_joints: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    # Train on the action this many control periods after the frame (the dataset's action at t + lead): a target for
    # when it reaches the servos on an arm whose loop lags, not for when the frame was taken. 0: the frame's own.
    action_lead: int = 0
    # Also feed the actor the last `action_history` joint targets sent, relative to the present reading in action_scale
    # units; trained on the recorded targets just before the label (t + lead - H .. t + lead - 1). With
    # action_history = action_lead, under a latency of `lead` periods these are the targets still on their way to the
    # servos when the frame is read. 0: none.
    action_history: int = 0
    # Inference only, for a delta policy trained from the reading: add each arm step to the target sent last, kept
    # within this many degrees of the reading, instead of to the reading, which under latency lags the targets in
    # flight (docs/segdepth.md). Set at lerobot-eval or lerobot-rollout (--policy.step_from_sent_deg); 0: the reading.
    step_from_sent_deg: float = 0.0
    # With step_from_sent_deg, also keep each joint's lead within the size of its last this-many steps, what the
    # targets in flight can have left undone, so a joint held at a contact does not wind its target up to the cap.
    # 0: the cap alone.
    step_from_sent_steps: int = 0
    # With step_from_sent_deg, keep a joint's lead only where the target sent lies the way its last step went (the
    # arm lagging), and step from the reading where the arm has passed its target (the ideal arm overshoots by about
    # a fifth of a step in free motion, and stepping back from there slows it). false: the lead either way.
    step_from_sent_ahead: bool = False
    # Inference only, for a delta policy run by a loop slower than its recording's: each step times this, the loop's
    # period over the recording's (3 for a 10 Hz loop and a 30 Hz recording), so the arm keeps the demonstrations'
    # pace. Set at lerobot-eval or lerobot-rollout (--policy.step_scale); 1: as trained.
    step_scale: float = 1.0
    # The postprocessor clips every target into the joint limits (joint_limits / joint_limits_file, from
    # JointLimitsFields), so neither a delta near a limit nor an absolute target outside the range reaches the motors.

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
        self._check_perception_source()
        if self.segmenter_input_size < 16 or self.depth_input_size < 14 or self.depth_input_size % 14:
            raise ValueError(
                f"segmenter_input_size ({self.segmenter_input_size}) must be >= 16 and depth_input_size "
                f"({self.depth_input_size}) a positive multiple of Depth Anything's patch size 14"
            )
        if self.id_encoding not in ID_ENCODINGS:
            raise ValueError(f"--policy.id_encoding={self.id_encoding!r}; choose one of {list(ID_ENCODINGS)}")
        if self.frame_stack < 1 or self.image_size < 16 or self.action_repeat < 1:
            raise ValueError("frame_stack and action_repeat must be >= 1 and image_size >= 16")
        if not 0 <= self.action_lead <= 30:
            raise ValueError(f"--policy.action_lead={self.action_lead}: a lead of 0-30 control periods")
        if self.action_mode not in ACTION_MODES:
            raise ValueError(f"--policy.action_mode={self.action_mode!r}; choose one of {list(ACTION_MODES)}")
        if self.action_mode == "chained" and (
            not self.chained_joints
            or len(set(self.chained_joints)) != len(self.chained_joints)
            or not set(self.chained_joints) <= set(range(6))
        ):
            raise ValueError(
                f"--policy.chained_joints={self.chained_joints}: distinct joint indices 0-5 (0-4 the arm, 5 the "
                "gripper), at least one"
            )
        if not 0 <= self.action_history <= 10:
            raise ValueError(f"--policy.action_history={self.action_history}: 0-10 targets")
        if self.action_history and (self.action_mode != "delta" or self.action_repeat != 1):
            raise ValueError(
                f"--policy.action_history={self.action_history} with --policy.action_mode={self.action_mode} and "
                f"--policy.action_repeat={self.action_repeat}: a history of the targets sent needs action_mode=delta "
                "and action_repeat=1 (one target a control period)"
            )
        if not 0.0 <= self.step_from_sent_deg <= 30.0:
            raise ValueError(f"--policy.step_from_sent_deg={self.step_from_sent_deg}: 0-30 degrees")
        if not 0 <= self.step_from_sent_steps <= 16 or (self.step_from_sent_steps and not self.step_from_sent_deg):
            raise ValueError(
                f"--policy.step_from_sent_steps={self.step_from_sent_steps}: 0-16 steps, and only with "
                f"--policy.step_from_sent_deg > 0 (got {self.step_from_sent_deg})"
            )
        if self.step_from_sent_ahead and not self.step_from_sent_deg:
            raise ValueError("--policy.step_from_sent_ahead=true needs --policy.step_from_sent_deg > 0 (got 0)")
        if self.step_from_sent_deg and (self.action_mode != "delta" or self.action_history or self.action_repeat != 1):
            raise ValueError(
                f"--policy.step_from_sent_deg={self.step_from_sent_deg} with --policy.action_mode={self.action_mode}, "
                f"--policy.action_history={self.action_history} and --policy.action_repeat={self.action_repeat}: "
                "stepping from the target sent needs a delta policy without a history, one target a control period"
            )
        if not 1.0 <= self.step_scale <= 10.0 or (self.step_scale != 1.0 and self.action_mode == "absolute"):
            raise ValueError(
                f"--policy.step_scale={self.step_scale} with --policy.action_mode={self.action_mode}: 1-10, the loop's "
                "period over the recording's, and only for steps (action_mode delta or chained)"
            )
        if self.action_mode == "chained" and self.action_repeat != 1:
            raise ValueError(
                f"--policy.action_mode=chained with --policy.action_repeat={self.action_repeat}: chained deltas are "
                "trained one control period apart; use action_repeat=1"
            )
        if self.action_mode == "absolute" and self.normalization_mapping.get("ACTION") == NormalizationMode.IDENTITY:
            # the actor's tanh range [-1, 1] is what MIN_MAX maps the recorded targets to
            self.normalization_mapping = {**self.normalization_mapping, "ACTION": NormalizationMode.MIN_MAX}
        if len(self.action_scale) != 6 or min(self.action_scale) <= 0:
            raise ValueError(f"action_scale needs 6 positive entries (one per joint), got {self.action_scale}")

    def _check_perception_source(self) -> None:
        """A source the plugin knows, given the models it runs and none it does not."""
        check_perception_source(self.perception_source, tuple(PERCEPTION_SOURCES), "--policy.perception_source")
        source = self.perception_record
        flag = f"--policy.perception_source={self.perception_source}"
        if source.segmenter_path_needed and not self.segmenter_path:
            raise ValueError(f"{flag} needs --policy.segmenter_path={source.segmenter_path_needed}")
        if source.depth_model_unused and self.depth_model != DEPTH_ANYTHING_V2_SMALL:
            raise ValueError(
                f"--policy.depth_model={self.depth_model!r} is not used with {flag}, "
                + source.depth_model_unused.format(depth_key=self.depth_key)
            )

    @property
    def perception_record(self) -> PerceptionSource:
        """The record of `perception_source`: what it reads and needs, and its observation steps."""
        return PERCEPTION_SOURCES[self.perception_source]

    @property
    def depth_key(self) -> str:
        return f"observation.images.{self.camera}_depth"

    @property
    def segmentation_key(self) -> str:
        return f"observation.images.{self.camera}_segmentation"

    @property
    def rgb_key(self) -> str:
        return f"observation.images.{self.camera}"

    @property
    def image_keys(self) -> list[str]:
        """The camera keys this perception source reads: the RGB camera for the models, the twin's depth and
        segmentation, or the RGB camera (segmenter) and the twin's depth."""
        streams = {"rgb": self.rgb_key, "depth": self.depth_key, "segmentation": self.segmentation_key}
        return [streams[stream] for stream in self.perception_record.reads]

    def image_channels(self, key: str) -> int:
        """Channels of a camera key this perception source reads: 3 for the RGB camera, 1 for the twin's depth and
        segmentation."""
        return 3 if key == self.rgb_key else 1

    @property
    def id_channels(self) -> int:
        return {"onehot": self.num_classes, "embedding": self.id_embedding_dim, "scaled": 1}[self.id_encoding]

    @property
    def precomputed_shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Shapes a stored observation.segdepth may have for this config: uint8 (2, S, S), or packed int64 words;
        with `stacked_frames`, frame_stack of either per row."""
        s = self.image_size
        lead = (self.frame_stack,) if self.stacked_frames else ()
        return (*lead, 2, s, s), (*lead, packed_length(2, s))

    def _check_frame_layout(self, shape: tuple[int, ...], info: dict) -> None:
        """A stacked copy (rows of T frames) needs stacked_frames and T == frame_stack; a per-frame copy needs
        stacked_frames off. Raised before LeRobot reads a sample, naming the flag that fixes it."""
        stacked = "frame_stack" in info or len(shape) in (2, 4)
        if stacked and not self.stacked_frames:
            raise ValueError(
                f"'{OBS_SEGDEPTH}' in the dataset holds {info.get('frame_stack', shape[0])} frames per row "
                "(segdepth-precompute --stack_frames=true): train with --policy.stacked_frames=true"
            )
        if self.stacked_frames and not stacked:
            raise ValueError(
                f"--policy.stacked_frames=true, but '{OBS_SEGDEPTH}' in the dataset holds one frame per row: re-run "
                "segdepth-precompute with --stack_frames=true, or train with --policy.stacked_frames=false"
            )
        stored = info.get("frame_stack", shape[0]) if stacked else self.frame_stack
        if stored != self.frame_stack:
            raise ValueError(
                f"'{OBS_SEGDEPTH}' in the dataset holds stacks of {stored} frames, but --policy.frame_stack="
                f"{self.frame_stack}: train with --policy.frame_stack={stored}, or re-run segdepth-precompute "
                f"--stack_frames=true --policy.frame_stack={self.frame_stack}"
            )

    def set_dataset_feature_metadata(self, features: dict) -> None:
        """Called by LeRobot's make_policy with the dataset's features, before the policy is built: a dataset
        that already holds observation.segdepth (segdepth-precompute) must have been made for this config."""
        feature = features.get(OBS_SEGDEPTH)
        if feature is None:
            if self.stacked_frames:
                raise ValueError(
                    f"--policy.stacked_frames=true trains on a copy made by segdepth-precompute --stack_frames=true, "
                    f"but the dataset has no '{OBS_SEGDEPTH}'"
                )
            return
        # a copy made before the rename records perception_source as "source"
        info = renamed_field(feature.get("info") or {}, "source", "perception_source", LEGACY_VALUES)
        self._precomputed = {"dtype": feature.get("dtype"), "shape": tuple(feature["shape"]), "info": info}
        self._check_frame_layout(tuple(feature["shape"]), info)
        expected = {"camera": self.camera, "image_size": self.image_size, "num_classes": self.num_classes}
        wrong = {k: info[k] for k in PRECOMPUTED_MUST_MATCH if k in info and info[k] != expected[k]}
        s = self.image_size
        if tuple(feature["shape"]) not in self.precomputed_shapes:
            wrong.setdefault("image_size", info.get("image_size", f"? (shape {list(feature['shape'])})"))
        if wrong:
            raise ValueError(
                f"'{OBS_SEGDEPTH}' in the dataset is {self._describe_precomputed()}; this policy expects "
                f"(2, {s}, {s}) (stored {list(self.precomputed_shapes[0])} or packed "
                f"{list(self.precomputed_shapes[1])}) with {', '.join(f'{k}={expected[k]}' for k in wrong)}. "
                "Re-run segdepth-precompute "
                f"on the raw dataset with {' '.join(f'--policy.{k}={expected[k]}' for k in wrong)}, or train with "
                f"{' '.join(f'--policy.{k}={v}' for k, v in wrong.items())}."
            )
        if "perception_source" in info and info["perception_source"] != self.perception_source:
            logger.warning(
                "'%s' was precomputed from perception_source=%s; this policy's preprocessor uses "
                "perception_source=%s at inference",
                OBS_SEGDEPTH,
                info["perception_source"],
                self.perception_source,
            )

    def _describe_precomputed(self) -> str:
        made = getattr(self, "_precomputed", None)
        if made is None:
            return "precomputed"
        keys = ("camera", "perception_source", "image_size", "num_classes")
        info = ", ".join(f"{k}={made['info'][k]}" for k in keys if k in made["info"]) or "no info"
        return f"stored as {made['dtype']} {list(made['shape'])} (precomputed with {info})"

    @property
    def state_dim(self) -> int:
        """The joint state's size, from its input feature (0 without the state)."""
        if not self.use_state:
            return 0
        return int((self.input_features or {})[OBS_STATE].shape[-1])

    @property
    def action_dim(self) -> int:
        """The action's size, from its output feature (a delta per joint, scaled by action_scale)."""
        feature = (self.output_features or {}).get(ACTION)
        return len(self.action_scale) if feature is None else int(feature.shape[-1])

    def validate_features(self) -> None:
        if self.action_dim != len(self.action_scale):
            raise ValueError(
                f"'{ACTION}' has {self.action_dim} entries, but --policy.action_scale gives {len(self.action_scale)} "
                "(one per joint): segdepth acts on the SO-101's joints as the dataset or env lists them"
            )
        inputs = self.input_features or {}
        images = self.image_keys
        if OBS_SEGDEPTH in inputs:  # a dataset precomputed by segdepth-precompute: no raw keys needed
            s, shape = self.image_size, tuple(inputs[OBS_SEGDEPTH].shape)
            if shape not in self.precomputed_shapes:
                raise ValueError(
                    f"'{OBS_SEGDEPTH}' is {list(shape)} ({self._describe_precomputed()}), but --policy.image_size={s} "
                    f"expects (2, {s}, {s}) (or {list(self.precomputed_shapes[1])} packed): re-run "
                    f"segdepth-precompute with --policy.image_size={s}, or train with the image_size it was made for"
                )
            # The policy's input features are what its preprocessor runs on at inference, the raw keys; the stored
            # column only spares training the decoding. Left in, LeRobot would type the (2, S, S) uint8 column
            # STATE (mean/std normalised) and refuse the twin's cameras at lerobot-eval (its visual features must
            # match the policy's). So it is swapped for the raw keys (shapes as recorded by segdepth-precompute),
            # and a checkpoint trained on the copy has the features of one trained on the raw dataset.
            del inputs[OBS_SEGDEPTH]
            recorded = (getattr(self, "_precomputed", None) or {}).get("info", {}).get("raw_features", {})
            for key in images:
                if key not in inputs:
                    inputs[key] = PolicyFeature(
                        type=FeatureType.VISUAL, shape=tuple(recorded.get(key, (self.image_channels(key), s, s)))
                    )
        needed = images + ([OBS_STATE] if self.use_state else [])
        missing = [key for key in needed if key not in inputs]
        if missing:
            fix = self.perception_record.missing_cameras_fix.format(camera=self.camera)
            raise ValueError(
                f"segdepth (perception_source={self.perception_source}, camera={self.camera}) needs input features "
                f"{missing}; the dataset or env provides {sorted(inputs)}. {fix}, "
                f"or set --policy.camera / --policy.use_state=false (or train on a copy made by "
                f"segdepth-precompute, which holds '{OBS_SEGDEPTH}')."
            )
        for key in images:
            shape, channels = tuple(inputs[key].shape), self.image_channels(key)
            if len(shape) != 3 or shape[0] != channels:
                raise ValueError(
                    f"'{key}' must be an image ({channels}, H, W) for perception_source={self.perception_source}, "
                    f"got {shape}"
                )

    @property
    def observation_delta_indices(self) -> list[int] | None:
        if self.stacked_frames:  # the stored rows hold the window already
            return None
        return list(range(1 - self.frame_stack, 1))

    @property
    def history_dim(self) -> int:
        """The actor's extra input: action_history targets of action_dim joints each."""
        return self.action_history * self.action_dim

    @property
    def action_delta_indices(self) -> list[int] | None:
        if self.action_mode == "chained":  # each target and the one before it
            return [self.action_lead - 1, self.action_lead]
        if self.action_history:  # the targets before the label, then the label
            return list(range(self.action_lead - self.action_history, self.action_lead + 1))
        return [self.action_lead] if self.action_lead else None

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
