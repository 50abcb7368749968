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

Action history (`action_history=H`): the preprocessor also writes the last H targets sent, relative to the present
reading in action_scale units, under `observation.action_history` (B, H*D), oldest first:

    history = (a_t+lead-H, ..., a_t+lead-1) - present) / action_scale   (training: the recorded targets before the
                                                                          label; the state before an episode's start)
    history = (the H targets sent last - present) / action_scale         (inference; the state before the first)

Under a latency of `lead` periods these are the targets still on their way to the servos when the frame is read.

From the target sent (`step_from_sent(cap)`, inference only, a delta policy trained from the reading): each step of
the arm's joints is added to where the targets already sent will take the arm, the reading plus the lead of the target
sent last over it, capped (a Smith predictor's estimate, bounded as the predictive expert bounds it):

    target = present + clamp(previous target - present, -cap, cap) + clip(delta, -1, 1) * action_scale

On the ideal arm the reading reaches each target within the period, so the cap barely acts; under latency it keeps a
step from falling behind the targets in flight, and, unlike chained training, the reading still bounds the base.
Where the arm is held (a finger on the cube, the jaw on the table) the reading never reaches the target, and the lead
winds up to the cap, one step more of push each period. `step_from_sent(cap, steps=N)` also bounds each joint's lead
by the size of its last N steps, what the targets in flight can have left undone:

    lead = clamp(previous target - present, -b, b),   b = min(cap, |step_t-1| + ... + |step_t-N|)

Scaled steps (`scale_steps(k)`, inference only): each step times k, for a loop k times slower than the recording
the policy was cloned from. Its steps are a control period's reach; held k periods, they leave the arm at a k-th of
the demonstrations' pace, and a task timed for that pace runs out of time:

    target = base + k * clip(delta, -1, 1) * action_scale

The ideal arm's reading overshoots its target by about a fifth of the step in free motion, so the plain base steps
back from the reading there and the arm moves slower than in the demonstrations it was cloned from.
`step_from_sent(cap, ahead=True)` keeps a joint's lead only where it points the way that joint's last step did (the
arm lagging behind the targets in flight) and steps from the reading where the arm has passed its target.
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
_sent: dict[str, list[torch.Tensor]] = {}  # pair_id -> the clipped targets sent, oldest first, the newest SENT_KEPT
_lock = threading.Lock()
SENT_KEPT = 16
ARM_JOINTS = slice(0, 5)  # the gripper (5) always steps from its reading: its step is a squeeze on the cube
_step_cap = [0.0]  # degrees: the base's lead over the reading (step_from_sent); 0 steps from the reading
_stepped: dict[str, torch.Tensor] = {}  # pair_id -> the target its postprocessor returned last (step_from_sent)
_step_window = [0]  # the last steps whose size bounds the lead (step_from_sent); 0: the cap alone
_steps: dict[str, list[torch.Tensor]] = {}  # pair_id -> its last steps (target - base), oldest first (step_from_sent)
_step_ahead = [False]  # keep a joint's lead only along its last step (step_from_sent); False: either way
_step_gain = [1.0]  # every step times this at inference (scale_steps): the loop's periods per recording period
OBS_ACTION_HISTORY = "observation.action_history"  # (B, H*D): the targets sent last, relative to the reading


def forget_targets() -> None:
    """Start every chained or history policy of this process from its present state at the next step (a new episode)."""
    with _lock:
        _sent.clear()
        _stepped.clear()
        _steps.clear()


def step_from_sent(cap_deg: float, steps: int = 0, ahead: bool = False) -> None:
    """At inference, add every arm step of this process's delta policies to the target sent last, kept within
    `cap_deg` of the reading (and, with `steps`, within the size of each joint's last `steps` steps; with `ahead`, only
    where the target lies the way the joint's last step went), rather than to the reading (0, as trained). Set by
    the policy from its config."""
    if not 0.0 <= cap_deg <= 30.0:
        raise ValueError(f"step_from_sent: a cap of 0-30 degrees, got {cap_deg}")
    if not 0 <= steps <= SENT_KEPT:
        raise ValueError(f"step_from_sent: a bound of 0-{SENT_KEPT} last steps, got {steps}")
    with _lock:
        _step_cap[0] = float(cap_deg)
        _step_window[0] = int(steps)
        _step_ahead[0] = bool(ahead)


def scale_steps(gain: float) -> None:
    """At inference, multiply every step of this process's delta policies by `gain` (1: as trained), for a loop
    `gain` times slower than the recording's. Set by the policy from its config."""
    if not 1.0 <= gain <= 10.0:
        raise ValueError(f"scale_steps: a gain of 1-10, got {gain}")
    with _lock:
        _step_gain[0] = float(gain)


def sent_base(
    present: torch.Tensor,
    previous: torch.Tensor,
    cap_deg: float,
    steps: list[torch.Tensor] | None = None,
    ahead: torch.Tensor | None = None,
) -> torch.Tensor:
    """The reading with the arm's joints moved toward the previous target by at most `cap_deg`, and, given the last
    steps sent, by at most the sum of their sizes per joint (none sent: the reading); given `ahead` (the last step),
    only the joints whose previous target lies the way that step went are moved."""
    base = present.clone()
    bound = torch.full_like(present[..., ARM_JOINTS], cap_deg)
    if steps is not None:
        done = sum((s[..., ARM_JOINTS].to(present.dtype).abs() for s in steps), torch.zeros_like(bound))
        bound = torch.minimum(bound, done)
    lead = previous[..., ARM_JOINTS].to(present.dtype) - present[..., ARM_JOINTS]
    if ahead is not None:
        lead = torch.where(lead * ahead[..., ARM_JOINTS].to(present.dtype) > 0, lead, torch.zeros_like(lead))
    base[..., ARM_JOINTS] = present[..., ARM_JOINTS] + torch.maximum(torch.minimum(lead, bound), -bound)
    return base


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
    history: int = 0  # the targets sent last given to the policy (OBS_ACTION_HISTORY); 0: none

    def get_config(self) -> dict:
        config = super().get_config()
        for name in ("chained", "history"):  # a delta pipeline saves what it saved before either existed
            if not config[name]:
                del config[name]
        return config

    def __call__(self, transition: EnvTransition) -> EnvTransition:
        transition = transition.copy()
        present = _present(transition.get(TransitionKey.OBSERVATION) or {}, self.state_key)
        action = transition.get(TransitionKey.ACTION)
        with _lock:
            sent = [t for t in _sent.get(self.pair_id, []) if t.shape == present.shape] if action is None else []
            sent = [t.to(present.device, present.dtype) for t in sent]
            reference = present.detach()
            if self.chained and sent:
                reference = _with(reference, sent[-1], self.chained)
            previous = _stepped.get(self.pair_id) if action is None and _step_cap[0] > 0 else None
            if previous is not None and previous.shape == present.shape and not self.chained:
                window, kept = _step_window[0], [t.to(present.device) for t in _steps.get(self.pair_id, [])]
                steps = kept[-window:] if window else None
                ahead = (kept[-1] if kept else torch.zeros_like(present)) if _step_ahead[0] else None
                reference = sent_base(reference, previous.to(present.device), _step_cap[0], steps, ahead)
            _present_state[self.pair_id] = reference
        if self.history and action is None:  # before an episode's first target, the servos hold the present state
            targets = [present.detach()] * max(self.history - len(sent), 0) + sent[len(sent) - self.history :]
            transition = self._with_history(transition, torch.stack(targets, dim=-2), present)
        if action is not None:
            if action.shape[-1] != present.shape[-1]:
                raise ValueError(f"action has {action.shape[-1]} dims but '{self.state_key}' has {present.shape[-1]}")
            if self.chained:
                transition[TransitionKey.ACTION] = self._chained_delta(action, present, transition)
            elif self.history:
                transition[TransitionKey.ACTION] = self._history_delta(action, present, transition)
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

    def _history_delta(self, action: torch.Tensor, present: torch.Tensor, transition: EnvTransition) -> torch.Tensor:
        """(B, H+1, D) recorded targets [history..., label] -> the label's (B, D) delta, the history written to the
        observation; targets padded before an episode's start are the state."""
        if action.ndim != 3 or action.shape[1] != self.history + 1:
            raise ValueError(
                f"an action history of {self.history} trains on the {self.history} targets before each label: "
                f"'action' must be (B, {self.history + 1}, D), got {tuple(action.shape)} (the config's "
                "action_delta_indices give them)"
            )
        pad = (transition.get(TransitionKey.COMPLEMENTARY_DATA) or {}).get(f"{ACTION}_is_pad")
        history = action[:, :-1]
        if pad is not None:
            pad = pad.to(torch.bool)
            # a leading run of padding, with the label itself real, lies before the episode's start; padding after
            # its end repeats its last target, where the arm stays
            before = torch.cumprod(pad[:, :-1].to(torch.int64), dim=1).bool() & ~pad[:, -1:]
            history = torch.where(before[..., None], present[:, None], history)
        transition.update(self._with_history(transition, history, present))
        return absolute_to_delta(action[:, -1], present, self.action_scale)

    def _with_history(self, transition: EnvTransition, targets: torch.Tensor, present: torch.Tensor) -> EnvTransition:
        """`targets` (B, H, D) written, relative to `present` (B, D), as (B, H*D) under OBS_ACTION_HISTORY."""
        scale = _scale(self.action_scale, present)
        relative = (targets.to(present.dtype) - present[..., None, :]) / scale
        transition = transition.copy()
        observation = dict(transition.get(TransitionKey.OBSERVATION) or {})
        observation[OBS_ACTION_HISTORY] = relative.flatten(-2)
        transition[TransitionKey.OBSERVATION] = observation
        return transition

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
        with _lock:
            gain = _step_gain[0]
        target = delta_to_absolute(delta, reference, [gain * s for s in self.action_scale])
        transition[TransitionKey.ACTION] = target
        if _step_cap[0] > 0 and target.ndim == present.ndim:
            # before the joint-limit clip: a base held at a limit by the cap's width at most, which the clip catches
            with _lock:
                _stepped[self.pair_id] = target.detach().clone()
                steps = _steps.setdefault(self.pair_id, [])
                steps.append((target - present).detach().clone())
                del steps[:-SENT_KEPT]
        return transition

    def transform_features(self, features: dict[PipelineFeatureType, dict]) -> dict[PipelineFeatureType, dict]:
        return features


@ProcessorStepRegistry.register("so101_remember_joint_target")
@dataclass
class RememberJointTargetStep(ConfigFromFields, ProcessorStep):
    """Postprocessor, after the joint-limit clip: remembers the targets sent, which its pair adds to (chained) or
    shows the policy (action history)."""

    pair_id: str = ""

    def __call__(self, transition: EnvTransition) -> EnvTransition:
        with _lock:
            sent = _sent.setdefault(self.pair_id, [])
            sent.append(transition[TransitionKey.ACTION].detach().clone())
            del sent[:-SENT_KEPT]
        return transition

    def reset(self) -> None:
        with _lock:
            _sent.pop(self.pair_id, None)

    def transform_features(self, features: dict[PipelineFeatureType, dict]) -> dict[PipelineFeatureType, dict]:
        return features
