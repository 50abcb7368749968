"""What playing a non-ideal arm costs the twin's step: the ideal arm against each factor and the two families, in one
process, the configurations taking turns repeat by repeat so load falls on all alike.

    .venv/bin/python benchmarks/twin_arm_cost.py
    .venv/bin/python benchmarks/twin_arm_cost.py --repeats=7 --steps=90 --camera_height=480 --camera_width=640

A timed step is the gym env's `step` (the action applied, the physics advanced one action's periods, the wrist camera
rendered with depth and segmentation, the camera's effects applied): what lerobot-eval pays per step. The actions are
the present joint positions plus a fixed random walk, the same for every configuration. The loop-rate row holds each
target three periods, so its step is three periods of physics: it is given per action and per period.
"""

import os
import platform
import statistics
import time
from dataclasses import dataclass

import numpy as np
from lerobot.configs import parser

from so101_run_infra.cli import prepare_command_line


@dataclass
class TwinArmCostConfig:
    repeats: int = 5  # rounds in which every configuration runs once, in turn
    steps: int = 60  # env steps per repeat
    camera_height: int = 120  # the wrist camera's size (the demo's)
    camera_width: int = 160  # and its width
    seed: int = 1000  # the first repeat's episode seed


def configurations() -> dict[str, dict]:
    from lerobot_env_so101_twin.arm import ArmParams

    camera = ArmParams(camera_exposure_ms=10, camera_gain=1.2, camera_noise=3, camera_jpeg_quality=60)
    return {
        "ideal": {},
        "latency 67 ms, jitter 10 ms": {"arm_params": ArmParams(latency_ms=67, latency_jitter_ms=10)},
        "backlash 1 deg": {"arm_params": ArmParams(backlash_deg=[1.0])},
        "servos, calibration, cube": {
            "arm_params": ArmParams(gain=[0.6], force=[0.7], calibration_deg=[2.0], cube_mass=2.0, cube_size=1.05)
        },
        "camera (blur, gain, noise, JPEG)": {"arm_params": camera},
        "loop 10 Hz (per action)": {"arm_params": ArmParams(control_fps=10)},
        "varied family": {"arm": "varied"},
        "unseen family": {"arm": "unseen"},
    }


def time_steps(env, steps: int, seed: int) -> float:
    """Median ms of env.step over `steps` steps of one episode."""
    obs, _ = env.reset(seed=seed)
    walk = np.random.default_rng(0).normal(0.0, 2.0, (steps, 6)).cumsum(axis=0).astype(np.float32)
    start_pose = obs["agent_pos"].copy()
    times = []
    for k in range(steps):
        t0 = time.perf_counter()
        env.step(start_pose + walk[k])
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


@parser.wrap()
def twin_arm_cost(cfg: TwinArmCostConfig) -> None:
    os.environ.setdefault("MUJOCO_GL", "egl")
    from lerobot_env_so101_twin.env import SO101TwinEnv

    size = {"camera_height": cfg.camera_height, "camera_width": cfg.camera_width}
    envs = {
        name: SO101TwinEnv(cameras=("wrist",), depth=True, segmentation=True, **size, **kwargs)
        for name, kwargs in configurations().items()
    }
    for env in envs.values():  # warm-up: the GL context, caches
        time_steps(env, 5, cfg.seed)
    results: dict[str, list[float]] = {name: [] for name in envs}
    for r in range(cfg.repeats):
        for name, env in envs.items():
            results[name].append(time_steps(env, cfg.steps, cfg.seed + r))
    ideal = statistics.median(results["ideal"])
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}"
    print(
        f"\nThe twin's env step under each arm: wrist camera {cfg.camera_height}x{cfg.camera_width} with depth and "
        f"segmentation; median of {cfg.repeats} repeats of the median of {cfg.steps} steps; {machine}\n"
    )
    print("| arm | ms per step | min-max | against ideal |")
    print("|---|---:|---:|---:|")
    for name, values in results.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {min(values):.2f}-{max(values):.2f} | {median / ideal:.2f}x |")
    for env in envs.values():
        env.close()


def main() -> None:
    prepare_command_line()
    twin_arm_cost()


if __name__ == "__main__":
    main()
