"""segdepth-rl-train's throughput: where an env frame's time goes, update rates against LeRobot's SAC, replay memory.

    python benchmarks/drqv2_throughput.py --train_config_path=configs/rl_reach.yaml [--steps=300 --repeats=3]

Prints three tables:
1. one env in this process, per env frame (median of `--repeats` runs of `--steps` decisions): simulation
   (physics + the expert-free twin step), rendering, observation processing (the policy's preprocessor),
   action processing (postprocessor), each in ms and as a share;
2. gradient updates/s of the DrQ-v2 learner at the config's batch shape against LeRobot 0.6.1's SAC
   (`gaussian_actor` + `SACAlgorithm`, built in so101_devtools.lerobot_sac) on the same batch shape, one
   torch thread each, in this process;
3. replay bytes per 100k transitions: this buffer (each frame once) against one that stores stacked
   observation and next observation.
End to end rates (frames/s, updates/s with the env workers) are in a run's train.jsonl and its console.
"""

import dataclasses
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import draccus
import numpy as np
import torch
from lerobot.configs import parser

from so101_run_infra.cli import prepare_command_line


@dataclass
class DrQV2ThroughputConfig:
    # the segdepth-rl-train config whose env, policy and learner are measured
    train_config_path: Path = Path("configs/rl_reach.yaml")
    # decisions per frame-breakdown run
    steps: int = 300
    # runs of the breakdown and of each update-rate measurement (the tables show their median)
    repeats: int = 3
    # gradient updates per update-rate measurement
    updates: int = 20
    # where the from-scratch policy is saved for the env workers to load
    output_dir: Path = Path("outputs/bench/drqv2")


def timed(fn, bucket: list[float]):
    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            bucket.append(time.perf_counter() - start)

    return wrapper


def frame_breakdown(cfg, policy_dir: Path, steps: int) -> dict[str, float]:
    """ms per env frame spent in simulation, rendering, observation and action processing (one env, in-process)."""
    from so101_segdepth_rl.envs import SegDepthTwinEnv

    env_cfg = dataclasses.replace(cfg.env.env_config(cfg.policy.camera), render_cameras=None)  # as training envs
    env = SegDepthTwinEnv(env_cfg, str(policy_dir), cfg.policy.action_repeat)
    buckets = {"simulation": [], "rendering": [], "observation processing": [], "action processing": []}
    twin = env.env.twin
    twin.step = timed(twin.step, buckets["simulation"])
    twin.apply_action = timed(twin.apply_action, buckets["simulation"])
    twin.render = timed(twin.render, buckets["rendering"])
    env._process = timed(env._process, buckets["observation processing"])
    env.post = timed(env.post, buckets["action processing"])
    rng = np.random.default_rng(0)
    env.reset(seed=0)
    for b in buckets.values():
        b.clear()
    start, frames = time.perf_counter(), 0
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 6).astype(np.float32))
        frames += cfg.policy.action_repeat
        if terminated or truncated:
            env.reset()
    total = time.perf_counter() - start
    env.close()
    ms = {name: 1000 * sum(b) / frames for name, b in buckets.items()}
    # observation processing wraps nothing else; rendering happens inside env.step, outside _process
    ms["total"] = 1000 * total / frames
    return ms


def drqv2_update_rate(cfg, updates: int, warmup: int = 3) -> float:
    from so101_segdepth_rl.drqv2 import DrQV2Agent
    from so101_segdepth_rl.train import policy_from_scratch

    policy, _, _ = policy_from_scratch(cfg)
    agent = DrQV2Agent(policy, cfg.agent)
    pc, b = policy.config, cfg.agent.batch_size
    s, c = pc.image_size, 2 * pc.frame_stack
    batch = {
        "frames": torch.randint(0, pc.num_classes, (b, c, s, s)).float(),
        "next_frames": torch.randint(0, pc.num_classes, (b, c, s, s)).float(),
        "state": torch.randn(b, 6),
        "next_state": torch.randn(b, 6),
        "action": torch.rand(b, 6) * 2 - 1,
        "reward": torch.rand(b, 1),
        "discount": torch.full((b, 1), 0.97),
    }
    times = []
    for i in range(warmup + updates):
        start = time.perf_counter()
        agent.update(batch, step=i)
        if i >= warmup:
            times.append(time.perf_counter() - start)
    return 1.0 / statistics.median(times)


