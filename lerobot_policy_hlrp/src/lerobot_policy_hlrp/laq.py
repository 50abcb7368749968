"""HLRP stage 1: LAQ, latent action quantisation (after LAPA's `latent_action_quantization.py` and `nsvq.py`).

A frame pair (t, t+k) becomes `code_seq_len` discrete codes that say what changed; a decoder rebuilds frame t+k from
frame t and the codes, so the codes must carry the motion (the decoder already has the scene).

    encoder:   shared patch embedding of both frames + learned spatial positions
               -> spatial transformer per frame -> temporal transformer per patch position (causal over t, t+k)
               -> (t+k tokens - t tokens) pooled to code_seq_len tokens by learned queries -> quant_dim
    quantiser: NSVQ (noise substitution): in training z + ||z - nearest code|| * random unit direction, so the
               encoder and the codebook get gradients without a straight-through estimator or commitment loss;
               the nearest code at eval. Usage counting, perplexity and dead-code replacement (on by default:
               codebook collapse is LAPA's most reported problem).
    decoder:   patch tokens of frame t cross-attend to the code tokens -> linear to patch pixels -> frame t+k.

Frames are float [B, C, H, W] in [0, 1] of any size; the model resizes them to `image_size` (square) itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from so101_run_infra.atomic import atomic_folder

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class LAQConfig:
    """HLRP's stage-1 sizes by default (LAPA's patch/width/depth, HLRP's codebook 2048 x 1 code of 32 dims)."""

    image_size: int = 256  # frames are resized to image_size x image_size
    channels: int = 3
    patch_size: int = 32
    dim: int = 1024
    spatial_depth: int = 8
    temporal_depth: int = 8
    decoder_depth: int = 8
    heads: int = 16
    dim_head: int = 64
    mlp_ratio: float = 4.0
    code_seq_len: int = 1  # latent action tokens per frame pair (LAPA: 4)
    codebook_size: int = 2048  # (LAPA: 8)
    quant_dim: int = 32
    # The decoder predicts frame t+k as frame t plus a learned change (its last layer starts at zero, so training
    # starts from the copy-frame-t baseline and all capacity goes to what moved).
    predict_residual: bool = True
    # Dead-code replacement: every `dead_code_every` training forwards, codes used fewer than `dead_code_min_uses`
    # times since the last replacement are re-initialised from `dead_code_source`: "encoder" (recent encoder
    # outputs, so new codes land where the data is) or "used" (live codes, as LAPA), plus noise of
    # `dead_code_noise` x the source's RMS. 0 turns it off; `dead_code_stop` (forwards) ends it so that late codes
    # have time to settle (None: never ends).
    dead_code_every: int = 100
    dead_code_min_uses: int = 1
    dead_code_source: str = "encoder"
    dead_code_noise: float = 0.01
    dead_code_stop: int | None = None

    def __post_init__(self):
        positive = ("image_size", "channels", "patch_size", "dim", "heads", "dim_head", "code_seq_len")
        for name in (*positive, "codebook_size", "quant_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"LAQConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("spatial_depth", "temporal_depth", "decoder_depth", "dead_code_every", "dead_code_min_uses"):
            if int(getattr(self, name)) < 0:
                raise ValueError(f"LAQConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.image_size % self.patch_size:
            raise ValueError(
                f"LAQConfig.image_size ({self.image_size}) must be a multiple of patch_size ({self.patch_size})"
            )
        if self.dead_code_source not in ("encoder", "used"):
            raise ValueError(f"LAQConfig.dead_code_source must be 'encoder' or 'used', got {self.dead_code_source!r}")

    @property
    def num_patches(self) -> int:
        return (self.image_size // self.patch_size) ** 2


@dataclass
class LAQOutput:
    # what to back-propagate: the reconstruction MSE, weighted per pixel when weights are given (NSVQ needs no
    # extra term)
    loss: Tensor
    recon_loss: Tensor  # plain (unweighted) MSE of the reconstruction against frame t+k at image_size
    recon: Tensor  # [B, C, S, S] reconstruction of frame t+k
    indices: Tensor  # [B, code_seq_len] long: the nearest code of each latent action token
    perplexity: Tensor  # exp(entropy) of the batch's code histogram: 1 = collapsed, codebook_size = uniform
    used_codes: int  # distinct codes in this batch


# ----- building blocks ------------------------------------------------------------------------------------------
def patchify(x: Tensor, patch: int) -> Tensor:
    """[B, C, H, W] -> [B, (H/p)(W/p), C p p], row-major patches."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // patch) * (w // patch), c * patch * patch)


def unpatchify(x: Tensor, patch: int, channels: int, size: int) -> Tensor:
    """Inverse of patchify for a square image of side `size`."""
    b, g = x.shape[0], size // patch
    x = x.reshape(b, g, g, channels, patch, patch)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(b, channels, size, size)


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dim_head: int):
        super().__init__()
        self.heads, self.dim_head = heads, dim_head
        inner = heads * dim_head
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim)

    def forward(self, x: Tensor, context: Tensor | None = None, causal: bool = False) -> Tensor:
        ctx = x if context is None else context
        b, n, m = x.shape[0], x.shape[1], ctx.shape[1]
        q = self.to_q(x).view(b, n, self.heads, self.dim_head).transpose(1, 2)
        k, v = self.to_kv(ctx).view(b, m, 2, self.heads, self.dim_head).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.to_out(out.transpose(1, 2).reshape(b, n, self.heads * self.dim_head))


class Block(nn.Module):
    """Pre-norm transformer block; with `cross`, a cross-attention to a context between self-attention and MLP."""

    def __init__(self, dim: int, heads: int, dim_head: int, mlp_ratio: float, cross: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dim_head)
        self.cross = cross
        if cross:
            self.norm_x = nn.LayerNorm(dim)
            self.norm_ctx = nn.LayerNorm(dim)
            self.cross_attn = Attention(dim, heads, dim_head)
        hidden = int(dim * mlp_ratio)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor, context: Tensor | None = None, causal: bool = False) -> Tensor:
        x = x + self.attn(self.norm1(x), causal=causal)
        if self.cross:
            x = x + self.cross_attn(self.norm_x(x), self.norm_ctx(context))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch_dim: int, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(patch_dim), nn.Linear(patch_dim, dim), nn.LayerNorm(dim))

    def forward(self, patches: Tensor) -> Tensor:
        return self.net(patches)


# ----- the quantiser --------------------------------------------------------------------------------------------
class NSVQ(nn.Module):
    """Noise-substitution vector quantisation (Vali & Bäckström 2022, as LAPA uses it) with usage bookkeeping.

    Buffers (saved with the weights, so a resumed run continues the replacement schedule exactly):
    `usage` counts each code's hits since the last replacement, `train_steps` the training forwards, `recent` is a
    ring of the latest encoder outputs (the "encoder" replacement source).
    """

    def __init__(self, config: LAQConfig):
        super().__init__()
        self.config = config
        k, d = config.codebook_size, config.quant_dim
        self.codebook = nn.Parameter(torch.randn(k, d))
        self.register_buffer("usage", torch.zeros(k, dtype=torch.long))
        self.register_buffer("train_steps", torch.zeros((), dtype=torch.long))
        self.register_buffer("recent", torch.zeros(k, d))
        self.register_buffer("recent_count", torch.zeros((), dtype=torch.long))
        self.last_replaced = 0  # codes re-initialised by the latest replacement (for logs)

    @torch.no_grad()
    def nearest(self, flat: Tensor) -> Tensor:
        cb = self.codebook.float()
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ cb.t() + cb.pow(2).sum(1)[None]
        return dist.argmin(dim=1)

    def forward(self, z: Tensor, stochastic: bool) -> tuple[Tensor, Tensor, Tensor]:
        """z [B, L, D] -> (quantised [B, L, D], indices [B, L], perplexity). `stochastic`: NSVQ's training path,
        which also counts usage and runs the replacement schedule."""
        b, length, d = z.shape
        # distances and the noise scale in float32 whatever the autocast dtype: argmin over 2048 codes in bf16 ties
        with torch.autocast(device_type=z.device.type, enabled=False):
            if stochastic and self.config.dead_code_every > 0:
                steps = int(self.train_steps)
                stop = self.config.dead_code_stop
                if steps > 0 and steps % self.config.dead_code_every == 0 and (stop is None or steps <= stop):
                    self.last_replaced = self.replace_dead_codes()
            flat = z.reshape(-1, d).float()
            indices = self.nearest(flat)
            hard = self.codebook.float()[indices]
            if stochastic:
                residual = (flat - hard).norm(dim=1, keepdim=True)
                noise = torch.randn_like(flat)
                direction = noise / noise.norm(dim=1, keepdim=True).clamp_min(1e-12)
                # The gradient reaches the encoder through `flat` and the codebook through ||flat - hard||:
                # no straight-through estimator, no commitment loss.
                quantised = flat + residual * direction
                self._record(flat.detach(), indices)
            else:
                quantised = hard
            counts = torch.bincount(indices, minlength=self.config.codebook_size).float()
            probs = counts / counts.sum()
            perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        return quantised.view(b, length, d).to(z.dtype), indices.view(b, length), perplexity

    @torch.no_grad()
    def _record(self, flat: Tensor, indices: Tensor) -> None:
        self.usage += torch.bincount(indices, minlength=self.config.codebook_size)
        self.train_steps += 1
        k = self.recent.shape[0]
        flat = flat[-k:]
        n, start = flat.shape[0], int(self.recent_count) % k
        rows = (torch.arange(n, device=flat.device) + start) % k
        self.recent[rows] = flat.to(self.recent.dtype)
        self.recent_count += n

    @torch.no_grad()
    def replace_dead_codes(self) -> int:
        """Re-initialise the codes used fewer than `dead_code_min_uses` times since the last replacement; reset
        the counts. Returns how many were replaced. Under torch.distributed, rank 0's codebook is broadcast so
        every rank keeps the same parameters."""
        cfg = self.config
        dead = self.usage < cfg.dead_code_min_uses
        n_dead = int(dead.sum())
        replaced = 0
        if n_dead > 0:
            if cfg.dead_code_source == "encoder" and int(self.recent_count) > 0:
                pool = self.recent[: min(int(self.recent_count), self.recent.shape[0])]
            else:
                pool = self.codebook.detach()[~dead]
            if pool.shape[0] > 0:
                pick = torch.randint(pool.shape[0], (n_dead,), device=pool.device)
                scale = pool.float().pow(2).mean().sqrt()
                new = pool[pick] + cfg.dead_code_noise * scale * torch.randn(n_dead, pool.shape[1], device=pool.device)
                self.codebook[dead] = new.to(self.codebook.dtype)
                replaced = n_dead
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.broadcast(self.codebook.data, src=0)
        self.usage.zero_()
        return replaced


# ----- the model ------------------------------------------------------------------------------------------------
class LAQ(nn.Module):
    """Latent action quantisation: `forward(first, last)` for training, `codes_and_vectors` for labelling."""

    def __init__(self, config: LAQConfig):
        super().__init__()
        self.config = c = config
        patch_dim = c.channels * c.patch_size**2
        block = dict(dim=c.dim, heads=c.heads, dim_head=c.dim_head, mlp_ratio=c.mlp_ratio)
        # encoder
        self.patch_embed = PatchEmbed(patch_dim, c.dim)
        self.enc_pos = nn.Parameter(torch.zeros(1, c.num_patches, c.dim))
        self.time_emb = nn.Parameter(torch.zeros(1, 2, c.dim))
        self.spatial = nn.ModuleList(Block(**block) for _ in range(c.spatial_depth))
        self.temporal = nn.ModuleList(Block(**block) for _ in range(c.temporal_depth))
        self.action_queries = nn.Parameter(torch.zeros(1, c.code_seq_len, c.dim))
        self.pool = Block(**block, cross=True)
        self.to_quant = nn.Sequential(nn.LayerNorm(c.dim), nn.Linear(c.dim, c.quant_dim))
        self.vq = NSVQ(c)
        self.from_quant = nn.Linear(c.quant_dim, c.dim)
        self.code_pos = nn.Parameter(torch.zeros(1, c.code_seq_len, c.dim))
        # decoder: its own embedding of frame t, so reconstruction does not reshape the encoder's motion features
        # (LAPA detaches the shared embedding for the same reason)
        self.dec_patch_embed = PatchEmbed(patch_dim, c.dim)
        self.dec_pos = nn.Parameter(torch.zeros(1, c.num_patches, c.dim))
        self.decoder = nn.ModuleList(Block(**block, cross=True) for _ in range(c.decoder_depth))
        self.dec_norm = nn.LayerNorm(c.dim)
        self.to_pixels = nn.Linear(c.dim, patch_dim)
        self._init_weights()

    def _init_weights(self) -> None:
        for p in (self.enc_pos, self.time_emb, self.action_queries, self.code_pos, self.dec_pos):
            nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        if self.config.predict_residual:
            nn.init.zeros_(self.to_pixels.weight)

    # ----- inputs ------------------------------------------------------------------------------------------------
    def prepare(self, pair: Tensor) -> Tensor:
        """Check a frame pair [B, 2, C, H, W] (frames t and t+k: the layout LeRobot gives a key with two delta
        timestamps, and the one every caller uses) and resize it to [B, 2, C, S, S] (S = config.image_size)."""
        c, s = self.config.channels, self.config.image_size
        if not isinstance(pair, Tensor) or pair.ndim != 5 or pair.shape[1] != 2 or pair.shape[2] != c:
            shape = tuple(pair.shape) if isinstance(pair, Tensor) else type(pair).__name__
            raise ValueError(f"LAQ expects a frame pair as a [B, 2, {c}, H, W] float tensor in [0, 1], got {shape}")
        if not pair.is_floating_point():
            raise ValueError(f"LAQ expects float images in [0, 1], got dtype {pair.dtype}")
        if pair.shape[-2:] != (s, s):
            # both frames get the same resize, so the motion between them is kept (stretched, if not square)
            frames = F.interpolate(pair.flatten(0, 1), size=(s, s), mode="bilinear", antialias=True)
            pair = frames.unflatten(0, pair.shape[:2])
        return pair

    # ----- encoder / decoder -------------------------------------------------------------------------------------
    def encode(self, pair: Tensor) -> Tensor:
        """Resized pairs [B, 2, C, S, S] -> latent actions before quantisation [B, code_seq_len, quant_dim]."""
        c, b = self.config, pair.shape[0]
        x = pair.flatten(0, 1)  # [2B, C, S, S], frames of a pair adjacent
        tokens = self.patch_embed(patchify(x, c.patch_size)) + self.enc_pos
        for blk in self.spatial:
            tokens = blk(tokens)
        n = tokens.shape[1]
        # per patch position, the 2-step sequence (t, t+k): causal, so t's token never sees the future
        tokens = tokens.view(b, 2, n, c.dim).transpose(1, 2).reshape(b * n, 2, c.dim) + self.time_emb
        for blk in self.temporal:
            tokens = blk(tokens, causal=True)
        tokens = tokens.view(b, n, 2, c.dim)
        # LAPA's action feature: what the t+k tokens add to the t tokens (a static scene cancels)
        delta = tokens[:, :, 1] - tokens[:, :, 0]
        pooled = self.pool(self.action_queries.expand(b, -1, -1), context=delta)
        return self.to_quant(pooled)

    def decode_codes(self, first: Tensor, vectors: Tensor) -> Tensor:
        """Frame t [B, C, S, S] (already resized) + code vectors [B, code_seq_len, quant_dim] -> frame t+k."""
        c = self.config
        context = self.from_quant(vectors) + self.code_pos
        tokens = self.dec_patch_embed(patchify(first, c.patch_size)) + self.dec_pos
        for blk in self.decoder:
            tokens = blk(tokens, context=context)
        out = unpatchify(self.to_pixels(self.dec_norm(tokens)), c.patch_size, c.channels, c.image_size)
        return first + out if c.predict_residual else out

    # ----- public API --------------------------------------------------------------------------------------------
    def forward(self, pair: Tensor, pixel_weights: Tensor | None = None) -> LAQOutput:
        """Frames t and t+k, float [B, 2, C, H, W] in [0, 1] -> reconstruction of t+k and its loss. In training
        mode the codes go through NSVQ's noise substitution (and count towards dead-code replacement); in eval mode
        the decoder gets the nearest codes. `pixel_weights` [B, S, S] (S = image_size, e.g. from
        `segmentation_pixel_weights`) turn the loss into a weighted mean over pixels; recon_loss stays plain."""
        pair = self.prepare(pair)
        first, last = pair.unbind(1)
        z = self.encode(pair)
        quantised, indices, perplexity = self.vq(z, stochastic=self.training)
        recon = self.decode_codes(first, quantised)
        recon_loss = F.mse_loss(recon.float(), last.float())
        loss = recon_loss if pixel_weights is None else weighted_mse(recon, last, pixel_weights)
        return LAQOutput(
            loss=loss,
            recon_loss=recon_loss.detach(),
            recon=recon,
            indices=indices,
            perplexity=perplexity.detach(),
            used_codes=int(indices.unique().numel()),
        )

    @torch.no_grad()
    def codes_and_vectors(self, pair: Tensor) -> tuple[Tensor, Tensor]:
        """The latent action labels of frame pairs [B, 2, C, H, W]: indices [B, code_seq_len] long and their codebook
        rows [B, code_seq_len, quant_dim] float (nearest codes, no noise, no usage counting, whatever the mode)."""
        was_training = self.training
        self.eval()
        try:
            z = self.encode(self.prepare(pair))
            indices = self.vq.nearest(z.reshape(-1, self.config.quant_dim).float()).view(z.shape[0], -1)
            return indices, self.vq.codebook.detach()[indices].float()
        finally:
            self.train(was_training)

    def codes_used_since_replacement(self) -> int:
        return int((self.vq.usage > 0).sum())

    def save_pretrained(self, folder: str | Path) -> None:
        """folder/config.json + folder/model.safetensors, written in a staging folder that then replaces `folder`."""
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_folder(folder) as tmp:
            (tmp / CONFIG_NAME).write_text(json.dumps(dataclasses.asdict(self.config), indent=2))
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> LAQ:
        """A LAQ saved by save_pretrained, strictly loaded, in eval mode."""
        from safetensors.torch import load_file

        folder = Path(folder)
        for name in (CONFIG_NAME, WEIGHTS_NAME):
            if not (folder / name).is_file():
                raise FileNotFoundError(
                    f"LAQ checkpoint folder '{folder}' has no {name} (expected {CONFIG_NAME} + {WEIGHTS_NAME}, "
                    "as LAQ.save_pretrained or hlrp-train-laq's output_dir/laq writes)"
                )
        raw = json.loads((folder / CONFIG_NAME).read_text())
        known = {f.name for f in dataclasses.fields(LAQConfig)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise ValueError(f"{folder / CONFIG_NAME} has fields LAQConfig does not know: {unknown}")
        model = cls(LAQConfig(**raw))
        state = load_file(str(folder / WEIGHTS_NAME))
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as err:
            raise RuntimeError(f"{folder / WEIGHTS_NAME} does not match its {CONFIG_NAME}: {err}") from err
        return model.eval()


def weighted_mse(recon: Tensor, target: Tensor, weights: Tensor) -> Tensor:
    """sum_p w_p * mean_c (recon - target)^2 / sum_p w_p over the batch's pixels p: a weighted mean, so that equal
    weights give the plain MSE and only the weights' ratios matter. recon/target [B, C, S, S], weights [B, S, S]."""
    if weights.shape != (recon.shape[0], *recon.shape[-2:]):
        raise ValueError(f"pixel weights must be {(recon.shape[0], *recon.shape[-2:])}, got {tuple(weights.shape)}")
    err = (recon.float() - target.float()).square().mean(1)
    w = weights.to(err)
    return (w * err).sum() / w.sum().clamp_min(1e-12)


def segmentation_pixel_weights(classes: Tensor, class_weights: Tensor, size: int) -> Tensor:
    """Class ids of frames t and t+k [B, 2, H, W] (the 6-class map) -> per-pixel weights [B, size, size]: each
    pixel weighs as the heavier of its classes in the two frames, so a moving object counts where it was and where
    it went. Class maps are resized by nearest neighbour (ids must not blend)."""
    if classes.ndim != 4 or classes.shape[1] != 2:
        raise ValueError(f"class ids must be frames (t, t+k) [B, 2, H, W], got {tuple(classes.shape)}")
    ids = classes.long()
    if ids.shape[-2:] != (size, size):
        ids = F.interpolate(ids.float(), size=(size, size), mode="nearest").long()
    if int(ids.max()) >= len(class_weights) or int(ids.min()) < 0:
        raise ValueError(f"class ids in [{int(ids.min())}, {int(ids.max())}], weights given for {len(class_weights)}")
    return class_weights.to(ids.device)[ids].amax(1)


def laq_checkpoint_hash(folder: str | Path) -> str:
    """sha256 (hex) of folder/model.safetensors: the identity stage 2 records and stage 3 checks."""
    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise FileNotFoundError(f"LAQ checkpoint folder '{folder}' has no {WEIGHTS_NAME} to hash")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_laq(
    folder: str | Path,
    *,
    latent_dim: int | None = None,
    codes: tuple[int, int] | None = None,
    code_seq_len: int | None = None,
) -> LAQ:
    """A frozen LAQ (eval mode, no gradients) from `folder`, checked against what its consumer was built for:
    `latent_dim`, the latent head's width (= code_seq_len x quant_dim), `code_seq_len` (the trunk's tokens per
    latent action), and `codes`, the code head's (code_seq_len, codebook_size). Stage 2's trainer and the hlrp
    policy both load it here, so a mismatch is named before any step."""
    laq = LAQ.from_pretrained(folder).eval().requires_grad_(False)
    c = laq.config
    where = Path(folder) / CONFIG_NAME
    if latent_dim is not None and c.code_seq_len * c.quant_dim != latent_dim:
        raise ValueError(
            f"core.latent_dim ({latent_dim}) must be the LAQ's code_seq_len x quant_dim "
            f"({c.code_seq_len} x {c.quant_dim} = {c.code_seq_len * c.quant_dim}) from {where}"
        )
    if code_seq_len is not None and c.code_seq_len != code_seq_len:
        raise ValueError(
            f"core.code_seq_len ({code_seq_len}) must be the LAQ's code_seq_len ({c.code_seq_len}) from {where}"
        )
    if codes is not None and (c.code_seq_len, c.codebook_size) != tuple(codes):
        raise ValueError(
            f"core code_seq_len/codebook_size {tuple(codes)} must be the LAQ's "
            f"({c.code_seq_len}, {c.codebook_size}) from {where}"
        )
    return laq
