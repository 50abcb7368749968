"""The arm the twin plays (arm.py, arm_physics.py): each factor against a reference computed another way, the
families' draws, the refusals, and the ideal arm unchanged."""

from __future__ import annotations

import json
import time

import mujoco
import numpy as np
import pytest

from lerobot_env_so101_twin.arm import (
    ARM_LEVELS,
    ArmParams,
    ArmRanges,
    arm_rng,
    check_arm_settings,
    draw_arm,
)
from lerobot_env_so101_twin.arm_physics import camera_effects, motion_blur, play
from lerobot_env_so101_twin.config_env import SO101TwinEnvConfig
from lerobot_env_so101_twin.config_robot import SO101TwinConfig
from lerobot_env_so101_twin.env import SO101TwinEnv
from lerobot_env_so101_twin.expert import rollout_expert
from lerobot_env_so101_twin.simulation import REST_POSE, TwinConfig, TwinSimulation

PERIOD_MS = 1000.0 / 30


def _twin(cameras=None, **arm) -> TwinSimulation:
    return TwinSimulation(TwinConfig(cameras=cameras or {}, **arm), seed=0)


def _settle(twin: TwinSimulation, target: np.ndarray, periods: int) -> list[np.ndarray]:
    out = []
    for _ in range(periods):
        twin.apply_action(target)
        twin.step()
        out.append(twin.joint_positions())
    return out


# ----- the ideal arm -------------------------------------------------------------------------------------------


def test_the_ideal_arm_given_explicitly_is_the_default_twin_bit_for_bit():
    """`ArmParams()` is the twin it always was: same trajectories, same pixels, the MJCF's values untouched."""
    runs = []
    for kwargs in ({}, {"arm_params": ArmParams()}):
        env = SO101TwinEnv(cameras=("wrist",), camera_height=48, camera_width=64, segmentation=True, **kwargs)
        obs, _ = env.reset(seed=1000)
        rng = np.random.default_rng(0)
        trace = []
        for _ in range(40):
            obs, reward, *_ = env.step(obs["agent_pos"] + rng.normal(0.0, 5.0, 6).astype(np.float32))
            trace.append((obs["agent_pos"].copy(), obs["pixels"]["wrist"].copy(), reward))
        runs.append(trace)
        assert env.twin.ideal_arm and env.twin._path is None
        assert env.twin.model.actuator_gainprm[0, 0] == 998.22
    for (p1, i1, r1), (p2, i2, r2) in zip(*runs, strict=True):
        assert np.array_equal(p1, p2) and np.array_equal(i1, i2) and r1 == r2


def test_applying_the_ideal_arm_writes_the_mjcf_values_back_exactly():
    twin = _twin(arm_params=ArmParams(gain=[0.5], cube_size=1.1, cube_mass=2.0))
    model = twin.model
    before = {k: getattr(model, k).copy() for k in ("actuator_gainprm", "actuator_biasprm", "geom_size", "body_mass")}
    assert not np.array_equal(model.actuator_gainprm[:6, 0], np.full(6, 998.22))
    twin._arm_model.apply(ArmParams())
    fresh = _twin()
    for key in before:
        assert np.array_equal(getattr(model, key), getattr(fresh.model, key)), key


# ----- each factor ---------------------------------------------------------------------------------------------


def test_latency_delays_the_arms_answer_by_exactly_that_time():
    """With a latency of two control periods, the joints answer a step in the target two periods later, and
    otherwise move as the ideal arm did (the arm settled first, so the wait does not change the state)."""
    target_step = REST_POSE + np.array([20.0, 10.0, -10.0, 5.0, 15.0, 10.0])
    traces = []
    for latency in (0.0, 2 * PERIOD_MS):
        twin = _twin(arm_params=ArmParams(latency_ms=latency))
        _settle(twin, REST_POSE, 60)
        traces.append(_settle(twin, target_step, 30))
    ideal, late = np.array(traces[0]), np.array(traces[1])
    moved = np.abs(ideal[0] - late[0]).max()
    assert moved > 0.5  # one period in, the ideal arm has moved and the late one has not
    np.testing.assert_allclose(late[2:], ideal[:-2], atol=1e-4)


