"""The shared processor steps on hand-computed cases, their errors, and their save/load round trip."""

import pytest
import torch
from lerobot.processor import PolicyProcessorPipeline, TransitionKey
from lerobot.processor.converters import (
    batch_to_transition,
    policy_action_to_transition,
    transition_to_batch,
    transition_to_policy_action,
)

from lerobot_policy_segdepth.actions import (
    JointAbsoluteFromDeltaStep,
    JointDeltaFromAbsoluteStep,
    absolute_to_delta,
    delta_to_absolute,
)
from lerobot_policy_segdepth.observation_steps import (
    CenterCropSquareStep,
    DepthToDisparityStep,
    ResizeStep,
    SegmentationFromCodeStep,
    StackChannelsStep,
    disparity_from_depth,
)


def test_disparity_is_min_max_normalised_inverse_depth_near_bright():
    depth_m = torch.tensor([[[[1.0, 2.0], [4.0, 4.0]]]])  # (1, 1, 2, 2)
    # disparity 1, 0.5, 0.25, 0.25 -> (d - 0.25) / 0.75 * 255
    expected = torch.tensor([[[[255.0, 85.0], [0.0, 0.0]]]])
    torch.testing.assert_close(disparity_from_depth(depth_m), expected)
    step = DepthToDisparityStep(depth_key="observation.images.wrist_depth", disparity_key="d", depth_unit="mm")
    out = step.observation({"observation.images.wrist_depth": depth_m * 1000})
    torch.testing.assert_close(out["d"], expected)


def test_disparity_is_per_frame_even_with_a_time_axis():
    near, far = torch.full((1, 2, 2), 0.5), torch.full((1, 2, 2), 3.0)
    far[..., 0, 0] = 1.5
    frames = torch.stack([near.clone(), far])[None]  # (B=1, T=2, 1, 2, 2)
    out = disparity_from_depth(frames)
    assert torch.equal(out[0, 0], torch.zeros(1, 2, 2))  # all-equal frame: zeros, no division by zero
    assert out[0, 1, 0, 0, 0] == 255 and out[0, 1, 0, 1, 1] == 0


@pytest.mark.parametrize(("value", "match"), [(float("nan"), "NaN"), (0.0, "non-positive")])
def test_bad_depth_names_the_key(value, match):
    depth = torch.ones(1, 1, 4, 4)
    depth[0, 0, 1, 1] = value
    with pytest.raises(ValueError, match=match):
        DepthToDisparityStep(depth_key="observation.images.wrist_depth").observation(
            {"observation.images.wrist_depth": depth}
        )


def test_missing_key_error_lists_what_is_there():
    with pytest.raises(KeyError, match=r"observation\.images\.wrist_depth.*observation\.state"):
        DepthToDisparityStep().observation({"observation.state": torch.zeros(1, 6)})


def test_segmentation_code_decodes_and_rejects_ids_outside_the_map():
    code_mm = (torch.tensor([[0.0, 3.0], [4.0, 5.0]]) + 1.0)[None, None] * 1000
    step = SegmentationFromCodeStep(code_key="c", ids_key="ids")
    torch.testing.assert_close(step.observation({"c": code_mm})["ids"], code_mm / 1000 - 1)
    with pytest.raises(ValueError, match=r"'c'.*outside the class map"):
        step.observation({"c": torch.full((1, 1, 2, 2), 9000.0)})


def test_center_crop_and_resize():
    image = torch.arange(4 * 6, dtype=torch.float32).reshape(1, 1, 4, 6)
    cropped = CenterCropSquareStep(keys=["x"]).observation({"x": image})["x"]
    torch.testing.assert_close(cropped, image[..., :, 1:5])
    ids = torch.randint(0, 6, (2, 3, 1, 120, 120)).float()
    resized = ResizeStep(size=84, nearest_keys=["ids"]).observation({"ids": ids})["ids"]
    assert resized.shape == (2, 3, 1, 84, 84)
    assert set(resized.unique().tolist()) <= set(range(6))  # nearest never invents a class
    flat = torch.full((1, 1, 120, 120), 7.5)
    out = ResizeStep(size=84, linear_keys=["d"]).observation({"d": flat})["d"]
    torch.testing.assert_close(out, torch.full((1, 1, 84, 84), 7.5))


def test_stack_channels_checks_shapes_and_drops_inputs():
    obs = {"a": torch.zeros(2, 1, 8, 8), "b": torch.ones(2, 1, 8, 8)}
    out = StackChannelsStep(keys=["a", "b"], output_key="observation.segdepth").observation(dict(obs))
    assert out["observation.segdepth"].shape == (2, 2, 8, 8) and "a" not in out
    with pytest.raises(ValueError, match="must share"):
        StackChannelsStep(keys=["a", "b"]).observation({"a": torch.zeros(2, 1, 8, 8), "b": torch.zeros(2, 1, 9, 8)})


