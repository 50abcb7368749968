"""segdepth-rl-train (DrQ-v2 in the twin): the replay buffer against the policy's own frame stacking and a
float64 n-step reference, the learner, the loop end to end (finite losses, lerobot-eval on its checkpoint,
resume), bad input."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from clitools import eval_in_twin
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.utils.constants import ACTION, OBS_STATE
from run_again import mtimes, nothing_to_do
from safetensors.torch import load_file

from lerobot_policy_segdepth import SegDepthConfig, SegDepthPolicy
from lerobot_policy_segdepth.configuration_segdepth import OBS_SEGDEPTH
from so101_run_infra.cli import OutputRefused
from so101_run_infra.runs import RUN_FINISHED
from so101_segdepth_rl.config import EvalSettings, RLTrainConfig, TwinSettings
from so101_segdepth_rl.drqv2 import DrQV2Agent, DrQV2Config, stddev
from so101_segdepth_rl.evaluation import learning_curve_figure, learning_curve_title, plot_learning_curve
from so101_segdepth_rl.replay import ReplayBuffer
from so101_segdepth_rl.train import check_policy_fits_env, train

TINY_POLICY = {"feature_dim": 8, "hidden_dim": 16, "encoder_channels": 8}


def tiny_policy(size: int = 16, frame_stack: int = 3, action_repeat: int = 2, **overrides) -> SegDepthPolicy:
    cfg = SegDepthConfig(
        device="cpu", image_size=size, frame_stack=frame_stack, action_repeat=action_repeat, **TINY_POLICY, **overrides
    )
    cfg.input_features = {
        cfg.depth_key: PolicyFeature(type=FeatureType.VISUAL, shape=(1, size, size)),
        cfg.segmentation_key: PolicyFeature(type=FeatureType.VISUAL, shape=(1, size, size)),
        OBS_STATE: PolicyFeature(type=FeatureType.STATE, shape=(6,)),
    }
    cfg.output_features = {ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(6,))}
    return SegDepthPolicy(cfg)


def env_frame(env: int, episode: int, t: int, size: int) -> np.ndarray:
    """A (2, S, S) uint8 frame that names its env, episode and step: ids t % 6, disparity a code of all three."""
    frame = np.empty((2, size, size), np.uint8)
    frame[0] = t % 6
    frame[1] = (61 * env + 17 * episode + t) % 256
    return frame


# ----- replay buffer --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("frame_stack", "repeat"), [(3, 2), (3, 1), (4, 3)])
def test_replay_stacks_equal_the_policys_frame_buffer_at_every_decision(frame_stack, repeat):
    """Every decision's stack rebuilt from the buffer equals what SegDepthPolicy.stacked_frames holds at inference,
    through episode starts, episodes ending mid-repeat and the ring wrapping around (capacity < data)."""
    size = 16
    policy = tiny_policy(size, frame_stack, repeat)
    buffer = ReplayBuffer(
        capacity=9, num_envs=1, image_size=size, frame_stack=frame_stack, frames_per_step=repeat, state_dim=6, nstep=2
    )
    checked = 0
    lengths = [7, 11, 4, 9, 10, 3]
    for episode, steps in enumerate(lengths):  # env steps per episode, not all multiples of repeat
        policy.reset()
        frames = [env_frame(0, episode, t, size) for t in range(steps + 1)]
        decisions = [*range(0, steps, repeat), steps]  # decision times, and the final observation
        for i, t in enumerate(decisions):
            group = [frames[0]] * repeat if i == 0 else frames[decisions[i - 1] + 1 : t + 1]
            group = group + [group[-1]] * (repeat - len(group))  # an episode ending mid-repeat pads
            buffer.add_observation(np.stack(group)[None], np.zeros((1, 6), np.float32), np.array([i == 0]))
            for step in range(decisions[i - 1] + 1 if i else 0, t + 1):
                reference = policy.stacked_frames({OBS_SEGDEPTH: torch.from_numpy(frames[step][None]).float()})
            if t == steps and steps % repeat:
                continue  # the final frame after a partial repeat: the policy never decides there
            stack, _ = buffer.latest()
            np.testing.assert_array_equal(stack[0], reference[0].numpy().astype(np.uint8))
            checked += 1
    assert checked == sum(-(-n // repeat) + (n % repeat == 0) for n in lengths)
    assert buffer.count.max() > buffer.ring  # the ring wrapped


def fill(buffer: ReplayBuffer, episodes: list[tuple[int, bool]], rng: np.random.Generator) -> list[dict]:
    """Write episodes of (decisions, terminated) into a one-env buffer; return each slot's record for reference."""
    records = []
    size = buffer.frames.shape[-1]
    for episode, (decisions, terminated) in enumerate(episodes):
        for t in range(decisions + 1):
            frames = np.stack([env_frame(0, episode, t, size)] * buffer.frames_per_step)[None]
            state = rng.normal(size=(1, 6)).astype(np.float32)
            buffer.add_observation(frames, state, np.array([t == 0]))
            record = {"episode": episode, "t": t, "state": state[0], "acted": t < decisions}
            if t < decisions:
                action = rng.uniform(-1, 1, (1, 6)).astype(np.float32)
                reward = rng.normal(size=1).astype(np.float32)
                end = t == decisions - 1
                buffer.add_outcome(
                    action, reward, np.array([end and terminated]), np.array([end and not terminated]), np.array([True])
                )
                record.update(action=action[0], reward=float(reward[0]), done=end, terminal=end and terminated)
            records.append(record)
    return records


