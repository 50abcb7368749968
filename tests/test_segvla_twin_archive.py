"""examples/segvla_twin.py's archive (so101_devtools.twin_runs): runs archived on one machine are reused on another
only where they trained on the same recording (the arms of a seed must share one), and the recording's fingerprint
follows its content, not its files' bytes."""

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from clitools import load_example

from so101_devtools import twin_runs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def segvla_twin():
    return load_example("segvla_twin")


def write_recording(root: Path, actions: list[list[float]], compression: str = "snappy") -> Path:
    (root / "data" / "chunk-000").mkdir(parents=True, exist_ok=True)
    (root / "meta").mkdir(parents=True, exist_ok=True)
    n = len(actions)
    table = pa.table(
        {
            "action": actions,
            "observation.state": [[float(i)] * 2 for i in range(n)],
            "episode_index": [0] * n,
            "frame_index": list(range(n)),
        }
    )
    pq.write_table(table, root / "data" / "chunk-000" / "file-000.parquet", compression=compression)
    (root / "meta" / "info.json").write_text(json.dumps({"total_episodes": 1, "total_frames": n}))
    return root


def test_the_fingerprint_follows_the_frames_not_the_file_bytes(tmp_path):
    actions = [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]
    a = twin_runs.recording_fingerprint(write_recording(tmp_path / "a", actions))
    b = twin_runs.recording_fingerprint(write_recording(tmp_path / "b", actions, compression="zstd"))
    changed = [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6000001]]
    c = twin_runs.recording_fingerprint(write_recording(tmp_path / "c", changed))
    assert a == b
    assert a["sha256"] != c["sha256"]
    assert a["frames"] == 3 and a["episodes"] == 1


def test_the_arms_of_a_seed_must_share_a_recording(segvla_twin, tmp_path):
    cfg = segvla_twin.SegVLATwinConfig(archive_dir=tmp_path / "archive", arms=["cues_gt", "no_cues"])
    here = {"sha256": "a" * 64, "episodes": 200, "frames": 30000}
    elsewhere = {"sha256": "b" * 64, "episodes": 200, "frames": 30000}
    cfg.archive_dir.mkdir()
    (cfg.archive_dir / "cues_gt_s2_recording.json").write_text(json.dumps(elsewhere))

    twin_runs.check_same_recording(cfg, elsewhere, seed=2)  # the same recording: fine
    twin_runs.check_same_recording(cfg, here, seed=3)  # another seed may be another recording
    with pytest.raises(RuntimeError, match=r"seed 2's cues_gt run .* another recording .*'b{64}'.*'a{64}'"):
        twin_runs.check_same_recording(cfg, here, seed=2)


def test_training_minutes_survive_a_kill_up_to_the_last_checkpoint(segvla_twin, tmp_path, monkeypatch):
    """A part killed mid-run counts up to its last saved checkpoint (the rest is redone when it resumes), so the
    archived minutes are what it took to make the final checkpoint."""
    import os

    cfg = segvla_twin.SegVLATwinConfig(output_dir=tmp_path / "runs", archive_dir=None, arms=["cues_gt"])
    monkeypatch.setattr(twin_runs, "recording_fingerprint", lambda root: {"sha256": "a" * 64})
    run = cfg.output_dir / "cues_gt_s1"
    parts = []

    def killed_after_a_checkpoint(command, log, desc, total, pattern, env):
        assert not run.exists()  # lerobot-train starts a fresh run only in a new folder
        parts.append(command)
        last = run / "checkpoints" / "last" / "pretrained_model"
        last.mkdir(parents=True)
        (last / "train_config.json").write_text("{}")
        (last / "model.safetensors").write_bytes(b"")
        started = json.loads((cfg.output_dir / "cues_gt_s1_open_part.json").read_text())["started"]
        os.utime(last / "model.safetensors", (started + 100.0, started + 100.0))  # saved 100 s into the part
        raise KeyboardInterrupt

    def resumed_to_the_end(command, log, desc, total, pattern, env):
        parts.append(command)
        final = run / "checkpoints" / "000008" / "pretrained_model"
        final.mkdir(parents=True)
        (final / "model.safetensors").write_bytes(b"")
        return 50.0

    monkeypatch.setattr(twin_runs, "run_logged", killed_after_a_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        twin_runs.train_run(cfg, "cues_gt", 1, tmp_path, 8, ["--policy.type=segvla"], save_freq=3, machine="here")
    monkeypatch.setattr(twin_runs, "run_logged", resumed_to_the_end)
    twin_runs.train_run(cfg, "cues_gt", 1, tmp_path, 8, ["--policy.type=segvla"], machine="here")
    assert "--save_freq=3" in parts[0]  # the fresh part saves as asked; the resumed one keeps its saved config
    assert "--resume=true" in parts[1] and not any(arg.startswith("--save_freq") for arg in parts[1])
    timing = json.loads((run / "train_wall_s.json").read_text())
    assert timing == {"seconds": pytest.approx(150.0), "machine": "here"}  # 100 s to the checkpoint, then 50
    assert not (cfg.output_dir / "cues_gt_s1_open_part.json").exists()
