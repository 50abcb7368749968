"""HLRP's open follow-up, "rollout wiring after export": an hlrp checkpoint driven by the stock `lerobot-rollout`,
on the twin and on LeRobot's SO101Follower with a fake Feetech bus (the fakes of test_real_arm_rollout.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from clitools import rollout_in_twin
from lerobot.configs import FeatureType, PolicyFeature
from test_real_arm_rollout import (  # noqa: F401  (fixtures)
    HEIGHT,
    MAX_RELATIVE_TARGET,
    WIDTH,
    fake_hardware,
    run_rollout,
    sim_frames,
)

from lerobot_policy_hlrp import HLRPConfig, HLRPPolicy, make_hlrp_pre_post_processors
from lerobot_policy_hlrp.trunk import CoreConfig
from so101_core import JOINT_NAMES
from so101_devtools.tiny_models import tiny_smolvlm_dir


@pytest.fixture(scope="module")
def hlrp_checkpoint(tmp_path_factory) -> Path:
    """A tiny hlrp checkpoint on the wrist camera, saved with its processors as lerobot-train saves it."""
    cfg = HLRPConfig(
        device="cpu",
        push_to_hub=False,
        load_vlm_weights=False,
        cameras=["wrist"],
        n_action_steps=2,
        core=CoreConfig(
            vlm_model_name=str(tiny_smolvlm_dir()),
            num_vlm_layers=2,
            head_hidden=32,
            head_depth=2,
            latent_dim=8,
            codebook_size=16,
            action_dim=8,
            chunk_size=4,
            tokenizer_max_length=16,
        ),
        input_features={
            "observation.images.wrist": PolicyFeature(FeatureType.VISUAL, (3, HEIGHT, WIDTH)),
            "observation.state": PolicyFeature(FeatureType.STATE, (6,)),
        },
        output_features={"action": PolicyFeature(FeatureType.ACTION, (6,))},
    )
    torch.manual_seed(0)
    policy = HLRPPolicy(cfg)
    stats = {
        "observation.state": {"mean": torch.zeros(6), "std": torch.full((6,), 50.0)},
        "action": {"mean": torch.zeros(6), "std": torch.full((6,), 30.0)},
    }
    pre, post = make_hlrp_pre_post_processors(cfg, dataset_stats=stats)
    out = tmp_path_factory.mktemp("hlrp") / "pretrained_model"
    policy.save_pretrained(out)
    pre.save_pretrained(out)
    post.save_pretrained(out)
    return out


def test_lerobot_rollout_drives_the_fake_follower_within_its_limits(
    monkeypatch,
    hlrp_checkpoint,
    sim_frames,  # noqa: F811
    fake_hardware,  # noqa: F811  (the imported fixtures)
):
    run_rollout(monkeypatch, hlrp_checkpoint, sim_frames, stop_after=7)
    (bus,) = fake_hardware
    assert len(bus.goal_writes) == 6, "one action per camera frame"
    for present, goal, torque in bus.goal_writes:
        assert set(goal) == set(JOINT_NAMES) and all(torque.values())
        for joint in JOINT_NAMES:
            assert abs(goal[joint] - present[joint]) <= MAX_RELATIVE_TARGET + 1e-6
    assert not bus.is_connected and not any(bus.torque.values()), "rollout ended with torque on"


@pytest.mark.slow
def test_lerobot_rollout_drives_the_twin(hlrp_checkpoint, tmp_path):
    rollout_in_twin(hlrp_checkpoint, (HEIGHT, WIDTH), tmp_path, flags=("--robot.cameras=[wrist]",))
