"""A scripted joint-space expert for the twin's tasks.

It plans top-down grasps with inverse kinematics on a scratch copy of the twin's state, then plays smooth
joint-space segments between the IK solutions, one absolute joint target per control step, in the follower's
units: what a person on a leader arm would send. It reads the cube's true pose (a privileged expert).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from .simulation import CUBE_HALF_SIZE, GRASP_POINT_IN_GRIPPER, ActuationNoise, TwinSimulation

GRIPPER_OPEN = 45.0  # ~6.5 cm between the pads
GRIPPER_CLOSED = 0.0  # the position servo squeezes the cube at its torque limit
ARM_JOINTS = 5


@dataclass(frozen=True)
class Segment:
    name: str
    duration_s: float
    start: np.ndarray
    goal: np.ndarray


def _smoothstep(x: float) -> float:
    x = min(max(x, 0.0), 1.0)
    return x * x * (3.0 - 2.0 * x)


def _grasp_yaw(twin: TwinSimulation) -> float:
    """Closing direction along a cube face normal, picking the one nearest the arm's bearing."""
    cube = twin.cube_position
    bearing = np.arctan2(cube[1], cube[0])
    candidates = twin.cube_yaw + np.arange(-2, 3) * (np.pi / 2)
    wrapped = (candidates - bearing + np.pi) % (2 * np.pi) - np.pi
    return float(bearing + wrapped[np.argmin(np.abs(wrapped))])


class TopDownIK:
    """Damped least squares on (grasp-point position, tool axis vertical, closing-direction yaw).

    Five arm joints meet five constraints: the arm is planar, so pointing the tool straight down costs one.
    A finite-difference Jacobian keeps it simple; a solve is ~50 forward-kinematics calls, well under a ms each.
    """

    def __init__(self, twin: TwinSimulation):
        self.twin = twin
        self.model = twin.model
        self.data = mujoco.MjData(twin.model)
        self.gripper_body = self.model.body("gripper").id
        self.qadr = twin._joint_qpos

    def _residual(self, q: np.ndarray, target: np.ndarray, yaw: float) -> np.ndarray:
        self.data.qpos[self.qadr] = q
        mujoco.mj_kinematics(self.model, self.data)
        rot = self.data.xmat[self.gripper_body].reshape(3, 3)
        point = self.data.xpos[self.gripper_body] + rot @ GRASP_POINT_IN_GRIPPER
        tool_up = rot[:, 2]  # fingers point along the gripper's -z: vertical fingers need z up
        closing = rot[:, 0]
        want = np.array([np.cos(yaw), np.sin(yaw)])
        yaw_error = closing[0] * want[1] - closing[1] * want[0]
        return np.concatenate([point - target, 0.3 * np.cross(tool_up, [0.0, 0.0, 1.0])[:2], [0.3 * yaw_error]])

    def solve(self, target: np.ndarray, yaw: float, seed_rad: np.ndarray, iterations: int = 60) -> np.ndarray:
        q = seed_rad.copy()
        lo, hi = self.twin.joint_range_rad[:ARM_JOINTS].T
        eps = 1e-5
        for _ in range(iterations):
            r = self._residual(q, target, yaw)
            if np.linalg.norm(r[:3]) < 5e-4 and np.linalg.norm(r[3:]) < 3e-3:
                break
            jac = np.empty((r.size, ARM_JOINTS))
            for j in range(ARM_JOINTS):
                dq = q.copy()
                dq[j] += eps
                jac[:, j] = (self._residual(dq, target, yaw) - r) / eps
            step = -jac.T @ np.linalg.solve(jac @ jac.T + 1e-4 * np.eye(r.size), r)
            q[:ARM_JOINTS] = np.clip(q[:ARM_JOINTS] + np.clip(step, -0.3, 0.3), lo, hi)
        return q


