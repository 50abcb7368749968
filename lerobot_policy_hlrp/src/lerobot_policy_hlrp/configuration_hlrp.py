"""The `hlrp` policy's configuration (HLRP's stage 3, after felixmin/high-level-robot-planner): the stage-2 shared
core (SmolVLM2 trunk + heads), initialised from a stage-2 artifact or from scratch, fine-tuned on SO-101 data with an
optional latent loss."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lerobot.configs import FeatureType, NormalizationMode, PreTrainedConfig
from lerobot.utils.constants import OBS_STATE

from so101_policy_common.policy_config import AdamWCosinePresets, JointLimitsFields

from .trunk import CoreConfig

INIT_MODES = ("artifact", "scratch")
NON_RGB_SUFFIXES = ("_depth", "_segmentation")  # the twin's ground-truth maps; the trunk sees RGB only


@PreTrainedConfig.register_subclass("hlrp")
@dataclass
class HLRPConfig(JointLimitsFields, AdamWCosinePresets, PreTrainedConfig):
    # "artifact": the core (trunk + heads) and its sizes come from --policy.stage2_artifact, loaded strictly;
    # "scratch": the core is built from --policy.core.* (SmolVLM2's pretrained weights unless load_vlm_weights=false)
    init_mode: str = "scratch"
    stage2_artifact: str | None = None
    core: CoreConfig = field(default_factory=CoreConfig)
    load_vlm_weights: bool = True
    # Filled when the core is first built: SmolVLM's config, so a checkpoint rebuilds it offline (weights follow)
    vlm_config: dict | None = None
    # Filled from the artifact's manifest (init_mode=artifact): its folder, stage 2's mode and supervision
    # (latent_only, latent_and_actions, actions_only), step and LAQ; kept in every checkpoint's config.json so that
    # a report can say what the policy was pretrained on. None: no stage 2 (scratch)
    stage2: dict | None = None

    # Cameras (observation.images.<name>) the trunk sees, in order; None: every RGB camera of the dataset, sorted
    cameras: list[str] | None = None
    use_state: bool = True  # the state enters through a zero-initialised projection added to the trunk's output
    n_action_steps: int = 25  # of the core's chunk_size actions, executed before the next chunk

    # Optional latent loss: the frozen LAQ labels (frame t, frame t + laq_gap_frames) of laq_camera, and the core's
    # latent-flow head keeps predicting them while the action head is fine-tuned. 0 turns it off.
    latent_loss_weight: float = 0.0
    laq_path: str | None = None  # None with an artifact: the LAQ its manifest names (checked by hash)
    laq_camera: str | None = None  # None: the first camera
    laq_gap_frames: int = 9  # LeRobot's delta indices are in frames: 9 = 0.3 s at the twin's 30 fps

    optimizer_lr: float = 1e-4
    optimizer_betas: tuple[float, float] = (0.9, 0.95)
    optimizer_weight_decay: float = 1e-10
    optimizer_grad_clip_norm: float = 10.0
    scheduler_warmup_steps: int = 1_000
    scheduler_decay_steps: int = 30_000
    scheduler_decay_lr: float = 2.5e-6

    normalization_mapping: dict[str, NormalizationMode] = field(
        default_factory=lambda: {
            "VISUAL": NormalizationMode.IDENTITY,  # the trunk maps [0, 1] pixels to SmolVLM's [-1, 1] itself
            "STATE": NormalizationMode.MEAN_STD,
            "ACTION": NormalizationMode.MEAN_STD,
        }
    )

    def __post_init__(self):
        super().__post_init__()
        if self.init_mode not in INIT_MODES:
            raise ValueError(f"--policy.init_mode={self.init_mode!r}; choose one of {list(INIT_MODES)}")
        if self.init_mode == "artifact":
            if not self.stage2_artifact:
                raise ValueError("--policy.init_mode=artifact needs --policy.stage2_artifact=<hlrp-train-trunk output>")
            if Path(self.stage2_artifact).exists():  # gone at evaluation time is fine: the checkpoint has it all
                self._core_from_artifact()
        if self.n_action_steps > self.core.chunk_size:
            raise ValueError(
                f"n_action_steps ({self.n_action_steps}) cannot exceed core.chunk_size ({self.core.chunk_size})"
            )
        if self.latent_loss_weight > 0 and not self.laq_path and self.stage2 and self.stage2.get("laq_folder"):
            self.laq_path = self.stage2["laq_folder"]
        if self.latent_loss_weight > 0 and not self.laq_path:
            raise ValueError("--policy.latent_loss_weight > 0 needs --policy.laq_path (the stage-1 LAQ)")

    def _core_from_artifact(self) -> None:
        """The artifact fixes the core; a core field set on the command line must agree with it."""
        import dataclasses

        from .artifact import core_config, read_manifest, stage2_record

        manifest = read_manifest(self.stage2_artifact)
        stored = core_config(manifest)
        default = CoreConfig()
        clash = {
            f.name: (getattr(self.core, f.name), getattr(stored, f.name))
            for f in dataclasses.fields(CoreConfig)
            if getattr(self.core, f.name) not in (getattr(default, f.name), getattr(stored, f.name))
        }
        if clash:
            lines = ", ".join(f"{k}={a!r} (artifact: {b!r})" for k, (a, b) in clash.items())
            raise ValueError(f"--policy.core.* conflicts with stage-2 artifact {self.stage2_artifact}: {lines}")
        self.core = stored
        self.vlm_config = manifest["vlm_config"]
        self.stage2 = stage2_record(manifest, self.stage2_artifact)

    # ----- features ---------------------------------------------------------------------------------------------
    @property
    def camera_keys(self) -> list[str]:
        return [f"observation.images.{name}" for name in self.cameras or []]

    @property
    def laq_key(self) -> str:
        return f"observation.images.{self.laq_camera or (self.cameras or [''])[0]}"

    def validate_features(self) -> None:
        inputs = self.input_features or {}
        rgb = sorted(
            k
            for k, ft in inputs.items()
            if ft.type is FeatureType.VISUAL and not k.endswith(NON_RGB_SUFFIXES) and ft.shape[0] == 3
        )
        if self.cameras is None:
            self.cameras = [k.removeprefix("observation.images.") for k in rgb]
        missing = [k for k in self.camera_keys if k not in rgb]
        if missing or not self.cameras:
            raise ValueError(
                f"hlrp needs the RGB cameras {missing or '(none given)'}; the dataset or env provides {rgb}. "
                "Pass --policy.cameras=[...] with names among them."
            )
        if self.latent_loss_weight > 0 and self.laq_key not in rgb:
            raise ValueError(f"--policy.laq_camera: '{self.laq_key}' is not an RGB camera of the dataset ({rgb})")
        for key in [k for k, ft in inputs.items() if ft.type is FeatureType.VISUAL and k not in self.camera_keys]:
            del inputs[key]  # the policy declares exactly what it reads, so lerobot-eval asks for nothing else
        if self.use_state and OBS_STATE not in inputs:
            raise ValueError(f"hlrp with use_state=true needs '{OBS_STATE}'; inputs are {sorted(inputs)}")
        if self.action_feature.shape[0] > self.core.action_dim:
            raise ValueError(
                f"the dataset's action has {self.action_feature.shape[0]} dims, more than the core's action_dim "
                f"{self.core.action_dim}"
            )

    @property
    def observation_delta_indices(self) -> list[int] | None:
        # the LAQ pair needs frame t + gap; every observation key gets it, and only index 0 feeds the trunk
        return [0, self.laq_gap_frames] if self.latent_loss_weight > 0 else None

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(self.core.chunk_size))

    @property
    def reward_delta_indices(self) -> None:
        return None
