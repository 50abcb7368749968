"""`segvla-pretrain-tower`: pretrain a SmolVLM folder's vision tower on the twin's segmentation, as a stand-in for
the internet-scale pretraining of the SigLIP tower real SmolVLA freezes.

Why: SmolVLA (and SegVLA, which is SmolVLA plus cues) freeze a vision tower that arrived pretrained. In the twin no
pretrained weights can be downloaded, so the twin-size recipes train a random tower from scratch, a harder problem
than any user has. This command gives the tower what pretraining gives it, features that tell the scene's parts
apart, from the twin's randomised renders (the frames `so101-seg-render` writes, the segmenter's training frames),
with segmentation as the pretext task. The output is a SmolVLM folder like its input, with the tower's weights
replaced: `--policy.vlm_model_name=<output_dir> --policy.load_vlm_weights=true --policy.freeze_vision_encoder=true`.

What: the tower sees each frame as the policy's preprocessing gives it to it: LeRobot's `resize_with_pad` to the
tower's square input (padding top and left) and [0, 1] -> [-1, 1]. A linear head maps each patch token to the class
logits of its `patch x patch` pixels (pixel shuffle), trained with `so101-seg-train`'s soft IoU + cross-entropy
(classes weighted by `--class_weights`; padding and `unlabeled` ignored). The head is dropped afterwards. mIoU over
classes 1-5 on each `--test_paths` folder is reported and written to `tower_metrics.json`. Each epoch's state is
saved; a run started again resumes after the last finished epoch.

Run again with the same settings, the command finds the folder it finished (its `run_finished.json`) and does
nothing. A resume state or a finished folder of other settings, or a folder this command did not write, is refused
before any training, naming the differing settings: the run would otherwise continue, or replace, another run.

    segvla-pretrain-tower --vlm_path=outputs/models/smolvlm_twin \\
        --data.path=outputs/robust_twin/segmenter/sim_train \\
        --test_paths='[outputs/robust_twin/segmenter/test_none,outputs/robust_twin/segmenter/test_unseen]' \\
        --output_dir=outputs/models/smolvlm_twin_segtower
"""

import json
import logging
import math
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import draccus
import torch
import torch.nn.functional as F
from lerobot.configs import parser
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from so101_run_infra.atomic import replace_folder, staging_folder, write_json
from so101_run_infra.cli import OutputRefused, prepare_command_line
from so101_run_infra.resume_state import load_state, save_state
from so101_run_infra.runs import config_differences, finished_record, finished_run, mark_finished, without_fields
from so101_segmenter.augment import PhotometricAugment, PhotometricConfig
from so101_segmenter.classes import NUM_CLASSES, UNLABELED
from so101_segmenter.data import SegmentationDataset, build_transforms, load_index
from so101_segmenter.metrics import confusion_matrix, make_loss, summarize

logger = logging.getLogger(__name__)

STATE = ".tower_state"  # beside the output folder: the last finished epoch's weights, optimizer and RNG
METRICS = "tower_metrics.json"
NOT_SETTINGS = ("output_dir", "num_workers", "threads")  # where and how fast a run goes, not what it trains


@dataclass
class TowerDataConfig:
    # a so101-seg-render folder (images/, masks/, index.json): the training frames; required
    path: Path | None = None
    # the frames' size before the tower's resize_with_pad: the policy's camera size
    img_height: int = 96
    img_width: int = 128
    # so101-seg-train's augmentations: "robust" (crops, rotations) with its photometric steps, or "none"
    augment: str = "robust"
    photometric: PhotometricConfig = field(default_factory=PhotometricConfig)


