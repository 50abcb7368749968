"""hlrp-train-laq: HLRP stage 1, LAQ latent actions learned from frame pairs (t, t+k) of a LeRobotDataset camera.

    hlrp-train-laq --config_path=configs/hlrp_laq_twin.yaml [--steps=... --output_dir=... --model.codebook_size=...]
    hlrp-train-laq --config_path=configs/hlrp_laq_twin_seg.yaml   # --loss_weighting=segmentation
    hlrp-train-laq --config_path=... --resume=true            # continues from output_dir/checkpoints/last
    torchrun --nproc_per_node=8 -m lerobot_policy_hlrp.train_laq --config_path=configs/hlrp_laq_oxe.yaml

`datasets` is a list: every entry's pairs form one corpus (each with its own camera and gap in seconds). A share of
each dataset's episodes is held out; the result is output_dir/laq (LAQ.save_pretrained, what stage 2's --laq_path
takes) and output_dir/metrics.json (held-out plain reconstruction MSE against the copy-frame-t baseline,
perplexity, codes used, and where class maps exist the MSE per class and weighted as segmentation.class_weights
say). Reconstructions (frame t | frame t+k | reconstruction, one pair a row, under a title and the column names)
go to output_dir/images/.
`--loss_weighting=segmentation` weights the reconstruction loss per pixel by its class (so101_core's 6-class map),
from each dataset's ground-truth segmentation or from so101_segmenter's model on the RGB frames.
"""

import dataclasses
import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import draccus
import numpy as np
import torch
from lerobot.configs import parser
from torch.utils.data import ConcatDataset, Dataset
from tqdm import tqdm

from so101_core.atomic import staging_path, write_json, write_with
from so101_core.checkpoints import checkpoint_staging, publish_checkpoint
from so101_core.cli import prepare_command_line
from so101_core.hub import HubPushConfig, model_card, push_folder
from so101_core.resume_state import load_state, refuse_pickled, save_state
from so101_core.rng import capture_rng, restore_rng
from so101_core.runs import check_resume_config, claim_run_dir

from .frame_pairs import FramePairs, info_file
from .laq import LAQ, LAQConfig, laq_checkpoint_hash, segmentation_pixel_weights, weighted_mse
from .processes import make_accelerator, quiet_unless_main

logger = logging.getLogger("hlrp-train-laq")
LAQ_DIR = "laq"
STATE_DIR = "training_state"  # so101_core.resume_state folders: optimizer, scheduler, step; rng_<rank>: generators
CONFIG_FILE = "train_config.json"


@dataclass
class PairDataConfig:
    repo_id: str = "local/twin_data"
    root: str | None = None  # a local dataset folder; None: the Hub (or LeRobot's cache) by repo_id
    camera_key: str = "observation.images.front"
    gap_s: float = 0.3  # t -> t+k in seconds; k = round(gap_s * fps), at least 1
    episodes: list[int] | None = None  # use only these episodes (None: all)
    holdout_share: float = 0.1  # share of the episodes held out for metrics.json (at least 1 when > 0)
    video_backend: str | None = None  # LeRobot's decoder (None: its default, torchcodec where available)
    cache_frames: bool = False  # decode the camera once into memory (uint8): for small datasets such as the twin's


LOSS_WEIGHTINGS = ("none", "segmentation")
CLASS_SOURCES = ("auto", "ground_truth", "segmenter")


def default_class_weights() -> dict[str, float]:
    # so101_core's 6-class map. The twin labels the gripper's two fingers, the cube and the table; the arm's other
    # links fall in "background" with the walls, as in the real segmenter's map, so the fingers stand for the arm
    return {
        "unlabeled": 0.1, "background": 0.1, "table": 0.1, "cube": 1.0, "static_finger": 1.0, "moving_finger": 1.0,
    }  # fmt: skip


