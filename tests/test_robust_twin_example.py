"""examples/robust_twin.py: a finished comparison reprints its table from the archive alone (no recording, no
training, no evaluation), with each arm's pooled rate and the cue effect per look; bad arguments are refused."""

import json
from pathlib import Path

import pytest
from clitools import load_example

ROOT = Path(__file__).resolve().parent.parent
LOOKS = ["none", "shifted", "unseen"]


@pytest.fixture(scope="module")
def robust_twin():
    return load_example("robust_twin")


def eval_info(successes: list[int], mean_return: float = 50.0) -> dict:
    n = len(successes)
    return {
        "overall": {"pc_success": 100.0 * sum(successes) / n, "n_episodes": n, "avg_sum_reward": mean_return},
        "per_task": [{"task_group": "so101_twin", "task_id": 0, "metrics": {"successes": [s == 1 for s in successes]}}],
    }


def test_the_table_is_reprinted_from_the_archive(robust_twin, tmp_path, monkeypatch, capsys):
    archive = tmp_path / "archive"
    archive.mkdir()
    wins = {"segvla": {"none": 15, "shifted": 14, "unseen": 12}, "smolvla": {"none": 15, "shifted": 12, "unseen": 2}}
    for arm, looks in wins.items():
        for seed in (1, 2):
            (archive / f"{arm}_s{seed}_train_wall_s.json").write_text(json.dumps({"seconds": 1800.0 + seed}))
            for look, k in looks.items():
                info = eval_info([1] * k + [0] * (20 - k))
                (archive / f"{arm}_s{seed}_{look}_seed1000_20.json").write_text(json.dumps(info))
    (archive / "segmenter_unseen.json").write_text(json.dumps({"miou": 0.5}))
    out = tmp_path / "out"
    monkeypatch.setattr("sys.argv", ["robust_twin.py", f"--archive_dir={archive}", f"--output_dir={out}",
                                     "--arms=[segvla,smolvla]", "--seeds=[1,2]"])  # fmt: skip
    robust_twin.main()  # nothing to record or train: a call of so101-twin-record or lerobot-train would fail here
    printed = capsys.readouterr().out
    assert "| segvla | unseen | 12/20 | 12/20 | 24/40 = 60% [45, 74] | 30.0/30.0 |" in printed
    assert "| smolvla | unseen | 2/20 | 2/20 | 4/40 = 10% [4, 23] |" in printed
    assert "| unseen | +50 points [+30, +65] | +0.0 / +0.0 |" in printed  # Newcombe by hand: [+29.8, +64.9]
    assert "| none | +0 points" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["segmenter"] == {"unseen": {"miou": 0.5}}
    assert results["segvla"]["1"]["unseen"]["per_episode"] == "1" * 12 + "0" * 8


def test_archived_only_prints_what_is_archived_and_trains_nothing(robust_twin, tmp_path, monkeypatch, capsys):
    archive = tmp_path / "archive"
    archive.mkdir()
    runs = {("segvla", 1): 3, ("segvla", 2): 1, ("smolvla", 1): 1}  # smolvla seed 2 and act not archived
    for (arm, seed), k in runs.items():
        (archive / f"{arm}_s{seed}_train_wall_s.json").write_text(json.dumps({"seconds": 600.0 * seed}))
        for look in LOOKS:
            info = eval_info([1] * k + [0] * (20 - k), mean_return=62.5 if arm == "segvla" else 50.0)
            (archive / f"{arm}_s{seed}_{look}_seed1000_20.json").write_text(json.dumps(info))
    out = tmp_path / "out"
    argv = ["robust_twin.py", f"--archive_dir={archive}", f"--output_dir={out}", "--arms=[segvla,smolvla,act]",
            "--seeds=[1,2]", "--archived_only=true"]  # fmt: skip
    monkeypatch.setattr("sys.argv", argv)

    def no_work(*args, **kwargs):
        raise AssertionError("--archived_only ran a stage")

    monkeypatch.setattr(robust_twin, "train_stage", no_work)
    monkeypatch.setattr(robust_twin, "run_logged", no_work)
    robust_twin.main()
    printed = capsys.readouterr().out
    assert "| segvla | unseen | 3/20 | 1/20 | 4/40 = 10% [4, 23] | 10.0/20.0 |" in printed
    assert "| smolvla | unseen | 1/20 | - | 1/20 = 5% [1, 24] | 10.0/- |" in printed
    assert "| act | unseen | - | - | - | -/- |" in printed
    assert "| unseen | +5 points [" in printed and "| +12.5 / - |" in printed
    assert not (out / "act_s1").exists() and "act" not in json.loads((out / "results.json").read_text())
    with pytest.raises(ValueError, match="--archived_only=true reads the archive: give --archive_dir"):
        robust_twin.RobustTwinConfig(archived_only=True, output_dir=tmp_path)