def test_replay_nstep_returns_match_a_float64_reference():
    """Sampled rewards, discounts and next observations against a walk over the recorded episodes in float64,
    including episodes that end terminal (no bootstrap) and truncated (bootstrap) within n steps."""
    nstep, gamma = 3, 0.9
    buffer = ReplayBuffer(
        capacity=1000,
        num_envs=1,
        image_size=4,
        frame_stack=3,
        frames_per_step=2,
        state_dim=6,
        nstep=nstep,
        discount=gamma,
        seed=3,
    )
    records = fill(buffer, [(5, True), (4, False), (2, True), (6, False)], np.random.default_rng(0))
    batch = buffer.sample(512)
    seen = set()
    for i, (_, k) in enumerate(batch["slot"].tolist()):
        seen.add(k)
        record = records[k]
        assert record["acted"]
        ret, discount, j = 0.0, 1.0, k
        while True:
            ret += discount * records[j]["reward"]
            discount *= gamma
            j += 1
            if records[j - 1]["done"] or j - k == nstep:
                break
        if records[j - 1]["terminal"]:
            discount = 0.0
        assert math.isclose(float(batch["reward"][i, 0]), ret, rel_tol=1e-5, abs_tol=1e-6)
        assert math.isclose(float(batch["discount"][i, 0]), discount, rel_tol=1e-6)
        np.testing.assert_array_equal(batch["state"][i].numpy(), record["state"])
        np.testing.assert_array_equal(batch["action"][i].numpy(), record["action"])
        np.testing.assert_array_equal(batch["next_state"][i].numpy(), records[j]["state"])
        expected_next = buffer.stack(np.array([0]), np.array([j]))[0]
        np.testing.assert_array_equal(batch["next_frames"][i].numpy(), expected_next)
    newest = len(records) - 1
    acted = {k for k, r in enumerate(records) if r["acted"] and k <= newest - nstep}
    assert seen == acted  # every complete transition is drawn, nothing else


def test_replay_save_load_gives_the_same_next_batch(tmp_path):
    def make() -> ReplayBuffer:
        return ReplayBuffer(
            capacity=40, num_envs=1, image_size=4, frame_stack=3, frames_per_step=2, state_dim=6, nstep=3, seed=5
        )

    buffer = make()
    fill(buffer, [(9, True), (12, False), (30, False)], np.random.default_rng(1))  # wraps the 40-slot ring
    buffer.sample(8)  # advance the sampler's RNG
    buffer.save(tmp_path / "replay")
    loaded = make()
    loaded.load(tmp_path / "replay")
    a, b = buffer.sample(64), loaded.sample(64)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    other = ReplayBuffer(capacity=40, num_envs=1, image_size=8, frame_stack=3, frames_per_step=2, state_dim=6)
    with pytest.raises(ValueError, match="image_size"):
        other.load(tmp_path / "replay")


def test_replay_stores_each_frame_once():
    buffer = ReplayBuffer(capacity=10, num_envs=1, image_size=84, frame_stack=3, frames_per_step=2, state_dim=6)
    frames = 2 * 2 * 84 * 84  # R frames of (ids, disparity) per decision
    rest = 6 * 4 + 6 * 4 + 4 + 1 + 1 + 1 + 1 + 8
    assert buffer.nbytes_per_transition == frames + rest
    assert buffer.stacked_nbytes_per_transition() == 2 * 3 * 2 * 84 * 84 + rest


def test_feature_cache_encodes_each_stored_stack_once_and_returns_its_features():
    """With the cache, a batch carries encode(stack) for its observation and its n-step next observation, equal
    to what encoding the uncached batch's frames gives, each slot encoded once, and a slot written again (the
    ring wrapping) is encoded again from its new frames."""
    import copy

    encoded_rows = []

    def encode(frames: torch.Tensor) -> torch.Tensor:  # (N, T*2, S, S) -> (N, T): each frame's disparity code
        encoded_rows.append(len(frames))
        return frames[:, 1::2, 0, 0] + 0.5  # codes < 256 and halves: exact in float16

    buffer = ReplayBuffer(
        capacity=40, num_envs=1, image_size=4, frame_stack=3, frames_per_step=2, state_dim=6, nstep=3, seed=5
    )
    fill(buffer, [(9, True), (12, False)], np.random.default_rng(1))
    plain = copy.deepcopy(buffer)
    buffer.enable_feature_cache(3)

    def same_batch(size: int) -> None:
        cached, reference = buffer.sample(size, encode), plain.sample(size)
        assert "frames" not in cached and cached["features"].shape == (size, 3)
        torch.testing.assert_close(cached["features"], encode(reference["frames"]), rtol=0, atol=0)
        torch.testing.assert_close(cached["next_features"], encode(reference["next_frames"]), rtol=0, atol=0)
        for key in ("state", "action", "reward", "discount", "next_state", "slot"):
            torch.testing.assert_close(cached[key], reference[key], rtol=0, atol=0)

    same_batch(32)
    same_batch(32)
    encoded = sum(encoded_rows) - 2 * 2 * 32  # less the reference encodings
    assert encoded == buffer.has_features.sum() <= 23  # every encoded slot once, at most every slot written

    # wrapping the 40-slot ring overwrites slots: they lose their features and are encoded from their new frames
    for buf in (buffer, plain):
        fill(buf, [(1, False), (1, False), (30, False)], np.random.default_rng(3))  # new codes: episode 2
    assert buffer.has_features.sum() < encoded
    same_batch(64)

    plain.enable_feature_cache(3)
    with pytest.raises(ValueError, match="float16 feature cache"):
        plain.sample(8, lambda frames: encode(frames) * 1e6)
    assert not plain.has_features.any()  # nothing half-written


