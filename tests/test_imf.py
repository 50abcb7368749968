"""The `imf` policy (after roboimi's SigLIP2 multiview plan): multiview frozen SigLIP backbone, the improved-MeanFlow
objective, AttnRes, the embedding cache. The LeRobot contract (discovery, train/eval CLIs, save/reload) is in
test_policy_contract.py."""

from __future__ import annotations

import json
import math
import shutil
import sys
from unittest.mock import patch

import pytest
import torch
from clitools import run_cli
from lerobot.configs import FeatureType, PolicyFeature
from safetensors.torch import load_file
from torch import nn

from lerobot_policy_imf import IMFConfig, IMFPolicy
from lerobot_policy_imf.configuration_imf import OBS_VIEW_EMBEDDINGS
from lerobot_policy_imf.encoders import resized
from lerobot_policy_imf.meanflow import imf_loss, imf_loss_terms, sample_chunk, sample_times
from lerobot_policy_imf.transformer import DepthMix, IMFTransformer, time_features
from so101_devtools.tiny_models import save_siglip_vision, tiny_siglip_dir

CAMERAS = ("left", "top", "wrist")  # three views, as the multiview plan's backbone test


def features(views=CAMERAS, side=32, state=6):
    inputs = {f"observation.images.{v}": PolicyFeature(FeatureType.VISUAL, (3, side, side)) for v in views}
    inputs["observation.images.wrist_depth"] = PolicyFeature(FeatureType.VISUAL, (1, side, side))
    inputs["observation.state"] = PolicyFeature(FeatureType.STATE, (state,))
    return inputs, {"action": PolicyFeature(FeatureType.ACTION, (6,))}


TINY_HEAD = {"n_layer": 2, "n_emb": 32, "n_head": 2, "horizon": 4, "n_action_steps": 2}


def tiny_policy(**overrides) -> IMFPolicy:
    inputs, outputs = features(**overrides.pop("features", {}))
    args = {"siglip_model": str(tiny_siglip_dir()), "encoder_image_size": 32, **TINY_HEAD} | overrides
    cfg = IMFConfig(device="cpu", push_to_hub=False, input_features=inputs, output_features=outputs, **args)
    return IMFPolicy(cfg)


# ----- the multiview plan's backbone tests ----------------------------------------------------------------------------
def test_backbone_loads_the_local_siglip_and_encodes_views_independently():
    torch.manual_seed(0)
    policy = tiny_policy(per_view_dim=96, condition_dim=384)
    tower = policy.backbone.encoder.tower
    assert type(tower).__name__ == "SiglipVisionModel"  # what google/siglip2-base-patch16-256 loads as
    saved = load_file(tiny_siglip_dir() / "model.safetensors")
    for name, tensor in saved.items():
        torch.testing.assert_close(tower.state_dict()[name.removeprefix("model.")], tensor, rtol=0, atol=0)

    frames = torch.rand(2, 2, 3, 3, 32, 32)  # (B, T, V, 3, H, W), already the encoder's side: no resize
    first = frames[0, 0]
    assert resized(first, 32) is first
    out = policy.backbone(frames)
    assert out.shape == (2, 2, 3 * 96)

    # each view alone through the tower and its own projection gives its slice
    pixels = (frames[:, :, 1].reshape(-1, 3, 32, 32) - 0.5) / 0.5
    alone = policy.backbone.projections[1](tower(pixel_values=pixels).pooler_output).view(2, 2, 96)
    torch.testing.assert_close(out[..., 96:192], alone, rtol=1e-5, atol=1e-6)
    other = frames.clone()
    other[:, :, 2] = torch.rand_like(other[:, :, 2])
    changed = policy.backbone(other)
    torch.testing.assert_close(changed[..., :192], out[..., :192], rtol=0, atol=0)
    assert not torch.allclose(changed[..., 192:], out[..., 192:])

    # raw condition = views * per_view_dim + state; projected to the head's 384
    assert policy.raw_condition_dim == 3 * 96 + 6 and policy.condition_dim == 384
    assert policy.head.condition_in.in_features == 384


