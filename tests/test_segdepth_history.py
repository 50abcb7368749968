"""SegDepth's action history: the actor also sees the targets sent last, relative to the present reading."""

from __future__ import annotations

import pytest
import torch
from lerobot.datasets import LeRobotDataset
from lerobot.datasets.factory import resolve_delta_timestamps
from test_segdepth import build, frame
from test_segdepth_chained import batch_of, observation

from lerobot_policy_segdepth import SegDepthConfig
from lerobot_policy_segdepth.actions import OBS_ACTION_HISTORY, absolute_to_delta


def windows(root, cfg, meta) -> tuple[LeRobotDataset, LeRobotDataset]:
    windowed = LeRobotDataset("local/twin_demo", root=root, delta_timestamps=resolve_delta_timestamps(cfg, meta))
    return windowed, LeRobotDataset("local/twin_demo", root=root)


def test_history_training_inputs_are_the_recorded_targets_before_the_label(gt_dataset):
    """By hand from the recording, lead 1 and a history of 2: inside an episode the inputs are (a_t-1, a_t) minus the
    reading s_t over action_scale and the label a_t+1's delta from s_t; on an episode's first frame the target before
    it, LeRobot's padding, is the state (zero)."""
    cfg, meta, policy, pre, _ = build(gt_dataset, action_lead=1, action_history=2)
    assert cfg.action_delta_indices == [-1, 0, 1]
    windowed, single = windows(gt_dataset, cfg, meta)
    start = int(meta.episodes["dataset_from_index"][1])
    scale = torch.tensor(cfg.action_scale)
    t = start + 5
    out = pre(batch_of(frame(windowed, t)))
    state = single[t]["observation.state"]
    expected = torch.cat([(single[t - 1]["action"] - state) / scale, (single[t]["action"] - state) / scale])
    torch.testing.assert_close(out[OBS_ACTION_HISTORY], expected[None])
    label = absolute_to_delta(single[t + 1]["action"][None], state[None], list(cfg.action_scale))
    torch.testing.assert_close(out["action"], label)
    first = pre(batch_of(frame(windowed, start)))
    state = single[start]["observation.state"]
    torch.testing.assert_close(first[OBS_ACTION_HISTORY][0, :6], torch.zeros(6))
    torch.testing.assert_close(first[OBS_ACTION_HISTORY][0, 6:], (single[start]["action"] - state) / scale)
    assert first[OBS_ACTION_HISTORY][0, 6:].abs().max() > 1e-3  # the expert's target leads its reading
    policy.train()
    loss, _ = policy.forward(out)
    assert torch.isfinite(loss)


def test_history_at_an_episode_end_keeps_the_last_target(gt_dataset):
    """Past the last frame LeRobot repeats the last target, where the arm stays: the history keeps it, though every
    target of the window (lead 2, history 1: t+1 and t+2) is padding."""
    cfg, meta, _, pre, _ = build(gt_dataset, action_lead=2, action_history=1)
    windowed, single = windows(gt_dataset, cfg, meta)
    last = int(meta.episodes["dataset_to_index"][0]) - 1
    out = pre(batch_of(frame(windowed, last)))
    state = single[last]["observation.state"]
    expected = (single[last]["action"] - state) / torch.tensor(cfg.action_scale)
    torch.testing.assert_close(out[OBS_ACTION_HISTORY], expected[None])


def test_history_at_inference_is_the_targets_sent_last_oldest_first(gt_dataset):
    cfg, meta, policy, pre, post = build(gt_dataset, action_lead=2, action_history=2)
    single = LeRobotDataset("local/twin_demo", root=gt_dataset)
    start = int(meta.episodes["dataset_from_index"][1])
    scale = torch.tensor(cfg.action_scale)
    names = [type(s).__name__ for s in post.steps]
    assert names.index("RememberJointTargetStep") == names.index("ClipJointTargetsStep") + 1
    obs = [batch_of(observation(single, start + k)) for k in (2, 6, 9)]
    policy.reset()
    seen = pre(obs[0])
    torch.testing.assert_close(seen[OBS_ACTION_HISTORY], torch.zeros(1, 12))  # nothing sent: the servos hold
    first = post(policy.select_action(seen))
    seen = pre(obs[1])
    state = obs[1]["observation.state"]
    torch.testing.assert_close(seen[OBS_ACTION_HISTORY][:, :6], torch.zeros(1, 6))
    torch.testing.assert_close(seen[OBS_ACTION_HISTORY][:, 6:], (first - state) / scale)
    second = post(policy.select_action(seen))
    seen = pre(obs[2])
    state = obs[2]["observation.state"]
    expected = torch.cat([first - state, second - state], -1) / scale.repeat(2)
    torch.testing.assert_close(seen[OBS_ACTION_HISTORY], expected)
    # the actor reads it: another history, another action
    other = {**seen, OBS_ACTION_HISTORY: seen[OBS_ACTION_HISTORY] + 0.5}
    assert not torch.allclose(policy.predict_action_chunk(seen), policy.predict_action_chunk(other))
    policy.reset()  # a new episode: nothing sent yet
    torch.testing.assert_close(pre(obs[2])[OBS_ACTION_HISTORY], torch.zeros(1, 12))


def test_history_pipelines_keep_their_link_through_save_and_load(gt_dataset, tmp_path):
    from lerobot.policies.factory import make_pre_post_processors

    cfg, _, policy, pre, post = build(gt_dataset, action_lead=1, action_history=1)
    pre.save_pretrained(tmp_path)
    post.save_pretrained(tmp_path)
    loaded_pre, loaded_post = make_pre_post_processors(cfg, pretrained_path=str(tmp_path))
    obs = batch_of(observation(LeRobotDataset("local/twin_demo", root=gt_dataset), 3))
    policy.reset()
    loaded_pre(obs)
    sent = loaded_post(torch.tensor([[0.5, 0, 0, 0, 0, 0]]))
    expected = (sent - obs["observation.state"]) / torch.tensor(cfg.action_scale)
    torch.testing.assert_close(loaded_pre(obs)[OBS_ACTION_HISTORY], expected)
    assert expected[0, 0] == pytest.approx(0.5)


def test_history_settings_it_cannot_hold_are_refused():
    for bad in (-1, 11):
        with pytest.raises(ValueError, match=rf"--policy.action_history={bad}: 0-10 targets"):
            SegDepthConfig(action_history=bad)
    for mode, repeat in (("absolute", 1), ("chained", 1), ("delta", 2)):
        with pytest.raises(ValueError, match=rf"action_mode={mode} and --policy.action_repeat={repeat}: a history"):
            SegDepthConfig(action_history=1, action_mode=mode, action_repeat=repeat)
    assert SegDepthConfig(action_history=3, action_lead=1).action_delta_indices == [-2, -1, 0, 1]
    assert SegDepthConfig(action_history=0, action_lead=1).action_delta_indices == [1]