def test_latency_jitter_keeps_targets_in_order_and_near_the_mean():
    twin = _twin(arm_params=ArmParams(latency_ms=50.0, latency_jitter_ms=20.0))
    path = twin._path
    timestep_ms = twin.model.opt.timestep * 1000
    for k in range(200):
        path.send(np.full(6, float(k)), now=k * 17)
    dues = [due for due, _ in path.pending]
    assert dues == sorted(dues)
    delays = np.array(dues) - np.arange(200) * 17
    assert abs(delays.mean() * timestep_ms - 50.0) < 8.0


def test_the_loop_rate_holds_each_target_for_its_periods():
    """At 10 Hz the env's step is three physics periods of one held target: the same as the twin stepped by hand."""
    env = SO101TwinEnv(cameras=(), arm_params=ArmParams(control_fps=10))
    reference = _twin()
    obs, _ = env.reset(seed=3)
    reference.reset(3)
    action = obs["agent_pos"] + np.array([10.0, 5.0, 0.0, 0.0, 0.0, 20.0], dtype=np.float32)
    for _ in range(4):
        obs, *_ = env.step(action)
        reference.apply_action(np.asarray(action, dtype=np.float64))
        for _ in range(3):
            reference.step()
    assert env.periods_per_action == 3 and env.twin.steps == 12
    np.testing.assert_array_equal(obs["agent_pos"], reference.joint_positions().astype(np.float32))
    steps, truncated = 4, False
    while not truncated:
        *_, truncated, _ = env.step(action)
        steps += 1
    assert steps == 100  # 10 s of LiftCube at 10 Hz


def test_calibration_offsets_the_reading_and_the_command_by_the_same_angle():
    """The follower reads true + offset and a command c puts the joints where the ideal arm's c - offset does."""
    offset = np.array([2.0, -1.5, 1.0, -2.5, 3.0, 4.0])
    command = REST_POSE + np.array([15.0, 20.0, -15.0, 10.0, 5.0, 30.0])
    calibrated, ideal = _twin(arm_params=ArmParams(calibration_deg=offset.tolist())), _twin()
    a = _settle(calibrated, command, 20)
    b = _settle(ideal, command - offset, 20)
    np.testing.assert_array_equal(np.array(a), np.array(b))
    np.testing.assert_allclose(calibrated.follower_positions(), calibrated.joint_positions() + offset, atol=1e-12)
    assert calibrated.observation_state()["shoulder_pan.pos"] == pytest.approx(a[-1][0] + 2.0)


def test_a_weaker_servo_sags_under_gravity_in_proportion():
    """A position servo holds gravity's torque with an error of torque / kp: half the gain, twice the error
    (shoulder_lift, arm stretched out, settled)."""
    pose = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 20.0])
    errors = {}
    for gain in (1.0, 0.5):
        twin = _twin(arm_params=ArmParams(gain=[gain]))
        _settle(twin, pose, 90)
        errors[gain] = twin.joint_positions()[1] - pose[1]
        # the hand computation: kp * gain * error equals the actuator's force at rest
        kp = 998.22 * gain
        force = twin.data.actuator_force[twin._actuators[1]]
        assert force == pytest.approx(kp * np.deg2rad(-errors[gain]), rel=0.02, abs=1e-3)
    assert abs(errors[1.0]) > 0.02
    assert errors[0.5] / errors[1.0] == pytest.approx(2.0, rel=0.05)


def test_the_force_limit_caps_what_each_servo_pushes():
    twin = _twin(arm_params=ArmParams(force=[0.3], gripper_force=0.5))
    limits = 3.35 * np.array([0.3] * 5 + [0.5])
    seen = np.zeros(6)
    for _ in range(15):
        twin.apply_action(REST_POSE + np.array([60.0, 60.0, -60.0, 60.0, 60.0, 60.0]))
        twin.step()
        seen = np.maximum(seen, np.abs(twin.data.actuator_force[twin._actuators]))
    assert np.all(seen <= limits + 1e-9)
    assert np.all(seen > 0.99 * limits)  # a 60-degree step saturates every one


def test_backlash_is_a_play_of_its_width():
    """Hand-computed: a play of 0.5 starting at 0 follows a command of 1 to 0.75, holds on the way back to 0.9, and
    follows again from 0.25 down."""
    width = np.array([0.5])
    held = play(np.array([0.0]), np.array([1.0]), width)
    assert held == pytest.approx([0.75])
    held = play(held, np.array([0.9]), width)
    assert held == pytest.approx([0.75])
    held = play(held, np.array([0.2]), width)
    assert held == pytest.approx([0.45])


