"""SegDepth stepping from the target sent (`--policy.step_from_sent_deg`): at inference each arm step is added to the
target sent last, kept within a cap of the reading, so an arm whose reading lags its targets is not held back."""

from __future__ import annotations

import pytest
import torch
from lerobot.datasets import LeRobotDataset
from test_segdepth import build
from test_segdepth_chained import batch_of, observation

from lerobot_policy_segdepth import SegDepthConfig
from lerobot_policy_segdepth.actions import scale_steps, step_from_sent

UP = torch.tensor([[1.0, 0, 0, 0, 0, -1.0]])  # a full step up the shoulder pan, the gripper closing


@pytest.fixture(autouse=True)
def _from_the_reading_after():
    yield
    step_from_sent(0.0)  # the setting is the process's: later tests step from the reading
    scale_steps(1.0)


def lagging_arm(
    gt_dataset,
    cap: float,
    lag: int,
    periods: int = 12,
    steps: int = 0,
    ahead: bool = False,
    overshoot: float = 0.0,
    scale: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A policy sending UP on every frame to an arm whose reading is the target sent `lag` periods earlier, the pan
    past it by `overshoot` degrees (the reading at rest before that); returns the targets (periods, 6) and the rest
    state (6,)."""
    _, _, policy, pre, post = build(
        gt_dataset, step_from_sent_deg=cap, step_from_sent_steps=steps, step_from_sent_ahead=ahead, step_scale=scale
    )
    obs = batch_of(observation(LeRobotDataset("local/twin_demo", root=gt_dataset), 3))
    rest = obs["observation.state"][0].clone()
    policy.reset()
    targets: list[torch.Tensor] = []
    for t in range(periods):
        reading = targets[t - lag] + torch.tensor([overshoot, 0, 0, 0, 0, 0]) if t >= lag else rest
        pre({**obs, "observation.state": reading[None].clone()})
        targets.append(post(UP.clone())[0])
    return torch.stack(targets), rest


def test_under_a_lag_each_step_is_added_to_the_target_sent(gt_dataset):
    """By hand, a reading two periods behind and 4° steps: from the reading the pan gains 4° every other period
    (target_t = target_t-2 + 4); from the target sent with an 8° cap, 4° every period (its lead over the reading, 4°,
    lies inside the cap); with a 2° cap the lead is cut to 2°. The gripper steps from its reading in every case."""
    step = SegDepthConfig().action_scale
    t = torch.arange(12, dtype=torch.float32)
    reading, rest = lagging_arm(gt_dataset, cap=0.0, lag=2)
    torch.testing.assert_close(reading[:, 0], rest[0] + step[0] * (t.div(2, rounding_mode="floor") + 1))
    sent, _ = lagging_arm(gt_dataset, cap=8.0, lag=2)
    torch.testing.assert_close(sent[:, 0], rest[0] + step[0] * (t + 1))
    torch.testing.assert_close(sent[:, 1:5], reading[:, 1:5])  # joints the policy does not move stay at rest
    capped, _ = lagging_arm(gt_dataset, cap=2.0, lag=2)
    expected, previous = [], None
    for k in range(12):  # float64 reference of target = reading + clamp(previous - reading, -2, 2) + 4
        r = float(expected[k - 2]) if k >= 2 else float(rest[0])
        base = r if previous is None else r + max(-2.0, min(2.0, previous - r))
        previous = base + step[0]
        expected.append(previous)
    torch.testing.assert_close(capped[:, 0], torch.tensor(expected, dtype=torch.float32))
    # the gripper steps from its reading alike in all three: its reading at rest, then the lagged target, minus one
    # full step, held at its closed end by the joint-limit clip
    for targets in (reading, sent, capped):
        lagged = torch.cat([rest[None, 5].expand(2), targets[:-2, 5]])
        torch.testing.assert_close(targets[:, 5], (lagged - step[5]).clamp(min=0.0))


def test_on_an_arm_that_keeps_up_the_cap_changes_nothing(gt_dataset):
    """The ideal arm reaches each target within the period: the reading is the target sent last, the same base."""
    reading, _ = lagging_arm(gt_dataset, cap=0.0, lag=1)
    sent, _ = lagging_arm(gt_dataset, cap=8.0, lag=1)
    torch.testing.assert_close(sent, reading)


def test_a_new_episode_steps_from_its_reading(gt_dataset):
    cfg, _, policy, pre, post = build(gt_dataset, step_from_sent_deg=8.0)
    obs = batch_of(observation(LeRobotDataset("local/twin_demo", root=gt_dataset), 3))
    state = obs["observation.state"]
    policy.reset()
    for _ in range(3):  # the arm does not move: the target sent leads the reading by up to the cap
        pre(obs)
        last = post(UP.clone())
    assert last[0, 0] == pytest.approx(float(state[0, 0]) + 8.0 + cfg.action_scale[0])
    policy.reset()
    pre(obs)
    assert post(UP.clone())[0, 0] == pytest.approx(float(state[0, 0]) + cfg.action_scale[0])


def test_a_held_joint_leads_by_its_last_steps_not_the_cap(gt_dataset):
    """The arm held where it stands (a finger on the cube): with the cap alone the pan's lead winds up by a step a
    period to the cap (8°: target = rest + 8 + 4 from the third period); bounded by the last step it stays one step
    (rest + 4 + 4), by the last two steps two (rest + 8 + 4, here the cap's own); a cap below the steps still binds.
    4° is action_scale's pan step."""
    held = 10_000  # a lag longer than the run: the reading stays at rest
    capped, rest = lagging_arm(gt_dataset, cap=8.0, lag=held, periods=6)
    torch.testing.assert_close(capped[:, 0] - rest[0], torch.tensor([4.0, 8.0, 12.0, 12.0, 12.0, 12.0]))
    one, _ = lagging_arm(gt_dataset, cap=8.0, lag=held, periods=6, steps=1)
    torch.testing.assert_close(one[:, 0] - rest[0], torch.tensor([4.0, 8.0, 8.0, 8.0, 8.0, 8.0]))
    two, _ = lagging_arm(gt_dataset, cap=8.0, lag=held, periods=6, steps=2)
    torch.testing.assert_close(two[:, 0] - rest[0], torch.tensor([4.0, 8.0, 12.0, 12.0, 12.0, 12.0]))
    narrow, _ = lagging_arm(gt_dataset, cap=6.0, lag=held, periods=6, steps=2)
    torch.testing.assert_close(narrow[:, 0] - rest[0], torch.tensor([4.0, 8.0, 10.0, 10.0, 10.0, 10.0]))


def test_under_a_lag_of_one_step_the_bound_keeps_the_steps_in_flight(gt_dataset):
    """A reading two periods behind: the lead over it is the one step in flight (4°), inside a bound of the last
    step, so the targets are the cap's alone, 4° every period."""
    capped, _ = lagging_arm(gt_dataset, cap=8.0, lag=2)
    bounded, _ = lagging_arm(gt_dataset, cap=8.0, lag=2, steps=1)
    torch.testing.assert_close(bounded, capped)
    keeps_up, _ = lagging_arm(gt_dataset, cap=0.0, lag=1)
    torch.testing.assert_close(lagging_arm(gt_dataset, cap=8.0, lag=1, steps=1)[0], keeps_up)


def test_ahead_steps_from_the_reading_where_the_arm_passed_its_target(gt_dataset):
    """By hand, an arm that keeps up and overshoots each target by 1° (the ideal arm's free motion): from the reading
    the pan gains 4 + 1° a period; from the target sent it steps back to the target and gains 4°, slower than the
    demonstrations; ahead keeps the reading there (the lead, -1°, points against the last step). Under a lag of two
    periods the lead points along the steps and ahead is the cap's alone."""
    t = torch.arange(12, dtype=torch.float32)
    reading, rest = lagging_arm(gt_dataset, cap=0.0, lag=1, overshoot=1.0)
    torch.testing.assert_close(reading[:, 0] - rest[0], 4.0 + 5.0 * t)
    sent, _ = lagging_arm(gt_dataset, cap=8.0, lag=1, overshoot=1.0)
    torch.testing.assert_close(sent[:, 0] - rest[0], 4.0 + 4.0 * t)
    torch.testing.assert_close(lagging_arm(gt_dataset, cap=8.0, lag=1, overshoot=1.0, ahead=True)[0], reading)
    capped, _ = lagging_arm(gt_dataset, cap=8.0, lag=2)
    torch.testing.assert_close(lagging_arm(gt_dataset, cap=8.0, lag=2, ahead=True)[0], capped)


def test_settings_it_cannot_hold_are_refused():
    for bad in (-1.0, 31.0):
        with pytest.raises(ValueError, match=r"--policy.step_from_sent_deg=.*0-30 degrees"):
            SegDepthConfig(step_from_sent_deg=bad)
    for other in ({"action_mode": "chained"}, {"action_history": 1}, {"action_repeat": 2}):
        with pytest.raises(ValueError, match=r"--policy.step_from_sent_deg=4.0 with .*needs a delta policy"):
            SegDepthConfig(step_from_sent_deg=4.0, **other)
    with pytest.raises(ValueError, match=r"step_from_sent: a cap of 0-30 degrees, got -2"):
        step_from_sent(-2)
    assert SegDepthConfig(step_from_sent_deg=4.0, action_lead=1).step_from_sent_deg == 4.0
    for bad in ({"step_from_sent_steps": -1}, {"step_from_sent_steps": 17}, {"step_from_sent_deg": 0.0}):
        with pytest.raises(ValueError, match=r"--policy.step_from_sent_steps=.*0-16 steps, and only with"):
            SegDepthConfig(**{"step_from_sent_deg": 8.0, "step_from_sent_steps": 1, **bad})
    with pytest.raises(ValueError, match=r"--policy.step_from_sent_ahead=true needs --policy.step_from_sent_deg > 0"):
        SegDepthConfig(step_from_sent_ahead=True)
    with pytest.raises(ValueError, match=r"step_from_sent: a bound of 0-16 last steps, got 20"):
        step_from_sent(8.0, 20)


def test_scaled_steps_keep_the_recordings_pace_on_a_slower_loop(gt_dataset):
    """By hand, an arm that reaches each target (the reading is the target sent last): a full pan step is 4° a loop
    step as trained, 12° with step_scale=3; the gripper's 15 units become 45, held at its closed end by the clip.
    With the target sent as well, the scaled step is added to the same base."""
    _, _, policy, pre, post = build(gt_dataset, step_scale=3.0)
    obs = batch_of(observation(LeRobotDataset("local/twin_demo", root=gt_dataset), 3))
    rest = obs["observation.state"][0].clone()
    policy.reset()
    reading, targets = rest.clone(), []
    for _ in range(4):
        pre({**obs, "observation.state": reading[None].clone()})
        reading = post(UP.clone())[0]
        targets.append(reading)
    pan = torch.stack(targets)[:, 0] - rest[0]
    torch.testing.assert_close(pan, torch.tensor([12.0, 24.0, 36.0, 48.0]))
    assert targets[0][5] == pytest.approx(max(float(rest[5]) - 45.0, 0.0))
    policy.config.step_scale = 1.0
    policy.reset()  # the setting is read at reset: back to the trained step
    pre({**obs, "observation.state": rest[None].clone()})
    assert post(UP.clone())[0, 0] == pytest.approx(float(rest[0]) + 4.0)
    # a reading two periods behind, from the target sent (8° cap): the lead over the reading, the scaled step in flight
    # (12°), is cut to the cap, then the 12° step is added: 12, 0 + 8 + 12, 12 + 8 + 12, 20 + 8 + 12
    sent, rest = lagging_arm(gt_dataset, cap=8.0, lag=2, periods=4, scale=3.0)
    torch.testing.assert_close(sent[:, 0] - rest[0], torch.tensor([12.0, 20.0, 32.0, 40.0]))


def test_a_step_scale_it_cannot_hold_is_refused():
    for bad in (0.5, 11.0):
        with pytest.raises(ValueError, match=r"--policy.step_scale=.*1-10"):
            SegDepthConfig(step_scale=bad)
    with pytest.raises(ValueError, match=r"--policy.step_scale=3.0 with --policy.action_mode=absolute"):
        SegDepthConfig(step_scale=3.0, action_mode="absolute")
