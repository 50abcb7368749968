"""benchmarks/arm_family_split.py: each episode's arm read from lerobot-eval's log in the cell's seed order, the
first arm logged for a seed kept (later lines of that seed are the vector env's resets), and a hand-computed split."""

import json
from pathlib import Path

import pytest
from clitools import load_script

split = load_script("benchmarks/arm_family_split.py", "arm_family_split")


def arm(cube_size: float, calibration: list[float], latency: float = 60.0) -> dict:
    return {"cube_size": cube_size, "calibration_deg": calibration, "latency_ms": latency, "control_fps": 10}


def write_cell(root: Path, successes: list[bool], arms: dict[int, dict], seed: int = 7) -> Path:
    cell = root / "row_s1" / "unseen_family"
    cell.mkdir(parents=True)
    info = {"per_task": [{"metrics": {"successes": successes}}], "overall": {}}
    (cell / "eval_info.json").write_text(json.dumps(info))
    lines = [f"/x/lerobot-eval --policy.path=p --env.arm=unseen --seed={seed} --output_dir={cell}"]
    for s, params in arms.items():
        record = {"level": "unseen", "arm_seed": s, "params": params}
        lines.append(f"INFO 2026-12-02 twin/env.py:155 so101_twin episode seed {s}: arm {json.dumps(record)}")
    (cell.parent / "unseen_family.log").write_text("\r".join(lines) + "\n")
    return cell


def test_split_by_hand(tmp_path: Path) -> None:
    arms = {7: arm(0.9, [2, -2]), 8: arm(1.1, [1, -1]), 9: arm(0.92, [3, 3]), 10: arm(1.08, [0, 0])}
    arms[123456] = arm(1.5, [9, 9])  # an auto-reset past the last episode: not one of the cell's
    cell = write_cell(tmp_path, [True, False, True, False], arms)
    episodes = split.cell_episodes(cell)
    assert [s for s, _ in episodes] == [True, False, True, False]
    assert [a["cube_size"] for _, a in episodes] == [0.9, 1.1, 0.92, 1.08]
    text = split.split_table(episodes, [])
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    # cube size: median 1.0; the two at or below lifted, the two above did not
    assert "| 2/2 = 100% " in rows["cube_size"] and "| 0/2 = 0% " in rows["cube_size"]
    assert "-100 points" in rows["cube_size"]
    # calibration by size: |.| means 2, 1, 3, 0 -> median 1.5; at or below: episodes 8 and 10 (no lift)
    assert rows["calibration_deg"].split(" | ")[1] == "1.5"
    assert "| 0/2 = 0% " in rows["calibration_deg"] and "+100 points" in rows["calibration_deg"]
    assert "all the same" in rows["control_fps"] and "all the same" in rows["latency_ms"]
    assert text.startswith("4 episodes of 4 distinct arms, 2 lifted")


def test_first_arm_of_a_seed_kept(tmp_path: Path) -> None:
    cell = write_cell(tmp_path, [True], {7: arm(0.9, [0])})
    log = cell.parent / "unseen_family.log"
    record = {"params": arm(1.1, [0])}
    log.write_text(log.read_text() + f"so101_twin episode seed 7: arm {json.dumps(record)}\n")
    assert split.cell_episodes(cell)[0][1]["cube_size"] == 0.9


def test_refusals(tmp_path: Path) -> None:
    cell = write_cell(tmp_path, [True, False], {7: arm(0.9, [0])})
    with pytest.raises(ValueError, match=r"no arm logged for episode seeds \[8\]"):
        split.cell_episodes(cell)
    with pytest.raises(FileNotFoundError, match=r"eval_info\.json is missing"):
        split.cell_episodes(tmp_path / "nothing" / "unseen_family")
    with pytest.raises(ValueError, match=r"--factors has \[.gain.\]"):
        split.split_table([(True, arm(1.0, [0]))], ["gain"])
    with pytest.raises(ValueError, match="--cells is empty"):
        split.ArmFamilySplitConfig()
