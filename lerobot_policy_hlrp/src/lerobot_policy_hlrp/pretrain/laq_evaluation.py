"""hlrp-train-laq's evaluation: the held-out reconstruction metrics against the copy-frame baseline, per class where
class maps exist, and the reconstruction grids written to output_dir/images/."""

from pathlib import Path

import numpy as np
import torch

from so101_run_infra.atomic import write_with

from ..laq import LAQ, segmentation_pixel_weights, weighted_mse
from .laq_config import LAQTrainConfig


def spread(n: int, k: int | None) -> list[int]:
    """k indices evenly over range(n) (all of them when k is None or >= n)."""
    if k is None or k >= n:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, k)})


@torch.no_grad()
def evaluate(model: LAQ, pairs, indices: list[int], batch_size: int, device, class_weights: torch.Tensor) -> dict:
    """Eval-mode (nearest code) plain reconstruction MSE and the copy-frame-t baseline over the given pairs, the
    perplexity of their codes and how many distinct codes they use. Where the pairs carry class maps: the MSE over
    each class's pixels (class of frame t+k) and the MSE weighted by `class_weights`, so that a plain and a
    segmentation-weighted LAQ compare on both."""
    from so101_core import SEGMENTATION_CLASSES

    was_training = model.training
    model.eval()
    sq, base, weighted, n, codes = 0.0, 0.0, 0.0, 0, []
    class_sq = torch.zeros(len(SEGMENTATION_CLASSES), dtype=torch.float64)
    class_px = torch.zeros(len(SEGMENTATION_CLASSES), dtype=torch.float64)
    for lo in range(0, len(indices), batch_size):
        items = [pairs[i] for i in indices[lo : lo + batch_size]]
        pair = torch.stack([it["pair"] for it in items]).to(device)
        out = model(pair)
        f, target = model.prepare(pair).unbind(1)
        b = pair.shape[0]
        sq += out.recon_loss.item() * b
        base += torch.nn.functional.mse_loss(f, target).item() * b
        n += b
        codes.append(out.indices.reshape(-1).cpu())
        if "classes" in items[0]:
            classes = torch.stack([it["classes"] for it in items]).to(device)
            w = segmentation_pixel_weights(classes, class_weights, model.config.image_size)
            weighted += weighted_mse(out.recon, target, w).item() * b
            err = (out.recon.float() - target.float()).square().mean(1).flatten().double().cpu()
            size = model.config.image_size
            ids = torch.nn.functional.interpolate(classes[:, 1:].float(), size=(size, size), mode="nearest")
            ids = ids.long().flatten().cpu()
            class_sq += torch.bincount(ids, weights=err, minlength=len(class_sq))
            class_px += torch.bincount(ids, minlength=len(class_px)).double()
    model.train(was_training)
    codes = torch.cat(codes)
    probs = torch.bincount(codes, minlength=model.config.codebook_size).float() / len(codes)
    perplexity = float(torch.exp(-(probs * torch.log(probs + 1e-10)).sum()))
    result = {
        "recon_mse": sq / n,
        "copy_baseline_mse": base / n,
        "perplexity": perplexity,
        "used_codes": int(codes.unique().numel()),
        "codebook_size": model.config.codebook_size,
        "pairs": n,
    }
    if class_px.sum() > 0:
        result["recon_mse_weighted"] = weighted / n
        result["recon_mse_by_class"] = {
            name: float(class_sq[i] / class_px[i]) for i, name in SEGMENTATION_CLASSES.items() if class_px[i] > 0
        }
    return result


GRID_COLUMNS = ("frame t", "frame t+k", "recon. t+k")


def grid_title(cfg: LAQTrainConfig, step: int, split: list[dict]) -> str:
    """What a reconstruction grid shows: the step, which pairs, the cameras and the gaps k."""
    which = "held-out" if any(p["heldout"] for p in split) else "training"
    cameras = ", ".join(dict.fromkeys(d.camera_key.removeprefix("observation.images.") for d in cfg.datasets))
    gaps = ", ".join(dict.fromkeys(f"{d.gap_s:g} s" for d in cfg.datasets))
    return f"LAQ step {step}, {which} pairs ({cameras}), k = {gaps}: frame t+k reconstructed from t and the code"


def grid_header(width: int, title: str, columns: tuple[str, ...] = GRID_COLUMNS, size: int = 11) -> np.ndarray:
    """A white RGB band: `title` wrapped to `width`, then a name over each of the equal columns below it."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=size)
    line = sum(font.getmetrics()) + 1
    lines: list[str] = []
    for word in title.split():
        if lines and font.getlength(f"{lines[-1]} {word}") <= width - 6:
            lines[-1] += f" {word}"
        else:
            lines.append(word)
    band = Image.new("RGB", (width, 6 + line * (len(lines) + 1)), "white")
    draw = ImageDraw.Draw(band)
    for i, text in enumerate(lines):
        draw.text((3, 2 + i * line), text, fill="black", font=font)
    for j, name in enumerate(columns):
        draw.text((j * width // len(columns) + 3, 2 + len(lines) * line), name, fill="black", font=font)
    return np.asarray(band)


@torch.no_grad()
def write_grid(model: LAQ, pairs, indices: list[int], path: Path, device, title: str = "LAQ reconstructions") -> None:
    """PNG: a row per pair, columns frame t | frame t+k | eval-mode reconstruction, all at the model's size, under
    a band with `title` and the column names."""
    from PIL import Image

    was_training = model.training
    model.eval()
    items = [pairs[i] for i in indices]
    pair = torch.stack([it["pair"] for it in items]).to(device)
    recon = model(pair).recon
    f, target = model.prepare(pair).unbind(1)
    model.train(was_training)
    rows = torch.cat([f, target, recon.float()], dim=3).clamp(0, 1)  # [B, C, S, 3S]
    grid = torch.cat(list(rows), dim=1)  # [C, B*S, 3S]
    array = (grid.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    array = array if array.shape[2] == 3 else np.repeat(array[..., :1], 3, axis=2)  # grey frames, RGB header
    picture = Image.fromarray(np.concatenate([grid_header(array.shape[1], title), array], axis=0))
    write_with(path, lambda tmp: picture.save(tmp, format="PNG"))
