"""The `hlrp` policy: HLRP's shared core (SmolVLM2 trunk + action head + latent-flow head) fine-tuned on SO-101.

frames [B, 3, H, W] per camera + instruction tokens -> core.pooled [B, hidden] (+ state projection)
-> action head: chunk [B, chunk_size, core.action_dim]; the dataset's A <= action_dim dims are the first A
optional: frozen LAQ labels of (frame t, frame t + gap) -> core.latent_loss, weighted by latent_loss_weight
"""

from __future__ import annotations

import logging
from collections import deque
from pathlib import Path

import torch
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.utils.constants import ACTION, OBS_LANGUAGE_ATTENTION_MASK, OBS_LANGUAGE_TOKENS, OBS_STATE
from torch import Tensor, nn

from so101_core.keys import require_key
from so101_policy_common.pretrained import ChecksSavedProcessors
from so101_policy_common.rtc import RefusesRTC

from .artifact import check_laq, check_matches, load_core_weights, read_manifest
from .configuration_hlrp import HLRPConfig
from .trunk import SharedCore, load_vlm


class HLRPPolicy(RefusesRTC, ChecksSavedProcessors, PreTrainedPolicy):
    config_class = HLRPConfig
    name = "hlrp"
    rtc_refusal = (
        "its action head samples a chunk as one flat vector (regressed in one pass, or a flow over all chunk_size x "
        "action_dim values at once) and has no RTC guidance toward a previous chunk's leftover."
    )

    def __init__(self, config: HLRPConfig, dataset_stats=None, dataset_meta=None, **kwargs):
        super().__init__(config)
        config.validate_features()
        self.config = config
        # A checkpoint being loaded (pretrained_path set) or a config that already records SmolVLM's architecture
        # builds it offline; its weights come from the checkpoint or the artifact next.
        fresh = config.pretrained_path is None
        from_artifact = fresh and config.init_mode == "artifact"
        load_weights = fresh and not from_artifact and config.load_vlm_weights and config.vlm_config is None
        vlm = load_vlm(config.core.vlm_model_name, load_weights, config.vlm_config)
        config.vlm_config = vlm.config.to_dict()
        self.core = SharedCore(config.core, vlm)
        self.core.use_heads(latent=config.latent_loss_weight > 0, codes=False, actions=True)
        hidden = self.core.hidden_size
        self.state_dim = config.input_features[OBS_STATE].shape[0] if config.use_state else 0
        self.action_dim = config.action_feature.shape[0]
        # zero-initialised: an artifact's core starts out predicting exactly what it did in stage 2
        self.state_proj = nn.Linear(self.state_dim, hidden) if config.use_state else None
        if self.state_proj is not None:
            nn.init.zeros_(self.state_proj.weight)
            nn.init.zeros_(self.state_proj.bias)
        manifest = None
        if from_artifact:
            manifest = read_manifest(config.stage2_artifact)
            check_matches(manifest, config.core, config.stage2_artifact)
            load_core_weights(self.core, config.stage2_artifact)
        if fresh and config.stage2:  # lerobot-train's log (the main process's only): what this run starts from
            s = config.stage2
            logging.info("hlrp: core from stage-2 artifact %s (supervision %s, mode %s, step %s, LAQ %s)",
                         s["artifact"], s["supervision"], s["mode"], s["step"], s["laq_folder"])  # fmt: skip
        elif fresh:
            logging.info("hlrp: core from scratch (no stage 2)")
        # The LAQ only labels training batches: kept out of the state dict (a plain list) and loaded when training
        # needs it: now for a fresh policy (errors before any step), at the first training batch when a checkpoint
        # is fine-tuned or resumed (evaluation and rollout never load it)
        self._laq: list[nn.Module] = []
        if fresh and config.latent_loss_weight > 0:
            if manifest is not None:
                check_laq(manifest, config.laq_path, config.stage2_artifact)
            self._laq_model()
        self.reset()

    @classmethod
    def from_pretrained(cls, pretrained_name_or_path, *, config: HLRPConfig | None = None, **kwargs):
        """A checkpoint holds every weight: mark the config so that neither the stage-2 artifact nor SmolVLM's
        weights are read (an evaluation or robot machine may have neither)."""
        if config is None:
            config = HLRPConfig.from_pretrained(pretrained_name_or_path)
        config.pretrained_path = config.pretrained_path or Path(pretrained_name_or_path)
        return super().from_pretrained(pretrained_name_or_path, config=config, **kwargs)

    def _laq_model(self) -> nn.Module:
        if not self._laq:
            from .laq import load_laq

            self._laq.append(load_laq(self.config.laq_path, latent_dim=self.config.core.latent_dim))
        return self._laq[0]

    def get_optim_params(self):
        return [p for p in self.parameters() if p.requires_grad]

    def reset(self) -> None:
        self._actions: deque[Tensor] = deque()

    # ----- observation --------------------------------------------------------------------------------------
    @staticmethod
    def _now(x: Tensor, ndim: int) -> Tensor:
        """Frame t of a key that carries the LAQ pair (an extra time axis in training), else the key itself."""
        return x[:, 0] if x.ndim == ndim + 1 else x

    def condition(self, batch: dict[str, Tensor]) -> Tensor:
        for key in (*self.config.camera_keys, OBS_LANGUAGE_TOKENS, OBS_LANGUAGE_ATTENTION_MASK):
            require_key(batch, key, "hlrp", f"cameras {self.config.cameras}")
        images = [self._now(batch[key], 4) for key in self.config.camera_keys]
        cond = self.core.pooled(images, batch[OBS_LANGUAGE_TOKENS], batch[OBS_LANGUAGE_ATTENTION_MASK])
        if self.state_proj is not None:
            state = self._now(require_key(batch, OBS_STATE, "hlrp (use_state=true)"), 2)
            if state.shape[-1] != self.state_dim:
                raise ValueError(f"'{OBS_STATE}' must have {self.state_dim} values, got {tuple(state.shape)}")
            cond = cond + self.state_proj(state)
        return cond

    # ----- LeRobot API --------------------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor], reduction: str = "mean") -> tuple[Tensor, dict]:
        c = self.config.core
        actions = batch[ACTION]  # [B, chunk, A], normalised
        if actions.ndim != 3 or actions.shape[1:] != (c.chunk_size, self.action_dim):
            raise ValueError(f"'{ACTION}' must be (B, {c.chunk_size}, {self.action_dim}), got {tuple(actions.shape)}")
        cond = self.condition(batch)
        padded = torch.zeros(*actions.shape[:2], c.action_dim, device=actions.device, dtype=actions.dtype)
        padded[..., : self.action_dim] = actions
        mask = torch.zeros_like(padded, dtype=torch.bool)
        mask[..., : self.action_dim] = True
        if "action_is_pad" in batch:  # steps past the episode's end
            mask &= ~batch["action_is_pad"][..., None]
        per_sample = self.core.action_loss(cond, padded, mask)
        info = {"action_loss": float(per_sample.mean().detach())}
        if self.config.latent_loss_weight > 0 and self.training:
            laq = self._laq_model().to(actions.device)
            pair = batch[self.config.laq_key]
            if pair.ndim != 5 or pair.shape[1] != 2:
                raise ValueError(
                    f"'{self.config.laq_key}' must be frames (t, t + gap), [B, 2, 3, H, W], not {tuple(pair.shape)}"
                )
            _, vectors = laq.codes_and_vectors(pair)
            latent = self.core.latent_loss(cond, vectors)
            info["latent_loss"] = float(latent.mean().detach())
            per_sample = per_sample + self.config.latent_loss_weight * latent
        loss = per_sample if reduction == "none" else per_sample.mean()
        return loss, info

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict[str, Tensor], **kwargs) -> Tensor:
        return self.core.sample_actions(self.condition(batch))[..., : self.action_dim]

    @torch.no_grad()
    def select_action(self, batch: dict[str, Tensor], **kwargs) -> Tensor:
        if not self._actions:
            chunk = self.predict_action_chunk(batch)
            self._actions.extend(chunk[:, : self.config.n_action_steps].transpose(0, 1))
        return self._actions.popleft()
