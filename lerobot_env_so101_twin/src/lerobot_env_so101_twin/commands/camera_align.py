"""`so101-camera-align`: mount a real camera where the twin's camera is, so a twin-trained checkpoint sees what it
was trained on.

A policy trained in the twin saw the scene from the twin's `front` and `wrist` cameras (`scene.py` and the SO-101
MJCF). This command shows a live camera frame blended with the twin's render from the same camera, at the same
image size, with the render's edges (silhouettes: depth jumps and class boundaries) drawn over it, and scores how
well they agree; move the mount until the edges sit on the live image's edges.

    so101-camera-align --poses_only=true                      # the twin's camera poses (the table in real-so101.md)
    so101-camera-align --twin_camera=wrist --camera.type=opencv --camera.index_or_path=0 --camera.width=640 \\
        --camera.height=480 --camera.fps=30 --output=outputs/camera_align/wrist.png
    so101-camera-align --twin_camera=wrist --robot.type=so101_follower --robot.port=/dev/ttyACM0 \\
        --robot.id=my_follower --robot.cameras="{wrist: {type: opencv, index_or_path: 0, width: 640, height: 480}}"

The live frame comes from `--camera` (any LeRobot camera config) or, without it, from the robot's camera named
`--robot_camera` (default: `--twin_camera`). With `--robot`, the twin is posed at the robot's present joint positions
(degrees, gripper 0-100, as `so101_follower` reports them), otherwise at its rest pose. The twin's cube is hidden:
a real cube is wherever it is. `--robot.type=so101_twin` makes the twin stand in for the arm and the camera.

Scores, per frame (printed, drawn under the frame, and returned):
- `edge_match`: the share of the render's edge pixels within `--edge_tolerance` (a share of the image's larger side)
  of an edge of the live frame (OpenCV's Canny); near 1 when the mount matches;
- `edge_distance_px`: the mean distance from a render edge pixel to the nearest live edge (capped at a tenth of the
  image's larger side); near 0 when the mount matches;
- `mask_miou`: when the live frame comes with a segmentation (`--robot.type=so101_twin --robot.segmentation=true`),
  the mean IoU of the render's class mask and the live one over the classes either shows (background, table and the
  two fingers; live cube pixels are left out); 1.0 when the cameras match exactly.
"""

import logging
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np
from lerobot.cameras import CameraConfig
from lerobot.configs import parser
from lerobot.robots import RobotConfig

from so101_core import (
    BACKGROUND,
    CAMERA_NAMES,
    CUBE,
    JOINT_NAMES,
    MOTOR_KEYS,
    MOVING_FINGER,
    NATIVE_CAMERA_SIZE,
    STATIC_FINGER,
    TABLE,
    UNLABELED,
    segmentation_from_code,
)
from so101_run_infra.atomic import write_with
from so101_run_infra.cli import prepare_command_line

from ..render import CameraFrame
from ..scene import WRIST_CAMERA
from ..simulation import GRASP_POINT_IN_GRIPPER, REST_POSE, TwinConfig, TwinSimulation

logger = logging.getLogger(__name__)

HIDDEN_GROUP = 5  # a geom group no twin renderer shows: the cube goes there in the reference render
SCORED_CLASSES = (BACKGROUND, TABLE, STATIC_FINGER, MOVING_FINGER)
EDGE_COLOUR = (0, 255, 0)
DEPTH_JUMP = 0.15  # a relative depth step between neighbouring pixels that counts as a silhouette
CAPTION_H = 18  # pixels of each caption line under a written frame, at 640 wide


