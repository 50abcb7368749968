"""Losses and IoU metrics. Pixels labelled 0 (unlabeled: annotation holes, rotation/crop padding) are ignored."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .classes import CLASS_NAMES, EVAL_CLASSES, UNLABELED


class SoftIoULoss(nn.Module):
    """1 - mean over classes of soft IoU between softmax probabilities and one-hot targets (pick-101's loss).

    Classes are averaged only where they occur in the batch's targets or predictions have mass, as upstream does
    implicitly through the smoothing term; `ignore_index` pixels contribute nothing.
    """

    def __init__(self, num_classes: int, ignore_index: int | None = UNLABELED, smooth: float = 1e-6) -> None:
        super().__init__()
        self.num_classes, self.ignore_index, self.smooth = num_classes, ignore_index, smooth

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        probs = logits.softmax(dim=1)
        onehot = F.one_hot(target.clamp(0, self.num_classes - 1), self.num_classes).permute(0, 3, 1, 2).to(probs)
        valid = torch.ones_like(target, dtype=probs.dtype)
        if self.ignore_index is not None:
            valid = (target != self.ignore_index).to(probs.dtype)
        valid = valid.unsqueeze(1)
        probs, onehot = probs * valid, onehot * valid
        dims = (0, 2, 3)
        intersection = (probs * onehot).sum(dims)
        union = (probs + onehot - probs * onehot).sum(dims)
        iou = (intersection + self.smooth) / (union + self.smooth)
        keep = torch.ones(self.num_classes, dtype=torch.bool, device=iou.device)
        if self.ignore_index is not None:
            keep[self.ignore_index] = False
        return 1.0 - iou[keep].mean()


def make_loss(name: str, num_classes: int) -> nn.Module:
    if name == "iou":
        return SoftIoULoss(num_classes)
    if name == "ce":
        return nn.CrossEntropyLoss(ignore_index=UNLABELED)
    raise ValueError(f"unknown loss {name!r}; choose 'iou' or 'ce'")


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int, ignore_index: int | None = UNLABELED):
    """(num_classes, num_classes) int64 counts, rows = target class, columns = predicted class."""
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    keep = (target >= 0) & (target < num_classes)
    if ignore_index is not None:
        keep &= target != ignore_index
    idx = target[keep] * num_classes + pred[keep].clamp(0, num_classes - 1)
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes).cpu()


def iou_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """IoU per class (float64); NaN for a class absent from both targets and predictions."""
    confusion = confusion.double()
    tp = confusion.diag()
    union = confusion.sum(0) + confusion.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp(min=1), torch.full_like(tp, float("nan")))


def summarize(confusion: torch.Tensor, classes: tuple[int, ...] = EVAL_CLASSES) -> dict:
    """Per-class IoU by name, mIoU over `classes` (those present), and pixel accuracy."""
    iou = iou_per_class(confusion)
    chosen = torch.tensor([c for c in classes if c < len(iou)], dtype=torch.long)
    values = iou[chosen]
    values = values[~values.isnan()]
    names = [CLASS_NAMES[i] if i < len(CLASS_NAMES) else f"class_{i}" for i in range(len(iou))]
    total = confusion.sum().item()
    return {
        "miou": float(values.mean()) if len(values) else float("nan"),
        "per_class_iou": {names[i]: (None if iou[i].isnan() else round(float(iou[i]), 4)) for i in range(len(iou))},
        "pixel_accuracy": float(confusion.diag().sum().item() / total) if total else float("nan"),
        "pixels": int(total),
    }
