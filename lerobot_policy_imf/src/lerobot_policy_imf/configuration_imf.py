"""The `imf` policy's configuration (after roboimi's SigLIP2 multiview plan for an IMF/AttnRes policy): a frozen
SigLIP2 encoder shared by every camera, a projection per view, the robot state, an optional projection of the whole
condition to 384, and a one-step improved-MeanFlow action head on an Attention-Residuals transformer."""

from __future__ import annotations

from dataclasses import dataclass, field

from lerobot.configs import FeatureType, NormalizationMode, PolicyFeature, PreTrainedConfig
from lerobot.policies.rtc.configuration_rtc import RTCConfig
from lerobot.utils.constants import OBS_STATE

from so101_policy_common.policy_config import AdamWCosinePresets, JointLimitsFields

SIGLIP2_BASE_256 = "google/siglip2-base-patch16-256"  # model_type "siglip": loads as SiglipVisionModel (R6)
OBS_VIEW_EMBEDDINGS = "observation.view_embeddings"  # (V, D) per frame, written by imf-cache-embeddings
# What imf-cache-embeddings records in the cached feature's info and the policy must match (else the cache is stale)
CACHE_MUST_MATCH = ("encoder", "encoder_fingerprint", "encoder_image_size", "cameras")
ENCODERS = ("siglip", "cnn")
RESIDUALS = ("attnres", "plain")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
NON_RGB_SUFFIXES = ("_depth", "_segmentation")  # the twin's ground-truth maps; this policy sees RGB only


