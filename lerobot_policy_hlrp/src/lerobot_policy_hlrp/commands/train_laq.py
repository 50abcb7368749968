"""hlrp-train-laq: HLRP stage 1, LAQ latent actions learned from frame pairs (t, t+k) of a LeRobotDataset camera.

    hlrp-train-laq --config_path=configs/hlrp_laq_twin.yaml [--steps=... --output_dir=... --model.codebook_size=...]
    hlrp-train-laq --config_path=configs/hlrp_laq_twin_seg.yaml   # --loss_weighting=segmentation
    hlrp-train-laq --config_path=... --resume=true            # continues from output_dir/checkpoints/last
    hlrp-train-laq --config_path=... --steps=3000 --resume=true   # trains a finished run further
    torchrun --nproc_per_node=8 -m lerobot_policy_hlrp.commands.train_laq --config_path=configs/hlrp_laq_oxe.yaml

`datasets` is a list: every entry's pairs form one corpus (each with its own camera and gap in seconds). A share of
each dataset's episodes is held out; the result is output_dir/laq (LAQ.save_pretrained, what stage 2's --laq_path
takes) and output_dir/metrics.json (held-out plain reconstruction MSE against the copy-frame-t baseline,
perplexity, codes used, and where class maps exist the MSE per class and weighted as segmentation.class_weights
say). Reconstructions (frame t | frame t+k | reconstruction, one pair a row, under a title and the column names)
go to output_dir/images/.
`--loss_weighting=segmentation` weights the reconstruction loss per pixel by its class (so101_core's 6-class map),
from each dataset's ground-truth segmentation or from so101_segmenter's model on the RGB frames.

This file reads as one run goes: the set-up (data, model, optimizer, a resumed state), the loop (`train` and the
steps it calls), checkpoints, the end (last grid, metrics.json), the command. The configuration is in
`laq_config.py`, the held-out metrics and grids in `laq_evaluation.py`, the Hub push in `laq_publish.py`.
"""

import dataclasses
import json
import logging
import random
import time
from pathlib import Path

import draccus
import numpy as np
import torch
from lerobot.configs import parser
from torch.utils.data import ConcatDataset, Dataset
from tqdm import tqdm

from so101_run_infra.atomic import staging_path, write_json
from so101_run_infra.checkpoints import checkpoint_staging, publish_checkpoint
from so101_run_infra.cli import prepare_command_line
from so101_run_infra.resume_state import load_state, refuse_pickled, save_state
from so101_run_infra.rng import capture_rng, restore_rng
from so101_run_infra.runs import (
    check_resume_config,
    claim_run_dir,
    claim_training_dir,
    finished_run,
    mark_finished,
    without_fields,
)

from ..laq import LAQ, laq_checkpoint_hash, segmentation_pixel_weights
from ..pretrain.frame_pairs import FramePairs, info_file
from ..pretrain.laq_config import LAQTrainConfig
from ..pretrain.laq_evaluation import evaluate, grid_title, spread, write_grid
from ..pretrain.laq_publish import push_laq
from ..pretrain.processes import make_accelerator, quiet_unless_main

logger = logging.getLogger("hlrp-train-laq")
LAQ_DIR = "laq"
STATE_DIR = "training_state"  # so101_run_infra.resume_state folders: optimizer, scheduler, step; rng_<rank>: generators
CONFIG_FILE = "train_config.json"
# Fields that shape neither the LAQ nor the run's files: where the run goes, how fast it goes, where it is pushed.
NOT_SETTINGS = ("output_dir", "resume", "num_workers", "torch_threads", "laq")