# ----- learner --------------------------------------------------------------------------------------------------
def test_stddev_schedule_follows_drqv2():
    assert stddev("0.2", 10) == 0.2
    assert stddev("linear(1.0,0.1,100)", 0) == 1.0
    assert math.isclose(stddev("linear(1.0,0.1,100)", 50), 0.55)
    assert math.isclose(stddev("linear(1.0,0.1,100)", 1000), 0.1)
    with pytest.raises(ValueError, match="stddev_schedule"):
        DrQV2Config(stddev_schedule="cosine(1,0)")


@pytest.mark.parametrize("use_state", [True, False])
def test_agent_update_learns_and_moves_the_target_by_tau(use_state):
    torch.manual_seed(0)
    policy = tiny_policy(16, use_state=use_state)
    agent = DrQV2Agent(policy, DrQV2Config(batch_size=8, critic_hidden_dim=16, critic_target_tau=0.5))
    b = 8
    batch = {
        "frames": torch.randint(0, 6, (b, 6, 16, 16)).float(),
        "next_frames": torch.randint(0, 6, (b, 6, 16, 16)).float(),
        "state": torch.randn(b, 6),
        "next_state": torch.randn(b, 6),
        "action": torch.rand(b, 6) * 2 - 1,
        "reward": torch.randn(b, 1),
        "discount": torch.full((b, 1), 0.99**3),
    }
    encoder_before = [p.clone() for p in policy.encoder.parameters()]
    target_before = [p.clone() for p in agent.critic_target.parameters()]
    metrics = agent.update(batch, step=0)
    assert all(math.isfinite(v) for v in metrics.values())
    assert any(not torch.equal(a, b) for a, b in zip(encoder_before, policy.encoder.parameters(), strict=True))
    for old, target, online in zip(
        target_before, agent.critic_target.parameters(), agent.critic.parameters(), strict=True
    ):
        torch.testing.assert_close(target, 0.5 * old + 0.5 * online)
    action = agent.act(batch["frames"], batch["state"], step=0, explore=False)
    policy.eval()
    torch.testing.assert_close(
        action,
        policy.actor(policy.encoder(policy.encoder_input(batch["frames"])), batch["state"] if use_state else None),
    )


