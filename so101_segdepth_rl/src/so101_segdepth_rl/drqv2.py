"""DrQ-v2 (Yarats et al., 2021; facebookresearch/drqv2) on the `segdepth` policy's own encoder and actor.

The policy's modules are used as they are, so the trained actor is exported with `save_pretrained`, not
converted. Only the critic (and its target copy) lives here.

Shapes, with B = batch, T = frame stack, S = image size, D = state dim (6 with use_state, else 0), A = 6:
    frames        (B, T*2, S, S)  ids and disparity on the uint8 grid, oldest frame first
    state         (B, D)          normalised by the policy's preprocessor (empty when use_state=false)
    action        (B, A)          joint deltas in [-1, 1], what the policy's actor emits
    features      (B, R)          encoder(encoder_input(aug(frames))), R = the encoder's repr_dim
    q1, q2        (B, 1)
    reward        (B, 1)          n-step discounted sum
    discount      (B, 1)          gamma**n, 0 after a terminal state

As upstream: the encoder learns through the critic loss only; the actor is trained on detached features to
maximise min(Q1, Q2) of an action sampled from a clipped normal around its mean; the target critic follows
with Polyak averaging; exploration std follows a schedule.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lerobot_policy_segdepth.modeling_segdepth import SegDepthPolicy


@dataclass
class DrQV2Config:
    lr: float = 1e-4
    critic_hidden_dim: int = 256  # pick-101's [256, 256] critic; upstream DMC uses 1024
    discount: float = 0.99
    nstep: int = 3
    batch_size: int = 256
    critic_target_tau: float = 0.01
    update_every_steps: int = 2  # one update per this many decision steps of one env
    # exploration std: a constant ("0.2") or "linear(init, final, steps)" over decision steps
    stddev_schedule: str = "linear(1.0,0.1,500000)"
    stddev_clip: float = 0.3
    # Fine-tuning a cloned policy (both off by default, i.e. upstream DrQ-v2). A fresh critic's Q is noise, and
    # an actor that climbs it from the first update forgets the clone before the critic knows anything:
    # - actor_warmup_updates: the actor stays as it is for this many updates while the critic (and the
    #   encoder, through it) learns from the clone's own experience and the demonstrations;
    # - bc_weight: TD3+BC (Fujimoto & Gu, 2021): the actor loss becomes -Q / mean|Q| + bc_weight * the mean
    #   squared error to the demonstrated action on the batch's demonstration rows, so the clone's behaviour is
    #   kept where the critic has nothing better to say.
    # - actor_lr: the actor's learning rate (None: lr, as upstream). A cloned actor needs a far smaller one: Adam
    #   turns even tiny, noisy gradients into steps of ~lr per weight, and the trunk's 39200-input layer (inputs all
    #   >= 0 after the ReLU) moves coherently: at 1e-4 it changed by 26% (relative norm) in 750 updates and the
    #   clone's success fell from 95% to 0-15%, with either actor objective.
    # - encoder_lr: the encoder's learning rate (None: lr, as upstream). 0 freezes the clone's encoder, so the critic
    #   learns on the features the clone's actor was trained on, and skips the encoder's backward pass (2.0-2.7
    #   against 1.7 updates/s here). Freezing alone did not stop the collapse above: the actor's rate did.
    # - actor_objective: "ddpg" (upstream: the actor climbs the critic through its action) or "awr", advantage-weighted
    #   regression as AWAC (Nair et al., 2020) fine-tunes from demonstrations: the actor regresses onto the batch's
    #   own actions (recorded or explored), each weighted by exp(A / (awr_temperature * std A)) with
    #   A = Q(s, a) - Q(s, actor(s)), capped at awr_max_weight. Its targets are always actions in the data, where
    #   the DDPG step follows the critic's gradient wherever it points.
    # - feature_cache (needs encoder_lr=0): encode each stored observation once, without the random shift, and
    #   learn from the cached features: the frozen encoder's forward passes are 85% of an update here (0.37 s at
    #   batch 64, one thread), so updates get several times cheaper and a critic can be fitted before the actor moves.
    # - critic_pretrain_updates: that many critic-only updates on the demonstrations alone before the first env
    #   step (fitted Q evaluation of the clone acting with the exploration noise), so the actor's first update
    #   reads a critic that has seen the demonstrations' returns propagate, not one still rising from zero.
    actor_warmup_updates: int = 0
    feature_cache: bool = False
    critic_pretrain_updates: int = 0
    bc_weight: float = 0.0
    encoder_lr: float | None = None
    actor_lr: float | None = None
    actor_objective: str = "ddpg"
    awr_temperature: float = 1.0
    awr_max_weight: float = 20.0

    def __post_init__(self):
        stddev(self.stddev_schedule, 0)  # a malformed schedule fails here, not after the seed frames
        if self.nstep < 1 or self.batch_size < 1 or self.update_every_steps < 1:
            raise ValueError("agent.nstep, agent.batch_size and agent.update_every_steps must be >= 1")
        if min(self.actor_warmup_updates, self.bc_weight, self.encoder_lr or 0, self.actor_lr or 0) < 0:
            raise ValueError("agent.actor_warmup_updates, bc_weight, encoder_lr and actor_lr must be >= 0")
        if self.feature_cache and self.encoder_lr != 0:
            raise ValueError("agent.feature_cache=true needs agent.encoder_lr=0: a learning encoder's features change")
        if self.critic_pretrain_updates < 0:
            raise ValueError("agent.critic_pretrain_updates must be >= 0")
        if self.actor_objective not in ("ddpg", "awr"):
            raise ValueError(f"agent.actor_objective={self.actor_objective!r}: use 'ddpg' or 'awr'")
        if self.awr_temperature <= 0 or self.awr_max_weight <= 0:
            raise ValueError("agent.awr_temperature and agent.awr_max_weight must be > 0")
        if not 0 < self.discount <= 1 or not 0 < self.critic_target_tau <= 1:
            raise ValueError("agent.discount and agent.critic_target_tau must be in (0, 1]")


def stddev(schedule: str, step: int) -> float:
    """The exploration std at decision step `step`: "0.2" or "linear(1.0,0.1,500000)" as in drqv2's utils."""
    try:
        return float(schedule)
    except ValueError:
        pass
    match = re.fullmatch(r"\s*linear\(([^,]+),([^,]+),([^,]+)\)\s*", schedule)
    if not match:
        raise ValueError(f"agent.stddev_schedule={schedule!r}: use a number or 'linear(init,final,steps)'")
    init, final, duration = (float(g) for g in match.groups())
    mix = min(max(step / duration, 0.0), 1.0)
    return (1.0 - mix) * init + mix * final


