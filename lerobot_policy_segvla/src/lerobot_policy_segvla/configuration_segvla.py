"""SegVLA's configuration: every SmolVLA field plus the upstream SegVLA's segmentation knobs (ishandotsh/segvla)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from lerobot.configs import FeatureType, PolicyFeature, PreTrainedConfig
from lerobot.policies.smolvla import SmolVLAConfig

from so101_core.segmentation import check_perception_source
from so101_policy_common.policy_config import JointLimitsFields, RenamedFields

from .perception_sources import PERCEPTION_SOURCES, PerceptionSource

SEGMENTATION_IMAGE_MODES = ("none", "beside", "instead")
SEGMENTATION_IMAGE_SUFFIX = "_segmentation_rgb"  # "beside": camera key + this names the class-coloured image

# (x0, x1, y0, y1) as fractions of the un-padded image: four quadrants and the centre, as upstream segvla.
DEFAULT_REGIONS: tuple[tuple[float, float, float, float], ...] = (
    (0.0, 0.5, 0.0, 0.5),
    (0.5, 1.0, 0.0, 0.5),
    (0.0, 0.5, 0.5, 1.0),
    (0.5, 1.0, 0.5, 1.0),
    (0.25, 0.75, 0.25, 0.75),
)


@PreTrainedConfig.register_subclass("segvla")
@dataclass
class SegVLAConfig(RenamedFields, JointLimitsFields, SmolVLAConfig):
    RENAMED_FIELDS: ClassVar[dict] = {"segmentation_source": ("perception_source", {})}  # see RenamedFields

    # Camera key -> batch key holding that camera's semantic scores (B, C, g, g) in [0, 1]. Cameras left out
    # run exactly as in SmolVLA; an empty map switches the cues off (SegVLA == SmolVLA).
    segmentation_feature_map: dict[str, str] = field(default_factory=dict)
    # Where the preprocessor gets the scores: "none" (the dataset already holds them, or cues are off),
    # "ground_truth" (the twin's depth-coded segmentation, one-hot and pooled: twin only), "segmenter" (the suite's
    # 6-class EfficientViT-B0 + FPN, ~10 ms a frame on a CPU: the real arm's source), "mask2former" (online, slow).
    perception_source: str = "none"
    # perception_source as checkpoints of 0.2.0 saved it: read into perception_source when given (RenamedFields);
    # never saved.
    segmentation_source: str | None = None
    # For perception_source="segmenter": a so101-seg-train checkpoint folder. Read once, when training builds the
    # preprocessor; the weights are then saved inside the checkpoint, which runs wherever it is copied.
    segmentation_segmenter_path: str | None = None
    segmentation_num_classes: int = 150  # ADE20K; 6 for the twin's ground truth
    segmentation_grid_size: int = 8  # g: scores are pooled to g x g over the un-padded image
    # Classes that always get a class token (e.g. ADE20K 142 "plate"; not 47/58, the upstream notes' ids).
    segmentation_task_class_ids: list[int] = field(default_factory=list)
    # Classes whose presence / centroid / area fill the geometry hint (the first two also give their offset).
    segmentation_geometry_class_ids: list[int] = field(default_factory=list)
    # The same by name (e.g. ["plate", "vase"]), resolved through the segmentation checkpoint's id2label (the twin's
    # class map for perception_source="ground_truth") when the policy is built, and added to the ids above.
    # An unknown name is an error listing the closest names.
    segmentation_task_classes: list[str] = field(default_factory=list)
    segmentation_geometry_classes: list[str] = field(default_factory=list)
    # Optional per-sample classes (the upstream SegVLA notes'): the nouns of each sample's task prompt ("pick up the red
    # cube") become that sample's task classes, given class tokens after segmentation_task_class_ids and before the
    # top-k. Nouns resolve through the same class map as the names above, with ADE20K's synonym table for Mask2Former
    # checkpoints ("bowl" -> plate, "cube" -> box) plus these entries (word -> class name).
    segmentation_classes_from_task: bool = False
    segmentation_task_synonyms: dict[str, str] = field(default_factory=dict)
    segmentation_top_k_classes: int = 10
    segmentation_max_tokens: int = 16  # per camera: 1 global + regions + class slots
    segmentation_region_specs: list[tuple[float, float, float, float]] = field(
        default_factory=lambda: list(DEFAULT_REGIONS)
    )
    segmentation_geometry_state_dim: int = 32
    segmentation_dropout_prob: float = 0.1  # per sample and camera, training only
    # The backbone's dtype when it is loaded with load_vlm_weights: SmolVLA's "bfloat16", or "float32" (a CPU run,
    # or a comparison with a backbone built from its config alone, which is float32).
    vlm_dtype: str = "bfloat16"
    # Inference draws its flow-matching noise from this seed (same observation -> same actions: reproducible
    # rollouts, and a reloaded checkpoint can be checked bit for bit). None keeps SmolVLA's global-RNG draw.
    inference_noise_seed: int | None = None
    # For perception_source="mask2former": the checkpoint (a Hub id or a local folder).
    segmentation_model_name: str = "facebook/mask2former-swin-large-ade-semantic"
    # Cues that survive a change of look (docs/segvla.md, "When the scene looks different"). The cue tokens pool
    # SigLIP's RGB features, which a new table, light or colour moves; a class-coloured picture of each cued
    # camera's segmentation (the suite's palette, from the same source as the scores: ground truth or segmenter)
    # does not. "beside": SigLIP reads it as one more camera after the RGB ones; "instead": in place of the
    # camera's RGB; "none": SmolVLA's images only.
    segmentation_image: str = "none"
    # Per training sample and cued RGB camera, the chance its image is replaced by mid-grey, so the policy learns to
    # act from the cues (and the segmentation images) when the pixels mislead. 0 at inference whatever the value.
    rgb_dropout_prob: float = 0.0

    def resolve_class_names(self) -> None:
        """Turn `segmentation_task_classes` / `segmentation_geometry_classes` into ids (kept in the *_ids lists, so
        a saved config needs no model to reload)."""
        if not (self.segmentation_task_classes or self.segmentation_geometry_classes):
            return
        from .ade20k import class_ids

        if self.perception_record.twin_classes:
            from so101_core.segmentation import SEGMENTATION_CLASSES as id2label
        else:
            from transformers import AutoConfig

            id2label = AutoConfig.from_pretrained(self.segmentation_model_name).id2label
        for names, ids_field in (
            ("segmentation_task_classes", "segmentation_task_class_ids"),
            ("segmentation_geometry_classes", "segmentation_geometry_class_ids"),
        ):
            ids = list(getattr(self, ids_field))
            for class_ in class_ids(getattr(self, names), id2label):
                if class_ not in ids:
                    ids.append(class_)
            setattr(self, ids_field, ids)
            setattr(self, names, [])
        self.__post_init__()  # re-check slots and ranges with the resolved ids

    def _check_vlm_dtype(self) -> None:
        if self.vlm_dtype not in ("bfloat16", "float32"):
            raise ValueError(f"vlm_dtype must be 'bfloat16' or 'float32', got {self.vlm_dtype!r}")

    def __post_init__(self):
        super().__post_init__()
        self._check_vlm_dtype()
        self._check_perception_source()
        self._check_classes()
        self._check_cue_tokens()
        self._check_geometry()
        self._check_dropout_probabilities()
        self._check_look_options()

    def _check_perception_source(self) -> None:
        """Where the scores come from, and the batch keys they arrive under."""
        check_perception_source(self.perception_source, tuple(PERCEPTION_SOURCES), "--policy.perception_source")
        for camera, key in self.segmentation_feature_map.items():
            if not key.startswith("observation."):
                raise ValueError(
                    f"segmentation_feature_map[{camera!r}] = {key!r}: the batch key must start with 'observation.'"
                    " (LeRobot's batch_to_transition drops other keys)"
                )
        if self.perception_record.twin_classes and self.segmentation_feature_map:
            from so101_core.segmentation import NUM_SEGMENTATION_CLASSES

            if self.segmentation_num_classes != NUM_SEGMENTATION_CLASSES:
                raise ValueError(
                    f"perception_source={self.perception_source!r} gives the twin's {NUM_SEGMENTATION_CLASSES}"
                    f" classes; segmentation_num_classes is {self.segmentation_num_classes}"
                )

    def _check_classes(self) -> None:
        classes = self.segmentation_num_classes
        if classes < 1:
            raise ValueError(f"segmentation_num_classes must be >= 1, got {classes}")
        for name in ("segmentation_task_class_ids", "segmentation_geometry_class_ids"):
            bad = [c for c in getattr(self, name) if not 0 <= c < classes]
            if bad:
                raise ValueError(f"{name} {bad} are outside 0..{classes - 1} (segmentation_num_classes={classes})")

    def _check_cue_tokens(self) -> None:
        """Each camera's tokens: regions on the score grid's cell borders, and a class slot for every task class."""
        g = self.segmentation_grid_size
        for spec in self.segmentation_region_specs:
            if len(spec) != 4:
                raise ValueError(f"a region spec is (x0, x1, y0, y1), got {spec}")
            x0, x1, y0, y1 = spec
            if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
                raise ValueError(f"region {spec} must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1")
            if any(abs(v * g - round(v * g)) > 1e-6 for v in spec):
                raise ValueError(
                    f"region {spec} does not fall on cell borders of the {g}x{g} score grid: choose"
                    " segmentation_grid_size so that every region bound times it is an integer (4, 8, 16 for the"
                    " default quadrants + centre)"
                )
        if self.num_class_slots < len(self.segmentation_task_class_ids):
            raise ValueError(
                f"segmentation_max_tokens={self.segmentation_max_tokens} leaves {self.num_class_slots} class slots"
                f" after 1 global + {len(self.segmentation_region_specs)} region tokens, fewer than the"
                f" {len(self.segmentation_task_class_ids)} segmentation_task_class_ids"
            )

    def _check_geometry(self) -> None:
        """The geometry hint holds 4 values per geometry class (5 more for the first two's offset) per camera."""
        if self.segmentation_geometry_state_dim < 4 * min(1, len(self.segmentation_geometry_class_ids)):
            raise ValueError("segmentation_geometry_state_dim must hold at least 4 values per geometry class")
        geometry = len(self.segmentation_geometry_class_ids)
        per_camera = min(self.segmentation_geometry_state_dim, 4 * geometry + (5 if geometry >= 2 else 0))
        needed = per_camera * len(self.segmentation_feature_map)
        if len(self.segmentation_feature_map) > 1 and needed > self.segmentation_geometry_state_dim:
            raise ValueError(
                f"{len(self.segmentation_feature_map)} cameras x {per_camera} geometry values"
                f" ({geometry} segmentation_geometry_class_ids) need segmentation_geometry_state_dim >= {needed},"
                f" got {self.segmentation_geometry_state_dim}"
            )

    def _check_dropout_probabilities(self) -> None:
        if not 0.0 <= self.segmentation_dropout_prob < 1.0:
            raise ValueError(f"segmentation_dropout_prob must be in [0, 1), got {self.segmentation_dropout_prob}")
        if not 0.0 <= self.rgb_dropout_prob < 1.0:
            raise ValueError(f"rgb_dropout_prob must be in [0, 1), got {self.rgb_dropout_prob}")

    def _check_look_options(self) -> None:
        """rgb_dropout_prob and segmentation_image make the policy lean on the cues, so they need cues to lean on."""
        if self.rgb_dropout_prob > 0 and not self.segmentation_feature_map:
            raise ValueError(
                f"rgb_dropout_prob={self.rgb_dropout_prob} greys the cued cameras, and segmentation_feature_map is"
                " empty: with the cues off SegVLA is SmolVLA exactly, so there is nothing to act on instead"
            )
        if self.segmentation_image not in SEGMENTATION_IMAGE_MODES:
            raise ValueError(
                f"segmentation_image must be one of {SEGMENTATION_IMAGE_MODES}, got {self.segmentation_image!r}"
            )
        if self.segmentation_image != "none" and not (
            self.segmentation_feature_map and self.perception_record.twin_classes
        ):
            drawable = " or ".join(name for name, source in PERCEPTION_SOURCES.items() if source.twin_classes)
            raise ValueError(
                f"segmentation_image={self.segmentation_image!r} draws the twin's 6 classes, so it needs cues"
                f" (segmentation_feature_map) from perception_source={drawable}; got"
                f" perception_source={self.perception_source!r} and"
                f" {len(self.segmentation_feature_map)} cued cameras"
            )

    @property
    def perception_record(self) -> PerceptionSource:
        """The record of `perception_source`: the classes its scores cover, what it reads, the step that writes
        them."""
        return PERCEPTION_SOURCES[self.perception_source]

    @property
    def num_class_slots(self) -> int:
        return self.segmentation_max_tokens - 1 - len(self.segmentation_region_specs)

    @property
    def camera_features(self) -> dict:
        """The RGB cameras an env or robot gives: the 3-channel visual inputs."""
        # single-channel maps (the twin's depth and depth-coded segmentation) are raw inputs of the segmentation
        # step, never images for SigLIP
        return {
            key: ft
            for key, ft in (self.input_features or {}).items()
            if ft.type is FeatureType.VISUAL and len(ft.shape) == 3 and 3 in (ft.shape[0], ft.shape[-1])
        }

    @property
    def segmentation_image_keys(self) -> dict[str, str]:
        """Cued camera -> the batch key its class-coloured segmentation image is written to (empty for "none")."""
        if self.segmentation_image == "none":
            return {}
        suffix = "" if self.segmentation_image == "instead" else SEGMENTATION_IMAGE_SUFFIX
        return {camera: camera + suffix for camera in self.segmentation_feature_map}

    @property
    def image_features(self) -> dict:
        # What SigLIP reads: the cameras, then ("beside") the segmentation images the preprocessor draws. Those
        # are not input features: no env, robot or dataset gives them.
        cameras = self.camera_features
        extra = {
            key: PolicyFeature(type=FeatureType.VISUAL, shape=cameras[camera].shape)
            for camera, key in self.segmentation_image_keys.items()
            if key not in cameras and camera in cameras
        }
        return {**cameras, **extra}

    def set_dataset_feature_metadata(self, features: dict) -> None:
        """Called by LeRobot's make_policy with the dataset's features: scores stored by `segvla-precompute
        --segmenter_path` (their info names the segmenter's fingerprint) are read in training instead of computed."""
        found = {
            ((features.get(key) or {}).get("info") or {}).get("segmenter_fingerprint")
            for key in self.segmentation_feature_map.values()
        }
        found.discard(None)
        if len(found) > 1:
            raise ValueError(
                f"the dataset's scores {list(self.segmentation_feature_map.values())} come from "
                f"different segmenters {sorted(found)}"
            )
        self._stored_segmenter_fingerprint = found.pop() if found else None

    def validate_features(self) -> None:
        super().validate_features()
        cameras = self.camera_features
        unknown = [camera for camera in self.segmentation_feature_map if camera not in cameras]
        if unknown:
            raise ValueError(
                f"segmentation_feature_map names cameras {unknown} the policy does not have; its cameras are"
                f" {sorted(cameras)}"
            )
        if self.perception_record.reads_twin_segmentation:
            # The twin's depth-coded segmentation beside each camera is an input of the preprocessor: listed here
            # (a checkpoint converted from SmolVLA lacks it), so the saved config says what an env or robot must give.
            for camera in self.segmentation_feature_map:
                if f"{camera}_segmentation" not in self.input_features:
                    _, height, width = cameras[camera].shape
                    self.input_features[f"{camera}_segmentation"] = PolicyFeature(
                        type=FeatureType.VISUAL, shape=(1, height, width)
                    )
        # Precomputed scores in a dataset arrive typed STATE; they are probabilities, so keep them out of the
        # MEAN_STD normaliser and out of the state vector.
        for key in self.segmentation_feature_map.values():
            self.input_features.pop(key, None)
