"""pick-101's action convention and the follower's: 6-D deltas in [-1, 1] <-> absolute joint targets.

    delta = clip((target - present) / action_scale, -1, 1)        (preprocessor, for training targets)
    target = present + clip(delta, -1, 1) * action_scale          (postprocessor, for the robot or env)

`present` is `observation.state` (the follower's joint positions: degrees, gripper 0-100) and `action_scale`
is the largest step per joint in those units. The preprocessor step caches the present state and the paired
postprocessor step reads it. The pair is linked by `pair_id`, which both steps save, so the link survives
`save_pretrained`/`from_pretrained` and needs no help from LeRobot's factory (whose re-wiring only knows its
own relative-action steps, which the sync rollout engine refuses).

Chained (`action_mode="chained"`): for the chained joints, `present` is replaced by the target the policy sent last,

    delta = clip((target_t - target_t-1) / action_scale, -1, 1)   (training; the state at an episode's start)
    target = previous target + clip(delta, -1, 1) * action_scale   (inference; the state at the first step)

On an arm whose readings lag its targets (latency, a slow loop, backlash), a step added to the lagging reading falls
behind the targets already sent; a step added to the last target does not depend on the reading. The last target is
the one the joint-limit clip let through (remembered by `RememberJointTargetStep`), so a policy pushing against a
limit does not wind the target up beyond it. `forget_targets()`, called by the policy's `reset()`, starts every
episode from the present state: `lerobot-eval` resets the policy, not its processors.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass, field

import torch
from lerobot.configs import PipelineFeatureType
from lerobot.processor import EnvTransition, ProcessorStep, ProcessorStepRegistry, TransitionKey
from lerobot.utils.constants import ACTION, OBS_STATE

from so101_policy_common.steps import ConfigFromFields

_present_state: dict[str, torch.Tensor] = {}
_last_target: dict[str, torch.Tensor] = {}  # chained mode: pair_id -> the clipped target sent last
_lock = threading.Lock()


def forget_targets() -> None:
    """Start every chained policy of this process from its present state at the next step (a new episode)."""
    with _lock:
        _last_target.clear()


def _scale(action_scale: list[float], like: torch.Tensor) -> torch.Tensor:
    scale = torch.as_tensor(action_scale, dtype=like.dtype, device=like.device)
    if scale.numel() != like.shape[-1]:
        raise ValueError(f"action_scale has {scale.numel()} entries but actions have {like.shape[-1]} dims")
    return scale


def absolute_to_delta(target: torch.Tensor, present: torch.Tensor, action_scale: list[float]) -> torch.Tensor:
    return ((target - present) / _scale(action_scale, target)).clamp(-1.0, 1.0)


def delta_to_absolute(delta: torch.Tensor, present: torch.Tensor, action_scale: list[float]) -> torch.Tensor:
    return present + delta.clamp(-1.0, 1.0) * _scale(action_scale, delta)


def _present(observation: dict, state_key: str) -> torch.Tensor:
    if state_key not in observation:
        raise KeyError(f"joint-delta actions need '{state_key}' (the present joint positions) in the observation")
    state = observation[state_key]
    return state[..., -1, :] if state.ndim == 3 else state  # (B, T, D) in training: the newest frame


@ProcessorStepRegistry.register("so101_joint_delta_from_absolute")
@dataclass
class JointDeltaFromAbsoluteStep(ConfigFromFields, ProcessorStep):
    """Preprocessor: caches the present joint state; turns absolute action targets (training) into deltas."""

    action_scale: list[float] = field(default_factory=lambda: [4.0, 4.0, 4.0, 4.0, 4.0, 15.0])
    state_key: str = OBS_STATE
    pair_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    chained: list[int] = field(default_factory=list)  # the joints whose deltas start from the previous target

    def get_config(self) -> dict:
        config = super().get_config()
        if not self.chained:  # a delta pipeline saves what it saved before chaining existed
            del config["chained"]
        return config

    def __call__(self, transition: EnvTransition) -> EnvTransition:
        transition = transition.copy()
        present = _present(transition.get(TransitionKey.OBSERVATION) or {}, self.state_key)
        action = transition.get(TransitionKey.ACTION)
        with _lock:
            last = _last_target.get(self.pair_id) if self.chained and action is None else None
            reference = present.detach()
            if last is not None and last.shape == present.shape:
                reference = _with(reference, last, self.chained)
            _present_state[self.pair_id] = reference
        if action is not None:
            if action.shape[-1] != present.shape[-1]:
                raise ValueError(f"action has {action.shape[-1]} dims but '{self.state_key}' has {present.shape[-1]}")
            if self.chained:
                transition[TransitionKey.ACTION] = self._chained_delta(action, present, transition)
            else:
                reference = present if action.ndim == present.ndim else present.unsqueeze(-2)
                transition[TransitionKey.ACTION] = absolute_to_delta(action, reference, self.action_scale)
        return transition

    def _chained_delta(self, action: torch.Tensor, present: torch.Tensor, transition: EnvTransition) -> torch.Tensor:
        """(B, 2, D) recorded targets [previous, this] -> (B, D) deltas; the state where the previous is padding."""
        if action.ndim != 3 or action.shape[1] != 2:
            raise ValueError(
                f"chained actions train on the target before each one: 'action' must be (B, 2, D), got "
                f"{tuple(action.shape)} (the config's action_delta_indices give the two)"
            )
        previous = action[:, 0]
        pad = (transition.get(TransitionKey.COMPLEMENTARY_DATA) or {}).get(f"{ACTION}_is_pad")
        if pad is not None:  # an episode's first frame: LeRobot repeats its own target; the arm started at the state
            previous = torch.where(pad[:, :1].to(torch.bool), present, previous)
        return absolute_to_delta(action[:, 1], _with(present, previous, self.chained), self.action_scale)

    def transform_features(self, features):
        return features


def _with(present: torch.Tensor, previous: torch.Tensor, joints: list[int]) -> torch.Tensor:
    """The present state with the chained joints' entries taken from the previous target."""
    reference = present.clone()
    reference[..., joints] = previous[..., joints].to(present.dtype)
    return reference