# ----- set-up: the run folder, the generators, the data, the optimizer, a resumed state -------------------------------
def check_resume(cfg: LAQTrainConfig) -> dict:
    """The saved record of the checkpoint to continue; refuses one trained with other model fields."""
    last = cfg.output_dir / "checkpoints" / "last"
    refuse_pickled(last, f"{STATE_DIR}.pt", "rng_*.pt")  # what 0.2.0 and before wrote
    saved = json.loads((last / CONFIG_FILE).read_text()) if (last / CONFIG_FILE).is_file() else None
    if saved is not None:
        check_resume_config(resumed_fields(saved), resumed_fields(config_record(cfg, [])), last.resolve(),
                            "model/loss_weighting")  # fmt: skip
    claim_run_dir(cfg.output_dir, resume=True, checkpoint=last / STATE_DIR)  # refuses a run with no checkpoint
    if isinstance(saved["split"], dict):  # one dataset, written before `datasets` was a list
        saved["split"] = [{"dataset": cfg.datasets[0].repo_id, **saved["split"]}]
    return saved


def claim_new_run(cfg: LAQTrainConfig) -> None:
    """Before a new run: refuse an output folder in use, naming what it holds (so101_run_infra.runs). None: a new
    run continues no saved record (what `check_resume` returns for a resumed one)."""
    out = cfg.output_dir
    # the last checkpoint's record holds the settings of the run's latest start (a resumed run may change its steps)
    found = [f for f in (out / "checkpoints" / "last" / CONFIG_FILE, out / CONFIG_FILE) if f.is_file()]
    record = json.loads(found[0].read_text()) if found else None
    now = run_settings(cfg)
    claim_training_dir(
        out, False, out / "checkpoints" / "last" / STATE_DIR, "hlrp-train-laq",
        shape_saved=resumed_fields(record) if record else None, shape_now=resumed_fields(config_record(cfg, [])),
        saved=without_fields(record["config"], NOT_SETTINGS) if record else None, now=now, settings=now,
    )  # fmt: skip


def resumed_fields(record: dict) -> dict:
    """What a resumed run must share with the train_config.json `record` of the run it continues: the LAQ and its
    loss; the rest (steps, learning rate, ...) a resumed run may change."""
    return {"model": record["model"], "loss_weighting": record.get("loss_weighting", "none")}


def run_settings(cfg: LAQTrainConfig) -> dict:
    """What a finished run is known again by: every field but NOT_SETTINGS."""
    return without_fields(draccus.encode(cfg), NOT_SETTINGS)


def seed_rank(cfg: LAQTrainConfig, rank: int) -> None:
    # every rank its own stream (NSVQ noise, replacement noise); batches come from StepBatches' own generators
    seed = cfg.seed + rank
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


def load_pairs(cfg: LAQTrainConfig, saved: dict | None) -> tuple[list[dict], Dataset, Dataset]:
    """The episode split of every dataset (the saved one when resuming: held-out episodes stay held out), and the
    training and held-out frame pairs of the corpus. Every data check (camera, gap against fps and episode lengths,
    class source, frame sizes, split) happens here, dataset by dataset, before any step."""
    from ..pretrain.frame_pairs import check_whole_gap

    segmenter, size = load_segmenter_for(cfg)
    # every entry's metadata first (camera, gap, class source): a bad last entry fails before any frame is read
    metas = [d.metadata() for d in cfg.datasets]
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
        source = d.open(episodes=d.episodes, video_backend=d.video_backend)
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


def load_segmenter_for(cfg: LAQTrainConfig):
    """so101_segmenter's model and the size it was trained at, when one is given (None, None otherwise)."""
    if not cfg.segmentation.segmenter_path:
        return None, None
    from so101_core import NUM_SEGMENTATION_CLASSES
    from so101_segmenter.infer import trained_size
    from so101_segmenter.model import load_segmenter

    path = cfg.segmentation.segmenter_path
    return load_segmenter(path, num_classes=NUM_SEGMENTATION_CLASSES), trained_size(path)


