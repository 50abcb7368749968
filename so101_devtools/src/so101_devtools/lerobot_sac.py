"""LeRobot 0.6.1's own SAC learner, built as `lerobot.rl.learner` builds it, timed on a random image batch: what
benchmarks/lerobot_sac_update.py tables and benchmarks/drqv2_throughput.py sets beside our DrQ-v2."""

import itertools
import statistics
import time

import torch
from torch import nn


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


def _random_batch(
    b: int, image_channels: int, size: int, state_dim: int, action_dim: int, dev: torch.device
) -> dict[str, torch.Tensor]:
    """A replay batch of `b` random transitions in the shape LeRobot's SAC learner samples."""
    from lerobot.utils.constants import ACTION, OBS_IMAGE, OBS_STATE

    def obs() -> dict[str, torch.Tensor]:
        return {
            OBS_IMAGE: torch.randn(b, image_channels, size, size, device=dev),
            OBS_STATE: torch.rand(b, state_dim, device=dev) * 2 - 1,
        }

    return {
        "state": obs(),
        "next_state": obs(),
        ACTION: torch.rand(b, action_dim, device=dev) * 2 - 1,
        "reward": torch.rand(b, device=dev),
        "done": torch.zeros(b, device=dev),
        "truncated": torch.zeros(b, device=dev),
    }


def _timed_updates(algorithm, batch: dict, warmup: int, updates: int, dev: torch.device) -> list[float]:
    """Seconds of each of `updates` full updates on `batch`, after `warmup` untimed ones (synchronised on a GPU)."""
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
    return times


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
    batch = _random_batch(batch_size, image_channels, size, state_dim, action_dim, dev)
    times = _timed_updates(algorithm, batch, warmup, updates, dev)

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
