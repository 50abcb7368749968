"""The twin's dry run with ground truth, as docs/twin.md shows it: `lerobot-rollout --robot.type=so101_twin
--robot.depth=true --robot.segmentation=true` with a segdepth checkpoint that reads the twin's depth and
segmentation. The renderer once handed depth out as a flipped view (negative strides), which LeRobot's
`prepare_observation_for_inference` (`torch.from_numpy`) refuses; RGB and segmentation were copies by chance."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from clitools import rollout_in_twin
from conftest import GT_SIZE
from lerobot.configs import FeatureType, PolicyFeature

from lerobot_env_so101_twin.config_robot import SO101TwinConfig
from lerobot_env_so101_twin.robot import SO101Twin
from lerobot_policy_segdepth import SegDepthConfig, SegDepthPolicy, make_segdepth_pre_post_processors


def test_every_frame_the_twin_hands_out_is_c_contiguous_and_its_own():
    """Each image the robot returns is C-contiguous and owns its memory (a real camera's frame is), so torch can
    wrap it and the next render cannot change it."""
    from lerobot.policies.utils import prepare_observation_for_inference

    robot = SO101Twin(
        SO101TwinConfig(
            cameras=["front", "wrist"], observation_height=24, observation_width=32, depth=True, segmentation=True
        )
    )
    robot.connect()
    try:
        first = robot.get_observation()
        frames = robot.twin.render()
        images = {k: v for k, v in first.items() if isinstance(v, np.ndarray)}
        assert set(images) == {
            f"{cam}{suffix}" for cam in ("front", "wrist") for suffix in ("", "_depth", "_segmentation")
        }
        for key, image in images.items():
            assert image.flags.c_contiguous and min(image.strides) >= 0, (key, image.strides)
        for cam, frame in frames.items():
            for name in ("rgb", "depth", "segmentation"):
                image = getattr(frame, name)
                assert image.flags.c_contiguous and image.flags.owndata, (cam, name, image.strides)
        before = {k: v.copy() for k, v in images.items()}
        robot.send_action({k: v + 5.0 for k, v in first.items() if k.endswith(".pos")})
        robot.get_observation()
        for key, image in images.items():
            np.testing.assert_array_equal(image, before[key], err_msg=f"{key} changed under a later render")
        tensors = prepare_observation_for_inference(images, "cpu")
        assert tensors["wrist_depth"].shape == (1, 24, 32, 1)
    finally:
        robot.disconnect()


def test_the_code_steps_take_the_robots_metres_and_the_datasets_millimetres_alike():
    """lerobot-rollout hands a policy the twin robot's raw frames (float32 metres, LeRobot's unit for raw float
    depth); training and lerobot-eval hand it a dataset's frames decoded to millimetres. Both decode the same."""
    from lerobot_policy_segdepth.observation_steps import DepthToDisparityStep, SegmentationFromCodeStep
    from lerobot_policy_segvla.cue_steps import SegmentationScoresFromCodeStep
    from so101_core.segmentation import code_unit, segmentation_to_code

    ids = np.array([[0, 1, 2], [3, 4, 5]], dtype=np.uint8)
    metres = torch.from_numpy(segmentation_to_code(ids)).permute(2, 0, 1)[None]  # (1, 1, 2, 3), as from a robot
    millimetres = metres * 1000 + 0.4  # as a dataset decodes it (quantisation error included)
    assert code_unit(metres) == "m" and code_unit(millimetres) == "mm"
    assert code_unit(torch.cat([metres, millimetres])) == "mm", "a mixture falls back to the default"
    assert code_unit(np.zeros((0, 2)), default="m") == "m"
    step = SegmentationFromCodeStep(code_key="c", ids_key="ids")
    for code in (metres, millimetres):
        np.testing.assert_array_equal(step.observation({"c": code})["ids"][0, 0].numpy(), ids)
    with pytest.raises(ValueError, match="outside the class map"):
        step.observation({"c": torch.cat([metres, millimetres], dim=-1)})
    scores = SegmentationScoresFromCodeStep(key_map={"c": "s"}, grid_size=1)
    torch.testing.assert_close(scores.observation({"c": metres})["s"], scores.observation({"c": millimetres})["s"])
    depth_m = torch.rand(1, 1, 6, 8) + 0.05
    disparity = DepthToDisparityStep(depth_key="d", disparity_key="p")
    torch.testing.assert_close(
        disparity.observation({"d": depth_m})["p"], disparity.observation({"d": depth_m * 1000})["p"]
    )


@pytest.fixture(scope="module")
def segdepth_ground_truth_checkpoint(tmp_path_factory) -> Path:
    """A tiny segdepth checkpoint on the wrist camera's ground-truth depth and segmentation, saved with its
    processors as lerobot-train saves it."""
    height, width = GT_SIZE
    cfg = SegDepthConfig(
        device="cpu",
        push_to_hub=False,
        perception_source="ground_truth",
        image_size=32,
        feature_dim=8,
        hidden_dim=16,
        encoder_channels=8,
        input_features={
            "observation.images.wrist_depth": PolicyFeature(FeatureType.VISUAL, (1, height, width)),
            "observation.images.wrist_segmentation": PolicyFeature(FeatureType.VISUAL, (1, height, width)),
            "observation.state": PolicyFeature(FeatureType.STATE, (6,)),
        },
        output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))},
    )
    torch.manual_seed(0)
    policy = SegDepthPolicy(cfg)
    stats = {"observation.state": {"mean": torch.zeros(6), "std": torch.full((6,), 50.0)}}
    pre, post = make_segdepth_pre_post_processors(cfg, dataset_stats=stats)
    out = tmp_path_factory.mktemp("segdepth_gt") / "pretrained_model"
    for part in (policy, pre, post):
        part.save_pretrained(out)
    return out


@pytest.mark.slow  # ~20 s: the stock lerobot-rollout in a fresh process
def test_lerobot_rollout_on_the_twin_with_depth_and_segmentation(segdepth_ground_truth_checkpoint, tmp_path):
    flags = ("--robot.cameras=[wrist]", "--robot.depth=true", "--robot.segmentation=true")
    rollout_in_twin(segdepth_ground_truth_checkpoint, GT_SIZE, tmp_path, flags=flags)
