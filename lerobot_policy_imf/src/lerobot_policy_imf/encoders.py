"""The vision side of `imf`: a frozen SigLIP(2) tower or a small trainable CNN, shared by every camera view, and one
projection per view.

Shapes, with V cameras, W encoder width (768 for SigLIP2-B), P = per_view_dim:
    frames            (..., V, 3, h, w) in [0, 1]    resized to the encoder's side unless already that size
    view embeddings   (..., V, W)                     the encoder's pooled output (cacheable when it is frozen)
    visual condition  (..., V * P)                    one projection per view, concatenated over views
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from lerobot.policies.diffusion.modeling_diffusion import SpatialSoftmax
from torch import Tensor, nn

from .configuration_imf import IMFConfig


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

    def embed(self, frames: Tensor, encoder: Callable[[Tensor], Tensor] | None = None) -> Tensor:
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
