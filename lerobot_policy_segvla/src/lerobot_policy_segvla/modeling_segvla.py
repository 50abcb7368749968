"""SegVLA: LeRobot's SmolVLA plus segmentation cues (after the upstream ishandotsh/segvla), without copying SmolVLA.

Per camera with semantics, `SegmentationCueBuilder` pools the SigLIP patch features (vision hidden size) into
1 global, one token per region and one per class slot, weighted by the semantic scores. Three zero-initialised
projections carry the cues into SmolVLA, so a SegVLA loaded from a SmolVLA checkpoint acts exactly like it until
training moves them:

* `segmentation_token_proj` (vision -> text hidden): each cue token is added to the image tokens where it lies
  (global everywhere, regions on their cells, classes by their scores). Upstream appends the tokens to the
  prefix instead; extra tokens change every softmax in the VLM even when they are zero, so they could not start
  out exact.
* `segmentation_state_proj` (32-d geometry hint -> text hidden), added to `state_proj`'s token; with several cameras
  their hints sit side by side in the 32 slots.
* `segmentation_context_proj` (vision -> expert hidden): the mean cue token, added to the timestep embedding
  where `action_time_mlp_in` fuses it with the noisy actions (a forward pre-hook on that layer, so SmolVLA's
  `embed_suffix` runs unchanged).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.policies.smolvla.modeling_smolvla import SmolVLAPolicy, VLAFlowMatching
from torch import Tensor, nn

from so101_core.keys import require_key
from so101_policy_common.pretrained import ChecksSavedProcessors, pretrained_hint
from so101_policy_common.rtc import check_rtc_delay, check_rtc_horizon, rtc_enabled

from .configuration_segvla import SegVLAConfig
from .mask2former import TASK_CLASSES_KEY, score_grid


@dataclass
class CueResult:
    tokens: Tensor  # (B, T, Dv): global, regions, class slots
    patch_weights: Tensor  # (B, T, P*P) where each token pools from, on the vision patch grid
    geometry: Tensor  # (B, geometry_dim)
    class_ids: Tensor  # (B, slots); -1 marks an empty slot


def content_canvas(maps: Tensor, grid: int, content_hw: tuple[float, float]) -> Tensor:
    """Place maps over the un-padded image (B, K, g, g) onto a grid x grid canvas of the padded square image.

    SmolVLA resizes with padding on the left and top, so the image fills the bottom-right `content_hw` fraction.
    Each canvas cell takes the mean of the map over the cell (adaptive average pooling, both directions).
    """
    rows = max(1, round(content_hw[0] * grid))
    cols = max(1, round(content_hw[1] * grid))
    return F.pad(F.adaptive_avg_pool2d(maps, (rows, cols)), (grid - cols, 0, grid - rows, 0))


class SegmentationCueBuilder(nn.Module):
    """Semantic scores (B, C, g, g) + SigLIP patch tokens (B, P*P, Dv) -> cue tokens, their placement, geometry."""

    def __init__(
        self,
        hidden_dim: int,
        num_classes: int,
        grid_size: int,
        max_tokens: int,
        region_specs: list[tuple[float, float, float, float]],
        top_k: int,
        task_class_ids: list[int],
        geometry_class_ids: list[int],
        geometry_dim: int,
    ):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.num_classes = num_classes
        self.grid_size = grid_size
        self.max_tokens = max_tokens
        self.num_slots = max_tokens - 1 - len(region_specs)
        self.task_class_ids = list(task_class_ids)
        self.top_k = max(0, min(top_k, self.num_slots - len(task_class_ids), num_classes - len(task_class_ids)))
        self.geometry_class_ids = list(geometry_class_ids)
        self.geometry_dim = geometry_dim
        # Index tensors kept on the module's device: built from Python lists at each call they are host-to-device
        # copies, and on a GPU each one waits for every kernel queued before it (mid-forward, after SigLIP).
        self.register_buffer("task_ids", torch.tensor(self.task_class_ids, dtype=torch.long), persistent=False)
        self.register_buffer("geometry_ids", torch.tensor(self.geometry_class_ids, dtype=torch.long), persistent=False)
        g = grid_size
        regions = torch.zeros(len(region_specs), g, g)
        for i, (x0, x1, y0, y1) in enumerate(region_specs):
            regions[i, round(y0 * g) : round(y1 * g), round(x0 * g) : round(x1 * g)] = 1.0
        self.register_buffer("region_masks", regions, persistent=False)
        centres = (torch.arange(g, dtype=torch.float32) + 0.5) / g
        self.register_buffer("cell_y", centres[:, None].expand(g, g).reshape(-1), persistent=False)
        self.register_buffer("cell_x", centres[None, :].expand(g, g).reshape(-1), persistent=False)
        # Stand-ins for class slots no class fills; they only reach the context vector.
        self.null_tokens = nn.Parameter(torch.zeros(self.num_slots, hidden_dim))

    def select_classes(self, scores: Tensor, prompt_classes: Tensor | None = None) -> Tensor:
        """(B, C, g, g) -> (B, slots) class ids, -1 for an empty slot: the configured task classes, then the
        sample's prompt classes (`prompt_classes`, a (B, C) multi-hot), then the top-k others by mean score."""
        bsize = scores.shape[0]
        mean = scores.flatten(2).mean(-1)
        forced = self.task_ids.expand(bsize, -1)
        if prompt_classes is None:
            if self.top_k:
                mean = mean.index_fill(1, forced[0], float("-inf")) if self.task_class_ids else mean
                forced = torch.cat([forced, mean.topk(self.top_k, dim=1).indices], dim=1)
            return F.pad(forced, (0, self.num_slots - forced.shape[1]), value=-1)
        prompt = prompt_classes > 0
        if self.task_class_ids:
            prompt = prompt.index_fill(1, forced[0], False)
        # Prompt classes outrank every other class, and among themselves keep the mean-score order.
        rank = torch.where(prompt, mean + mean.amax() + 1, mean)
        if self.task_class_ids:
            rank = rank.index_fill(1, forced[0], float("-inf"))
        free = min(self.num_slots, self.num_classes) - len(self.task_class_ids)
        picked = rank.topk(free, dim=1).indices
        used = (prompt.sum(1, keepdim=True) + self.top_k).clamp(max=free)
        picked = torch.where(torch.arange(free, device=scores.device) < used, picked, -1)
        selected = torch.cat([forced, picked], dim=1)
        return F.pad(selected, (0, self.num_slots - selected.shape[1]), value=-1)

    @property
    def geometry_values(self) -> int:
        """How many of the `geometry_dim` slots one camera fills: 4 per geometry class, 5 for the first two's offset."""
        count = len(self.geometry_class_ids)
        return min(self.geometry_dim, 4 * count + (5 if count >= 2 else 0))

    def geometry(self, scores: Tensor) -> Tensor:
        """Presence (peak), centroid x/y and area (mean) per geometry class, then the first two's offset."""
        bsize = scores.shape[0]
        out = scores.new_zeros(bsize, self.geometry_dim)
        if not self.geometry_class_ids:
            return out
        flat = scores.index_select(1, self.geometry_ids).flatten(2)  # (B, G, g*g)
        mass = flat.sum(-1)
        # A class with no mass has no centroid; report the image centre rather than divide by zero.
        cx = torch.where(mass > 0, (flat * self.cell_x).sum(-1) / mass.clamp_min(1e-12), 0.5)
        cy = torch.where(mass > 0, (flat * self.cell_y).sum(-1) / mass.clamp_min(1e-12), 0.5)
        values = [torch.stack([flat.amax(-1), cx, cy, flat.mean(-1)], dim=-1).flatten(1)]
        if len(self.geometry_class_ids) >= 2:
            dx, dy = cx[:, 1] - cx[:, 0], cy[:, 1] - cy[:, 0]
            angle = torch.atan2(dy, dx)
            values.append(torch.stack([dx, dy, torch.hypot(dx, dy), angle.sin(), angle.cos()], dim=-1))
        values = torch.cat(values, dim=1)[:, : self.geometry_dim]
        out[:, : values.shape[1]] = values
        return out

    def forward(
        self,
        patch_tokens: Tensor,
        scores: Tensor,
        content_hw: tuple[float, float],
        prompt_classes: Tensor | None = None,
    ) -> CueResult:
        bsize, num_patches, _ = patch_tokens.shape
        side = math.isqrt(num_patches)
        if side * side != num_patches:
            raise ValueError(f"SigLIP gave {num_patches} patch tokens; SegVLA needs a square patch grid")
        scores = scores.to(patch_tokens.dtype)
        class_ids = self.select_classes(scores, prompt_classes)  # (B, slots)
        filled = class_ids >= 0
        class_maps = scores.gather(1, class_ids.clamp_min(0)[:, :, None, None].expand(-1, -1, *scores.shape[-2:]))
        class_maps = class_maps * filled[:, :, None, None]
        content = torch.ones_like(scores[:, :1])
        regions = self.region_masks.to(scores.dtype).expand(bsize, -1, -1, -1)
        maps = torch.cat([content, regions, class_maps], dim=1)  # (B, T, g, g)
        weights = content_canvas(maps, side, content_hw).flatten(2)  # (B, T, P*P)
        pooled = weights @ patch_tokens / weights.sum(-1, keepdim=True).clamp_min(1e-6)
        fixed = 1 + self.region_masks.shape[0]
        null = self.null_tokens.to(pooled.dtype).expand(bsize, -1, -1)
        pooled = torch.cat([pooled[:, :fixed], torch.where(filled[..., None], pooled[:, fixed:], null)], dim=1)
        return CueResult(tokens=pooled, patch_weights=weights, geometry=self.geometry(scores), class_ids=class_ids)