@ProcessorStepRegistry.register("so101_joint_absolute_from_delta")
@dataclass
class JointAbsoluteFromDeltaStep(ConfigFromFields, ProcessorStep):
    """Postprocessor: deltas in [-1, 1] -> absolute joint targets around the state its pair last saw."""

    action_scale: list[float] = field(default_factory=lambda: [4.0, 4.0, 4.0, 4.0, 4.0, 15.0])
    pair_id: str = ""

    def __call__(self, transition: EnvTransition) -> EnvTransition:
        with _lock:
            present = _present_state.get(self.pair_id)
        if present is None:
            raise RuntimeError(
                "JointAbsoluteFromDeltaStep has no present joint state: run the policy's preprocessor (which holds "
                f"the paired JointDeltaFromAbsoluteStep, pair_id={self.pair_id!r}) on the observation first"
            )
        transition = transition.copy()
        delta = transition[TransitionKey.ACTION]
        present = present.to(delta.device, delta.dtype)
        reference = present if delta.ndim == present.ndim else present.unsqueeze(-2)  # chunks: (B, T, D)
        transition[TransitionKey.ACTION] = delta_to_absolute(delta, reference, self.action_scale)
        return transition

    def transform_features(self, features: dict[PipelineFeatureType, dict]) -> dict[PipelineFeatureType, dict]:
        return features


@ProcessorStepRegistry.register("so101_remember_joint_target")
@dataclass
class RememberJointTargetStep(ConfigFromFields, ProcessorStep):
    """Postprocessor, after the joint-limit clip: remembers the target sent, which its chained pair adds to next."""

    pair_id: str = ""

    def __call__(self, transition: EnvTransition) -> EnvTransition:
        with _lock:
            _last_target[self.pair_id] = transition[TransitionKey.ACTION].detach().clone()
        return transition

    def reset(self) -> None:
        with _lock:
            _last_target.pop(self.pair_id, None)

    def transform_features(self, features: dict[PipelineFeatureType, dict]) -> dict[PipelineFeatureType, dict]:
        return features
