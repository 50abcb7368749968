"""The shared core of HLRP stages 2 and 3: a SmolVLM2 image + instruction trunk and its heads.

    trunk:        camera frames [B, 3, H, W] in [0, 1] (one or more) + instruction tokens [B, L]
                  -> SmolVLM2 vision tower + connector -> image tokens, then the (truncated) text model over
                  [image tokens, instruction tokens] -> masked mean of the last hidden states: pooled [B, hidden]
    latent head:  flow matching on the LAQ codebook vectors of the frame pair, flattened [B, S * D]
    code head:    token cross-entropy on the LAQ code indices [B, S] (mode "codes")
    action head:  regression (MSE) or flow matching on the action chunk [B, chunk, action_dim], masked per dim

One definition serves stage 2 (`hlrp-train-trunk`) and stage 3 (the `hlrp` policy), so a stage-2 artifact loads
into the policy with strict=True. Built from a config (SmolVLM's from `vlm_model_name`, or the stored dict), so the
same class builds a tiny random test model and the real 500M one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SMOLVLM2_500M = "HuggingFaceTB/SmolVLM2-500M-Video-Instruct"
MODES = ("codes", "actions", "multitask")
ACTION_HEADS = ("regression", "flow")


@dataclass
class CoreConfig:
    """What a stage-2 artifact's manifest records and stage 3 must rebuild exactly."""

    vlm_model_name: str = SMOLVLM2_500M
    num_vlm_layers: int = 16  # SmolVLA's choice: the first half of SmolVLM2-500M's 32 text layers
    # Frames are resized with padding to the vision tower's square size (512 for SmolVLM2)
    # Instruction tokens; shorter prompts are padded (masked out of the pooling)
    tokenizer_max_length: int = 48
    freeze_vision_encoder: bool = True
    # heads
    head_hidden: int = 512
    head_depth: int = 3
    latent_dim: int = 32  # S * D of the LAQ: code_seq_len * quant_dim (HLRP: 1 x 32)
    code_seq_len: int = 1
    codebook_size: int = 2048
    action_dim: int = 32  # the OXE adapter's target dimension (SmolVLA's max_action_dim)
    chunk_size: int = 50
    action_head: str = "regression"  # "regression" (MSE, HLRP's default) or "flow": an open question of HLRP's plan
    flow_steps: int = 10
    # Beta(alpha, beta) time sampling for flow matching (HLRP / SmolVLA: Beta(1.5, 1.0))
    time_alpha: float = 1.5
    time_beta: float = 1.0

    def __post_init__(self):
        if self.action_head not in ACTION_HEADS:
            raise ValueError(f"action_head={self.action_head!r}; choose one of {list(ACTION_HEADS)}")
        if self.latent_dim % self.code_seq_len:
            raise ValueError(f"latent_dim ({self.latent_dim}) must be code_seq_len ({self.code_seq_len}) x quant_dim")


def load_vlm(name: str, load_weights: bool, vlm_config: dict | None = None) -> nn.Module:
    """SmolVLM's base model (vision tower, connector, text model; no LM head).

    With `load_weights` the weights come from `name` (Hub id or local folder); otherwise the architecture is built
    from `vlm_config` (a stored config dict, so a checkpoint rebuilds offline) or from `name`'s config, randomly
    initialised, and a checkpoint's state dict fills it.
    """
    from transformers import AutoConfig, AutoModel, SmolVLMConfig

    if load_weights:
        return AutoModel.from_pretrained(name, dtype=torch.float32)
    config = SmolVLMConfig(**vlm_config) if vlm_config else AutoConfig.from_pretrained(name)
    return AutoModel.from_config(config)