@dataclass
class CameraCues:
    """One camera's scores as the policy hands them to the model (None for cameras without semantics)."""

    scores: Tensor | None
    content_hw: tuple[float, float]
    prompt_classes: Tensor | None = None  # (B, C) multi-hot of the sample's prompt nouns


class SegVLAFlowMatching(VLAFlowMatching):
    """SmolVLA's flow-matching model with the cue path; with an empty `segmentation_feature_map` it is SmolVLA."""

    def __init__(self, config: SegVLAConfig, rtc_processor=None):
        super().__init__(config, rtc_processor=rtc_processor)
        self.cues_enabled = bool(config.segmentation_feature_map)
        self.camera_cues: list[CameraCues] = []  # set by SegVLAPolicy.prepare_images for the next call
        self._patch_tokens: list[Tensor] = []
        self._context: Tensor | None = None
        if not self.cues_enabled:
            return
        vlm = self.vlm_with_expert
        vision_hidden = vlm.config.vision_config.hidden_size
        text_hidden = vlm.config.text_config.hidden_size
        expert_hidden = vlm.expert_hidden_size
        self.segmentation_builder = SegmentationCueBuilder(
            hidden_dim=vision_hidden,
            num_classes=config.segmentation_num_classes,
            grid_size=config.segmentation_grid_size,
            max_tokens=config.segmentation_max_tokens,
            region_specs=config.segmentation_region_specs,
            top_k=config.segmentation_top_k_classes,
            task_class_ids=config.segmentation_task_class_ids,
            geometry_class_ids=config.segmentation_geometry_class_ids,
            geometry_dim=config.segmentation_geometry_state_dim,
        )
        self.segmentation_token_proj = nn.Linear(vision_hidden, text_hidden)
        self.segmentation_state_proj = nn.Linear(config.segmentation_geometry_state_dim, text_hidden)
        self.segmentation_context_proj = nn.Linear(vision_hidden, expert_hidden)
        for proj in (self.segmentation_token_proj, self.segmentation_state_proj, self.segmentation_context_proj):
            nn.init.zeros_(proj.weight)
            nn.init.zeros_(proj.bias)
        # The patch tokens are the vision model's output inside SmolVLA's embed_image; a hook keeps them
        # rather than running SigLIP a second time.
        vlm.get_vlm_model().vision_model.register_forward_hook(self._keep_patch_tokens)
        self.action_time_mlp_in.register_forward_pre_hook(self._fuse_context)

    def sample_noise(self, shape, device):
        seed = self.config.inference_noise_seed
        if seed is None or self.training:
            return super().sample_noise(shape, device)
        generator = torch.Generator(device=device).manual_seed(seed)
        return torch.randn(shape, generator=generator, device=device, dtype=torch.float32)

    def _keep_patch_tokens(self, module, args, output) -> None:
        self._patch_tokens.append(output.last_hidden_state)

    def _fuse_context(self, module, args):
        if self._context is None:
            return None
        (action_time,) = args
        width = self.vlm_with_expert.expert_hidden_size
        context = self._context.to(action_time.dtype)[:, None, :].expand(-1, action_time.shape[1], -1)
        # action_time = [action_emb | time_emb]: the context joins the time half
        return (torch.cat([action_time[..., :width], action_time[..., width:] + context], dim=-1),)

    def embed_prefix(self, images, img_masks, lang_tokens, lang_masks, state=None):
        self._patch_tokens = []
        self._context = None
        embs, pad_masks, att_masks = super().embed_prefix(images, img_masks, lang_tokens, lang_masks, state=state)
        if not self.cues_enabled:
            return embs, pad_masks, att_masks
        cues = self.camera_cues + [CameraCues(None, (1.0, 1.0))] * (len(images) - len(self.camera_cues))
        if len(self._patch_tokens) != len(images):
            raise RuntimeError(f"expected {len(images)} SigLIP calls in embed_prefix, saw {len(self._patch_tokens)}")
        bsize = embs.shape[0]
        per_camera = self._image_token_count(images[0])
        shuffle = self.vlm_with_expert.config.scale_factor
        before, after = (2, 1) if self.add_image_special_tokens else (0, 0)
        delta = torch.zeros_like(embs)
        contexts, geometries = [], []
        for i, (camera, patches) in enumerate(zip(cues, self._patch_tokens, strict=True)):
            if camera.scores is None:
                continue
            result = self.segmentation_builder(patches, camera.scores, camera.content_hw, camera.prompt_classes)
            keep = self._keep_mask(bsize, embs.device, embs.dtype)
            # The connector's pixel shuffle merges shuffle x shuffle patches into one image token (row-major)
            side = math.isqrt(patches.shape[1])
            placement = F.avg_pool2d(result.patch_weights.unflatten(-1, (side, side)), shuffle).flatten(2)
            projected = self._project(self.segmentation_token_proj, result.tokens)
            residual = placement.transpose(1, 2).to(projected.dtype) @ projected
            start = i * (before + per_camera + after) + before
            delta[:, start : start + per_camera] = (residual * keep[:, None, None]).to(delta.dtype)
            contexts.append(result.tokens.mean(1) * keep[:, None])
            geometries.append(result.geometry * keep[:, None])
        if contexts:
            state_index = self._state_index(images, lang_tokens)
            # Each camera's values side by side (a mean would mix the front camera's cube centroid with the
            # wrist camera's); the first camera's sit where a one-camera SegVLA has them.
            width = self.segmentation_builder.geometry_values
            geometry = torch.cat([g[:, :width] for g in geometries], dim=1)
            geometry = F.pad(geometry, (0, self.config.segmentation_geometry_state_dim - geometry.shape[1]))
            delta[:, state_index] = self._project(self.segmentation_state_proj, geometry)
            self._context = self._project(self.segmentation_context_proj, torch.stack(contexts).mean(0))
        return embs + delta, pad_masks, att_masks

    @staticmethod
    def _project(proj: nn.Linear, x: Tensor) -> Tensor:
        # With load_vlm_weights the backbone runs in bfloat16 while the new projections stay float32
        return proj(x.to(proj.weight.dtype))

    def _image_token_count(self, image: Tensor) -> int:
        config = self.vlm_with_expert.config
        patches = (image.shape[-1] // config.vision_config.patch_size) ** 2
        return patches // config.scale_factor**2

    def _state_index(self, images, lang_tokens) -> int:
        extra = 3 if self.add_image_special_tokens else 0
        return len(images) * (self._image_token_count(images[0]) + extra) + lang_tokens.shape[1]

    def _keep_mask(self, bsize: int, device, dtype) -> Tensor:
        p = self.config.segmentation_dropout_prob
        if not self.training or p == 0:
            return torch.ones(bsize, device=device, dtype=dtype)
        return (torch.rand(bsize, device=device) >= p).to(dtype)


class SegVLAPolicy(ChecksSavedProcessors, SmolVLAPolicy):
    """SmolVLAPolicy whose model also reads the semantic scores named in `segmentation_feature_map`."""

    config_class = SegVLAConfig
    name = "segvla"

    def __init__(self, config: SegVLAConfig, **kwargs):
        # SmolVLAPolicy.__init__ minus its VLAFlowMatching: building the backbone twice costs seconds at 500M.
        PreTrainedPolicy.__init__(self, config)
        config.resolve_class_names()
        config.validate_features()
        self.config = config
        self.init_rtc_processor()
        # SmolVLA reads SmolVLM2's config (and, fresh, its weights) by name: a clear error if it is not here
        with pretrained_hint(config.vlm_model_name, "SegVLA's VLM backbone (SmolVLM2)", "--policy.vlm_model_name"):
            self.model = SegVLAFlowMatching(config, rtc_processor=self.rtc_processor)
        if config.load_vlm_weights and config.vlm_dtype == "float32":
            self._load_vlm_in_float32(config.vlm_model_name)
        self.reset()

    def init_rtc_processor(self) -> None:
        # lerobot-rollout --inference.type=rtc sets config.rtc_config and calls this before the robot connects
        check_rtc_horizon(self.name, self.config.rtc_config, self.config.chunk_size)
        super().init_rtc_processor()

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict[str, Tensor], noise: Tensor | None = None, **kwargs) -> Tensor:
        if rtc_enabled(self.config.rtc_config):
            check_rtc_delay(self.name, kwargs.get("inference_delay"), self.config.chunk_size)
        return super().predict_action_chunk(batch, noise, **kwargs)

    def _load_vlm_in_float32(self, name: str) -> None:
        """SmolVLA loads the backbone in bfloat16, which rounds its weights: read them again at full precision (the
        layers SmolVLA dropped, beyond num_vlm_layers, are left out)."""
        from transformers import AutoModelForImageTextToText

        vlm = self.model.vlm_with_expert.vlm.float()
        full = AutoModelForImageTextToText.from_pretrained(name, dtype=torch.float32).state_dict()
        missing, _ = vlm.load_state_dict(full, strict=False)
        if missing:
            raise KeyError(f"{name}: the backbone's weights lack {missing[:5]} (vlm_dtype=float32 reloads them)")

    def prepare_images(self, batch):
        images, img_masks = super().prepare_images(batch)
        cameras = [key for key in self.config.image_features if key in batch]
        self.model.camera_cues = [self._camera_cues(batch, key) for key in cameras]
        self._check_scores(cameras)
        p = self.config.rgb_dropout_prob
        if self.training and p > 0:
            drawn = set(self.config.segmentation_image_keys.values())
            for i, key in enumerate(cameras):
                if key in drawn or key not in self.config.segmentation_feature_map:  # not a cued camera's pixels
                    continue
                # SmolVLA's images are in [-1, 1]: 0 is mid-grey
                keep = torch.rand(images[i].shape[0], device=images[i].device) >= p
                images[i] = images[i] * keep.to(images[i].dtype)[:, None, None, None]
        return images, img_masks

    def _camera_cues(self, batch: dict, camera: str) -> CameraCues:
        key = self.config.segmentation_feature_map.get(camera)
        image = batch[camera]
        height, width = image.shape[-2:]
        target = self.config.resize_imgs_with_padding
        if target is None:
            content_hw = (1.0, 1.0)
        else:  # SmolVLA's resize_with_pad: keep the aspect ratio, pad to (target height, target width)
            ratio = max(width / target[0], height / target[1])
            content_hw = (int(height / ratio) / target[1], int(width / ratio) / target[0])
        if key is None:
            return CameraCues(None, content_hw)
        hint = "add the scores with perception_source=ground_truth/mask2former or precompute them"
        require_key(batch, key, f"segmentation_feature_map's camera '{camera}'", hint, prefix="observation.")
        g, classes = self.config.segmentation_grid_size, self.config.segmentation_num_classes
        scores = score_grid(batch[key], classes, g)  # a dataset's stored columns are flat (segvla-precompute)
        scores = scores[:, -1] if scores.ndim == 5 else scores
        if scores.ndim != 4 or scores.shape[1:] != (classes, g, g):
            raise ValueError(
                f"'{key}' must hold scores shaped (B, {classes}, {g}, {g}) (segmentation_num_classes,"
                f" segmentation_grid_size), got {tuple(scores.shape)}"
            )
        if scores.shape[0] != image.shape[0]:
            raise ValueError(f"'{key}' has batch size {scores.shape[0]}, camera '{camera}' {image.shape[0]}")
        return CameraCues(scores, content_hw, self._prompt_classes(batch, scores.shape[0]))

    def _check_scores(self, cameras: list[str]) -> None:
        """No NaN or negative scores, read back in one transfer for all cameras: on a GPU each read waits for the
        queued kernels, and here, before the VLM runs, little is queued."""
        cued = [(camera, cues.scores) for camera, cues in zip(cameras, self.model.camera_cues, strict=True)]
        cued = [(self.config.segmentation_feature_map[camera], scores) for camera, scores in cued if scores is not None]
        if not cued:
            return
        lows = torch.stack([scores.detach().amin().float() for _, scores in cued]).tolist()  # amin keeps NaN
        for (key, _), low in zip(cued, lows, strict=True):
            if math.isnan(low):
                raise ValueError(f"'{key}' holds NaN scores")
            if low < 0:
                raise ValueError(
                    f"'{key}' holds negative values (min {low:.4g}): expected semantic scores in [0, 1]"
                    " (softmax x sigmoid), not logits"
                )

    def _prompt_classes(self, batch: dict, bsize: int) -> Tensor | None:
        if not self.config.segmentation_classes_from_task:
            return None
        if TASK_CLASSES_KEY not in batch:
            raise KeyError(
                f"segmentation_classes_from_task needs '{TASK_CLASSES_KEY}' (the prompt's classes, written by the"
                " segvla_task_classes step of this policy's preprocessor); the batch lacks it"
            )
        mask = batch[TASK_CLASSES_KEY]
        classes = self.config.segmentation_num_classes
        if mask.shape != (bsize, classes):
            raise ValueError(
                f"'{TASK_CLASSES_KEY}' must be a (B, {classes}) multi-hot (segmentation_num_classes), got"
                f" {tuple(mask.shape)}"
            )
        return mask