class ScriptedExpert:
    """Pick (LiftCube) or reach (ReachCube): call `reset()` at each episode start, then `action()` once a step."""

    def __init__(self, twin: TwinSimulation, hover_height: float = 0.06, lift_height: float = 0.10, speed: float = 1.0):
        self.twin = twin
        self.ik = TopDownIK(twin)
        self.hover_height = hover_height
        self.lift_height = lift_height
        self.speed = speed
        self.reset()

    def reset(self) -> None:
        self._segments: list[Segment] = []
        self._t = 0.0
        self._phase = "start"
        self._hold = self.twin.joint_targets()

    @property
    def phase(self) -> str:
        return self._phase

    def _ik(self, point: np.ndarray, gripper: float, seed: np.ndarray) -> np.ndarray:
        q = self.ik.solve(point, self._yaw, self.twin.to_radians(seed))
        out = self.twin.to_follower_units(q)
        out[5] = gripper
        return out

    def _plan(self) -> None:
        cube = self.twin.cube_position
        self._yaw = _grasp_yaw(self.twin)
        now = self.twin.joint_targets()
        # A seed already bent over the table keeps IK on the elbow-up branch.
        seed = np.array([np.rad2deg(np.arctan2(cube[1], cube[0])), -20.0, 40.0, 70.0, 0.0, GRIPPER_OPEN])
        hover = self._ik(cube + [0.0, 0.0, self.hover_height], GRIPPER_OPEN, seed)
        grasp = self._ik(cube, GRIPPER_OPEN, hover)
        closed = grasp.copy()
        closed[5] = GRIPPER_CLOSED
        lifted = self._ik(cube + [0.0, 0.0, self.lift_height], GRIPPER_CLOSED, grasp)
        s = 1.0 / self.speed
        if self.twin.config.task == "ReachCube":
            self._segments = [Segment("approach", 1.5 * s, now, hover), Segment("reach", 1.2 * s, hover, grasp)]
            return
        self._segments = [
            Segment("approach", 1.5 * s, now, hover),
            Segment("descend", 1.2 * s, hover, grasp),
            Segment("close", 0.6 * s, grasp, closed),
            Segment("lift", 1.2 * s, closed, lifted),
        ]

    def action(self) -> np.ndarray:
        """The next absolute joint target (6,) in follower units."""
        if self._phase == "start":
            self._plan()
            self._phase = self._segments[0].name
        dt = 1.0 / self.twin.config.fps
        self._t += dt
        elapsed = self._t
        for segment in self._segments:
            if elapsed <= segment.duration_s:
                self._phase = segment.name
                a = _smoothstep(elapsed / segment.duration_s)
                return segment.start + a * (segment.goal - segment.start)
            elapsed -= segment.duration_s
        self._phase = "hold"
        return self._segments[-1].goal.copy()