@parser.wrap()
def benchmark(bench: DrQV2ThroughputConfig) -> None:
    from lerobot.utils.import_utils import register_third_party_plugins

    from so101_run_infra.checkpoints import save_policy
    from so101_segdepth_rl.config import RLTrainConfig
    from so101_segdepth_rl.replay import ReplayBuffer
    from so101_segdepth_rl.train import policy_from_scratch

    register_third_party_plugins()
    torch.set_num_threads(1)
    cfg = draccus.parse(RLTrainConfig, config_path=bench.train_config_path, args=[])
    policy, pre, post = policy_from_scratch(cfg)
    policy_dir = bench.output_dir / "policy"
    save_policy(policy_dir, policy, pre, post)

    runs = [frame_breakdown(cfg, policy_dir, bench.steps) for _ in range(bench.repeats)]
    print(
        f"\n1. one env frame ({cfg.env.task}, {cfg.env.observation_width}x{cfg.env.observation_height} render, "
        f"policy image {cfg.policy.image_size}, action_repeat {cfg.policy.action_repeat}), median of {bench.repeats}"
    )
    print("| part | ms per frame | share |\n|---|---:|---:|")
    total = statistics.median(r["total"] for r in runs)
    for name in runs[0]:
        if name == "total":
            continue
        value = statistics.median(r[name] for r in runs)
        print(f"| {name} | {value:.2f} | {value / total:.0%} |")
    other = total - sum(statistics.median(r[n] for r in runs) for n in runs[0] if n != "total")
    print(f"| other (the gym env: depth quantisation as recorded, numpy) | {other:.2f} | {other / total:.0%} |")
    print(f"| **total** | **{total:.2f}** ({1000 / total:.0f} frames/s per core) | |")

    from so101_devtools.lerobot_sac import sac_update_rate

    b, s, c = cfg.agent.batch_size, cfg.policy.image_size, cfg.policy.frame_stack * (cfg.policy.num_classes + 1)
    ours = statistics.median(drqv2_update_rate(cfg, bench.updates) for _ in range(bench.repeats))
    sac = sac_update_rate(batch_size=b, image_size=s, image_channels=c, updates=bench.updates)
    print(f"\n2. gradient updates/s, batch {b}, input ({c}, {s}, {s}) + state, 1 torch thread")
    print("| learner | updates/s |\n|---|---:|")
    print(
        f"| segdepth DrQ-v2 (encoder {cfg.policy.encoder_channels} ch, critic {cfg.agent.critic_hidden_dim}) "
        f"| {ours:.2f} |"
    )
    print(f"| LeRobot SAC ({sac['notes']}) | {sac['updates_per_s']:.2f} |")

    buffer = ReplayBuffer(
        capacity=10,
        num_envs=1,
        image_size=s,
        frame_stack=cfg.policy.frame_stack,
        frames_per_step=cfg.policy.action_repeat,
        state_dim=6,
    )
    big = ReplayBuffer(capacity=10, num_envs=1, image_size=84, frame_stack=3, frames_per_step=2, state_dim=6)
    print("\n3. replay memory per 100k transitions")
    print("| image | this buffer (each frame once) | stacked obs + next obs |\n|---|---:|---:|")
    for name, buf in ((f"{s}x{s}, R={cfg.policy.action_repeat}", buffer), ("84x84, R=2 (pick-101)", big)):
        print(
            f"| {name} | {buf.nbytes_per_transition * 1e5 / 1e9:.2f} GB | "
            f"{buf.stacked_nbytes_per_transition() * 1e5 / 1e9:.2f} GB |"
        )


def main() -> None:
    prepare_command_line()
    benchmark()


if __name__ == "__main__":
    main()
