"""The twin as DrQ-v2 sees it: one decision step = `action_repeat` env steps, observations through the policy's
own processors.

Each worker process runs what `lerobot-eval` runs around `policy.select_action`, in the same order:
`preprocess_observation`, the task, the env preprocessor, the saved policy preprocessor (ids + disparity on the
uint8 grid, normalised state, and the present joint state the delta postprocessor reads); and for actions the
saved postprocessor (delta -> clipped absolute joint targets) and the env postprocessor. A delta is held for
`action_repeat` env steps and re-applied around each step's present state, as `select_action` holds it.

Observation of a decision step: {"frames": uint8 (R, 2, S, S), the R env frames since the previous decision
(R copies of the first frame after a reset), "state": float32 (6,) normalised}; info["is_success"] is True
when the task was solved during any of the R steps.

By default reaching the goal does not end the episode (`lerobot-eval` does end it): with the twin's dense reward,
ending early would forgo the reward of staying at the goal, so an agent would learn to hover just outside it.
Episodes end at the time limit and are bootstrapped there, as in drqv2 on the DeepMind Control Suite.
`success_bonus` adds that much reward for every env step spent in the solved state (0: the twin's reward as is).
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces

from lerobot_policy_segdepth.configuration_segdepth import OBS_SEGDEPTH


class SegDepthTwinEnv(gym.Env):
    metadata = {"render_modes": ["rgb_array"]}  # noqa: RUF012

    def __init__(
        self,
        env_config,
        policy_dir: str,
        action_repeat: int,
        terminate_on_success: bool = False,
        success_bonus: float = 0.0,
    ):
        torch.set_num_threads(1)  # one worker per core: torch's own threads would only contend
        from lerobot.envs.factory import make_env_pre_post_processors
        from lerobot.envs.utils import preprocess_observation
        from lerobot.policies.factory import make_pre_post_processors

        from lerobot_env_so101_twin.env import SO101TwinEnv
        from lerobot_policy_segdepth import SegDepthConfig

        policy_config = SegDepthConfig.from_pretrained(policy_dir)
        self.env = SO101TwinEnv(task=env_config.task, **env_config.gym_kwargs)
        self.preprocess_observation = preprocess_observation
        self.pre, self.post = make_pre_post_processors(
            policy_config, pretrained_path=policy_dir, preprocessor_overrides={"device_processor": {"device": "cpu"}}
        )
        self.env_pre, self.env_post = make_env_pre_post_processors(env_config, policy_config)
        self.action_repeat = action_repeat
        self.terminate_on_success = terminate_on_success
        self.success_bonus = success_bonus
        s = policy_config.image_size
        self.observation_space = spaces.Dict(
            {
                "frames": spaces.Box(0, 255, (action_repeat, 2, s, s), np.uint8),
                "state": spaces.Box(-np.inf, np.inf, (6,), np.float32),
            }
        )
        self.action_space = spaces.Box(-1.0, 1.0, (6,), np.float32)
        self._max_episode_steps = self.env._max_episode_steps

    @property
    def task_description(self) -> str:
        return self.env.task_description

    def _process(self, observation: dict) -> tuple[np.ndarray, np.ndarray]:
        batch = self.preprocess_observation(observation)
        batch["task"] = [self.env.task_description]
        batch = self.pre(self.env_pre(batch))
        frame = batch[OBS_SEGDEPTH][0].round().to(torch.uint8).numpy()
        return frame, batch["observation.state"][0].numpy().astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is None:
            seed = int(self.np_random.integers(0, 2**31 - 1))
        observation, info = self.env.reset(seed=seed)
        frame, state = self._process(observation)
        return {"frames": np.stack([frame] * self.action_repeat), "state": state}, info

    def step(self, action: np.ndarray):
        delta = torch.as_tensor(np.asarray(action, np.float32)).reshape(1, 6)
        frames, total, success = [], 0.0, False
        for _ in range(self.action_repeat):
            target = self.env_post({"action": self.post(delta)})["action"]
            observation, reward, terminated, truncated, info = self.env.step(target[0].numpy())
            frame, state = self._process(observation)
            frames.append(frame)
            total += reward + self.success_bonus * bool(info["is_success"])
            success |= bool(info["is_success"])
            if not self.terminate_on_success:
                terminated = False
            if terminated or truncated:
                break
        frames += [frames[-1]] * (self.action_repeat - len(frames))
        info = {**info, "is_success": success}  # reached during any of the repeated steps
        return {"frames": np.stack(frames), "state": state}, total, terminated, truncated, info

    def render(self):
        return self.env.render()

    def close(self):
        self.env.close()


def _make(env_config, policy_dir: str, action_repeat: int, terminate_on_success: bool, bonus: float) -> SegDepthTwinEnv:
    return SegDepthTwinEnv(env_config, policy_dir, action_repeat, terminate_on_success, bonus)


def make_vector_env(
    env_config,
    policy_dir: str | Path,
    action_repeat: int,
    num_envs: int,
    workers: bool = True,
    terminate_on_success: bool = False,
    success_bonus: float = 0.0,
):
    """`num_envs` twins, each in its own process when `workers` (spawned: MuJoCo's EGL context and torch's threads
    do not survive a fork). Autoreset on the next step: a finished env's next step() returns its reset observation.
    """
    os.environ.setdefault("MUJOCO_GL", "egl")
    make = partial(_make, env_config, str(policy_dir), action_repeat, terminate_on_success, success_bonus)
    fns = [make for _ in range(num_envs)]
    if workers:
        return gym.vector.AsyncVectorEnv(fns, context="spawn", autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)
    return gym.vector.SyncVectorEnv(fns, autoreset_mode=gym.vector.AutoresetMode.NEXT_STEP)


def step_async(venv: gym.vector.VectorEnv, action: np.ndarray) -> None:
    """Start a step; worker envs run it while the caller learns. In-process envs step in `step_wait`."""
    if isinstance(venv, gym.vector.AsyncVectorEnv):
        venv.step_async(action)
    else:
        venv.pending_action = action


def step_wait(venv: gym.vector.VectorEnv):
    if isinstance(venv, gym.vector.AsyncVectorEnv):
        return venv.step_wait()
    return venv.step(venv.pending_action)