@dataclass
class SegmentationWeightingConfig:
    # where each pixel's class comes from: "ground_truth" (the dataset's <camera>_segmentation key, recorded with
    # --robot.segmentation=true), "segmenter" (so101_segmenter's model on the RGB frames), "auto" (ground truth
    # where a dataset has it, else the segmenter)
    source: str = "auto"
    segmenter_path: str | None = None  # a so101-seg-train checkpoint folder (config.json + model.safetensors)
    # weight of each class in the reconstruction loss (a weighted mean: only the ratios matter); every class of the
    # 6-class map must be given
    class_weights: dict[str, float] = field(default_factory=default_class_weights)

    def weight_table(self) -> torch.Tensor:
        from so101_core import SEGMENTATION_CLASSES

        names = list(SEGMENTATION_CLASSES.values())
        missing, unknown = sorted(set(names) - set(self.class_weights)), sorted(set(self.class_weights) - set(names))
        if missing or unknown:
            raise ValueError(
                f"--segmentation.class_weights must give every class of {names}: missing {missing}, unknown {unknown}"
            )
        table = torch.tensor([float(self.class_weights[n]) for n in names])
        if (table < 0).any() or table.sum() <= 0:
            raise ValueError(f"--segmentation.class_weights must be >= 0 and not all 0, got {self.class_weights}")
        return table


@dataclass
class LAQTrainConfig:
    # the corpus: every entry's frame pairs, as one training set (frames must share one size)
    datasets: list[PairDataConfig] = field(default_factory=lambda: [PairDataConfig()])
    model: LAQConfig = field(default_factory=LAQConfig)
    # "none": the plain reconstruction MSE; "segmentation": weighted per pixel by class (segmentation.*)
    loss_weighting: str = "none"
    segmentation: SegmentationWeightingConfig = field(default_factory=SegmentationWeightingConfig)
    steps: int = 100_000
    batch_size: int = 32  # per process
    lr: float = 1e-4
    weight_decay: float = 0.01  # not on the codebook, norms, biases and position embeddings
    warmup_steps: int = 1000  # linear warm-up, then cosine decay to min_lr_ratio * lr at `steps`
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0  # 0: off
    num_workers: int = 4
    seed: int = 1000
    log_freq: int = 50
    save_freq: int = 5000
    image_freq: int = 1000  # 0: only at the end
    image_pairs: int = 8  # rows of each reconstruction grid
    keep_checkpoints: int = 2  # numbered checkpoints kept (the newest ones)
    eval_max_pairs: int | None = 2048  # held-out pairs in metrics.json, evenly spread (None: all)
    mixed_precision: str = "no"  # accelerate's: "no", "bf16", "fp16"
    torch_threads: int | None = None
    output_dir: Path = Path("outputs/hlrp/laq")
    resume: bool = False
    # push output_dir/laq with a model card when training ends: --laq.push_to_hub=true --laq.repo_id=USER/NAME
    laq: HubPushConfig = field(default_factory=HubPushConfig)

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.log_freq < 1 or self.save_freq < 1:
            raise ValueError("steps, batch_size, log_freq and save_freq must be >= 1")
        if not self.datasets:
            raise ValueError("--datasets is empty: give at least one dataset")
        for i, d in enumerate(self.datasets):
            if not 0 <= d.holdout_share < 1:
                raise ValueError(f"--datasets[{i}].holdout_share must be in [0, 1), got {d.holdout_share}")
        if self.loss_weighting not in LOSS_WEIGHTINGS:
            raise ValueError(f"--loss_weighting={self.loss_weighting!r}; choose one of {list(LOSS_WEIGHTINGS)}")
        if self.segmentation.source not in CLASS_SOURCES:
            raise ValueError(f"--segmentation.source={self.segmentation.source!r}; choose one of {list(CLASS_SOURCES)}")
        if self.segmentation.source == "segmenter" and not self.segmentation.segmenter_path:
            raise ValueError("--segmentation.source=segmenter needs --segmentation.segmenter_path")
        self.segmentation.weight_table()  # every class given
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"--mixed_precision must be no, bf16 or fp16, got {self.mixed_precision!r}")
        self.laq.check("laq")


