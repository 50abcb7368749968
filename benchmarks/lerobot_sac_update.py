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
import statistics
import time
from dataclasses import dataclass, field

import torch
from lerobot.configs import parser
from torch import nn

from so101_run_infra.cli import prepare_command_line


@dataclass
class SACUpdateConfig:
    # batch sizes, one row each per image size
    batch_sizes: list[int] = field(default_factory=lambda: [256, 128])
    # square image sides fed to the encoder (below 39 resized up to it, see "notes")
    image_sizes: list[int] = field(default_factory=lambda: [84, 32])
    # image channels (segdepth's 3 stacked frames of 6 one-hot classes + disparity: 21)
    image_channels: int = 21


def _min_image_size(encoder: nn.Module) -> int:
    """Smallest square input for which every conv of `encoder` has a non-empty output."""
    convs = [m for m in encoder.modules() if isinstance(m, nn.Conv2d)]
    size = 1
    while True:
        n = size
        for conv in convs:
            n = (n + 2 * conv.padding[0] - conv.dilation[0] * (conv.kernel_size[0] - 1) - 1) // conv.stride[0] + 1
            if n < 1:
                break
        else:
            return size
        size += 1


def _policy_config(image_channels: int, image_size: int, state_dim: int, action_dim: int, device: str):
    from lerobot.configs import FeatureType, PolicyFeature
    from lerobot.policies.gaussian_actor.configuration_gaussian_actor import GaussianActorConfig
    from lerobot.utils.constants import ACTION, OBS_IMAGE, OBS_STATE

    return GaussianActorConfig(
        device=device,
        input_features={
            OBS_IMAGE: PolicyFeature(type=FeatureType.VISUAL, shape=(image_channels, image_size, image_size)),
            OBS_STATE: PolicyFeature(type=FeatureType.STATE, shape=(state_dim,)),
        },
        output_features={ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(action_dim,))},
    )


def sac_update_rate(
    batch_size: int,
    image_size: int,
    image_channels: int,
    state_dim: int = 6,
    action_dim: int = 6,
    updates: int = 20,
    warmup: int = 3,
    device: str = "cpu",
) -> dict:
    """Build LeRobot's SAC (gaussian_actor + SACAlgorithm) for one image observation of (image_channels, image_size,
    image_size) plus a state vector, run `warmup` then `updates` full gradient updates (critic + actor + temperature,
    as LeRobot's learner does one optimisation step) on a random batch of that shape, and return
    {"updates_per_s": median-based rate, "ms_per_update_median": ..., "params": total trainable params,
    "notes": short string of the settings used}."""
    from lerobot.policies.gaussian_actor.modeling_gaussian_actor import DefaultImageEncoder, GaussianActorPolicy
    from lerobot.rl.algorithms.factory import make_algorithm
    from lerobot.rl.algorithms.sac import SACAlgorithmConfig
    from lerobot.utils.constants import ACTION, OBS_IMAGE, OBS_STATE

    size = image_size
    probe = _policy_config(image_channels, image_size, state_dim, action_dim, device)
    if probe.vision_encoder_name is None:
        size = max(image_size, _min_image_size(DefaultImageEncoder(probe)))
    policy_cfg = _policy_config(image_channels, size, state_dim, action_dim, device)
    policy = GaussianActorPolicy(policy_cfg)
    policy.train()
    algo_cfg = SACAlgorithmConfig.from_policy_config(policy_cfg)
    algorithm = make_algorithm(cfg=algo_cfg, policy=policy)
    optimizers = algorithm.make_optimizers_and_scheduler()

    dev = torch.device(policy_cfg.device)
    b = batch_size

    def obs() -> dict[str, torch.Tensor]:
        return {
            OBS_IMAGE: torch.randn(b, image_channels, size, size, device=dev),
            OBS_STATE: torch.rand(b, state_dim, device=dev) * 2 - 1,
        }

    batch = {
        "state": obs(),
        "next_state": obs(),
        ACTION: torch.rand(b, action_dim, device=dev) * 2 - 1,
        "reward": torch.rand(b, device=dev),
        "done": torch.zeros(b, device=dev),
        "truncated": torch.zeros(b, device=dev),
    }
    batches = itertools.repeat(batch)

    times = []
    for i in range(warmup + updates):
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        start = time.perf_counter()
        algorithm.update(batches)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        if i >= warmup:
            times.append(time.perf_counter() - start)

    trainable = {id(p): p for opt in optimizers.values() for g in opt.param_groups for p in g["params"]}
    params = sum(p.numel() for p in trainable.values() if p.requires_grad)
    median = statistics.median(times)
    enc = (
        f"default {policy_cfg.image_encoder_hidden_dim}-ch conv encoder"
        f"{' (frozen)' if policy_cfg.freeze_vision_encoder else ''}"
        if policy_cfg.vision_encoder_name is None
        else policy_cfg.vision_encoder_name
    )
    resized = f", input {image_size}->{size} px" if size != image_size else ""
    notes = (
        f"{enc}, latent {policy_cfg.latent_dim}, {algo_cfg.num_critics} critics "
        f"{'x'.join(map(str, algo_cfg.critic_network_kwargs.hidden_dims))}, utd {algo_cfg.utd_ratio}{resized}"
    )
    return {"updates_per_s": 1.0 / median, "ms_per_update_median": 1000 * median, "params": params, "notes": notes}


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
