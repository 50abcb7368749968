"""`so101-training-copy`: a copy of a recording without the cameras a recipe does not read gives the stock samples
bit for bit (and the same lerobot-train loss), is left alone while the recording is unchanged and rebuilt when it
changes."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
import torch
from clitools import run_cli, short_train_flags
from lerobot.datasets import LeRobotDataset

from so101_commands.training_copy import MANIFEST, TrainingCopyConfig, make_training_copy
from so101_policy_common.precompute import SourceDatasetConfig

REPO = "local/twin_demo"
WRIST_MAPS = ["observation.images.wrist_depth", "observation.images.wrist_segmentation"]
TINY_SEGDEPTH = {"image_size": 32, "feature_dim": 8, "hidden_dim": 16, "encoder_channels": 8}


def copy_of(root, output, keep=WRIST_MAPS) -> dict:
    cfg = TrainingCopyConfig(dataset=SourceDatasetConfig(repo_id=REPO, root=str(root)), keep=list(keep))
    cfg.output_dir = str(output)
    return make_training_copy(cfg)


@pytest.fixture(scope="module")
def wrist_copy(gt_dataset, tmp_path_factory):
    return copy_of(gt_dataset, tmp_path_factory.mktemp("copy") / "wrist")


@pytest.mark.slow
def test_the_copy_gives_the_stock_samples_bit_for_bit(gt_dataset, wrist_copy):
    """lerobot-train's dataset (uint8 frames, a frame-stack window on the cameras, an action chunk) on both."""
    window = {key: [-2 / 30, -1 / 30, 0.0] for key in [*WRIST_MAPS, "observation.state"]}
    window["action"] = [i / 30 for i in range(5)]
    source = LeRobotDataset(REPO, root=gt_dataset, delta_timestamps=window, return_uint8=True)
    copy = LeRobotDataset(wrist_copy["repo_id"], root=wrist_copy["root"], delta_timestamps=window, return_uint8=True)
    dropped = set(source.meta.camera_keys) - set(WRIST_MAPS)
    assert dropped and set(copy.meta.video_keys) == set(WRIST_MAPS)
    assert len(copy) == len(source) and list(copy.meta.episodes["length"]) == list(source.meta.episodes["length"])
    for key, stats in copy.meta.stats.items():  # the recording's, byte for byte (NaN where it has NaN)
        for name, value in stats.items():
            want = torch.as_tensor(source.meta.stats[key][name])
            torch.testing.assert_close(torch.as_tensor(value), want, rtol=0, atol=0, equal_nan=True)
    ends = [0, 1, len(source) // 2, len(source) - 1]  # the first frames pad the window, the last the chunk
    for i in ends:
        want, got = source[i], copy[i]
        assert set(got) == set(want) - dropped
        for key, value in got.items():
            if isinstance(value, torch.Tensor):
                assert value.dtype == want[key].dtype and torch.equal(value, want[key]), (i, key)
            else:
                assert value == want[key], (i, key)
    manifest = json.loads((Path(wrist_copy["root"]) / MANIFEST).read_text())
    assert manifest["dropped_cameras"] == sorted(dropped, key=list(source.meta.camera_keys).index)


@pytest.mark.slow
def test_built_once_then_rebuilt_when_the_recording_changes(gt_dataset, tmp_path):
    recording = tmp_path / "recording"
    shutil.copytree(gt_dataset, recording)
    output = tmp_path / "copy"
    assert copy_of(recording, output)["status"] == "built"
    first = (output / MANIFEST).stat().st_ino
    assert copy_of(recording, output)["status"] == "up_to_date"
    assert (output / MANIFEST).stat().st_ino == first  # not rewritten

    video = next((recording / "videos" / WRIST_MAPS[0]).rglob("*.mp4"))
    stat = video.stat()
    os.utime(video, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # re-recorded: same name, new file
    again = copy_of(recording, output)
    assert again["status"] == "rebuilt"
    assert copy_of(recording, output)["status"] == "up_to_date"

    info = json.loads((recording / "meta" / "info.json").read_text())
    info["robot_type"] = "changed"
    (recording / "meta" / "info.json").write_text(json.dumps(info, indent=4))
    assert copy_of(recording, output)["status"] == "rebuilt"

    assert copy_of(recording, output, keep=WRIST_MAPS[:1])["status"] == "rebuilt"  # other cameras asked
    assert LeRobotDataset(REPO, root=output).meta.video_keys == WRIST_MAPS[:1]


@pytest.mark.slow
def test_killed_while_writing_then_run_again_builds_the_whole_copy(gt_dataset, wrist_copy, tmp_path, monkeypatch):
    import so101_commands.training_copy as command

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(command, "_keep_stored_stats", killed)  # after LeRobot's tool wrote the staged copy
        with pytest.raises(KeyboardInterrupt):
            copy_of(gt_dataset, tmp_path / "wrist")
    assert not (tmp_path / "wrist").exists()  # the staged half copy is never taken for the copy
    assert copy_of(gt_dataset, tmp_path / "wrist")["status"] == "built"
    assert not (tmp_path / ".wrist.tmp").exists()
    clean, again = Path(wrist_copy["root"]), tmp_path / "wrist"
    files = sorted(p.relative_to(clean) for p in clean.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for name in files:
        assert (clean / name).read_bytes() == (again / name).read_bytes(), name


@pytest.mark.slow
def test_refusals(gt_dataset, tmp_path):
    with pytest.raises(KeyError, match="not camera features"):
        copy_of(gt_dataset, tmp_path / "a", keep=["observation.images.nope"])
    with pytest.raises(ValueError, match="--keep is empty"):
        copy_of(gt_dataset, tmp_path / "b", keep=[])
    (tmp_path / "c").mkdir()
    with pytest.raises(FileExistsError, match="not a so101-training-copy copy"):
        copy_of(gt_dataset, tmp_path / "c")
    with pytest.raises(ValueError, match="the recording itself"):
        copy_of(gt_dataset, gt_dataset)


def losses(log: str) -> list[str]:
    found = re.findall(r"step:\S+ .*?loss:(\S+)", log)
    assert found, log[-3000:]
    return found


@pytest.mark.slow
def test_lerobot_train_gives_the_same_losses_on_the_copy(gt_dataset, wrist_copy, tmp_path):
    """The stock command, segdepth from ground truth (frame stack 3 on the wrist maps), same seed, both datasets."""
    logs = []
    for name, repo_id, root in (("source", REPO, gt_dataset), ("copy", wrist_copy["repo_id"], wrist_copy["root"])):
        args = [
            "lerobot-train",
            "--policy.type=segdepth",
            *(f"--policy.{k}={v}" for k, v in TINY_SEGDEPTH.items()),
            f"--dataset.repo_id={repo_id}",
            f"--dataset.root={root}",
            "--seed=3",
            *short_train_flags(tmp_path / name, steps=3, batch_size=4),
        ]
        proc = run_cli(args, cwd=tmp_path)
        logs.append(losses(proc.stdout + proc.stderr))
    assert len(logs[0]) == 3 and logs[0] == logs[1]


def test_the_command_is_installed_with_help():
    proc = run_cli(["so101-training-copy", "--help"], cwd=os.getcwd())
    assert "--keep" in proc.stdout and "--dataset.root" in proc.stdout