def test_backlash_in_the_twin_leaves_the_joint_short_on_the_side_it_came_from():
    play_deg = 1.0
    for direction in (+1.0, -1.0):
        twin = _twin(arm_params=ArmParams(backlash_deg=[play_deg], gain=[1.0]))
        ideal = _twin()
        command = REST_POSE + direction * np.array([10.0, 0.0, 0.0, 0.0, 0.0, 0.0])
        _settle(twin, command, 60)
        _settle(ideal, command, 60)
        shortfall = (ideal.joint_positions()[0] - twin.joint_positions()[0]) * direction
        assert shortfall == pytest.approx(play_deg / 2, abs=0.02)


def test_the_cube_takes_its_mass_friction_and_size_and_rests_on_the_table():
    twin = _twin(arm_params=ArmParams(cube_mass=2.0, cube_friction=0.5, cube_size=1.1))
    body = twin.model.geom_bodyid[twin.cube_geom]
    assert twin.model.body_mass[body] == pytest.approx(0.06)
    assert twin.model.geom_friction[twin.cube_geom][0] == pytest.approx(0.75)
    assert twin.model.geom_size[twin.cube_geom] == pytest.approx([0.0165] * 3)
    _settle(twin, REST_POSE, 15)
    assert abs(twin.lift_height()) < 1e-3  # measured from the bigger cube's own half size


def test_a_heavy_cube_stays_stable_through_the_experts_grasps():
    """Masses change the constraint solver's compile-time weights: without them recomputed, heavy-cube arms of the
    `unseen` family blew up (NaN in the cube's velocity) while the expert held the cube."""
    twin = _twin(arm_params=ArmParams(cube_mass=1.9, cube_size=0.93, gripper_force=0.63))
    for seed in range(4):
        rollout_expert(twin, seed, max_steps=240, noise_std=1.0)
        warnings = twin.data.warning
        assert warnings[mujoco.mjtWarning.mjWARN_BADQACC].number == 0
        assert warnings[mujoco.mjtWarning.mjWARN_BADQVEL].number == 0
        assert warnings[mujoco.mjtWarning.mjWARN_BADQPOS].number == 0


def test_camera_effects_touch_the_rgb_and_never_the_ground_truth():
    cams = {"wrist": (60, 80)}
    base = TwinSimulation(TwinConfig(cameras=cams, depth=True, segmentation=True), seed=4)
    arm = ArmParams(camera_exposure_ms=20.0, camera_gain=1.3, camera_noise=4.0, camera_jpeg_quality=40)
    shaken = TwinSimulation(TwinConfig(cameras=cams, depth=True, segmentation=True, arm_params=arm), seed=4)
    for twin in (base, shaken):
        _settle(twin, REST_POSE + np.array([30.0, 20.0, 0.0, 0.0, 0.0, 0.0]), 3)
    a, b = base.render()["wrist"], shaken.render()["wrist"]
    assert np.array_equal(a.depth, b.depth) and np.array_equal(a.segmentation, b.segmentation)
    assert np.abs(a.rgb.astype(int) - b.rgb.astype(int)).mean() > 5
    assert b.rgb.dtype == np.uint8 and b.rgb.shape == a.rgb.shape


def test_motion_blur_smears_a_point_along_its_shift():
    """Hand-computed: one white pixel smeared 4 px to the right is 5 pixels of a fifth in a row."""
    image = np.zeros((21, 21, 3), dtype=np.uint8)
    image[10, 10] = 250
    blurred = motion_blur(image, np.array([4.0, 0.0]))
    np.testing.assert_array_equal(blurred[10, 8:13, 0], [50] * 5)
    assert blurred[9].sum() == 0 and blurred[11].sum() == 0


def test_gain_noise_and_jpeg_are_what_they_say():
    rng = np.random.default_rng(0)
    flat = np.full((64, 64, 3), 100, dtype=np.uint8)
    assert camera_effects(flat, ArmParams(camera_gain=1.5), np.zeros(2), rng).mean() == pytest.approx(150.0)
    noisy = camera_effects(flat, ArmParams(camera_noise=5.0), np.zeros(2), rng).astype(float)
    assert noisy.std() == pytest.approx(5.0, rel=0.1)
    ramp = np.tile(np.arange(64, dtype=np.uint8)[None, :, None] * 4, (64, 1, 3))
    lossy = camera_effects(ramp, ArmParams(camera_jpeg_quality=10), np.zeros(2), rng).astype(int)
    fine = camera_effects(ramp, ArmParams(camera_jpeg_quality=98), np.zeros(2), rng).astype(int)
    assert np.abs(lossy - ramp).mean() > np.abs(fine - ramp).mean()


