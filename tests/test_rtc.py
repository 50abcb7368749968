"""Real-time chunking (`lerobot-rollout --inference.type=rtc`, LeRobot's RTC engine) with the suite's policies.

SegVLA is SmolVLA plus cues, so under RTC it must steer its chunks exactly as SmolVLA does (cues off), and the cues
must not change what RTC does without a leftover (the first chunk is the synchronous one). imf steers its
MeanFlow jump the same way. What LeRobot's engine cannot drive is refused before the robot connects, in the
policy's own words: a horizon longer than the chunk, imf's frame history, SegDepth's one action a step, HLRP's head;
a chunk shorter than the measured delay is refused at the chunk instead of silently never moving the arm."""

from __future__ import annotations

import itertools
from pathlib import Path

import docs_commands
import pytest
import torch
from clitools import rollout_in_twin
from lerobot.policies.rtc.configuration_rtc import RTCConfig
from lerobot.policies.smolvla import SmolVLAConfig, SmolVLAPolicy
from lerobot.rollout.inference.rtc import supports_rtc_inference
from test_imf import tiny_policy as tiny_imf
from test_segvla import common, make_batch, noise, seg_config

from lerobot_policy_segvla import SegVLAConfig, SegVLAPolicy
from so101_devtools.tiny_models import save_smolvlm

DELAY = 1
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory):
    return save_smolvlm(tmp_path_factory.mktemp("smolvlm"))


def rtc(horizon: int = 3) -> RTCConfig:
    return RTCConfig(execution_horizon=horizon)


def leftover(steps: int = 3, seed: int = 5) -> torch.Tensor:
    """The previous chunk's unexecuted actions, as LeRobot's engine passes them: (T, action_dim), normalised."""
    return torch.randn(steps, 6, generator=torch.Generator().manual_seed(seed))


def rtc_chunk(policy, batch: dict, prev: torch.Tensor | None, delay: int = DELAY) -> torch.Tensor:
    policy.reset()
    return policy.predict_action_chunk(dict(batch), noise=noise(1), inference_delay=delay, prev_chunk_left_over=prev)


def with_rtc(policy, config: RTCConfig | None):
    """What lerobot-rollout does to a loaded policy for --inference.type=rtc."""
    policy.config.rtc_config = config
    policy.init_rtc_processor()
    return policy


# ----- SegVLA: SmolVLA's RTC, exactly ---------------------------------------------------------------------------------
def test_segvla_with_cues_off_under_rtc_is_smolvla_under_rtc(vlm_dir):
    torch.manual_seed(0)
    smol = with_rtc(SmolVLAPolicy(SmolVLAConfig(**common(vlm_dir))), rtc())
    seg = with_rtc(SegVLAPolicy(SegVLAConfig(**common(vlm_dir))), rtc())
    seg.load_state_dict(smol.state_dict(), strict=True)
    batch = make_batch(vlm_dir, batch=1)
    assert supports_rtc_inference(seg)
    steered = rtc_chunk(seg, batch, leftover())
    assert torch.equal(rtc_chunk(smol, batch, leftover()), steered)
    # the leftover did steer the chunk (the check above would hold for a policy ignoring it too)
    assert not torch.allclose(rtc_chunk(seg, batch, None), steered)


def test_segvla_under_rtc_without_a_leftover_is_its_synchronous_chunk(vlm_dir):
    torch.manual_seed(0)
    sync = SegVLAPolicy(seg_config(vlm_dir))
    # random cue projections: SegVLA's are zero at initialisation, so the cues would add nothing to compare
    for proj in ("segmentation_token_proj", "segmentation_state_proj", "segmentation_context_proj"):
        torch.nn.init.normal_(getattr(sync.model, proj).weight, std=0.5)
    steered = with_rtc(SegVLAPolicy(seg_config(vlm_dir)), rtc())
    steered.load_state_dict(sync.state_dict(), strict=True)
    batch = make_batch(vlm_dir, batch=1)
    sync.reset()
    plain = sync.predict_action_chunk(dict(batch), noise=noise(1))
    assert torch.equal(rtc_chunk(steered, batch, None, delay=0), plain)
    # the cues are read under RTC: other scores, another chunk
    moved = make_batch(vlm_dir, batch=1, shift=20)
    assert not torch.allclose(rtc_chunk(steered, moved, leftover()), rtc_chunk(steered, batch, leftover()))


def test_segvla_steers_the_prefix_toward_the_leftover(vlm_dir):
    torch.manual_seed(0)
    policy = with_rtc(SegVLAPolicy(seg_config(vlm_dir)), rtc(horizon=4))
    batch = make_batch(vlm_dir, batch=1)
    prev = leftover(steps=4)
    free = rtc_chunk(policy, batch, None)[0, :DELAY]
    steered = rtc_chunk(policy, batch, prev)[0, :DELAY]
    assert (steered - prev[:DELAY]).norm() < 0.5 * (free - prev[:DELAY]).norm()


