"""so101-camera-align: the twin's camera poses (and the table docs/real-so101.md shows of them), and the live aid's
scores, with the twin standing in for the real camera: a camera moved by a centimetre and two degrees scores
measurably worse than one where the twin's is."""

from __future__ import annotations

import sys
from pathlib import Path

import av
import mujoco
import numpy as np
import pytest
from PIL import Image
from playback_camera import PlaybackCamera  # noqa: F401  (registers --camera.type=so101_playback)

from lerobot_env_so101_twin.commands import camera_align
from lerobot_env_so101_twin.commands.camera_align import (
    CameraAlignConfig,
    LiveSource,
    camera_poses,
    pose_table,
    run_alignment,
)
from lerobot_env_so101_twin.config_robot import SO101TwinConfig
from lerobot_env_so101_twin.scene import _FRONT_EYE, _FRONT_TARGET
from lerobot_env_so101_twin.simulation import REST_POSE, TwinConfig, TwinSimulation

ROOT = Path(__file__).resolve().parents[1]
SIZE = (96, 128)  # (height, width)


def move_camera(model: mujoco.MjModel, data: mujoco.MjData, camera: str, shift_m: float, turn_deg: float) -> None:
    """Remount a twin camera: `shift_m` along its parent's x and y, `turn_deg` about its own x axis (tilt)."""
    cam = model.camera(camera).id
    model.cam_pos[cam] += [shift_m, shift_m, 0.0]
    turn = np.zeros(4)
    mujoco.mju_axisAngle2Quat(turn, np.array([1.0, 0.0, 0.0]), np.radians(turn_deg))
    quat = np.zeros(4)
    mujoco.mju_mulQuat(quat, model.cam_quat[cam].copy(), turn)
    model.cam_quat[cam] = quat
    mujoco.mj_forward(model, data)


def test_the_poses_are_the_scene_and_the_docs_show_their_table():
    poses = camera_poses()
    front, wrist = poses["front"], poses["wrist"]
    assert front.parent == "world" and front.fovy_deg == 55.0
    np.testing.assert_allclose(front.world_position, _FRONT_EYE)
    looking = (_FRONT_TARGET - _FRONT_EYE) / np.linalg.norm(_FRONT_TARGET - _FRONT_EYE)
    np.testing.assert_allclose(front.world_axis, looking, atol=1e-9)
    assert wrist.parent == "gripper" and wrist.fovy_deg == 75.0
    np.testing.assert_allclose(wrist.position, [0.0, 0.04, -0.04])  # the MJCF's wrist_cam, in the gripper frame
    assert front.fovx_deg((480, 640)) == pytest.approx(69.5, abs=0.05)
    # the front camera's look-at point projects to the image centre
    assert front.project(_FRONT_TARGET, (480, 640)) == pytest.approx((320.0, 240.0))
    table = pose_table(poses)
    assert table in (ROOT / "docs" / "real-so101.md").read_text(), (
        "docs/real-so101.md no longer shows the scene's camera poses: paste `so101-camera-align --poses_only=true`\n"
        + table
    )


@pytest.mark.parametrize("camera", ["wrist", "front"])
def test_a_moved_camera_scores_worse_than_the_twins_own(camera):
    """The twin robot is the live source (with its segmentation): its own camera matches the reference render
    exactly; remounted 1 cm and 2 degrees off, every score moves the wrong way by a clear margin."""
    robot = SO101TwinConfig(id=f"align_{camera}", cameras=[camera], observation_height=SIZE[0],
                            observation_width=SIZE[1], segmentation=True)  # fmt: skip
    cfg = CameraAlignConfig(twin_camera=camera, robot=robot, output=None, frames=1, display_data=False)
    source = LiveSource(cfg)
    source.connect()
    try:
        aligned = run_alignment(cfg, source)
        twin = source.robot.twin
        move_camera(twin.model, twin.data, "front" if camera == "front" else "wrist_cam", 0.01, 2.0)
        moved = run_alignment(cfg, source)
    finally:
        source.disconnect()
    # measured at 96x128: front 0.987 / 0.74 px / 1.0 aligned, 0.366 / 1.90 px / 0.509 moved; wrist 0.952 / 0.48 px /
    # 1.0 aligned, 0.193 / 5.16 px / 0.450 moved
    assert aligned["mask_miou"] == pytest.approx(1.0)
    assert aligned["edge_match"] > 0.9 and aligned["edge_distance_px"] < 1.0
    assert moved["mask_miou"] < 0.6
    assert moved["edge_match"] < aligned["edge_match"] - 0.3
    assert moved["edge_distance_px"] > aligned["edge_distance_px"] + 1.0