def test_frames_of_another_size_are_resized_to_the_encoders_side():
    policy = tiny_policy(features={"side": 48})
    frames = torch.rand(1, 1, 3, 3, 48, 48)
    expected = torch.nn.functional.interpolate(frames[0, 0], size=(32, 32), mode="bilinear", antialias=True)
    assert policy.backbone.embed(frames).shape == (1, 1, 3, 32)
    torch.testing.assert_close(resized(frames[0, 0], 32), expected)


def test_no_gradient_reaches_the_frozen_encoder():
    policy = tiny_policy()
    policy.train()
    assert not policy.backbone.encoder.training  # frozen tower stays in eval mode (no dropout)
    batch = {f"observation.images.{v}": torch.rand(3, 2, 3, 32, 32) for v in CAMERAS}
    batch |= {"observation.state": torch.randn(3, 2, 6), "action": torch.randn(3, 4, 6)}
    loss, _ = policy.forward(batch)
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in policy.backbone.encoder.parameters())
    assert all(p.grad is not None for p in policy.backbone.projections.parameters())
    assert all(p.requires_grad for p in policy.get_optim_params())
    assert len(policy.get_optim_params()) < len(list(policy.parameters()))


def test_the_cnn_encoder_trains_end_to_end():
    policy = tiny_policy(vision_encoder="cnn", cnn_channels=[8, 8, 8, 8], cnn_keypoints=4)
    batch = {f"observation.images.{v}": torch.rand(2, 2, 3, 32, 32) for v in CAMERAS}
    batch |= {"observation.state": torch.randn(2, 2, 6), "action": torch.randn(2, 4, 6)}
    loss, _ = policy.forward(batch)
    loss.backward()
    assert all(p.grad is not None for p in policy.backbone.encoder.parameters())


# ----- improved MeanFlow ----------------------------------------------------------------------------------------
def tiny_head(residual="attnres") -> IMFTransformer:
    torch.manual_seed(0)
    cfg = IMFConfig(n_obs_steps=2, residual=residual, **TINY_HEAD)
    return IMFTransformer(cfg, condition_dim=5, action_dim=3).double()