def test_a_horizon_longer_than_the_chunk_is_refused_while_the_policy_is_made(vlm_dir):
    policy = SegVLAPolicy(seg_config(vlm_dir))  # chunk_size 4
    with pytest.raises(ValueError, match=r"execution_horizon=10 is longer than this segvla checkpoint's chunk "):
        with_rtc(policy, rtc(horizon=10))
    with_rtc(policy, rtc(horizon=4))  # as long as the chunk is fine


def test_a_chunk_no_longer_than_the_delay_is_refused_not_dropped(vlm_dir):
    policy = with_rtc(SegVLAPolicy(seg_config(vlm_dir)), rtc())
    batch = make_batch(vlm_dir, batch=1)
    with pytest.raises(RuntimeError, match=r"takes 4 control steps .* the whole chunk of 4 actions"):
        rtc_chunk(policy, batch, leftover(), delay=4)
    assert rtc_chunk(policy, batch, leftover(), delay=3).shape == (1, 4, 6)


# ----- imf ------------------------------------------------------------------------------------------------------------
def imf_pair(**overrides):
    """A plain imf and the same weights under RTC (horizon 4, one frame of history)."""
    torch.manual_seed(0)
    args = {"n_obs_steps": 1, "inference_noise_seed": 3, **overrides}
    plain = tiny_imf(**args)
    steered = with_rtc(tiny_imf(**args), rtc(horizon=4))
    steered.load_state_dict(plain.state_dict(), strict=True)
    return plain.eval(), steered.eval()


def imf_batch(seed: int = 0) -> dict:
    from test_imf import CAMERAS

    gen = torch.Generator().manual_seed(seed)
    batch = {f"observation.images.{v}": torch.rand(1, 3, 32, 32, generator=gen) for v in CAMERAS}
    batch["observation.images.wrist_depth"] = torch.rand(1, 1, 32, 32, generator=gen)
    batch["observation.state"] = torch.randn(1, 6, generator=gen)
    return batch


@pytest.mark.parametrize("steps", [1, 3])
def test_imf_under_rtc_without_a_leftover_is_its_synchronous_chunk(steps):
    plain, steered = imf_pair(num_inference_steps=steps)
    assert supports_rtc_inference(steered)
    batch = imf_batch()
    plain.reset(), steered.reset()
    expected = plain.predict_action_chunk(dict(batch))
    steered_chunk = steered.predict_action_chunk(dict(batch), inference_delay=0, prev_chunk_left_over=None)
    assert torch.equal(steered_chunk, expected)


@pytest.mark.parametrize("steps", [1, 3])
def test_imf_steers_the_prefix_toward_the_leftover(steps):
    _, policy = imf_pair(num_inference_steps=steps)
    batch, prev = imf_batch(), leftover(steps=4)
    policy.reset()
    free = policy.predict_action_chunk(dict(batch))[0, :2]
    policy.reset()
    steered = policy.predict_action_chunk(dict(batch), inference_delay=2, prev_chunk_left_over=prev)[0, :2]
    assert (steered - prev[:2]).norm() < 0.5 * (free - prev[:2]).norm()
    if steps == 1:  # one jump at the capped weight: the delayed actions (prefix weight 1) land on the leftover
        torch.testing.assert_close(steered, prev[:2], rtol=0, atol=1e-5)


def test_imf_refusals_name_the_reason():
    with pytest.raises(ValueError, match=r"imf with n_obs_steps=2 cannot run under --inference.type=rtc"):
        with_rtc(tiny_imf(n_obs_steps=2), rtc(horizon=4))
    with pytest.raises(ValueError, match=r"longer than this imf checkpoint's chunk \(horizon=4\)"):
        with_rtc(tiny_imf(n_obs_steps=1), rtc(horizon=5))
    with_rtc(tiny_imf(n_obs_steps=2), None)  # synchronous inference keeps the history


def delayed_run(guidance: bool, steps: int = 6) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """select_action over `steps` frames of a tiny imf (horizon 6, 2 executed, 2 periods of delay, two frames of
    history as lerobot-eval keeps it): the actions and the chunks they came from."""
    torch.manual_seed(0)
    args = {"horizon": 6, "n_action_steps": 2, "action_delay_steps": 2, "inference_noise_seed": 3}
    policy = tiny_imf(delay_guidance=guidance, **args)
    policy.eval()
    chunks, sample = [], policy._sample
    policy._sample = lambda condition, guide=None: chunks.append(sample(condition, guide)) or chunks[-1]
    with torch.inference_mode():  # as lerobot-eval acts
        actions = [policy.select_action(imf_batch(seed)) for seed in range(steps)]
    return actions, chunks


