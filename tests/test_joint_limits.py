"""Real-arm joint limits: read from the follower's calibration (checked against LeRobot's own bus arithmetic) or from
`lerobot-find-joint-limits` output, and clipped to by every policy's postprocessor (a hand-computed case each)."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from lerobot.configs import FeatureType, PolicyFeature
from test_real_arm_rollout import CALIBRATION, write_calibration

from so101_core import JOINT_NAMES
from so101_core.joint_limits import (
    calibration_path,
    limits_from_calibration,
    limits_from_find_joint_limits,
    read_joint_limits,
)
from so101_devtools.tiny_models import tiny_siglip_dir, tiny_smolvlm_dir

# What lerobot-find-joint-limits prints at the end (lerobot/scripts/lerobot_find_joint_limits.py, 0.6.1).
FIND_JOINT_LIMITS_OUTPUT = """
Time limit reached.

Disconnecting devices...

========================================
FINAL RESULTS
========================================

# End Effector Bounds (x, y, z):
max_ee = [0.3512, 0.2104, 0.3307]
min_ee = [-0.0411, -0.2231, 0.0123]

# Joint Position Limits (radians):
max_pos = [95.1648, 88.5714, 91.2088, 97.9341, 150.3297, 98.6667]
min_pos = [-92.4835, -99.4725, -88.9011, -95.3846, -148.6813, 1.3333]
"""


def test_calibration_limits_are_where_lerobots_bus_puts_the_range_ends(tmp_path):
    """Reference: LeRobot's FeetechMotorsBus._normalize maps each motor's range_min / range_max ticks to the units
    the follower reports (degrees, gripper 0-100); the limits read from the file must be those numbers."""
    from lerobot.motors import Motor, MotorCalibration, MotorNormMode
    from lerobot.motors.feetech import FeetechMotorsBus

    path = write_calibration(tmp_path / "arm.json")
    modes = {name: MotorNormMode.DEGREES for name in JOINT_NAMES} | {"gripper": MotorNormMode.RANGE_0_100}
    bus = FeetechMotorsBus(
        port="/dev/null",
        motors={name: Motor(i, "sts3215", modes[name]) for name, (i, *_) in CALIBRATION.items()},
        calibration={
            name: MotorCalibration(id=i, drive_mode=d, homing_offset=0, range_min=lo, range_max=hi)
            for name, (i, d, lo, hi) in CALIBRATION.items()
        },
    )
    expected = [[bus._normalize({i: lo})[i], bus._normalize({i: hi})[i]] for i, _, lo, hi in CALIBRATION.values()]
    limits = limits_from_calibration(path)
    np.testing.assert_allclose(limits, expected, atol=0.006)  # rounded to 0.01 degree
    assert limits[0] == pytest.approx([-57.14, 57.14]) and limits[5] == [0.0, 100.0]  # by hand: 650 * 360 / 4095
    assert read_joint_limits(path) == limits


def test_find_joint_limits_output_is_read_in_the_followers_order(tmp_path):
    path = tmp_path / "limits.txt"
    path.write_text(FIND_JOINT_LIMITS_OUTPUT)
    limits = limits_from_find_joint_limits(path)
    assert limits[0] == [-92.4835, 95.1648] and limits[5] == [1.3333, 98.6667]
    assert read_joint_limits(path) == limits


def test_bad_limit_files_are_refused_naming_the_file_and_the_value(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.json does not exist"):
        read_joint_limits(tmp_path / "nope.json")
    text = tmp_path / "other.txt"
    text.write_text("max_pos = [1, 2, 3]\n")
    with pytest.raises(ValueError, match=r"other.txt is not lerobot-find-joint-limits output.*found \['max_pos'\]"):
        read_joint_limits(text)
    text.write_text("max_pos = [1, 2, 3]\nmin_pos = [0, 1, 2]\n")
    with pytest.raises(ValueError, match="min_pos has 3 values and max_pos 3; the SO-101 follower has 6 motors"):
        read_joint_limits(text)
    calibration = write_calibration(tmp_path / "arm.json")
    broken = calibration.read_text().replace('"range_max": 2700', '"range_max": 1000')
    calibration.write_text(broken)
    with pytest.raises(ValueError, match=r"arm.json: shoulder_pan needs range_min < range_max, got 1400 and 1000"):
        read_joint_limits(calibration)


def test_calibration_path_is_lerobots(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_LEROBOT_CALIBRATION", raising=False)
    monkeypatch.setenv("HF_LEROBOT_HOME", str(tmp_path))
    assert calibration_path("arm") == tmp_path / "calibration" / "robots" / "so_follower" / "arm.json"
    monkeypatch.setenv("HF_LEROBOT_CALIBRATION", str(tmp_path / "cal"))
    assert calibration_path("arm") == tmp_path / "cal" / "robots" / "so_follower" / "arm.json"


def test_a_config_reads_its_limits_file_once_and_keeps_them(tmp_path):
    from lerobot_policy_segdepth import SegDepthConfig

    path = write_calibration(tmp_path / "arm.json")
    cfg = SegDepthConfig(joint_limits_file=str(path))
    assert cfg.joint_limits == limits_from_calibration(path)
    assert cfg.joint_limits_source == f"joint_limits_file {path}"
    # the same file again (a so101-joint-limits copy loaded where the file is): fine; another arm's file: refused,
    # since a loaded checkpoint's postprocessor would go on clipping into the limits it holds
    assert SegDepthConfig(joint_limits=cfg.joint_limits, joint_limits_file=str(path)).joint_limits == cfg.joint_limits
    other = [[low - 5, high + 5] for low, high in cfg.joint_limits]
    with pytest.raises(ValueError, match=r"joint_limits_file=.*arm.json.*so101-joint-limits --policy.path="):
        SegDepthConfig(joint_limits=other, joint_limits_file=str(path))
    path.unlink()  # a saved config holds the numbers: it loads where the file is not
    assert SegDepthConfig(joint_limits=cfg.joint_limits, joint_limits_file=str(path)).joint_limits == cfg.joint_limits
    with pytest.raises(ValueError, match=r"--policy.joint_limits: wrist_roll needs \(low, high\) with low < high"):
        SegDepthConfig(joint_limits=[[-1, 1]] * 4 + [[2, 1], [0, 100]])


# ----- every policy's postprocessor clips, after unnormalising (and, for segdepth, after delta -> absolute) -------
LIMITS = [[-100.0, 100.0], [-90.0, 90.0], [-80.0, 80.0], [-95.0, 95.0], [-160.0, 160.0], [0.0, 100.0]]
# Stats under which MEAN_STD (x * 100 + 10) and MIN_MAX ((x + 1) / 2 * 200 - 90) unnormalise alike: 100 x + 10.
STATS = {"mean": torch.full((6,), 10.0), "std": torch.full((6,), 100.0), "min": torch.full((6,), -90.0)}
STATS |= {"max": torch.full((6,), 110.0)}
NORMALISED = torch.tensor([[2.5, -2.0, 0.5, 0.855, -1.8, 1.2]])
# By hand: 100 x + 10 = [260, -190, 60, 95.5, -170, 130], then into LIMITS:
EXPECTED = torch.tensor([[100.0, -90.0, 60.0, 95.0, -160.0, 100.0]])


def _features(cameras: tuple[str, ...]) -> dict:
    inputs = {f"observation.images.{c}": PolicyFeature(FeatureType.VISUAL, (3, 32, 32)) for c in cameras}
    inputs["observation.state"] = PolicyFeature(FeatureType.STATE, (6,))
    return {"input_features": inputs, "output_features": {"action": PolicyFeature(FeatureType.ACTION, (6,))}}


def _segdepth():
    from lerobot_policy_segdepth import SegDepthConfig, make_segdepth_pre_post_processors

    cfg = SegDepthConfig(device="cpu", action_mode="absolute")
    return cfg, make_segdepth_pre_post_processors


def _segvla():
    from lerobot_policy_segvla import SegVLAConfig, make_segvla_pre_post_processors

    return SegVLAConfig(device="cpu", vlm_model_name=str(tiny_smolvlm_dir())), make_segvla_pre_post_processors


def _imf():
    from lerobot_policy_imf import IMFConfig
    from lerobot_policy_imf.processor_imf import make_imf_pre_post_processors

    return IMFConfig(device="cpu", siglip_model=str(tiny_siglip_dir()), cameras=["wrist"]), make_imf_pre_post_processors


def _hlrp():
    from lerobot_policy_hlrp import HLRPConfig
    from lerobot_policy_hlrp.processor_hlrp import make_hlrp_pre_post_processors
    from lerobot_policy_hlrp.trunk import CoreConfig

    core = CoreConfig(vlm_model_name=str(tiny_smolvlm_dir()), tokenizer_max_length=16)
    return HLRPConfig(device="cpu", core=core, cameras=["wrist"]), make_hlrp_pre_post_processors


@pytest.mark.parametrize("make", [_segdepth, _segvla, _imf, _hlrp], ids=["segdepth", "segvla", "imf", "hlrp"])
def test_every_policys_postprocessor_clips_into_the_joint_limits(make):
    cfg, factory = make()
    cfg.joint_limits = LIMITS
    for key, value in _features(("wrist",)).items():
        setattr(cfg, key, value)
    pre, post = factory(cfg, dataset_stats={"action": STATS, "observation.state": STATS})
    assert torch.allclose(post(NORMALISED.clone()), EXPECTED, atol=1e-4)
    # the cameras the policy reads: segdepth's ground-truth source reads the twin's depth and segmentation maps
    wanted = cfg.image_keys if type(cfg).__name__ == "SegDepthConfig" else ["observation.images.wrist"]
    check = [step for step in pre.steps if type(step).__name__ == "RequireCamerasStep"]
    assert len(check) == 1 and check[0].cameras == wanted
    with pytest.raises(ValueError, match=re.escape(f"wants cameras {wanted}; the robot provides []")):
        pre({"observation.state": torch.zeros(6), "task": "Pick up the red cube and lift it."})


# ----- so101-joint-limits: a twin-trained checkpoint rewritten for a real arm ------------------------------------
def _save_segdepth_checkpoint(folder):
    from lerobot_policy_segdepth import SegDepthConfig, make_segdepth_pre_post_processors

    cfg = SegDepthConfig(device="cpu", **_features(("wrist",)))
    for pipeline in make_segdepth_pre_post_processors(cfg, dataset_stats={"observation.state": STATS}):
        pipeline.save_pretrained(folder)
    cfg._save_pretrained(folder)
    return folder


def _run_joint_limits(monkeypatch, *args: str) -> None:
    import sys

    from so101_commands.set_joint_limits import main

    monkeypatch.setattr(sys, "argv", ["so101-joint-limits", *args])
    main()


def _clip_of(folder):
    from lerobot.processor import PolicyProcessorPipeline

    post = PolicyProcessorPipeline.from_pretrained(folder, config_filename="policy_postprocessor.json")
    (clip,) = [step for step in post.steps if type(step).__name__.endswith("ClipJointTargetsStep")]
    return clip


@pytest.mark.parametrize("checkpoint", ["current", "pre_refactor", "no_clip"])
def test_so101_joint_limits_writes_the_arms_limits_into_a_copy(monkeypatch, tmp_path, capsys, checkpoint):
    import json
    import shutil
    from pathlib import Path

    from so101_core.joint_limits import TWIN_JOINT_LIMITS

    if checkpoint == "current":
        source = _save_segdepth_checkpoint(tmp_path / "twin")
    else:  # segdepth's clip under its old registry name; or a postprocessor with no clip at all (as imf's was)
        source = shutil.copytree(Path(__file__).parent / "fixtures" / "pre_refactor" / "segdepth", tmp_path / "twin")
    if checkpoint == "no_clip":
        post = json.loads((source / "policy_postprocessor.json").read_text())
        post["steps"] = [s for s in post["steps"] if "clip" not in s["registry_name"]]
        (source / "policy_postprocessor.json").write_text(json.dumps(post))
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    calibration = write_calibration(tmp_path / "calibration" / "my_arm.json")
    out = tmp_path / "arm"
    _run_joint_limits(
        monkeypatch, f"--policy.path={source}", "--robot_id=my_arm", f"--calibration_dir={calibration.parent}",
        f"--output_dir={out}",
    )  # fmt: skip
    expected = limits_from_calibration(calibration)
    clip = _clip_of(out)
    assert clip.limits == expected and clip.source == str(calibration)
    assert json.loads((out / "config.json").read_text())["joint_limits"] == expected
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before, "the source checkpoint was changed"
    printed = capsys.readouterr().out
    assert "| shoulder_pan |" in printed and str(expected[0]) in printed
    if checkpoint != "no_clip":
        assert _clip_of(source).limits == [list(p) for p in TWIN_JOINT_LIMITS]
        assert "(the checkpoint had the twin's MJCF ranges)" in printed
    else:
        names = [s["registry_name"] for s in json.loads((out / "policy_postprocessor.json").read_text())["steps"]]
        assert names[-2:] == ["so101_clip_joint_targets", "device_processor"]
    with pytest.raises(FileExistsError, match="exists; choose a new folder"):
        _run_joint_limits(
            monkeypatch, f"--policy.path={source}", f"--joint_limits_file={calibration}", f"--output_dir={out}"
        )


def test_so101_joint_limits_refuses_a_missing_calibration_before_writing(monkeypatch, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no calibration for --robot_id=ghost: .*ghost\.json does not exist"):
        _run_joint_limits(
            monkeypatch, f"--policy.path={tmp_path}", "--robot_id=ghost", f"--calibration_dir={tmp_path}",
            f"--output_dir={tmp_path / 'out'}",
        )  # fmt: skip
    with pytest.raises(ValueError, match="exactly one of --robot_id"):
        _run_joint_limits(monkeypatch, f"--policy.path={tmp_path}", f"--output_dir={tmp_path / 'out'}")
    assert not (tmp_path / "out").exists()
