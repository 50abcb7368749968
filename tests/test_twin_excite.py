"""so101-twin-excite: the excitation's plan (its rate, its limits, the gripper open, clear of the table in the twin),
its refusals before the arm moves, and a dry run on the twin robot that so101-twin-identify reads."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
from clitools import run_cli

from lerobot_env_so101_twin.commands.excite import GRIPPER_OPEN_MIN, ExciteConfig
from lerobot_env_so101_twin.excitation import Part, check_plan, plan, ramp
from lerobot_env_so101_twin.simulation import REST_POSE, TwinConfig, TwinSimulation
from so101_core import JOINT_NAMES, MOTOR_KEYS
from so101_core.joint_limits import TWIN_JOINT_LIMITS
from so101_run_infra.dataset_ref import DatasetRef

LIMITS = np.array(TWIN_JOINT_LIMITS)
# a short motion for the command tests: every part, fewer frames
SHORT = ["--hold_s=0.2", "--chirp_s=1", "--multisine_s=2", "--amplitude=[8,8,8,8,8,8]"]


def default_config(**overrides) -> ExciteConfig:
    from lerobot_env_so101_twin.config_robot import SO101TwinConfig

    return ExciteConfig(robot=SO101TwinConfig(cameras=[]), dataset=DatasetRef("local/x", "x"), **overrides)


def test_a_ramp_never_moves_a_joint_more_than_the_step_and_ends_where_asked():
    start, end = np.zeros(6), np.array([10.0, -3.0, 0.5, 0.0, 7.0, 2.0])
    path = ramp(start, end, 1.5)
    assert len(path) == 7  # ceil(10 / 1.5)
    np.testing.assert_allclose(path[-1], end)
    assert np.abs(np.diff(np.vstack([start, path]), axis=0)).max() <= 1.5 + 1e-12


def test_the_default_plan_keeps_its_rate_its_limits_and_the_gripper_open_and_returns_home():
    cfg = default_config()
    home = np.clip(REST_POSE, LIMITS[:, 0], LIMITS[:, 1])
    parts = plan(cfg.shape(), REST_POSE, home)
    assert [p.name for p in parts] == ["approach", *JOINT_NAMES, "all_joints", "return"]
    check_plan(parts, REST_POSE, LIMITS, cfg.margin, cfg.max_step)  # raises on a violation
    moving = np.vstack([p.targets for p in parts[1:-1]])
    assert moving[:, 5].min() >= GRIPPER_OPEN_MIN
    np.testing.assert_allclose(parts[-1].targets[-1], home)
    np.testing.assert_allclose(parts[0].targets[-1], cfg.center)
    # every joint moves in its own part, and the others stay at the centre there
    for j, part in enumerate(parts[1:7]):
        spread = np.ptp(part.targets, axis=0)
        assert spread[j] >= cfg.amplitude[j] * 2 - 1e-9, JOINT_NAMES[j]
        assert np.all(np.delete(spread, j) == 0), JOINT_NAMES[j]
    seconds = sum(len(p.targets) for p in parts) / cfg.fps
    assert 60 < seconds < 150


def test_the_plan_stays_clear_of_the_table_and_the_cube_in_the_twin():
    """Every target of the default plan, posed by forward kinematics in the twin (the cube where the scene puts it):
    no part of the arm touches the table or the cube, where the rest pose itself touches nothing either."""
    cfg = default_config()
    twin = TwinSimulation(TwinConfig(cameras={}), seed=0)
    twin.reset(0)
    cube, quat = twin.cube_position, twin.cube_quat
    model, data = twin.model, twin.data
    arm_bodies = {model.geom_bodyid[g] for g in range(model.ngeom)} - {
        model.geom_bodyid[twin.cube_geom], model.geom_bodyid[twin._table_geom], 0}  # fmt: skip
    base = model.body("base").id if "base" in [model.body(b).name for b in range(model.nbody)] else -1

    def touching(q: np.ndarray) -> set[tuple[str, str]]:
        twin.place(q, cube, quat)
        out = set()
        for i in range(data.ncon):
            b1, b2 = model.geom_bodyid[data.contact.geom1[i]], model.geom_bodyid[data.contact.geom2[i]]
            if data.contact.dist[i] < 0 and (b1 in arm_bodies) != (b2 in arm_bodies) and base not in (b1, b2):
                out.add((model.body(b1).name, model.body(b2).name))
        return out

    parts = plan(cfg.shape(), REST_POSE)
    lowest = np.inf
    for part in parts:
        for q in part.targets:
            assert not touching(q), (part.name, q, touching(q))
            if part.name not in ("approach", "return"):
                lowest = min(lowest, twin.gripper_pose[0][2] - cube[2])
    assert lowest > 0.05  # the gripper stays 5 cm above the cube's centre while the motion runs


def test_a_plan_that_leaves_the_limits_or_steps_too_far_is_refused_naming_the_joint():
    cfg = default_config(amplitude=[20.0, 20.0, 20.0, 60.0, 30.0, 25.0])
    parts = plan(cfg.shape(), REST_POSE)
    with pytest.raises(ValueError, match=r"wrist_flex through .* outside its limits"):
        check_plan(parts, REST_POSE, LIMITS, cfg.margin, cfg.max_step)
    jump = [Part("approach", np.vstack([REST_POSE + [0, 0, 3, 0, 0, 0]]))]
    with pytest.raises(ValueError, match=r"moves elbow_flex by 3.00 in one frame, more than --max_step=1.0"):
        check_plan(jump, REST_POSE, LIMITS, 5.0, 1.0)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"max_step": 6.0}, "exceeds --robot.max_relative_target=5"),
        ({"center": [0.0, -30.0, 40.0, 60.0, 0.0, 40.0]}, "out of its open range"),
        ({"amplitude": [1.0] * 5}, "--amplitude needs 6 values"),
        ({"chirp_hz": [2.0, 1.0]}, "--chirp_hz needs"),
    ],
)
def test_bad_settings_are_refused_naming_the_flag(overrides, message):
    from lerobot_env_so101_twin.config_robot import SO101TwinConfig

    with pytest.raises(ValueError, match=message):
        ExciteConfig(robot=SO101TwinConfig(cameras=[], max_relative_target=5.0),
                     dataset=DatasetRef("local/x", "x"), **overrides)  # fmt: skip


def _excite(tmp_path, *flags: str) -> subprocess.CompletedProcess:
    return run_cli(
        ["so101-twin-excite", "--robot.type=so101_twin", "--robot.cameras=[]", "--robot.arm=unseen",
         "--robot.arm_seed=7", "--robot.max_relative_target=5", "--dataset.repo_id=local/excite", "--pace=false",
         *SHORT, *flags],
        cwd=tmp_path, check=False,
    )  # fmt: skip


@pytest.mark.slow
def test_the_dry_run_records_what_the_twin_was_sent_and_identify_reads_it(tmp_path):
    from lerobot_env_so101_twin.commands.identify import IdentifyConfig, load_episodes, load_excitation
    from so101_run_infra.cli import SettingsRefused

    root = tmp_path / "excite"
    # no terminal and no --yes: refused before the arm moves, nothing written
    refused = _excite(tmp_path, f"--dataset.root={root}")
    assert refused.returncode != 0 and "--yes=true" in refused.stderr and "Traceback" not in refused.stderr
    assert not root.exists()
    done = _excite(tmp_path, f"--dataset.root={root}", "--yes=true")
    assert done.returncode == 0, done.stderr[-2000:]
    record = json.loads((root / "meta" / "so101_twin_excite_report.json").read_text())
    assert record["episodes"] == ["approach", *JOINT_NAMES, "all_joints", "return"]
    episodes, fps = load_episodes(IdentifyConfig(dataset=DatasetRef("local/excite", root), output_dir=tmp_path / "o"))
    assert fps == 30 and len(episodes) == 9 and sum(len(e.state) for e in episodes) == record["frames"]
    # the recorded action is the target sent: the next frame's reading moved toward it, and the arm followed the
    # plan's steps (the shoulder_pan part spans its 2 x 8 degrees, give or take the servo's lag)
    # so101-twin-identify --excitation.*: fitted along with demonstrations of the same fps, refused at another
    given = IdentifyConfig(dataset=DatasetRef("local/d", tmp_path), excitation=DatasetRef("local/excite", root),
                           output_dir=tmp_path / "o")  # fmt: skip
    assert [e.index for e in load_excitation(given, 30)] == list(range(9))
    with pytest.raises(SettingsRefused, match="--excitation local/excite runs at 30 fps, the demonstrations at 15"):
        load_excitation(given, 15)
    pan = episodes[1]
    assert np.ptp(pan.action[:, 0]) == pytest.approx(16.0, abs=1e-4)
    assert np.ptp(pan.state[:, 0]) > 12.0
    arms = (root / "meta" / "so101_twin_arms.jsonl").read_text().splitlines()
    assert len(arms) == 9 and json.loads(arms[0])["arm_seed"] == 7
    # run again: nothing to do; other settings over it: refused naming the setting
    again = _excite(tmp_path, f"--dataset.root={root}", "--yes=true")
    assert again.returncode == 0 and "nothing to do" in again.stdout
    other = _excite(tmp_path, f"--dataset.root={root}", "--yes=true", "--max_step=0.5")
    assert other.returncode != 0 and "max_step" in other.stderr and "Traceback" not in other.stderr
    assert sorted(MOTOR_KEYS) == sorted(json.loads((root / "meta" / "info.json").read_text())["features"]["action"]
                                        ["names"])  # fmt: skip


def test_an_amplitude_past_the_limits_is_refused_before_the_arm_moves(tmp_path):
    root = tmp_path / "excite"
    result = _excite(tmp_path, f"--dataset.root={root}", "--yes=true", "--amplitude=[8,8,8,60,8,8]")
    assert result.returncode != 0 and "wrist_flex" in result.stderr and "the twin's MJCF ranges" in result.stderr
    assert "Traceback" not in result.stderr and not root.exists()


def test_a_real_followers_limits_come_from_its_calibration_or_are_refused_naming_the_id(tmp_path):
    import lerobot.robots.so_follower  # noqa: F401  registers so101_follower
    from lerobot.robots.so_follower import SOFollowerRobotConfig

    from so101_core import JOINT_NAMES

    def config(robot_id: str) -> ExciteConfig:
        robot = SOFollowerRobotConfig(port="/dev/null", id=robot_id, calibration_dir=tmp_path, max_relative_target=5)
        return ExciteConfig(robot=robot, dataset=DatasetRef("local/x", "x"))

    with pytest.raises(FileNotFoundError, match=r"no calibration for --robot.id=ghost: .*ghost\.json does not exist"):
        config("ghost").limits()
    # 2048 +- 1000 ticks on every body joint: +-87.9 degrees, as LeRobot's bus reads them
    calibration = {name: {"id": i + 1, "drive_mode": 0, "homing_offset": 0, "range_min": 1048, "range_max": 3048}
                   for i, name in enumerate(JOINT_NAMES)}  # fmt: skip
    (tmp_path / "mine.json").write_text(json.dumps(calibration))
    limits, source = config("mine").limits()
    assert source == str(tmp_path / "mine.json")
    np.testing.assert_allclose(limits[:5], [[-87.91, 87.91]] * 5, atol=0.01)
    np.testing.assert_allclose(limits[5], [0.0, 100.0])
