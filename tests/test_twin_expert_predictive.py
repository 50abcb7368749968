"""The predictive expert: the reactive one stepping from its own last target on an arm with latency."""

from __future__ import annotations

import numpy as np
import pytest

from lerobot_env_so101_twin.arm import ArmParams
from lerobot_env_so101_twin.config_teleoperator import SO101TwinExpertConfig
from lerobot_env_so101_twin.expert import PredictiveExpert, ReactiveExpert, rollout_expert
from lerobot_env_so101_twin.simulation import TwinConfig, TwinSimulation

LATE = ArmParams(latency_ms=67.0)  # two control periods at 30 Hz


def _twin(arm: ArmParams) -> TwinSimulation:
    return TwinSimulation(TwinConfig(cameras={}, arm_params=arm), seed=0)


@pytest.mark.parametrize(
    "arm",
    [ArmParams(), ArmParams(gain=[0.6], backlash_deg=[1.0], calibration_deg=[2.0], control_fps=10)],
    ids=["ideal", "no_latency"],
)
def test_without_latency_it_is_the_reactive_expert_command_for_command(arm):
    commands = {}
    for kind in (ReactiveExpert, PredictiveExpert):
        twin = _twin(arm)
        twin.reset(3)
        expert, out = kind(twin), []
        for _ in range(120):
            out.append(expert.action())
            twin.apply_action(twin.follower_command(out[-1]))
            twin.step()
        commands[kind] = np.array(out)
    np.testing.assert_array_equal(commands[ReactiveExpert], commands[PredictiveExpert])


def test_under_latency_it_keeps_the_ideal_arms_pace_and_lifts():
    """At 67 ms the reactive expert's steps from the late reading cover ground already commanded (its joints move in
    bursts); stepping from its last target, the arm moves its full step every period, and every episode lifts in
    about the time the ideal arm takes (50-57 periods for these seeds)."""
    twin = _twin(LATE)
    travel = {}
    for kind in ("reactive", "predictive"):
        twin.reset(0)
        expert = {"reactive": ReactiveExpert, "predictive": PredictiveExpert}[kind](twin)
        q = []
        for _ in range(20):
            twin.apply_action(twin.follower_command(expert.action()))
            twin.step()
            q.append(twin.joint_positions()[:5])
        travel[kind] = np.abs(np.diff(np.array(q), axis=0)).max(axis=1)[8:]  # the arm under way, in approach
    np.testing.assert_allclose(travel["predictive"], 2.5, atol=0.1)  # max_step_deg, every period
    assert travel["reactive"].min() < 1.0  # the late reading's bursts
    runs = [rollout_expert(twin, seed, max_steps=150, kind="predictive") for seed in range(4)]
    assert all(ok for ok, _ in runs), runs
    assert max(steps for _, steps in runs) < 90


def test_a_stalled_joint_does_not_wind_the_targets_up():
    """However far the last target lies from the reading, a step starts at most what the targets in flight can hold
    from it: max_step for each period of latency and one more; the gripper steps from its reading."""
    twin = _twin(LATE)
    twin.reset(0)
    expert = PredictiveExpert(twin)
    expert.action()
    measured = twin.joint_positions()
    expert._last_target = measured + 50.0
    base = expert._move_base(measured)
    np.testing.assert_allclose(base[:5] - measured[:5], 2.5 * (1 + 3))  # 67 ms is 2.01 periods: 3, and one
    assert base[5] == measured[5]
    expert._last_target = measured - 1.0
    np.testing.assert_allclose(expert._move_base(measured)[:5], measured[:5] - 1.0)


def test_the_teleoperator_takes_it_and_names_the_experts_when_refusing():
    assert SO101TwinExpertConfig(expert="predictive").expert == "predictive"
    with pytest.raises(ValueError, match=r"'reactive', 'scripted' or 'predictive'.*'clairvoyant'"):
        SO101TwinExpertConfig(expert="clairvoyant")


def test_at_the_loop_rate_the_expert_acts_on_every_kth_period_and_holds(monkeypatch):
    """A 10 Hz loop on the 30 Hz physics: the expert is asked on periods 0, 3, 6, ... and its target held between."""
    twin = _twin(ArmParams(control_fps=10))
    asked, original = [], PredictiveExpert.action

    def spy(self):
        asked.append(twin.steps)
        return original(self)

    monkeypatch.setattr(PredictiveExpert, "action", spy)
    rollout_expert(twin, 0, max_steps=12, kind="predictive", at_loop_rate=True)
    assert asked == [0, 3, 6, 9]
    asked.clear()
    rollout_expert(twin, 0, max_steps=12, kind="predictive")
    assert asked == list(range(12))
