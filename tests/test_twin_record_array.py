"""`so101-submit --stage=record`: so101-twin-record as an array of shard tasks, through submitit's local executor.

The tasks record into so101-twin-record's own staging folder and the last one to finish merges, so the root must be
the dataset a single-machine so101-twin-record of the same settings writes; finished shards are kept, a finished
root is not submitted again, and bad input is refused in one line before anything is submitted."""

import json
import subprocess
from pathlib import Path

import draccus
import numpy as np
import pytest
import torch
from clitools import TASK, run_cli
from lerobot.datasets import LeRobotDataset

from lerobot_env_so101_twin.commands.record import TwinRecordConfig, record
from lerobot_env_so101_twin.commands.record_array import array_size, plan, run_task
from so101_commands.stage_job import RecordTaskJob
from so101_commands.submit import ClusterConfig, SubmitConfig, submit
from so101_run_infra.cli import SettingsRefused

ROOT = Path(__file__).resolve().parent.parent
# 4 episodes of 1 s in 2 shards, a tiny wrist camera with the lossless depth and segmentation streams
RECORD = [
    "--robot.cameras=[wrist]",
    "--robot.observation_height=48",
    "--robot.observation_width=64",
    "--robot.depth=true",
    "--robot.segmentation=true",
    "--robot.action_noise_std=1.0",
    "--robot.seed=3",
    "--dataset.repo_id=local/twin_record",
    "--dataset.num_episodes=4",
    "--dataset.episode_time_s=1",
    f"--dataset.single_task={TASK}",
    "--num_workers=1",
    "--episodes_per_shard=2",
    "--fail_fast_episodes=0",
]
GROUND_TRUTH = ["observation.images.wrist_depth", "observation.images.wrist_segmentation"]


def record_config(root: Path, *flags: str) -> TwinRecordConfig:
    return draccus.parse(TwinRecordConfig, args=[*RECORD, f"--dataset.root={root}", *flags])


def array(tmp_path: Path, root: Path, *flags: str, **fields) -> SubmitConfig:
    cluster = ClusterConfig(executor="local", folder=tmp_path / "logs" / "%j", timeout_min=15, signal_delay_s=30)
    return SubmitConfig(cluster=cluster, **{"stage": "record", "array_tasks": 2, **fields},
                        args=[*RECORD, f"--dataset.root={root}", *flags])  # fmt: skip


def columns(root: Path, keys=("observation.state", "action", "episode_index", "frame_index", "timestamp")) -> dict:
    ds = LeRobotDataset("local/twin_record", root=root)
    return {key: np.asarray(ds.hf_dataset[key]) for key in keys}


def task_summary(job) -> dict:
    """The summary a task prints last (its log also holds LeRobot's and the recorder's output)."""
    assert job.result() == 0
    lines = [line for line in job.stdout().splitlines() if line.startswith('{"task"')]
    return json.loads(lines[-1])