class ReactiveExpert:
    """A closed-loop pick: every step it re-reads the arm and the cube and decides from them alone.

    `ScriptedExpert` replays a plan indexed by time, so once the arm is pushed off it (actuation noise, a nudged
    cube) its commands no longer say how to come back, and a cloned policy never sees a recovery. Here the phase is
    a function of the measured state (how far the grasp point is from the cube, whether the jaws hold it) and the
    command is the measured position moved at most `max_step` towards the phase's IK goal, so the labels recorded
    under perturbation (DART, `--robot.action_noise_std`) point back to the task. A missed grasp re-opens and
    tries again.

    The gripper has one fixed finger: the grasp point sits where the twin's own cube, held, touches it, so a descent
    onto the cube's centre brings that finger's face level with the cube's. A larger cube, or a descent a few
    millimetres towards that finger, puts it on the cube's top, where the descent stalls for good (the `unseen` arm
    family's failures). `clearance_mm` aims the descent that far past the cube's face instead, whatever the cube's
    size, and the closing jaw pushes the cube onto the finger. None keeps the descent onto the centre (the expert of
    the recordings made before it).
    """

    def __init__(
        self,
        twin: TwinSimulation,
        hover_height: float = 0.06,
        lift_height: float = 0.10,
        speed: float = 1.0,
        max_step_deg: float = 2.5,
        max_gripper_step: float = 12.0,
        integral_gain: float = 0.05,
        clearance_mm: float | None = None,
    ):
        self.twin = twin
        self.clearance = None if clearance_mm is None else clearance_mm / 1000.0
        self.ik = TopDownIK(twin)
        self.hover_height = hover_height
        self.lift_height = lift_height
        self.max_step = max_step_deg * speed
        self.max_gripper_step = max_gripper_step * speed
        self.integral_gain = integral_gain
        self.reset()

    def reset(self) -> None:
        self._phase = "approach"
        self._seed_rad: np.ndarray | None = None
        self._lift_goal = np.zeros(ARM_JOINTS)
        self._settle = 0
        self._bias = np.zeros(3)

    @property
    def phase(self) -> str:
        return self._phase

    def _goal(self, point: np.ndarray) -> np.ndarray:
        """Arm joint goal (5,) in degrees for the grasp point at `point`, warm-started from the last solution."""
        if self._seed_rad is None:
            cube = self.twin.cube_position
            seed = np.array([np.rad2deg(np.arctan2(cube[1], cube[0])), -20.0, 40.0, 70.0, 0.0, GRIPPER_OPEN])
            self._seed_rad = self.twin.to_radians(seed)
        q = self.ik.solve(point, _grasp_yaw(self.twin), self._seed_rad, iterations=30)
        self._seed_rad = q
        return self.twin.to_follower_units(q)[:ARM_JOINTS]

    def _grasp_centre(self) -> np.ndarray:
        """Where the grasp point descends to: the cube's centre, or, with a clearance, moved towards the fixed finger
        until that finger's face stands `clearance` off the cube's (the finger's face is `CUBE_HALF_SIZE` from the
        grasp point)."""
        cube = self.twin.cube_position
        if self.clearance is None:
            return cube
        shift = self.twin.cube_half_size - CUBE_HALF_SIZE + self.clearance
        return cube - shift * self.twin.closing_direction

    def _next_phase(self, measured: np.ndarray) -> str:
        twin, phase = self.twin, self._phase
        offset = twin.grasp_point - self._grasp_centre()
        xy_error, grip = float(np.linalg.norm(offset[:2])), measured[5]
        above = offset[2] < self.hover_height + 0.02
        if phase == "approach" and xy_error < 0.015 and grip > GRIPPER_OPEN - 5 and above:
            return "descend"
        if phase == "descend":
            if xy_error > 0.025:
                return "approach"
            if np.linalg.norm(offset) < 0.01 and twin.config.task == "LiftCube":
                return "close"
        if phase == "close":
            if grip < 3.0:  # closed on nothing
                return "reopen"
            self._settle = self._settle + 1 if twin.is_grasped() else 0
            if self._settle >= 8:
                # solved once, from the grasp posture: re-solving each step lets the wrist wander to another branch
                lifted = self._grasp_centre() + [0.0, 0.0, self.lift_height]
                self._lift_goal = self._goal(lifted)
                return "lift"
        if phase == "lift" and not twin.is_grasped():
            return "reopen"
        if phase == "reopen" and grip > GRIPPER_OPEN - 5:
            return "approach"
        return phase

    def action(self) -> np.ndarray:
        """The next absolute joint target (6,) in follower units."""
        measured = self.twin.joint_positions()
        phase = self._next_phase(measured)
        if phase != self._phase:
            self._bias[:] = 0.0
        self._phase = phase
        cube = self._grasp_centre()
        point, gripper = {
            "approach": (cube + [0.0, 0.0, self.hover_height], GRIPPER_OPEN),
            "descend": (cube, GRIPPER_OPEN),
            "close": (cube, GRIPPER_CLOSED),
            "lift": (None, GRIPPER_CLOSED),
            "reopen": (None, GRIPPER_OPEN),
        }[phase]
        base = self._move_base(measured)
        if phase == "lift":
            arm = self._lift_goal
        elif point is None:
            arm = base[:ARM_JOINTS]
        else:
            # integral action in task space: a slowly drifting disturbance (servo sag, OU actuation noise) would
            # otherwise leave a steady offset that the millimetre tolerances of a grasp never forgive
            error = point - self.twin.grasp_point
            if np.linalg.norm(error) < 0.02 and phase != "lift":
                self._bias = np.clip(self._bias + self.integral_gain * error, -0.02, 0.02)
            arm = self._goal(point + self._bias)
        move = arm - base[:ARM_JOINTS]
        # one scale for all joints keeps the path straight in joint space
        move *= min(1.0, self.max_step / max(float(np.abs(move).max()), 1e-9))
        target = base.copy()
        target[:ARM_JOINTS] += move
        target[5] += np.clip(gripper - base[5], -self.max_gripper_step, self.max_gripper_step)
        return np.clip(target, self.twin.joint_limits[:, 0], self.twin.joint_limits[:, 1])

    def _move_base(self, measured: np.ndarray) -> np.ndarray:
        """Where each step starts from: the reading."""
        return measured


