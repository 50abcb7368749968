"""Train the EfficientViT-B0 + FPN segmenter (ggand0/pick-101's options), with early stopping on val mIoU.

    so101-seg-train --config_path=configs/segmenter_train.yaml                     # the segmenter README's run
    so101-seg-train --data.path=data/dataset_v0                                     # 640x480
    so101-seg-train --data.path=data/sim_train --data.img_height=84 --data.img_width=84 --batch_size=16

Options are the `TrainConfig` (`configs.py`), parsed by LeRobot's `parser.wrap`: a YAML file (--config_path) and
dotted flags overriding it.
Writes to --output_dir: best/ (the best-val-mIoU model: config.json + model.safetensors, load with
`load_segmenter`), last/ (the latest model plus train_state/, from which an interrupted run resumes),
metrics.jsonl (one line per epoch, per-class IoU included), val_grid.png (image | ground truth | prediction for
validation frames, from the best model, with true and predicted disparity for a model with a depth head),
train_config.yaml (the parsed config of the latest start) and, with --data.test_path or --data.test_fraction,
test_metrics.json.

Fine-tuning, e.g. the twin segmenter that ships with this package (`shipped.py`) on labelled frames of the real arm
(docs/real-so101.md):

    so101-seg-train --data.path=data/real_v0 --data.test_fraction=0.15 \
        --model.init_from=shipped --output_dir=outputs/segmenter
"""

import json
import logging
import math
import random
import sys
import time
from pathlib import Path

import draccus
import numpy as np
import torch
from lerobot.configs import parser
from torch.utils.data import DataLoader
from tqdm import tqdm

from so101_run_infra.atomic import atomic_folder, write_text
from so101_run_infra.cli import OutputRefused, prepare_command_line
from so101_run_infra.hub import model_card, push_folder
from so101_run_infra.resume_state import STATE_JSON, load_state, refuse_pickled, save_state
from so101_run_infra.rng import capture_rng, restore_rng
from so101_run_infra.runs import (
    RUN_FINISHED,
    config_differences,
    finished_run,
    mark_finished,
    with_defaults,
    without_fields,
)

from .augment import BandFold, PhotometricAugment
from .classes import NUM_CLASSES
from .configs import DataConfig, EvalConfig, TrainConfig
from .data import DISPARITY_OFFSET, SegmentationDataset, build_transforms, load_index, stratified_split
from .dataset_index import DatasetIndex, FrameRecord
from .metrics import confusion_matrix, disparity_error_255, disparity_loss, make_loss, minmax_255, summarize
from .model import EfficientViTFPN, SegmenterConfig, load_checked_state, load_segmenter, save_segmenter
from .shipped import ShippedSegmenterError, resolve_init_from
from .viz import colorize, save_grid

log = logging.getLogger(__name__)
TEST_SPLIT_SEED = 1_000_003  # --data.test_fraction's split: the same test frames whatever --seed
STATE_NAME = "train_state"  # a so101_run_infra.resume_state folder: optimizer, progress, generators, config
# Fields that shape neither the segmenter nor the run's files: where the run goes, how fast, where it is pushed.
NOT_SETTINGS = ("output_dir", "threads", "data.num_workers", "model.push_to_hub", "model.repo_id", "model.private",
                "model.tags", "model.license")  # fmt: skip
# What a run continued from last/ may change: how long it trains, when it stops early (the cosine schedule follows a
# new epoch count: epoch_scheduler) and the final grid's size.
RESUMABLE = ("epochs", "patience", "time_limit_min", "grid_size")


