"""benchmarks/arm_family_grasps.py: the twin watched step by step through its env class (the reactive expert's lift,
a hold that never grasps), each class of a hand-made episode, and the cell's command read from its log."""

import json
from pathlib import Path

import numpy as np
import pytest
from clitools import load_script

from lerobot_env_so101_twin.env import SO101TwinEnv
from lerobot_env_so101_twin.expert import EXPERTS

grasps = load_script("benchmarks/arm_family_grasps.py", "arm_family_grasps")


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """The env class watched, and unwatched again after the test."""
    for name in ("reset", "step"):
        monkeypatch.setattr(SO101TwinEnv, name, getattr(SO101TwinEnv, name))
    episodes: list[dict] = []
    grasps.watch_twin(episodes)
    return episodes


def test_the_experts_lift_is_watched_as_a_grasp_at_the_cubes_centre(watched: list[dict]) -> None:
    env = SO101TwinEnv(task="LiftCube", cameras=())
    env.reset(seed=4)
    expert = EXPERTS["reactive"](env.twin)
    for _ in range(300):
        *_, terminated, _, info = env.step(env.twin.follower_command(expert.action()))
        if terminated:
            break
    assert info["is_success"], "the reactive expert lifts the cube of seed 4 on the ideal arm"
    (episode,) = watched
    assert episode["seed"] == 4 and episode["half_size_mm"] == pytest.approx(1000 * env.twin.cube_half_size)
    steps = np.asarray(episode["steps"])
    assert len(steps) == env.twin.steps  # one row per env step at 30 Hz (one period each)
    offset = env.twin.grasp_point - env.twin.cube_position
    along = offset @ env.twin.closing_direction
    last = dict(zip(grasps.STEP_FIELDS, steps[-1], strict=True))
    expected = {"along": along, "dz": offset[2], "lift": env.twin.lift_height()}
    np.testing.assert_allclose([last[k] for k in expected], list(expected.values()), atol=1e-9)
    assert last["command"] == pytest.approx(env.twin.joint_targets()[5], abs=1e-4)  # the gripper target it was sent
    assert last["fixed"] == 1 and last["moving"] == 1  # both fingers on the cube as it is lifted
    row = grasps.episode_row(steps)
    assert row["class"] == "lifted" and row["max_lift_mm"] > 50
    # the expert descends onto the cube's centre: both fingers touch it with the grasp point within a few millimetres
    assert abs(row["grasp_height_mm"]) < 6 and abs(row["grasp_along_mm"]) < 6
    assert row["reopen_steps"] is None  # a grasp that holds: the expert keeps its jaws closed


def test_a_hold_never_grasps(watched: list[dict]) -> None:
    env = SO101TwinEnv(task="LiftCube", cameras=())
    obs, _ = env.reset(seed=4)
    for _ in range(10):
        env.step(obs["agent_pos"])
    row = grasps.episode_row(np.asarray(watched[0]["steps"]))
    assert row["class"] == "no grasp" and row["first_grasp_step"] is None and row["max_lift_mm"] < 1


def episode(lifts_mm: list[float], held: list[bool]) -> np.ndarray:
    column = {name: i for i, name in enumerate(grasps.STEP_FIELDS)}
    steps = np.zeros((len(lifts_mm), len(grasps.STEP_FIELDS)))
    steps[:, column["dz"]] = 0.02  # 20 mm over the centre
    steps[:, column["fixed"]] = steps[:, column["moving"]] = held
    steps[:, column["lift"]] = np.asarray(lifts_mm) / 1000
    return steps


def test_a_reopen_by_hand() -> None:
    steps = episode([0, 0, 0, 0, 0], [True, True, False, False, False])
    command = grasps.STEP_FIELDS.index("command")
    steps[:, command] = [10, 2, 0, 4, 30]  # closing to 0, then opening: 4 over the lowest is not a re-open, 30 is
    row = grasps.episode_row(steps)
    assert row["reopen_steps"] == 4 and row["reopen_to"] == 30
    steps[:, command] = [40, 20, 10, 9, 6]  # closing all the way: no re-open
    assert grasps.episode_row(steps)["reopen_steps"] is None


def test_each_class_by_hand() -> None:
    assert grasps.episode_row(episode([0, 2, 4], [False, True, True]))["class"] == "not off the table"
    dropped = grasps.episode_row(episode([0, 30, 60], [True, True, False]))  # 6 cm only once it was let go
    assert dropped["class"] == "dropped" and dropped["first_grasp_step"] == 0 and dropped["grasp_height_mm"] == 20
    assert grasps.episode_row(episode([0, 30, 51], [False, True, True]))["class"] == "lifted"
    assert grasps.episode_row(episode([0, 30, 60], [True, False, False]))["class"] == "dropped"
    assert grasps.episode_row(episode([0, 0], [False, False]))["class"] == "no grasp"


def write_cell(root: Path, first_line: str | None) -> Path:
    cell = root / "row_s1" / "unseen_family"
    cell.mkdir(parents=True)
    (cell / "eval_info.json").write_text(json.dumps({"per_task": [{"metrics": {"successes": [True, False]}}]}))
    if first_line is not None:
        (cell.parent / "unseen_family.log").write_text(first_line + "\rINFO progress\n")
    return cell


def test_the_cells_command_without_its_output_dir(tmp_path: Path) -> None:
    cell = write_cell(tmp_path, "/v/bin/lerobot-eval --policy.path=p --env.arm=unseen --seed=7 --output_dir=/o/x")
    flags, successes = grasps.cell_command(cell)
    assert flags == ["--policy.path=p", "--env.arm=unseen", "--seed=7"] and successes == [True, False]


def test_refusals(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"unseen_family\.log is missing"):
        grasps.cell_command(write_cell(tmp_path / "a", None))
    with pytest.raises(ValueError, match="not a lerobot-eval command"):
        grasps.cell_command(write_cell(tmp_path / "b", "python train.py --seed=1"))
    with pytest.raises(ValueError, match="--cell is missing"):
        grasps.ArmFamilyGraspsConfig()