def test_a_learning_curve_and_held_out_errors_are_reprinted_from_the_archive(
    robust_twin, tmp_path, monkeypatch, capsys
):
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "segvla_s1_train_wall_s.json").write_text(json.dumps({"seconds": 600.0}))
    for run, k, error in (("segvla_s1_001300", 2, 4.5), ("segvla_s1", 5, 3.25)):
        for look in LOOKS:
            info = eval_info([1] * k + [0] * (20 - k))
            (archive / f"{run}_{look}_seed1000_20.json").write_text(json.dumps(info))
            scored = {"action_mae": error + (look == "unseen"), "loss": 0.5}
            if run == "segvla_s1":  # scored after the hold-still reference existed
                scored["hold_mae"] = 4.75 + (look == "unseen")
            (archive / f"{run}_{look}_heldout500000_20_action_error.json").write_text(json.dumps(scored))
    out = tmp_path / "out"
    argv = ["robust_twin.py", f"--archive_dir={archive}", f"--output_dir={out}", "--arms=[segvla]", "--seeds=[1]",
            "--checkpoints=[1300]", "--archived_only=true"]  # fmt: skip
    monkeypatch.setattr("sys.argv", argv)
    robust_twin.main()
    printed = capsys.readouterr().out
    assert "| segvla | unseen | 5/20 | 5/20 = 25% [11, 47] | 10.0 | 4.25 |" in printed
    assert "| segvla | 1 | 1300 | 2/20, 4.50 | 2/20, 4.50 | 2/20, 5.50 |" in printed
    assert "| segvla | 1 | 2600 | 5/20, 3.25 | 5/20, 3.25 | 5/20, 4.25 |" in printed  # the recipe's final step
    assert "| holding still | | | -, 4.75 | -, 4.75 | -, 5.75 |" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["segvla"]["1"]["curve"]["1300"]["none"]["action_error"]["action_mae"] == 4.5
    # a run whose curve point is not archived is not done: it would train (here: refused as archived_only skips it)
    (archive / "segvla_s1_001300_none_seed1000_20.json").unlink()
    cfg = robust_twin.RobustTwinConfig(archive_dir=archive, output_dir=out, arms=["segvla"], checkpoints=[1300])
    assert not robust_twin.run_done(cfg, "segvla", 1)
    cfg.checkpoints = []
    assert robust_twin.run_done(cfg, "segvla", 1)