def class_source(cfg: LAQTrainConfig, meta, camera_key: str, segmenter) -> str | None:
    """Where a dataset's class maps come from ("ground_truth", "segmenter") or None when it gives none. With
    segmentation weighting, a dataset that has neither is refused here, before any step."""
    from ..pretrain.frame_pairs import FramePairs

    key = f"{FramePairs._check_camera(meta, camera_key, meta.repo_id)}_segmentation"
    has_truth = key in meta.features
    source = cfg.segmentation.perception_record
    if source.only_ground_truth or (source.ground_truth and has_truth):
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


def split_episodes(episodes: list[int], share: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, held out): round(share * n) episodes drawn with `seed`, at least one when share > 0, never all."""
    n = len(episodes)
    n_out = 0 if share <= 0 or n < 2 else min(n - 1, max(1, round(share * n)))
    perm = np.random.default_rng(seed).permutation(np.asarray(episodes))
    return sorted(int(e) for e in perm[n_out:]), sorted(int(e) for e in perm[:n_out])


def _short(episodes: list[int]) -> str:
    return str(episodes) if len(episodes) <= 8 else f"{episodes[:8]}... ({len(episodes)})"


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


# ----- the loop, and the steps it calls -------------------------------------------------------------------------------
def start_model(cfg: LAQTrainConfig, accelerator, split: list[dict]) -> tuple:
    """The LAQ, its optimizer and schedule, fresh (the run's config recorded) or restored from the run resumed,
    prepared by `accelerator`; and the step they start at."""
    model = LAQ(cfg.model)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr)
    scheduler = make_scheduler(cfg, optimizer)
    step = 0
    if cfg.resume:
        step = restore_checkpoint(cfg, model, optimizer, scheduler, accelerator.process_index)
    elif accelerator.is_main_process:
        write_json(cfg.output_dir / CONFIG_FILE, config_record(cfg, split))
    n_params = sum(p.numel() for p in model.parameters())
    logger.info("LAQ: %.2fM parameters, codebook %d x %d, %d code(s) per pair, image %d, patch %d",
                n_params / 1e6, cfg.model.codebook_size, cfg.model.quant_dim, cfg.model.code_seq_len,
                cfg.model.image_size, cfg.model.patch_size)  # fmt: skip
    model, optimizer = accelerator.prepare(model, optimizer)
    return model, optimizer, scheduler, step


def train(cfg: LAQTrainConfig) -> dict:
    out = cfg.output_dir
    if (done := finished_run(out, lambda: run_settings(cfg))) is not None:
        return {**done["result"], "history": [], "already_trained": True}
    saved = check_resume(cfg) if cfg.resume else claim_new_run(cfg)

    accelerator = make_accelerator(cfg.mixed_precision)
    quiet_unless_main(accelerator, logger)
    device = accelerator.device
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    seed_rank(cfg, accelerator.process_index)
    split, train_pairs, eval_pairs = load_pairs(cfg, saved)
    class_weights = cfg.segmentation.weight_table().to(device) if cfg.loss_weighting == "segmentation" else None

    model, optimizer, scheduler, step = start_model(cfg, accelerator, split)
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


def window_row(cfg: LAQTrainConfig, window: list[dict], step: int, plain: LAQ, scheduler, wall: float, world: int):
    """The mean training figures of the steps since the last row."""
    row = {k: float(np.mean([w[k] for w in window])) for k in ("loss", "recon_mse", "perplexity", "used_codes")}
    row.update(
        step=step, replaced=int(sum(w["replaced"] for w in window)),
        codes_since_replacement=plain.codes_used_since_replacement(),
        lr=scheduler.get_last_lr()[0], pairs_per_s=len(window) * cfg.batch_size * world / wall,
    )  # fmt: skip
    return row


# ----- checkpoints ----------------------------------------------------------------------------------------------------
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


# ----- the end: the last grid, output_dir/laq and metrics.json --------------------------------------------------------
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
    mark_finished(out, run_settings(cfg), f"{step} steps", step=step, laq=str(out / LAQ_DIR))
    return metrics


# ----- the command ----------------------------------------------------------------------------------------------------
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


def main() -> None:
    prepare_command_line()
    run()


if __name__ == "__main__":
    main()
