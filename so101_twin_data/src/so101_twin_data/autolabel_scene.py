"""The twin posed as a recorded frame: the arm at the recorded joint positions, the cube where the grasp put it, and
the class mask and depth each camera would see, for `so101-seg-autolabel`.

The cube's pose comes from the grasp frame. Parallel jaws close on two opposite faces, so the cube's centre lies on
the jaws' grasp point (`GRASP_POINT_IN_GRIPPER`, half a cube in front of the fixed pad) and one pair of its faces is
square to the closing direction; before it is lifted it stands on the table, which fixes its height. From the grasp
on it moves with the gripper, rigidly.

`LabelErrors` moves the twin's belief off the truth (camera mounts, joint readings, table height, cube size) to
measure how the labels degrade under the errors a real install has; at its defaults it changes nothing.
"""

from __future__ import annotations

import mujoco
import numpy as np

from lerobot_env_so101_twin.scene import CUBE_HALF_SIZE, WRIST_CAMERA
from lerobot_env_so101_twin.simulation import GRASP_POINT_IN_GRIPPER, TwinConfig, TwinSimulation

from .autolabel_config import LabelErrors
from .grasp import EpisodeGrasp, GraspConfig

# Where a held cube's centre sits from the grasp point, in the gripper's frame: pressed against the fixed pad, 4 mm
# nearer it than `GRASP_POINT_IN_GRIPPER` says (the twin's expert, 32 grasps: -4.2 +- 2.4 mm along the closing
# direction, 0.1 +- 4.5 mm along the jaws' faces).
HELD_CUBE_OFFSET = np.array([-0.0042, 0.0, 0.0])


def _yaw_quat(yaw: float) -> np.ndarray:
    return np.array([np.cos(yaw / 2), 0.0, 0.0, np.sin(yaw / 2)])


def _mat_quat(rot: np.ndarray) -> np.ndarray:
    quat = np.zeros(4)
    mujoco.mju_mat2Quat(quat, np.asarray(rot, dtype=np.float64).reshape(-1))
    return quat


def _quat_mat(quat: np.ndarray) -> np.ndarray:
    mat = np.zeros(9)
    mujoco.mju_quat2Mat(mat, np.asarray(quat, dtype=np.float64))
    return mat.reshape(3, 3)


