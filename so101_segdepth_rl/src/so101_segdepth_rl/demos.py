"""Demonstrations from a twin recording as a second replay buffer, mixed into every batch (RLPD-style).

A recording holds observations and actions but no rewards, so each episode is replayed in the twin: episode k's
scene comes from `scene_seed + k` (how `lerobot-record --robot.type=so101_twin` and `so101-twin-record` number
scenes), its recorded actions are sent with the same DART noise the recording used, and the twin's reward and
success are read after every step. The replayed joint positions must follow the recorded `observation.state`;
if they do not, the recording was made with other settings and is refused before any training.

Observations come from the recording itself, through the policy's saved preprocessor (the same steps the env
workers run), and the recorded absolute targets become the policy's deltas through the same preprocessor. One
recorded frame is one decision, so the policy must act every step (`action_repeat` 1, as a cloned checkpoint does).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from so101_run_infra.dataset_ref import DatasetRef

from .replay import ReplayBuffer

logger = logging.getLogger(__name__)


@dataclass
class DemoSettings(DatasetRef):
    """The demonstrations (repo_id None: none): a LeRobotDataset recorded in the twin with the policy's camera, depth
    and segmentation."""

    share: float = 0.5  # fraction of every batch drawn from the demonstrations (RLPD: half)
    scene_seed: int = 0  # the recording's --robot.seed: episode k's scene is scene_seed + k
    action_noise_std: float = 0.0  # the recording's --robot.action_noise_std (the demo records with 1.0)
    action_noise_tau_s: float = 0.3
    max_state_error: float = 1.0  # degrees (gripper units) the replay may drift from the recorded state

    def __post_init__(self):
        super().__post_init__()
        if not 0.0 <= self.share < 1.0:
            raise ValueError(f"demos.share must be in [0, 1), got {self.share}")


def episode_rewards(dataset, episode: int, task: str, settings: DemoSettings) -> tuple[np.ndarray, np.ndarray]:
    """Replay one recorded episode in the twin: per-frame dense reward and success after each recorded action."""
    from lerobot_env_so101_twin.simulation import ActuationNoise, TwinConfig, TwinSimulation

    frames = dataset.meta.episodes[episode]
    start, end = int(frames["dataset_from_index"]), int(frames["dataset_to_index"])
    rows = dataset.hf_dataset.select(range(start, end)).with_format("numpy")
    states, actions = np.asarray(rows["observation.state"], np.float64), np.asarray(rows["action"], np.float64)
    fps = int(dataset.meta.fps)
    twin = TwinSimulation(TwinConfig(task=task, fps=fps, cameras={}))
    noise = ActuationNoise(settings.action_noise_std, settings.action_noise_tau_s, fps)
    seed = settings.scene_seed + episode
    twin.reset(seed)
    noise.reset(seed)
    limits = twin.joint_limits
    rewards, success = np.zeros(len(actions), np.float32), np.zeros(len(actions), bool)
    for t, target in enumerate(actions):
        error = np.abs(twin.joint_positions() - states[t]).max()
        if error > settings.max_state_error:
            twin.close()
            raise ValueError(
                f"demonstrations {dataset.repo_id}: episode {episode} does not replay in the twin ({task}, scene seed "
                f"{seed}, action noise {settings.action_noise_std}): the joint state is {error:.2f} off the recorded "
                f"observation.state at frame {t}. Set --demos.scene_seed / --demos.action_noise_std to the "
                "recording's --robot.seed / --robot.action_noise_std"
            )
        if settings.action_noise_std > 0:  # as so101_twin's send_action: noise kept inside the joint range
            noisy = np.clip(target + noise.sample(), limits[:, 0], limits[:, 1])
            target = np.where((target >= limits[:, 0]) & (target <= limits[:, 1]), noisy, target)
        twin.apply_action(target)
        twin.step()
        rewards[t], success[t] = twin.dense_reward(), twin.is_success()
    twin.close()
    return rewards, success


def check_demo_features(dataset, policy_config) -> None:
    needed = [policy_config.depth_key, policy_config.segmentation_key, "observation.state", "action"]
    missing = [key for key in needed if key not in dataset.meta.features]
    if missing:
        raise ValueError(
            f"demonstrations {dataset.repo_id} lack {missing} (they have {sorted(dataset.meta.features)}): record "
            f"them in the twin with --robot.cameras=[{policy_config.camera}] --robot.depth=true "
            "--robot.segmentation=true"
        )
    for key in ("observation.state", "action"):
        shape = tuple(dataset.meta.features[key]["shape"])
        if shape != (6,):
            raise ValueError(f"demonstrations {dataset.repo_id}: '{key}' is {shape}, the SO-101 policy needs (6,)")
    if policy_config.action_repeat != 1:
        raise ValueError(
            f"demonstrations are one decision per recorded frame; the policy holds each action for "
            f"{policy_config.action_repeat} steps (--policy.action_repeat=1, as a cloned checkpoint has)"
        )


def demo_buffer(
    settings: DemoSettings, policy_config, preprocessor, task: str, nstep: int, discount: float, seed: int
) -> tuple[ReplayBuffer, dict]:
    """Every episode of the recording in a one-ring ReplayBuffer, ending by time limit (bootstrapped)."""
    dataset = settings.open()
    check_demo_features(dataset, policy_config)
    total = dataset.meta.total_frames
    # one frame per slot: the recording holds every env frame, each a decision
    buffer = ReplayBuffer.for_policy(
        policy_config, capacity=total, num_envs=1, frames_per_step=1, nstep=nstep, discount=discount, seed=seed
    )
    successes = []
    for episode in range(dataset.meta.total_episodes):
        rewards, success = episode_rewards(dataset, episode, task, settings)
        successes.append(bool(success.any()))
        info = dataset.meta.episodes[episode]
        start, end = int(info["dataset_from_index"]), int(info["dataset_to_index"])
        for t, index in enumerate(range(start, end)):
            item = dataset[index]
            batch = {k: v[None] if isinstance(v, torch.Tensor) else v for k, v in item.items()}
            batch["task"] = [item["task"]]
            batch = preprocessor(batch)
            frame = batch["observation.segdepth"][0].round().to(torch.uint8).numpy()
            state = batch["observation.state"][0].numpy().astype(np.float32)
            buffer.add_observation(frame[None, None], state[None], np.array([t == 0]))
            if index < end - 1:  # the last frame's action has no recorded outcome: it is the final observation
                buffer.add_outcome(
                    batch["action"].numpy().astype(np.float32),
                    rewards[t : t + 1],
                    np.array([False]),
                    np.array([index == end - 2]),
                    np.array([True]),
                )
    summary = {
        "episodes": len(successes),
        "transitions": dataset.meta.total_frames - len(successes),
        "replayed_success": f"{sum(successes)}/{len(successes)}",
    }
    logger.info("demonstrations %s: %s", settings.repo_id, summary)
    return buffer, summary


def mixed_batch(online: ReplayBuffer, demos: ReplayBuffer | None, batch_size: int, share: float, encode=None) -> dict:
    """`share` of the batch from the demonstrations, the rest from the agent's own replay; `demo` (B,) marks
    the demonstration rows. `encode`: see ReplayBuffer.sample (features from the buffers' caches)."""
    if demos is None or share == 0:
        batch = online.sample(batch_size, encode)
        batch["demo"] = torch.zeros(batch_size, dtype=torch.bool)
        return batch
    n_demo = round(share * batch_size)
    if n_demo == batch_size:
        batch = demos.sample(batch_size, encode)
        batch["demo"] = torch.ones(batch_size, dtype=torch.bool)
        return batch
    a, b = online.sample(batch_size - n_demo, encode), demos.sample(n_demo, encode)
    batch = {key: torch.cat([a[key], b[key]]) for key in a}
    batch["demo"] = torch.arange(batch_size) >= batch_size - n_demo
    return batch