@PreTrainedConfig.register_subclass("imf")
@dataclass
class IMFConfig(JointLimitsFields, AdamWCosinePresets, PreTrainedConfig):
    # --- observation ---------------------------------------------------------------------------------
    n_obs_steps: int = 2  # frames of history (the condition is (B, T, views * per_view_dim + state_dim))
    # Camera names (observation.images.<name>), in the order their features are concatenated; None: every RGB
    # camera of the dataset, sorted. The twin's *_depth / *_segmentation maps are never views.
    cameras: list[str] | None = None
    use_state: bool = True

    # --- vision ----------------------------------------------------------------------------------------
    # "siglip": the frozen SigLIP2 vision tower, shared by all views (the multiview plan's). "cnn": a small trainable
    # CNN, shared by all views, for runs where no pretrained weights exist (the twin here).
    vision_encoder: str = "siglip"
    siglip_model: str = SIGLIP2_BASE_256  # Hub id or local folder of a SigLIP vision tower
    # False: build the tower from its config with random weights (benchmarks at the real size, tests).
    load_encoder_weights: bool = True
    # Filled when the tower is first built: its transformers config, so a checkpoint rebuilds it offline (the
    # weights are in the checkpoint's model.safetensors).
    siglip_config: dict | None = None
    # The encoder's input side. Frames already this size go in as they are (the multiview plan's raw-256 datasets);
    # others are resized to it, as the plan does at evaluation. SigLIP: must equal the tower's image_size.
    encoder_image_size: int = 256
    cnn_channels: list[int] = field(default_factory=lambda: [32, 64, 128, 128])
    cnn_keypoints: int = 32  # spatial-softmax keypoints: the CNN's output is 2 * cnn_keypoints wide
    random_shift_pad: int = 4  # CNN only: DrQ-style random shift in training (pixels at encoder_image_size)
    per_view_dim: int = 96  # each view's pooled feature is projected to this (the plan's runs: 96 and 192)
    # Optional linear projection of the whole per-step condition to this size (the plan's 384, the head's
    # interface); None: the head embeds the raw condition.
    condition_dim: int | None = 384

    # --- head --------------------------------------------------------------------------------------------
    horizon: int = 16  # actions predicted per chunk, from the current step
    n_action_steps: int = 8  # of which this many are executed before the next chunk
    n_emb: int = 384
    n_layer: int = 12
    n_head: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    # "attnres": each sublayer reads a learned softmax mix over depth of the embedding and all earlier sublayer
    # outputs (Attention Residuals); "plain": the usual pre-norm residual sum, to ablate.
    residual: str = "attnres"

    # --- improved MeanFlow --------------------------------------------------------------------------------
    num_inference_steps: int = 1
    # Seed of the sampling noise, reset with the policy at every episode; None: torch's global generator.
    inference_noise_seed: int | None = None
    # Act through torch.compile'd copies of the encoder and head with inductor's freezing (weights folded in as
    # constants, prepacked for oneDNN on CPUs): benchmarks/imf_speed.py's `--compile=true --freeze=true`. The copies are
    # made and compiled at the first chunk in eval mode (~35 s for the twin-size policy on 2 CPU cores; needs a C++
    # compiler on CPUs; they hold a second copy of the weights) and made again after train(), eval() or a move to
    # another device or dtype: call eval() after loading new weights. Training is unaffected.
    compile_inference: bool = False
    # Real-time chunking, set by `lerobot-rollout --inference.type=rtc` (LeRobot's RTCConfig, as SmolVLA's): each
    # chunk's first actions are steered toward the previous chunk's leftover. None: plain sampling.
    rtc_config: RTCConfig | None = None
    # Control periods from a frame to its chunk's actions reaching the servos (the arm's latency over the loop's
    # period, rounded: 3 for 100 ms at 30 Hz, as so101-twin-identify measures it). select_action (lerobot-eval)
    # then executes each chunk from that action on, the ones meant for when they arrive, as RTC drops the actions
    # an inference's delay has passed; the servos still play the previous chunk meanwhile. 0: from the first.
    action_delay_steps: int = 0
    # With action_delay_steps, steer each chunk's first actions toward the previous chunk's that the servos still
    # play while it is on its way: RTC's guidance (LeRobot's RTCProcessor, its default schedule and horizon clamped
    # to the leftover) in lerobot-eval's simulated time, where lerobot-rollout runs it on the wall clock.
    delay_guidance: bool = False
    # Train through a torch.compile'd loss (the head's no-grad velocity, its forward-mode derivative and the
    # compound, fused by inductor; backward included): each eager step launches thousands of small kernels, which
    # bound imf's cached-embedding step on a GPU. The first step pays the compilation (~1 min on 2 CPU
    # cores; needs a C++ compiler on CPUs). Same loss and gradients as eager to float32 rounding (tests/test_imf.py).
    # Where inductor cannot build it (on an H200 with torch 2.11, Triton failed on one fused kernel) training warns
    # and goes on in eager mode.
    compile_train: bool = False
    # torch.compile's mode for compile_train: "default", "reduce-overhead" (CUDA graphs on a GPU: one launch per
    # graph; a batch of another size compiles again), "max-autotune", "max-autotune-no-cudagraphs".
    compile_train_mode: str = "default"
    time_mu: float = -0.4  # logit-normal time sampler
    time_sigma: float = 1.0
    equal_time_share: float = 0.5  # share of training samples with r = t (plain flow matching)
    # Adaptive loss weight: each sample's squared error is divided by sg((error + eps)^p), as the iMF code does
    # (p = 1, eps = 0.01); p = 0 gives plain MSE.
    loss_power: float = 1.0
    loss_eps: float = 0.01

    # --- training -------------------------------------------------------------------------------------------
    optimizer_lr: float = 1e-4
    optimizer_betas: tuple[float, float] = (0.9, 0.95)
    optimizer_weight_decay: float = 1e-4
    optimizer_grad_clip_norm: float = 1.0
    scheduler_warmup_steps: int = 500
    scheduler_decay_steps: int = 50_000
    scheduler_decay_lr: float = 1e-5

    normalization_mapping: dict[str, NormalizationMode] = field(
        default_factory=lambda: {
            "VISUAL": NormalizationMode.IDENTITY,  # the encoder normalises [0, 1] pixels itself
            "STATE": NormalizationMode.MEAN_STD,
            "ACTION": NormalizationMode.MEAN_STD,
        }
    )

    def __post_init__(self):
        super().__post_init__()
        if self.vision_encoder not in ENCODERS:
            raise ValueError(f"--policy.vision_encoder={self.vision_encoder!r}; choose one of {list(ENCODERS)}")
        if self.residual not in RESIDUALS:
            raise ValueError(f"--policy.residual={self.residual!r}; choose one of {list(RESIDUALS)}")
        if self.n_action_steps > self.horizon:
            raise ValueError(f"n_action_steps ({self.n_action_steps}) cannot exceed horizon ({self.horizon})")
        if self.n_emb % self.n_head:
            raise ValueError(f"n_emb ({self.n_emb}) must be a multiple of n_head ({self.n_head})")
        if self.num_inference_steps < 1 or self.n_obs_steps < 1:
            raise ValueError("num_inference_steps and n_obs_steps must be >= 1")
        if self.compile_train_mode not in COMPILE_MODES:
            mode = self.compile_train_mode
            raise ValueError(f"--policy.compile_train_mode={mode!r}; choose one of {list(COMPILE_MODES)}")
        if not 0.0 <= self.equal_time_share <= 1.0:
            raise ValueError(f"equal_time_share must be in [0, 1], got {self.equal_time_share}")
        self._check_action_delay()

    def _check_action_delay(self) -> None:
        d, n, h = self.action_delay_steps, self.n_action_steps, self.horizon
        if d < 0:
            raise ValueError(f"--policy.action_delay_steps={d}: a delay is 0 or more control periods")
        if d >= h:
            raise ValueError(
                f"--policy.action_delay_steps={d}: a chunk of this checkpoint holds {h} actions, so a delay must be "
                f"at most {h - 1} control periods for any of it to remain"
            )
        if d + n > h:
            raise ValueError(
                f"--policy.action_delay_steps={d} with n_action_steps={n} needs a horizon of at least {d + n}, "
                f"this checkpoint's is {h}: lower --policy.n_action_steps to {h - d} or less"
            )
        if self.delay_guidance and d == 0:
            raise ValueError(
                "--policy.delay_guidance=true steers the part of a chunk a delay skips: set --policy.action_delay_steps"
            )
        if self.delay_guidance and 2 * d >= h:
            raise ValueError(
                f"--policy.delay_guidance=true with action_delay_steps={d} needs a horizon above {2 * d} (each "
                f"chunk's leftover must hold the {d} actions played meanwhile), this checkpoint's is {h}"
            )
        if self.delay_guidance and 2 * d + n > h:
            # the previous chunk's leftover must cover the d actions the servos play while the next is on its way
            raise ValueError(
                f"--policy.delay_guidance=true with action_delay_steps={d} and n_action_steps={n} needs a horizon of "
                f"at least {2 * d + n} (each chunk's leftover must hold the {d} actions played meanwhile), this "
                f"checkpoint's is {h}: lower --policy.n_action_steps to {h - 2 * d} or less"
            )

    # ----- features ---------------------------------------------------------------------------------------------
    @property
    def camera_keys(self) -> list[str]:
        return [f"observation.images.{name}" for name in self.cameras or []]

    def set_dataset_feature_metadata(self, features: dict) -> None:
        """Called by LeRobot's make_policy with the dataset's features before the policy is built: remembers a
        cache made by imf-cache-embeddings, whose recorded encoder the policy checks once it is built."""
        feature = features.get(OBS_VIEW_EMBEDDINGS)
        self._cache = None if feature is None else {"shape": tuple(feature["shape"]), **(feature.get("info") or {})}

    def validate_features(self) -> None:
        inputs = self.input_features or {}
        cache = getattr(self, "_cache", None)
        if OBS_VIEW_EMBEDDINGS in inputs:
            # A copy made by imf-cache-embeddings: its camera columns are gone. The policy declares the raw
            # cameras it was cached from (what its preprocessor sees at inference); the column only spares the
            # encoder during training, and must not be normalised as a state.
            del inputs[OBS_VIEW_EMBEDDINGS]
            if cache is None or "raw_features" not in cache:
                raise ValueError(
                    f"'{OBS_VIEW_EMBEDDINGS}' has no record of the cameras it was made from: rebuild the cache "
                    "with imf-cache-embeddings"
                )
            if self.vision_encoder != "siglip":
                raise ValueError(
                    f"the dataset holds cached '{OBS_VIEW_EMBEDDINGS}' of a frozen encoder; --policy.vision_encoder="
                    f"{self.vision_encoder} trains its encoder and needs the raw camera frames"
                )
            for key, shape in cache["raw_features"].items():
                inputs.setdefault(key, PolicyFeature(type=FeatureType.VISUAL, shape=tuple(shape)))
        rgb = sorted(
            key
            for key, ft in inputs.items()
            if ft.type is FeatureType.VISUAL and not key.endswith(NON_RGB_SUFFIXES) and ft.shape[0] == 3
        )
        if self.cameras is None:
            self.cameras = [key.removeprefix("observation.images.") for key in rgb]
        missing = [key for key in self.camera_keys if key not in inputs]
        if missing or not self.cameras:
            raise ValueError(
                f"imf needs the RGB cameras {missing or '(none given)'}; the dataset or env provides {rgb}. "
                "Pass --policy.cameras=[...] with names among them."
            )
        for key in self.camera_keys:
            shape = tuple(inputs[key].shape)
            if len(shape) != 3 or shape[0] != 3:
                raise ValueError(f"camera '{key}' must be an RGB image (3, H, W), got {shape}")
        # The policy declares exactly what it reads, so lerobot-eval asks the env for nothing else.
        for key in [k for k, ft in inputs.items() if ft.type is FeatureType.VISUAL and k not in self.camera_keys]:
            del inputs[key]
        if self.use_state and OBS_STATE not in inputs:
            raise ValueError(f"imf with use_state=true needs '{OBS_STATE}'; inputs are {sorted(inputs)}")

    @property
    def state_dim(self) -> int:
        return self.input_features[OBS_STATE].shape[0] if self.use_state else 0

    @property
    def action_dim(self) -> int:
        return self.action_feature.shape[0]

    @property
    def observation_delta_indices(self) -> list[int]:
        return list(range(1 - self.n_obs_steps, 1))

    @property
    def action_delta_indices(self) -> list[int]:
        return list(range(self.horizon))

    @property
    def reward_delta_indices(self) -> None:
        return None