@pytest.mark.parametrize("residual", ["attnres", "plain"])
def test_imf_jvp_matches_a_finite_difference(residual):
    """du/dt from torch.func.jvp against a central difference along (dz/dt = v, dr/dt = 0, dt/dt = 1)."""
    net = tiny_head(residual)
    for p in net.parameters():  # non-zero AttnRes queries, so the depth softmax is exercised too
        p.data += 0.05 * torch.randn_like(p)
    x, e = torch.randn(4, 4, 3, dtype=torch.float64), torch.randn(4, 4, 3, dtype=torch.float64)
    condition = torch.randn(4, 2, 5, dtype=torch.float64)
    t = torch.tensor([0.9, 0.5, 0.3, 0.7], dtype=torch.float64)
    r = torch.tensor([0.1, 0.5, 0.0, 0.65], dtype=torch.float64)
    compound, target, u, dudt = imf_loss_terms(net, x, e, r, t, condition)

    z = (1 - t.view(-1, 1, 1)) * x + t.view(-1, 1, 1) * e
    with torch.no_grad():
        v = net(z, t, t, condition)  # the tangent is the network's own instantaneous velocity
        h = 1e-6
        numeric = (net(z + h * v, r, t + h, condition) - net(z - h * v, r, t - h, condition)) / (2 * h)
        torch.testing.assert_close(u, net(z, r, t, condition), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(dudt, numeric, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(compound, u + (t - r).view(-1, 1, 1) * dudt, rtol=0, atol=0)
    torch.testing.assert_close(target, e - x, rtol=0, atol=0)
    torch.testing.assert_close(compound[1], u[1], rtol=0, atol=0)  # r = t: plain flow matching


def test_the_compound_target_carries_no_gradient_through_the_jvp():
    net = tiny_head()
    x, e, condition = torch.randn(2, 4, 3).double(), torch.randn(2, 4, 3).double(), torch.randn(2, 2, 5).double()
    r, t = torch.tensor([0.2, 0.1]).double(), torch.tensor([0.8, 0.6]).double()
    compound, _, u, dudt = imf_loss_terms(net, x, e, r, t, condition)
    assert not dudt.requires_grad and u.requires_grad
    grads = torch.autograd.grad(compound.sum(), list(net.parameters()), allow_unused=True, retain_graph=True)
    reference = torch.autograd.grad(u.sum(), list(net.parameters()), allow_unused=True)
    for a, b in zip(grads, reference, strict=True):
        if b is not None:
            torch.testing.assert_close(a, b)


def test_time_sampler_orders_r_and_t_and_shares_r_equal_t():
    cfg = IMFConfig(equal_time_share=0.25)
    r, t = sample_times(20_000, cfg, "cpu", torch.Generator().manual_seed(0))
    assert (r <= t).all() and (r >= 0).all() and (t <= 1).all()
    assert abs(float((r == t).float().mean()) - 0.25) < 0.02
    # logit-normal: the median of a single draw is sigmoid(mu); t is the larger of two draws
    median_t = float(t.median())
    assert abs(median_t - 1 / (1 + math.exp(-(cfg.time_mu + cfg.time_sigma * 0.5449)))) < 0.02


class AffineVelocity(nn.Module):
    """u(z, r, t) = a(r, t) z + b(r, t): exact for a Gaussian, whose average velocity is affine in z."""

    def __init__(self):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(3, 64), nn.SiLU(), nn.Linear(64, 64), nn.SiLU(), nn.Linear(64, 2))

    def forward(self, z, r, t, condition):
        ab = self.mlp(torch.stack([r, t, t - r], dim=-1)).view(-1, 1, 2)
        return ab[..., :1] * z + ab[..., 1:]


def gaussian_average_velocity(z, r, t, mean, std):
    """The exact u for data N(mean, std^2): the flow maps z_t to z_r affinely between the two marginals."""
    m = lambda s: (1 - s) * mean  # noqa: E731
    sd = lambda s: math.sqrt((1 - s) ** 2 * std**2 + s**2)  # noqa: E731
    z_r = m(r) + sd(r) / sd(t) * (z - m(t))
    return (z - z_r) / (t - r)


def train_toy(equal_time_share: float, steps: int) -> AffineVelocity:
    """Fit u to data N(2, 0.5^2) with the iMF loss (plain MSE: a single noisy dimension per sample is no place for
    the per-sample adaptive weight). A broad time sampler (logit-normal 0, 2) covers (r, t) near (0, 1), which
    the default (-0.4, 1) seldom draws, so the one-step jump itself is trained, not extrapolated."""
    torch.manual_seed(0)
    net = AffineVelocity()
    cfg = IMFConfig(equal_time_share=equal_time_share, time_mu=0.0, time_sigma=2.0)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    for _ in range(steps):
        x = 2.0 + 0.5 * torch.randn(2048, 1, 1)
        r, t = sample_times(2048, cfg, "cpu")
        loss = imf_loss(net, x, torch.randn_like(x), r, t, None, power=0.0, eps=0.01)[0].mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return net


def test_one_step_sampling_matches_the_many_step_limit_on_a_gaussian():
    mean, std = 2.0, 0.5
    noise = torch.randn(20_000, 1, 1, generator=torch.Generator().manual_seed(1))
    net = train_toy(0.5, 2000)
    one, many = sample_chunk(net, noise, None, 1), sample_chunk(net, noise, None, 64)
    # the same noise lands in the same place whether the jump is made at once or in 64 steps
    assert float((one - many).abs().mean()) < 0.05
    for samples in (one, many):
        assert abs(float(samples.mean()) - mean) < 0.05 and abs(float(samples.std()) - std) < 0.05
    z = torch.linspace(-2, 2, 9)  # noise at t = 1 is N(0, 1): the grid covers it
    exact = gaussian_average_velocity(z, 0.0, 1.0, mean, std)
    learned = net(z.view(-1, 1, 1), torch.zeros(9), torch.ones(9), None).flatten()
    torch.testing.assert_close(learned, exact, rtol=0, atol=0.08)

    # control: trained on r = t only (plain flow matching), u(z, 0, 1) is only the velocity at t = 1, and one
    # step lands far from the many-step samples
    flow = train_toy(1.0, 1000)
    assert float((sample_chunk(flow, noise, None, 1) - sample_chunk(flow, noise, None, 64)).abs().mean()) > 0.3


# ----- AttnRes --------------------------------------------------------------------------------------------------
def test_depth_mix_starts_as_the_average_and_follows_its_query():
    torch.manual_seed(0)
    mix = DepthMix(4)
    sources = [torch.randn(2, 3, 4) for _ in range(3)]
    torch.testing.assert_close(mix(torch.stack(sources, dim=2)), sum(sources) / 3)
    with torch.no_grad():
        mix.query.copy_(torch.tensor([1e4, 0, 0, 0]))  # a near-hard choice over depth
    keys = torch.stack([torch.nn.functional.rms_norm(s, (4,)) for s in sources])
    winner = keys[..., 0].argmax(dim=0)  # the source whose normed first channel is largest, per token
    expected = torch.stack(sources)[winner, torch.arange(2)[:, None], torch.arange(3)[None]]
    torch.testing.assert_close(mix(torch.stack(sources, dim=2)), expected, rtol=1e-3, atol=1e-3)


def test_attnres_head_equals_the_definition_written_out():
    """The head scores each source against every query once; the definition re-norms and re-scores the whole stack
    in every mix. Same output, float64."""
    net = tiny_head("attnres")
    with torch.no_grad():
        for mix in net.mixes:
            mix.query.normal_()
    z, r, t, cond = torch.randn(2, 4, 3).double(), torch.rand(2).double(), torch.ones(2).double(), torch.randn(2, 2, 5)
    cond = cond.double()

    def mix_by_definition(query, sources):
        values = torch.stack(sources)
        weights = torch.softmax(torch.nn.functional.rms_norm(values, (values.shape[-1],)) @ query, dim=0)
        return (weights.unsqueeze(-1) * values).sum(dim=0)

    d = net.position.shape[-1]
    times = [mlp(time_features(x, d)).unsqueeze(1) for mlp, x in zip(net.time_in, (t, t - r), strict=True)]
    sources = [torch.cat([*times, net.condition_in(cond), net.action_in(z)], dim=1) + net.position]
    for sublayer, mix in zip(net.sublayers, net.mixes, strict=False):
        sources.append(sublayer(mix_by_definition(mix.query, sources)))
    h = mix_by_definition(net.mixes[-1].query, sources)
    expected = net.action_out(net.norm_out(h[:, -net.horizon :]))
    torch.testing.assert_close(net(z, r, t, cond), expected)


def test_plain_residuals_switch_off_the_depth_mixes():
    attnres, plain = tiny_head("attnres"), tiny_head("plain")
    assert hasattr(attnres, "mixes") and len(attnres.mixes) == 2 * 2 + 1 and not hasattr(plain, "mixes")
    args = (
        torch.randn(2, 4, 3).double(),
        torch.rand(2).double(),
        torch.ones(2).double(),
        torch.randn(2, 2, 5).double(),
    )
    assert attnres(*args).shape == plain(*args).shape == (2, 4, 3)


def test_select_action_encodes_each_frame_once_and_replans_every_n_action_steps():
    policy = tiny_policy(inference_noise_seed=0)  # 2 observation steps, horizon 4, 2 executed steps
    policy.eval()
    encoded, chunks = [], []
    encode, sample = policy.backbone.encoder.forward, policy._sample
    policy.backbone.encoder.forward = lambda images: encoded.append(images.clone()) or encode(images)
    policy._sample = lambda condition, guide=None: chunks.append(sample(condition, guide)) or chunks[-1]
    frames = [{f"observation.images.{v}": torch.rand(1, 3, 32, 32) for v in CAMERAS} for _ in range(5)]
    for frame in frames:
        frame["observation.state"] = torch.randn(1, 6)
    actions = [policy.select_action(dict(frame)) for frame in frames]
    assert len(chunks) == 3  # steps 0, 2 and 4
    for step, action in enumerate(actions):
        torch.testing.assert_close(action, chunks[step // 2][:, step % 2], rtol=0, atol=0)
    # every frame through the encoder exactly once (the first one stands for the history before it)
    assert len(encoded) == 5
    for frame, images in zip(frames, encoded, strict=True):
        torch.testing.assert_close(images, torch.cat([frame[f"observation.images.{v}"] for v in CAMERAS]))


def test_a_policy_cast_to_bf16_samples_in_bf16():
    policy = tiny_policy(inference_noise_seed=0).eval()
    frame = {f"observation.images.{v}": torch.rand(1, 3, 32, 32) for v in CAMERAS}
    frame["observation.state"] = torch.randn(1, 6)
    reference = policy.predict_action_chunk(dict(frame))
    half = policy.to(torch.bfloat16)
    half.reset()
    chunk = half.predict_action_chunk({k: v.bfloat16() for k, v in frame.items()})
    assert chunk.dtype == torch.bfloat16  # the sampling noise follows the condition's dtype
    torch.testing.assert_close(chunk.float(), reference, atol=0.05, rtol=0.05)


def has_cxx_compiler() -> bool:
    return any(shutil.which(name) for name in ("c++", "g++", "clang++"))


@pytest.mark.skipif(not has_cxx_compiler(), reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_inference_acts_like_eager_and_follows_new_weights(tmp_path):
    policy = tiny_policy(vision_encoder="cnn", inference_noise_seed=0, cnn_channels=[8, 8, 8, 8], cnn_keypoints=4)
    frame = {f"observation.images.{v}": torch.rand(1, 3, 32, 32) for v in CAMERAS}
    frame["observation.state"] = torch.randn(1, 6)

    def chunk(p: IMFPolicy) -> torch.Tensor:
        p.eval()
        p.reset()
        return p.predict_action_chunk(dict(frame))

    eager = chunk(policy)
    policy.config.compile_inference = True
    compiled = chunk(policy)
    assert policy._compiled is not None  # the compiled copies acted, not the modules
    torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-5)
    # the frozen copies are dropped at the next train(): new weights act after eval()
    policy.train()
    with torch.no_grad():
        policy.head.action_out.bias.add_(1.0)
    policy.config.compile_inference = False
    moved = chunk(policy)
    policy.config.compile_inference = True
    torch.testing.assert_close(chunk(policy), moved, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(moved, eager)
    # nothing compiled leaks into the checkpoint
    policy.save_pretrained(tmp_path)
    assert set(load_file(tmp_path / "model.safetensors")) == set(policy.state_dict())


@pytest.mark.slow
@pytest.mark.skipif(not has_cxx_compiler(), reason="torch.compile on the CPU needs a C++ compiler")
def test_compiled_training_step_matches_eager():
    """compile_train fuses the loss, its jvp and the backward: same loss and gradients as eager, with padding."""
    import torch._dynamo

    kwargs = {"vision_encoder": "cnn", "cnn_channels": [8, 8, 8, 8], "cnn_keypoints": 4, "n_layer": 1}
    torch.manual_seed(0)
    eager = tiny_policy(**kwargs)
    compiled = tiny_policy(**kwargs, compile_train=True)
    compiled.load_state_dict(eager.state_dict())
    batch = {f"observation.images.{v}": torch.rand(4, 2, 3, 32, 32) for v in CAMERAS}
    batch |= {"observation.state": torch.randn(4, 2, 6), "action": torch.randn(4, 4, 6)}
    batch["action_is_pad"] = torch.tensor([[False] * 4] * 3 + [[False, False, True, True]])
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    for policy in (eager, compiled):
        torch.manual_seed(1)  # the same times and noise for both
        loss, info = policy.forward(batch)
        loss.backward()
        policy.info = info
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # the compiled loss ran, not eager's
    assert not torch._dynamo.utils.counters["graph_break"]  # one graph: the jvp went through inductor too
    torch.testing.assert_close(compiled.info["v_mse"], eager.info["v_mse"], rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        assert (a.grad is None) == (b.grad is None), name
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_compile_train_falls_back_to_eager_when_inductor_fails(recwarn):
    """A compiler that cannot build the loss (as Triton could not on an H200) costs speed, not the run: the step
    goes on in eager mode, with eager's loss and gradients, and says so once."""
    import torch._inductor.exc

    torch.manual_seed(0)
    eager = tiny_policy(vision_encoder="cnn", cnn_channels=[8, 8, 8, 8], cnn_keypoints=4, n_layer=1)
    compiled = tiny_policy(
        vision_encoder="cnn", cnn_channels=[8, 8, 8, 8], cnn_keypoints=4, n_layer=1, compile_train=True
    )
    compiled.load_state_dict(eager.state_dict())
    calls = []

    def failing(*args):
        calls.append(1)
        raise torch._inductor.exc.InductorError(RuntimeError("PassManager::run failed"), None)

    compiled._loss.compiled = failing
    batch = {f"observation.images.{v}": torch.rand(3, 2, 3, 32, 32) for v in CAMERAS}
    batch |= {"observation.state": torch.randn(3, 2, 6), "action": torch.randn(3, 4, 6)}
    losses = {}
    for name, policy in (("eager", eager), ("compiled", compiled), ("again", compiled)):
        torch.manual_seed(1)
        loss, _ = policy.forward(batch)
        losses[name] = loss
    assert len(calls) == 1  # tried once, then eager for good
    torch.testing.assert_close(losses["compiled"], losses["eager"])
    torch.testing.assert_close(losses["again"], losses["eager"])
    messages = [str(w.message) for w in recwarn if "compile_train" in str(w.message)]
    assert len(messages) == 1 and "PassManager::run failed" in messages[0] and "eager" in messages[0]


def test_a_bad_compile_train_mode_is_refused_by_name():
    with pytest.raises(ValueError, match=r"compile_train_mode='fast'.*reduce-overhead"):
        tiny_policy(compile_train=True, compile_train_mode="fast")


def test_actions_under_bf16_autocast_are_float32():
    policy = tiny_policy(inference_noise_seed=0).eval()
    frame = {f"observation.images.{v}": torch.rand(1, 3, 32, 32) for v in CAMERAS}
    frame["observation.state"] = torch.randn(1, 6)
    reference = policy.select_action(dict(frame))
    policy.reset()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what lerobot-eval does for a use_amp policy
        action = policy.select_action(dict(frame))
    assert action.dtype == torch.float32
    action.numpy()  # lerobot-eval's next step; bfloat16 has no numpy dtype
    torch.testing.assert_close(action, reference, atol=0.05, rtol=0.05)


# ----- bad input --------------------------------------------------------------------------------------------------
def test_camera_count_resolution_and_state_mismatches_are_named():
    policy = tiny_policy()
    policy.eval()
    frame = {f"observation.images.{v}": torch.rand(1, 3, 32, 32) for v in CAMERAS}
    frame["observation.state"] = torch.randn(1, 6)
    assert policy.select_action(dict(frame)).shape == (1, 6)
    missing = {k: v for k, v in frame.items() if "top" not in k}
    with pytest.raises(KeyError, match=r"observation\.images\.top"):
        policy.select_action(missing)
    policy.reset()
    bigger = frame | {"observation.images.left": torch.rand(1, 3, 48, 48)}
    with pytest.raises(ValueError, match=r"observation\.images\.left.*trained on \(3, 32, 32\)"):
        policy.select_action(bigger)
    policy.reset()
    with pytest.raises(ValueError, match=r"observation\.state.*6 values"):
        policy.select_action(frame | {"observation.state": torch.randn(1, 7)})
    with pytest.raises(ValueError, match="RGB cameras"):
        tiny_policy(cameras=["left", "front"])


# ----- the embedding cache --------------------------------------------------------------------------------------
CACHE_POLICY = [
    "--policy.cameras=[front,wrist]",
    "--policy.encoder_image_size=32",
    "--policy.n_layer=1",
    "--policy.n_emb=32",
    "--policy.n_head=2",
    "--policy.horizon=4",
    "--policy.n_action_steps=2",
    "--policy.device=cpu",
]


@pytest.mark.slow
def test_cached_embeddings_equal_the_live_encoder_and_stale_caches_are_refused(gt_dataset, tmp_path):
    from lerobot.datasets import LeRobotDataset, LeRobotDatasetMetadata
    from lerobot.policies.factory import make_policy

    siglip = str(tiny_siglip_dir())
    out = tmp_path / "cached"
    run_cli(
        [
            "imf-cache-embeddings",
            "--dataset.repo_id=local/twin_demo",
            f"--dataset.root={gt_dataset}",
            f"--policy.siglip_model={siglip}",
            *CACHE_POLICY,
            f"--output_dir={out}",
            "--batch_size=16",
        ],
        cwd=tmp_path,
    )
    raw, cached = LeRobotDataset("local/twin_demo", root=gt_dataset), LeRobotDataset("x", root=out)
    assert not cached.meta.camera_keys and OBS_VIEW_EMBEDDINGS in cached.meta.features
    info = cached.meta.features[OBS_VIEW_EMBEDDINGS]["info"]
    assert info["cameras"] == ["front", "wrist"] and info["encoder"] == siglip

    def policy_for(root, **overrides):
        cfg = IMFConfig(device="cpu", push_to_hub=False, siglip_model=siglip, encoder_image_size=32)
        cfg.cameras, cfg.n_layer, cfg.n_emb, cfg.n_head, cfg.horizon, cfg.n_action_steps = (
            ["front", "wrist"],
            1,
            32,
            2,
            4,
            2,
        )
        for k, v in overrides.items():
            setattr(cfg, k, v)
        return make_policy(cfg, ds_meta=LeRobotDatasetMetadata("x", root=root))

    policy = policy_for(out)
    assert sorted(policy.config.input_features) == [
        "observation.images.front",
        "observation.images.wrist",
        "observation.state",
    ]
    for index in (0, 7, len(raw) - 1):
        frames = torch.stack([raw[index][f"observation.images.{v}"] for v in ("front", "wrist")])
        live = policy.backbone.embed(frames[None])[0]
        # the cache ran 16 frames per batch, this one: float32 matmuls round differently, nothing more
        torch.testing.assert_close(cached[index][OBS_VIEW_EMBEDDINGS], live, rtol=1e-5, atol=1e-5)

    other = save_siglip_vision(tmp_path / "other_siglip", seed=1)
    with pytest.raises(ValueError, match=r"stale.*encoder_fingerprint"):
        policy_for(out, siglip_model=str(other))
    with pytest.raises(ValueError, match=r"stale.*cameras"):
        policy_for(out, cameras=["wrist", "front"])

    info_json = gt_dataset / "meta" / "info.json"  # the source dataset changes after the cache was made
    backup = tmp_path / "info.json"
    shutil.copy(info_json, backup)
    try:
        info_json.write_text(json.dumps(json.loads(info_json.read_text()) | {"note": "re-recorded"}))
        with pytest.raises(ValueError, match="source dataset"):
            policy_for(out)
    finally:
        shutil.copy(backup, info_json)

    # run again as it was: already made, nothing redone; with other cameras: refused in one line, no traceback
    command = ["imf-cache-embeddings", "--dataset.repo_id=local/twin_demo", f"--dataset.root={gt_dataset}",
               f"--policy.siglip_model={siglip}", *CACHE_POLICY, f"--output_dir={out}", "--batch_size=16"]  # fmt: skip
    before = (out / "meta" / "precompute.json").stat().st_mtime_ns
    said = f"{out}: already made with these settings ({len(raw)} frames); nothing to do\n"
    assert run_cli(command, cwd=tmp_path).stdout == said
    assert (out / "meta" / "precompute.json").stat().st_mtime_ns == before
    other = [w.replace("cameras=[front,wrist]", "cameras=[wrist]") for w in command]
    proc = run_cli(other, cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"imf-cache-embeddings: {out} is a copy made with other settings (" in proc.stderr, proc.stderr[-3000:]
    assert "cameras" in proc.stderr and "--output_dir" in proc.stderr

    # killed after two batches, then the same command again: it resumes, and the copy equals the uninterrupted one
    from lerobot_policy_imf.commands import cache_embeddings as cache_command

    resumed = tmp_path / "resumed"
    killed_command = [w.replace(f"--output_dir={out}", f"--output_dir={resumed}") for w in command]
    real_precompute, batches = cache_command.precompute_features, []

    def killed_after_two_batches(dataset, compute, *args, **kwargs):
        def counted(batch):
            if len(batches) == 2:
                raise KeyboardInterrupt
            batches.append(1)
            return compute(batch)

        return real_precompute(dataset, counted, *args, **kwargs)

    with patch.object(sys, "argv", killed_command):
        killed = patch.object(cache_command, "precompute_features", killed_after_two_batches)
        with killed, pytest.raises(KeyboardInterrupt):
            cache_command.cache_main()
        assert not resumed.exists()
        summary = cache_command.cache_main()
    assert summary["frames_computed_this_run"] == len(raw) - 2 * 16
    again = LeRobotDataset("x", root=resumed)
    for index in range(len(raw)):
        # two processes: MKL's float32 kernels may round their last bits differently with the buffers' alignment
        torch.testing.assert_close(again[index][OBS_VIEW_EMBEDDINGS], cached[index][OBS_VIEW_EMBEDDINGS], rtol=1e-5,
                                   atol=1e-5, msg=lambda m, i=index: f"frame {i}: {m}")  # fmt: skip