@torch.no_grad()
def evaluate(model: EfficientViTFPN, loader: DataLoader, desc: str = "val") -> dict:
    """Per-class IoU and mIoU; with a depth head and disparity targets, also `disparity_error_255`: the mean absolute
    difference of predicted and true disparity, each min-max normalised to 0-255 per frame as SegDepth reads it,
    over the frames with a target at every pixel."""
    model.eval()
    device = next(model.parameters()).device
    confusion, errors = None, []
    for batch in tqdm(loader, desc=desc, leave=False, unit="batch"):
        images, masks = batch[0].to(device), batch[1]
        if model.has_depth and len(batch) == 3:
            logits, disparity = model.forward_with_disparity(images)
            target = batch[2].to(device)
            whole = (target > 0).flatten(1).all(dim=1)
            if bool(whole.any()):
                errors.append(disparity_error_255(disparity[whole], target[whole]).cpu())
        else:
            logits = model(images)
        c = confusion_matrix(logits.argmax(1).cpu(), masks, model.num_classes)
        confusion = c if confusion is None else confusion + c
    summary = summarize(confusion)
    summary["confusion"] = confusion.tolist()
    if errors:
        summary["disparity_error_255"] = float(torch.cat(errors).mean())
    return summary


@torch.no_grad()
def write_val_grid(
    model: EfficientViTFPN, dataset: SegmentationDataset, path: Path, count: int, title: str | None = None
) -> Path:
    """Rows of image | ground truth | prediction for `count` frames spread over the dataset, under a header."""
    model.eval()
    picks = np.linspace(0, len(dataset) - 1, num=min(count, len(dataset))).round().astype(int)
    rows = []
    columns = ["image", "ground truth", "prediction"]
    for i in picks:
        item = dataset[int(i)]
        image, mask = item[0], item[1]
        batch = image[None].to(next(model.parameters()).device)
        rgb = (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        if model.has_depth and len(item) == 3:
            logits, disparity = model.forward_with_disparity(batch)
            target = (item[2] - DISPARITY_OFFSET).clamp(min=0)[None]
            row = [rgb, colorize(mask.numpy()), colorize(logits.argmax(1)[0].cpu().numpy())]
            row += [_grey(minmax_255(target)), _grey(minmax_255(disparity.cpu()))]
            columns = ["image", "ground truth", "prediction", "true disparity", "predicted"]
        else:
            row = [rgb, colorize(mask.numpy()), colorize(model(batch).argmax(1)[0].cpu().numpy())]
        rows.append(row)
    scale = max(1, round(256 / max(rows[0][0].shape[:2])))
    h, w = rows[0][0].shape[:2]
    shown = f"{len(rows)} validation frames, {w}x{h}" + (f" shown {scale}x" if scale > 1 else "")
    title = f"{title}: {shown}" if title else shown
    return save_grid(path, rows, scale=scale, columns=columns, title=title)


def _grey(disparity_255: torch.Tensor) -> np.ndarray:
    """(1, 1, H, W) 0-255 -> (H, W, 3) uint8."""
    return np.repeat(disparity_255[0, 0].round().clamp(0, 255).to(torch.uint8).numpy()[..., None], 3, axis=-1)


def selection_score(val: dict) -> float:
    """What picks best/: the validation mIoU, or, on frames with no masks (a depth head distilled on unlabelled
    frames), minus the disparity error (0-255) over 255."""
    if not math.isnan(val["miou"]):
        return val["miou"]
    return -val.get("disparity_error_255", math.inf) / 255.0


def epoch_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, start_epoch: int):
    """transformers' cosine_with_min_lr over the epochs (CosineAnnealingLR's curve, T_max = epochs, no warm-up),
    placed at `start_epoch` from the epoch alone: a resumed run, even one given a new --epochs, follows the
    schedule of its epoch count instead of a stale scheduler state."""
    from transformers import get_scheduler

    for group in optimizer.param_groups:  # LambdaLR starts mid-schedule from each group's initial_lr
        group["initial_lr"] = cfg.optim.lr
    return get_scheduler(
        "cosine_with_min_lr",
        optimizer,
        num_warmup_steps=0,
        num_training_steps=cfg.epochs,
        scheduler_specific_kwargs={"min_lr_rate": cfg.optim.min_lr / cfg.optim.lr, "last_epoch": start_epoch - 1},
    )


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _format_iou(summary: dict) -> str:
    return " ".join(f"{k}={v:.3f}" if v is not None else f"{k}=n/a" for k, v in summary["per_class_iou"].items())


