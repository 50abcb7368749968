"""A short excitation motion for `so101-twin-identify`: joint targets that tell more about a follower's servos than
demonstrations do, planned to be safe to run on a real arm.

Demonstrations move the joints the way the task needs: the base and the wrist roll little, the force limit is seldom
reached, and the gripper closes on the cube (those frames are left out of the fit). The excitation moves one joint at
a time, then all together, around a raised pose clear of the table:
- steps, as ramps at the largest rate allowed, each held so the servo settles: gain, damping, the force limit (a
  ramp's tracking error loads the servo), latency (when a ramp starts to show);
- small reversals, a tenth of the amplitude: the gears' play;
- a chirp whose amplitude shrinks as its frequency rises, keeping the rate under the cap: damping against gain;
- a multisine on every joint at once, each at its own frequencies: the joints' coupling through the arm's inertia.

Safety, checked on the plan before the arm moves:
- every excitation target lies inside the joint limits less a margin; the approach and the return are straight
  ramps between the arm's own pose and the raised one;
- no target is farther than `max_step` from the previous one (under the follower's `max_relative_target`);
- the gripper stays open (its own excitation moves it within an open range, holding nothing).

Each part is one episode of the recording, so so101-twin-identify can hold parts out of the fit.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from so101_core import JOINT_NAMES

BODY = 5  # the body joints; index 5 is the gripper


@dataclass(frozen=True)
class Part:
    """One episode of the motion: `targets` (T, 6) in follower units, sent one per frame."""

    name: str
    targets: np.ndarray


@dataclass(frozen=True)
class ExcitationShape:
    """What the motion is made of (the command's flags), in follower units: degrees, gripper 0-100."""

    center: tuple[float, ...]  # the raised pose the motion happens around (6,: the last is the gripper's open centre)
    amplitude: tuple[float, ...]  # per joint, how far from the centre a step goes (6,)
    max_step: float  # the largest change of a target from one frame to the next
    hold_s: float  # how long each step is held
    chirp_s: float  # each joint's chirp
    chirp_hz: tuple[float, float]  # the chirp's first and last frequency
    multisine_s: float  # the all-joints part
    fps: int


def ramp(start: np.ndarray, end: np.ndarray, max_step: float) -> np.ndarray:
    """(n, 6) targets from just after `start` to `end`, straight, no joint moving more than `max_step` a frame."""
    start, end = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    n = max(1, math.ceil(float(np.max(np.abs(end - start))) / max_step - 1e-9))
    return start + (end - start) * (np.arange(1, n + 1) / n)[:, None]


def _steps(shape: ExcitationShape, joint: int, start: np.ndarray) -> np.ndarray:
    center, a = np.asarray(shape.center), shape.amplitude[joint]
    hold = max(1, round(shape.hold_s * shape.fps))
    frames, here = [], start
    for offset in (a, -a, a / 3, -a / 3, a / 10, -a / 10, 0.0):
        goal = center.copy()
        goal[joint] += offset
        frames += [ramp(here, goal, shape.max_step), np.repeat(goal[None], hold, axis=0)]
        here = goal
    return np.vstack(frames)


def _chirp(shape: ExcitationShape, joint: int) -> np.ndarray:
    """A linear chirp on one joint, its amplitude capped so its rate stays under max_step per frame, tapered in and
    out (a Tukey window) so it starts and ends at the centre."""
    n = max(2, round(shape.chirp_s * shape.fps))
    t = np.arange(n) / shape.fps
    f0, f1 = shape.chirp_hz
    f = f0 + (f1 - f0) * t / shape.chirp_s
    phase = 2 * np.pi * (f0 * t + 0.5 * (f1 - f0) / shape.chirp_s * t**2)
    # the rate of a sin(phase) peaks at a * 2 pi f; 0.8 leaves room for the window's slope
    amp = np.minimum(shape.amplitude[joint] / 2, 0.8 * shape.max_step * shape.fps / (2 * np.pi * f))
    out = np.repeat(np.asarray(shape.center, dtype=np.float64)[None], n, axis=0)
    out[:, joint] += amp * np.sin(phase) * _tukey(n)
    return out


def _multisine(shape: ExcitationShape) -> np.ndarray:
    """Every joint at once, each a sum of three sines at frequencies no other joint uses (so the fit can tell their
    effects apart), scaled to half the amplitude and under max_step per frame."""
    n = max(2, round(shape.multisine_s * shape.fps))
    t = np.arange(n) / shape.fps
    base = 1.0 / shape.multisine_s  # whole periods over the part
    out = np.repeat(np.asarray(shape.center, dtype=np.float64)[None], n, axis=0)
    window = _tukey(n)
    for j in range(len(JOINT_NAMES)):
        harmonics = np.array([2 + j, 9 + 2 * j, 23 + 3 * j])
        # Schroeder's phases keep the sum's peak low for its power
        phases = -np.pi * np.arange(1, 4) * np.arange(4 - 1, 0, -1) / 3
        wave = np.sum(np.sin(2 * np.pi * base * harmonics[:, None] * t + phases[:, None]), axis=0)
        wave *= window
        wave /= np.max(np.abs(wave))
        rate = np.max(np.abs(np.diff(wave)))
        out[:, j] += min(shape.amplitude[j] / 2, 0.9 * shape.max_step / rate) * wave
    return out


def _tukey(n: int, alpha: float = 0.3) -> np.ndarray:
    x = np.linspace(0.0, 1.0, n)
    w = np.ones(n)
    edge = x < alpha / 2
    w[edge] = 0.5 * (1 - np.cos(2 * np.pi * x[edge] / alpha))
    edge = x > 1 - alpha / 2
    w[edge] = 0.5 * (1 - np.cos(2 * np.pi * (1 - x[edge]) / alpha))
    return w


def plan(shape: ExcitationShape, start: np.ndarray, end: np.ndarray | None = None) -> list[Part]:
    """The motion from the arm's pose `start` (6,) to `end` (default: back to `start`): the approach, each joint's
    steps and chirp, every joint at once, the return."""
    center = np.asarray(shape.center, dtype=np.float64)
    start = np.asarray(start, dtype=np.float64)
    end = start if end is None else np.asarray(end, dtype=np.float64)
    settle = np.repeat(center[None], max(1, round(shape.hold_s * shape.fps)), axis=0)
    parts = [Part("approach", np.vstack([ramp(start, center, shape.max_step), settle]))]
    for j, name in enumerate(JOINT_NAMES):
        parts.append(Part(name, np.vstack([_steps(shape, j, center), _chirp(shape, j), settle])))
    parts.append(Part("all_joints", np.vstack([_multisine(shape), settle])))
    parts.append(Part("return", ramp(center, end, shape.max_step)))
    return parts


def check_plan(parts: list[Part], start: np.ndarray, limits: np.ndarray, margin: float, max_step: float) -> None:
    """Refuse (ValueError naming the joint, the part and the bound) a plan that leaves the joint limits less `margin`
    outside its approach and return, or moves a target more than `max_step` in one frame."""
    previous = np.asarray(start, dtype=np.float64)
    for part in parts:
        step = np.abs(np.diff(np.vstack([previous, part.targets]), axis=0))
        if step.max() > max_step + 1e-6:
            t, j = np.unravel_index(int(np.argmax(step)), step.shape)
            raise ValueError(f"the excitation's part {part.name!r} moves {JOINT_NAMES[j]} by {step[t, j]:.2f} in "
                             f"one frame, more than --max_step={max_step}")  # fmt: skip
        previous = part.targets[-1]
        if part.name in ("approach", "return"):
            continue
        low, high = part.targets.min(axis=0), part.targets.max(axis=0)
        for j, name in enumerate(JOINT_NAMES):
            lo, hi = limits[j, 0] + margin, limits[j, 1] - margin
            if low[j] < lo - 1e-9 or high[j] > hi + 1e-9:
                raise ValueError(
                    f"the excitation moves {name} through [{low[j]:.1f}, {high[j]:.1f}] in part {part.name!r}, "
                    f"outside its limits less the margin, [{lo:.1f}, {hi:.1f}]: lower --amplitude or move --center"
                )