# ----- the families --------------------------------------------------------------------------------------------


def _values(arm: ArmParams, name: str) -> np.ndarray:
    return np.atleast_1d(np.asarray(arm.as_dict()[name], dtype=float))


def test_varied_draws_inside_its_ranges_and_unseen_only_outside_them():
    ranges = ArmRanges()
    for seed in range(200):
        varied, unseen = draw_arm("varied", arm_rng(seed)), draw_arm("unseen", arm_rng(seed))
        for name in ArmRanges.CONTINUOUS:
            lo, hi = getattr(ranges, name)
            ulo, uhi = getattr(ranges, f"unseen_{name}")
            v, u = _values(varied, name), _values(unseen, name)
            slack = 0.5 if name == "camera_jpeg_quality" else 0.0  # drawn, then rounded to an integer quality
            assert np.all((v >= lo - slack) & (v <= hi + slack)), (name, v)
            assert np.all((u >= ulo - slack) & (u <= uhi + slack)), (name, u)
            assert np.all((u <= lo + slack) | (u >= hi - slack)), (name, u)
        assert varied.control_fps in ranges.control_fps and unseen.control_fps in ranges.unseen_control_fps


def test_an_arm_is_drawn_per_episode_and_held_by_the_arm_seed():
    twin = _twin(arm="varied")
    arms = []
    for seed in (10, 11, 10):
        twin.reset(seed)
        arms.append(twin.arm_record())
    assert arms[0] == arms[2] and arms[0] != arms[1]
    assert arms[0]["params"] == draw_arm("varied", arm_rng(10)).as_dict()
    held = _twin(arm="unseen", arm_seed=7)
    drawn = []
    for seed in (1, 2, 3):
        held.reset(seed)
        drawn.append(held.arm_record()["params"])
    assert drawn[0] == drawn[1] == drawn[2] == draw_arm("unseen", arm_rng(7)).as_dict()


def test_the_arm_never_moves_the_cube_poses():
    """One --seed evaluates one set of poses under any arm, as under any look (the size sets only the height)."""
    plain, varied = _twin(), _twin(arm="varied")
    for seed in (1000, 1001, 1002):
        plain.reset(seed)
        varied.reset(seed)
        np.testing.assert_array_equal(plain.cube_position[:2], varied.cube_position[:2])
        np.testing.assert_array_equal(plain.cube_quat, varied.cube_quat)


def test_the_expert_commands_through_the_followers_calibration():
    """A person watches the arm, not its readings: the expert lifts the cube under a 3-degree offset as it does
    without one."""
    ideal, offset = _twin(), _twin(arm_params=ArmParams(calibration_deg=[3.0, -3.0, 3.0, -3.0, 3.0, 3.0]))
    for seed in (1, 2):
        assert rollout_expert(ideal, seed) == rollout_expert(offset, seed)


# ----- refusals ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"arm_params": ArmParams(latency_ms=-5.0)}, ["--env.arm_params.latency_ms=-5.0", "allowed 0.0 to 1000.0"]),
        ({"arm_params": ArmParams(control_fps=60)}, ["--env.arm_params.control_fps=60", "allowed [30, 15, 10"]),
        ({"arm_params": ArmParams(control_fps=7)}, ["--env.arm_params.control_fps=7", "divide"]),
        ({"arm_params": ArmParams(gain=[1.0, 2.0])}, ["--env.arm_params.gain", "one value or 6"]),
        ({"arm_params": ArmParams(gain=[10.0])}, ["--env.arm_params.gain=[10.0]", "allowed 0.05 to 3.0"]),
        ({"arm_params": ArmParams(cube_size=2.0)}, ["--env.arm_params.cube_size=2.0", "allowed 0.7 to 1.3"]),
        ({"arm_params": ArmParams(camera_jpeg_quality=0)}, ["--env.arm_params.camera_jpeg_quality=0", "1-100"]),
        ({"arm": "broken"}, ["--env.arm='broken'", "none", "varied", "unseen"]),
        ({"arm_seed": 3}, ["--env.arm_seed=3", "--env.arm=varied"]),
        ({"arm": "varied", "arm_params": ArmParams(latency_ms=30.0)}, ["--env.arm_params", "--env.arm=none"]),
        (
            {"arm": "unseen", "arm_ranges": ArmRanges(latency_ms=(0.0, 90.0))},
            ["--env.arm_ranges.unseen_latency_ms=(0.0, 80.0)", "contain"],
        ),
        (
            {"arm": "varied", "arm_ranges": ArmRanges(unseen_control_fps=(15,))},
            ["--env.arm_ranges.unseen_control_fps", "shares [15]"],
        ),
    ],
)
def test_bad_arm_settings_are_refused_naming_the_flag(kwargs, words):
    with pytest.raises(ValueError) as err:
        SO101TwinEnvConfig(**kwargs)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_the_robot_refuses_with_its_own_flag_names():
    with pytest.raises(ValueError, match=r"--robot\.arm_params\.latency_ms=-1\.0"):
        SO101TwinConfig(arm_params=ArmParams(latency_ms=-1.0))