# ----- where the twin's cameras are ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class CameraPose:
    """One twin camera: fixed to `parent` (a body of the MJCF, or the world), and where that puts it in the world
    for one arm pose."""

    name: str
    parent: str
    position: np.ndarray  # (3,) m, in the parent's frame
    axis: np.ndarray  # (3,) the optical axis (where the camera looks), unit, in the parent's frame
    up: np.ndarray  # (3,) the image's up direction, unit, in the parent's frame
    world_position: np.ndarray  # (3,) m, for the arm pose the poses were read at (the rest pose by default)
    world_axis: np.ndarray
    world_up: np.ndarray
    fovy_deg: float  # vertical field of view; the horizontal one follows from the image's aspect

    def fovx_deg(self, size: tuple[int, int] = NATIVE_CAMERA_SIZE) -> float:
        height, width = size
        return math.degrees(2 * math.atan(math.tan(math.radians(self.fovy_deg) / 2) * width / height))

    def project(self, point_world: np.ndarray, size: tuple[int, int] = NATIVE_CAMERA_SIZE) -> tuple[float, float]:
        """Pixel (column, row) of a world point in this camera's image (origin top left)."""
        return _pixel(self.world_position, self.world_axis, self.world_up, self.fovy_deg, point_world, size)


def _pixel(position, axis, up, fovy_deg: float, point, size: tuple[int, int]) -> tuple[float, float]:
    """Pixel (column, row) of `point` for a pinhole camera at `position` looking along `axis`, all in one frame."""
    offset = np.asarray(point, dtype=np.float64) - position
    x, y, depth = offset @ np.cross(axis, up), offset @ up, offset @ axis
    height, width = size
    focal = height / 2 / math.tan(math.radians(fovy_deg) / 2)
    return width / 2 + focal * x / depth, height / 2 - focal * y / depth


def camera_poses(twin: TwinSimulation | None = None, joints: np.ndarray = REST_POSE) -> dict[str, CameraPose]:
    """Every twin camera's pose, read from the compiled scene with the arm at `joints` (follower units; the twin's
    rest pose by default); `twin`: a twin without cameras by default. The twin's own state is left alone."""
    own = twin is None
    twin = twin or TwinSimulation(TwinConfig(cameras={}))
    try:
        model, data = twin.model, mujoco.MjData(twin.model)
        data.qpos[:] = twin.data.qpos
        pose_arm(twin, data, joints)
        poses = {}
        for name in CAMERA_NAMES:
            cam = model.camera(WRIST_CAMERA if name == "wrist" else name)
            body = int(model.cam_bodyid[cam.id])
            local = np.zeros(9)
            mujoco.mju_quat2Mat(local, model.cam_quat[cam.id])
            local = local.reshape(3, 3)  # columns: the camera's x (right), y (up), z (backwards) in the parent frame
            world = data.cam_xmat[cam.id].reshape(3, 3)
            poses[name] = CameraPose(
                name=name,
                parent="world" if body == 0 else model.body(body).name,
                position=model.cam_pos[cam.id].copy(),
                axis=-local[:, 2],
                up=local[:, 1],
                world_position=data.cam_xpos[cam.id].copy(),
                world_axis=-world[:, 2],
                world_up=world[:, 1],
                fovy_deg=float(model.cam_fovy[cam.id]),
            )
        return poses
    finally:
        if own:
            twin.close()


def pose_arm(twin: TwinSimulation, data: mujoco.MjData, joints: np.ndarray) -> None:
    """Put the arm of `data` at `joints` (follower units) and update the kinematics (cameras included)."""
    radians = twin.to_radians(np.asarray(joints, dtype=np.float64))
    for name, value in zip(JOINT_NAMES, radians, strict=True):
        data.qpos[twin.model.joint(name).qposadr[0]] = value
    mujoco.mj_kinematics(twin.model, data)
    mujoco.mj_camlight(twin.model, data)


def _vec(v: np.ndarray, scale: float = 1.0, digits: int = 2) -> str:
    return "(" + ", ".join(f"{x * scale + 0.0:.{digits}f}" for x in v) + ")"