# ----- data -----------------------------------------------------------------------------------------------------
def split_episodes(episodes: list[int], share: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held out): round(share * n) episodes drawn with `seed`, at least one when share > 0, never all."""
    n = len(episodes)
    n_out = 0 if share <= 0 or n < 2 else min(n - 1, max(1, round(share * n)))
    perm = np.random.default_rng(seed).permutation(np.asarray(episodes))
    return sorted(int(e) for e in perm[n_out:]), sorted(int(e) for e in perm[:n_out])


class StepBatches(torch.utils.data.Sampler):
    """Batch indices for steps [start, stop): each epoch is a permutation fixed by (seed, epoch) and cut into global
    batches of batch_size x world; this rank takes its slice. A resumed run thus draws exactly the batches an
    uninterrupted one would, with one long-lived DataLoader (no worker restarts at epoch ends)."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int, stop: int, world: int = 1, rank: int = 0):
        self.n, self.bs, self.seed, self.start, self.stop, self.world, self.rank = (
            n, batch_size, seed, start, stop, world, rank,
        )  # fmt: skip
        self.per_epoch = n // (batch_size * world)
        if self.per_epoch == 0:
            raise ValueError(f"{n} training pairs are fewer than one global batch ({batch_size} x {world} processes)")

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def __iter__(self):
        perm, perm_epoch = None, -1
        for step in range(self.start, self.stop):
            epoch, b = divmod(step, self.per_epoch)
            if epoch != perm_epoch:
                perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
                perm_epoch = epoch
            lo = (b * self.world + self.rank) * self.bs
            yield perm[lo : lo + self.bs]


# ----- checkpoints ----------------------------------------------------------------------------------------------
def config_record(cfg: LAQTrainConfig, split: list[dict]) -> dict:
    return {
        "model": dataclasses.asdict(cfg.model),
        "loss_weighting": cfg.loss_weighting,
        "split": split,
        "config": json.loads(json.dumps(draccus.encode(cfg), default=str)),
    }


def save_checkpoint(
    cfg: LAQTrainConfig, accelerator, model: LAQ, optimizer, scheduler, step: int, split: list[dict]
) -> Path:
    """checkpoints/<step>/{laq/, training_state/, rng_<rank>/, train_config.json} in a staging folder, swapped
    in, then `last` re-pointed at it: an interrupted save leaves the previous checkpoint as it was."""
    final = cfg.output_dir / "checkpoints" / f"{step:06d}"
    tmp = staging_path(final)
    if accelerator.is_main_process:
        checkpoint_staging(final)
        model.save_pretrained(tmp / LAQ_DIR)
        save_state(tmp / STATE_DIR, {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                                     "step": step})  # fmt: skip
        (tmp / CONFIG_FILE).write_text(json.dumps(config_record(cfg, split), indent=2))
    accelerator.wait_for_everyone()
    save_state(tmp / f"rng_{accelerator.process_index}", capture_rng())  # every rank draws its own NSVQ noise
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        publish_checkpoint(tmp, final, cfg.keep_checkpoints)
    accelerator.wait_for_everyone()
    return final


def check_resume(cfg: LAQTrainConfig) -> dict:
    """The saved record of the checkpoint to continue; refuses one trained with other model fields."""
    last = cfg.output_dir / "checkpoints" / "last"
    refuse_pickled(last, f"{STATE_DIR}.pt", "rng_*.pt")  # what earlier releases wrote
    claim_run_dir(cfg.output_dir, resume=True, checkpoint=last / STATE_DIR)
    saved = json.loads((last / CONFIG_FILE).read_text())
    before = {"model": saved["model"], "loss_weighting": saved.get("loss_weighting", "none")}
    now = {"model": dataclasses.asdict(cfg.model), "loss_weighting": cfg.loss_weighting}
    check_resume_config(before, now, last.resolve(), "model/loss_weighting")
    if isinstance(saved["split"], dict):  # one dataset, written before `datasets` was a list
        saved["split"] = [{"dataset": cfg.datasets[0].repo_id, **saved["split"]}]
    return saved


# ----- evaluation and images ------------------------------------------------------------------------------------
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


