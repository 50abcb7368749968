"""How the twin plays an `ArmParams`: the servos and the cube scaled in the compiled model, a target's way to the
servos (latency, then the gears' play), and what the camera does to a rendered image."""

from __future__ import annotations

import cv2
import mujoco
import numpy as np

from .arm import ArmParams


class ArmModel:
    """Scales a compiled twin model's servos and cube to an arm; `apply(ArmParams())` is the MJCF's own values."""

    def __init__(self, model: mujoco.MjModel, actuators: np.ndarray, dofs: np.ndarray, cube_geom: int) -> None:
        self.model = model
        self.actuators, self.dofs, self.cube_geom = actuators, dofs, cube_geom
        self.cube_body = int(model.geom_bodyid[cube_geom])
        self.kp = model.actuator_gainprm[actuators, 0].copy()
        self.kv = -model.actuator_biasprm[actuators, 2].copy()
        self.forcerange = model.actuator_forcerange[actuators].copy()
        self.damping = model.dof_damping[dofs].copy()
        self.cube_size = model.geom_size[cube_geom].copy()
        self.cube_rbound = float(model.geom_rbound[cube_geom])
        self.cube_aabb = model.geom_aabb[cube_geom].copy()
        # the collision mid-phase's bounding boxes of the cube's body, computed at compile time from its size
        bvh = model.body_bvhadr[self.cube_body]
        self.cube_bvh = slice(int(bvh), int(bvh + model.body_bvhnum[self.cube_body]))
        self.cube_bvh_aabb = model.bvh_aabb[self.cube_bvh].copy()
        self.cube_friction = model.geom_friction[cube_geom].copy()
        self.cube_mass = float(model.body_mass[self.cube_body])
        self.cube_inertia = model.body_inertia[self.cube_body].copy()

    def apply(self, arm: ArmParams) -> None:
        m, a = self.model, self.actuators
        kp = self.kp * arm.gains()
        m.actuator_gainprm[a, 0] = kp
        m.actuator_biasprm[a, 1] = -kp
        m.actuator_biasprm[a, 2] = -self.kv * arm.dampings()
        m.dof_damping[self.dofs] = self.damping * arm.dampings()
        m.actuator_forcerange[a] = self.forcerange * arm.forces()[:, None]
        self.apply_cube(arm)

    def apply_cube(self, arm: ArmParams) -> None:
        """The cube alone: an appearance redraw restores every geom's size, the cube's among them."""
        m, g, s = self.model, self.cube_geom, arm.cube_size
        m.geom_size[g] = self.cube_size * s
        m.geom_rbound[g] = self.cube_rbound * s
        m.geom_aabb[g] = self.cube_aabb * s
        m.bvh_aabb[self.cube_bvh] = self.cube_bvh_aabb * s
        m.geom_friction[g] = self.cube_friction * [arm.cube_friction, 1.0, 1.0]
        m.body_mass[self.cube_body] = self.cube_mass * arm.cube_mass
        # a solid cube's inertia goes with its mass and the square of its size
        m.body_inertia[self.cube_body] = self.cube_inertia * arm.cube_mass * s**2
        # the constraint solver's inverse weights are computed from the masses at compile time: a heavier cube with
        # the old ones is pushed too hard by its contacts and the simulation blows up
        if arm.cube_mass != 1.0 or s != 1.0:
            mujoco.mj_setConst(m, mujoco.MjData(m))


