"""The SO-101 digital twin: physics, the follower's units, tasks, rewards and rendering in one object.

Everything the gym env, the robot plugin and the scripted expert share lives here, so that the three see
the same arm. Units are the real `so101_follower`'s (use_degrees=True): degrees for the five body joints,
0-100 for the gripper, where 0 and 100 are the two ends of the gripper joint's range (closed, open).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mujoco
import numpy as np

from so101_core import BACKGROUND, CAMERA_NAMES, JOINT_NAMES, MOTOR_KEYS, NATIVE_CAMERA_SIZE

from .appearance import APPEARANCE_GROUP, APPEARANCE_STREAM, AppearanceRandomizer, appearance_rng
from .arm import ARM_STREAM, CAMERA_STREAM, arm_rng, draw_arm
from .arm_physics import ArmModel, TargetPath, camera_effects, image_motion
from .render import CameraFrame, MultiCameraRenderer
from .scene import CUBE_HALF_SIZE, TABLE_HEIGHT, build_scene
from .twin_setup import TwinSetup

# Folded rest pose, in follower units; the pose an SO-101 is usually left in.
REST_POSE = np.array([0.0, -98.0, 70.0, 90.0, 0.0, 20.0])

LIFT_HEIGHT = 0.05  # metres the cube's bottom must rise above the table for LiftCube success
REACH_TOLERANCE = 0.02  # metres between the grasp point and the cube centre for ReachCube success
# The point of the gripper body where a grasped cube's centre sits: half a cube (1.5 cm) in front of the fixed
# fingertip pad, along the closing direction (the gripper body's +x axis). Fixed in the gripper, so it does not
# move with the jaw's opening.
GRASP_POINT_IN_GRIPPER = np.array([0.0074, 0.0, -0.098])
# The distance at which camera motion blur is measured: about the wrist camera's to the cube while it reaches
BLUR_DEPTH_M = 0.25


@dataclass
class TwinConfig(TwinSetup):
    """The simulation's config: what the robot and the env share (TwinSetup), with each camera's size and what only
    the simulation sets (the cube's spawn region, the physics step, the meshes)."""

    # camera name -> (height, width); an empty dict turns rendering off
    cameras: dict[str, tuple[int, int]] = field(default_factory=lambda: dict.fromkeys(CAMERA_NAMES, NATIVE_CAMERA_SIZE))
    # cameras that get depth/segmentation when those are on (None: every camera)
    ground_truth_cameras: tuple[str, ...] | None = None
    # cube spawn region: distance from the base (m) and bearing (deg), yaw (deg)
    cube_distance: tuple[float, float] = (0.17, 0.26)
    cube_bearing_deg: tuple[float, float] = (-30.0, 30.0)
    cube_yaw_deg: tuple[float, float] = (-45.0, 45.0)
    physics_timestep: float = 0.002
    mesh_cell: float | None = 0.004  # low-poly cell (m); None renders the full-detail CAD meshes

    def validate(self) -> None:
        for name, size in self.cameras.items():
            if name not in CAMERA_NAMES:
                raise ValueError(f"unknown camera {name!r}; the twin has {list(CAMERA_NAMES)}")
            if len(size) != 2 or min(int(size[0]), int(size[1])) <= 0:
                raise ValueError(f"camera {name!r} needs a positive (height, width), got {tuple(size)}")
        if (self.depth or self.segmentation) and not self.cameras:
            raise ValueError("depth and segmentation need at least one camera")
        self.check_setup()


@dataclass
class ClipReport:
    """What `apply_action` changed in a command before sending it to the actuators."""

    requested: np.ndarray
    sent: np.ndarray
    clipped: dict[str, tuple[float, float]]  # motor key -> (requested, sent) where they differ


class ActuationNoise:
    """Ornstein-Uhlenbeck noise added to executed joint targets (follower units).

    Recording demonstrations with it (DART, Laskey et al. 2017) puts the arm off the expert's path while the
    dataset keeps the expert's own commands as labels, so a cloned policy sees how to come back.
    """

    def __init__(self, std: float, tau_s: float, fps: int, seed: int | None = None):
        self.std, self.decay = std, float(np.exp(-1.0 / (fps * tau_s)))
        self._rng = np.random.default_rng(seed)
        self.value = np.zeros(6)

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)
        self.value = self._rng.normal(0.0, self.std, 6)

    def sample(self) -> np.ndarray:
        self.value = self.decay * self.value + np.sqrt(1 - self.decay**2) * self._rng.normal(0.0, self.std, 6)
        return self.value.copy()