def pose_table(poses: dict[str, CameraPose] | None = None, size: tuple[int, int] = NATIVE_CAMERA_SIZE) -> str:
    """The twin's cameras as a Markdown table (what `--poses_only=true` prints and docs/real-so101.md shows)."""
    poses = poses or camera_poses()
    height, width = size
    grasp = GRASP_POINT_IN_GRIPPER
    head = f"horizontal FOV at {width}x{height} | check at {width}x{height}"
    lines = [
        f"| camera | frame | position (cm) | optical axis | image up | vertical FOV | {head} |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for pose in poses.values():
        fov = f"{pose.fovy_deg:.1f}° | {pose.fovx_deg(size):.1f}°"
        if pose.parent != "world":
            # the grasp point (between the fingertips) is fixed in the gripper: one pixel whatever the arm's pose
            u, v = _pixel(pose.position, pose.axis, pose.up, pose.fovy_deg, grasp, size)
            depth = (grasp - pose.position) @ pose.axis
            check = f"grasp point {_vec(grasp, 100, 1)} cm at pixel ({u:.0f}, {v:.0f}), {depth * 100:.1f} cm away"
            lines.append(
                f"| {pose.name} | {pose.parent} | {_vec(pose.position, 100, 1)} | {_vec(pose.axis)} | "
                f"{_vec(pose.up)} | {fov} | {check} |"
            )
        t = -pose.world_position[2] / pose.world_axis[2] if pose.world_axis[2] < 0 else math.nan
        hit = pose.world_position + t * pose.world_axis
        pitch = math.degrees(math.asin(-pose.world_axis[2]))
        check = f"{pitch:.1f}° below horizontal; the image centre is table point {_vec(hit[:2], 100, 1)} cm"
        label = pose.name if pose.parent == "world" else f"{pose.name}, arm at rest"
        lines.append(
            f"| {label} | world | {_vec(pose.world_position, 100, 1)} | {_vec(pose.world_axis)} | "
            f"{_vec(pose.world_up)} | {fov} | {check} |"
        )
    return "\n".join(lines)


# ----- the twin's view, and how well a live frame matches it -----------------------------------------------------
class TwinReference:
    """The twin rendering one camera at a live frame's size (RGB, depth, classes), posed from joint positions,
    its cube hidden."""

    def __init__(self, camera: str, size: tuple[int, int]):
        if camera not in CAMERA_NAMES:
            raise ValueError(f"--twin_camera={camera!r}: the twin's cameras are {list(CAMERA_NAMES)}")
        self.camera, self.size = camera, (int(size[0]), int(size[1]))
        self.twin = TwinSimulation(TwinConfig(cameras={camera: self.size}, depth=True, segmentation=True))
        self.twin.model.geom_group[self.twin.cube_geom] = HIDDEN_GROUP

    def render(self, joints: np.ndarray | None = None) -> CameraFrame:
        pose_arm(self.twin, self.twin.data, REST_POSE if joints is None else joints)
        return self.twin.render()[self.camera]

    def close(self) -> None:
        self.twin.close()


def render_edges(frame: CameraFrame, depth_jump: float = DEPTH_JUMP) -> np.ndarray:
    """(H, W) bool: the render's silhouettes, where the class changes or the depth jumps by more than `depth_jump`
    (relative) between neighbouring pixels, marked on the nearer side. Shading (the low-poly facets) makes none."""
    seg, depth = frame.segmentation, frame.depth.astype(np.float64)
    edges = np.zeros(seg.shape, dtype=bool)
    for axis in (0, 1):
        a = [slice(None), slice(None)]
        b = [slice(None), slice(None)]
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        a, b = tuple(a), tuple(b)
        near = np.minimum(depth[a], depth[b])
        jump = (np.abs(depth[a] - depth[b]) > depth_jump * near) | (seg[a] != seg[b])
        a_nearer = depth[a] <= depth[b]
        edges[a] |= jump & a_nearer
        edges[b] |= jump & ~a_nearer
    return edges


def live_edges(rgb: np.ndarray) -> np.ndarray:
    """(H, W) bool: OpenCV's Canny edges of an RGB frame, lightly smoothed first."""
    import cv2

    gray = cv2.GaussianBlur(cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY), (3, 3), 0)
    return cv2.Canny(gray, 30, 90) > 0


def mask_miou(render_seg: np.ndarray, live_seg: np.ndarray) -> float:
    """Mean IoU over `SCORED_CLASSES` present in either mask; live cube and unlabelled pixels are left out."""
    keep = (live_seg != CUBE) & (live_seg != UNLABELED)
    ious = []
    for cls in SCORED_CLASSES:
        a, b = (render_seg == cls) & keep, (live_seg == cls) & keep
        union = np.count_nonzero(a | b)
        if union:
            ious.append(np.count_nonzero(a & b) / union)
    return float(np.mean(ious)) if ious else math.nan