@dataclass
class TowerPretrainConfig:
    # a SmolVLM folder (so101-make-random-vlm's, or a Hub download); required
    vlm_path: Path | None = None
    data: TowerDataConfig = field(default_factory=TowerDataConfig)
    # folders of frames to report mIoU on after training, one line each (e.g. one per look)
    test_paths: list[Path] = field(default_factory=list)
    epochs: int = 4
    batch_size: int = 32
    lr: float = 5e-4
    weight_decay: float = 1e-4
    # cross-entropy weight per class id 0-5; the cube (3) weighs more, as in configs/segmenter_robust.yaml
    class_weights: list[float] = field(default_factory=lambda: [1.0, 1.0, 1.0, 3.0, 1.0, 1.0])
    num_workers: int = 1
    threads: int = 2
    seed: int = 0
    # the SmolVLM folder written, the tower's weights replaced; required
    output_dir: Path | None = None

    def __post_init__(self):
        for name, value in (("--vlm_path", self.vlm_path), ("--data.path", self.data.path)):
            if value is None:
                raise ValueError(f"{name} is required")
        if self.output_dir is None:
            raise ValueError("--output_dir is required (the SmolVLM folder to write)")
        if len(self.class_weights) != NUM_CLASSES:
            raise ValueError(f"--class_weights has {len(self.class_weights)} values; expected {NUM_CLASSES}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"--epochs and --batch_size must be >= 1, got {self.epochs} and {self.batch_size}")


class TowerSegmenter(nn.Module):
    """A SigLIP-style vision tower with a per-patch linear head: (B, 3, S, S) in [-1, 1] -> (B, C, S, S) logits."""

    def __init__(self, tower: nn.Module, hidden_size: int, patch_size: int, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.tower, self.patch_size, self.num_classes = tower, patch_size, num_classes
        self.head = nn.Sequential(nn.LayerNorm(hidden_size), nn.Linear(hidden_size, num_classes * patch_size**2))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        tokens = self.tower(pixel_values=pixels).last_hidden_state  # (B, N, D), N = (S / patch)^2
        b, n, _ = tokens.shape
        grid = math.isqrt(n)
        if grid * grid != n:
            raise ValueError(f"the tower gave {n} patch tokens, not a square grid")
        logits = self.head(tokens).transpose(1, 2).reshape(b, -1, grid, grid)  # (B, C*p*p, g, g)
        return F.pixel_shuffle(logits, self.patch_size)  # (B, C, g*p, g*p)


def policy_view(images: torch.Tensor, masks: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames as SmolVLA's preprocessing hands them to the tower (LeRobot's resize_with_pad, then [-1, 1]), and
    their masks resized and padded the same way (nearest; padding `unlabeled`)."""
    from lerobot.policies.common.vla_utils import resize_with_pad

    pixels = resize_with_pad(images, size, size, pad_value=0) * 2.0 - 1.0
    height, width = images.shape[-2:]
    ratio = max(width / size, height / size)
    resized = F.interpolate(masks[:, None].float(), size=(int(height / ratio), int(width / ratio)), mode="nearest")
    pad_h, pad_w = size - resized.shape[-2], size - resized.shape[-1]
    labels = F.pad(resized, (pad_w, 0, pad_h, 0), value=float(UNLABELED))[:, 0].long()
    return pixels, labels


def load_tower(vlm_path: Path):
    """The whole SmolVLM (to save back) and its vision tower's size: (model, hidden size, patch size, image size)."""
    from transformers import AutoModelForImageTextToText

    if not (Path(vlm_path) / "config.json").is_file():
        raise FileNotFoundError(f"--vlm_path={vlm_path}: expected a SmolVLM folder with a config.json")
    model = AutoModelForImageTextToText.from_pretrained(vlm_path, dtype=torch.float32)
    vision = model.config.vision_config
    return model, vision.hidden_size, vision.patch_size, vision.image_size


def saved_with_head(vlm_path: Path) -> bool:
    """Whether the folder holds the whole SmolVLMForConditionalGeneration (keys `model.*`, `lm_head.*`, as the Hub's)
    or its SmolVLMModel alone (`so101-make-random-vlm`'s): the output is saved the same way."""
    index = Path(vlm_path) / "model.safetensors.index.json"
    if index.is_file():
        keys = json.loads(index.read_text())["weight_map"]
    else:
        from safetensors import safe_open

        with safe_open(Path(vlm_path) / "model.safetensors", framework="pt") as f:
            keys = list(f.keys())
    return any(k.startswith(("model.", "lm_head.")) for k in keys)


def frames(path: Path, cfg: TowerDataConfig, train: bool) -> SegmentationDataset:
    index = load_index(path)
    augment = cfg.augment if train else "none"
    photometric = PhotometricAugment(cfg.photometric) if train and cfg.augment == "robust" else None
    transform = build_transforms(cfg.img_height, cfg.img_width, augment)
    return SegmentationDataset(index, index.records, transform, photometric=photometric)


@torch.no_grad()
def tower_miou(model: TowerSegmenter, dataset: SegmentationDataset, size: int, batch_size: int) -> dict:
    model.eval()
    confusion = None
    for images, masks in DataLoader(dataset, batch_size=batch_size):
        pixels, labels = policy_view(images, masks, size)
        c = confusion_matrix(model(pixels).argmax(1), labels, NUM_CLASSES)
        confusion = c if confusion is None else confusion + c
    return summarize(confusion)


def tower_settings(cfg: TowerPretrainConfig) -> dict:
    """What a run is known again by: the encoded config without NOT_SETTINGS."""
    return without_fields(draccus.encode(cfg), NOT_SETTINGS)


def finished_here(cfg: TowerPretrainConfig, settings: dict) -> dict | None:
    """The result of a run finished in output_dir with these settings (after saying so in one line), or None when
    there is none. Anything else there is refused: the folder is swapped in whole when a run ends, so a non-empty one
    is a finished run of other settings or a folder this command did not write."""
    out = Path(cfg.output_dir)
    if (done := finished_run(out, settings)) is not None:
        return {**done["result"], "already_trained": True}
    if out.exists() and (out.is_file() or any(out.iterdir())):
        record = finished_record(out) if out.is_dir() else None
        if record is None:
            raise OutputRefused(
                f"{out} is not empty and holds no segvla-pretrain-tower run: choose another --output_dir"
            )
        differences = "; ".join(config_differences(record["settings"], settings))
        raise OutputRefused(
            f"{out} holds a tower pretrained with other settings ({differences}): choose another --output_dir, or "
            "remove that folder to start over"
        )
    return None


def resume_state(state_dir: Path, settings: dict) -> dict | None:
    """The last finished epoch's state of an interrupted run of these settings, or None; one of other settings is
    refused (continuing it would mix two runs' epochs)."""
    if not (state_dir / "state.json").is_file():
        return None
    state = load_state(state_dir)
    saved = state.get("settings")  # None: a state written before it held its settings, resumed unchecked
    differences = config_differences(saved, settings) if saved is not None else []
    if differences:
        raise OutputRefused(
            f"{state_dir} holds an unfinished run of other settings ({'; '.join(differences)}): choose another "
            "--output_dir, or remove that folder to start over"
        )
    return state


def pretrain(cfg: TowerPretrainConfig) -> dict:
    """Pretrain the tower and write output_dir; resumes an interrupted run of these settings, and does nothing over
    a run finished with them (`already_trained` in the result)."""
    settings = tower_settings(cfg)
    if (done := finished_here(cfg, settings)) is not None:
        return done
    state_dir = Path(cfg.output_dir).with_name(Path(cfg.output_dir).name + STATE)
    state = resume_state(state_dir, settings)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    vlm, hidden, patch, size = load_tower(cfg.vlm_path)
    model = TowerSegmenter(vlm.model.vision_model, hidden, patch)
    train_ds = frames(cfg.data.path, cfg.data, train=True)
    tests = {Path(p).name: frames(p, cfg.data, train=False) for p in cfg.test_paths}  # refused before training
    loss_fn = make_loss("iou+ce", NUM_CLASSES, cfg.class_weights)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    generator = torch.Generator().manual_seed(cfg.seed)
    start, elapsed = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])  # the augmentations draw from torch's global generator
        start, elapsed = int(state["epoch"]), float(state["elapsed_s"])
        logger.info("resuming after epoch %d of %d (%s)", start, cfg.epochs, state_dir)
    loader = DataLoader(
        train_ds, batch_size=cfg.batch_size, shuffle=True, drop_last=True, num_workers=cfg.num_workers,
        generator=generator, persistent_workers=False,
    )  # fmt: skip
    for epoch in range(start, cfg.epochs):
        model.train()
        began = time.monotonic()
        bar = tqdm(loader, desc=f"tower epoch {epoch + 1}/{cfg.epochs}", unit="batch")
        for images, masks in bar:
            pixels, labels = policy_view(images, masks, size)
            loss = loss_fn(model(pixels), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
        scheduler.step()
        elapsed += time.monotonic() - began
        state = {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "generator": generator.get_state(), "torch_rng": torch.get_rng_state(), "epoch": epoch + 1,
            "elapsed_s": elapsed, "settings": settings,
        }  # fmt: skip
        save_state(state_dir, state)
    scores = {name: tower_miou(model, ds, size, cfg.batch_size) for name, ds in tests.items()}
    for name, summary in scores.items():
        logger.info("tower mIoU over classes 1-5 on %s: %.3f (cube %.3f)", name, summary["miou"],
                    summary["per_class_iou"]["cube"])  # fmt: skip
    parameters = sum(p.numel() for p in model.tower.parameters())
    record = {
        "vlm_path": str(cfg.vlm_path), "data": str(cfg.data.path), "epochs": cfg.epochs, "train_time_s": elapsed,
        "frames": len(train_ds), "image_size": size, "tower_parameters": parameters, "test": scores,
    }  # fmt: skip
    write_output(cfg, vlm, record, settings)
    shutil.rmtree(state_dir, ignore_errors=True)
    return record


def write_output(cfg: TowerPretrainConfig, vlm: nn.Module, record: dict, settings: dict) -> None:
    """The SmolVLM folder, its metrics and the record of a finished run, swapped in whole: a folder at output_dir is
    always a finished run."""
    staging = staging_folder(cfg.output_dir)
    (vlm if saved_with_head(cfg.vlm_path) else vlm.model).save_pretrained(staging)
    for extra in Path(cfg.vlm_path).iterdir():  # tokenizer and processor files: the folder loads as the input did
        if extra.is_file() and not (staging / extra.name).exists():
            shutil.copy2(extra, staging / extra.name)
    write_json(staging / METRICS, record)
    mark_finished(staging, settings, f"{cfg.epochs} epoch{'s' * (cfg.epochs != 1)}", **record)
    replace_folder(staging, cfg.output_dir)


@parser.wrap()
def pretrain_cli(cfg: TowerPretrainConfig) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    record = pretrain(cfg)
    if record.get("already_trained"):  # finished_run said so in its one line
        return record
    print(json.dumps({k: v for k, v in record.items() if k != "test"}))
    for name, summary in record["test"].items():
        print(f"{name}: mIoU over classes 1-5 {summary['miou']:.3f}, cube {summary['per_class_iou']['cube']:.3f}")
    print(f"wrote {cfg.output_dir}: --policy.vlm_model_name={cfg.output_dir} --policy.load_vlm_weights=true")
    return record


def main() -> None:
    prepare_command_line()
    pretrain_cli()


def deprecated_main() -> None:
    """`so101-seg-pretrain-tower`, the command's name while it lived in the segmenter: still runs, and says the new
    name."""
    print("so101-seg-pretrain-tower is now segvla-pretrain-tower; the old name will go", file=sys.stderr)
    prepare_command_line()
    pretrain_cli()


if __name__ == "__main__":
    main()