class PredictiveExpert(ReactiveExpert):
    """The reactive expert stepping from its own last target, not from the reading, on an arm with latency.

    Under latency the reading lags the targets sent, so the reactive expert's step from it covers ground already
    commanded: it moves `max_step` per latency rather than per period, and a step decided on a late reading near the
    goal overshoots. Stepping from the last target keeps the commanded path, and the arm follows it one latency
    later. The distance from the reading is capped at what the targets in flight can hold (`max_step` for each
    period of latency, and one for the servo's own lag), so an arm that stalls (a weak servo, the table, the
    cube) does not wind the targets up; the gripper steps from its reading, since a grip is a target past the
    jaws. The expert knows the arm's true latency, as a demonstrator with a model of the arm would; on an arm
    without it it is the reactive expert exactly.
    """

    def reset(self) -> None:
        super().reset()
        self._last_target: np.ndarray | None = None

    def action(self) -> np.ndarray:
        target = super().action()
        self._last_target = target
        return target

    def _move_base(self, measured: np.ndarray) -> np.ndarray:
        periods = self.twin.arm.latency_ms / 1000.0 * self.twin.config.fps
        if self._last_target is None or periods <= 0:
            return measured
        cap = self.max_step * (1 + np.ceil(periods))
        base = measured.copy()
        base[:ARM_JOINTS] += np.clip(self._last_target[:ARM_JOINTS] - measured[:ARM_JOINTS], -cap, cap)
        return base


EXPERTS = {"scripted": ScriptedExpert, "reactive": ReactiveExpert, "predictive": PredictiveExpert}
# the open jaws leave about 34 mm between the twin's cube and the moving jaw: a clearance past this starts to crowd it
MAX_CLEARANCE_MM = 15.0


def validate_clearance(clearance_mm: float | None, expert: str, flag: str) -> None:
    """Refuse a clearance the gripper cannot hold, or one given to an expert that does not descend closed-loop."""
    if clearance_mm is None:
        return
    if not 0.0 <= clearance_mm <= MAX_CLEARANCE_MM:
        raise ValueError(f"{flag} must be in [0, {MAX_CLEARANCE_MM:g}] mm, got {clearance_mm}")
    if expert == "scripted":
        raise ValueError(f"{flag} is the closed-loop experts' (reactive, predictive); the scripted expert has none")


def rollout_expert(
    twin: TwinSimulation,
    seed: int,
    max_steps: int | None = None,
    kind: str = "reactive",
    noise_std: float = 0.0,
    at_loop_rate: bool = False,
    clearance_mm: float | None = None,
) -> tuple[bool, int]:
    """Run one seeded episode with an expert (`EXPERTS` key), optionally under OU actuation noise of `noise_std`
    (follower units, as `--robot.action_noise_std`). Like the gym env, the episode ends at the first success. With
    `at_loop_rate` the expert acts only on every `periods_per_action`-th period of the arm's loop and its target is
    held between, as a policy's is in `lerobot-eval`; otherwise it acts every period, as it records.
    `clearance_mm` is the closed-loop experts' (`ReactiveExpert`). Returns (success, periods run)."""
    twin.reset(seed)
    expert = EXPERTS[kind](twin) if clearance_mm is None else EXPERTS[kind](twin, clearance_mm=clearance_mm)
    noise = ActuationNoise(noise_std, tau_s=0.3, fps=twin.config.fps, seed=seed)
    noise.reset(seed)
    steps = max_steps or int(8 * twin.config.fps)
    hold = twin.periods_per_action if at_loop_rate else 1
    for step in range(1, steps + 1):
        if (step - 1) % hold == 0:
            target = twin.follower_command(expert.action())
        twin.apply_action(target + noise.sample() if noise_std > 0 else target)
        twin.step()
        if twin.is_success():
            return True, step
    return False, steps