def play(held: np.ndarray, command: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Backlash as a play operator: the output follows the command only once the command has crossed the gap of
    `width` around it, and then trails it by half the gap on the side it came from."""
    half = width / 2
    return np.clip(held, command - half, command + half)


class TargetPath:
    """A target's way from the loop to the servos: `latency` (with jitter, in order) in physics substeps, then the
    gears' play. Holds the targets sent but not yet at the servos."""

    def __init__(self, arm: ArmParams, timestep: float, rng: np.random.Generator) -> None:
        self.delay = arm.latency_ms / 1000.0 / timestep
        self.jitter = arm.latency_jitter_ms / 1000.0 / timestep
        self.backlash = arm.backlash_rad()
        self.rng = rng
        self.pending: list[tuple[int, np.ndarray]] = []  # (substep it reaches the servos, target in radians)
        self.held: np.ndarray | None = None  # the gears' output position a play leaves, in radians

    @property
    def immediate(self) -> bool:
        return self.delay == 0 and self.jitter == 0

    def send(self, target: np.ndarray, now: int) -> None:
        delay = self.delay + (self.rng.normal(0.0, self.jitter) if self.jitter > 0 else 0.0)
        due = now + max(0, round(float(delay)))
        if self.pending:
            due = max(due, self.pending[-1][0])  # one bus: a later target never overtakes an earlier one
        self.pending.append((due, np.asarray(target, dtype=np.float64).copy()))

    def next_due(self) -> int | None:
        return self.pending[0][0] if self.pending else None

    def pop_due(self, now: int) -> np.ndarray | None:
        """The latest target due by `now` (earlier ones are overtaken within the same substep), or None."""
        target = None
        while self.pending and self.pending[0][0] <= now:
            target = self.pending.pop(0)[1]
        return target

    def through_gears(self, target: np.ndarray) -> np.ndarray:
        if not np.any(self.backlash > 0):
            return target
        self.held = target.copy() if self.held is None else play(self.held, target, self.backlash)
        return self.held


def image_motion(model: mujoco.MjModel, data: mujoco.MjData, camera: int, height: int, depth_m: float) -> np.ndarray:
    """(d_col, d_row) pixels per second a point on the optical axis `depth_m` away moves in the camera's image,
    from the camera's own angular and linear velocity."""
    velocity = np.zeros(6)
    mujoco.mj_objectVelocity(model, data, mujoco.mjtObj.mjOBJ_CAMERA, camera, velocity, 1)  # camera frame
    omega, linear = velocity[:3], velocity[3:]
    focal = (height / 2) / np.tan(np.deg2rad(model.cam_fovy[camera]) / 2)
    # MuJoCo's camera looks down -z with y up; image rows grow downward
    return focal * np.array([omega[1] - linear[0] / depth_m, omega[0] + linear[1] / depth_m])


def motion_blur(rgb: np.ndarray, shift_px: np.ndarray) -> np.ndarray:
    """Average of the image along a straight `shift_px` (d_col, d_row) smear, centred on the frame's instant."""
    length = float(np.hypot(*shift_px))
    if length < 0.5:
        return rgb
    size = 2 * int(np.ceil(length / 2)) + 1
    kernel = np.zeros((size, size), dtype=np.float32)
    c = size // 2
    half = np.asarray(shift_px) / 2
    a = (round(float(c - half[0])), round(float(c - half[1])))
    b = (round(float(c + half[0])), round(float(c + half[1])))
    cv2.line(kernel, a, b, 1.0, thickness=1)
    kernel /= kernel.sum()
    return cv2.filter2D(rgb, -1, kernel, borderType=cv2.BORDER_REFLECT)


def camera_effects(rgb: np.ndarray, arm: ArmParams, shift_px: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A rendered (H, W, 3) uint8 image as the arm's camera gives it: motion blur over the exposure, gain, sensor noise
    (shot noise grows with the gain), then JPEG compression."""
    out = motion_blur(rgb, shift_px) if arm.camera_exposure_ms > 0 else rgb
    if arm.camera_gain != 1.0 or arm.camera_noise > 0:
        image = out.astype(np.float32) * arm.camera_gain
        if arm.camera_noise > 0:
            image += rng.normal(0.0, arm.camera_noise * np.sqrt(arm.camera_gain), image.shape).astype(np.float32)
        out = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    if arm.camera_jpeg_quality is not None:
        ok, encoded = cv2.imencode(
            ".jpg", cv2.cvtColor(out, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(arm.camera_jpeg_quality)]
        )
        if not ok:
            raise RuntimeError("JPEG encoding of a camera frame failed")
        out = cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return np.ascontiguousarray(out)
