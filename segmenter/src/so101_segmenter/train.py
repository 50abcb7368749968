"""Train the EfficientViT-B0 + FPN segmenter (seed 001's options), with early stopping on val mIoU.

    so101-seg-train --dataset-path data/dataset_v0                                  # 640x480
    so101-seg-train --dataset-path data/sim_train --img-height 84 --img-width 84 --batch-size 16

Writes to --output-dir: best/ (the best-val-mIoU model: config.json + model.safetensors, load with
`load_segmenter`), last/ (the latest model plus train_state.pt, from which an interrupted run resumes),
metrics.jsonl (one line per epoch, per-class IoU included), val_grid.png (image | ground truth | prediction for
validation frames, from the best model) and, with --test-dataset-path, test_metrics.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .data import AUGMENTATIONS, SegmentationDataset, build_transforms, load_index, stratified_split
from .dataset_index import DatasetIndex
from .metrics import confusion_matrix, make_loss, summarize
from .model import EfficientViTFPN, SegmenterConfig, load_segmenter, save_segmenter
from .viz import colorize, save_grid

log = logging.getLogger(__name__)
STATE_NAME = "train_state.pt"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset-path", required=True, help="dataset folder with index.json (so101-seg-masks/-render)")
    p.add_argument("--img-height", type=int, default=480)
    p.add_argument("--img-width", type=int, default=640)
    p.add_argument("--loss", choices=("iou", "ce"), default="iou")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--min-lr", type=float, default=1e-6, help="cosine schedule floor (eta_min)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--output-dir", default="outputs/efficientvit_seg")
    p.add_argument("--patience", type=int, default=20, help="epochs without a val mIoU gain before stopping")
    p.add_argument("--val-fraction", type=float, default=0.15)
    p.add_argument(
        "--augment",
        choices=AUGMENTATIONS,
        default="full",
        help="seed 001: full at 640x480, flips at 84x84; flips swap the fingers' sides (see README)",
    )
    p.add_argument("--no-pretrained", action="store_true", help="random backbone init (no ImageNet download)")
    p.add_argument("--test-dataset-path", help="held-out dataset evaluated with the best model at the end")
    p.add_argument("--time-limit-min", type=float, help="stop after this many minutes of training (then evaluate)")
    p.add_argument("--num-workers", type=int, default=0)
    # On a CPU shared with other jobs, torch's default of one thread per core can be >10x slower than 1 thread
    # (measured here: 1.55 s vs 0.10 s per 16x84x84 step), because its worker threads spin waiting for each other.
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--grid-size", type=int, default=8, help="validation frames in val_grid.png")
    return p


@torch.no_grad()
def evaluate(model: EfficientViTFPN, loader: DataLoader, desc: str = "val") -> dict:
    model.eval()
    device = next(model.parameters()).device
    confusion = None
    for images, masks in tqdm(loader, desc=desc, leave=False, unit="batch"):
        pred = model(images.to(device)).argmax(1).cpu()
        c = confusion_matrix(pred, masks, model.num_classes)
        confusion = c if confusion is None else confusion + c
    summary = summarize(confusion)
    summary["confusion"] = confusion.tolist()
    return summary


@torch.no_grad()
def write_val_grid(model: EfficientViTFPN, dataset: SegmentationDataset, path: Path, count: int) -> Path:
    """Rows of image | ground truth | prediction for `count` frames spread over the dataset."""
    model.eval()
    picks = np.linspace(0, len(dataset) - 1, num=min(count, len(dataset))).round().astype(int)
    rows = []
    for i in picks:
        image, mask = dataset[int(i)]
        pred = model(image[None].to(next(model.parameters()).device)).argmax(1)[0].cpu().numpy()
        rgb = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        rows.append([rgb, colorize(mask.numpy()), colorize(pred)])
    scale = max(1, round(256 / max(rows[0][0].shape[:2])))
    return save_grid(path, rows, scale=scale)


def cosine_lr(epoch: int, epochs: int, lr: float, min_lr: float) -> float:
    """CosineAnnealingLR's closed form (T_max = epochs), computed from the epoch alone so that a resumed run,
    even one given a new --epochs, follows the schedule of its epoch count instead of a stale scheduler state."""
    return min_lr + (lr - min_lr) * (1 + math.cos(math.pi * epoch / max(epochs, 1))) / 2


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _format_iou(summary: dict) -> str:
    return " ".join(f"{k}={v:.3f}" if v is not None else f"{k}=n/a" for k, v in summary["per_class_iou"].items())


def _save_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train(args: argparse.Namespace) -> dict:
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    _seed_everything(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    index = load_index(args.dataset_path)
    train_records, val_records = stratified_split(index.records, args.val_fraction, args.seed)
    size = (args.img_height, args.img_width)
    train_ds = SegmentationDataset(index, train_records, build_transforms(*size, args.augment))
    val_ds = SegmentationDataset(index, val_records, build_transforms(*size, "none"))
    log.info(
        "%s: %d train frames (%d grasp), %d val frames (%d grasp), %dx%d, augment=%s",
        args.dataset_path,
        len(train_ds),
        sum(r.grasp for r in train_records),
        len(val_ds),
        sum(r.grasp for r in val_records),
        *size,
        args.augment,
    )
    generator = torch.Generator().manual_seed(args.seed)
    train_loader = DataLoader(
        train_ds,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=len(train_ds) > args.batch_size,
        num_workers=args.num_workers,
        generator=generator,
    )
    val_loader = DataLoader(val_ds, batch_size=max(args.batch_size, 16), num_workers=args.num_workers)

    state_path = out / "last" / STATE_NAME
    resume = state_path.is_file()
    if resume:
        model = load_segmenter(out / "last")
    else:
        try:
            model = EfficientViTFPN(SegmenterConfig(pretrained=not args.no_pretrained))
        except Exception as e:  # the Hub is unreachable or the cache holds no weights
            raise RuntimeError(f"cannot load ImageNet weights for the backbone ({e}); pass --no-pretrained") from e
    model.train()
    criterion = make_loss(args.loss, model.num_classes)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    start_epoch, best_miou, stale, elapsed_before = 0, -math.inf, 0, 0.0
    if resume:
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best_miou, stale = state["epoch"] + 1, state["best_miou"], state["stale"]
        elapsed_before = state.get("elapsed_s", 0.0)
        torch.set_rng_state(state["torch_rng"])
        generator.set_state(state["loader_rng"])
        log.info("resuming from %s at epoch %d (best val mIoU %.4f)", state_path, start_epoch, best_miou)

    started = time.monotonic()
    epoch = start_epoch - 1
    for epoch in range(start_epoch, args.epochs):
        lr = cosine_lr(epoch, args.epochs, args.lr, args.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        total, batches = 0.0, 0
        bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{args.epochs}", leave=False, unit="batch")
        for images, masks in bar:
            loss = criterion(model(images), masks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, batches = total + loss.item(), batches + 1
            bar.set_postfix(loss=f"{total / batches:.4f}")
        val = evaluate(model, val_loader)
        elapsed = elapsed_before + time.monotonic() - started
        improved = val["miou"] > best_miou
        if improved:
            best_miou, stale = val["miou"], 0
            save_segmenter(model, out / "best", {"epoch": epoch, "val_miou": val["miou"], "img_size": list(size)})
        else:
            stale += 1
        record = {
            "epoch": epoch,
            "train_loss": total / max(batches, 1),
            "lr": lr,
            "val_miou": val["miou"],
            "val_per_class_iou": val["per_class_iou"],
            "elapsed_s": round(elapsed, 1),
        }
        with open(out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        log.info(
            "epoch %d/%d loss %.4f val mIoU %.4f%s | %s | %.0fs",
            epoch + 1,
            args.epochs,
            record["train_loss"],
            val["miou"],
            " (best)" if improved else "",
            _format_iou(val),
            elapsed,
        )
        save_segmenter(model, out / "last")
        _save_state(
            state_path,
            {
                "optimizer": optimizer.state_dict(),
                "epoch": epoch,
                "best_miou": best_miou,
                "stale": stale,
                "elapsed_s": elapsed,
                "torch_rng": torch.get_rng_state(),
                "loader_rng": generator.get_state(),
                "args": vars(args),
            },
        )
        if stale >= args.patience:
            log.info("early stop: val mIoU has not improved for %d epochs", stale)
            break
        if args.time_limit_min is not None and elapsed >= 60 * args.time_limit_min:
            log.info("time limit of %.1f min reached", args.time_limit_min)
            break

    if not (out / "best").is_dir():
        raise RuntimeError(f"no epoch finished, so {out / 'best'} was never written")
    best = load_segmenter(out / "best")
    grid = write_val_grid(best, val_ds, out / "val_grid.png", args.grid_size)
    result = {
        "best_val_miou": best_miou,
        "epochs_run": epoch + 1,
        "train_time_s": elapsed_before + time.monotonic() - started,
        "val_grid": str(grid),
        "checkpoint": str(out / "best"),
    }
    if args.test_dataset_path:
        test_index = load_index(args.test_dataset_path)
        test_ds = SegmentationDataset(test_index, test_index.records, build_transforms(*size, "none"), cache=False)
        test = evaluate(best, DataLoader(test_ds, batch_size=32), desc="test")
        test.update(dataset=str(args.test_dataset_path), frames=len(test_ds), checkpoint=str(out / "best"))
        (out / "test_metrics.json").write_text(json.dumps(test, indent=2) + "\n")
        log.info(
            "test %s (%d frames): mIoU over classes 1-5 %.4f | %s",
            args.test_dataset_path,
            len(test_ds),
            test["miou"],
            _format_iou(test),
        )
        result["test_miou"] = test["miou"]
        result["test_per_class_iou"] = test["per_class_iou"]
    log.info("done: %s", json.dumps(result))
    return result


def evaluate_checkpoint(checkpoint: str | Path, dataset: DatasetIndex, size: tuple[int, int], batch_size: int = 32):
    model = load_segmenter(checkpoint)
    ds = SegmentationDataset(dataset, dataset.records, build_transforms(*size, "none"), cache=False)
    return evaluate(model, DataLoader(ds, batch_size=batch_size), desc="eval")


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    train(args)


def eval_main(argv: list[str] | None = None) -> None:
    """so101-seg-eval: per-class IoU and mIoU (classes 1-5) of a checkpoint on a dataset folder."""
    p = argparse.ArgumentParser(description=eval_main.__doc__)
    p.add_argument("--checkpoint", required=True, help="a save_segmenter folder (e.g. outputs/.../best)")
    p.add_argument("--dataset-path", required=True)
    p.add_argument("--img-height", type=int, default=480)
    p.add_argument("--img-width", type=int, default=640)
    p.add_argument("--output", help="write the metrics JSON here")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    result = evaluate_checkpoint(args.checkpoint, load_index(args.dataset_path), (args.img_height, args.img_width))
    result.pop("confusion")
    print(json.dumps(result, indent=2))
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