def test_joint_delta_mapping_both_ways_by_hand():
    scale = [4.0, 4.0, 4.0, 4.0, 4.0, 15.0]
    present = torch.tensor([[10.0, -90.0, 80.0, 60.0, 0.0, 20.0]])
    target = present + torch.tensor([[2.0, -4.0, 10.0, 0.0, 1.0, -30.0]])
    delta = absolute_to_delta(target, present, scale)
    torch.testing.assert_close(delta, torch.tensor([[0.5, -1.0, 1.0, 0.0, 0.25, -1.0]]))  # clipped to [-1, 1]
    back = delta_to_absolute(delta, present, scale)
    torch.testing.assert_close(back, present + torch.tensor([[2.0, -4.0, 4.0, 0.0, 1.0, -15.0]]))
    # within range the mapping is exactly invertible
    small = present + torch.tensor([[1.0, -2.0, 3.0, -1.5, 0.5, 7.0]])
    torch.testing.assert_close(delta_to_absolute(absolute_to_delta(small, present, scale), present, scale), small)


def test_joint_delta_steps_pair_through_save_and_load(tmp_path):
    scale = [4.0] * 5 + [15.0]
    to_delta = JointDeltaFromAbsoluteStep(action_scale=scale)
    pre = PolicyProcessorPipeline(
        steps=[to_delta], name="policy_preprocessor", to_transition=batch_to_transition, to_output=transition_to_batch
    )
    post = PolicyProcessorPipeline(
        steps=[JointAbsoluteFromDeltaStep(action_scale=scale, pair_id=to_delta.pair_id)],
        name="policy_postprocessor",
        to_transition=policy_action_to_transition,
        to_output=transition_to_policy_action,
    )
    pre.save_pretrained(tmp_path)
    post.save_pretrained(tmp_path)
    pre2 = PolicyProcessorPipeline.from_pretrained(
        tmp_path,
        config_filename="policy_preprocessor.json",
        to_transition=batch_to_transition,
        to_output=transition_to_batch,
    )
    post2 = PolicyProcessorPipeline.from_pretrained(
        tmp_path,
        config_filename="policy_postprocessor.json",
        to_transition=policy_action_to_transition,
        to_output=transition_to_policy_action,
    )
    state = torch.tensor([[5.0, -80.0, 70.0, 85.0, 3.0, 40.0]])
    # training: absolute targets with a (B, T, 6) state history become deltas against the newest state
    batch = pre2({"observation.state": torch.stack([state - 1, state], dim=1), "action": state + 2.0})
    torch.testing.assert_close(batch["action"], torch.tensor([[0.5] * 5 + [2 / 15]]))
    # inference: the loaded postprocessor reads the state its loaded pair cached
    pre2({"observation.state": state})
    torch.testing.assert_close(
        post2(torch.tensor([[1.0, 0, 0, 0, 0, -1.0]])), state + torch.tensor([[4.0, 0, 0, 0, 0, -15.0]])
    )


def test_absolute_step_without_its_pair_is_a_clear_error():
    step = JointAbsoluteFromDeltaStep(pair_id="never-seen")
    with pytest.raises(RuntimeError, match="no present joint state"):
        step({TransitionKey.ACTION: torch.zeros(1, 6)})


@pytest.mark.parametrize("policy", ["hlrp", "imf"])
def test_optimizer_and_scheduler_presets_carry_the_config_fields(policy):
    from lerobot.configs import PreTrainedConfig
    from lerobot.optim import AdamWConfig, CosineDecayWithWarmupSchedulerConfig
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()
    cfg = PreTrainedConfig.get_choice_class(policy)(
        optimizer_lr=3e-4,
        optimizer_betas=(0.8, 0.9),
        optimizer_weight_decay=0.5,
        optimizer_grad_clip_norm=2.0,
        scheduler_warmup_steps=7,
        scheduler_decay_steps=70,
        scheduler_decay_lr=1e-6,
    )
    assert cfg.get_optimizer_preset() == AdamWConfig(lr=3e-4, betas=(0.8, 0.9), weight_decay=0.5, grad_clip_norm=2.0)
    assert cfg.get_scheduler_preset() == CosineDecayWithWarmupSchedulerConfig(
        peak_lr=3e-4, decay_lr=1e-6, num_warmup_steps=7, num_decay_steps=70
    )
