"""DrQ-v2 gradient updates per second for the segdepth RL configs, on any device, without the simulator.

    .venv/bin/python benchmarks/drqv2_update_device.py                   # CPU, this machine's threads
    python benchmarks/drqv2_update_device.py --device=cuda              # e.g. on a lent GPU machine

For each config in configs/ (rl_reach.yaml, rl_lift_gpu.yaml) it builds the segdepth policy those configs train
(camera, image size, frame stack, encoder width, feature and hidden sizes) from explicit input features, the
DrQ-v2 agent around it (critic, target, optimisers, batch size), and times `agent.update` on a fixed random batch
already on the device: random shift, critic and actor losses, both optimiser steps, the target's soft update.
Median of --updates updates after 5 warm-ups. `benchmarks/drqv2_throughput.py` measures the whole loop (envs,
replay, updates) on this machine; this script isolates the learner, which is what a GPU changes.
"""

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from lerobot.configs import FeatureType, PolicyFeature, parser

from lerobot_policy_segdepth import SegDepthConfig, SegDepthPolicy
from so101_run_infra.cli import prepare_command_line
from so101_segdepth_rl.drqv2 import DrQV2Agent, DrQV2Config

CONFIGS = ("configs/rl_reach.yaml", "configs/rl_lift_gpu.yaml")
POLICY_FIELDS = (
    "camera",
    "image_size",
    "frame_stack",
    "action_repeat",
    "use_state",
    "encoder_channels",
    "feature_dim",
    "hidden_dim",
    "augment_pad",
)


def agent_for(path: str, device: str) -> tuple[DrQV2Agent, dict]:
    raw = yaml.safe_load(Path(path).read_text())
    policy_fields = {k: v for k, v in raw["policy"].items() if k in POLICY_FIELDS}
    h, w = raw["env"]["observation_height"], raw["env"]["observation_width"]
    camera = policy_fields.get("camera", "wrist")
    inputs = {
        f"observation.images.{camera}_depth": PolicyFeature(FeatureType.VISUAL, (1, h, w)),
        f"observation.images.{camera}_segmentation": PolicyFeature(FeatureType.VISUAL, (1, h, w)),
        "observation.state": PolicyFeature(FeatureType.STATE, (6,)),
    }
    config = SegDepthConfig(
        device="cpu",
        input_features=inputs,
        output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))},
        **policy_fields,
    )
    agent_cfg = DrQV2Config(**raw["agent"])
    agent = DrQV2Agent(SegDepthPolicy(config).to(device), agent_cfg)
    return agent, {
        "batch": agent_cfg.batch_size,
        "image": config.image_size,
        "stack": config.frame_stack,
        "channels": config.encoder_channels,
        "classes": config.num_classes,
    }


@dataclass
class DrQV2UpdateDeviceConfig:
    # the torch device the learner runs on (cpu, cuda, cuda:1, ...)
    device: str = "cpu"
    # timed updates per config (after 5 warm-ups); the table shows their median
    updates: int = 30


@parser.wrap()
def benchmark(cfg: DrQV2UpdateDeviceConfig) -> None:
    rows = []
    for path in CONFIGS:
        agent, shape = agent_for(path, cfg.device)
        b, s, c = shape["batch"], shape["image"], 2 * shape["stack"]
        batch = {
            "frames": torch.randint(0, shape["classes"], (b, c, s, s)).float(),
            "next_frames": torch.randint(0, shape["classes"], (b, c, s, s)).float(),
            "state": torch.randn(b, 6),
            "next_state": torch.randn(b, 6),
            "action": torch.rand(b, 6) * 2 - 1,
            "reward": torch.rand(b, 1),
            "discount": torch.full((b, 1), 0.97),
        }
        batch = {k: v.to(cfg.device) for k, v in batch.items()}
        times = []
        for i in range(5 + cfg.updates):
            if cfg.device.startswith("cuda"):
                torch.cuda.synchronize()
            start = time.perf_counter()
            agent.update(batch, step=i)
            if cfg.device.startswith("cuda"):
                torch.cuda.synchronize()
            if i >= 5:
                times.append(time.perf_counter() - start)
        median = statistics.median(times)
        rows.append((path, shape, median))
    name = torch.cuda.get_device_name() if cfg.device.startswith("cuda") else f"cpu, {torch.get_num_threads()} threads"
    print(f"\n### DrQ-v2 updates/s ({name})")
    print("| config | batch | image | frame stack | encoder channels | ms/update | updates/s |")
    print("|---|---|---|---|---|---|---|")
    for path, shape, median in rows:
        print(
            f"| {path} | {shape['batch']} | {shape['image']} | {shape['stack']} | {shape['channels']} | "
            f"{median * 1e3:.1f} | {1 / median:.1f} |"
        )


def main() -> None:
    prepare_command_line()
    benchmark()


if __name__ == "__main__":
    main()
