"""The OXE action adapter: each dataset's action vector placed into one declared target dimension, with a mask.

Open-X datasets disagree on action spaces (7-d end-effector deltas, 3-d, 14-d bimanual...). Stage 2 trains one
action head of `target_dim`: each dataset declares its action dimension and the target slots its entries fill; the
other slots are zero and masked out of the loss. HLRP's own run log failed twice on exactly this (a batch format
bug, then "expected 5, got 3" mid-run), so `check` runs on every dataset's metadata before the first step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class AdapterEntry:
    dataset: str  # the dataset's repo_id, as in the stage's dataset list
    action_dim: int  # what the dataset's `action` feature must be
    # Target slot of each source entry, in order; None: the first `action_dim` slots.
    slots: list[int] | None = None


@dataclass
class ActionAdapterConfig:
    target_dim: int = 32
    entries: list[AdapterEntry] = field(default_factory=list)


class ActionAdapter:
    def __init__(self, config: ActionAdapterConfig):
        self.target_dim = config.target_dim
        self.entries = {e.dataset: e for e in config.entries}
        for e in config.entries:
            slots = self.slots(e)
            if len(slots) != e.action_dim:
                raise ValueError(
                    f"action adapter for dataset '{e.dataset}': {len(slots)} slots for a {e.action_dim}-d action"
                )
            bad = [s for s in slots if not 0 <= s < self.target_dim]
            if bad or len(set(slots)) != len(slots):
                raise ValueError(
                    f"action adapter for dataset '{e.dataset}': slots {slots} must be distinct and within the "
                    f"target dimension {self.target_dim}"
                )

    @staticmethod
    def slots(entry: AdapterEntry) -> list[int]:
        return list(range(entry.action_dim)) if entry.slots is None else list(entry.slots)

    def check(self, dataset: str, action_shape: tuple[int, ...]) -> None:
        """Before any step: the dataset is covered and its action dimension is the declared one."""
        entry = self.entries.get(dataset)
        if entry is None:
            raise ValueError(
                f"dataset '{dataset}' has {action_shape[-1]}-d actions but the action adapter does not cover it "
                f"(covered: {sorted(self.entries)}); add an entry with its action_dim and target slots"
            )
        if tuple(action_shape) != (entry.action_dim,):
            raise ValueError(
                f"dataset '{dataset}': the action adapter expects a {entry.action_dim}-d action, the dataset's "
                f"'action' feature has shape {tuple(action_shape)} (target dimension {self.target_dim})"
            )

    def __call__(self, dataset: str, actions: Tensor) -> tuple[Tensor, Tensor]:
        """actions [..., d] -> (padded [..., target_dim], mask [target_dim] bool)."""
        entry = self.entries[dataset]
        if actions.shape[-1] != entry.action_dim:
            raise ValueError(
                f"dataset '{dataset}': action batch has {actions.shape[-1]} dims, the adapter expects "
                f"{entry.action_dim} (target {self.target_dim})"
            )
        slots = torch.tensor(self.slots(entry), device=actions.device)
        out = actions.new_zeros((*actions.shape[:-1], self.target_dim))
        out[..., slots] = actions
        mask = torch.zeros(self.target_dim, dtype=torch.bool, device=actions.device)
        mask[slots] = True
        return out, mask
