"""The twin's physics, units, rendering and tasks, checked against MuJoCo's own renderer and hand-computed cases."""

import mujoco
import numpy as np
import pytest

from lerobot_env_so101_twin.expert import ReactiveExpert, ScriptedExpert, TopDownIK, rollout_expert
from lerobot_env_so101_twin.simulation import REST_POSE, TwinConfig, TwinSimulation
from so101_core import (
    BACKGROUND,
    CUBE,
    MOVING_FINGER,
    STATIC_FINGER,
    TABLE,
    segmentation_from_code,
    segmentation_to_code,
)


@pytest.fixture(scope="module")
def twin():
    t = TwinSimulation(
        TwinConfig(cameras={"front": (96, 128), "wrist": (96, 128)}, depth=True, segmentation=True), seed=3
    )
    yield t
    t.close()


@pytest.fixture(scope="module")
def blind_twin():
    t = TwinSimulation(TwinConfig(cameras={}), seed=0)
    yield t
    t.close()


def test_units_are_the_followers(blind_twin):
    lo, hi = blind_twin.joint_range_rad[5]
    q = np.array([0.5, -1.0, 1.2, 0.3, -2.0, lo + 0.25 * (hi - lo)])
    follower = blind_twin.to_follower_units(q)
    np.testing.assert_allclose(follower[:5], np.degrees(q[:5]))
    assert follower[5] == pytest.approx(25.0)
    np.testing.assert_allclose(blind_twin.to_radians(follower), q)
    # gripper 0 is the closed end of the joint range, 100 the open end
    np.testing.assert_allclose(blind_twin.joint_limits[5], [0.0, 100.0])


def test_reset_is_reproducible_and_starts_at_rest(blind_twin):
    blind_twin.reset(11)
    first = blind_twin.cube_position
    np.testing.assert_allclose(blind_twin.joint_positions(), REST_POSE, atol=1e-9)
    blind_twin.reset(12)
    assert not np.allclose(blind_twin.cube_position, first)
    blind_twin.reset(11)
    np.testing.assert_allclose(blind_twin.cube_position, first)


def test_position_control_tracks_targets(blind_twin):
    blind_twin.reset(0)
    target = REST_POSE + np.array([20.0, 30.0, -20.0, -30.0, 45.0, 30.0])
    for _ in range(45):  # 1.5 s
        blind_twin.apply_action(target)
        blind_twin.step()
    np.testing.assert_allclose(blind_twin.joint_positions(), target, atol=2.0)
    assert blind_twin.steps == 45
    # one control period is an exact number of physics steps
    assert blind_twin.n_substeps * blind_twin.model.opt.timestep == pytest.approx(1 / 30)


def test_out_of_limit_targets_are_clipped_and_reported(blind_twin):
    blind_twin.reset(0)
    report = blind_twin.apply_action(np.array([500.0, 0.0, 0.0, 0.0, 0.0, 150.0]))
    assert set(report.clipped) == {"shoulder_pan.pos", "gripper.pos"}
    assert report.sent[0] == pytest.approx(blind_twin.joint_limits[0, 1])
    assert report.sent[5] == pytest.approx(100.0)
    # like so101_follower's max_relative_target: no target further than 5 units from the present position
    present = blind_twin.joint_positions()
    report = blind_twin.apply_action(present + 40.0, max_relative_target=5.0)
    np.testing.assert_allclose(report.sent, np.minimum(present + 5.0, blind_twin.joint_limits[:, 1]))
    with pytest.raises(ValueError, match="6 joint targets"):
        blind_twin.apply_action(np.zeros(5))
    with pytest.raises(ValueError, match="non-finite"):
        blind_twin.apply_action(np.array([0, 0, np.nan, 0, 0, 0]))


@pytest.mark.parametrize(
    ("config", "match"),
    [
        (TwinConfig(task="StackCubes"), "is not a so101_twin task"),
        (TwinConfig(cameras={"front": (0, 128)}), "positive"),
        (TwinConfig(cameras={"top": (64, 64)}), "unknown camera"),
        (TwinConfig(cameras={}, depth=True), "at least one camera"),
    ],
)
def test_bad_config_is_refused_before_mujoco(config, match):
    with pytest.raises(ValueError, match=match):
        TwinSimulation(config)


def test_blind_twin_refuses_to_render(blind_twin):
    with pytest.raises(RuntimeError, match="no cameras"):
        blind_twin.render()


def _reference_renderer(twin, camera, height, width):
    renderer = mujoco.Renderer(twin.model, height, width)
    renderer.update_scene(twin.data, camera=camera)
    return renderer


def test_depth_matches_mujoco_renderer(twin):
    twin.reset(5)
    frames = twin.render()
    for name, camera in (("front", "front"), ("wrist", "wrist_cam")):
        renderer = _reference_renderer(twin, camera, 96, 128)
        renderer.enable_depth_rendering()
        reference = renderer.render()
        renderer.close()
        near = reference < 2.0  # the table, arm and cube; the far background is float32-limited
        np.testing.assert_allclose(frames[name].depth[near], reference[near], atol=1e-4)


def test_segmentation_matches_mujoco_renderer_through_the_class_map(twin):
    twin.reset(5)
    frames = twin.render()
    renderer = _reference_renderer(twin, "front", 96, 128)
    renderer.enable_segmentation_rendering()
    objects = renderer.render()
    renderer.close()
    is_geom = (objects[..., 1] == mujoco.mjtObj.mjOBJ_GEOM) & (objects[..., 0] >= 0)
    expected = np.where(is_geom, twin.geom_class[np.clip(objects[..., 0], 0, None)], BACKGROUND)
    np.testing.assert_array_equal(frames["front"].segmentation, expected)