def test_the_pretrained_tower_is_made_only_for_the_arms_that_freeze_it(robust_twin, tmp_path, monkeypatch, capsys):
    cfg = robust_twin.RobustTwinConfig(output_dir=tmp_path)
    assert robust_twin.reads_tower(cfg, ["segvla", "smolvla_frozen"])
    assert not robust_twin.reads_tower(cfg, ["segvla", "smolvla", "segvla_gt", "segdepth"])
    archive = tmp_path / "archive"
    archive.mkdir()
    scores = {f"test_{look}": {"miou": m, "per_class_iou": {}} for look, m in zip(LOOKS, (0.7, 0.6, 0.5), strict=True)}
    (archive / "vision_tower.json").write_text(json.dumps({"train_time_s": 600.0, "test": scores}))
    argv = ["robust_twin.py", f"--archive_dir={archive}", f"--output_dir={tmp_path / 'out'}", "--arms=[smolvla_frozen]",
            "--seeds=[1]", "--archived_only=true", "--action_error_arms=[]"]  # fmt: skip
    monkeypatch.setattr("sys.argv", argv)
    monkeypatch.setattr(robust_twin, "tower_stage", lambda cfg: pytest.fail("archived_only made the tower"))
    robust_twin.main()
    printed = capsys.readouterr().out
    assert "(10.0 min): mIoU test_none 0.700, test_shifted 0.600, test_unseen 0.500" in printed
    assert "held-out action error" not in printed  # no arm here is scored so: no column of dashes


def test_bad_arguments_are_refused_before_any_work(robust_twin, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"--arms \['diffusion'\] have no config in --config_dir="):
        robust_twin.RobustTwinConfig(arms=["diffusion"], output_dir=tmp_path)
    with pytest.raises(ValueError, match=r"--appearances='dusk' is not an appearance level"):
        robust_twin.RobustTwinConfig(appearances=["dusk"], output_dir=tmp_path)
    with pytest.raises(ValueError, match=r"--checkpoints=\[0\]: steps must be >= 1"):
        robust_twin.RobustTwinConfig(checkpoints=[0], output_dir=tmp_path)
    with pytest.raises(ValueError, match=r"--save_freq must be >= 1, got 0"):
        robust_twin.RobustTwinConfig(save_freq=0, output_dir=tmp_path)


def test_every_arm_config_trains_on_the_shifted_recording():
    import draccus

    for config in (ROOT / "configs" / "robust_twin").rglob("*.yaml"):
        with open(config) as f:
            data = draccus.load(dict, f)
        assert data["dataset"]["repo_id"] == "local/so101_twin_liftcube_shifted", config


@pytest.mark.parametrize(
    "arm, keep",
    [
        ("segvla", ["front", "wrist"]),
        ("segvla_gt", ["front", "front_segmentation", "wrist", "wrist_segmentation"]),
        ("smolvla", ["front", "wrist"]),
        ("act", ["front", "wrist"]),
        ("segdepth", ["wrist_depth", "wrist_segmentation"]),
        ("segdepth_rgb", ["wrist", "wrist_depth"]),
        ("segdepth_seg", ["wrist", "wrist_depth"]),
        ("segdepth_rgbonly", ["wrist"]),
    ],
)
def test_each_arm_trains_on_a_copy_with_only_the_cameras_it_reads(robust_twin, tmp_path, monkeypatch, arm, keep):
    import draccus

    calls = []
    monkeypatch.setattr(robust_twin, "run_logged", lambda args, *rest, **kw: calls.append(args) or 0.0)
    cfg = robust_twin.RobustTwinConfig(output_dir=tmp_path)
    with open(ROOT / "configs" / "robust_twin" / f"{arm}.yaml") as f:
        recipe = draccus.load(dict, f)
    recording = tmp_path / "data" / "so101_twin_liftcube_shifted"
    flags = robust_twin.training_copy(cfg, recipe, recording)
    (args,) = calls
    assert args[0].endswith("so101-training-copy")
    assert f"--keep=[{','.join(f'observation.images.{k}' for k in keep)}]" in args
    copy = recording.parent / ("so101_twin_liftcube_shifted_train_" + "_".join(keep))
    assert f"--output_dir={copy}" in args and f"--dataset.root={recording}" in args
    assert flags == ["--dataset.repo_id=local/so101_twin_liftcube_shifted_train", f"--dataset.root={copy}"]


