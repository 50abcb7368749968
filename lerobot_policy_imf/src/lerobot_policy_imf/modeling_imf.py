"""`imf`: multiview frozen SigLIP2 features -> a one-step improved-MeanFlow action head on an Attention-Residuals
transformer (after roboimi's SigLIP2 multiview plan).

Shapes, with B batch, T = n_obs_steps, V cameras, W encoder width (768 for SigLIP2-B), P = per_view_dim,
S state dim, C condition dim, H = horizon, A action dim, N = 2 + T + H head tokens:
    frames            (B, T, V, 3, h, w) in [0, 1]   resized to the encoder's side unless already that size
    view embeddings   (B, T, V, W)                    the frozen encoder's pooled output (cacheable)
    visual condition  (B, T, V * P)                   one projection per view, concatenated over views
    condition         (B, T, C)                       [visual, state], then optionally projected to 384
    head tokens       (B, N, n_emb)                   [t, t - r, condition_1..T, z_1..H]
    u(z, r, t)        (B, H, A)                       the average velocity from time t back to time r

improved MeanFlow (Geng et al., arXiv 2512.02012), with data at t = 0 and noise at t = 1:
    z_t = (1 - t) x + t e,            the conditional velocity is e - x
    v(z_t, t) = u(z_t, t, t)          the network's own instantaneous velocity
    du/dt = d/dt u(z_t, r, t) along (dz/dt = v, dr/dt = 0, dt/dt = 1)       one torch.func.jvp
    V = u(z_t, r, t) + (t - r) sg(du/dt)  is regressed onto e - x           (at r = t this is flow matching)
and one step of sampling is x = e - u(e, 0, 1); k steps walk t = 1 -> 0 with z_r = z_t - (t - r) u(z_t, r, t).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import itertools
import math
import warnings
from collections import deque
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from lerobot.policies.diffusion.modeling_diffusion import SpatialSoftmax
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.policies.rtc.modeling_rtc import RTCProcessor
from lerobot.utils.constants import ACTION, OBS_STATE
from torch import Tensor, nn

from so101_policy_common.pretrained import ChecksSavedProcessors
from so101_policy_common.rtc import check_rtc_delay, check_rtc_horizon, rtc_enabled

from .configuration_imf import CACHE_MUST_MATCH, OBS_VIEW_EMBEDDINGS, IMFConfig


# ----- vision ------------------------------------------------------------------------------------------------
def resized(images: Tensor, side: int) -> Tensor:
    """(N, 3, h, w) -> (N, 3, side, side); frames already that size pass untouched (the plan's raw-256 data)."""
    if images.shape[-2:] == (side, side):
        return images
    return F.interpolate(images, size=(side, side), mode="bilinear", antialias=True, align_corners=False)


class SiglipEncoder(nn.Module):
    """The SigLIP(2) vision tower, frozen and always in eval mode: [0, 1] pixels -> pooled (N, W)."""

    def __init__(self, config: IMFConfig):
        super().__init__()
        from transformers import SiglipVisionConfig, SiglipVisionModel

        if config.siglip_config is not None:  # a checkpoint: the architecture is known, its weights come next
            self.tower = SiglipVisionModel(SiglipVisionConfig(**config.siglip_config))
        elif config.load_encoder_weights:
            self.tower = SiglipVisionModel.from_pretrained(config.siglip_model)
        else:
            self.tower = SiglipVisionModel(SiglipVisionConfig.from_pretrained(config.siglip_model))
        vision = self.tower.config
        config.siglip_config = {
            k: v for k, v in vision.to_dict().items() if k in SiglipVisionConfig().to_dict() and k != "model_type"
        }
        if vision.image_size != config.encoder_image_size:
            raise ValueError(
                f"{config.siglip_model} takes {vision.image_size}x{vision.image_size} images; set "
                f"--policy.encoder_image_size={vision.image_size}"
            )
        self.side = vision.image_size
        self.width = vision.hidden_size
        self.tower.requires_grad_(False)
        self.tower.eval()

    def train(self, mode: bool = True) -> SiglipEncoder:
        return super().train(False)  # frozen: no dropout, whatever the policy's mode

    @torch.no_grad()
    def forward(self, images: Tensor) -> Tensor:
        pixels = (resized(images, self.side) - 0.5) / 0.5  # the SigLIP image processor's mean = std = 0.5
        return self.tower(pixel_values=pixels).pooler_output


class CnnEncoder(nn.Module):
    """A small trainable CNN with a spatial-softmax readout, for runs without pretrained weights."""

    def __init__(self, config: IMFConfig):
        super().__init__()
        layers, channels = [], 3
        for i, width in enumerate(config.cnn_channels):
            layers += [nn.Conv2d(channels, width, 3, stride=2 if i < 3 else 1, padding=1), nn.GroupNorm(8, width)]
            layers.append(nn.ReLU(inplace=True))
            channels = width
        self.convnet = nn.Sequential(*layers)
        self.side = config.encoder_image_size
        self.pad = config.random_shift_pad
        with torch.no_grad():
            grid = self.convnet(torch.zeros(1, 3, self.side, self.side)).shape[1:]
        self.keypoints = SpatialSoftmax(tuple(grid), num_kp=config.cnn_keypoints)
        self.width = 2 * config.cnn_keypoints

    def forward(self, images: Tensor) -> Tensor:
        x = resized(images, self.side)
        if self.training and self.pad:  # DrQ's random shift: pad by replication, crop back at a random offset
            n = x.shape[0]
            x = F.pad(x, (self.pad,) * 4, mode="replicate")
            dy, dx = torch.randint(0, 2 * self.pad + 1, (2, n), device=x.device)
            rows = (dy[:, None] + torch.arange(self.side, device=x.device)).view(n, 1, self.side, 1)
            cols = (dx[:, None] + torch.arange(self.side, device=x.device)).view(n, 1, 1, self.side)
            x = x[torch.arange(n, device=x.device).view(n, 1, 1, 1), torch.arange(3).view(1, 3, 1, 1), rows, cols]
        return self.keypoints(self.convnet(x * 2.0 - 1.0)).flatten(1)


class MultiviewBackbone(nn.Module):
    """One encoder shared by every view, each view encoded on its own, one projection per view."""

    def __init__(self, config: IMFConfig):
        super().__init__()
        self.encoder = SiglipEncoder(config) if config.vision_encoder == "siglip" else CnnEncoder(config)
        self.frozen = config.vision_encoder == "siglip"
        self.views = len(config.cameras)
        self.projections = nn.ModuleList(nn.Linear(self.encoder.width, config.per_view_dim) for _ in config.cameras)
        self.output_dim = self.views * config.per_view_dim

    def embed(self, frames: Tensor, encoder=None) -> Tensor:
        """(..., V, 3, h, w) -> (..., V, W): every frame of every view through the shared encoder (or a compiled
        copy of it)."""
        lead = frames.shape[:-3]
        encoder = self.encoder if encoder is None else encoder
        return encoder(frames.reshape(-1, *frames.shape[-3:])).view(*lead, self.encoder.width)

    def project(self, embeddings: Tensor) -> Tensor:
        """(..., V, W) -> (..., V * P)."""
        return torch.cat([proj(embeddings[..., i, :]) for i, proj in enumerate(self.projections)], dim=-1)

    def forward(self, frames: Tensor) -> Tensor:  # (B, T, V, 3, h, w) -> (B, T, V * P)
        return self.project(self.embed(frames))


# ----- the head ----------------------------------------------------------------------------------------------
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


# ----- improved MeanFlow ---------------------------------------------------------------------------------------
def sample_times(batch: int, config: IMFConfig, device, generator: torch.Generator | None = None):
    """(r, t) with 0 <= r <= t <= 1: two logit-normal draws sorted, and r = t for `equal_time_share` of them."""
    draws = torch.sigmoid(
        config.time_mu + config.time_sigma * torch.randn(2, batch, device=device, generator=generator)
    )
    t, r = draws.max(dim=0).values, draws.min(dim=0).values
    equal = torch.rand(batch, device=device, generator=generator) < config.equal_time_share
    return torch.where(equal, t, r), t


def imf_loss_terms(net, x: Tensor, e: Tensor, r: Tensor, t: Tensor, condition: Tensor):
    """The compound V = u + (t - r) sg(du/dt) and its regression target e - x, each (B, H, A); also u and du/dt.

    `net(z, r, t, condition)` is the average-velocity network. The tangent of z is the network's own
    instantaneous velocity u(z_t, t, t), computed without gradient (iMF), so the target does not depend on
    which noise sample met which action chunk.
    """
    tt = t.view(-1, 1, 1)
    z = (1 - tt) * x + tt * e
    with torch.no_grad():
        v = net(z, t, t, condition)
    u, dudt = torch.func.jvp(
        lambda z_, r_, t_: net(z_, r_, t_, condition), (z, r, t), (v, torch.zeros_like(r), torch.ones_like(t))
    )
    dudt = dudt.detach()
    return u + (t - r).view(-1, 1, 1) * dudt, e - x, u, dudt


def imf_loss(net, x, e, r, t, condition, power: float, eps: float, valid: Tensor | None = None):
    """Per-sample loss (B,) and squared error (B, H, A) of the compound against e - x: the mean over valid
    (unpadded) action steps, divided by sg((error + eps)^power), the adaptive weight of the iMF code."""
    compound, target, _, _ = imf_loss_terms(net, x, e, r, t, condition)
    error = (compound - target) ** 2
    mask = torch.ones_like(error) if valid is None else valid.to(error).unsqueeze(-1).expand_as(error)
    per_sample = (error * mask).sum(dim=(1, 2)) / mask.sum(dim=(1, 2)).clamp(min=1)
    if power:
        per_sample = per_sample / (per_sample.detach() + eps) ** power
    return per_sample, error


@torch.no_grad()
def sample_chunk(net, noise: Tensor, condition: Tensor, steps: int, guide: Callable | None = None) -> Tensor:
    """Walk t = 1 -> 0 in `steps` jumps of the average velocity: z_r = z_t - (t - r) u(z_t, r, t).

    With `guide` (real-time chunking: LeRobot's `RTCProcessor.denoise_step`), each jump follows the guided average
    velocity to 0 instead: z_t - t u(z_t, 0, t) is then exactly the clean chunk the guidance compares with the
    previous chunk's leftover, and the jump z_t - (t - r) u(z_t, 0, t) is the deterministic DDIM step toward it
    (the same as the plain walk when steps = 1)."""
    z = noise
    times = torch.linspace(1.0, 0.0, steps + 1, device=noise.device, dtype=noise.dtype)
    for t, r in itertools.pairwise(times):
        tb, rb = t.expand(z.shape[0]), r.expand(z.shape[0])
        if guide is None:
            u = net(z, rb, tb, condition)
        else:
            u = guide(z, t, r, lambda x, tb=tb: net(x, torch.zeros_like(tb), tb, condition))
        z = z - (t - r) * u
    return z


class CompiledLoss:
    """`imf_loss` through torch.compile, falling back to eager (with a warning) when inductor fails to build it:
    on one H200 with torch 2.11 Triton's make_ttgir pass rejects a fused kernel of this loss ("PassManager::run
    failed", an upstream compiler bug), which would otherwise end a training run at its first step. Eager gives
    the same loss and gradients, only slower."""

    def __init__(self, mode: str):
        import torch._dynamo.exc
        import torch._inductor.exc  # the errors caught below: torch.compile imports them lazily

        self.mode = mode
        self.compiled = torch.compile(imf_loss, mode=mode, dynamic=False)
        self.failed: str | None = None  # the compile error, once it happened

    def __call__(self, *args):
        if self.failed is None:
            try:
                return self.compiled(*args)
            except (torch._inductor.exc.InductorError, torch._dynamo.exc.BackendCompilerFailed) as e:
                self.failed = f"{type(e).__name__}: {str(e).strip().splitlines()[0]}"
                warnings.warn(
                    f"compile_train (mode {self.mode!r}): torch.compile could not build imf's loss on this "
                    f"machine ({self.failed}); training goes on in eager mode, same loss, slower",
                    stacklevel=2,
                )
        return imf_loss(*args)


def frozen_compiled(module: nn.Module):
    """A copy of `module` through torch.compile with inductor's freezing, for inference: its weights become
    constants of the compiled code. A copy, because dynamo would hand a later compile of the same module the
    frozen code of the first (its guards check which tensors, not their values). The config is patched around every
    call: compilation is lazy, and `torch.compile(options={"freezing": True})` does not reach the freezing pass."""
    import torch._inductor.config

    compiled = torch.compile(copy.deepcopy(module), dynamic=False)

    def call(*args: Tensor) -> Tensor:
        with torch._inductor.config.patch(freezing=True):
            return compiled(*args)

    return call


# ----- the policy ----------------------------------------------------------------------------------------------
def dataset_fingerprint(root: str | Path) -> str:
    """A hash of a dataset's meta/info.json (frame and episode counts, features): it changes when episodes are
    added or the dataset is re-recorded."""
    return hashlib.sha256((Path(root) / "meta" / "info.json").read_bytes()).hexdigest()[:16]


def encoder_fingerprint(encoder: nn.Module) -> str:
    """A hash of the encoder's weights: a cache of its embeddings is valid for these weights only."""
    digest = hashlib.sha256()
    for name, tensor in sorted(encoder.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


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
        stale = {k: (cache.get(k), expected[k]) for k in CACHE_MUST_MATCH if cache.get(k) != expected[k]}
        shape = (len(expected["cameras"]), self.backbone.encoder.width)
        if tuple(cache["shape"]) != shape:
            stale["shape"] = (tuple(cache["shape"]), shape)
        source = cache.get("source_root")
        now = dataset_fingerprint(source) if source and (Path(source) / "meta" / "info.json").is_file() else None
        if now is not None and now != cache.get("source_fingerprint"):
            stale["source dataset (changed since)"] = (cache.get("source_fingerprint"), now)
        if stale:
            details = "; ".join(f"{k}: cache {got!r}, policy {want!r}" for k, (got, want) in stale.items())
            raise ValueError(
                f"the dataset's '{OBS_VIEW_EMBEDDINGS}' cache is stale for this policy ({details}). Rebuild it with "
                "imf-cache-embeddings for this policy (same --policy.siglip_model, weights, encoder_image_size and "
                "cameras), or train on the raw dataset."
            )

    def train(self, mode: bool = True) -> IMFPolicy:
        self._compiled = None  # frozen compiled copies would no longer follow the weights
        return super().train(mode)

    def acting_modules(self) -> tuple:
        """The encoder and head that act: the modules themselves, or with compile_inference their compiled copies
        with the weights frozen in, made once per device and dtype."""
        if not self.config.compile_inference or self.training:
            return self.backbone.encoder, self.head
        weight = next(self.head.parameters())
        key = (weight.device, weight.dtype)
        if self._compiled is None or self._compiled[0] != key:
            self._compiled = (key, frozen_compiled(self.backbone.encoder), frozen_compiled(self.head))
        return self._compiled[1], self._compiled[2]

    def get_optim_params(self):
        return [p for p in self.parameters() if p.requires_grad]

    def reset(self) -> None:
        self._history: deque[dict] = deque(maxlen=self.config.n_obs_steps)
        self._actions: deque[Tensor] = deque()
        seed = self.config.inference_noise_seed
        self._generator = None if seed is None else torch.Generator(device="cpu").manual_seed(seed)

    # ----- observation ----------------------------------------------------------------------------------------
    def frames(self, batch: dict[str, Tensor]) -> Tensor:
        """The cameras' frames stacked on a view axis: (..., V, 3, h, w), checked against the trained shapes."""
        for key in self.config.camera_keys:
            if key not in batch:
                raise KeyError(f"imf needs '{key}' (cameras {self.config.cameras}); the batch has {sorted(batch)}")
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
        state = batch.get(OBS_STATE)
        if self.config.use_state and state is None:
            raise KeyError(f"imf (use_state=true) needs '{OBS_STATE}'; the batch has {sorted(batch)}")
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

        def guide(x_t: Tensor, t: Tensor, r: Tensor, velocity: Callable) -> Tensor:
            # LeRobot's guidance weight (up to max_guidance_weight, 10) suits SmolVLA's ten small Euler steps; over
            # one MeanFlow jump of length t - r a weight above 1 / (t - r) overshoots the leftover (9x past it at
            # 10 for a single jump), so the weight is capped there: at the cap the steered actions land on it.
            rtc = self.config.rtc_config
            cap = min(rtc.max_guidance_weight, 1.0 / float(t - r))
            processor = RTCProcessor(dataclasses.replace(rtc, max_guidance_weight=cap))
            return processor.denoise_step(x_t, prev_chunk_left_over, inference_delay, t, velocity)

        return self._sample(condition, guide)

    @torch.no_grad()
    def select_action(self, batch: dict[str, Tensor], **kwargs) -> Tensor:
        self._push(batch)  # every step, so the history never skips a frame
        if not self._actions:
            chunk = self._sample(self._history_condition())
            self._actions.extend(chunk[:, : self.config.n_action_steps].transpose(0, 1))
        return self._actions.popleft()
