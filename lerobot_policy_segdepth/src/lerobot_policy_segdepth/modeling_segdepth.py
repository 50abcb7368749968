"""SegDepth: facebookresearch/drqv2's encoder and actor on frame-stacked segmentation ids + disparity.

Shapes, with S = image_size (84), T = frame_stack (3), K = id channels (6 one-hot classes):
    observation.segdepth   (B, T, 2, S, S) in training, (B, 2, S, S) per step at inference
    frames                 (B, T*2, S, S)   oldest first: ids_0, disp_0, ids_1, disp_1, ids_2, disp_2
    encoder input          (B, T*(K+1), S, S)
    encoder output         (B, 32*35*35) at S = 84 (measured by a dry run: upstream DrQ-v2 hard-wires it, so 84x84 only)
    actor output           (B, 6) deltas in [-1, 1]; the postprocessor turns them into joint targets

The frame stack lives here, not in a processor step: lerobot-eval calls `policy.reset()` at every episode
but never the preprocessor's `reset()` (lerobot 0.6.1 scripts/lerobot_eval.py), so only the policy can
clear it reliably. Training gets the same T frames from the dataset (`observation_delta_indices`), padded at
an episode's start with copies of its first frame, which is what the inference buffer starts with too.
"""

from __future__ import annotations

from collections import deque

import torch
import torch.nn.functional as F
from lerobot.policies.pretrained import PreTrainedPolicy
from lerobot.utils.constants import ACTION, OBS_STATE
from torch import Tensor, nn

from so101_core.keys import require_key
from so101_policy_common.pretrained import ChecksSavedProcessors
from so101_policy_common.rtc import RefusesRTC

from .actions import OBS_ACTION_HISTORY, forget_targets, scale_steps, step_from_sent
from .configuration_segdepth import OBS_SEGDEPTH, SegDepthConfig


class RandomShiftsAug(nn.Module):
    """DrQ-v2's augmentation: pad by `pad` (replicating edges), crop back at a random integer offset.

    Integer offsets keep class ids exact (no blending between classes); one offset per sample, shared by
    all its frames and channels.
    """

    def __init__(self, pad: int):
        super().__init__()
        self.pad = pad

    def forward(self, x: Tensor) -> Tensor:  # (B, C, S, S)
        if self.pad == 0:
            return x
        b, _, h, w = x.shape
        padded = F.pad(x, (self.pad,) * 4, mode="replicate")
        offsets = torch.randint(0, 2 * self.pad + 1, (b, 2)).tolist()
        return torch.stack([padded[i, :, dy : dy + h, dx : dx + w] for i, (dy, dx) in enumerate(offsets)])


class Encoder(nn.Module):
    """drqv2.Encoder: four 3x3 convolutions with `channels` filters, the first with stride 2."""

    def __init__(self, in_channels: int, image_size: int, channels: int = 32):
        super().__init__()
        self.convnet = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, stride=2),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, stride=1),
            nn.ReLU(),
        )
        with torch.no_grad():
            self.repr_dim = self.convnet(torch.zeros(1, in_channels, image_size, image_size)).numel()

    def forward(self, x: Tensor) -> Tensor:  # (B, C, S, S), already centred around 0
        return self.convnet(x).flatten(start_dim=1)


class Actor(nn.Module):
    """drqv2.Actor's trunk and policy head; the mean action only (cloning needs no exploration noise)."""

    def __init__(self, repr_dim: int, state_dim: int, action_dim: int, feature_dim: int, hidden_dim: int):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(repr_dim, feature_dim), nn.LayerNorm(feature_dim), nn.Tanh())
        self.policy = nn.Sequential(
            nn.Linear(feature_dim + state_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, action_dim),
        )

    def forward(self, features: Tensor, state: Tensor | None) -> Tensor:
        h = self.trunk(features)
        if state is not None:
            h = torch.cat([h, state], dim=-1)
        return torch.tanh(self.policy(h))