def _datasets(cfg: TrainConfig, disparity: bool) -> tuple[torch.utils.data.Dataset, SegmentationDataset]:
    """The training (with --data.replay_path's beside them) and validation frames, split by episode; with `disparity`,
    their disparity targets too."""
    data = cfg.data
    index = load_index(data.path)
    # frames with neither a mask nor (for a depth head) a disparity target teach nothing
    usable = [r for r in index.records if r.mask or (disparity and r.disparity)]
    records, _ = _hold_out_test(usable, data.test_fraction)
    if disparity and not any(r.disparity for r in records):
        if cfg.model.depth_head:
            raise ValueError(
                f"{index.path} lists no disparity targets, but the model has a depth head: render the frames with "
                "so101-seg-render, or add a teacher's with so101-seg-disparity, or train without --model.depth_head"
            )
        # A labelling tool's export has masks only: fine-tuning the classes of a segmenter that came with a head
        # (the shipped one) must still work, so the head is carried along untrained rather than the run refused.
        log.warning(
            "%s lists no disparity targets: only the classes are fine-tuned; the depth head of --model.init_from=%s "
            "is carried along untrained (add a teacher's targets with so101-seg-disparity to train it too)",
            index.path, cfg.model.init_from,
        )  # fmt: skip
        disparity = False
    train_records, val_records = stratified_split(records, data.val_fraction, cfg.seed)
    size = (data.img_height, data.img_width)
    band = data.hue_band()
    if data.augment == "robust":
        photometric = PhotometricAugment(data.photometric, band)
    else:
        photometric = BandFold(band) if band is not None else None
    train_ds = SegmentationDataset(
        index, train_records, build_transforms(*size, data.augment), photometric=photometric, disparity=disparity
    )
    val_ds = SegmentationDataset(index, val_records, build_transforms(*size, "none"), disparity=disparity)
    if data.replay_path is not None:
        train_ds = _with_replay(train_ds, data, build_transforms(*size, data.augment), photometric, disparity, cfg.seed)
    log.info(
        "%s: %d train frames (%d grasp), %d val frames (%d grasp), %dx%d, augment=%s",
        data.path,
        len(train_ds),
        sum(r.grasp for r in train_records),
        len(val_ds),
        sum(r.grasp for r in val_records),
        *size,
        data.augment,
    )
    return train_ds, val_ds


def _with_replay(train_ds, data, transform, photometric, disparity: bool, seed: int):
    """The training frames and, beside them, `replay_ratio` times as many frames of --data.replay_path."""
    replay = load_index(data.replay_path)
    usable = [r for r in replay.records if r.mask]
    wanted = min(len(usable), round(data.replay_ratio * len(train_ds)))
    chosen = [usable[i] for i in sorted(random.Random(seed).sample(range(len(usable)), wanted))]
    log.info("%s: %d replay frames beside the %d training frames", data.replay_path, wanted, len(train_ds))
    return torch.utils.data.ConcatDataset(
        [train_ds, SegmentationDataset(replay, chosen, transform, photometric=photometric, disparity=disparity)]
    )


def _hold_out_test(records: list[FrameRecord], fraction: float) -> tuple[list[FrameRecord], list[FrameRecord]]:
    """(the frames left for training and validation, the --data.test_fraction held out for the test). The split is
    stratified like the validation split and seeded apart from --seed: runs with other seeds score the same frames."""
    if not fraction:
        return list(records), []
    return stratified_split(records, fraction, TEST_SPLIT_SEED)