def test_every_level_is_accepted_and_none_needs_no_ranges():
    for level in ARM_LEVELS:
        check_arm_settings(level, ArmParams(), None)
    # a physics rate the default ranges' rates do not divide is fine while nothing is drawn
    SO101TwinEnvConfig(fps=20)
    with pytest.raises(ValueError, match=r"arm_ranges\.control_fps"):
        SO101TwinEnvConfig(fps=20, arm="varied")


# ----- keeping time --------------------------------------------------------------------------------------------


def test_the_robot_on_the_wall_clock_moves_on_while_the_loop_thinks():
    from lerobot_env_so101_twin.robot import SO101Twin

    robot = SO101Twin(SO101TwinConfig(id="wall", cameras=[], wall_clock=True, reset_on_new_episode=False))
    robot.connect()
    try:
        obs = robot.get_observation()
        assert robot.twin.physics_time == 0.0
        time.sleep(0.2)
        robot.send_action({k: v + (20.0 if k == "shoulder_pan.pos" else 0.0) for k, v in obs.items()})
        thought = robot.twin.physics_time
        assert 0.19 <= thought < 0.5  # the thinking time passed in the physics, with the old target held
        time.sleep(0.2)
        after = robot.get_observation()
        assert robot.twin.physics_time >= thought + 0.19
        assert after["shoulder_pan.pos"] - obs["shoulder_pan.pos"] > 5.0  # the new target moved it meanwhile
    finally:
        robot.disconnect()


def test_the_robot_in_simulated_time_is_unchanged():
    from lerobot_env_so101_twin.robot import SO101Twin

    robot = SO101Twin(SO101TwinConfig(id="sim", cameras=[], reset_on_new_episode=False))
    robot.connect()
    try:
        obs = robot.get_observation()
        time.sleep(0.05)
        robot.send_action(obs)
        assert robot.twin.steps == 1 and robot.twin.physics_time == pytest.approx(1 / 30)
    finally:
        robot.disconnect()


def test_an_episode_logs_its_arm_for_lerobot_evals_log(caplog):
    env = SO101TwinEnv(cameras=(), arm="unseen", arm_seed=5)
    with caplog.at_level("INFO"):
        env.reset(seed=1000)
    line = next(r.getMessage() for r in caplog.records if "so101_twin episode seed 1000" in r.getMessage())
    record = json.loads(line.split("arm ", 1)[1])
    assert record["level"] == "unseen" and record["arm_seed"] == 5
    assert record["params"] == draw_arm("unseen", arm_rng(5)).as_dict()
    assert ArmParams.from_dict(record["params"]).as_dict() == record["params"]


def test_mujoco_camera_velocity_is_what_the_blur_reads():
    """The blur's image motion comes from MuJoCo's own camera velocity: a still arm gives none."""
    from lerobot_env_so101_twin.arm_physics import image_motion

    twin = _twin(cameras={"wrist": (48, 64)})
    _settle(twin, REST_POSE, 60)
    mujoco.mj_forward(twin.model, twin.data)
    assert np.abs(image_motion(twin.model, twin.data, twin._camera_ids["wrist"], 48, 0.25)).max() < 1.0
    twin.apply_action(REST_POSE + np.array([40.0, 0.0, 0.0, 0.0, 0.0, 0.0]))
    twin.step()
    assert np.abs(image_motion(twin.model, twin.data, twin._camera_ids["wrist"], 48, 0.25)).max() > 10.0