def fixed_batch(b: int, size: int = 16) -> dict[str, torch.Tensor]:
    return {
        "frames": torch.randint(0, 6, (b, 6, size, size)).float(),
        "next_frames": torch.randint(0, 6, (b, 6, size, size)).float(),
        "state": torch.randn(b, 6),
        "next_state": torch.randn(b, 6),
        "action": torch.rand(b, 6) * 1.6 - 0.8,
        "reward": torch.randn(b, 1),
        "discount": torch.full((b, 1), 0.99**3),
        "demo": torch.tensor([False, True] * (b // 2)),
    }


def test_actor_warmup_keeps_the_cloned_actor_while_the_critic_learns():
    torch.manual_seed(0)
    policy = tiny_policy(16, use_state=True)
    agent = DrQV2Agent(policy, DrQV2Config(actor_warmup_updates=3), init_policy_weights=False)
    actor_before = [p.clone() for p in policy.actor.parameters()]
    critic_before = [p.clone() for p in agent.critic.parameters()]
    batch = fixed_batch(8)
    for update in range(3):
        agent.update(batch, step=0, update=update)
    assert all(torch.equal(a, b) for a, b in zip(actor_before, policy.actor.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(critic_before, agent.critic.parameters(), strict=True))
    agent.update(batch, step=0, update=3)
    assert any(not torch.equal(a, b) for a, b in zip(actor_before, policy.actor.parameters(), strict=True))


def test_bc_term_pulls_the_actor_to_the_demonstrated_actions_only():
    torch.manual_seed(0)
    policy = tiny_policy(16, use_state=True)
    agent = DrQV2Agent(policy, DrQV2Config(bc_weight=100.0, lr=3e-3))
    batch = fixed_batch(8)
    demo = batch["demo"]

    def errors() -> tuple[float, float]:
        policy.eval()
        with torch.no_grad():
            mean = policy.actor(policy.encoder(policy.encoder_input(batch["frames"])), batch["state"])
        policy.train()
        err = (mean - batch["action"]).pow(2).mean(dim=1)
        return float(err[demo].mean()), float(err[~demo].mean())

    demo_before, _ = errors()
    metrics = [agent.update(batch, step=0, update=i) for i in range(150)]
    demo_after, other_after = errors()
    assert all(math.isfinite(m["bc_loss"]) for m in metrics)
    # the BC term sees only the demonstration rows: their error falls far below the other rows'
    assert demo_after < 0.2 * demo_before
    assert demo_after < 0.2 * other_after


def test_a_frozen_encoder_keeps_the_clones_features_while_critic_and_actor_learn():
    torch.manual_seed(0)
    policy = tiny_policy(16, use_state=True)
    agent = DrQV2Agent(policy, DrQV2Config(encoder_lr=0.0, bc_weight=1.0), init_policy_weights=False)
    encoder_before = {k: v.clone() for k, v in policy.encoder.state_dict().items()}
    actor_before = [p.clone() for p in policy.actor.parameters()]
    critic_before = [p.clone() for p in agent.critic.parameters()]
    for update in range(3):
        metrics = agent.update(fixed_batch(8), step=0, update=update)
    assert all(math.isfinite(v) for v in metrics.values())
    for key, value in policy.encoder.state_dict().items():
        assert torch.equal(value, encoder_before[key]), key
    assert all(p.grad is None for p in policy.encoder.parameters())  # no backward pass through it at all
    assert any(not torch.equal(a, b) for a, b in zip(actor_before, policy.actor.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(critic_before, agent.critic.parameters(), strict=True))
    with pytest.raises(ValueError, match="encoder_lr"):
        DrQV2Config(encoder_lr=-1.0)


def test_an_update_on_cached_features_equals_one_on_the_frames_they_encode():
    """feature_cache drops the random shift and the encoder's forward pass, nothing else: the same update on
    encode(frames) moves critic, target and actor exactly as on the unshifted frames; actor=False moves the critic
    alone (the critic pre-training on demonstrations)."""
    import copy

    torch.manual_seed(0)
    config = DrQV2Config(encoder_lr=0.0, feature_cache=True, actor_objective="awr", lr=1e-3)
    on_frames = DrQV2Agent(tiny_policy(16, use_state=True), config, init_policy_weights=False)
    on_frames.policy.aug = torch.nn.Identity()  # the cache stores unshifted stacks
    on_features = copy.deepcopy(on_frames)
    batch = fixed_batch(8)
    cached = {k: v for k, v in batch.items() if not k.endswith("frames")}
    cached["features"] = on_features.encode(batch["frames"])
    cached["next_features"] = on_features.encode(batch["next_frames"])
    for update in range(3):
        torch.manual_seed(update)
        a = on_frames.update(batch, step=0, update=update)
        torch.manual_seed(update)
        b = on_features.update(cached, step=0, update=update)
        assert a == pytest.approx(b, rel=1e-5)
    for module in ("critic", "critic_target"):
        for x, y in zip(
            getattr(on_frames, module).parameters(), getattr(on_features, module).parameters(), strict=True
        ):
            torch.testing.assert_close(x, y)
    for x, y in zip(on_frames.policy.parameters(), on_features.policy.parameters(), strict=True):
        torch.testing.assert_close(x, y)

    actor_before = [p.clone() for p in on_features.policy.actor.parameters()]
    critic_before = [p.clone() for p in on_features.critic.parameters()]
    on_features.update(cached, step=0, update=10, actor=False)
    assert all(torch.equal(a, b) for a, b in zip(actor_before, on_features.policy.actor.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(critic_before, on_features.critic.parameters(), strict=True))

    learning_encoder = DrQV2Agent(tiny_policy(16, use_state=True), DrQV2Config(), init_policy_weights=False)
    with pytest.raises(ValueError, match="frozen encoder"):
        learning_encoder.update(cached, step=0)
    with pytest.raises(ValueError, match=r"feature_cache=true needs agent\.encoder_lr=0"):
        DrQV2Config(feature_cache=True)
    with pytest.raises(ValueError, match="critic_pretrain_updates"):
        DrQV2Config(critic_pretrain_updates=-1)


def test_each_part_learns_at_its_own_rate():
    config = DrQV2Config(lr=1e-4, actor_lr=1e-5, encoder_lr=3e-5)
    agent = DrQV2Agent(tiny_policy(16, use_state=True), config, init_policy_weights=False)
    rates = {
        name: opt.param_groups[0]["lr"]
        for name, opt in (("actor", agent.actor_opt), ("encoder", agent.encoder_opt), ("critic", agent.critic_opt))
    }
    assert rates == {"actor": 1e-5, "encoder": 3e-5, "critic": 1e-4}
    default = DrQV2Agent(tiny_policy(16, use_state=True), DrQV2Config(lr=2e-4))
    assert {opt.param_groups[0]["lr"] for opt in (default.actor_opt, default.encoder_opt, default.critic_opt)} == {2e-4}
    with pytest.raises(ValueError, match="actor_lr"):
        DrQV2Config(actor_lr=-1.0)


class QuadraticCritic(torch.nn.Module):
    """Q(s, a) = -|a - best|^2 for both heads: the advantage of every action is known in closed form."""

    def __init__(self, best: torch.Tensor):
        super().__init__()
        self.best = best
        self.scale = torch.nn.Parameter(torch.ones(()))  # something for the critic's optimiser to hold

    def forward(self, features, state, action):
        q = -self.scale * (action - self.best).pow(2).sum(dim=-1, keepdim=True)
        return q, q + 1.0  # the min picks the first head


def test_awr_weights_are_the_exponentiated_advantage_in_units_of_its_spread():
    torch.manual_seed(0)
    agent = DrQV2Agent(tiny_policy(16, use_state=True), DrQV2Config(actor_objective="awr", awr_temperature=0.5))
    best = torch.full((6,), 0.3)
    agent.critic = QuadraticCritic(best)
    action, mean = torch.rand(8, 6) * 2 - 1, torch.rand(8, 6) * 2 - 1
    advantage = ((mean - best).pow(2).sum(1) - (action - best).pow(2).sum(1)).double()
    expected = torch.exp(advantage / (0.5 * advantage.std())).clamp(max=20.0)
    weights = agent.awr_weights(torch.zeros(8, 4), torch.zeros(8, 6), action, mean)
    torch.testing.assert_close(weights.double(), expected, rtol=1e-5, atol=1e-6)


def test_awr_moves_the_actor_towards_the_batch_actions_the_critic_prefers():
    """Every row shows the same observation; half carry the action the critic rates best, half a poor one. Plain
    regression would settle halfway; the weighted one goes (almost) all the way to the good action."""
    torch.manual_seed(0)
    policy = tiny_policy(16, use_state=True)
    config = DrQV2Config(actor_objective="awr", awr_temperature=0.5, lr=3e-3)
    agent = DrQV2Agent(policy, config, init_policy_weights=False)
    good, poor = torch.full((6,), 0.5), torch.full((6,), -0.5)
    agent.critic = QuadraticCritic(good)
    agent.critic_target = QuadraticCritic(good)
    agent.critic_opt = torch.optim.Adam(agent.critic.parameters(), lr=0.0)
    batch = {k: v[:1].expand(8, *v.shape[1:]).clone() for k, v in fixed_batch(2).items()}
    batch["action"] = torch.stack([good, poor] * 4)
    for update in range(300):
        metrics = agent.update(batch, step=0, update=update)
    assert math.isfinite(metrics["actor_loss"]) and metrics["awr_weight_max"] > 1.0
    policy.eval()
    with torch.no_grad():
        mean = policy.actor(policy.encoder(policy.encoder_input(batch["frames"])), batch["state"])
    assert float((mean - good).abs().max()) < 0.1  # plain regression: 0.5 away from both
    with pytest.raises(ValueError, match="actor_objective"):
        DrQV2Config(actor_objective="sac")


# ----- the command end to end -----------------------------------------------------------------------------------
def tiny_run(out: Path, frames: int, **overrides) -> RLTrainConfig:
    policy = SegDepthConfig(image_size=32, action_repeat=2, push_to_hub=False, **TINY_POLICY)
    cfg = RLTrainConfig(
        env=TwinSettings(observation_height=32, observation_width=43, episode_length=40),
        policy=policy,
        agent=DrQV2Config(batch_size=16, critic_hidden_dim=32),
        num_envs=2,
        workers=False,
        frames=frames,
        seed_frames=80,
        replay_capacity=4000,
        output_dir=out,
        log_freq=60,  # not a divisor of the 160 frames a resumed run starts from
    )
    cfg.eval.every_frames, cfg.eval.episodes, cfg.eval.num_envs = 160, 2, 2
    return dataclasses.replace(cfg, **overrides)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """320 frames in one go, keeping every replay batch it learned from."""
    out = tmp_path_factory.mktemp("rl") / "a"
    batches = []
    result = train(tiny_run(out, 320), on_update=lambda counters, batch: batches.append((counters, batch)))
    return out, result, batches


@pytest.mark.slow
def test_a_few_hundred_steps_learn_with_finite_losses(uninterrupted):
    out, result, batches = uninterrupted
    logs = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    learned = [log for log in logs if "critic_loss" in log]
    assert learned and all(math.isfinite(log[k]) for log in learned for k in ("critic_loss", "actor_loss", "q"))
    assert result["counters"]["updates"] == len(batches) > 50  # one per vector step after the seed frames
    assert len(result["history"]) == 2 and result["history"][0]["frames"] >= 160
    # `best` points at the checkpoint with the higher evaluation success (ties: return), `last` at the newest
    checkpoints = out / "checkpoints"
    best = max(result["history"], key=lambda h: (h["success_rate"], h["return"]))
    assert (checkpoints / "best").resolve().name == f"{best['frames']:010d}"
    assert (checkpoints / "last").resolve().name == f"{result['history'][-1]['frames']:010d}"
    assert (out / "learning_curve.png").stat().st_size > 0
    assert list((out / "videos").glob("*/eval_episode_0.mp4"))
    start = load_file(out / "processors" / "model.safetensors")
    final = load_file(out / "checkpoints" / "last" / "pretrained_model" / "model.safetensors")
    assert start.keys() == final.keys()
    assert any(not torch.equal(start[k], final[k]) for k in start if k.startswith("actor."))


def test_the_learning_curve_names_the_run_and_labels_its_axes(tmp_path):
    import matplotlib.pyplot as plt

    cfg = tiny_run(tmp_path / "reach_s3", 320, seed=3)
    title = learning_curve_title(cfg)
    assert "ReachCube, seed 3, from scratch" in title and str(tmp_path / "reach_s3") in title
    assert "20 episodes on cube poses 1000-1019" in learning_curve_title(dataclasses.replace(cfg, eval=EvalSettings()))
    history = [{"frames": f, "wall_min": f / 100, "success_rate": f / 400, "return": f / 10} for f in (160, 320)]
    fig = learning_curve_figure(history, title)
    assert fig._suptitle.get_text() == title
    for ax in fig.axes:
        assert ax.get_title() and ax.get_xlabel() and ax.get_ylabel()
    assert [ax.get_xlabel() for ax in fig.axes] == ["env frames", "wall time (min)"]
    plt.close(fig)
    plot_learning_curve(history, tmp_path / "curve.png", title)
    assert (tmp_path / "curve.png").stat().st_size > 0


@pytest.mark.slow
def test_the_checkpoint_is_an_ordinary_segdepth_policy_for_lerobot_eval(uninterrupted, tmp_path):
    out, _, _ = uninterrupted
    checkpoint = out / "checkpoints" / "last" / "pretrained_model"
    flags = ("--env.cameras=[wrist]", "--env.depth=true", "--env.segmentation=true", "--eval.use_async_envs=false")
    overall = eval_in_twin(
        checkpoint,
        tmp_path / "eval",
        (32, 43),
        tmp_path,
        flags=(*flags, "--seed=1000"),
        task="ReachCube",
        episode_length=40,
        episodes=2,
    )
    assert overall["n_episodes"] == 2 and 0.0 <= overall["pc_success"] <= 100.0


@pytest.mark.slow
def test_resume_continues_with_the_batch_an_uninterrupted_run_would_draw(uninterrupted, tmp_path):
    a_out, a_result, a_batches = uninterrupted
    out = tmp_path / "b"
    train(tiny_run(out, 160))  # stops after its checkpoint at 160 frames
    # as if a 320-frame run had been killed after that checkpoint: the same command again is refused before any work,
    # naming the flag that resumes it (LeRobot's convention: only --resume=true continues a run)
    (out / RUN_FINISHED).unlink()
    before = mtimes(out)
    with pytest.raises(OutputRefused, match=r"holds an unfinished run of these settings: pass --resume=true"):
        train(tiny_run(out, 320))
    assert mtimes(out) == before
    resumed = []
    result = train(tiny_run(out, 320, resume=True), on_update=lambda counters, batch: resumed.append((counters, batch)))
    checkpoint_frames = a_result["history"][0]["frames"]
    expected = next(batch for counters, batch in a_batches if counters["frames"] >= checkpoint_frames)
    counters, first = resumed[0]
    assert counters["frames"] == checkpoint_frames
    for key in expected:
        torch.testing.assert_close(first[key], expected[key], rtol=0, atol=0, msg=f"resumed batch differs in {key}")
    assert result["counters"]["frames"] >= 320
    assert [h["frames"] for h in result["history"]] == [h["frames"] for h in a_result["history"]]
    # logs fall on the same multiples of log_freq (60) as the uninterrupted run's, and the last frame is
    # logged: a cadence counted from the resume (160 + 60k) would log at 220 and 280 instead of 180, 240 and 300
    logs = [json.loads(line)["frames"] for line in (out / "train.jsonl").read_text().splitlines()]
    straight = [json.loads(line)["frames"] for line in (a_out / "train.jsonl").read_text().splitlines()]
    resumed_logs = [f for f in logs if f > checkpoint_frames]
    assert [f // 60 for f in resumed_logs[:-1]] == [f // 60 for f in straight if 180 <= f < 320] == [3, 4, 5]
    assert resumed_logs[-1] == result["counters"]["frames"] and straight[-1] == a_result["counters"]["frames"]


def test_bad_runs_fail_before_training_and_overwrite_nothing(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="holds no segdepth-rl-train run: choose another --output_dir"):
        train(tiny_run(out, 160))
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(tiny_run(out, 160, resume=True))
    assert [p.name for p in out.iterdir()] == ["keep.txt"]

    policy = tiny_policy(32)
    env_cfg = TwinSettings(observation_height=32, observation_width=43).env_config("wrist")
    policy.config.output_features = {ACTION: PolicyFeature(type=FeatureType.ACTION, shape=(7,))}
    with pytest.raises(ValueError, match=r"actions of shape \(6,\).*emits \(7,\)"):
        check_policy_fits_env(policy, env_cfg)
    with pytest.raises(ValueError, match=r"action_mode=delta or absolute and no.*this one is chained with action_h"):
        check_policy_fits_env(tiny_policy(32, action_repeat=1, action_mode="chained"), env_cfg)
    with pytest.raises(ValueError, match=r"this one is delta with action_history=1"):
        check_policy_fits_env(tiny_policy(32, action_repeat=1, action_history=1), env_cfg)


def test_a_render_smaller_than_the_policys_image_is_refused_naming_both_flags():
    env_cfg = TwinSettings(observation_height=48, observation_width=64).env_config("wrist")
    check_policy_fits_env(tiny_policy(48), env_cfg)
    with pytest.raises(ValueError, match=r"--env.observation_height=48 .*--policy.image_size=64"):
        check_policy_fits_env(tiny_policy(64), env_cfg)


@pytest.mark.slow
def test_resuming_with_another_config_is_refused_and_keeps_the_checkpoint(uninterrupted):
    out, _, _ = uninterrupted
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    changed = tiny_run(out, 480, resume=True, agent=DrQV2Config(batch_size=32, critic_hidden_dim=32))
    with pytest.raises(ValueError, match=r"differs.*agent"):
        train(changed)
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before


@pytest.mark.slow
def test_a_finished_run_started_again_does_nothing_and_one_of_other_settings_is_refused(uninterrupted, capsys):
    out, result, _ = uninterrupted
    before = mtimes(out)
    capsys.readouterr()
    for resume in (False, True):  # with or without --resume=true, the same settings: nothing to do
        again = train(tiny_run(out, 320, resume=resume))
        assert again["already_trained"] and again["counters"] == result["counters"]
    assert capsys.readouterr().out == nothing_to_do(out, f"{result['counters']['frames']} frames") * 2
    with pytest.raises(OutputRefused, match=r"other settings \(seed: saved 1, now 2\): choose another --output_dir"):
        train(tiny_run(out, 320, seed=2))
    # more frames: the run may be trained further, with --resume=true
    with pytest.raises(OutputRefused, match=r"\(frames: saved 320, now 480\): pass --resume=true to continue it"):
        train(tiny_run(out, 480))
    assert mtimes(out) == before


# ----- demonstrations -------------------------------------------------------------------------------------------
def demo_policy(root: Path):
    from lerobot.datasets import LeRobotDatasetMetadata
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    meta = LeRobotDatasetMetadata("local/twin_demo", root=root)
    cfg = SegDepthConfig(device="cpu", push_to_hub=False, image_size=32, action_repeat=1, **TINY_POLICY)
    policy = make_policy(cfg, ds_meta=meta)
    pre, _ = make_pre_post_processors(cfg, dataset_stats=meta.stats)
    return policy, pre


@pytest.mark.slow
def test_demonstrations_replay_in_the_twin_and_fill_a_buffer(gt_dataset):
    from so101_segdepth_rl.demos import DemoSettings, demo_buffer, mixed_batch

    policy, pre = demo_policy(gt_dataset)
    settings = DemoSettings(repo_id="local/twin_demo", root=gt_dataset, share=0.25)
    buffer, summary = demo_buffer(settings, policy.config, pre, "LiftCube", nstep=3, discount=0.99, seed=0)
    frames = int(buffer.count[0])
    assert summary["episodes"] == 2 and summary["transitions"] == frames - 2
    assert buffer.acted[0, :frames].sum() == frames - 2  # each episode's last frame is its final observation
    rewards = buffer.reward[0, :frames][buffer.acted[0, :frames]]
    assert np.isfinite(rewards).all() and rewards.min() >= 0.0 and rewards.max() <= 3.0
    assert rewards.max() > 0.5  # the expert gets its grasp point to the cube
    deltas = buffer.action[0, :frames][buffer.acted[0, :frames]]
    assert np.abs(deltas).max() <= 1.0 and np.abs(deltas).max() > 0.05

    online = ReplayBuffer(capacity=100, num_envs=1, image_size=32, frame_stack=3, frames_per_step=1, state_dim=6)
    fill(online, [(20, False)], np.random.default_rng(0))
    batch = mixed_batch(online, buffer, 8, 0.25)
    assert batch["frames"].shape == (8, 6, 32, 32) and batch["reward"].shape == (8, 1)
    assert batch["demo"].tolist() == [False] * 6 + [True] * 2

    wrong = DemoSettings(repo_id="local/twin_demo", root=gt_dataset, scene_seed=7)
    with pytest.raises(ValueError, match="does not replay in the twin"):
        demo_buffer(wrong, policy.config, pre, "LiftCube", nstep=3, discount=0.99, seed=0)


@pytest.mark.slow
def test_demonstrations_without_the_policys_inputs_are_refused(gt_dataset):
    from lerobot.datasets import LeRobotDataset

    from so101_segdepth_rl.demos import check_demo_features

    policy, _ = demo_policy(gt_dataset)
    dataset = LeRobotDataset("local/twin_demo", root=gt_dataset)
    check_demo_features(dataset, policy.config)
    front = dataclasses.replace(policy.config, camera="left")
    with pytest.raises(ValueError, match=r"observation\.images\.left_depth"):
        check_demo_features(dataset, front)
    repeat = dataclasses.replace(policy.config, action_repeat=2)
    with pytest.raises(ValueError, match="action_repeat=1"):
        check_demo_features(dataset, repeat)


def saved_clone(dataset_root: Path, tmp_path: Path) -> Path:
    """A tiny segdepth 'clone' of the recording, saved with its processors as the demo saves one."""
    from lerobot.datasets import LeRobotDatasetMetadata
    from lerobot.policies.factory import make_pre_post_processors

    from so101_run_infra.checkpoints import save_policy

    policy, _ = demo_policy(dataset_root)
    meta = LeRobotDatasetMetadata("local/twin_demo", root=dataset_root)
    pre, post = make_pre_post_processors(policy.config, dataset_stats=meta.stats)
    clone = tmp_path / "clone"
    save_policy(clone, policy, pre, post)
    return clone


def fine_tuning_run(dataset_root: Path, tmp_path: Path, frames: int, agent: DrQV2Config) -> tuple[Path, RLTrainConfig]:
    """The recording's saved clone and a tiny LiftCube run fine-tuning it (into tmp_path / "ft"), with the
    recording as demonstrations (half of each batch)."""
    from so101_segdepth_rl.demos import DemoSettings

    clone = saved_clone(dataset_root, tmp_path)
    cfg = tiny_run(
        tmp_path / "ft",
        frames,
        policy_path=clone,
        seed_frames=0,
        env=TwinSettings(task="LiftCube", observation_height=64, observation_width=80, episode_length=40),
        demos=DemoSettings(repo_id="local/twin_demo", root=dataset_root, share=0.5),
        agent=agent,
    )
    return clone, cfg


@pytest.mark.slow
def test_fine_tuning_a_clone_from_demonstrations_end_to_end(gt_dataset, tmp_path):
    """--policy.path + --demos: the clone is evaluated first (the curve's point at 0 frames), the critic learns
    alone for the warm-up, the actor's TD3+BC term is logged, and the result is a segdepth checkpoint again."""
    agent = DrQV2Config(batch_size=16, critic_hidden_dim=32, actor_warmup_updates=20, bc_weight=1.0)
    clone, cfg = fine_tuning_run(gt_dataset, tmp_path, 160, agent)
    out = cfg.output_dir
    result = train(cfg)
    evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert evals[0]["frames"] == 0 and evals[0]["updates"] == 0 and evals[-1]["frames"] >= 160
    logs = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert any("bc_loss" in log for log in logs)
    assert all(math.isfinite(log["bc_loss"]) for log in logs if "bc_loss" in log)
    assert result["counters"]["updates"] > 20
    start = load_file(clone / "model.safetensors")
    final = load_file(out / "checkpoints" / "last" / "pretrained_model" / "model.safetensors")
    assert start.keys() == final.keys()
    assert any(not torch.equal(start[k], final[k]) for k in start if k.startswith("actor."))


@pytest.mark.slow
def test_fine_tuning_on_cached_features_fits_the_critic_on_the_demonstrations_first(gt_dataset, tmp_path):
    """rl_lift_finetune_critic.yaml's path: the critic's pre-training on the demonstrations is logged and leaves
    the clone as it was (the curve's first point is the clone), the frozen encoder is saved unchanged, and the
    actor still learns online from cached features."""
    agent = DrQV2Config(
        batch_size=16,
        critic_hidden_dim=32,
        encoder_lr=0.0,
        feature_cache=True,
        critic_pretrain_updates=30,
        actor_objective="awr",
        actor_warmup_updates=5,
    )
    clone, cfg = fine_tuning_run(gt_dataset, tmp_path, 80, agent)
    out = cfg.output_dir
    result = train(cfg)
    pretrain = [json.loads(line) for line in (out / "critic_pretrain.jsonl").read_text().splitlines()]
    assert pretrain[-1]["update"] == 30 and all(math.isfinite(log["critic_loss"]) for log in pretrain)
    assert pretrain[-1]["q"] > pretrain[0]["q"] + 0.1  # the recordings' (positive) rewards propagate into Q
    evals = [json.loads(line) for line in (out / "eval.jsonl").read_text().splitlines()]
    assert evals[0]["frames"] == 0 and evals[0]["updates"] == 0
    assert result["counters"]["updates"] > 5
    start = load_file(clone / "model.safetensors")
    final = load_file(out / "checkpoints" / "last" / "pretrained_model" / "model.safetensors")
    assert all(torch.equal(start[k], final[k]) for k in start if k.startswith("encoder."))
    assert any(not torch.equal(start[k], final[k]) for k in start if k.startswith("actor."))


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], (48, 2, 3)),  # the trainer's defaults
        (["--policy.frame_stack=2"], (48, 2, 2)),  # one policy flag keeps the others' RL defaults (it reset them)
        (["--policy.image_size=64"], (64, 2, 3)),
        (["--config_path=configs/rl_reach.yaml", "--policy.frame_stack=2"], (32, 2, 2)),  # the file's, then the flag
        (["--config_path=configs/rl_lift_finetune.yaml"], (48, 2, 3)),  # a policy section of push fields only
        # a checkpoint brings its own config: the file's section is left as given
        (["--config_path=configs/rl_lift_finetune.yaml", "--policy.path=outputs/clone"], (84, 1, 3)),
    ],
)
def test_policy_flags_keep_the_trainers_other_defaults(monkeypatch, args, expected):
    from lerobot.configs import parser

    def parsed(cfg):
        return cfg

    parsed.__annotations__["cfg"] = RLTrainConfig  # parser.wrap reads the class, not this file's string annotation
    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    monkeypatch.setattr("sys.argv", ["segdepth-rl-train", *args, "--policy.push_to_hub=false"])
    cfg = parser.wrap()(parsed)()
    assert (cfg.policy.image_size, cfg.policy.action_repeat, cfg.policy.frame_stack) == expected


def test_a_run_saved_before_the_perception_source_rename_compares_equal_on_resume():
    """train_config.json of a run saved when the policy field was `source` (and `models` its value for
    segmenter_depth_anything) reads as today's config encodes it."""
    from so101_segdepth_rl.config import comparable, in_todays_names

    cfg = RLTrainConfig(policy=SegDepthConfig(image_size=48, action_repeat=2, push_to_hub=False))
    now = json.loads(json.dumps(comparable(cfg)))
    before = json.loads(json.dumps(now))
    del before["policy"]["perception_source"]
    assert in_todays_names({**before, "policy": {**before["policy"], "source": "ground_truth"}}) == now
    assert in_todays_names(now) == now
    models = in_todays_names({**before, "policy": {**before["policy"], "source": "models"}})
    assert models["policy"]["perception_source"] == "segmenter_depth_anything"


def test_the_agent_learns_on_the_arm_its_twin_settings_name(tmp_path):
    """--env.arm* reach the twin the agent steps, as lerobot-eval's do; an ideal-arm config still compares equal to
    one saved before the arm settings existed, and a bad arm is refused naming the flag."""
    from lerobot_env_so101_twin.arm import ArmParams, ArmRanges
    from so101_segdepth_rl.config import comparable

    arm = ArmParams(latency_ms=40.0, backlash_deg=[0.5], calibration_deg=[1.0, 0.0, -1.0, 0.0, 0.0, 0.0])
    (tmp_path / "arm.json").write_text(json.dumps(arm.as_dict()))
    played = TwinSettings(task="LiftCube", arm_path=str(tmp_path / "arm.json")).env_config("wrist")
    assert played.gym_kwargs["arm_params"].as_dict() == arm.as_dict()
    varied = TwinSettings(arm="varied", arm_seed=3, arm_ranges=ArmRanges(latency_ms=(0.0, 20.0))).env_config("wrist")
    kwargs = varied.gym_kwargs
    assert (kwargs["arm"], kwargs["arm_seed"], kwargs["arm_ranges"].latency_ms) == ("varied", 3, (0.0, 20.0))

    ideal = comparable(RLTrainConfig(policy=SegDepthConfig(image_size=48, push_to_hub=False)))
    assert not {"arm", "arm_params", "arm_ranges", "arm_seed", "arm_path"} & set(ideal["env"])
    delayed = RLTrainConfig(env=TwinSettings(arm_params=ArmParams(latency_ms=40.0)),
                            policy=SegDepthConfig(image_size=48, push_to_hub=False))  # fmt: skip
    assert comparable(delayed)["env"]["arm_params"]["latency_ms"] == 40.0
    with pytest.raises(ValueError, match=r"--env\.arm_params\.latency_ms=-1"):
        TwinSettings(arm_params=ArmParams(latency_ms=-1.0))
    with pytest.raises(ValueError, match=r"--env\.arm_path plays one identified arm"):
        TwinSettings(arm="varied", arm_path=str(tmp_path / "arm.json"))


def test_the_agent_learns_in_the_look_its_twin_settings_name():
    """--env.appearance and --env.look_seed reach the twin the agent steps (a user's own scene); the plain look
    compares equal to a run saved before the fields existed, and a bad look is refused naming the flag."""
    from so101_segdepth_rl.config import comparable

    kwargs = TwinSettings(appearance="unseen", look_seed=61).env_config("wrist").gym_kwargs
    assert (kwargs["appearance"], kwargs["look_seed"]) == ("unseen", 61)
    policy = SegDepthConfig(image_size=48, push_to_hub=False)
    assert not {"appearance", "look_seed"} & set(comparable(RLTrainConfig(policy=policy))["env"])
    own = comparable(RLTrainConfig(env=TwinSettings(appearance="unseen", look_seed=61), policy=policy))["env"]
    assert (own["appearance"], own["look_seed"]) == ("unseen", 61)
    with pytest.raises(ValueError, match=r"--env\.appearance='odd'"):
        TwinSettings(appearance="odd")
    with pytest.raises(ValueError, match=r"--env\.look_seed=61"):
        TwinSettings(look_seed=61)
