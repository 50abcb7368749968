"""A replay buffer that stores every uint8 frame once and rebuilds frame stacks and n-step returns on sampling.

One ring per env worker, so each env's decision steps sit in consecutive slots. A slot holds what one
decision step observed and did:

    frames   (R, 2, S, S) uint8  the R env frames since the previous decision (R = action_repeat), newest last;
                                  an episode's first slot holds R copies of its first frame
    state    (D,) float32        the normalised state at the decision
    action   (A,) float32        the delta the agent sent (undefined in an episode's final slot)
    reward   float32             the reward summed over the R env steps that followed
    first    bool                the slot opens an episode
    acted    bool                an action was taken from it (False for an episode's final observation)
    done     bool                the episode ended after this slot's action (terminated or truncated)
    terminal bool                it ended in a terminal state: no bootstrapping past it

The policy stacks the last T env frames, held actions included (`SegDepthPolicy.stacked_frames`), so a
decision's stack is the last T entries of the frame sequence ending at its slot, clamped at the episode's first
frame; that is exactly what the policy's frame buffer holds at inference, padding included.

Memory: R*2*S*S bytes of frames per decision step plus ~64 bytes of the rest, against 2*T*2*S*S for a buffer
that stores stacked observation and next observation (`nbytes_per_transition` and `stacked_nbytes_per_transition`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from so101_core import JOINT_NAMES
from so101_run_infra.atomic import atomic_folder

ARRAYS = ("frames", "state", "action", "reward", "first", "acted", "done", "terminal", "episode_start")


class ReplayBuffer:
    def __init__(
        self,
        *,
        capacity: int,
        num_envs: int,
        image_size: int,
        frame_stack: int,
        frames_per_step: int,
        state_dim: int,
        action_dim: int = 6,
        nstep: int = 3,
        discount: float = 0.99,
        seed: int = 0,
    ):
        self.num_envs = num_envs
        self.ring = max(capacity // num_envs, 1)  # slots per env
        self.frame_stack, self.frames_per_step = frame_stack, frames_per_step
        self.nstep, self.discount = nstep, discount
        # how many older slots a stack can reach back into
        self.lookback = math.ceil((frame_stack - 1) / frames_per_step)
        n, r, s = num_envs, self.ring, image_size
        self.frames = np.zeros((n, r, frames_per_step, 2, s, s), np.uint8)
        self.state = np.zeros((n, r, state_dim), np.float32)
        self.action = np.zeros((n, r, action_dim), np.float32)
        self.reward = np.zeros((n, r), np.float32)
        self.first = np.zeros((n, r), bool)
        self.acted = np.zeros((n, r), bool)
        self.done = np.zeros((n, r), bool)
        self.terminal = np.zeros((n, r), bool)
        self.episode_start = np.zeros((n, r), np.int64)  # slot count at which this slot's episode began
        self.count = np.zeros(n, np.int64)  # slots written per env, ever
        self.rng = np.random.default_rng(seed)
        self.features: np.ndarray | None = None  # see enable_feature_cache
        self.has_features: np.ndarray | None = None

    @classmethod
    def for_policy(
        cls,
        policy_config,
        *,
        capacity: int,
        num_envs: int,
        frames_per_step: int | None = None,
        nstep: int = 3,
        discount: float = 0.99,
        seed: int = 0,
    ) -> ReplayBuffer:
        """A buffer shaped for `policy_config` (a SegDepthConfig): its image_size and frame_stack, and the state size
        of its observation.state feature (the SO-101's joints when it reads none). `frames_per_step` None: the
        policy's action_repeat (env frames between decisions)."""
        state = (policy_config.input_features or {}).get("observation.state")
        return cls(
            capacity=capacity,
            num_envs=num_envs,
            image_size=policy_config.image_size,
            frame_stack=policy_config.frame_stack,
            frames_per_step=policy_config.action_repeat if frames_per_step is None else frames_per_step,
            state_dim=int(state.shape[0]) if state is not None else len(JOINT_NAMES),
            nstep=nstep,
            discount=discount,
            seed=seed,
        )

    def enable_feature_cache(self, dim: int) -> None:
        """Keep each slot's encoded stack (float16, `dim` wide) once it is first sampled, for a frozen encoder
        without augmentation: its features are a function of the stored frames alone, so encoding them again on
        every sampling would repeat the same work (85% of an update's time at batch 64 on this CPU). Not saved
        with the buffer: a resumed run encodes again as it samples. Memory: 2 * dim bytes per slot, allocated as
        slots are used (np.zeros pages in lazily)."""
        self.features = np.zeros((self.num_envs, self.ring, dim), np.float16)
        self.has_features = np.zeros((self.num_envs, self.ring), bool)

    # ----- sizes ------------------------------------------------------------------------------------------
    @property
    def nbytes_per_transition(self) -> int:
        return sum(getattr(self, name)[0, 0].nbytes for name in ARRAYS)

    def stacked_nbytes_per_transition(self) -> int:
        """What a buffer that stores (obs, next_obs) frame stacks would need per transition."""
        _, _, _, c, s, _ = self.frames.shape
        return 2 * self.frame_stack * c * s * s + self.nbytes_per_transition - self.frames[0, 0].nbytes

    def __len__(self) -> int:
        return int(np.minimum(self.count, self.ring).sum())

    # ----- writing ----------------------------------------------------------------------------------------
    def add_observation(self, frames: np.ndarray, state: np.ndarray, first: np.ndarray) -> None:
        """Open a slot per env: frames (E, R, 2, S, S) uint8, state (E, D), first (E,) bool."""
        if frames.shape[1:] != self.frames.shape[2:] or frames.dtype != np.uint8:
            raise ValueError(
                f"frames must be uint8 (E, {', '.join(map(str, self.frames.shape[2:]))}), got "
                f"{frames.dtype} {frames.shape}"
            )
        env = np.arange(self.num_envs)
        slot = self.count % self.ring
        previous_start = self.episode_start[env, (self.count - 1) % self.ring]
        self.frames[env, slot] = frames
        self.state[env, slot] = state
        self.first[env, slot] = first
        self.reward[env, slot] = 0.0
        self.acted[env, slot] = False
        self.done[env, slot] = False
        self.terminal[env, slot] = False
        self.episode_start[env, slot] = np.where(first | (self.count == 0), self.count, previous_start)
        if self.has_features is not None:
            self.has_features[env, slot] = False
        self.count += 1

    def add_outcome(
        self, action: np.ndarray, reward: np.ndarray, terminated: np.ndarray, truncated: np.ndarray, acted: np.ndarray
    ) -> None:
        """Complete each env's newest slot with the action taken from it and what followed (only where `acted`)."""
        env = np.flatnonzero(acted)
        slot = (self.count[env] - 1) % self.ring
        self.action[env, slot] = action[env]
        self.reward[env, slot] = reward[env]
        self.acted[env, slot] = True
        self.done[env, slot] = terminated[env] | truncated[env]
        self.terminal[env, slot] = terminated[env]

    def truncate_open_episodes(self) -> None:
        """End every env's running episode at its last completed step, as a time limit would (bootstrapped).

        For a resumed run: its workers start new episodes, and no n-step return may run into them.
        """
        for env in np.flatnonzero(self.count >= 2):
            newest = (self.count[env] - 1) % self.ring
            self.acted[env, newest] = False  # its outcome, if any, was never stored
            self.done[env, (self.count[env] - 2) % self.ring] = True

    # ----- reading ----------------------------------------------------------------------------------------
    def stack(self, env: np.ndarray, count: np.ndarray) -> np.ndarray:
        """(B,) envs and absolute slot counts -> (B, T*2, S, S) uint8 frame stacks, oldest frame first."""
        r, t = self.frames_per_step, self.frame_stack
        last = count * r + (r - 1)  # absolute index of the slot's newest frame in the env's frame sequence
        offsets = np.arange(t - 1, -1, -1)  # T-1 ... 0 frames before it
        absolute = np.maximum(last[:, None] - offsets[None], self.episode_start[env, count % self.ring][:, None] * r)
        slot, within = (absolute // r) % self.ring, absolute % r
        stacked = self.frames[env[:, None], slot, within]  # (B, T, 2, S, S)
        return stacked.reshape(len(env), -1, *stacked.shape[-2:])

    def latest(self) -> tuple[np.ndarray, np.ndarray]:
        """Each env's newest slot as the policy sees it: (E, T*2, S, S) uint8 stacks and (E, D) states."""
        env, count = np.arange(self.num_envs), self.count - 1
        return self.stack(env, count), self.state[env, count % self.ring]

    def _valid(self, env: np.ndarray, count: np.ndarray) -> np.ndarray:
        newest = self.count[env] - 1
        # once the ring has wrapped, the oldest slots' stacks may reach into overwritten frames
        wrapped = self.count[env] > self.ring
        oldest = np.where(wrapped, self.count[env] - self.ring + self.lookback, 0)
        ok = (count >= oldest) & (count <= newest - self.nstep)  # n newer slots exist: the n-step end is written
        return ok & self.acted[env, count % self.ring]

    def cached_features(self, env: np.ndarray, count: np.ndarray, encode) -> torch.Tensor:
        """(B,) envs and slot counts -> (B, dim) float32 features of their stacks, encoding (with `encode`:
        (N, T*2, S, S) float32 on the uint8 grid -> (N, dim)) only the slots not encoded yet, each once."""
        slot = count % self.ring
        missing = ~self.has_features[env, slot]
        if missing.any():
            key = np.unique(env[missing] * self.ring + slot[missing])
            e, c = key // self.ring, key % self.ring
            # a slot's absolute count, for the stack: the newest count that lands on it
            absolute = self.count[e] - 1 - (self.count[e] - 1 - c) % self.ring
            with torch.no_grad():
                encoded = encode(torch.from_numpy(self.stack(e, absolute)).float())
            half = encoded.detach().cpu().to(torch.float16).numpy()
            if not np.isfinite(half).all():  # float16 ends at 65504: refuse rather than learn from infinities
                raise ValueError(
                    f"encoded features up to {float(encoded.abs().max()):.3g} do not fit the float16 feature cache; "
                    "run without agent.feature_cache"
                )
            self.features[e, c] = half
            self.has_features[e, c] = True
        return torch.from_numpy(self.features[env, slot]).float()

    def sample(self, batch_size: int, encode=None) -> dict[str, torch.Tensor]:
        """A uniform batch of transitions with n-step returns: frames/next_frames (B, T*2, S, S) float32 on the
        uint8 grid, state/next_state (B, D), action (B, A), reward and discount (B, 1), slot (B, 2). With the
        feature cache enabled and an `encode` function, features/next_features (B, dim) replace the frames."""
        if not self.can_sample():
            raise RuntimeError("the replay buffer holds no complete n-step transition yet")
        envs, counts = [], []
        for _ in range(100):
            env = self.rng.integers(0, self.num_envs, 2 * batch_size)
            low = np.maximum(self.count[env] - self.ring, 0)
            count = low + (self.rng.random(2 * batch_size) * np.maximum(self.count[env] - low, 1)).astype(np.int64)
            keep = self._valid(env, count)
            envs.append(env[keep])
            counts.append(count[keep])
            if sum(len(e) for e in envs) >= batch_size:
                break
        else:
            raise RuntimeError("could not draw a batch of valid transitions in 100 tries: too few acted slots")
        env, count = np.concatenate(envs)[:batch_size], np.concatenate(counts)[:batch_size]
        reward = np.zeros(batch_size, np.float32)
        discount = np.ones(batch_size, np.float32)
        alive = np.ones(batch_size, bool)
        steps = np.zeros(batch_size, np.int64)
        terminal = np.zeros(batch_size, bool)
        for k in range(self.nstep):
            slot = (count + k) % self.ring
            reward += np.where(alive, discount * self.reward[env, slot], 0.0)
            discount = np.where(alive, discount * self.discount, discount)
            steps += alive
            terminal |= alive & self.terminal[env, slot]
            alive &= ~self.done[env, slot]
        next_count = count + steps
        slot, next_slot = count % self.ring, next_count % self.ring
        as_tensor = torch.from_numpy
        if self.features is not None and encode is not None:
            observed = {
                "features": self.cached_features(env, count, encode),
                "next_features": self.cached_features(env, next_count, encode),
            }
        else:
            observed = {
                "frames": as_tensor(self.stack(env, count)).float(),
                "next_frames": as_tensor(self.stack(env, next_count)).float(),
            }
        return {
            **observed,
            "state": as_tensor(self.state[env, slot]),
            "action": as_tensor(self.action[env, slot]),
            "reward": as_tensor(reward)[:, None],
            "discount": as_tensor(np.where(terminal, 0.0, discount).astype(np.float32))[:, None],
            "next_state": as_tensor(self.state[env, next_slot]),
            "slot": as_tensor(np.stack([env, count], axis=1)),  # (B, 2): env and slot count, for inspection
        }

    def can_sample(self) -> bool:
        """True once some env has a slot with a complete n-step transition that is not its first."""
        return bool((self.count > self.lookback + self.nstep).any())

    # ----- persistence ------------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write the filled part of every array and the sampler's RNG state; atomic (a staging folder swapped in)."""
        filled = int(min(self.count.max(), self.ring))
        with atomic_folder(folder) as tmp:
            for name in ARRAYS:
                np.save(tmp / f"{name}.npy", getattr(self, name)[:, :filled])
            meta = {
                "count": self.count.tolist(),
                "ring": self.ring,
                "shape": list(self.frames.shape),
                "rng": self.rng.bit_generator.state,
            }
            (tmp / "meta.json").write_text(json.dumps(meta))

    def load(self, folder: Path) -> None:
        folder = Path(folder)
        meta = json.loads((folder / "meta.json").read_text())
        if meta["shape"] != list(self.frames.shape):
            raise ValueError(
                f"replay buffer in {folder} was made for frames {meta['shape']} (envs, slots, R, 2, S, S); this "
                f"run's is {list(self.frames.shape)}: same num_envs, replay capacity, action_repeat and image_size "
                "are needed to resume"
            )
        for name in ARRAYS:
            stored = np.load(folder / f"{name}.npy")
            getattr(self, name)[:, : stored.shape[1]] = stored
        self.count = np.asarray(meta["count"], np.int64)
        self.rng.bit_generator.state = meta["rng"]
