"""Gradient-update rate of LeRobot 0.6.1's own SAC learner on an image batch (for comparison with our DrQ-v2).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lerobot_sac_update.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/lerobot_sac_update.py --batch_sizes='[256]' --image_sizes='[84]'

SAC is built exactly as `lerobot.rl.learner` builds it: a `GaussianActorPolicy` (policy type `gaussian_actor`, its
default `GaussianActorConfig`) and `make_algorithm(SACAlgorithmConfig.from_policy_config(...), policy)`, optimizers
from `SACAlgorithm.make_optimizers_and_scheduler()`. One timed update is one `SACAlgorithm.update(iterator)` call,
i.e. what the learner's `RLTrainer.training_step()` runs: critic step, actor step, temperature step and the target
network EMA (utd_ratio 1, policy_update_freq 1). The batch is already on the device and already normalised, so
replay sampling, LeRobot's DrQ random-shift augmentation and the normalisation processor are not timed.

LeRobot's default image encoder (`vision_encoder_name=None`) is its built-in 4-layer conv net (`DefaultImageEncoder`,
random init, no download); with the default `freeze_vision_encoder=True` those conv weights are frozen, so only the
spatial embedding, post-encoder, state encoder, actor and critic heads train. That conv stack (kernels 7/5/3/3,
stride 2) has an empty output below 39x39 px, so a smaller `image_size` is fed to it resized up to that minimum
(as LeRobot's image resize processor would do before the replay buffer); "notes" says so.
"""

import itertools
from dataclasses import dataclass, field

import torch
from lerobot.configs import parser

from so101_devtools.lerobot_sac import sac_update_rate
from so101_run_infra.cli import prepare_command_line


@dataclass
class SACUpdateConfig:
    # batch sizes, one row each per image size
    batch_sizes: list[int] = field(default_factory=lambda: [256, 128])
    # square image sides fed to the encoder (below 39 resized up to it, see "notes")
    image_sizes: list[int] = field(default_factory=lambda: [84, 32])
    # image channels (segdepth's 3 stacked frames of 6 one-hot classes + disparity: 21)
    image_channels: int = 21


@parser.wrap()
def benchmark(cfg: SACUpdateConfig) -> None:
    print(
        f"LeRobot SAC updates/s, {torch.get_num_threads()} torch thread(s), {cfg.image_channels} channels + 6-d state"
    )
    print("| batch | image | updates/s | ms/update | trainable params | notes |\n|---:|---:|---:|---:|---:|---|")
    for batch_size, image_size in itertools.product(cfg.batch_sizes, cfg.image_sizes):
        r = sac_update_rate(batch_size=batch_size, image_size=image_size, image_channels=cfg.image_channels)
        print(
            f"| {batch_size} | {image_size} | {r['updates_per_s']:.2f} | {r['ms_per_update_median']:.1f} "
            f"| {r['params']:,} | {r['notes']} |"
        )


def main() -> None:
    prepare_command_line()
    benchmark()


if __name__ == "__main__":
    main()
