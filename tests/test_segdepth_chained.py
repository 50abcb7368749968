"""SegDepth's chained actions: each delta is added to the target sent last, not to the lagging present reading."""

from __future__ import annotations

import pytest
import torch
from lerobot.datasets import LeRobotDataset
from lerobot.datasets.factory import resolve_delta_timestamps
from test_segdepth import build, frame

from lerobot_policy_segdepth import SegDepthConfig
from lerobot_policy_segdepth.actions import absolute_to_delta
from so101_policy_common.steps import ClipJointTargetsStep


def batch_of(item: dict) -> dict:
    return {k: v[None] if hasattr(v, "ndim") else [v] for k, v in item.items()}


def observation(ds: LeRobotDataset, index: int) -> dict:
    return {k: v for k, v in frame(ds, index).items() if not k.startswith("action")}


def test_chained_training_targets_are_each_recorded_target_minus_the_one_before(gt_dataset):
    """By hand from the recording: inside an episode the arm's deltas from the previous recorded target and the
    gripper's from its reading; on the first frame, where the previous is LeRobot's padding, all from the state."""
    cfg, meta, policy, pre, _ = build(gt_dataset, action_mode="chained")
    assert cfg.action_delta_indices == [-1, 0]
    pair = LeRobotDataset("local/twin_demo", root=gt_dataset, delta_timestamps=resolve_delta_timestamps(cfg, meta))
    single = LeRobotDataset("local/twin_demo", root=gt_dataset)
    start = int(meta.episodes["dataset_from_index"][1])
    scale = list(cfg.action_scale)
    inside = pre(batch_of(frame(pair, start + 5)))["action"]
    reference = torch.cat([single[start + 4]["action"][:5], single[start + 5]["observation.state"][5:]])
    expected = absolute_to_delta(single[start + 5]["action"][None], reference[None], scale)
    torch.testing.assert_close(inside, expected)
    # every joint chained, the gripper too
    *_, pre6, _ = build(gt_dataset, action_mode="chained", chained_joints=[0, 1, 2, 3, 4, 5])
    expected = absolute_to_delta(single[start + 5]["action"][None], single[start + 4]["action"][None], scale)
    torch.testing.assert_close(pre6(batch_of(frame(pair, start + 5)))["action"], expected)
    first = pre(batch_of(frame(pair, start)))["action"]
    expected = absolute_to_delta(single[start]["action"][None], single[start]["observation.state"][None], scale)
    torch.testing.assert_close(first, expected)
    # the recorded targets move less between two periods than they lead the reading: the deltas are not the same
    present = absolute_to_delta(single[start + 5]["action"][None], single[start + 5]["observation.state"][None], scale)
    assert not torch.allclose(inside, present, atol=1e-3)
    policy.train()
    loss, _ = policy.forward(pre(batch_of(frame(pair, start + 5))))
    assert torch.isfinite(loss)


def test_chained_inference_adds_each_step_to_the_target_sent_last(gt_dataset):
    cfg, meta, policy, pre, post = build(gt_dataset, action_mode="chained")
    names = [type(s).__name__ for s in post.steps]
    assert names.index("RememberJointTargetStep") == names.index("ClipJointTargetsStep") + 1
    single = LeRobotDataset("local/twin_demo", root=gt_dataset)
    start = int(meta.episodes["dataset_from_index"][1])
    scale = torch.tensor(cfg.action_scale)
    policy.reset()
    first_obs, second_obs = observation(single, start + 3), observation(single, start + 9)
    delta = policy.select_action(pre(batch_of(first_obs)))
    first = post(delta)
    torch.testing.assert_close(first, first_obs["observation.state"][None] + delta.clamp(-1, 1) * scale)
    delta = policy.select_action(pre(batch_of(second_obs)))
    second = post(delta)
    # the arm's joints are added to the first target, the second reading (six periods later) playing no part; the
    # gripper to its reading
    step = delta.clamp(-1, 1) * scale
    torch.testing.assert_close(second[:, :5], first[:, :5] + step[:, :5])
    torch.testing.assert_close(second[:, 5], second_obs["observation.state"][None, 5] + step[:, 5])
    assert not torch.allclose(second[:, :5], second_obs["observation.state"][None, :5] + step[:, :5])
    policy.reset()  # a new episode starts from its present state
    delta = policy.select_action(pre(batch_of(second_obs)))
    torch.testing.assert_close(post(delta), second_obs["observation.state"][None] + delta.clamp(-1, 1) * scale)


def test_a_chained_target_held_at_a_joint_limit_does_not_wind_up(gt_dataset):
    """A hundred full steps up the wrist joint (400°, more than its range): the target stops at its limit, and one
    step down leaves it from there."""
    cfg, _, policy, pre, post = build(gt_dataset, action_mode="chained")
    high = next(s for s in post.steps if isinstance(s, ClipJointTargetsStep)).limits[4][1]
    obs = batch_of(observation(LeRobotDataset("local/twin_demo", root=gt_dataset), 3))
    up = torch.tensor([[0.0, 0, 0, 0, 1.0, 0]])
    policy.reset()
    for _ in range(100):
        pre(obs)
        target = post(up)
    assert target[0, 4] == pytest.approx(high)
    pre(obs)
    assert post(-up)[0, 4] == pytest.approx(high - cfg.action_scale[4])


def test_chained_pipelines_keep_their_link_through_save_and_load(gt_dataset, tmp_path):
    from lerobot.policies.factory import make_pre_post_processors

    cfg, _, policy, pre, post = build(gt_dataset, action_mode="chained")
    pre.save_pretrained(tmp_path)
    post.save_pretrained(tmp_path)
    loaded_pre, loaded_post = make_pre_post_processors(cfg, pretrained_path=str(tmp_path))
    obs = batch_of(observation(LeRobotDataset("local/twin_demo", root=gt_dataset), 3))
    step = torch.tensor([[0.5, 0, 0, 0, 0, 0]])
    policy.reset()
    loaded_pre(obs)
    first = loaded_post(step)
    loaded_pre(obs)
    torch.testing.assert_close(loaded_post(step), first + step * torch.tensor(cfg.action_scale))


def test_chained_settings_it_cannot_hold_are_refused():
    with pytest.raises(ValueError, match=r"--policy.action_mode='bogus'; choose one of \['delta', 'absolute', 'chain"):
        SegDepthConfig(action_mode="bogus")
    with pytest.raises(ValueError, match=r"action_mode=chained with --policy.action_repeat=2.*use action_repeat=1"):
        SegDepthConfig(action_mode="chained", action_repeat=2)
    for joints in ([], [0, 0], [6]):
        with pytest.raises(ValueError, match=r"--policy.chained_joints=.*distinct joint indices 0-5"):
            SegDepthConfig(action_mode="chained", chained_joints=joints)
    assert SegDepthConfig(action_mode="chained", action_lead=1).action_delta_indices == [0, 1]