# ----- the loop -------------------------------------------------------------------------------------------------
def param_groups(model: LAQ, weight_decay: float) -> list[dict]:
    # decay only the weight matrices: decaying the codebook would pull unused codes to 0, and norms/positions/biases
    # have no scale to control
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_matrix = p.ndim >= 2 and not name.startswith("vq.") and not name.endswith(("_pos", "_emb", "_queries"))
        (decay if is_matrix else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_scheduler(cfg: LAQTrainConfig, optimizer: torch.optim.Optimizer):
    """Linear warm-up from lr / warmup_steps, then cosine decay to min_lr_ratio * lr at `steps` (transformers'
    cosine_warmup_with_min_lr)."""
    from transformers import get_scheduler

    return get_scheduler(
        "cosine_warmup_with_min_lr",
        optimizer,
        num_warmup_steps=cfg.warmup_steps,
        num_training_steps=cfg.steps,
        scheduler_specific_kwargs={"min_lr_rate": cfg.min_lr_ratio},
    )


def seed_rank(cfg: LAQTrainConfig, rank: int) -> None:
    # every rank its own stream (NSVQ noise, replacement noise); batches come from StepBatches' own generators
    seed = cfg.seed + rank
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def class_source(cfg: LAQTrainConfig, meta, camera_key: str, segmenter) -> str | None:
    """Where a dataset's class maps come from ("ground_truth", "segmenter") or None when it gives none. With
    segmentation weighting, a dataset that has neither is refused here, before any step."""
    from .frame_pairs import FramePairs

    key = f"{FramePairs._check_camera(meta, camera_key, meta.repo_id)}_segmentation"
    has_truth = key in meta.features
    source = cfg.segmentation.source
    if source == "ground_truth" or (source == "auto" and has_truth):
        if not has_truth and cfg.loss_weighting == "segmentation":
            FramePairs._check_classes(meta, key.removesuffix("_segmentation"), "ground_truth", None, meta.repo_id)
        return "ground_truth" if has_truth else None
    if segmenter is not None:
        return "segmenter"
    if cfg.loss_weighting == "segmentation":
        raise ValueError(
            f"--loss_weighting=segmentation: dataset '{meta.repo_id}' ({info_file(meta)}) has no ground-truth "
            f"segmentation '{key}' and no segmenter is given (--segmentation.segmenter_path is "
            f"{cfg.segmentation.segmenter_path}); record with --robot.segmentation=true or give a so101-seg-train "
            "checkpoint"
        )
    return None


def load_segmenter_for(cfg: LAQTrainConfig):
    """so101_segmenter's model and the size it was trained at, when one is given (None, None otherwise)."""
    if not cfg.segmentation.segmenter_path:
        return None, None
    from so101_core import NUM_SEGMENTATION_CLASSES
    from so101_segmenter.infer import trained_size
    from so101_segmenter.model import load_segmenter

    path = cfg.segmentation.segmenter_path
    return load_segmenter(path, num_classes=NUM_SEGMENTATION_CLASSES), trained_size(path)


def load_pairs(cfg: LAQTrainConfig, saved: dict | None) -> tuple[list[dict], Dataset, Dataset]:
    """The episode split of every dataset (the saved one when resuming: held-out episodes stay held out), and the
    training and held-out frame pairs of the corpus. Every data check (camera, gap against fps and episode lengths,
    class source, frame sizes, split) happens here, dataset by dataset, before any step."""
    from lerobot.datasets import LeRobotDataset, LeRobotDatasetMetadata

    from .frame_pairs import check_whole_gap

    segmenter, size = load_segmenter_for(cfg)
    # every entry's metadata first (camera, gap, class source): a bad last entry fails before any frame is read
    metas = [LeRobotDatasetMetadata(d.repo_id, root=d.root) for d in cfg.datasets]
    sources, shapes = [], {}
    for d, meta in zip(cfg.datasets, metas, strict=True):
        key = FramePairs._check_camera(meta, d.camera_key, meta.repo_id)
        check_whole_gap(meta, d.gap_s)
        sources.append(class_source(cfg, meta, d.camera_key, segmenter))
        shapes[f"{d.repo_id} ({key})"] = tuple(meta.features[key]["shape"])
    if len(set(shapes.values())) > 1:
        raise ValueError(f"the corpus's frames differ in size, so they cannot share batches: {shapes}")
    split, train_parts, eval_parts = [], [], []
    for i, (d, meta, classes) in enumerate(zip(cfg.datasets, metas, sources, strict=True)):
        episodes = list(range(meta.total_episodes)) if d.episodes is None else list(d.episodes)
        if saved is not None:
            part = saved["split"][i]
        else:
            train_eps, heldout_eps = split_episodes(episodes, d.holdout_share, cfg.seed + i)
            part = {"dataset": d.repo_id, "train": train_eps, "heldout": heldout_eps}
        split.append(part)
        source = LeRobotDataset(d.repo_id, root=d.root, episodes=d.episodes, video_backend=d.video_backend)
        pair_args = dict(
            video_backend=d.video_backend, cache_frames=d.cache_frames, segmenter=segmenter, segmenter_size=size
        )
        train_classes = classes if cfg.loss_weighting == "segmentation" else None
        train_parts.append(FramePairs(source, d.camera_key, d.gap_s, episodes=part["train"], classes=train_classes,
                                      **pair_args))  # fmt: skip
        eval_parts.append(FramePairs(source, d.camera_key, d.gap_s, episodes=part["heldout"] or part["train"],
                                     classes=classes, **pair_args))  # fmt: skip
        logger.info(
            "stage 1: %s %s, gap %.3g s = %d frames at %g fps; %d training pairs (episodes %s), %d held-out pairs "
            "(%s); classes: %s", d.repo_id, train_parts[-1].camera_key, d.gap_s, train_parts[-1].gap,
            train_parts[-1].fps, len(train_parts[-1]), _short(part["train"]),
            len(eval_parts[-1]) if part["heldout"] else 0, _short(part["heldout"]), classes,
        )  # fmt: skip
    return split, ConcatDataset(train_parts), ConcatDataset(eval_parts)


def restore_checkpoint(cfg: LAQTrainConfig, model: LAQ, optimizer, scheduler, rank: int) -> int:
    """Load checkpoints/last into the model, optimizer, scheduler and this rank's generators; the step it was at."""
    from safetensors.torch import load_file

    last = cfg.output_dir / "checkpoints" / "last"
    model.load_state_dict(load_file(str(last / LAQ_DIR / "model.safetensors")), strict=True)
    state = load_state(last / STATE_DIR)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    rng_dir = last / f"rng_{rank}"
    if rng_dir.is_dir():  # absent for a rank the saved run did not have
        restore_rng(load_state(rng_dir))
    logger.info("resuming %s at step %d", cfg.output_dir, int(state["step"]))
    return int(state["step"])


def window_row(cfg: LAQTrainConfig, window: list[dict], step: int, plain: LAQ, scheduler, wall: float, world: int):
    """The mean training figures of the steps since the last row."""
    row = {k: float(np.mean([w[k] for w in window])) for k in ("loss", "recon_mse", "perplexity", "used_codes")}
    row.update(
        step=step, replaced=int(sum(w["replaced"] for w in window)),
        codes_since_replacement=plain.codes_used_since_replacement(),
        lr=scheduler.get_last_lr()[0], pairs_per_s=len(window) * cfg.batch_size * world / wall,
    )  # fmt: skip
    return row


def train_step(model, accelerator, optimizer, scheduler, batch: dict, grad_clip: float, class_weights=None):
    """One optimisation step on a batch of pairs (with class maps and `class_weights`: the segmentation-weighted
    reconstruction loss); the model's output."""
    device = accelerator.device
    pair = batch["pair"].to(device, non_blocking=True)
    weights = None
    if class_weights is not None:
        size = accelerator.unwrap_model(model).config.image_size
        weights = segmentation_pixel_weights(batch["classes"].to(device), class_weights, size)
    with accelerator.autocast():
        result = model(pair, weights)
    optimizer.zero_grad(set_to_none=True)
    accelerator.backward(result.loss)
    if grad_clip:
        accelerator.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    scheduler.step()
    return result


def finish(cfg: LAQTrainConfig, plain: LAQ, eval_pairs, image_ids, split, step, gap, history) -> dict:
    """The last reconstruction grid, output_dir/laq and the held-out metrics.json (main process only)."""
    out, device = cfg.output_dir, next(plain.parameters()).device
    if not (out / "images" / f"step_{step:06d}.png").exists():
        title = grid_title(cfg, step, split)
        write_grid(plain, eval_pairs, image_ids, out / "images" / f"step_{step:06d}.png", device, title)
    plain.save_pretrained(out / LAQ_DIR)
    table = cfg.segmentation.weight_table()
    metrics = evaluate(plain, eval_pairs, spread(len(eval_pairs), cfg.eval_max_pairs), cfg.batch_size, device, table)
    metrics.update(
        split="heldout" if any(p["heldout"] for p in split) else "train (no episode held out)",
        heldout_episodes=[p["heldout"] for p in split], train_episodes=[p["train"] for p in split], step=step,
        datasets=[p["dataset"] for p in split], loss_weighting=cfg.loss_weighting,
        class_weights=cfg.segmentation.class_weights if cfg.loss_weighting == "segmentation" else None,
        gap_frames=gap, laq_sha256=laq_checkpoint_hash(out / LAQ_DIR),
        last_train_window=history[-1] if history else None,
    )  # fmt: skip
    write_json(out / "metrics.json", metrics)
    shown = ("recon_mse", "copy_baseline_mse", "recon_mse_weighted", "perplexity", "used_codes", "pairs")
    logger.info("held-out: %s", json.dumps({k: metrics[k] for k in shown if k in metrics}))
    return metrics


def train(cfg: LAQTrainConfig) -> dict:
    out = cfg.output_dir
    saved = check_resume(cfg) if cfg.resume else None
    if not cfg.resume:
        claim_run_dir(out, resume=False, checkpoint=out / "checkpoints" / "last")

    accelerator = make_accelerator(cfg.mixed_precision)
    quiet_unless_main(accelerator, logger)
    device = accelerator.device
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    seed_rank(cfg, accelerator.process_index)
    split, train_pairs, eval_pairs = load_pairs(cfg, saved)
    class_weights = cfg.segmentation.weight_table().to(device) if cfg.loss_weighting == "segmentation" else None

    model = LAQ(cfg.model)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    scheduler = make_scheduler(cfg, optimizer)
    step = 0
    if cfg.resume:
        step = restore_checkpoint(cfg, model, optimizer, scheduler, accelerator.process_index)
    elif accelerator.is_main_process:
        write_json(out / CONFIG_FILE, config_record(cfg, split))
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("LAQ: %.2fM parameters, codebook %d x %d, %d code(s) per pair, image %d, patch %d",
                n_params / 1e6, cfg.model.codebook_size, cfg.model.quant_dim, cfg.model.code_seq_len,
                cfg.model.image_size, cfg.model.patch_size)  # fmt: skip

    model, optimizer = accelerator.prepare(model, optimizer)
    plain = accelerator.unwrap_model(model)
    world, rank = accelerator.num_processes, accelerator.process_index
    sampler = StepBatches(len(train_pairs), cfg.batch_size, cfg.seed, step, cfg.steps, world, rank)
    loader = torch.utils.data.DataLoader(
        train_pairs, batch_sampler=sampler, num_workers=cfg.num_workers, pin_memory=device.type == "cuda",
        persistent_workers=False,
    )  # fmt: skip
    image_ids = spread(len(eval_pairs), cfg.image_pairs)

    history: list[dict] = []
    window: list[dict] = []
    bar = tqdm(total=cfg.steps, initial=step, desc="LAQ", disable=not accelerator.is_main_process)
    model.train()
    t_window = time.perf_counter()
    for batch in loader:
        result = train_step(model, accelerator, optimizer, scheduler, batch, cfg.grad_clip, class_weights)
        step += 1
        bar.update(1)
        window.append({
            "loss": result.loss.item(), "recon_mse": result.recon_loss.item(),
            "perplexity": result.perplexity.item(), "used_codes": result.used_codes,
            "replaced": plain.vq.last_replaced,
        })  # fmt: skip
        plain.vq.last_replaced = 0
        if step % cfg.log_freq == 0 or step == cfg.steps:
            row = window_row(cfg, window, step, plain, scheduler, time.perf_counter() - t_window, world)
            history.append(row)
            bar.set_postfix(
                mse=f"{row['recon_mse']:.4g}", ppl=f"{row['perplexity']:.3g}",
                codes=row["codes_since_replacement"], pairs_s=f"{row['pairs_per_s']:.3g}",
            )  # fmt: skip
            logger.info("step %d %s", step, json.dumps({k: round(v, 6) for k, v in row.items() if k != "step"}))
            if accelerator.is_main_process:
                with (out / "history.jsonl").open("a") as f:
                    f.write(json.dumps(row) + "\n")
            window, t_window = [], time.perf_counter()
        if accelerator.is_main_process and cfg.image_freq and step % cfg.image_freq == 0:
            title = grid_title(cfg, step, split)
            write_grid(plain, eval_pairs, image_ids, out / "images" / f"step_{step:06d}.png", device, title)
        if step % cfg.save_freq == 0 or step == cfg.steps:
            save_checkpoint(cfg, accelerator, plain, optimizer, scheduler, step, split)
    bar.close()

    result = {"step": step, "history": history}
    if accelerator.is_main_process:
        gaps = [p.gap for p in train_pairs.datasets]
        result["metrics"] = finish(cfg, plain, eval_pairs, image_ids, split, step, gaps, history)
    accelerator.wait_for_everyone()
    result["laq"] = str(out / LAQ_DIR)
    return result


def _short(episodes: list[int]) -> str:
    return str(episodes) if len(episodes) <= 8 else f"{episodes[:8]}... ({len(episodes)})"


@parser.wrap()
def run(cfg: LAQTrainConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # importing lerobot already put a WARNING-level handler on the root logger, which makes basicConfig a no-op
    logger.setLevel(logging.INFO)
    result = train(cfg)
    if "metrics" in result:  # the main process's: other ranks print nothing
        print(json.dumps({"metrics": result["metrics"], "laq": result["laq"]}, indent=2, default=str))
        if cfg.laq.push_to_hub:
            print(f"pushed {result['laq']} to {push_laq(cfg, result)}")


def push_laq(cfg: LAQTrainConfig, result: dict) -> str:
    """Push output_dir/laq (what stage 2's --laq_path takes) with a model card to --laq.repo_id."""
    metrics = result["metrics"]
    shown = ("recon_mse", "copy_baseline_mse", "perplexity", "used_codes", "pairs", "split", "step")
    cameras = sorted({d.camera_key for d in cfg.datasets})
    card = model_card(
        model_name=cfg.laq.repo_id,
        model_type="hlrp_laq",
        summary="HLRP stage 1: a latent action quantiser (LAQ) that encodes what changes between two frames of "
        f"{', '.join(f'`{c}`' for c in cameras)} into {cfg.model.code_seq_len} code(s) of a "
        f"{cfg.model.codebook_size}-entry codebook; hlrp-train-trunk (--laq_path) learns to predict them.",
        data=[
            f"`{d.repo_id}`{f' ({d.root})' if d.root else ''}, camera {d.camera_key}, gap {d.gap_s} s, "
            f"{d.holdout_share:.0%} of the episodes held out for the metrics"
            for d in cfg.datasets
        ],
        result={f"held-out {k}" if k in shown[:5] else k: metrics[k] for k in shown if k in metrics},
        hub=cfg.laq,
        datasets=[d.repo_id for d in cfg.datasets],
        details={
            "Steps": cfg.steps,
            "Batch size": cfg.batch_size,
            "Learning rate": cfg.lr,
            "Image size": cfg.model.image_size,
            "Loss weighting": cfg.loss_weighting,
        },
        usage=f"hf download {cfg.laq.repo_id} --local-dir laq && hlrp-train-trunk --laq_path=laq ...",
    )
    return push_folder(result["laq"], cfg.laq, card, "Upload the LAQ (HLRP stage 1) and readme")


def main() -> None:
    prepare_command_line({"--log_every": "--log_freq", "--save_every": "--save_freq", "--image_every": "--image_freq"})
    run()


if __name__ == "__main__":
    main()