class TwinSimulation:
    def __init__(self, config: TwinConfig | None = None, seed: int | None = None):
        self.config = config or TwinConfig()
        self.config.validate()
        scene = build_scene(
            self.config.cameras or {}, mesh_cell=self.config.mesh_cell, timestep=self.config.physics_timestep
        )
        self.model = scene.model
        self.data = mujoco.MjData(self.model)
        self.geom_class = scene.geom_class
        self._renderer = (
            MultiCameraRenderer(
                self.model,
                {name: scene.camera_ids[name] for name in self.config.cameras},
                self.config.cameras,
                scene.geom_class,
                BACKGROUND,
                visible_groups=(APPEARANCE_GROUP,) if self.config.appearance != "none" else (),
            )
            if self.config.cameras
            else None
        )
        control_period = 1.0 / self.config.fps
        self.n_substeps = max(1, round(control_period / self.model.opt.timestep))
        self.model.opt.timestep = control_period / self.n_substeps  # control period is an exact number of steps

        self._joint_qpos = np.array([self.model.joint(n).qposadr[0] for n in JOINT_NAMES])
        self._joint_dof = np.array([self.model.joint(n).dofadr[0] for n in JOINT_NAMES])
        self._actuators = np.array([self.model.actuator(n).id for n in JOINT_NAMES])
        self.joint_range_rad = self.model.jnt_range[[self.model.joint(n).id for n in JOINT_NAMES]].copy()
        self.joint_limits = self.to_follower_units(self.joint_range_rad.T).T  # (6, 2) in follower units
        cube_joint = self.model.joint("cube")
        self._cube_qpos = cube_joint.qposadr[0]
        self.cube_geom = self.model.geom("cube").id
        self._static_pad = self.model.geom("static_finger_pad").id
        self._gripper_body = self.model.body("gripper").id
        # grasp contacts: the fixed jaw's hull and pad, and anything on the moving jaw
        self._static_finger_geoms = {self.model.geom("static_finger_collision").id, self._static_pad}
        jaw_body = self.model.body("moving_jaw_so101_v1").id
        colliding_jaw = (self.model.geom_contype > 0) & (self.model.geom_bodyid == jaw_body)
        self._moving_finger_geoms = set(np.flatnonzero(colliding_jaw).tolist())
        self._table_geom = self.model.geom("table").id
        self._appearance = (
            AppearanceRandomizer(self.model, self.config.appearance_ranges, self.config.appearance)
            if self.config.appearance != "none"
            else None
        )
        self._appearance_seeds = np.random.default_rng(APPEARANCE_STREAM)  # for resets without a seed
        self._arm_seeds = np.random.default_rng(ARM_STREAM)
        self._camera_ids = dict(scene.camera_ids)
        self._arm_model = ArmModel(self.model, self._actuators, self._joint_dof, self.cube_geom)
        self.arm = self.config.arm_params
        self._path: TargetPath | None = None
        self._camera_rng: np.random.Generator | None = None
        self._substep = 0
        self._rng = np.random.default_rng(seed)
        self.episode_seed: int | None = seed
        self.cube_start = np.zeros(3)
        self.reset(seed)

    # ----- units -------------------------------------------------------------------------------------
    def to_follower_units(self, q_rad: np.ndarray) -> np.ndarray:
        """Joint angles (..., 6) in radians -> degrees for body joints, 0-100 for the gripper."""
        q = np.asarray(q_rad, dtype=np.float64)
        out = np.rad2deg(q).astype(np.float64)
        lo, hi = self.joint_range_rad[5]
        out[..., 5] = (q[..., 5] - lo) / (hi - lo) * 100.0
        return out

    def to_radians(self, q_follower: np.ndarray) -> np.ndarray:
        q = np.asarray(q_follower, dtype=np.float64)
        out = np.deg2rad(q)
        lo, hi = self.joint_range_rad[5]
        out[..., 5] = lo + q[..., 5] / 100.0 * (hi - lo)
        return out

    # ----- state ---------------------------------------------------------------------------------------
    def reset(self, seed: int | None = None) -> None:
        """New episode: arm at rest, cube at a random pose on the table (reproducible from `seed`)."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
            self.episode_seed = seed
        cfg = self.config
        mujoco.mj_resetData(self.model, self.data)
        rest = self.to_radians(REST_POSE)
        self.data.qpos[self._joint_qpos] = rest
        self.data.ctrl[self._actuators] = rest
        self._set_arm(seed)
        distance = self._rng.uniform(*cfg.cube_distance)
        bearing = np.deg2rad(self._rng.uniform(*cfg.cube_bearing_deg))
        yaw = np.deg2rad(self._rng.uniform(*cfg.cube_yaw_deg))
        pos = np.array([distance * np.cos(bearing), distance * np.sin(bearing), TABLE_HEIGHT + self.cube_half_size])
        self.data.qpos[self._cube_qpos : self._cube_qpos + 3] = pos
        self.data.qpos[self._cube_qpos + 3 : self._cube_qpos + 7] = [np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)]
        if self._appearance is not None:
            look = seed if seed is not None else int(self._appearance_seeds.integers(2**31 - 1))
            look = look if self.config.look_seed is None else self.config.look_seed
            self._appearance.apply(appearance_rng(look), cube_xy=pos[:2])
            self._arm_model.apply_cube(self.arm)  # the look restored every geom's size, the cube's too
        mujoco.mj_forward(self.model, self.data)
        self.cube_start = pos.copy()
        self.steps = 0

    def _set_arm(self, seed: int | None) -> None:
        """This episode's arm: the fixed one, or one drawn from its seed (or `arm_seed`), applied to the model."""
        cfg = self.config
        if cfg.arm != "none":
            draw = seed if seed is not None else int(self._arm_seeds.integers(2**31 - 1))
            self.arm_draw_seed = draw if cfg.arm_seed is None else cfg.arm_seed
            self.arm = draw_arm(cfg.arm, arm_rng(self.arm_draw_seed), cfg.arm_ranges)
        else:
            self.arm_draw_seed = None
        self._substep = 0
        self.ideal_arm = self.arm.is_ideal
        if self.ideal_arm:  # the MJCF's own values, untouched: the ideal arm is the twin as it always was
            self._path, self._camera_rng = None, None
            return
        self._arm_model.apply(self.arm)
        stream = seed if seed is not None else 0
        path = TargetPath(self.arm, self.model.opt.timestep, np.random.default_rng([stream, ARM_STREAM, 1]))
        path.held = self.data.ctrl[self._actuators].copy()
        self._path = None if path.immediate and not np.any(path.backlash > 0) else path
        self._camera_rng = np.random.default_rng([stream, CAMERA_STREAM])

    @property
    def cube_half_size(self) -> float:
        return CUBE_HALF_SIZE * self.arm.cube_size

    @property
    def calibration(self) -> np.ndarray:
        """(6,) the follower's zero minus the twin's, in follower units: reading = true + this."""
        return self.arm.calibration()

    def arm_record(self) -> dict:
        """This episode's arm as JSON values: what a recording writes with the episode, to replay and explain it."""
        return {"level": self.config.arm, "arm_seed": self.arm_draw_seed, "params": self.arm.as_dict()}

    @property
    def appearance(self) -> AppearanceRandomizer | None:
        return self._appearance

    def redraw_appearance(self, rng: np.random.Generator) -> None:
        """A new look now, mid-episode (the segmenter's per-frame randomisation); needs appearance != "none"."""
        if self._appearance is None:
            raise RuntimeError('redraw_appearance needs a twin built with appearance="shifted" or "unseen"')
        self._appearance.apply(rng, cube_xy=self.cube_position[:2])
        self._arm_model.apply_cube(self.arm)
        mujoco.mj_kinematics(self.model, self.data)  # the moved distractors' world poses, before the next render

    def place(self, joints: np.ndarray, cube_position: np.ndarray, cube_quat: np.ndarray) -> None:
        """Arm at `joints` (6,) in follower units and the cube at a pose (wxyz quaternion), by forward kinematics and
        collision detection alone, no physics: a recorded frame posed again, to render its labels."""
        self.data.qpos[self._joint_qpos] = self.to_radians(joints)
        self.data.qpos[self._cube_qpos : self._cube_qpos + 3] = cube_position
        self.data.qpos[self._cube_qpos + 3 : self._cube_qpos + 7] = cube_quat
        mujoco.mj_fwdPosition(self.model, self.data)

    def cube_penetration(self) -> float:
        """How deep (m) any part of the arm cuts into the cube in the present contacts; 0 when none touches it."""
        deepest = 0.0
        contact = self.data.contact
        for i in range(self.data.ncon):
            g1, g2 = contact.geom1[i], contact.geom2[i]
            if self.cube_geom in (g1, g2) and self._table_geom not in (g1, g2):
                deepest = max(deepest, -float(contact.dist[i]))
        return deepest

    @property
    def gripper_pose(self) -> tuple[np.ndarray, np.ndarray]:
        """The gripper body's world position (3,) and rotation matrix (3, 3); its +x axis is the jaws' closing
        direction."""
        return self.data.xpos[self._gripper_body].copy(), self.data.xmat[self._gripper_body].reshape(3, 3).copy()

    def joint_positions(self) -> np.ndarray:
        """Present joint positions (6,) in follower units."""
        return self.to_follower_units(self.data.qpos[self._joint_qpos])

    def joint_targets(self) -> np.ndarray:
        """The last commanded joint targets (6,) in follower units."""
        return self.to_follower_units(self.data.ctrl[self._actuators])

    @property
    def periods_per_action(self) -> int:
        """Physics periods each of the arm's loop steps lasts: its loop runs at control_fps, the physics at fps."""
        rate = self.arm.control_fps
        return 1 if rate is None else self.config.fps // rate

    def follower_positions(self) -> np.ndarray:
        """What the follower reads (6,): the true joint positions seen through its calibration."""
        if self.ideal_arm:
            return self.joint_positions()
        return self.joint_positions() + self.calibration

    def follower_command(self, true_target: np.ndarray) -> np.ndarray:
        """The command (follower units) that puts the joints at `true_target`: what a person teleoperating corrects
        for by watching the arm."""
        if self.ideal_arm:
            return np.asarray(true_target, dtype=np.float64)
        return np.asarray(true_target, dtype=np.float64) + self.calibration

    def observation_state(self) -> dict[str, float]:
        return dict(zip(MOTOR_KEYS, self.follower_positions().tolist(), strict=True))

    @property
    def cube_position(self) -> np.ndarray:
        return self.data.qpos[self._cube_qpos : self._cube_qpos + 3].copy()

    @property
    def cube_quat(self) -> np.ndarray:
        return self.data.qpos[self._cube_qpos + 3 : self._cube_qpos + 7].copy()

    @property
    def cube_yaw(self) -> float:
        w, x, y, z = self.cube_quat
        return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))

    @property
    def closing_direction(self) -> np.ndarray:
        """The horizontal unit vector (3,) from the fixed finger towards the moving jaw (the gripper's x axis)."""
        axis = self.data.xmat[self._gripper_body].reshape(3, 3)[:, 0].copy()
        axis[2] = 0.0
        return axis / max(float(np.linalg.norm(axis)), 1e-9)

    @property
    def grasp_point(self) -> np.ndarray:
        """Where a grasped cube's centre sits (`GRASP_POINT_IN_GRIPPER`), in world coordinates."""
        rot = self.data.xmat[self._gripper_body].reshape(3, 3)
        return self.data.xpos[self._gripper_body] + rot @ GRASP_POINT_IN_GRIPPER

    # ----- control -------------------------------------------------------------------------------------
    def apply_action(self, target: np.ndarray, max_relative_target: float | None = None) -> ClipReport:
        """Set absolute joint targets (6,) in follower units, clipped to the joint limits and, like the real
        follower's `max_relative_target`, to a maximum distance from the present position. Under a non-ideal arm the
        target is the follower's (its calibration) and reaches the servos after the arm's latency."""
        requested = np.asarray(target, dtype=np.float64).reshape(-1)
        if requested.shape != (6,):
            raise ValueError(f"action must hold 6 joint targets {list(MOTOR_KEYS)}, got shape {requested.shape}")
        if not np.all(np.isfinite(requested)):
            bad = [k for k, v in zip(MOTOR_KEYS, requested, strict=True) if not np.isfinite(v)]
            raise ValueError(f"action has non-finite targets for {bad}")
        sent = requested.copy()
        if max_relative_target is not None:
            present = self.follower_positions()
            sent = np.clip(sent, present - max_relative_target, present + max_relative_target)
        sent = np.clip(sent, self.joint_limits[:, 0], self.joint_limits[:, 1])
        clipped = {
            key: (float(r), float(s))
            for key, r, s in zip(MOTOR_KEYS, requested, sent, strict=True)
            if abs(r - s) > 1e-6
        }
        if self.ideal_arm:
            self.data.ctrl[self._actuators] = self.to_radians(sent)
        elif self._path is None:
            self.data.ctrl[self._actuators] = self.to_radians(sent - self.calibration)
        else:
            self._path.send(self.to_radians(sent - self.calibration), self._substep)
        return ClipReport(requested=requested, sent=sent, clipped=clipped)

    def step(self) -> None:
        """Advance one control period (1/fps s); a target on its way reaches the servos at its substep."""
        self.advance(self.n_substeps)
        self.steps += 1

    def advance(self, substeps: int) -> None:
        """Advance `substeps` physics steps, holding the servos' targets but for those that arrive meanwhile."""
        if self._path is None:
            mujoco.mj_step(self.model, self.data, nstep=substeps)
            self._substep += substeps
            return
        end = self._substep + substeps
        while self._substep < end:
            target = self._path.pop_due(self._substep)
            if target is not None:
                self.data.ctrl[self._actuators] = self._path.through_gears(target)
            due = self._path.next_due()
            stop = end if due is None else min(end, max(due, self._substep + 1))
            mujoco.mj_step(self.model, self.data, nstep=stop - self._substep)
            self._substep = stop

    @property
    def physics_time(self) -> float:
        """Seconds simulated since the episode's reset."""
        return self._substep * self.model.opt.timestep

    # ----- task --------------------------------------------------------------------------------------
    def _touching(self, geoms: set[int]) -> bool:
        contact = self.data.contact
        for i in range(self.data.ncon):
            g1, g2 = contact.geom1[i], contact.geom2[i]
            if (g1 == self.cube_geom and g2 in geoms) or (g2 == self.cube_geom and g1 in geoms):
                return True
        return False

    def is_grasped(self) -> bool:
        return self._touching(self._static_finger_geoms) and self._touching(self._moving_finger_geoms)

    def lift_height(self) -> float:
        return float(self.cube_position[2] - self.cube_half_size - TABLE_HEIGHT)

    def is_success(self) -> bool:
        if self.config.task == "ReachCube":
            return bool(np.linalg.norm(self.grasp_point - self.cube_position) < REACH_TOLERANCE)
        return self.lift_height() > LIFT_HEIGHT and self.is_grasped()

    def dense_reward(self) -> float:
        """Shaped reward in [0, 1] (ReachCube) or [0, 3] (LiftCube).

        reach = 1 - tanh(10 * |grasp point - cube centre|); LiftCube adds grasp = 1 while both fingers touch the
        cube and lift = clip(lift height / LIFT_HEIGHT, 0, 1) while grasped.
        """
        reach = 1.0 - np.tanh(10.0 * np.linalg.norm(self.grasp_point - self.cube_position))
        if self.config.task == "ReachCube":
            return float(reach)
        grasped = self.is_grasped()
        lift = np.clip(self.lift_height() / LIFT_HEIGHT, 0.0, 1.0) if grasped else 0.0
        return float(reach + float(grasped) + lift)

    # ----- cameras -----------------------------------------------------------------------------------
    def render(self, rgb: bool = True) -> dict[str, CameraFrame]:
        """Every camera's frame; `rgb=False` renders only the ground truth (depth, segmentation), in one pass."""
        if self._renderer is None:
            raise RuntimeError("this twin was built with no cameras (TwinConfig.cameras is empty)")
        cfg = self.config
        gt = None if cfg.ground_truth_cameras is None else set(cfg.ground_truth_cameras)
        frames = self._renderer.render(
            self.data, depth=cfg.depth, segmentation=cfg.segmentation, ground_truth_cameras=gt, rgb=rgb
        )
        if self._camera_rng is not None and self.arm.has_camera_effects:
            exposure = self.arm.camera_exposure_ms / 1000.0
            for name, frame in frames.items():
                if frame.rgb is None:
                    continue
                camera = self._camera_ids[name]
                shift = image_motion(self.model, self.data, camera, frame.rgb.shape[0], BLUR_DEPTH_M) * exposure
                frame.rgb = camera_effects(frame.rgb, self.arm, shift, self._camera_rng)
        return frames

    def close(self) -> None:
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None