def sample_clipped(mean: Tensor, std: float, clip: float | None) -> Tensor:
    """A sample of N(mean, std) with the noise clipped to [-clip, clip] and the result kept inside (-1, 1).

    drqv2's TruncatedNormal.sample: the clamp to the action range passes gradients straight through, so the
    actor loss still moves the mean when a sample lands on the bound.
    """
    noise = torch.randn_like(mean) * std
    if clip is not None:
        noise = noise.clamp(-clip, clip)
    action = mean + noise
    bound = 1.0 - 1e-6
    return action - action.detach() + action.detach().clamp(-bound, bound)


class Critic(nn.Module):
    """drqv2.Critic: a trunk (Linear, LayerNorm, Tanh) and two Q heads on (trunk features, state, action)."""

    def __init__(self, repr_dim: int, state_dim: int, action_dim: int, feature_dim: int, hidden_dim: int):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(repr_dim, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())
        inputs = feature_dim + state_dim + action_dim

        def q_head() -> nn.Sequential:
            return nn.Sequential(
                nn.Linear(inputs, hidden_dim),
                nn.ReLU(inplace=True),
                nn.Linear(hidden_dim, hidden_dim),
                nn.ReLU(inplace=True),
                nn.Linear(hidden_dim, 1),
            )

        self.q1, self.q2 = q_head(), q_head()
        self.apply(orthogonal_init)

    def forward(self, features: Tensor, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        h = torch.cat([self.trunk(features), state, action], dim=-1)
        return self.q1(h), self.q2(h)


def orthogonal_init(module: nn.Module) -> None:
    """drqv2.utils.weight_init: orthogonal weights (ReLU gain for convolutions), zero biases."""
    if isinstance(module, nn.Linear):
        nn.init.orthogonal_(module.weight.data)
        if module.bias is not None:
            module.bias.data.fill_(0.0)
    elif isinstance(module, nn.Conv2d):
        nn.init.orthogonal_(module.weight.data, nn.init.calculate_gain("relu"))
        if module.bias is not None:
            module.bias.data.fill_(0.0)


class DrQV2Agent:
    """The learner: the policy's encoder and actor, a twin-Q critic and its target, three Adam optimisers."""

    def __init__(self, policy: SegDepthPolicy, config: DrQV2Config, init_policy_weights: bool = True):
        self.policy = policy
        self.config = config
        cfg = policy.config
        self.state_dim = 6 if cfg.use_state else 0
        if init_policy_weights:  # from scratch: upstream's initialisation; a cloned checkpoint keeps its weights
            policy.encoder.apply(orthogonal_init)
            policy.actor.apply(orthogonal_init)
        self.device = next(policy.parameters()).device
        critic = Critic(policy.encoder.repr_dim, self.state_dim, 6, cfg.feature_dim, config.critic_hidden_dim)
        self.critic = critic.to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        encoder_params = list(policy.encoder.parameters())
        if cfg.id_encoding == "embedding":
            encoder_params += list(policy.id_embedding.parameters())
        encoder_lr = config.lr if config.encoder_lr is None else config.encoder_lr
        self.encoder_frozen = encoder_lr == 0
        # a frozen encoder keeps an (unused) optimiser so checkpoints have the same keys whatever the setting
        self.encoder_opt = torch.optim.Adam(encoder_params, lr=encoder_lr)
        actor_lr = config.lr if config.actor_lr is None else config.actor_lr
        self.actor_opt = torch.optim.Adam(policy.actor.parameters(), lr=actor_lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=config.lr)
        self.train(True)

    def train(self, training: bool) -> None:
        self.policy.train(training)
        self.critic.train(training)

    def features(self, frames: Tensor, augment: bool) -> Tensor:
        """(B, T*2, S, S) -> (B, R); augment: the random shift DrQ-v2 applies to every batch it learns from."""
        if augment:
            frames = self.policy.aug(frames)
        return self.policy.encoder(self.policy.encoder_input(frames))

    def encode(self, frames: Tensor) -> Tensor:
        """(N, T*2, S, S) -> (N, R) without augmentation: what a replay buffer's feature cache stores."""
        with torch.no_grad():
            return self.features(frames.to(self.device), augment=False)

    def _state(self, state: Tensor) -> Tensor | None:
        """The actor's state input: None when the policy does not read the state."""
        return state if self.state_dim else None

    def _critic_state(self, state: Tensor) -> Tensor:
        return state if self.state_dim else state[:, :0]

    @torch.no_grad()
    def act(self, frames: Tensor, state: Tensor, step: int, explore: bool) -> Tensor:
        """(B, T*2, S, S), (B, D) -> (B, 6): the actor's mean, plus (unclipped) exploration noise when exploring."""
        frames, state = frames.to(self.device), state.to(self.device)
        mean = self.policy.actor(self.features(frames, augment=False), self._state(state))
        if explore:
            mean = (mean + torch.randn_like(mean) * stddev(self.config.stddev_schedule, step)).clamp(-1.0, 1.0)
        return mean.cpu()

    def update(
        self, batch: dict[str, Tensor], step: int, update: int | None = None, actor: bool = True
    ) -> dict[str, float]:
        """One critic and one actor update on a replay batch (keys: frames, state, action, reward, discount,
        next_frames, next_state, or features/next_features (B, R) from a feature cache in place of the frames;
        optional demo (B,) bool marking demonstration rows); `update` counts the updates before this one (for
        actor_warmup_updates); actor=False updates the critic alone; returns the losses and Q statistics."""
        cfg = self.config
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        std = stddev(cfg.stddev_schedule, step)
        features, next_features = self.batch_features(batch)
        critic_loss, q, target_q = self.update_critic(batch, features, next_features, std)
        # the actor learns on detached features: the encoder is shaped by the critic alone
        actor_loss, extra = self.actor_loss(batch, features.detach(), std)
        if actor and (update is None or update >= cfg.actor_warmup_updates):
            self.actor_opt.zero_grad(set_to_none=True)
            actor_loss.backward()
            self.actor_opt.step()

        with torch.no_grad():
            tau = cfg.critic_target_tau
            for target, online in zip(self.critic_target.parameters(), self.critic.parameters(), strict=True):
                target.lerp_(online, tau)
        return {
            "critic_loss": float(critic_loss.detach()),
            "actor_loss": float(actor_loss.detach()),
            "q": float(q.detach().mean()),
            "target_q": float(target_q.mean()),
            "reward": float(batch["reward"].mean()),
            "stddev": std,
            **extra,
        }

    def batch_features(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """The batch's features and next features: encoded from augmented frames (with gradients for the critic's
        step when the encoder learns), or read from a feature cache."""
        if "features" in batch:
            if not self.encoder_frozen:
                raise ValueError("a batch of cached features needs a frozen encoder (agent.encoder_lr=0)")
            return batch["features"], batch["next_features"]
        with torch.set_grad_enabled(not self.encoder_frozen):
            features = self.features(batch["frames"], augment=True)
        with torch.no_grad():
            next_features = self.features(batch["next_frames"], augment=True)
        return features, next_features

    def update_critic(
        self, batch: dict[str, Tensor], features: Tensor, next_features: Tensor, std: float
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The critic's (and a learning encoder's) step on the clipped double-Q target; returns the loss, the first
        critic's Q and the target."""
        cfg = self.config
        with torch.no_grad():
            next_mean = self.policy.actor(next_features, self._state(batch["next_state"]))
            next_action = sample_clipped(next_mean, std, cfg.stddev_clip)
            target_q1, target_q2 = self.critic_target(
                next_features, self._critic_state(batch["next_state"]), next_action
            )
            target_q = batch["reward"] + batch["discount"] * torch.min(target_q1, target_q2)
        q1, q2 = self.critic(features, self._critic_state(batch["state"]), batch["action"])
        critic_loss = F.mse_loss(q1, target_q) + F.mse_loss(q2, target_q)
        self.encoder_opt.zero_grad(set_to_none=True)
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()
        if not self.encoder_frozen:
            self.encoder_opt.step()
        return critic_loss, q1, target_q

    def actor_loss(self, batch: dict[str, Tensor], features: Tensor, std: float) -> tuple[Tensor, dict[str, float]]:
        """The actor's loss on (detached) features: DrQ-v2's -Q of a sampled action (scaled by mean|Q| under a BC
        term) or AWR's weighted regression, plus bc_weight times the MSE to the demonstrations' actions; and the
        extra statistics to log."""
        cfg = self.config
        mean = self.policy.actor(features, self._state(batch["state"]))
        extra = {}
        if cfg.actor_objective == "awr":
            weights = self.awr_weights(features, batch["state"], batch["action"], mean.detach())
            actor_loss = (weights * (mean - batch["action"]).pow(2).mean(dim=1)).mean()
            extra["awr_weight_max"] = float(weights.max())
        else:
            action = sample_clipped(mean, std, cfg.stddev_clip)
            actor_q1, actor_q2 = self.critic(features, self._critic_state(batch["state"]), action)
            actor_q = torch.min(actor_q1, actor_q2)
            if cfg.bc_weight > 0:  # TD3+BC scales the critic's term by mean|Q|: bc_weight means the same at any Q scale
                actor_loss = -actor_q.mean() / actor_q.abs().mean().detach().clamp_min(1e-6)
            else:
                actor_loss = -actor_q.mean()
        if cfg.bc_weight > 0:
            demo = batch.get("demo")
            demo = demo.bool() if demo is not None else torch.zeros(len(mean), dtype=torch.bool, device=mean.device)
            bc = F.mse_loss(mean[demo], batch["action"][demo]) if demo.any() else mean.sum() * 0.0
            actor_loss = actor_loss + cfg.bc_weight * bc
            extra["bc_loss"] = float(bc.detach())
        return actor_loss, extra

    @torch.no_grad()
    def awr_weights(self, features: Tensor, state: Tensor, action: Tensor, mean: Tensor) -> Tensor:
        """(B,) exp(A / (awr_temperature * std A)), capped, with A = min Q(s, action) - min Q(s, mean): how much
        better the batch's action did than the actor's own, in units of the batch's spread of advantages."""
        cfg = self.config
        state = self._critic_state(state)
        advantage = torch.min(*self.critic(features, state, action)) - torch.min(*self.critic(features, state, mean))
        advantage = advantage.squeeze(-1)
        scale = advantage.std().clamp_min(1e-6) if len(advantage) > 1 else advantage.new_tensor(1.0)
        return torch.exp(advantage / (cfg.awr_temperature * scale)).clamp(max=cfg.awr_max_weight)

    def state_dict(self) -> dict:
        """Everything but the policy's weights (saved by save_pretrained as the exported checkpoint)."""
        return {
            "critic": self.critic.state_dict(),
            "critic_target": self.critic_target.state_dict(),
            "encoder_opt": self.encoder_opt.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.critic.load_state_dict(state["critic"])
        self.critic_target.load_state_dict(state["critic_target"])
        self.encoder_opt.load_state_dict(state["encoder_opt"])
        self.actor_opt.load_state_dict(state["actor_opt"])
        self.critic_opt.load_state_dict(state["critic_opt"])
