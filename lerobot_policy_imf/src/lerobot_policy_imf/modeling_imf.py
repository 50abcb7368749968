"""`imf`: multiview frozen SigLIP2 features -> a one-step improved-MeanFlow action head on an Attention-Residuals
transformer (after roboimi's SigLIP2 multiview plan). The policy; its parts are encoders.py (the views' backbone),
transformer.py (the head), meanflow.py (the loss and the sampler) and cache.py (the embedding cache's key).

Shapes, with B batch, T = n_obs_steps, V cameras, W encoder width (768 for SigLIP2-B), P = per_view_dim,
S state dim, C condition dim, H = horizon, A action dim:
    frames            (B, T, V, 3, h, w) in [0, 1]   resized to the encoder's side unless already that size
    view embeddings   (B, T, V, W)                    the frozen encoder's pooled output (cacheable)
    visual condition  (B, T, V * P)                   one projection per view, concatenated over views
    condition         (B, T, C)                       [visual, state], then optionally projected to 384
    action chunk      (B, H, A)                       sampled from noise by the head's average velocity
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable

import torch
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.policies.rtc.configuration_rtc import RTCConfig
from lerobot.policies.rtc.modeling_rtc import RTCProcessor
from lerobot.utils.constants import ACTION, OBS_STATE
from torch import Tensor, nn

from so101_core.keys import require_key
from so101_policy_common.pretrained import ChecksSavedProcessors
from so101_policy_common.rtc import check_rtc_delay, check_rtc_horizon, rtc_enabled

from .cache import encoder_fingerprint, refuse_stale_cache
from .configuration_imf import OBS_VIEW_EMBEDDINGS, IMFConfig
from .encoders import MultiviewBackbone
from .meanflow import CompiledLoss, frozen_compiled, imf_loss, sample_chunk, sample_times
from .transformer import IMFTransformer


class IMFPolicy(ChecksSavedProcessors, PreTrainedPolicy):
    config_class = IMFConfig
    name = "imf"

    def __init__(self, config: IMFConfig, dataset_stats=None, dataset_meta=None, **kwargs):
        super().__init__(config)
        config.validate_features()
        self.config = config
        self.backbone = MultiviewBackbone(config)
        raw = self.backbone.output_dim + config.state_dim
        self.condition_projector = nn.Linear(raw, config.condition_dim) if config.condition_dim else nn.Identity()
        self.raw_condition_dim = raw
        self.condition_dim = config.condition_dim or raw
        self.head = IMFTransformer(config, self.condition_dim, config.action_dim)
        self._fingerprint: str | None = None
        self._compiled: tuple | None = None  # (key, encoder, head) for compile_inference; not a submodule
        self._loss = CompiledLoss(config.compile_train_mode) if config.compile_train else imf_loss
        # A cache is checked against the encoder's weights: now for fresh weights, at the first forward (before
        # the first update) when a checkpoint's weights are still to be loaded into this module.
        self._unchecked_cache = getattr(config, "_cache", None)
        if config.pretrained_path is None:
            self.check_cache(self._unchecked_cache)
            self._unchecked_cache = None
        self.reset()
        self.init_rtc_processor()

    # ----- real-time chunking (lerobot-rollout --inference.type=rtc) ---------------------------------------------
    def supports_rtc(self) -> bool:
        return True

    def init_rtc_processor(self) -> None:
        """Called again by lerobot-rollout once it has set config.rtc_config, before the robot connects."""
        rtc = self.config.rtc_config
        self.rtc_processor = RTCProcessor(rtc) if rtc_enabled(rtc) else None
        check_rtc_horizon(self.name, rtc, self.config.horizon, field="horizon")
        if rtc_enabled(rtc) and self.config.n_obs_steps > 1:
            raise ValueError(
                f"imf with n_obs_steps={self.config.n_obs_steps} cannot run under --inference.type=rtc: it reads "
                "frames one control step apart, but LeRobot's RTC thread hands the policy an observation only when "
                "it makes a chunk, so the history would hold frames a whole inference apart. Use "
                "--inference.type=sync, or a checkpoint trained with --policy.n_obs_steps=1."
            )

    # ----- set-up --------------------------------------------------------------------------------------------
    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = encoder_fingerprint(self.backbone.encoder)
        return self._fingerprint

    def cache_key(self) -> dict:
        """What a cache of this policy's view embeddings must have been made with."""
        c = self.config
        return {
            "encoder": c.siglip_model if c.vision_encoder == "siglip" else c.vision_encoder,
            "encoder_fingerprint": self.fingerprint,
            "encoder_image_size": c.encoder_image_size,
            "cameras": list(c.cameras),
        }

    def check_cache(self, cache: dict | None) -> None:
        """Refuse, before any step runs, embeddings cached for another encoder, weights, size or camera set."""
        if cache is None:
            return
        if self.config.vision_encoder != "siglip":
            raise ValueError(f"cached '{OBS_VIEW_EMBEDDINGS}' need the frozen SigLIP encoder, not a trainable CNN")
        expected = self.cache_key()
        refuse_stale_cache(cache, expected, (len(expected["cameras"]), self.backbone.encoder.width))

    def train(self, mode: bool = True) -> IMFPolicy:
        self._compiled = None  # frozen compiled copies would no longer follow the weights
        return super().train(mode)

    def acting_modules(self) -> tuple[Callable[..., Tensor], Callable[..., Tensor]]:
        """The encoder and head that act: the modules themselves, or with compile_inference their compiled copies
        with the weights frozen in, made once per device and dtype."""
        if not self.config.compile_inference or self.training:
            return self.backbone.encoder, self.head
        weight = next(self.head.parameters())
        key = (weight.device, weight.dtype)
        if self._compiled is None or self._compiled[0] != key:
            self._compiled = (key, frozen_compiled(self.backbone.encoder), frozen_compiled(self.head))
        return self._compiled[1], self._compiled[2]

    def get_optim_params(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def reset(self) -> None:
        self._history: deque[dict] = deque(maxlen=self.config.n_obs_steps)
        self._actions: deque[Tensor] = deque()
        self._leftover: Tensor | None = None  # (B, H - d - n, A): the last chunk past what select_action played
        seed = self.config.inference_noise_seed
        self._generator = None if seed is None else torch.Generator(device="cpu").manual_seed(seed)

    # ----- observation ----------------------------------------------------------------------------------------
    def frames(self, batch: dict[str, Tensor]) -> Tensor:
        """The cameras' frames stacked on a view axis: (..., V, 3, h, w), checked against the trained shapes."""
        for key in self.config.camera_keys:
            require_key(batch, key, "imf", f"cameras {self.config.cameras}")
            want = tuple(self.config.input_features[key].shape)
            if tuple(batch[key].shape[-3:]) != want:
                # the preprocessor's so101_resize_cameras brings any camera to the trained size; a checkpoint
                # saved before that step existed does not have it
                raise ValueError(
                    f"'{key}' is {tuple(batch[key].shape[-3:])}, but this policy was trained on {want} frames and "
                    "its preprocessor does not resize cameras (saved before so101_resize_cameras): add the step to a "
                    "copy with so101-joint-limits --policy.path=<checkpoint> --robot_id=<arm> --output_dir=<copy>, "
                    f"or render or record that camera at {want[1]}x{want[2]} (e.g. --env.observation_height="
                    f"{want[1]} --env.observation_width={want[2]})"
                )
        return torch.stack([batch[key] for key in self.config.camera_keys], dim=-4)

    def view_embeddings(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, T, V, W) from a training batch: the cached column if the dataset has one, else the encoder."""
        cached = batch.get(OBS_VIEW_EMBEDDINGS)
        if cached is not None:
            expected = (self.config.n_obs_steps, len(self.config.cameras), self.backbone.encoder.width)
            if tuple(cached.shape[1:]) != expected:
                raise ValueError(f"'{OBS_VIEW_EMBEDDINGS}' is {tuple(cached.shape)}, expected (B, *{expected})")
            return cached.to(dtype=torch.float32)
        return self.backbone.embed(self.frames(batch))

    def condition(self, embeddings: Tensor, state: Tensor | None) -> Tensor:
        """(B, T, V, W) embeddings and (B, T, S) state -> (B, T, C)."""
        parts = [self.backbone.project(embeddings)]
        if self.config.use_state:
            if state is None or state.shape[-1] != self.config.state_dim:
                got = None if state is None else tuple(state.shape)
                raise ValueError(f"'{OBS_STATE}' must end in {self.config.state_dim} values, got {got}")
            parts.append(state)
        return self.condition_projector(torch.cat(parts, dim=-1))

    # ----- LeRobot API ----------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor], reduction: str = "mean") -> tuple[Tensor, dict]:
        if self._unchecked_cache is not None:
            self.check_cache(self._unchecked_cache)
            self._unchecked_cache = None
        x = batch[ACTION]  # (B, H, A), normalised
        if x.ndim != 3 or x.shape[1:] != (self.config.horizon, self.config.action_dim):
            raise ValueError(
                f"'{ACTION}' must be (B, {self.config.horizon}, {self.config.action_dim}), got {tuple(x.shape)}"
            )
        condition = self.condition(self.view_embeddings(batch), batch.get(OBS_STATE))
        r, t = sample_times(x.shape[0], self.config, x.device)
        e = torch.randn_like(x)
        pad = batch.get("action_is_pad")  # steps past the episode's end, copies of its last action
        c = self.config
        per_sample, error = self._loss(
            self.head, x, e, r, t, condition, c.loss_power, c.loss_eps, None if pad is None else ~pad
        )
        loss = per_sample if reduction == "none" else per_sample.mean()
        equal = r == t
        info = {"v_mse": float(error.mean().detach())}
        if equal.any():
            info["flow_mse"] = float(error[equal].mean().detach())
        if (~equal).any():
            info["meanflow_mse"] = float(error[~equal].mean().detach())
        return loss, info

    def _push(self, batch: dict[str, Tensor]) -> None:
        """This step's frames and state enter the history; they are encoded only if a chunk needs them."""
        state = require_key(batch, OBS_STATE, "imf (use_state=true)") if self.config.use_state else batch.get(OBS_STATE)
        entry = {"frames": self.frames(batch), "state": state, "embedding": None}
        if not self._history:  # a new episode: the history starts as copies of its first frame
            self._history.extend([entry] * self.config.n_obs_steps)
        else:
            self._history.append(entry)

    def _history_condition(self) -> Tensor:
        """(B, T, C) from the history, encoding each frame once."""
        encoder, _ = self.acting_modules()
        for entry in self._history:
            if entry["embedding"] is None:
                entry["embedding"] = self.backbone.embed(entry["frames"], encoder)  # (B, V, W)
        embeddings = torch.stack([entry["embedding"] for entry in self._history], dim=1)
        states = torch.stack([entry["state"] for entry in self._history], dim=1) if self.config.use_state else None
        return self.condition(embeddings, states)

    def _sample(self, condition: Tensor, guide: Callable | None = None) -> Tensor:
        shape = (condition.shape[0], self.config.horizon, self.config.action_dim)
        # The weights' dtype, not the condition's: a policy cast to bf16 samples in bf16, one under bf16 autocast
        # (lerobot-eval with use_amp) in float32, as lerobot-eval's .numpy() of the action needs
        dtype = next(self.head.parameters()).dtype
        noise = torch.randn(shape, generator=self._generator).to(device=condition.device, dtype=dtype)
        # RTC's guidance differentiates the head; a frozen compiled copy has no backward, so it guides the module
        head = self.head if guide is not None else self.acting_modules()[1]
        return sample_chunk(head, noise, condition, self.config.num_inference_steps, guide).to(dtype)

    @torch.no_grad()
    def predict_action_chunk(
        self,
        batch: dict[str, Tensor],
        inference_delay: int | None = None,
        prev_chunk_left_over: Tensor | None = None,
        **kwargs,
    ) -> Tensor:
        """(B, horizon, action_dim). Under RTC, with the previous chunk's unexecuted actions (normalised, as this
        returns them) and the inference delay in control steps, the chunk's first actions are steered toward them;
        without a leftover (the first chunk) it is the plain chunk."""
        self._push(batch)
        condition = self._history_condition()
        if self.rtc_processor is None or prev_chunk_left_over is None:
            return self._sample(condition)
        check_rtc_delay(self.name, inference_delay, self.config.horizon)
        return self._sample(condition, rtc_guide(self.config.rtc_config, prev_chunk_left_over, inference_delay))

    @torch.no_grad()
    def select_action(self, batch: dict[str, Tensor], **kwargs) -> Tensor:
        self._push(batch)  # every step, so the history never skips a frame
        if not self._actions:
            d, n = self.config.action_delay_steps, self.config.n_action_steps
            condition = self._history_condition()
            if self.config.delay_guidance and self._leftover is not None:
                # lerobot-eval acts under inference mode, where the guidance cannot differentiate the head: it
                # steers outside it, from copies of the inference tensors
                with torch.inference_mode(False):
                    guide = rtc_guide(RTCConfig(), self._leftover.clone(), d)
                    chunk = self._sample(condition.clone(), guide)  # (B, H, A)
            else:
                chunk = self._sample(condition)
            # chunk[:, i] is meant for i periods after its frame; the first d arrive too late to play
            self._actions.extend(chunk[:, d : d + n].transpose(0, 1))
            self._leftover = chunk[:, d + n :]  # from the period the next chunk's frame is taken at
        return self._actions.popleft()


def rtc_guide(rtc: RTCConfig, leftover: Tensor, delay: int) -> Callable:
    """A sampler guide steering a chunk's first `delay` actions (and, fading, those up to the execution horizon)
    toward `leftover`, the previous chunk's actions from this chunk's frame on (normalised, (B, L, A))."""

    def guide(x_t: Tensor, t: Tensor, r: Tensor, velocity: Callable) -> Tensor:
        # LeRobot's guidance weight (up to max_guidance_weight, 10) suits SmolVLA's ten small Euler steps; over
        # one MeanFlow jump of length t - r a weight above 1 / (t - r) overshoots the leftover (9x past it at
        # 10 for a single jump), so the weight is capped there: at the cap the steered actions land on it.
        cap = min(rtc.max_guidance_weight, 1.0 / float(t - r))
        processor = RTCProcessor(dataclasses.replace(rtc, max_guidance_weight=cap))
        return processor.denoise_step(x_t, leftover, delay, t, velocity)

    return guide