@pytest.mark.slow
def test_an_array_records_what_so101_twin_record_does_keeping_finished_shards(tmp_path):
    single = tmp_path / "single"
    record(record_config(single))
    root = tmp_path / "array"
    cfg = record_config(root)
    # an earlier array whose task 1 never ran: task 0's shard is there, nothing merged
    assert plan(cfg, 2) | {"root": ""} == {
        "root": "", "already_recorded": False, "tasks": 2, "shards": 2, "finished_shards": 0
    }  # fmt: skip
    earlier = run_task(cfg, 0, 2, claim="earlier")
    assert earlier["recorded"] == ["shard_000000_000001"] and not earlier["merged"] and not root.exists()

    jobs = submit(array(tmp_path, root), workdir=tmp_path)
    assert [type(job.submission().function) for job in jobs] == [RecordTaskJob, RecordTaskJob]
    first, second = (task_summary(job) for job in jobs)
    assert first["recorded"] == [] and first["kept"] == ["shard_000000_000001"]
    assert second["recorded"] == ["shard_000002_000003"] and second["kept"] == []
    assert first["merged"] + second["merged"] == 1  # whichever finished last
    assert not root.with_name(f".{root.name}.partial").exists()

    a, b = (json.loads((r / "meta" / "info.json").read_text()) for r in (single, root))
    for key in ("codebase_version", "robot_type", "fps", "total_episodes", "total_frames", "features"):
        assert a[key] == b[key], key
    assert b["total_frames"] == 4 * 30
    a, b = columns(single), columns(root)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    positions = [0, 45, 119]  # in the first shard, the second, its last frame
    fa, fb = (LeRobotDataset("local/twin_record", root=r) for r in (single, root))
    for key in GROUND_TRUTH:  # lossless: the same values after decoding
        assert torch.equal(torch.stack([fa[i][key] for i in positions]), torch.stack([fb[i][key] for i in positions]))

    # submitted again over the finished root: nothing to submit; so101-twin-record finds its own recording there
    assert submit(array(tmp_path, root), workdir=tmp_path) == []
    assert record(cfg)["already_recorded"]


def test_the_array_divides_the_shards_evenly(tmp_path):
    cfg = record_config(tmp_path / "ds", "--episodes_per_shard=1")  # 4 shards
    assert array_size(cfg, None) == 4 and array_size(cfg, 2) == 2
    for tasks in (0, 3, 5):
        with pytest.raises(SettingsRefused, match=rf"^--array_tasks={tasks} does not divide .* use one of 1, 2, 4$"):
            array_size(cfg, tasks)


@pytest.mark.parametrize(
    ("fields", "flags", "match"),
    [
        ({"stage": "laq"}, [], r"^--array_tasks=2 is for --stage=record only$"),
        ({"output_dir": Path("out")}, [], r"^--output_dir is not for --stage=record"),
        ({}, ["--array_task=1"], r"^--array_task is so101-submit's to set"),
        ({}, ["--config_path=nope.yaml"], r"^so101-twin-record's --config_path=nope.yaml not found"),
    ],
)
def test_bad_input_is_refused_before_anything_is_staged(tmp_path, fields, flags, match):
    cfg = array(tmp_path, tmp_path / "ds", *flags, **fields)
    if fields.get("stage") == "laq":
        cfg.args = ["--config_path=x.yaml"]
    with pytest.raises(SettingsRefused, match=match):
        submit(cfg, workdir=tmp_path)
    assert not list(tmp_path.iterdir())  # no staging folder, no logs


def submit_command(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    cmd = ["so101-submit", f"--config_path={ROOT}/configs/cluster_local.yaml"]
    cmd += ["--stage=record", f"--cluster.folder={tmp_path}/logs/%j", *flags]
    return run_cli(cmd, cwd=tmp_path, timeout=300, check=False)


def test_command_line_says_a_recording_is_there_and_refuses_an_uneven_array(tmp_path):
    short = ["--dataset.num_episodes=2", "--dataset.episode_time_s=0.2", "--episodes_per_shard=1"]
    record(record_config(tmp_path / "ds", *short))
    there = submit_command(tmp_path, "--", *RECORD, f"--dataset.root={tmp_path / 'ds'}", *short)
    assert there.returncode == 0, there.stderr[-3000:]
    assert "already recorded with these settings (2 episodes): nothing to submit" in there.stderr
    uneven = submit_command(tmp_path, "--array_tasks=3", "--", *RECORD, f"--dataset.root={tmp_path / 'new'}")
    assert uneven.returncode == 1 and "Traceback" not in uneven.stderr, uneven.stderr[-3000:]
    assert uneven.stderr.strip().splitlines()[-1] == (
        "so101-submit: --stage=record: --array_tasks=3 does not divide the recording's 2 shards "
        "(--dataset.num_episodes=4 in shards of --episodes_per_shard=2): use one of 1, 2"
    )
    assert not (tmp_path / "logs").exists() and not (tmp_path / ".new.partial").exists()
