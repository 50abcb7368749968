"""A scripted joint-space expert for the twin's tasks.

It plans top-down grasps with inverse kinematics on a scratch copy of the twin's state, then plays smooth
joint-space segments between the IK solutions, one absolute joint target per control step, in the follower's
units: what a person on a leader arm would send. It reads the cube's true pose (a privileged expert).
"""

from __future__ import annotations

from dataclasses import dataclass

import mujoco
import numpy as np

from .twin import GRASP_POINT_IN_GRIPPER, SO101Twin

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


class TopDownIK:
    """Damped least squares on (grasp-point position, tool axis vertical, closing-direction yaw).

    Five arm joints meet five constraints: the arm is planar, so pointing the tool straight down costs one.
    A finite-difference Jacobian keeps it simple; a solve is ~50 forward-kinematics calls, well under a ms each.
    """

    def __init__(self, twin: SO101Twin):
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

    def __init__(self, twin: SO101Twin, hover_height: float = 0.06, lift_height: float = 0.10, speed: float = 1.0):
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

    def _grasp_yaw(self) -> float:
        """Closing direction along a cube face normal, picking the one nearest the arm's bearing."""
        cube = self.twin.cube_position
        bearing = np.arctan2(cube[1], cube[0])
        yaw = self.twin.cube_yaw
        candidates = yaw + np.arange(-2, 3) * (np.pi / 2)
        wrapped = (candidates - bearing + np.pi) % (2 * np.pi) - np.pi
        return float(bearing + wrapped[np.argmin(np.abs(wrapped))])

    def _ik(self, point: np.ndarray, gripper: float, seed: np.ndarray) -> np.ndarray:
        q = self.ik.solve(point, self._yaw, self.twin.to_radians(seed))
        out = self.twin.to_follower_units(q)
        out[5] = gripper
        return out

    def _plan(self) -> None:
        cube = self.twin.cube_position
        self._yaw = self._grasp_yaw()
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


def rollout_expert(twin: SO101Twin, seed: int, max_steps: int | None = None) -> tuple[bool, int]:
    """Run one seeded episode with the expert; returns (success at the end, steps)."""
    twin.reset(seed)
    expert = ScriptedExpert(twin)
    steps = max_steps or int(8 * twin.config.fps)
    success = False
    for _ in range(steps):
        twin.apply_action(expert.action())
        twin.step()
        success = twin.is_success()
    return success, steps