class SinusoidalTime(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim

    def forward(self, t: Tensor) -> Tensor:  # [B] in [0, 1] -> [B, dim]
        half = self.dim // 2
        freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
        angles = 1000.0 * t[:, None].float() * freqs[None]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


def mlp(inp: int, hidden: int, out: int, depth: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(depth - 1):
        layers += [nn.Linear(inp if i == 0 else hidden, hidden), nn.SiLU()]
    layers.append(nn.Linear(hidden if depth > 1 else inp, out))
    return nn.Sequential(*layers)


class FlowHead(nn.Module):
    """Conditional flow matching on a flat target x1 [B, N]: x_t = t * noise + (1 - t) * x1, the network
    predicts the velocity noise - x1, and sampling integrates from t = 1 (noise) to t = 0 (SmolVLA's convention)."""

    def __init__(self, cond_dim: int, target_dim: int, hidden: int, depth: int, alpha: float, beta: float):
        super().__init__()
        self.target_dim = target_dim
        self.time = SinusoidalTime(hidden)
        self.net = mlp(cond_dim + target_dim + hidden, hidden, target_dim, depth)
        self.time_dist = torch.distributions.Beta(torch.tensor(alpha), torch.tensor(beta))

    def velocity(self, cond: Tensor, x_t: Tensor, t: Tensor) -> Tensor:
        return self.net(torch.cat([cond, x_t, self.time(t)], dim=-1))

    def loss(self, cond: Tensor, x1: Tensor, weight: Tensor | None = None) -> Tensor:
        """Per-sample flow-matching MSE [B]; `weight` [B, N] masks target entries (padded action dims)."""
        noise = torch.randn_like(x1)
        t = (self.time_dist.sample((x1.shape[0],)) * 0.999 + 0.001).to(x1)
        x_t = t[:, None] * noise + (1 - t[:, None]) * x1
        err = (self.velocity(cond, x_t, t) - (noise - x1)).square()
        return masked_mean(err, weight)

    @torch.no_grad()
    def sample(self, cond: Tensor, steps: int, noise: Tensor | None = None) -> Tensor:
        x = torch.randn(cond.shape[0], self.target_dim, device=cond.device) if noise is None else noise
        dt = 1.0 / steps
        for i in range(steps):
            t = torch.full((cond.shape[0],), 1.0 - i * dt, device=cond.device)
            x = x - dt * self.velocity(cond, x, t)
        return x


def masked_mean(err: Tensor, weight: Tensor | None) -> Tensor:
    """Mean over all but the batch dim, counting only weighted entries: [B, ...] -> [B]."""
    err = err.flatten(1)
    if weight is None:
        return err.mean(1)
    weight = weight.flatten(1).to(err)
    return (err * weight).sum(1) / weight.sum(1).clamp_min(1.0)


class SharedCore(nn.Module):
    """Trunk + heads. `vlm` is SmolVLM's base model, its text model cut to `num_vlm_layers`."""

    def __init__(self, config: CoreConfig, vlm: nn.Module):
        super().__init__()
        self.config = config
        self.vlm = vlm
        self.vlm.text_model.layers = self.vlm.text_model.layers[: config.num_vlm_layers]
        self.vlm.text_model.config.num_hidden_layers = len(self.vlm.text_model.layers)
        hidden = vlm.config.text_config.hidden_size
        self.hidden_size = hidden
        self.image_size = vlm.config.vision_config.image_size
        self.norm = nn.LayerNorm(hidden)
        c = config
        self.latent_head = FlowHead(hidden, c.latent_dim, c.head_hidden, c.head_depth, c.time_alpha, c.time_beta)
        self.code_head = nn.Linear(hidden, c.code_seq_len * c.codebook_size)
        action_flat = c.chunk_size * c.action_dim
        if c.action_head == "flow":
            self.action_head = FlowHead(hidden, action_flat, c.head_hidden, c.head_depth, c.time_alpha, c.time_beta)
        else:
            self.action_head = mlp(hidden, c.head_hidden, action_flat, c.head_depth)
        if c.freeze_vision_encoder:
            for p in self.vlm.vision_model.parameters():
                p.requires_grad_(False)

    def use_heads(self, *, latent: bool, codes: bool, actions: bool) -> None:
        """Freeze the heads a run does not train: they stay in the state dict (strict loading between stages) but
        get no gradient, which DDP would otherwise report as unused parameters."""
        for head, used in ((self.latent_head, latent), (self.code_head, codes), (self.action_head, actions)):
            head.requires_grad_(used)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.config.freeze_vision_encoder:
            self.vlm.vision_model.eval()
        return self

    # ----- trunk ---------------------------------------------------------------------------------------------
    def embed_images(self, images: list[Tensor]) -> Tensor:
        """Frames [B, 3, H, W] in [0, 1], any size -> image tokens [B, n_cameras * tokens_per_image, hidden]."""
        from lerobot.policies.common.vla_utils import resize_with_pad

        tokens = []
        for img in images:
            if img.ndim != 4 or img.shape[1] != 3:
                raise ValueError(f"trunk frames must be [B, 3, H, W] in [0, 1], got {tuple(img.shape)}")
            x = resize_with_pad(img.float(), self.image_size, self.image_size, pad_value=0.0) * 2.0 - 1.0
            x = x.to(self.vlm.vision_model.embeddings.patch_embedding.weight.dtype)
            hidden = self.vlm.vision_model(pixel_values=x).last_hidden_state
            tokens.append(self.vlm.connector(hidden))
        return torch.cat(tokens, dim=1)

    def pooled(self, images: list[Tensor], tokens: Tensor, token_mask: Tensor) -> Tensor:
        """The trunk's output: masked mean of the last hidden states over image and instruction tokens [B, hidden]."""
        img = self.embed_images(images)
        lang = self.vlm.text_model.get_input_embeddings()(tokens)
        embeds = torch.cat([img, lang.to(img.dtype)], dim=1)
        mask = torch.cat([torch.ones(img.shape[:2], dtype=torch.bool, device=img.device), token_mask.bool()], 1)
        out = self.vlm.text_model(inputs_embeds=embeds, attention_mask=mask.long()).last_hidden_state
        w = mask[..., None].to(out.dtype)
        return self.norm((out * w).sum(1) / w.sum(1))

    def forward(
        self,
        images: list[Tensor],
        tokens: Tensor,
        token_mask: Tensor,
        *,
        indices: Tensor | None = None,
        vectors: Tensor | None = None,
        actions: Tensor | None = None,
        action_mask: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Stage 2's step in one call (so DDP sees a forward): the batch-mean loss of each head given a target."""
        cond = self.pooled(images, tokens, token_mask)
        out = {}
        if indices is not None:
            out["code_ce"] = self.code_loss(cond, indices).mean()
        if vectors is not None:
            out["latent_flow"] = self.latent_loss(cond, vectors).mean()
        if actions is not None:
            out[f"action_{self.config.action_head}"] = self.action_loss(cond, actions, action_mask).mean()
        return out

    # ----- heads ---------------------------------------------------------------------------------------------
    def latent_loss(self, cond: Tensor, vectors: Tensor) -> Tensor:
        """Flow matching on the LAQ codebook vectors [B, S, D] -> per-sample loss [B]."""
        return self.latent_head.loss(cond, vectors.flatten(1).to(cond))

    def code_loss(self, cond: Tensor, indices: Tensor) -> Tensor:
        """Cross-entropy on the LAQ code indices [B, S] -> per-sample loss [B]."""
        logits = self.code_head(cond).view(cond.shape[0], self.config.code_seq_len, self.config.codebook_size)
        return F.cross_entropy(logits.transpose(1, 2), indices, reduction="none").mean(1)

    def action_loss(self, cond: Tensor, actions: Tensor, mask: Tensor) -> Tensor:
        """Actions [B, chunk, action_dim] (already padded to action_dim), mask [B, chunk, action_dim] -> loss [B]."""
        self.check_actions(actions)
        if self.config.action_head == "flow":
            return self.action_head.loss(cond, actions.flatten(1), mask)
        pred = self.action_head(cond)
        return masked_mean((pred - actions.flatten(1)).square(), mask)

    @torch.no_grad()
    def sample_actions(self, cond: Tensor, noise: Tensor | None = None) -> Tensor:
        """[B, chunk, action_dim]."""
        c = self.config
        flow = c.action_head == "flow"
        flat = self.action_head.sample(cond, c.flow_steps, noise) if flow else self.action_head(cond)
        return flat.view(cond.shape[0], c.chunk_size, c.action_dim)

    @torch.no_grad()
    def sample_latents(self, cond: Tensor) -> Tensor:
        """[B, S, D]: the latent action the trunk predicts (what LAQ would label this frame pair with)."""
        c = self.config
        return self.latent_head.sample(cond, c.flow_steps).view(cond.shape[0], c.code_seq_len, -1)

    def check_actions(self, actions: Tensor) -> None:
        c = self.config
        if actions.ndim != 3 or tuple(actions.shape[1:]) != (c.chunk_size, c.action_dim):
            raise ValueError(
                f"action targets must be [B, chunk_size={c.chunk_size}, action_dim={c.action_dim}] after the "
                f"adapter, got {tuple(actions.shape)}"
            )