def test_each_segmenter_is_trained_only_for_the_arms_that_read_it(robust_twin, tmp_path):
    cfg = robust_twin.RobustTwinConfig(output_dir=tmp_path)
    old, robust = str(cfg.segmenter_dir / "run" / "best"), str(cfg.perception_dir / "run" / "best")
    assert robust_twin.segmenter_paths(cfg, ["segdepth_seg", "segdepth_rgbonly"]) == {robust}
    assert robust_twin.segmenter_paths(cfg, ["segvla", "segdepth_rgb"]) == {old}
    assert robust_twin.segmenter_paths(cfg, ["segdepth", "smolvla", "act"]) == set()


def test_the_perception_table_is_reprinted_from_the_archive(robust_twin, tmp_path, monkeypatch, capsys):
    archive = tmp_path / "archive"
    archive.mkdir()
    per_class = {"background": 0.9, "table": 0.95, "cube": 0.875, "static_finger": 0.8, "moving_finger": 0.7}
    metrics = {"miou": 0.845, "per_class_iou": {"unlabeled": None, **per_class}, "disparity_error_255": 12.34}
    (archive / "perception_test_unseen.json").write_text(json.dumps(metrics))
    (archive / "segdepth_rgbonly_s1_train_wall_s.json").write_text(json.dumps({"seconds": 600.0}))
    for look in LOOKS:
        info = eval_info([1] * 9 + [0] * 11)
        (archive / f"segdepth_rgbonly_s1_{look}_seed1000_20.json").write_text(json.dumps(info))
    monkeypatch.setattr("sys.argv", ["robust_twin.py", f"--archive_dir={archive}", f"--output_dir={tmp_path / 'out'}",
                                     "--arms=[segdepth_rgbonly]", "--seeds=[1]"])  # fmt: skip
    robust_twin.main()
    printed = capsys.readouterr().out
    assert "| test_unseen | 0.900 | 0.950 | 0.875 | 0.800 | 0.700 | 0.845 | 12.3 |" in printed
    assert "| segdepth_rgbonly | unseen | 9/20 | 9/20 = 45% [26, 66] | 10.0 |" in printed


@pytest.mark.slow  # ~1 min: the stock lerobot-train's first steps of each real-size recipe on tiny models
@pytest.mark.parametrize("arm", ["segvla", "smolvla"])
def test_the_real_size_recipes_take_their_first_steps_on_tiny_models(arm, gt_dataset, tmp_path):
    """configs/robust_twin/real/<arm>.yaml as printed, with only what a CPU test must swap: SmolVLM2-500M for a tiny
    random SmolVLM with weights (loaded as the recipe loads it, tower frozen), the robust segmenter for a tiny one,
    512 px for 32, the GPU for the CPU, the recording for two recorded episodes, and the length."""
    from clitools import run_cli, short_train_flags
    from test_segvla import save_segmenter_checkpoint

    from so101_commands.random_vlm import save_smolvlm

    vlm = save_smolvlm(tmp_path / "vlm", weights=True)
    flags = [
        f"--config_path={ROOT / 'configs' / 'robust_twin' / 'real' / f'{arm}.yaml'}",
        f"--policy.vlm_model_name={vlm}",
        "--policy.num_vlm_layers=2",
        "--policy.resize_imgs_with_padding=[32,32]",
        "--dataset.repo_id=local/twin_demo",
        f"--dataset.root={gt_dataset}",
        *short_train_flags(tmp_path / "run", steps=2),
    ]
    if arm == "segvla":
        save_segmenter_checkpoint(tmp_path / "segmenter")
        flags.append(f"--policy.segmentation_segmenter_path={tmp_path / 'segmenter'}")
    run_cli(["lerobot-train", *flags], cwd=tmp_path)
    saved = json.loads((tmp_path / "run/checkpoints/last/pretrained_model/config.json").read_text())
    assert saved["load_vlm_weights"] and saved["freeze_vision_encoder"] and saved["train_expert_only"]
    assert saved["chunk_size"] == 20 and saved["n_action_steps"] == 10