def _starting_model(cfg: TrainConfig, out: Path, resume: bool) -> EfficientViTFPN:
    if resume:
        return load_segmenter(out / "last")
    if cfg.model.init_from is not None:
        start = resolve_init_from(cfg.model.init_from)
        log.info("starting from the segmenter in %s (fine-tuning)", start)
        model = load_segmenter(start, num_classes=NUM_CLASSES)
        if cfg.model.depth_head and not model.has_depth:
            log.info("%s has no depth head: a new one is added, the rest starts from it", start)
            grown = EfficientViTFPN(_with_depth_head(model.config))
            state = {**grown.state_dict(), **model.state_dict()}
            load_checked_state(grown, state, str(start), "its config.json with depth_head=true")
            model = grown
        return model
    try:
        config = SegmenterConfig(
            pretrained=cfg.model.pretrained, depth_head=cfg.model.depth_head, fpn_channels=cfg.model.fpn_channels
        )
        return EfficientViTFPN(config)
    except Exception as e:  # the Hub is unreachable or the cache holds no weights
        raise RuntimeError(f"cannot load ImageNet weights for the backbone ({e}); pass --model.pretrained=false") from e


def _with_depth_head(config: SegmenterConfig) -> SegmenterConfig:
    data = config.to_dict()
    data.pop("architecture")
    return SegmenterConfig(**{**data, "depth_head": True, "pretrained": False})


def _restore_rng(state: dict, generator: torch.Generator) -> None:
    """The generators of a train_state: `rng` (capture_rng), or the two states older ones held."""
    if "rng" in state:
        restore_rng(state["rng"], {"loader": generator})
    else:
        torch.set_rng_state(state["torch_rng"])
        generator.set_state(state["loader_rng"])


def _train_epoch(
    model: EfficientViTFPN, loader: DataLoader, criterion, optimizer, desc: str, depth_weight: float = 1.0
) -> float:
    """One pass over the training frames; the mean loss (with a depth head: class loss + depth_weight x depth loss)."""
    model.train()
    total, batches = 0.0, 0
    bar = tqdm(loader, desc=desc, leave=False, unit="batch")
    for batch in bar:
        images, masks = batch[0], batch[1]
        if model.has_depth and len(batch) == 3:
            logits, disparity = model.forward_with_disparity(images)
            loss = criterion(logits, masks) + depth_weight * disparity_loss(disparity, batch[2])
        else:
            loss = criterion(model(images), masks)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, batches = total + loss.item(), batches + 1
        bar.set_postfix(loss=f"{total / batches:.4f}")
    return total / max(batches, 1)


def _test(cfg: TrainConfig, best: EfficientViTFPN, out: Path) -> dict:
    """mIoU and per-class IoU of the best model on --data.test_path or the --data.test_fraction of --data.path held
    out, also written to test_metrics.json."""
    data = cfg.data
    if data.test_path is not None:
        test_index = load_index(data.test_path)
        records, name = test_index.records, str(data.test_path)
    else:
        test_index = load_index(data.path)
        records = _hold_out_test(test_index.records, data.test_fraction)[1]
        name = f"{data.path} (--data.test_fraction={data.test_fraction} held out)"
    transforms = build_transforms(data.img_height, data.img_width, "none")
    test_ds = SegmentationDataset(test_index, records, transforms, cache=False, disparity=best.has_depth)
    test = evaluate(best, DataLoader(test_ds, batch_size=32), desc="test")
    test.update(dataset=name, frames=len(test_ds), checkpoint=str(out / "best"))
    write_text(out / "test_metrics.json", json.dumps(test, indent=2) + "\n")
    log.info(
        "test %s (%d frames): mIoU over classes 1-5 %.4f | %s", name, len(test_ds), test["miou"], _format_iou(test),
    )  # fmt: skip
    return test


def run_settings(config: dict) -> dict:
    """What a run is known again by: an encoded TrainConfig without NOT_SETTINGS."""
    return without_fields(config, NOT_SETTINGS)


