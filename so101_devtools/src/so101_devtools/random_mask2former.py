"""Mask2Former checkpoints with random weights, written by hand where none can be downloaded: the architecture of
`facebook/mask2former-swin-large-ade-semantic` and the same head on a Swin-Tiny backbone (benchmarks/mask2former_step.py
and segvla_cue_sources.py load them as real checkpoints; random weights cost what trained ones do)."""

from pathlib import Path

from lerobot_policy_segvla.ade20k import ADE20K_150

BACKBONES = {
    # the Swin-L of mask2former-swin-large-ade-semantic (ImageNet-22k, 384 pre-training, window 12)
    "swin-large": dict(embed_dim=192, depths=[2, 2, 18, 2], num_heads=[6, 12, 24, 48], window_size=12, image_size=384),
    "swin-tiny": dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7, image_size=224),
}


def save_random_checkpoint(folder: Path, backbone: str) -> int:
    """Mask2Former with the ADE semantic head (transformers' defaults: 100 queries, 256-d, 10 decoder layers)."""
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
        SwinConfig,
    )

    swin = SwinConfig(**BACKBONES[backbone], drop_path_rate=0.3, out_features=["stage1", "stage2", "stage3", "stage4"])
    id2label = dict(enumerate(ADE20K_150))
    config = Mask2FormerConfig(
        backbone_config=swin,
        num_labels=150,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        num_queries=100,
        use_pretrained_backbone=False,
    )
    model = Mask2FormerForUniversalSegmentation(config)
    model.save_pretrained(folder)
    Mask2FormerImageProcessor().save_pretrained(folder)
    return sum(p.numel() for p in model.parameters())
