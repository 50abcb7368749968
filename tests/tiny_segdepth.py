"""Tiny SegDepth checkpoints for tests: the features a wrist recording gives, and the checkpoint folder
lerobot-train saves from them."""

from pathlib import Path

import torch
from lerobot.configs import FeatureType, PolicyFeature

from lerobot_policy_segdepth import SegDepthConfig, SegDepthPolicy, make_segdepth_pre_post_processors

TINY = {"image_size": 32, "feature_dim": 8, "hidden_dim": 16, "encoder_channels": 8}
WRIST = "observation.images.wrist"


def tiny_config(size: tuple[int, int], rgb: bool = False, ground_truth: bool = True, **settings) -> SegDepthConfig:
    """A tiny SegDepthConfig on the wrist camera's (height, width) frames: RGB and/or the twin's ground truth."""
    h, w = size
    inputs = {WRIST: PolicyFeature(FeatureType.VISUAL, (3, h, w))} if rgb else {}
    if ground_truth:
        for name in ("depth", "segmentation"):
            inputs[f"{WRIST}_{name}"] = PolicyFeature(FeatureType.VISUAL, (1, h, w))
    inputs["observation.state"] = PolicyFeature(FeatureType.STATE, (6,))
    action = {"action": PolicyFeature(FeatureType.ACTION, (6,))}
    return SegDepthConfig(device="cpu", push_to_hub=False, input_features=inputs, output_features=action,
                          **{**TINY, **settings})  # fmt: skip


def save_checkpoint(cfg: SegDepthConfig, out: Path, state_std: float = 1.0) -> Path:
    """The policy and its processors saved into `out`, with state statistics of mean 0 and `state_std`."""
    stats = {"observation.state": {"mean": torch.zeros(6), "std": torch.full((6,), state_std)}}
    for part in (SegDepthPolicy(cfg), *make_segdepth_pre_post_processors(cfg, dataset_stats=stats)):
        part.save_pretrained(out)
    return out