def _run_command(monkeypatch, capsys, *flags: str) -> dict:
    monkeypatch.setattr(sys, "argv", ["so101-camera-align", *flags])
    camera_align.prepare_command_line(plugins=True)
    result = camera_align.camera_align_cli()
    printed = capsys.readouterr().out
    assert f"frame {result['frames']}: edge_match=" in printed
    return result


def test_the_command_scores_a_lerobot_camera_against_the_twin_at_rest(tmp_path, monkeypatch, capsys):
    """--camera takes any LeRobot camera config; without --robot the twin is at rest. The "live" frames are the twin's
    wrist camera at rest, as mounted and remounted."""
    twin = TwinSimulation(TwinConfig(cameras={"wrist": SIZE}))
    try:
        twin.model.geom_group[twin.cube_geom] = camera_align.HIDDEN_GROUP
        camera_align.pose_arm(twin, twin.data, REST_POSE)
        as_mounted = twin.render()["wrist"].rgb
        move_camera(twin.model, twin.data, "wrist_cam", 0.01, 2.0)
        remounted = twin.render()["wrist"].rgb
    finally:
        twin.close()
    results = {}
    for name, frame in (("as_mounted", as_mounted), ("remounted", remounted)):
        np.save(tmp_path / f"{name}.npy", frame[None])
        output = tmp_path / f"{name}.png"
        results[name] = _run_command(
            monkeypatch, capsys, "--twin_camera=wrist", "--camera.type=so101_playback",
            f"--camera.frames={tmp_path / f'{name}.npy'}", "--frames=2", f"--output={output}",
        )  # fmt: skip
        written = np.asarray(Image.open(output))
        assert written.shape[1] == SIZE[1] and written.shape[0] > SIZE[0]  # the frame and its caption below
        assert results[name]["frames"] == 2 and "mask_miou" not in results[name]
    # measured: 0.940 / 0.52 px as mounted, 0.157 / 5.57 px remounted
    assert results["as_mounted"]["edge_match"] > 0.9 and results["as_mounted"]["edge_distance_px"] < 1.0
    assert results["remounted"]["edge_match"] < 0.6
    assert results["remounted"]["edge_distance_px"] > 2.0


def test_the_command_with_the_twin_robot_writes_a_video(tmp_path, monkeypatch, capsys):
    output = tmp_path / "align.mp4"
    result = _run_command(
        monkeypatch, capsys, "--twin_camera=front", "--robot.type=so101_twin", "--robot.id=align_cmd",
        "--robot.cameras=[front]", f"--robot.observation_height={SIZE[0]}", f"--robot.observation_width={SIZE[1]}",
        "--robot.segmentation=true", "--frames=3", f"--output={output}",
    )  # fmt: skip
    assert result["mask_miou"] == pytest.approx(1.0) and result["edge_match"] > 0.95
    with av.open(str(output)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 3


def test_the_poses_only_command_prints_the_table(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["so101-camera-align", "--poses_only=true"])
    assert camera_align.camera_align_cli() == pose_table()
    assert pose_table() in capsys.readouterr().out


def test_bad_flags_are_refused_before_any_device_opens():
    with pytest.raises(ValueError, match="--twin_camera='top'"):
        CameraAlignConfig(twin_camera="top", poses_only=True)
    with pytest.raises(ValueError, match="give the live camera"):
        CameraAlignConfig()
    with pytest.raises(ValueError, match=r"--output=a\.gif"):
        CameraAlignConfig(poses_only=True, output=Path("a.gif"))
