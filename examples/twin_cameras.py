"""Draw docs/images/twin_cameras.png: where the twin's cameras sit relative to the arm (at its rest pose, as in the
pose table of docs/real-so101.md), seen from a third camera with each camera's field of view drawn as a frustum,
beside what each camera sees. The poses come from the compiled scene (`camera_align.camera_poses`), so the picture
follows any change to scene.py or the arm's MJCF.

    MUJOCO_GL=egl .venv/bin/python examples/twin_cameras.py
"""

from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np
from lerobot.configs import parser
from PIL import Image, ImageDraw, ImageFont

from lerobot_env_so101_twin.commands.camera_align import HIDDEN_GROUP, CameraPose, camera_poses, pose_arm
from lerobot_env_so101_twin.simulation import REST_POSE, TwinConfig, TwinSimulation
from so101_run_infra.cli import prepare_command_line

COLOURS = {"front": (0.15, 0.45, 1.0, 1.0), "wrist": (1.0, 0.55, 0.0, 1.0)}
FRUSTUM_M = {"front": 0.22, "wrist": 0.12}  # how far each frustum is drawn along the optical axis
# The close-up's arm pose: reaching forward and down, clear of the rest of the arm, the wrist rolled a quarter turn
# so that the camera's side faces the viewer.
REACH_POSE = np.array([0.0, -40.0, 40.0, 40.0, 90.0, 30.0])


@dataclass
class TwinCamerasConfig:
    # the PNG to write
    output_path: Path = Path("docs/images/twin_cameras.png")
    # (height, width) of the third-person view; each camera's own view is drawn at half of it
    height: int = 480
    # its width; 4:3 like the real arm's cameras
    width: int = 640


def _capsule(scene: mujoco.MjvScene, start: np.ndarray, end: np.ndarray, rgba, radius: float = 0.0015) -> None:
    if scene.ngeom >= scene.maxgeom:
        raise RuntimeError("the scene has no room for another geom")
    geom = scene.geoms[scene.ngeom]
    mujoco.mjv_initGeom(geom, mujoco.mjtGeom.mjGEOM_CAPSULE, np.zeros(3), np.zeros(3), np.eye(3).ravel(), rgba)
    mujoco.mjv_connector(geom, mujoco.mjtGeom.mjGEOM_CAPSULE, radius, start, end)
    scene.ngeom += 1


def draw_frustum(
    scene: mujoco.MjvScene, pose: CameraPose, length: float, aspect: float, rgba, radius: float = 0.0015
) -> None:
    """The camera's field of view as lines from its centre to the corners of the image plane `length` m ahead."""
    right = np.cross(pose.world_axis, pose.world_up)
    half_h = length * np.tan(np.radians(pose.fovy_deg) / 2)
    half_w = half_h * aspect
    centre = pose.world_position + length * pose.world_axis
    corners = [
        centre + sx * half_w * right + sy * half_h * pose.world_up for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))
    ]
    for i, corner in enumerate(corners):
        _capsule(scene, pose.world_position, corner, rgba, radius)
        _capsule(scene, corner, corners[(i + 1) % 4], rgba, radius)
    _capsule(scene, pose.world_position, pose.world_position + 0.6 * length * pose.world_axis, rgba, 2 * radius)
    # "up" of the image: a short tick on the top edge
    top = centre + half_h * pose.world_up
    _capsule(scene, top, top + 0.25 * half_h * pose.world_up, rgba, radius)


def _label(draw: ImageDraw.ImageDraw, xy, text: str, colour, font) -> None:
    draw.text(xy, text, fill=colour, font=font, stroke_width=2, stroke_fill="white")


def _third_person(twin: TwinSimulation, poses: dict[str, CameraPose], size, *, lookat, distance: float, azimuth: float,
                  elevation: float, radius: float = 0.0015, length: float | None = None) -> np.ndarray:  # fmt: skip
    """The twin from a free camera, with every twin camera's frustum drawn in."""
    renderer = mujoco.Renderer(twin.model, height=size[0], width=size[1])
    view = mujoco.MjvCamera()
    view.type = mujoco.mjtCamera.mjCAMERA_FREE
    view.lookat[:] = lookat
    view.distance, view.azimuth, view.elevation = distance, azimuth, elevation
    renderer.update_scene(twin.data, camera=view)
    for name, pose in poses.items():
        draw_frustum(renderer.scene, pose, length or FRUSTUM_M[name], 4 / 3, COLOURS[name], radius)
    image = renderer.render().copy()
    renderer.close()
    return image


@parser.wrap()
def twin_cameras(cfg: TwinCamerasConfig) -> Path:
    h, w = cfg.height, cfg.width
    small = (h // 2, w // 2)
    twin = TwinSimulation(TwinConfig(cameras={"front": (h, w), "wrist": small}))  # the offscreen buffer fits the view
    twin.model.geom_group[twin.cube_geom] = HIDDEN_GROUP  # no cube: the picture is about the cameras
    poses = camera_poses(twin)
    own = twin.render()
    overview = _third_person(twin, poses, (h, w), lookat=[0.22, 0.0, 0.1], distance=1.0, azimuth=125.0, elevation=-24.0)
    reach = camera_poses(twin, REACH_POSE)
    pose_arm(twin, twin.data, REACH_POSE)
    wrist = reach["wrist"]
    closeup = _third_person(twin, {"wrist": wrist}, small, lookat=wrist.world_position + 0.03 * wrist.world_axis,
                            distance=0.25, azimuth=90.0, elevation=-10.0, radius=0.0006, length=0.06)  # fmt: skip
    pose_arm(twin, twin.data, REST_POSE)
    twin.close()

    font = ImageFont.load_default(size=15)
    title_h = 28
    canvas = Image.new("RGB", (w + 2 * small[1] + 16, h + title_h), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((6, 6), "The twin's cameras with the arm at rest: where they sit (frustums drawn 22 and 12 cm deep), the "
              "gripper close up, and what each camera sees", fill="black", font=font)  # fmt: skip
    canvas.paste(Image.fromarray(overview), (0, title_h))
    canvas.paste(Image.fromarray(closeup), (w + 8, title_h))
    for row, name in enumerate(("front", "wrist")):
        pose = poses[name]
        rgb = tuple(int(255 * c) for c in COLOURS[name][:3])
        tile = Image.fromarray(own[name].rgb).resize((small[1], small[0]), Image.Resampling.BILINEAR)
        x, y = w + small[1] + 16, title_h + row * small[0]
        canvas.paste(tile, (x, y))
        _label(draw, (x + 6, y + 4), f"{name} camera's view: fovy {pose.fovy_deg:.0f}°", rgb, font)
        _label(draw, (10, title_h + 6 + 20 * row), f"{name} camera", rgb, font)
    _label(draw, (w + 14, title_h + 4), "the gripper, arm reaching: the wrist", (0, 0, 0), font)
    _label(draw, (w + 14, title_h + 22), "camera moves with it", (0, 0, 0), font)
    legend = [
        "Numbers: the table in docs/real-so101.md",
        "(so101-camera-align --poses_only=true).",
        "The thick line is the optical axis, the",
        "short tick marks the image's top edge.",
    ]
    for i, line in enumerate(legend):
        draw.text((w + 14, title_h + small[0] + 14 + 20 * i), line, fill="black", font=font)
    cfg.output_path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(cfg.output_path)
    return cfg.output_path


def main() -> None:
    prepare_command_line()
    twin_cameras()


if __name__ == "__main__":
    main()