def _claim_output(cfg: TrainConfig, out: Path) -> dict | None:
    """The result of a run already finished in `out` with these settings (after saying so in one line), or None once
    `out` may be trained in: new, or holding a run of these settings (RESUMABLE aside) that is resumed from last/.
    A run of other settings, or a folder of files this command did not write, is refused before any work.

    Unlike the suite's other trainers, so101-seg-train has no --resume flag: it has always continued the run it
    finds in its output_dir, so a re-run of the same command over an interrupted run resumes it."""
    refuse_pickled(out / "last", f"{STATE_NAME}.pt")  # what 0.2.0 and before wrote
    settings = run_settings(draccus.encode(cfg))
    if (done := finished_run(out, settings)) is not None:
        return {**done["result"], "already_trained": True}
    state = out / "last" / STATE_NAME / STATE_JSON
    saved = json.loads(state.read_text()).get("config") if state.is_file() else None
    if saved is not None:  # a train_state of before it held its config is resumed unchecked, as it always was
        defaults = run_settings(draccus.encode(TrainConfig(data=DataConfig(path=Path("-")))))
        saved = without_fields(with_defaults(run_settings(saved), defaults), RESUMABLE)
        differences = config_differences(saved, without_fields(settings, RESUMABLE))
        if differences:
            raise OutputRefused(
                f"{out} holds a run made with other settings ({'; '.join(differences)}): choose another --output_dir, "
                "or remove that folder to start over"
            )
    elif out.exists() and any(out.iterdir()) and not (out / "train_config.yaml").is_file():
        raise OutputRefused(f"{out} is not empty and holds no so101-seg-train run: choose another --output_dir")
    (out / RUN_FINISHED).unlink(missing_ok=True)  # a finished run trained further is unfinished until it ends
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "train_config.yaml", "w") as f:
        draccus.dump(cfg, f)
    return None


def _report_epoch(
    cfg: TrainConfig, out: Path, epoch: int, train_loss: float, lr: float, val: dict, elapsed: float, improved: bool
) -> None:
    """An epoch's line of metrics.jsonl and of the log."""
    record = {
        "epoch": epoch,
        "train_loss": train_loss,
        "lr": lr,
        "val_miou": val["miou"],
        "val_per_class_iou": val["per_class_iou"],
        **({"val_disparity_error_255": val["disparity_error_255"]} if "disparity_error_255" in val else {}),
        "elapsed_s": round(elapsed, 1),
    }
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")
    depth = f" | disparity error {val['disparity_error_255']:.1f}/255" if "disparity_error_255" in val else ""
    log.info(
        "epoch %d/%d loss %.4f val mIoU %.4f%s | %s%s | %.0fs", epoch + 1, cfg.epochs, train_loss, val["miou"],
        " (best)" if improved else "", _format_iou(val), depth, elapsed,
    )  # fmt: skip


