"""What the suite's policy configs share: LeRobot's AdamW + cosine-with-warmup presets from `optimizer_*` and
`scheduler_*` fields (HLRP, IMF)."""

from __future__ import annotations

from lerobot.optim import AdamWConfig, CosineDecayWithWarmupSchedulerConfig


class AdamWCosinePresets:
    """Mixin for a `PreTrainedConfig` whose lerobot-train presets are AdamW and cosine decay with warmup.

    The config declares the fields (its own defaults): `optimizer_lr`, `optimizer_betas`, `optimizer_weight_decay`,
    `optimizer_grad_clip_norm`, `scheduler_warmup_steps`, `scheduler_decay_steps`, `scheduler_decay_lr`. List the
    mixin before `PreTrainedConfig`: `class MyConfig(AdamWCosinePresets, PreTrainedConfig)`.
    """

    def get_optimizer_preset(self) -> AdamWConfig:
        return AdamWConfig(
            lr=self.optimizer_lr,
            betas=self.optimizer_betas,
            weight_decay=self.optimizer_weight_decay,
            grad_clip_norm=self.optimizer_grad_clip_norm,
        )

    def get_scheduler_preset(self) -> CosineDecayWithWarmupSchedulerConfig:
        return CosineDecayWithWarmupSchedulerConfig(
            peak_lr=self.optimizer_lr,
            decay_lr=self.scheduler_decay_lr,
            num_warmup_steps=self.scheduler_warmup_steps,
            num_decay_steps=self.scheduler_decay_steps,
        )
