"""`so101-twin-record`: the dataset lerobot-record would write, recorded in simulated time by worker processes."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from clitools import TASK, run_cli
from conftest import GT_SIZE
from lerobot.datasets import LeRobotDataset

from lerobot_env_so101_twin import SO101Twin
from lerobot_env_so101_twin.commands.record import ExpertCannotSolveError, TwinDatasetConfig, TwinRecordConfig, record
from lerobot_env_so101_twin.config_robot import SO101TwinConfig
from lerobot_env_so101_twin.config_teleoperator import SO101TwinExpertConfig
from so101_run_infra.cli import OutputRefused

SMALL = {"cameras": ["wrist"], "observation_height": 48, "observation_width": 64, "depth": True, "segmentation": True}


def config(root: Path, episodes: int, seconds: float = 1.0, robot: dict | None = None, **kwargs) -> TwinRecordConfig:
    return TwinRecordConfig(
        robot=SO101TwinConfig(**{**SMALL, "action_noise_std": 1.0, "seed": 3, **(robot or {})}),
        teleop=SO101TwinExpertConfig(),
        dataset=TwinDatasetConfig(
            repo_id="local/twin_record", root=str(root), num_episodes=episodes, episode_time_s=seconds, single_task=TASK
        ),
        **{"num_workers": 1, "episodes_per_shard": 1, "fail_fast_episodes": 0, **kwargs},
    )


def columns(root: Path, keys=("observation.state", "action", "episode_index", "frame_index", "timestamp")) -> dict:
    ds = LeRobotDataset("local/twin_record", root=root)
    return {key: np.asarray(ds.hf_dataset[key]) for key in keys}


def frames(root: Path, keys: list[str], positions: list[int]) -> dict[str, torch.Tensor]:
    ds = LeRobotDataset("local/any", root=root)
    return {key: torch.stack([ds[i][key] for i in positions]) for key in keys}


@pytest.mark.slow
def test_same_dataset_as_lerobot_record(gt_dataset, tmp_path):
    """Same robot settings and seed as conftest's lerobot-record fixture, two workers, one shard per episode."""
    root = tmp_path / "fast"
    h, w = GT_SIZE
    run_cli(
        [
            "so101-twin-record",
            "--robot.cameras=[front,wrist]",
            f"--robot.observation_height={h}",
            f"--robot.observation_width={w}",
            "--robot.depth=true",
            "--robot.segmentation=true",
            "--dataset.repo_id=local/twin_demo",
            f"--dataset.root={root}",
            "--dataset.num_episodes=2",
            "--dataset.episode_time_s=4",
            f"--dataset.single_task={TASK}",
            "--num_workers=2",
            "--episodes_per_shard=1",
            "--fail_fast_episodes=0",
        ],
        cwd=tmp_path,
    )
    stock, fast = (json.loads((r / "meta" / "info.json").read_text()) for r in (gt_dataset, root))
    for key in ("codebase_version", "robot_type", "fps", "total_episodes", "features"):
        assert fast[key] == stock[key], key
    # lerobot-record ends an episode by the wall clock (under load, fewer frames): compare the frames both recorded
    a, b = columns(gt_dataset), columns(root)
    for episode in (0, 1):
        ia, ib = np.flatnonzero(a["episode_index"] == episode), np.flatnonzero(b["episode_index"] == episode)
        assert len(ib) == 120 and 0 < len(ia) <= 121
        n = min(len(ia), len(ib))
        for key in ("observation.state", "action", "frame_index", "timestamp"):
            np.testing.assert_array_equal(a[key][ia[:n]], b[key][ib[:n]], err_msg=f"{key}, episode {episode}")
        # the lossless (12-bit HEVC) ground truth decodes to the same values; RGB is lossy, so only close
        positions_a, positions_b = ([int(i[0]), int(i[n // 2]), int(i[n - 1])] for i in (ia, ib))
        gt_keys = [f"observation.images.{c}_{k}" for c in ("front", "wrist") for k in ("depth", "segmentation")]
        rgb_keys = [f"observation.images.{c}" for c in ("front", "wrist")]
        fa, fb = frames(gt_dataset, gt_keys + rgb_keys, positions_a), frames(root, gt_keys + rgb_keys, positions_b)
        for key in gt_keys:
            assert torch.equal(fa[key], fb[key]), key
        for key in rgb_keys:
            assert (fa[key] - fb[key]).abs().mean() < 0.02, key


def test_same_seed_same_episodes_whatever_the_sharding(tmp_path):
    one = record(config(tmp_path / "one", 3, episodes_per_shard=3))
    three = record(config(tmp_path / "three", 3, episodes_per_shard=1))
    assert one["frames"] == three["frames"] == 90
    a, b = columns(tmp_path / "one"), columns(tmp_path / "three")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    # the scenes differ between episodes (seed + k), and the DART noise moves the arm off the expert's commands
    starts = [a["observation.state"][a["episode_index"] == e] for e in range(3)]
    assert not np.array_equal(starts[0], starts[1])


def test_resume_continues_the_episode_numbering_and_seeds(tmp_path):
    record(config(tmp_path / "whole", 3))
    record(config(tmp_path / "parts", 2))
    with pytest.raises(OutputRefused, match=r"other settings \(dataset.num_episodes: saved 2, now 1\).*--resume=true"):
        record(config(tmp_path / "parts", 1))
    summary = record(config(tmp_path / "parts", 1, resume=True))
    assert summary["episodes"] == 3 and summary["episodes_this_run"] == 1
    # the same two commands again: each says it is done, and nothing is recorded or appended twice
    assert record(config(tmp_path / "parts", 1, resume=True)) | {"root": ""} == {
        "root": "", "episodes": 3, "frames": 90, "episodes_this_run": 0, "already_recorded": True
    }  # fmt: skip
    assert record(config(tmp_path / "whole", 3))["already_recorded"]
    stranger = tmp_path / "stranger"
    (stranger / "meta").mkdir(parents=True)
    with pytest.raises(OutputRefused, match=r"so101-twin-record did not finish it.*--resume=true.*--dataset.root"):
        record(config(stranger, 1))
    a, b = columns(tmp_path / "whole"), columns(tmp_path / "parts")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_resume_refuses_a_dataset_with_other_features(tmp_path):
    record(config(tmp_path / "ds", 1))
    with pytest.raises(ValueError, match=r"feature .observation\.images\.wrist"):
        record(config(tmp_path / "ds", 1, robot={"observation_height": 32}, resume=True))
    assert columns(tmp_path / "ds")["episode_index"].max() == 0


def test_resume_refuses_other_video_encoder_settings(tmp_path):
    """LeRobot's merge joins video streams packet by packet: an x265 stream of another preset lost 21 of 90 frames
    at the join (decoded by hand), so new episodes must use the dataset's own encoder settings."""
    record(config(tmp_path / "ds", 1))
    changed = config(tmp_path / "ds", 1, resume=True)
    changed.dataset.depth_encoder = dataclasses.replace(changed.dataset.depth_encoder, preset="ultrafast")
    with pytest.raises(ValueError, match=r"--dataset.depth_encoder.preset None vs new 'ultrafast'"):
        record(changed)
    assert not (tmp_path / ".ds.partial").exists()
    assert record(config(tmp_path / "ds", 1, resume=True))["episodes"] == 2


def test_interrupted_recording_resumes_and_never_keeps_a_partial_episode(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    calls = {"n": 0}
    original = SO101Twin.send_action

    def crash_in_third_episode(self, action):
        calls["n"] += 1
        if calls["n"] == 2 * 30 + 10:  # 10 frames into episode 2
            raise RuntimeError("simulated crash")
        return original(self, action)

    monkeypatch.setattr(SO101Twin, "send_action", crash_in_third_episode)
    with pytest.raises(RuntimeError, match="simulated crash"):
        record(config(root, 3))
    assert not root.exists()
    stage = root.with_name(f".{root.name}.partial")
    assert sorted(p.name for p in stage.iterdir() if p.name.startswith("shard_")) == [
        "shard_000000_000000",
        "shard_000001_000001",
    ]
    with pytest.raises(ValueError, match="other settings"):
        record(config(root, 3, seconds=2.0))
    monkeypatch.setattr(SO101Twin, "send_action", original)
    resumed = config(root, 3)
    resumed.fail_fast_episodes = 4  # what a resume may change: the fail-fast check (its refusal suggests 0)
    summary = record(resumed)
    assert summary["episodes"] == 3 and summary["episodes_this_run"] == 1 and not stage.exists()
    record(config(tmp_path / "uninterrupted", 3))
    a, b = columns(root), columns(tmp_path / "uninterrupted")
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_an_expert_that_cannot_solve_the_task_is_refused(tmp_path):
    with pytest.raises(ValueError, match="lift_height"):
        TwinRecordConfig(teleop=SO101TwinExpertConfig(lift_height=0.03), dataset=TwinDatasetConfig(repo_id="local/x"))
    # 0.3 s episodes are too short for any grasp: the first two episodes fail and the run stops, writing nothing
    with pytest.raises(ExpertCannotSolveError, match="failed all of the first 2 episodes"):
        record(config(tmp_path / "ds", 4, seconds=0.3, fail_fast_episodes=2, episodes_per_shard=4))
    assert not (tmp_path / "ds").exists()


def test_fps_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"--dataset\.fps=15 and --robot\.fps=30"):
        TwinRecordConfig(dataset=TwinDatasetConfig(repo_id="local/x", fps=15))


def test_appearance_shift_is_recorded_per_episode_with_the_same_physics(tmp_path):
    plain = record(config(tmp_path / "plain", 2, seconds=0.2, robot={"depth": False}))
    shifted = record(config(tmp_path / "shifted", 2, seconds=0.2, robot={"depth": False, "appearance": "shifted"}))
    assert plain["frames"] == shifted["frames"] == 12
    a, b = columns(tmp_path / "plain"), columns(tmp_path / "shifted")
    for key in a:  # the same scenes, noise and expert: only the pixels change
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    image = "observation.images.wrist"
    first = frames(tmp_path / "plain", [image], [0, 6])[image]
    second = frames(tmp_path / "shifted", [image], [0, 6])[image]
    assert (first - second).abs().mean() > 0.05
    assert (second[0] - second[1]).abs().mean() > 0.05  # each episode its own look


def test_each_episode_is_written_with_the_arm_it_was_recorded_with(tmp_path):
    """Under the `varied` family every episode's arm is in meta/so101_twin_arms.jsonl, drawn from the episode's seed
    (replayable), across shards; the ideal arm writes no such file."""
    from lerobot_env_so101_twin.arm import arm_rng, draw_arm
    from lerobot_env_so101_twin.commands.record import ARMS_FILE

    varied = record(config(tmp_path / "varied", 3, seconds=0.2, robot={"depth": False, "arm": "varied"}))
    plain = record(config(tmp_path / "plain", 1, seconds=0.2, robot={"depth": False}))
    assert varied["frames"] == 18 and plain["frames"] == 6
    rows = [json.loads(line) for line in (tmp_path / "varied" / ARMS_FILE).read_text().splitlines()]
    assert [r["episode_index"] for r in rows] == [0, 1, 2]
    for row in rows:
        seed = 3 + row["episode_index"]  # the robot's seed plus the episode index
        assert row["level"] == "varied" and row["arm_seed"] == seed
        assert row["params"] == draw_arm("varied", arm_rng(seed)).as_dict()
    assert not (tmp_path / "plain" / ARMS_FILE).exists()
    manifest = json.loads((tmp_path / "varied" / "meta" / "so101_twin_record.json").read_text())
    assert manifest["robot"]["arm"] == "varied"  # the settings are recorded with the run