class SegDepthPolicy(RefusesRTC, ChecksSavedProcessors, PreTrainedPolicy):
    config_class = SegDepthConfig
    name = "segdepth"
    rtc_refusal = (
        "its DrQ-v2 actor gives one action per control step (held for action_repeat steps), so there is no chunk for "
        "RTC to make in the background or to continue; it is fast enough to run synchronously (a few ms a step)."
    )

    def __init__(self, config: SegDepthConfig, dataset_stats=None, dataset_meta=None, **kwargs):
        super().__init__(config)
        config.validate_features()
        self.config = config
        if config.id_encoding == "embedding":
            self.id_embedding = nn.Embedding(config.num_classes, config.id_embedding_dim)
        in_channels = config.frame_stack * (config.id_channels + 1)
        self.encoder = Encoder(in_channels, config.image_size, config.encoder_channels)
        self.actor = Actor(
            self.encoder.repr_dim,
            config.state_dim + config.history_dim,
            config.action_dim,
            config.feature_dim,
            config.hidden_dim,
        )
        self.aug = RandomShiftsAug(config.augment_pad)
        self.reset()

    def get_optim_params(self):
        return self.parameters()

    def reset(self) -> None:
        step_from_sent(
            self.config.step_from_sent_deg, self.config.step_from_sent_steps, self.config.step_from_sent_ahead
        )
        scale_steps(self.config.step_scale)
        if self.config.action_mode == "chained" or self.config.action_history or self.config.step_from_sent_deg:
            forget_targets()  # a new episode starts from its present state, no target sent yet
        self._frames: deque[Tensor] = deque(maxlen=self.config.frame_stack)
        self._held_action: Tensor | None = None
        self._held_steps = 0

    # ----- observation -------------------------------------------------------------------------------
    def _check(self, segdepth: Tensor) -> None:
        s = self.config.image_size
        if segdepth.shape[-3:] != (2, s, s):
            raise ValueError(f"'{OBS_SEGDEPTH}' must be (..., 2, {s}, {s}), got {tuple(segdepth.shape)}")
        ids = segdepth[..., 0, :, :]
        if torch.isnan(segdepth).any():
            raise ValueError(f"'{OBS_SEGDEPTH}' holds NaN values")
        if ids.min() < 0 or ids.max() >= self.config.num_classes or (ids != ids.round()).any():
            raise ValueError(
                f"segmentation ids in '{OBS_SEGDEPTH}' must be integers in [0, {self.config.num_classes - 1}] "
                f"(--policy.num_classes={self.config.num_classes}), got range [{float(ids.min())}, "
                f"{float(ids.max())}]; a dataset precomputed by segdepth-precompute must be made with the same "
                "num_classes"
            )

    def stacked_frames(self, batch: dict[str, Tensor]) -> Tensor:
        """(B, T, 2, S, S) from training batches, or this step's (B, 2, S, S) pushed into the frame buffer."""
        segdepth = require_key(batch, OBS_SEGDEPTH, "segdepth", "run the policy's preprocessor on the batch first")
        self._check(segdepth)
        if segdepth.ndim == 5:
            if segdepth.shape[1] != self.config.frame_stack:
                raise ValueError(f"expected {self.config.frame_stack} stacked frames, got {segdepth.shape[1]}")
            return segdepth.flatten(1, 2)
        if not self._frames:  # a new episode: the buffer starts as copies of the first frame
            self._frames.extend([segdepth] * self.config.frame_stack)
        else:
            self._frames.append(segdepth)
        return torch.cat(list(self._frames), dim=1)

    def encoder_input(self, frames: Tensor) -> Tensor:
        """(B, T*2, S, S) ids/disparity -> (B, T*(K+1), S, S) centred network input."""
        b, c, s, _ = frames.shape
        frames = frames.view(b, c // 2, 2, s, s)
        ids, disparity = frames[:, :, 0].long(), frames[:, :, 1:2] / 255.0 - 0.5
        if self.config.id_encoding == "onehot":
            ids = F.one_hot(ids, self.config.num_classes).permute(0, 1, 4, 2, 3).float() - 0.5
        elif self.config.id_encoding == "embedding":
            ids = self.id_embedding(ids).permute(0, 1, 4, 2, 3)
        else:  # pick-101's ids/255 scaling, for snapshots trained with it
            ids = ids[:, :, None].float() / 255.0 - 0.5
        return torch.cat([ids, disparity], dim=2).flatten(1, 2)

    def _mean_action(self, frames: Tensor, batch: dict[str, Tensor]) -> Tensor:
        if self.training:
            frames = self.aug(frames)
        inputs = []
        if self.config.use_state:
            state = batch[OBS_STATE]
            inputs.append(state[:, -1] if state.ndim == 3 else state)
        if self.config.action_history:
            history = require_key(batch, OBS_ACTION_HISTORY, "segdepth", "run the policy's preprocessor first")
            if history.shape[-1] != self.config.history_dim:
                raise ValueError(
                    f"'{OBS_ACTION_HISTORY}' has {history.shape[-1]} entries; --policy.action_history="
                    f"{self.config.action_history} needs {self.config.history_dim}"
                )
            inputs.append(history.to(frames.dtype))
        state = torch.cat(inputs, dim=-1) if inputs else None
        return self.actor(self.encoder(self.encoder_input(frames)), state)

    # ----- LeRobot API -----------------------------------------------------------------------------
    def forward(self, batch: dict[str, Tensor], reduction: str = "mean") -> tuple[Tensor, dict]:
        if batch.get(OBS_SEGDEPTH) is not None and batch[OBS_SEGDEPTH].ndim != 5:
            raise ValueError("forward() trains on (B, T, 2, S, S) batches from a dataset with frame history")
        frames = self.stacked_frames(batch)
        predicted = self._mean_action(frames, batch)
        target = batch[ACTION]
        target = target[:, -1] if target.ndim == 3 else target  # (B, 1, 6) with an action lead
        per_sample = F.mse_loss(predicted, target, reduction="none").mean(dim=-1)
        loss = per_sample if reduction == "none" else per_sample.mean()
        return loss, {
            "mse": float(per_sample.mean().detach()),
            "abs_err": float((predicted - target).detach().abs().mean()),
        }

    @torch.no_grad()
    def predict_action_chunk(self, batch: dict[str, Tensor], **kwargs) -> Tensor:
        return self._mean_action(self.stacked_frames(batch), batch).unsqueeze(1)

    @torch.no_grad()
    def select_action(self, batch: dict[str, Tensor], **kwargs) -> Tensor:
        frames = self.stacked_frames(batch)  # every step, so the buffer never skips a frame
        if self._held_action is None or self._held_steps >= self.config.action_repeat:
            # float32 whatever autocast computed it in: lerobot-eval runs a use_amp policy under bf16 autocast and
            # then calls .numpy() on the action, which has no bfloat16
            self._held_action = self._mean_action(frames, batch).float()
            self._held_steps = 0
        self._held_steps += 1
        return self._held_action
