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


class IoUPlusCE(nn.Module):
    """Soft IoU (each class counts once, however small) plus cross-entropy with per-class weights (each pixel counts,
    a cube pixel `weights[cube]` times): the IoU term alone gives a class few pixels few gradients per pixel."""

    def __init__(self, num_classes: int, weights: list[float] | None = None) -> None:
        super().__init__()
        self.iou = SoftIoULoss(num_classes)
        self.register_buffer("weights", torch.tensor(weights, dtype=torch.float32) if weights else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.iou(logits, target) + _masked_ce(logits, target, self.weights)


def _masked_ce(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy over labelled pixels; 0 (not NaN) for a batch with none."""
    if not bool((target != UNLABELED).any()):
        return logits.sum() * 0.0
    return F.cross_entropy(logits, target, weight=weights, ignore_index=UNLABELED)


class MaskedCE(nn.Module):
    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return _masked_ce(logits, target)


def make_loss(name: str, num_classes: int, class_weights: list[float] | None = None) -> nn.Module:
    if class_weights is not None and len(class_weights) != num_classes:
        raise ValueError(f"--class_weights needs {num_classes} entries (one per class id), got {len(class_weights)}")
    if name == "iou":
        return SoftIoULoss(num_classes)
    if name == "ce":
        return MaskedCE()
    if name == "iou+ce":
        return IoUPlusCE(num_classes, class_weights)
    raise ValueError(f"unknown loss {name!r}; choose 'iou', 'ce' or 'iou+ce'")


def _median_scale(x: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per frame: the median of x over valid pixels and the mean absolute deviation from it (MiDaS's shift and
    scale); x and valid (B, N)."""
    big = torch.where(valid, x, torch.full_like(x, float("inf")))
    count = valid.sum(dim=1)
    median = big.sort(dim=1).values.gather(1, ((count - 1).clamp(min=0) // 2)[:, None]).squeeze(1)
    deviation = ((x - median[:, None]).abs() * valid).sum(dim=1) / count.clamp(min=1)
    return median, deviation.clamp(min=1e-6)


def disparity_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Scale- and shift-invariant L1 between (B, 1, H, W) predicted and target relative disparity (MiDaS, Ranftl et
    al. 2020): each is shifted by its median and scaled by its mean absolute deviation over the frame's valid
    pixels, then compared. `target` holds the disparity plus DISPARITY_OFFSET; 0 marks pixels without a target.
    Frames with fewer than 2 valid pixels count nothing."""
    valid = (target > 0).flatten(1)
    pred, tgt = prediction.flatten(1), target.flatten(1)
    usable = valid.sum(dim=1) >= 2
    if not bool(usable.any()):
        return prediction.sum() * 0.0
    pred, tgt, valid = pred[usable], tgt[usable], valid[usable]
    p_shift, p_scale = _median_scale(pred, valid)
    t_shift, t_scale = _median_scale(tgt, valid)
    error = ((pred - p_shift[:, None]) / p_scale[:, None] - (tgt - t_shift[:, None]) / t_scale[:, None]).abs()
    return ((error * valid).sum(dim=1) / valid.sum(dim=1)).mean()


def minmax_255(disparity: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) -> per-frame min-max to [0, 255], as SegDepth reads disparity (all-equal frames: zeros)."""
    flat = disparity.flatten(1)
    low, high = flat.min(dim=1).values[:, None, None, None], flat.max(dim=1).values[:, None, None, None]
    span = high - low
    return torch.where(span > 0, (disparity - low) / span.clamp(min=1e-12), torch.zeros_like(disparity)) * 255.0


def disparity_error_255(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per frame (B,): mean absolute difference of the two disparities after each is min-max normalised to 0-255
    over the frame, what SegDepth would be handed against what it should be; frames need a target at every pixel
    (target > 0 throughout, as unaugmented renders have)."""
    return (minmax_255(prediction) - minmax_255(target)).abs().flatten(1).mean(dim=1)


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
