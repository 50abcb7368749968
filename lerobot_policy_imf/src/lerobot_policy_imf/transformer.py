"""The head of `imf`: u(z, r, t | condition), a bidirectional transformer over [t, t - r, condition tokens, action
tokens], with Attention Residuals (a learned softmax mix over depth) or plain residuals between its sublayers.

Shapes, with B batch, T = n_obs_steps, C condition dim, H = horizon, A action dim, N = 2 + T + H head tokens:
    condition         (B, T, C)
    head tokens       (B, N, n_emb)                   [t, t - r, condition_1..T, z_1..H]
    u(z, r, t)        (B, H, A)                       the average velocity from time t back to time r
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .configuration_imf import IMFConfig


def time_features(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal features of t in [0, 1], unscaled as in the iMF code (a x1000 scale, as diffusion timesteps
    have, would make du/dt, the JVP, a thousand times steeper in t): (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device, dtype=t.dtype) / half)
    angles = t[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def layer_norm(x: Tensor, norm: nn.LayerNorm) -> Tensor:
    """`norm(x)`, written out while torch.compile traces: dynamo cannot take aten's layer_norm through
    torch.func.jvp (torch 2.11: an internal `_fw_primal` assert on fake tensors), and the training step's
    compiled loss (compile_train) runs the head under jvp. Eager keeps aten's kernel, so eager numerics stay."""
    if not torch.compiler.is_compiling():
        return norm(x)
    mean = x.mean(-1, keepdim=True)
    var = (x - mean).square().mean(-1, keepdim=True)
    return (x - mean) * torch.rsqrt(var + norm.eps) * norm.weight + norm.bias


def rms_norm(x: Tensor) -> Tensor:
    """F.rms_norm over the last dimension (eps: the dtype's), written out while torch.compile traces (as layer_norm)."""
    if not torch.compiler.is_compiling():
        return F.rms_norm(x, (x.shape[-1],))
    return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + torch.finfo(x.dtype).eps)


class SelfAttention(nn.Module):
    """Multi-head self-attention written out: forward-mode AD (the iMF JVP) runs through it on any backend."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:  # (B, N, D)
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)
        return self.dropout(self.out((self.dropout(weights) @ v).transpose(1, 2).reshape(b, n, d)))


class SubLayer(nn.Module):
    """A pre-norm sublayer f(h): attention or MLP. The residual around it is the transformer's business."""

    def __init__(self, config: IMFConfig, kind: str):
        super().__init__()
        self.norm = nn.LayerNorm(config.n_emb)
        if kind == "attention":
            self.fn = SelfAttention(config.n_emb, config.n_head, config.dropout)
        else:
            hidden = int(config.mlp_ratio * config.n_emb)
            self.fn = nn.Sequential(
                nn.Linear(config.n_emb, hidden), nn.GELU(), nn.Linear(hidden, config.n_emb), nn.Dropout(config.dropout)
            )

    def forward(self, h: Tensor) -> Tensor:
        return self.fn(layer_norm(h, self.norm))


class DepthMix(nn.Module):
    """Attention Residuals: the input of sublayer l is a softmax mix over depth of the embedding and every
    earlier sublayer's output, weighted by a learned pseudo-query against RMS-normed keys. The query starts at
    zero, so every mix starts as the plain average."""

    def __init__(self, dim: int):
        super().__init__()
        self.query = nn.Parameter(torch.zeros(dim))

    def forward(self, values: Tensor, logits: Tensor | None = None) -> Tensor:
        """values (B, N, L, D): each token's sources over depth, oldest first; logits (B, N, L):
        rms_norm(values) @ query when the caller has them already (IMFTransformer scores each source against
        every mix's query once) -> (B, N, D)."""
        if logits is None:
            logits = rms_norm(values) @ self.query
        weights = torch.softmax(logits, dim=-1)  # over depth, per token
        return (weights.unsqueeze(-2) @ values).squeeze(-2)


class IMFTransformer(nn.Module):
    """u(z, r, t | condition): a bidirectional transformer over [t, t - r, condition tokens, action tokens]."""

    def __init__(self, config: IMFConfig, condition_dim: int, action_dim: int):
        super().__init__()
        d = config.n_emb
        self.attnres = config.residual == "attnres"
        self.action_in = nn.Linear(action_dim, d)
        self.condition_in = nn.Linear(condition_dim, d)
        self.time_in = nn.ModuleList(nn.Sequential(nn.Linear(d, d), nn.SiLU(), nn.Linear(d, d)) for _ in range(2))
        self.position = nn.Parameter(torch.randn(1, 2 + config.n_obs_steps + config.horizon, d) * 0.02)
        kinds = ["attention", "mlp"] * config.n_layer
        self.sublayers = nn.ModuleList(SubLayer(config, kind) for kind in kinds)
        if self.attnres:  # one mix per sublayer input and one for the output
            self.mixes = nn.ModuleList(DepthMix(d) for _ in range(len(kinds) + 1))
        self.norm_out = nn.LayerNorm(d)
        self.action_out = nn.Linear(d, action_dim)
        self.horizon = config.horizon

    def forward(self, z: Tensor, r: Tensor, t: Tensor, condition: Tensor) -> Tensor:
        """z (B, H, A), r and t (B,), condition (B, T, C) -> u (B, H, A)."""
        d = self.position.shape[-1]
        times = [mlp(time_features(x, d)).unsqueeze(1) for mlp, x in zip(self.time_in, (t, t - r), strict=True)]
        h = torch.cat([*times, self.condition_in(condition), self.action_in(z)], dim=1) + self.position
        if self.attnres:
            # Each source is normed and scored against every mix's query once, when it is made, and kept depth-last
            # so a mix is one batched (1 x L) @ (L x D) product per token: at batch 1 the mixes are bound by the
            # number of ops, and re-scoring the whole stack in every mix cost twice the time.
            queries = torch.stack([mix.query for mix in self.mixes], dim=-1)  # (D, M)
            values = h.unsqueeze(2)  # (B, N, 1, D)
            logits = (rms_norm(h) @ queries).unsqueeze(2)  # (B, N, 1, M)
            for index, (sublayer, mix) in enumerate(zip(self.sublayers, self.mixes, strict=False)):
                out = sublayer(mix(values, logits[..., index]))
                values = torch.cat([values, out.unsqueeze(2)], dim=2)
                logits = torch.cat([logits, (rms_norm(out) @ queries).unsqueeze(2)], dim=2)
            h = self.mixes[-1](values, logits[..., -1])
        else:
            for sublayer in self.sublayers:
                h = h + sublayer(h)
        return self.action_out(layer_norm(h[:, -self.horizon :], self.norm_out))