def _project(model, data, camera: str, point: np.ndarray, height: int, width: int) -> tuple[int, int]:
    cam = model.camera(camera).id
    rot = data.cam_xmat[cam].reshape(3, 3)
    p = rot.T @ (point - data.cam_xpos[cam])  # camera frame: looks along -z, y up
    f = 0.5 * height / np.tan(np.deg2rad(model.cam_fovy[cam]) / 2)
    u = width / 2 + f * p[0] / -p[2]
    v = height / 2 - f * p[1] / -p[2]
    return int(v), int(u)


def test_known_pixels_have_the_six_class_ids(twin):
    twin.reset(7)
    # hover the gripper 8 cm above the cube, as the expert does before descending
    q = TopDownIK(twin).solve(
        twin.cube_position + [0, 0, 0.08], 0.0, twin.to_radians(np.array([0, -20, 40, 70, 0, 45]))
    )
    twin.data.qpos[twin.model.jnt_qposadr[:6]] = q
    mujoco.mj_forward(twin.model, twin.data)
    frames = twin.render()
    for camera in ("front", "wrist_cam"):
        name = "front" if camera == "front" else "wrist"
        row, col = _project(twin.model, twin.data, camera, twin.cube_position, 96, 128)
        assert 0 <= row < 96 and 0 <= col < 128, f"cube centre outside the {name} image"
        assert frames[name].segmentation[row, col] == CUBE, f"cube centre in the {name} camera"
    # a table point beside the cube, in front of the arm
    row, col = _project(twin.model, twin.data, "front", np.array([0.2, 0.13, 0.0]), 96, 128)
    assert frames["front"].segmentation[row, col] == TABLE
    wrist = frames["wrist"].segmentation
    assert (wrist == STATIC_FINGER).sum() > 50 and (wrist == MOVING_FINGER).sum() > 50
    assert set(np.unique(frames["front"].segmentation)) <= {BACKGROUND, TABLE, CUBE, STATIC_FINGER, MOVING_FINGER}


def test_segmentation_code_roundtrip():
    ids = np.arange(6, dtype=np.uint8).reshape(2, 3)
    code = segmentation_to_code(ids)
    assert code.shape == (2, 3, 1) and code.dtype == np.float32
    np.testing.assert_array_equal(segmentation_from_code(code[..., 0]), ids)
    np.testing.assert_array_equal(segmentation_from_code(code[..., 0] * 1000 + 0.4, unit="mm"), ids)
    with pytest.raises(ValueError, match="outside the class map"):
        segmentation_from_code(np.full((2, 2), 9.0))


def test_success_needs_a_grasp(blind_twin):
    blind_twin.reset(0)
    assert not blind_twin.is_success()
    # a cube teleported into the air is lifted but not grasped
    qadr = blind_twin.model.joint("cube").qposadr[0]
    blind_twin.data.qpos[qadr + 2] = 0.2
    mujoco.mj_forward(blind_twin.model, blind_twin.data)
    assert blind_twin.lift_height() > 0.1
    assert not blind_twin.is_success()
    assert 0.0 <= blind_twin.dense_reward() <= 1.0  # reach term only


@pytest.mark.parametrize("kind", ["reactive", "scripted"])
@pytest.mark.parametrize("task", ["LiftCube", "ReachCube"])
def test_expert_solves_the_task(task, kind):
    twin = TwinSimulation(TwinConfig(task=task, cameras={}), seed=0)
    results = [rollout_expert(twin, seed, kind=kind)[0] for seed in range(4)]
    assert all(results), results
    twin.reset(0)
    expert = ScriptedExpert(twin)
    expert.action()
    assert expert.phase == "approach"


def test_reactive_expert_recovers_from_a_missed_grasp():
    """The cube is moved away while the jaws close: the expert must re-open, come back and still lift it."""
    twin = TwinSimulation(TwinConfig(task="LiftCube", cameras={}), seed=0)
    twin.reset(3)
    expert = ReactiveExpert(twin)
    phases = []
    qadr = twin.model.joint("cube").qposadr[0]
    moved = False
    for _ in range(300):
        twin.apply_action(expert.action())
        twin.step()
        phases.append(expert.phase)
        if expert.phase == "close" and not moved:
            twin.data.qpos[qadr : qadr + 2] += [0.0, 0.05]  # 5 cm sideways: the grasp closes on nothing
            twin.data.qvel[:] = 0.0
            mujoco.mj_forward(twin.model, twin.data)
            moved = True
        if twin.is_success():
            break
    assert moved and "reopen" in phases, sorted(set(phases))
    assert phases.index("reopen") < len(phases) - 1 - phases[::-1].index("approach")  # went back to approach
    assert twin.is_success()


def test_reactive_expert_commands_stay_within_its_step_limits():
    twin = TwinSimulation(TwinConfig(task="LiftCube", cameras={}), seed=0)
    twin.reset(5)
    expert = ReactiveExpert(twin, max_step_deg=2.5, max_gripper_step=12.0)
    for _ in range(120):
        present = twin.joint_positions()
        target = expert.action()
        assert np.abs(target[:5] - present[:5]).max() <= 2.5 + 1e-9
        assert abs(target[5] - present[5]) <= 12.0 + 1e-9
        twin.apply_action(target)
        twin.step()