def alignment_scores(
    render: CameraFrame, live_rgb: np.ndarray, live_seg: np.ndarray | None = None, tolerance: float = 0.015
) -> tuple[dict[str, float], np.ndarray]:
    """The scores of a live frame against the render of the same size, and the render's edge mask. `tolerance`:
    how far from a live edge a render edge still counts as matched, as a share of the image's larger side."""
    import cv2

    if live_rgb.shape[:2] != render.rgb.shape[:2]:
        raise ValueError(f"live frame {live_rgb.shape[:2]} and render {render.rgb.shape[:2]} differ in size")
    ref = render_edges(render)
    found = live_edges(live_rgb)
    # distance from every pixel to the nearest live edge (0 on an edge)
    distance = cv2.distanceTransform((~found).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    side = max(live_rgb.shape[:2])
    cap = side / 10
    d = np.minimum(distance[ref], cap) if ref.any() else np.array([cap])
    scores = {
        "edge_match": float(np.mean(d <= tolerance * side)),
        "edge_distance_px": float(np.mean(d)),
    }
    if live_seg is not None:
        scores["mask_miou"] = mask_miou(render.segmentation, live_seg)
    return scores, ref


def _wrap(words: list[str], width: int, scale: float) -> list[str]:
    """Words joined into lines no wider than `width` pixels in OpenCV's Hershey font; "|" starts a new line."""
    import cv2

    lines, line = [], ""
    for word in words:
        if word == "|":
            lines, line = [*lines, line], ""
            continue
        candidate = f"{line} {word}".strip()
        if line and cv2.getTextSize(candidate, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width:
            lines, line = [*lines, line], word
        else:
            line = candidate
    return [*lines, line] if line else lines


def blend(live_rgb: np.ndarray, render: CameraFrame, edges: np.ndarray, scores: dict, alpha: float, title: str):
    """The live frame and the render blended (`alpha`: the render's share), the render's edges drawn over them, and
    a caption with the scores under the image."""
    import cv2

    out = (live_rgb.astype(np.float32) * (1 - alpha) + render.rgb.astype(np.float32) * alpha).round().astype(np.uint8)
    out[cv2.dilate(edges.astype(np.uint8), np.ones((2, 2), np.uint8)) > 0] = EDGE_COLOUR
    width = out.shape[1]
    scale = max(0.3, width / 1280)
    line_h = max(10, round(CAPTION_H * width / 640))
    said = [f"{k} {v:.1f}" if k.endswith("_px") else f"{k} {v:.3f}" for k, v in scores.items()]
    lines = _wrap([*title.split(" "), "|", *said], width - 8, scale)
    caption = np.zeros((line_h * len(lines) + 4, width, 3), np.uint8)
    for i, line in enumerate(lines):
        cv2.putText(caption, line, (4, line_h * (i + 1) - 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                    cv2.LINE_AA)  # fmt: skip
    return np.concatenate([out, caption], axis=0)


# ----- the command -------------------------------------------------------------------------------------------------
@dataclass
class CameraAlignConfig:
    # the twin camera the mount should match: front or wrist
    twin_camera: str = "wrist"
    # the live camera, any LeRobot camera config (--camera.type=opencv --camera.index_or_path=0 --camera.width=640
    # --camera.height=480 --camera.fps=30); null: the robot's camera named --robot_camera
    camera: CameraConfig | None = None
    # a robot whose present joint positions pose the twin (--robot.type=so101_follower --robot.port=... --robot.id=...,
    # or so101_twin); null: the twin stays at its rest pose
    robot: RobotConfig | None = None
    # the robot's camera that gives the live frame when --camera is not given; null: the --twin_camera name
    robot_camera: str | None = None
    # print the twin's camera poses (the table in docs/real-so101.md) and stop, with no camera or robot
    poses_only: bool = False
    # where the blended frames go: a .png or .jpg (rewritten with the latest frame, so an image viewer can follow it)
    # or a .mp4 (every frame); null: no file
    output: Path | None = Path("outputs/camera_align/align.png")
    # frames to show; 0: until Ctrl-C
    frames: int = 0
    # the render's share of the blend: 0 shows only the live frame (and the render's edges), 1 only the render
    alpha: float = 0.4
    # how near a live edge a render edge must be to count as matched, as a share of the image's larger side
    # (0.015: 10 pixels at 640x480, about 1.4 degrees of the wrist camera's view)
    edge_tolerance: float = 0.015
    # show the blended frames in LeRobot's viewer, as lerobot-record's --display_data does (rerun: pip install
    # rerun-sdk); null: when this machine has a display and rerun is installed
    display_data: bool | None = None
    # LeRobot's viewer: rerun or foxglove
    display_mode: str = "rerun"
    # remote viewer address (lerobot-record's --display_ip / --display_port)
    display_ip: str | None = None
    display_port: int | None = None

    def __post_init__(self) -> None:
        if self.twin_camera not in CAMERA_NAMES:
            raise ValueError(f"--twin_camera={self.twin_camera!r}: the twin's cameras are {list(CAMERA_NAMES)}")
        if self.frames < 0:
            raise ValueError(f"--frames must be >= 0 (0: until Ctrl-C), got {self.frames}")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"--alpha must be in [0, 1], got {self.alpha}")
        if not 0 < self.edge_tolerance < 1:
            raise ValueError(f"--edge_tolerance must be in (0, 1), got {self.edge_tolerance}")
        if self.output is not None and self.output.suffix.lower() not in (".png", ".jpg", ".jpeg", ".mp4"):
            raise ValueError(f"--output={self.output}: write a .png, .jpg or .mp4")
        if not self.poses_only and self.camera is None and self.robot is None:
            raise ValueError(
                "give the live camera (--camera.type=opencv --camera.index_or_path=0 ...) or a robot with it "
                "(--robot.type=so101_follower ... --robot.cameras=...), or pass --poses_only=true"
            )


class LiveSource:
    """Where the live frame and the joint positions come from: a camera, a robot, or both."""

    def __init__(self, cfg: CameraAlignConfig):
        self.camera = self.robot = None
        self.robot_camera = cfg.robot_camera or cfg.twin_camera
        if cfg.robot is not None:
            from lerobot.robots import make_robot_from_config

            self.robot = make_robot_from_config(cfg.robot)
        if cfg.camera is not None:
            from lerobot.cameras.utils import make_cameras_from_configs

            self.camera = make_cameras_from_configs({"live": cfg.camera})["live"]

    def connect(self) -> None:
        if self.robot is not None:
            self.robot.connect()
            if self.camera is None and self.robot_camera not in self.robot.observation_features:
                cams = [k for k, v in self.robot.observation_features.items() if isinstance(v, tuple)]
                raise ValueError(
                    f"the robot has no camera {self.robot_camera!r} (its cameras: {cams}); pass --robot_camera=NAME "
                    "or --camera"
                )
        if self.camera is not None:
            self.camera.connect()

    def read(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(live RGB, joint positions in follower units or None, live class mask or None)."""
        joints = seg = rgb = None
        if self.robot is not None:
            obs = self.robot.get_observation()
            joints = np.array([obs[k] for k in MOTOR_KEYS], dtype=np.float64)
            if self.camera is None:
                rgb = np.asarray(obs[self.robot_camera])
                code = obs.get(f"{self.robot_camera}_segmentation")
                seg = None if code is None else segmentation_from_code(np.asarray(code)[..., 0])
        if self.camera is not None:
            rgb = np.asarray(self.camera.read())
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"the live frame is not an RGB image: shape {rgb.shape}")
        return rgb.astype(np.uint8), joints, seg

    def disconnect(self) -> None:
        for device in (self.camera, self.robot):
            if device is not None and device.is_connected:
                device.disconnect()


class FrameWriter:
    """The blended frames to an image (rewritten each frame, atomically) or to an MP4 (streamed)."""

    def __init__(self, path: Path | None, fps: int = 10):
        self.path, self.fps, self._container, self._stream = path, fps, None, None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, frame: np.ndarray) -> None:
        if self.path is None:
            return
        if self.path.suffix.lower() != ".mp4":
            from PIL import Image

            # rewritten every frame: a viewer never sees half a PNG
            write_with(self.path, Image.fromarray(frame).save)
            return
        import av

        frame = np.ascontiguousarray(frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2])
        if self._container is None:
            self._container = av.open(str(self.path), mode="w")
            self._stream = self._container.add_stream("libx264", rate=self.fps)
            self._stream.height, self._stream.width = frame.shape[:2]
            self._stream.pix_fmt = "yuv420p"
        self._container.mux(self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))

    def close(self) -> None:
        if self._container is not None:
            self._container.mux(self._stream.encode())
            self._container.close()
            self._container = None


def _has_display() -> bool:
    return sys.platform in ("darwin", "win32") or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _viewer_wanted(cfg: CameraAlignConfig) -> bool:
    if cfg.display_data is not None:
        return cfg.display_data
    import importlib.util

    sdk = "rerun" if cfg.display_mode == "rerun" else "foxglove"
    wanted = _has_display() and importlib.util.find_spec(sdk) is not None
    if not wanted:
        logger.info("no display or no %s here: the blended frames go to --output=%s only", sdk, cfg.output)
    return wanted


def run_alignment(cfg: CameraAlignConfig, source: LiveSource) -> dict:
    """Blend, score and write frames from a connected `source` until --frames or Ctrl-C; the last frame's scores."""
    viewer = _viewer_wanted(cfg)
    if viewer:
        from lerobot.utils.visualization_utils import init_visualization

        init_visualization(cfg.display_mode, session_name="so101_camera_align", ip=cfg.display_ip,
                           port=cfg.display_port)  # fmt: skip
    stop = []
    previous = signal.signal(signal.SIGINT, lambda *_: stop.append(True))  # finish the frame, then the file
    writer = FrameWriter(cfg.output)
    reference = None
    history = []
    try:
        while not stop and (cfg.frames == 0 or len(history) < cfg.frames):
            started = time.perf_counter()
            rgb, joints, seg = source.read()
            if reference is None:
                reference = TwinReference(cfg.twin_camera, rgb.shape[:2])
            render = reference.render(joints)
            scores, edges = alignment_scores(render, rgb, seg, cfg.edge_tolerance)
            posed = "at the robot's joints" if joints is not None else "at rest"
            title = f"twin {cfg.twin_camera} camera {posed}, its edges green"
            frame = blend(rgb, render, edges, scores, cfg.alpha, title)
            writer.write(frame)
            if viewer:
                from lerobot.utils.visualization_utils import log_visualization_data

                log_visualization_data(cfg.display_mode, observation={f"align_{cfg.twin_camera}": frame})
            history.append(scores)
            ms = (time.perf_counter() - started) * 1000
            print(f"frame {len(history)}: " + ", ".join(f"{k}={v:.3f}" for k, v in scores.items()) + f" ({ms:.0f} ms)")
    finally:
        signal.signal(signal.SIGINT, previous)
        writer.close()
        if reference is not None:
            reference.close()
        if viewer:
            from lerobot.utils.visualization_utils import shutdown_visualization

            shutdown_visualization(cfg.display_mode)
    if not history:
        raise RuntimeError("no frame was read")
    return {"frames": len(history), **history[-1], "output": None if cfg.output is None else str(cfg.output)}


@parser.wrap()
def camera_align_cli(cfg: CameraAlignConfig) -> dict | str:
    if cfg.poses_only:
        table = pose_table()
        print(table)
        return table
    source = LiveSource(cfg)
    source.connect()
    try:
        result = run_alignment(cfg, source)
    finally:
        source.disconnect()
    logger.info("last frame: %s", result)
    return result


def main() -> None:
    """so101-camera-align: a live camera frame blended with the twin's render from the same camera."""
    # the camera and robot types LeRobot's own commands register (lerobot-record imports the same modules)
    from lerobot.cameras.opencv import OpenCVCameraConfig  # noqa: F401
    from lerobot.cameras.realsense import RealSenseCameraConfig  # noqa: F401
    from lerobot.cameras.zmq import ZMQCameraConfig  # noqa: F401
    from lerobot.robots import so_follower  # noqa: F401
    from lerobot.utils.utils import init_logging

    prepare_command_line(plugins=True)
    init_logging()
    camera_align_cli()


if __name__ == "__main__":
    main()