class LabelScene:
    """The twin with no physics, posed frame by frame; renders (mask, depth) per camera."""

    def __init__(
        self,
        cameras: dict[str, tuple[int, int]],
        cube_size_m: float = 2 * CUBE_HALF_SIZE,
        table_height_m: float = 0.0,
        errors: LabelErrors | None = None,
    ):
        self.errors = errors or LabelErrors()
        self.twin = TwinSimulation(TwinConfig(cameras=dict(cameras), depth=True, segmentation=True))
        model = self.twin.model
        self.half = cube_size_m / 2 * self.errors.cube_scale
        cube = self.twin.cube_geom
        model.geom_size[cube] = self.half
        model.geom_rbound[cube] = self.half * np.sqrt(3)
        model.geom_aabb[cube, 3:] = self.half
        self.table_z = table_height_m + self.errors.table_height_m
        for name in ("table", "appearance_table_cover"):
            model.geom_pos[model.geom(name).id, 2] += self.table_z
        rng = np.random.default_rng(self.errors.seed)
        self.camera_ids = {name: model.camera("front" if name == "front" else WRIST_CAMERA).id for name in cameras}
        for cam in self.camera_ids.values():
            direction = rng.normal(size=3)
            model.cam_pos[cam] += self.errors.camera_pos_m * direction / np.linalg.norm(direction)
            axis = rng.normal(size=3)
            axis /= np.linalg.norm(axis)
            angle = np.deg2rad(self.errors.camera_rot_deg)
            turn = np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])
            quat = np.zeros(4)
            mujoco.mju_mulQuat(quat, model.cam_quat[cam].copy(), turn)
            model.cam_quat[cam] = quat
        self._mounts = {name: (model.cam_pos[i].copy(), model.cam_quat[i].copy(), float(model.cam_fovy[i]))
                        for name, i in self.camera_ids.items()}  # fmt: skip
        signs = rng.choice([-1.0, 1.0], size=6)
        # degrees for the five body joints; the gripper's 0-100 scale spans its joint range
        span = np.rad2deg(np.diff(self.twin.joint_range_rad[5])[0])
        self.joint_offset = signs * self.errors.joint_offset_deg * np.array([1, 1, 1, 1, 1, 100.0 / span])

    def set_camera_offsets(self, offsets: dict[str, np.ndarray]) -> None:
        """Move each named camera from its mount by (dx, dy, dz m; rx, ry, rz degrees about its own axes; dfovy
        degrees): `so101-seg-autolabel`'s camera fit."""
        model = self.twin.model
        for name, offset in offsets.items():
            pos, quat, fovy = self._mounts[name]
            i = self.camera_ids[name]
            model.cam_pos[i] = pos + offset[:3]
            turn = np.zeros(4)
            mujoco.mju_axisAngle2Quat(turn, np.array([1.0, 0.0, 0.0]), 0.0)
            rotvec = np.deg2rad(offset[3:6])
            angle = float(np.linalg.norm(rotvec))
            if angle > 0:
                mujoco.mju_axisAngle2Quat(turn, rotvec / angle, angle)
            out = np.zeros(4)
            mujoco.mju_mulQuat(out, quat, turn)
            model.cam_quat[i] = out
            model.cam_fovy[i] = fovy + offset[6]

    def reading(self, joints: np.ndarray) -> np.ndarray:
        """Recorded joint positions as the twin believes them (with `errors.joint_offset_deg`)."""
        return np.asarray(joints, dtype=np.float64) + self.joint_offset

    def grasp_pose(self, joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The cube's world pose (centre, wxyz quaternion) when the jaws close on it at `joints`, standing on the
        table: centre under the grasp point, faces square to the closing direction."""
        self.twin.place(joints, np.zeros(3), np.array([1.0, 0.0, 0.0, 0.0]))
        position, rot = self.twin.gripper_pose
        point = position + rot @ (GRASP_POINT_IN_GRIPPER + HELD_CUBE_OFFSET)
        closing = rot[:, 0]
        yaw = float(np.arctan2(closing[1], closing[0]))
        yaw = (yaw + np.pi / 4) % (np.pi / 2) - np.pi / 4  # a cube looks the same every quarter turn
        return np.array([point[0], point[1], self.table_z + self.half]), _yaw_quat(yaw)

    def shifted_grasp_pose(self, joints: np.ndarray, shift: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
        """`grasp_pose` moved on the table by `shift` (m): along the closing direction, then along the jaws' faces."""
        centre, quat = self.grasp_pose(joints)
        rot = _quat_mat(quat)
        return centre + shift[0] * rot[:, 0] + shift[1] * rot[:, 1], quat

    def cube_poses(
        self, joints: np.ndarray, grasp: EpisodeGrasp, shift: tuple[float, float] = (0.0, 0.0)
    ) -> tuple[np.ndarray, np.ndarray]:
        """The cube's pose at every frame of an episode with a grasp: (T, 3) centres and (T, 4) quaternions, standing
        at its grasp pose (moved by `shift`, see `shifted_grasp_pose`) before the grasp and carried rigidly by the
        gripper from it on (frames where it is lost are posed as held; they are skipped)."""
        centre, quat = self.shifted_grasp_pose(joints[grasp.grasp], shift)
        self.twin.place(joints[grasp.grasp], centre, quat)
        g_pos, g_rot = self.twin.gripper_pose
        in_gripper = g_rot.T @ (centre - g_pos)
        rot_in_gripper = g_rot.T @ _quat_mat(quat)
        centres, quats = np.repeat(centre[None], len(joints), 0), np.repeat(quat[None], len(joints), 0)
        for t in range(grasp.grasp + 1, len(joints)):
            self.twin.place(joints[t], centre, quat)
            g_pos, g_rot = self.twin.gripper_pose
            centres[t] = g_pos + g_rot @ in_gripper
            quats[t] = _mat_quat(g_rot @ rot_in_gripper)
        return centres, quats

    def first_contact(self, joints: np.ndarray, pose: tuple[np.ndarray, np.ndarray], stop: int, depth_m: float) -> int:
        """The first frame before `stop` where the arm cuts deeper than `depth_m` into a cube standing at `pose`
        (centre, quaternion): the frame it was touched; `stop` when it never is."""
        for t in range(stop):
            self.twin.place(joints[t], *pose)
            if self.twin.cube_penetration() > depth_m:
                return t
        return stop

    def pushed_until(self, joints: np.ndarray, grasp: EpisodeGrasp, cfg: GraspConfig) -> int:
        """The last frame before the jaws start closing where the arm cuts into the cube's grasp pose deeper than
        `cfg.push_depth_m` (the cube cannot have stood there then), or -1."""
        pose = self.grasp_pose(joints[grasp.grasp])
        last = -1
        for t in range(grasp.closing):
            self.twin.place(joints[t], *pose)
            if self.twin.cube_penetration() > cfg.push_depth_m:
                last = t
        return last

    def grasp_point(self, joints: np.ndarray) -> np.ndarray:
        """Where the jaws would hold a cube's centre at `joints`, in the world (m)."""
        self.twin.place(joints, np.array([0.0, 0.0, -2.0]), np.array([1.0, 0.0, 0.0, 0.0]))
        position, rot = self.twin.gripper_pose
        return position + rot @ (GRASP_POINT_IN_GRIPPER + HELD_CUBE_OFFSET)

    def render(self, joints: np.ndarray, centre: np.ndarray, quat: np.ndarray) -> dict[str, tuple[np.ndarray, ...]]:
        """camera -> (class mask (H, W) uint8, depth (H, W) float32 m) at one pose."""
        self.twin.place(joints, centre, quat)
        return {name: (f.segmentation, f.depth) for name, f in self.twin.render(rgb=False).items()}

    def close(self) -> None:
        self.twin.close()
