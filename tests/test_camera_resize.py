"""Issue 40, "any camera size": every policy's preprocessor brings a camera frame of another size to the size its
checkpoint was trained on (`so101_resize_cameras`: aspect kept, centre crop or pad, recorded in the checkpoint), and
refuses only what cannot be mapped, before any action.

The step's behaviours one by one, then the stock lerobot-rollout of a 96x128 checkpoint of each policy on the twin
robot's 480x640 cameras.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from clitools import TASK, rollout_in_twin, run_cli
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.policies import get_policy_class
from lerobot.policies.factory import make_pre_post_processors
from lerobot.processor import PolicyProcessorPipeline
from test_policy_contract import CASES, tiny_config

from so101_devtools.tiny_models import tiny_siglip_dir, tiny_smolvlm_dir
from so101_policy_common.pipeline import camera_resize_step
from so101_policy_common.pretrained import check_camera_resize_flags
from so101_policy_common.steps import ResizeCamerasStep, fit_frame

TRAINED = (96, 128)
CAMERA = (480, 640)  # the twin robot's default, a webcam's 640x480
FRONT, WRIST = "observation.images.front", "observation.images.wrist"


# ----- the step -------------------------------------------------------------------------------------------------
def test_crop_keeps_the_centre_at_the_trained_aspect():
    frame = torch.full((1, 3, 60, 100), 0.5)  # 5:3 into 4:3: the centre 60x80 is kept, 10 columns cut each side
    frame[..., :10] = frame[..., 90:] = 1.0
    step = ResizeCamerasStep(sizes={FRONT: [30, 40]}, mode="crop", aspect_tolerance=0.25)
    out = step.observation({FRONT: frame})[FRONT]
    assert out.shape == (1, 3, 30, 40)
    torch.testing.assert_close(out, torch.full_like(out, 0.5))


def test_pad_keeps_the_whole_frame_with_zero_borders():
    frame = torch.ones(3, 40, 40)  # 1:1 into 2:3: scaled to 20x20, 5 zero columns each side
    step = ResizeCamerasStep(sizes={FRONT: [20, 30]}, mode="pad", aspect_tolerance=0.4)
    out = step.observation({FRONT: frame})[FRONT]
    assert out.shape == (3, 20, 30)
    assert (out[..., 5:25] == 1).all() and (out[..., :5] == 0).all() and (out[..., 25:] == 0).all()


def test_equal_aspects_resize_the_same_in_both_modes_and_time_axes_are_kept():
    frame = torch.rand(2, 3, 3, *CAMERA)  # (B, T, C, H, W), as a training batch with a frame history
    crop = fit_frame(frame, TRAINED, "crop", nearest=False)
    assert crop.shape == (2, 3, 3, *TRAINED)
    torch.testing.assert_close(crop, fit_frame(frame, TRAINED, "pad", nearest=False), rtol=0, atol=0)
    assert crop.min() >= 0 and crop.max() <= 1


def test_a_frame_at_the_trained_size_is_untouched_bit_for_bit():
    frame, state = torch.rand(1, 3, *TRAINED), torch.rand(1, 6)
    observation = {FRONT: frame, "observation.state": state}
    out = ResizeCamerasStep(sizes={FRONT: list(TRAINED)}).observation(observation)
    assert out is observation and out[FRONT] is frame


def test_another_aspect_beyond_the_tolerance_is_refused_naming_the_key_the_sizes_and_the_flag():
    step = ResizeCamerasStep(sizes={FRONT: list(TRAINED)})  # default: crop, 10%
    message = (
        "'observation.images.front' is 720x1280 (height x width), but this checkpoint was trained on 96x128 frames: "
        "camera_resize=crop would cut off 25% of the frame, more than its camera_aspect_tolerance=0.1"
    )
    with pytest.raises(ValueError, match=re.escape(message)) as refused:
        step.observation({FRONT: torch.rand(3, 720, 1280)})
    assert "--policy.camera_resize=crop|pad" in str(refused.value) and "480x640" in str(refused.value)
    # within the tolerance: a 5:4 camera on a 4:3 checkpoint loses 6%
    assert step.observation({FRONT: torch.rand(3, 480, 600)})[FRONT].shape == (3, *TRAINED)


def test_depth_and_label_maps_are_resized_by_nearest_neighbour():
    from lerobot_policy_segvla import SegVLAConfig

    cfg = SegVLAConfig(
        device="cpu",
        vlm_model_name=str(tiny_smolvlm_dir()),
        input_features={
            FRONT: PolicyFeature(FeatureType.VISUAL, (3, *TRAINED)),
            f"{FRONT}_segmentation": PolicyFeature(FeatureType.VISUAL, (1, *TRAINED)),
            f"{FRONT}_depth": PolicyFeature(FeatureType.VISUAL, (1, *TRAINED)),
        },
    )
    step = camera_resize_step(cfg)
    assert step.nearest_keys == [f"{FRONT}_depth", f"{FRONT}_segmentation"]
    assert step.sizes == {key: list(TRAINED) for key in (FRONT, f"{FRONT}_depth", f"{FRONT}_segmentation")}
    torch.manual_seed(0)
    labels = torch.randint(0, 6, (1, 1, *CAMERA)).float() * 40  # codes, as the twin's segmentation maps hold
    depth = torch.rand(1, 1, *CAMERA)
    rgb = torch.rand(1, 3, *CAMERA)
    out = step.observation({f"{FRONT}_segmentation": labels, f"{FRONT}_depth": depth, FRONT: rgb})
    assert out[f"{FRONT}_segmentation"].shape == (1, 1, *TRAINED)
    assert set(out[f"{FRONT}_segmentation"].unique().tolist()) <= set(labels.unique().tolist())
    assert torch.isin(out[f"{FRONT}_depth"], depth).all(), "a depth value that no pixel had"
    assert not torch.isin(out[FRONT], rgb).all(), "RGB is interpolated (antialiased), not sampled"


def test_the_mode_is_a_validated_policy_flag_recorded_in_the_saved_preprocessor(tmp_path):
    from lerobot_policy_imf import IMFConfig, make_imf_pre_post_processors

    with pytest.raises(ValueError, match=re.escape("--policy.camera_resize='stretch'; choose one of ['crop', 'pad']")):
        IMFConfig(device="cpu", camera_resize="stretch")
    with pytest.raises(ValueError, match=re.escape("--policy.camera_aspect_tolerance=1.5 must be in [0, 1)")):
        IMFConfig(device="cpu", camera_aspect_tolerance=1.5)
    features = {key: PolicyFeature(FeatureType.VISUAL, (3, *TRAINED)) for key in (FRONT, WRIST)}
    cfg = IMFConfig(
        device="cpu",
        siglip_model=str(tiny_siglip_dir()),
        camera_resize="pad",
        camera_aspect_tolerance=0.3,
        input_features=features | {"observation.state": PolicyFeature(FeatureType.STATE, (6,))},
    )
    pre, _ = make_imf_pre_post_processors(cfg)
    pre.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "policy_preprocessor.json").read_text())["steps"]
    names = [step["registry_name"] for step in saved]
    assert names[:3] == ["rename_observations_processor", "so101_require_cameras", "so101_resize_cameras"]
    assert saved[2]["config"] == {
        "sizes": {FRONT: list(TRAINED), WRIST: list(TRAINED)},
        "mode": "pad",
        "aspect_tolerance": 0.3,
        "nearest_keys": [],
    }
    loaded = PolicyProcessorPipeline.from_pretrained(tmp_path, config_filename="policy_preprocessor.json")
    (step,) = [s for s in loaded.steps if isinstance(s, ResizeCamerasStep)]
    assert (step.mode, step.aspect_tolerance) == ("pad", 0.3)
    # a flag given when loading the checkpoint would be ignored by the saved pipeline: refused instead
    check_camera_resize_flags(tmp_path, cfg)
    with pytest.raises(ValueError, match=r"camera_resize=crop .* resizes cameras with camera_resize=pad"):
        check_camera_resize_flags(tmp_path, IMFConfig(device="cpu", camera_aspect_tolerance=0.3))


# ----- lerobot-rollout of a 96x128 checkpoint on the twin's 480x640 cameras ---------------------------------------
# what the twin robot must record beside its RGB cameras for each policy, and the cameras each checkpoint reads
ROBOT_FLAGS = {
    "segdepth": ("--robot.cameras=[wrist]", "--robot.depth=true", "--robot.segmentation=true"),
    "segvla": ("--robot.segmentation=true",),
    "imf": (),
    "hlrp": (),
}
CAMERAS = {
    "segdepth": [f"{WRIST}_depth", f"{WRIST}_segmentation"],
    "segvla": [FRONT, WRIST],
    "imf": [FRONT, WRIST],
    "hlrp": [FRONT],
}


def save_checkpoint(case, folder: Path) -> Path:
    """A tiny checkpoint of `case`'s policy trained (declared) on 96x128 frames, saved as lerobot-train saves it."""
    cfg = tiny_config(case)
    inputs = {key: PolicyFeature(FeatureType.VISUAL, (3 if key in (FRONT, WRIST) else 1, *TRAINED))
              for key in CAMERAS[case.type]}  # fmt: skip
    cfg.input_features = inputs | {"observation.state": PolicyFeature(FeatureType.STATE, (6,))}
    cfg.output_features = {"action": PolicyFeature(FeatureType.ACTION, (6,))}
    stats = {
        "observation.state": {"mean": torch.zeros(6), "std": torch.full((6,), 50.0)},
        "action": {"mean": torch.zeros(6), "std": torch.full((6,), 30.0),
                   "min": torch.full((6,), -100.0), "max": torch.full((6,), 100.0)},
    }  # fmt: skip
    torch.manual_seed(0)
    policy = get_policy_class(case.type)(cfg, dataset_stats=stats)
    pre, post = make_pre_post_processors(cfg, dataset_stats=stats)
    policy.save_pretrained(folder)
    pre.save_pretrained(folder)
    post.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def imf_checkpoint(tmp_path_factory) -> Path:
    (case,) = [c for c in CASES if c.type == "imf"]
    return save_checkpoint(case, tmp_path_factory.mktemp("imf") / "pretrained_model")


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.type)
def test_a_96x128_checkpoint_rolls_out_on_the_twins_480x640_cameras(case, tmp_path):
    checkpoint = save_checkpoint(case, tmp_path / "pretrained_model")
    rollout_in_twin(checkpoint, CAMERA, tmp_path, flags=ROBOT_FLAGS[case.type])


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flags", "refusal"),
    [
        (("--robot.cameras=[front]",), "missing ['observation.images.wrist']"),
        (
            ("--robot.observation_height=480", "--robot.observation_width=480"),
            "is 480x480 (height x width), but this checkpoint",
        ),
    ],
    ids=["missing_camera", "other_aspect"],
)
def test_lerobot_rollout_refuses_what_cannot_be_mapped_before_any_action(imf_checkpoint, tmp_path, flags, refusal):
    proc = run_cli(
        [
            "lerobot-rollout",
            "--strategy.type=base",
            f"--policy.path={imf_checkpoint}",
            "--robot.type=so101_twin",
            *flags,
            f"--task={TASK}",
            "--duration=1",
            "--device=cpu",
            "--return_to_initial_position=false",
        ],
        cwd=tmp_path,
        check=False,
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode != 0 and refusal in log, log[-4000:]
    assert "twin SO101Twin disconnected" in log


def test_so101_joint_limits_adds_the_step_to_a_checkpoint_saved_before_it(monkeypatch, tmp_path):
    """An old checkpoint (no so101_resize_cameras): the copy so101-joint-limits writes for a real arm resizes."""
    import sys

    from so101_commands.set_joint_limits import main
    from so101_core.joint_limits import TWIN_JOINT_LIMITS

    source = shutil.copytree(Path(__file__).parent / "fixtures" / "pre_refactor" / "segdepth", tmp_path / "old")
    limits = tmp_path / "find_joint_limits.txt"  # a saved lerobot-find-joint-limits output
    low, high = zip(*TWIN_JOINT_LIMITS, strict=True)
    limits.write_text(f"max_pos = {list(high)}\nmin_pos = {list(low)}\n")
    args = [f"--policy.path={source}", f"--joint_limits_file={limits}", f"--output_dir={tmp_path / 'arm'}"]
    monkeypatch.setattr(sys, "argv", ["so101-joint-limits", *args])
    main()
    pre = PolicyProcessorPipeline.from_pretrained(tmp_path / "arm", config_filename="policy_preprocessor.json")
    names = [type(step).__name__ for step in pre.steps]
    assert names[:2] == ["RenameObservationsProcessorStep", "ResizeCamerasStep"]
    step = pre.steps[1]
    keys = [f"{WRIST}_depth", f"{WRIST}_segmentation"]
    assert step.sizes == {key: [40, 48] for key in keys} and step.nearest_keys == keys