def train(cfg: TrainConfig) -> dict:
    """Train (or resume, from output_dir/last) the segmenter; a run already finished in output_dir with these
    settings is not trained again (`already_trained` in the result)."""
    out = Path(cfg.output_dir)
    if (done := _claim_output(cfg, out)) is not None:
        return done
    _seed_everything(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    state_path = out / "last" / STATE_NAME
    resume = state_path.is_dir()
    model = _starting_model(cfg, out, resume)
    model.train()
    train_ds, val_ds = _datasets(cfg, disparity=model.has_depth)
    size = (cfg.data.img_height, cfg.data.img_width)
    generator = torch.Generator().manual_seed(cfg.seed)
    train_loader, val_loader = _loaders(cfg, train_ds, val_ds, generator)
    criterion = make_loss(cfg.loss, model.num_classes, cfg.class_weights)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    start_epoch, best_miou, stale, elapsed_before = 0, -math.inf, 0, 0.0
    if resume:
        state = load_state(state_path)
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, best_miou, stale = state["epoch"] + 1, state["best_miou"], state["stale"]
        elapsed_before = state.get("elapsed_s", 0.0)
        _restore_rng(state, generator)
        log.info("resuming from %s at epoch %d (best val mIoU %.4f)", state_path, start_epoch, best_miou)
    scheduler = epoch_scheduler(optimizer, cfg, start_epoch)

    started = time.monotonic()
    epoch = start_epoch - 1
    for epoch in range(start_epoch, cfg.epochs):
        lr = scheduler.get_last_lr()[0]
        desc = f"epoch {epoch + 1}/{cfg.epochs}"
        train_loss = _train_epoch(model, train_loader, criterion, optimizer, desc, cfg.depth_loss_weight)
        scheduler.step()
        val = evaluate(model, val_loader)
        elapsed = elapsed_before + time.monotonic() - started
        score = selection_score(val)
        improved = score > best_miou
        if improved:
            best_miou, stale = score, 0
            save_segmenter(model, out / "best", {"epoch": epoch, "val_miou": val["miou"], "img_size": list(size)})
        else:
            stale += 1
        _report_epoch(cfg, out, epoch, train_loss, lr, val, elapsed, improved)
        progress = {"epoch": epoch, "best_miou": best_miou, "stale": stale, "elapsed_s": elapsed}
        rng = capture_rng({"loader": generator})
        state = {"optimizer": optimizer.state_dict(), **progress, "rng": rng, "config": draccus.encode(cfg)}
        with atomic_folder(out / "last") as last:  # the model and its state swapped in together
            save_segmenter(model, last)
            save_state(last / STATE_NAME, state)
        if stale >= cfg.patience:
            log.info("early stop: val mIoU has not improved for %d epochs", stale)
            break
        if cfg.time_limit_min is not None and elapsed >= 60 * cfg.time_limit_min:
            log.info("time limit of %.1f min reached", cfg.time_limit_min)
            break

    return _finish(cfg, out, val_ds, best_miou, epoch + 1, elapsed_before - started)


def _loaders(cfg: TrainConfig, train_ds, val_ds, generator: torch.Generator) -> tuple[DataLoader, DataLoader]:
    """The shuffled training loader (drawing from `generator`, which a resume restores) and the validation one."""
    train_loader = DataLoader(
        train_ds,
        batch_size=cfg.batch_size,
        shuffle=True,
        drop_last=len(train_ds) > cfg.batch_size,
        num_workers=cfg.data.num_workers,
        generator=generator,
    )
    val_loader = DataLoader(val_ds, batch_size=max(cfg.batch_size, 16), num_workers=cfg.data.num_workers)
    return train_loader, val_loader


def _finish(cfg: TrainConfig, out: Path, val_ds, best_miou: float, epochs_run: int, clock_offset: float) -> dict:
    """After the last epoch: the best model's validation grid and, with a test share or set, its test mIoU.
    `clock_offset + time.monotonic()` is the training time so far (earlier runs of a resumed one included)."""
    if not (out / "best").is_dir():
        raise RuntimeError(f"no epoch finished, so {out / 'best'} was never written")
    best = load_segmenter(out / "best")
    title = f"so101-seg-train {cfg.data.path}, best model (val mIoU {best_miou:.3f})"
    grid = write_val_grid(best, val_ds, out / "val_grid.png", cfg.grid_size, title)
    result = {
        "best_val_miou": best_miou,
        "epochs_run": epochs_run,
        "train_time_s": clock_offset + time.monotonic(),
        "val_grid": str(grid),
        "checkpoint": str(out / "best"),
    }
    if cfg.data.test_path is not None or cfg.data.test_fraction:
        test = _test(cfg, best, out)
        result["test_miou"] = test["miou"]
        result["test_per_class_iou"] = test["per_class_iou"]
        if "disparity_error_255" in test:
            result["test_disparity_error_255"] = test["disparity_error_255"]
    log.info("done: %s", json.dumps(result))
    mark_finished(out, run_settings(draccus.encode(cfg)), f"{epochs_run} epochs", **result)
    return result


def evaluate_checkpoint(
    checkpoint: str | Path,
    dataset: DatasetIndex,
    size: tuple[int, int],
    batch_size: int = 32,
    camera: str | None = None,
):
    model = load_segmenter(checkpoint)
    records = [r for r in dataset.records if camera is None or r.camera == camera]
    if not records:
        cameras = sorted({str(r.camera) for r in dataset.records})
        raise ValueError(f"{dataset.path} has no frames of camera {camera!r}; its cameras are {cameras}")
    ds = SegmentationDataset(dataset, records, build_transforms(*size, "none"), cache=False, disparity=model.has_depth)
    return evaluate(model, DataLoader(ds, batch_size=batch_size), desc="eval")


def push_segmenter(cfg: TrainConfig, result: dict) -> str:
    """Push best/ (config.json + model.safetensors) with a model card to --model.repo_id."""
    data = cfg.data
    sources = [f"`{data.path}` ({data.img_height}x{data.img_width}, augment={data.augment}, "
               f"{data.val_fraction:.0%} of the episodes held out for validation)"]  # fmt: skip
    if data.test_path is not None:
        sources.append(f"test set `{data.test_path}`")
    keys = ("best_val_miou", "test_miou", "epochs_run", "train_time_s")
    scores = {k: round(result[k], 4) if isinstance(result[k], float) else result[k] for k in keys if k in result}
    per_class = result.get("test_per_class_iou") or {}
    scores.update({f"test IoU {name}": "n/a" if v is None else round(v, 4) for name, v in per_class.items()})
    card = model_card(
        model_name=cfg.model.repo_id,
        model_type="so101_segmenter",
        summary="The SO-101 suite's EfficientViT-B0 + FPN segmenter (6 classes: background, table, cube, the two "
        "fingers; class 0 unlabelled), which SegDepth (perception_source=segmenter_depth_anything) and SegVLA "
        "(perception_source=segmenter) run on the arm's RGB cameras. mIoU is over classes 1-5.",
        data=sources,
        result=scores,
        hub=cfg.model,
        details={"Loss": cfg.loss, "Epochs": cfg.epochs, "Batch size": cfg.batch_size, "Learning rate": cfg.optim.lr},
        usage=f"hf download {cfg.model.repo_id} --local-dir segmenter && "
        "so101-seg-infer --segmenter_path=segmenter --input=frame.png",
        pipeline_tag="image-segmentation",
    )
    return push_folder(result["checkpoint"], cfg.model, card, "Upload the segmenter, its config and readme")


@parser.wrap()
def train_cli(cfg: TrainConfig) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    result = train(cfg)
    if cfg.model.push_to_hub and not result.get("already_trained"):  # nothing is trained or pushed again
        result["pushed_to"] = push_segmenter(cfg, result)
    return result


@parser.wrap()
def eval_cli(cfg: EvalConfig) -> dict:
    """Per-class IoU and mIoU (classes 1-5) of a checkpoint on a dataset folder; printed, and written to --output."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    data = cfg.data
    size = (data.img_height, data.img_width)
    result = evaluate_checkpoint(cfg.segmenter_path, load_index(data.path), size, camera=cfg.camera)
    result.pop("confusion")
    print(json.dumps(result, indent=2))
    if cfg.output is not None:  # atomic, its folder made
        write_text(cfg.output, json.dumps(result, indent=2) + "\n")
    return result


def main() -> None:
    """so101-seg-train: train the segmenter; `--config_path=FILE.yaml` and dotted flags (`--optim.lr=1e-3`)."""
    prepare_command_line()
    try:
        train_cli()
    except ShippedSegmenterError as e:  # a damaged install, not a bug: its one line says which file and what to do
        sys.exit(f"error: {e}")


def eval_main() -> None:
    """so101-seg-eval: per-class IoU and mIoU (classes 1-5) of a checkpoint on a dataset folder."""
    prepare_command_line()
    eval_cli()


if __name__ == "__main__":
    main()