@pytest.mark.parametrize("guidance", [False, True])
def test_a_delayed_imf_plays_each_chunk_from_when_its_actions_arrive(guidance):
    actions, chunks = delayed_run(guidance)
    assert len(chunks) == 3  # frames 0, 2 and 4
    for step, action in enumerate(actions):  # action i of a chunk is meant for i periods after its frame
        torch.testing.assert_close(action, chunks[step // 2][:, 2 + step % 2], rtol=0, atol=0)


def test_delay_guidance_makes_each_chunk_continue_what_the_servos_still_play():
    _, free = delayed_run(guidance=False)
    _, steered = delayed_run(guidance=True)
    torch.testing.assert_close(steered[0], free[0], rtol=0, atol=0)  # the first chunk has nothing to continue
    for before, after in itertools.pairwise(steered):
        # the previous chunk's actions 4-5 (this frame's periods 0-1) are still on their way to the servos: one
        # MeanFlow jump at the capped weight lands the new chunk's first two on them
        torch.testing.assert_close(after[:, :2], before[:, 4:6], rtol=0, atol=1e-5)
    gap = (free[1][:, :2] - free[0][:, 4:6]).norm()
    assert gap > 0.1  # unsteered, the chunks disagree where they overlap, so the check above is not vacuous


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"action_delay_steps": -1}, r"--policy.action_delay_steps=-1: a delay is 0 or more"),
        (
            {"action_delay_steps": 3},
            r"action_delay_steps=3 with n_action_steps=2 needs a horizon of at least 5, "
            r"this checkpoint's is 4",
        ),
        ({"delay_guidance": True}, r"--policy.delay_guidance=true steers .* set --policy.action_delay_steps"),
        ({"action_delay_steps": 4, "n_action_steps": 1}, r"holds 4 actions, so a delay must be at most 3"),
        (
            {"action_delay_steps": 2, "n_action_steps": 1, "delay_guidance": True},
            r"action_delay_steps=2 needs a horizon above 4 \(each chunk's leftover must hold the 2 actions",
        ),
        (
            {"action_delay_steps": 1, "n_action_steps": 3, "delay_guidance": True},
            r"needs a horizon of at least 5 \(each chunk's leftover must hold the 1 actions",
        ),
    ],
)
def test_a_delay_the_chunk_cannot_hold_is_refused_by_flag(args, message):
    with pytest.raises(ValueError, match=message):
        tiny_imf(**args)  # horizon 4, 2 executed


# ----- refusals of the policies RTC cannot drive ----------------------------------------------------------------------
def test_segdepth_and_hlrp_are_refused_with_their_reason():
    from lerobot_policy_hlrp import HLRPPolicy
    from lerobot_policy_segdepth import SegDepthPolicy

    for cls, why in ((SegDepthPolicy, "one action per control step"), (HLRPPolicy, "no RTC guidance")):
        policy = cls.__new__(cls)  # the refusal reads only class attributes: no model is built
        with pytest.raises(ValueError, match=f"'{cls.name}' cannot run under --inference.type=rtc: .*{why}"):
            supports_rtc_inference(policy)


def shown_rollouts() -> list[list[str]]:
    return [
        docs_commands.command_words(shown.text)
        for shown in docs_commands.shown_commands(ROOT / "docs" / "real-so101.md")
        if shown.text.startswith("lerobot-rollout")
    ]


# ----- lerobot-rollout --inference.type=rtc on the twin robot ---------------------------------------------------------
@pytest.mark.slow  # ~40 s: a tiny SegVLA with segmenter cues, 3 s on the twin robot, and a refused start
def test_lerobot_rollout_rtc_drives_the_twin_robot_with_segvla(tmp_path):
    from test_real_arm_rollout import HEIGHT, WIDTH, segvla_checkpoint

    checkpoint = segvla_checkpoint(tmp_path, ("wrist",), chunk_size=20)
    (page,) = [w for w in shown_rollouts() if "--inference.type=rtc" in w]  # docs/real-so101.md's RTC line
    inference = tuple(w for w in page if w.startswith("--inference."))
    assert inference == ("--inference.type=rtc", "--inference.rtc.execution_horizon=10"), inference
    flags = ("--robot.cameras=[wrist]", *inference)
    actions = rollout_in_twin(checkpoint, (HEIGHT, WIDTH), tmp_path, flags=flags, duration=3)
    assert actions >= 10, f"the twin executed {actions} actions in 3 s under RTC"

    # LeRobot's default horizon (10) with a 4-action checkpoint: refused before the robot connects
    short = segvla_checkpoint(tmp_path / "short", ("wrist",), chunk_size=4)
    with pytest.raises(AssertionError, match="execution_horizon=10 is longer than this segvla checkpoint") as refused:
        rollout_in_twin(short, (HEIGHT, WIDTH), tmp_path, flags=flags[:2])
    assert "connected (task" not in str(refused.value)


@pytest.mark.slow  # ~25 s: a tiny imf with one frame of history, 3 s on the twin robot
def test_lerobot_rollout_rtc_drives_the_twin_robot_with_imf(tmp_path):
    import dataclasses

    from test_camera_resize import TRAINED, save_checkpoint
    from test_policy_contract import CASES

    (case,) = [c for c in CASES if c.type == "imf"]
    case = dataclasses.replace(case, tiny={**case.tiny, "n_obs_steps": 1, "horizon": 16, "n_action_steps": 8})
    checkpoint = save_checkpoint(case, tmp_path / "pretrained_model")
    flags = ("--inference.type=rtc", "--inference.rtc.execution_horizon=8")
    actions = rollout_in_twin(checkpoint, TRAINED, tmp_path, flags=flags, duration=3)
    assert actions >= 10, f"the twin executed {actions} actions in 3 s under RTC"
