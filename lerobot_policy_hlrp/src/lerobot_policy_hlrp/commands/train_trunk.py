"""hlrp-train-trunk: HLRP stage 2, the SmolVLM2 shared trunk with its latent-flow and action heads.

    hlrp-train-trunk --config_path=configs/hlrp_trunk_twin.yaml [--steps=... --output_dir=...]
    hlrp-train-trunk --config_path=... --resume=true                # continues from output_dir/checkpoints/last
    hlrp-train-trunk --config_path=... --steps=20000 --resume=true  # trains a finished run further
    torchrun --nproc_per_node=4 -m lerobot_policy_hlrp.commands.train_trunk --config_path=...   # several processes

Supervision is online: every batch's LAQ frame pair goes through the frozen stage-1 LAQ as it is trained on, so
there is no relabelled copy of the data. Modes: `codes` (cross-entropy on the LAQ code indices), `actions` (the
action head only), `multitask` (flow matching on the LAQ codebook vectors + the action head; the default).
`--use_actions=false` makes the corpus video only: the datasets' actions are never read, and stage 2 learns latent
actions alone (multitask without its action head, or codes); the artifact's manifest records the supervision.
The result, output_dir/artifact, is what `--policy.stage2_artifact` of the `hlrp` policy reads.
"""

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import draccus
import numpy as np
import torch
from lerobot.configs import parser
from tqdm import tqdm

from so101_run_infra.atomic import write_json
from so101_run_infra.checkpoints import checkpoint_staging, publish_checkpoint
from so101_run_infra.cli import prepare_command_line
from so101_run_infra.hub import HubPushConfig, model_card, push_folder
from so101_run_infra.resume_state import load_state, refuse_pickled, save_state
from so101_run_infra.rng import capture_rng, restore_rng
from so101_run_infra.runs import (
    claim_training_dir,
    finished_run,
    mark_finished,
    without_fields,
)

from ..artifact import save_artifact
from ..pretrain.action_adapter import ActionAdapter, ActionAdapterConfig
from ..pretrain.processes import make_accelerator, quiet_unless_main
from ..pretrain.trunk_data import TrunkDatasetConfig, trunk_dataset
from ..trunk import MODES, CoreConfig, SharedCore, load_vlm

logger = logging.getLogger("hlrp-train-trunk")
# Fields that shape neither the trunk nor the run's files: where the run goes, how fast it goes, where it is pushed.
NOT_SETTINGS = ("output_dir", "resume", "num_workers", "torch_threads", "artifact")


@dataclass
class TrunkTrainConfig:
    datasets: list[TrunkDatasetConfig] = field(default_factory=list)
    adapter: ActionAdapterConfig = field(default_factory=ActionAdapterConfig)
    # (H, W) every camera is resized to, so datasets of different frame sizes share batches; None: as recorded
    frame_size: list[int] | None = None
    laq_path: str | None = None  # stage 1's output (hlrp-train-laq's output_dir/laq); needed unless mode=actions
    core: CoreConfig = field(default_factory=CoreConfig)
    load_vlm_weights: bool = True  # False: SmolVLM's architecture with random weights (tests, benchmarks)
    mode: str = "multitask"
    # false: the corpus is video only, stage 2 never reads an action (latent actions alone: multitask trains no
    # action head, codes as ever); the artifact's manifest records it as supervision "latent_only"
    use_actions: bool = True
    latent_weight: float = 1.0
    action_weight: float = 1.0
    steps: int = 10_000
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 1e-4
    warmup_steps: int = 500
    grad_clip: float = 1.0
    num_workers: int = 4
    torch_threads: int | None = None  # None: torch's default
    seed: int = 1000
    log_freq: int = 50
    save_freq: int = 1000
    output_dir: Path = Path("outputs/hlrp/trunk")
    resume: bool = False
    # push output_dir/artifact with a model card when training ends: --artifact.push_to_hub=true
    # --artifact.repo_id=USER/NAME
    artifact: HubPushConfig = field(default_factory=HubPushConfig)

    def __post_init__(self):
        self.artifact.check("artifact")
        if self.mode not in MODES:
            raise ValueError(f"--mode={self.mode!r}; choose one of {list(MODES)}")
        if self.mode != "actions" and not self.laq_path:
            raise ValueError(f"--mode={self.mode} learns from LAQ labels: give --laq_path (stage 1's output)")
        if self.mode == "actions" and not self.use_actions:
            raise ValueError("--mode=actions with --use_actions=false leaves nothing to learn")
        if self.use_actions and self.adapter.target_dim != self.core.action_dim:  # video only: no action is adapted
            raise ValueError(
                f"the adapter's target_dim ({self.adapter.target_dim}) must equal core.action_dim "
                f"({self.core.action_dim})"
            )


def supervision(cfg: TrunkTrainConfig) -> str:
    """What stage 2 learned from, as the manifest and stage 3 report it."""
    if cfg.mode == "actions":
        return "actions_only"
    return "latent_and_actions" if cfg.mode == "multitask" and cfg.use_actions else "latent_only"


def trains_actions(cfg: TrunkTrainConfig) -> bool:
    return cfg.mode in ("actions", "multitask") and cfg.use_actions


def run_settings(cfg: TrunkTrainConfig) -> dict:
    """What a finished run is known again by: every field but NOT_SETTINGS."""
    return without_fields(draccus.encode(cfg), NOT_SETTINGS)


def model_fields(cfg: TrunkTrainConfig) -> dict:
    """What a resumed run must share with the checkpoint it continues (the rest, steps included, it may change)."""
    fields = {"core": dataclasses.asdict(cfg.core), "mode": cfg.mode, "laq_path": cfg.laq_path}
    if not cfg.use_actions:  # absent from runs written before the switch, which all read actions
        fields["use_actions"] = False
    return fields


def stage_laq(cfg: TrunkTrainConfig, device) -> tuple[torch.nn.Module | None, dict]:
    """The LAQ that labels this mode's batches (None for mode=actions) and what the artifact records of it."""
    if cfg.mode == "actions":
        return None, {}
    from ..laq import laq_checkpoint_hash, load_laq

    if cfg.mode == "codes":
        laq = load_laq(cfg.laq_path, codes=(cfg.core.code_seq_len, cfg.core.codebook_size))
    else:
        laq = load_laq(cfg.laq_path, latent_dim=cfg.core.latent_dim, code_seq_len=cfg.core.code_seq_len)
    laq = laq.to(device)
    info = {
        "folder": str(cfg.laq_path),
        "sha256": laq_checkpoint_hash(cfg.laq_path),
        "config": dataclasses.asdict(laq.config),
    }
    return laq, info


def tokenize(tokenizer, tasks: list[str], max_length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    enc = tokenizer(
        [t if t.endswith("\n") else t + "\n" for t in tasks],
        padding="max_length",
        truncation=True,
        max_length=max_length,
        return_tensors="pt",
    )
    return enc["input_ids"].to(device), enc["attention_mask"].to(device)


def losses(model, laq, batch: dict, cfg: TrunkTrainConfig, tokenizer, device) -> tuple[torch.Tensor, dict]:
    """One batch: online LAQ labels, then the core (as prepared by accelerate, so DDP syncs its gradients) on the
    targets of the mode. Returns (weighted total, log dict)."""
    t0 = time.perf_counter()
    targets: dict[str, torch.Tensor] = {}
    if laq is not None:
        indices, vectors = laq.codes_and_vectors(batch["laq_pair"].to(device))
        targets["indices" if cfg.mode == "codes" else "vectors"] = indices if cfg.mode == "codes" else vectors
    stats: dict[str, float] = {"label_s": time.perf_counter() - t0}
    if trains_actions(cfg):
        targets.update(actions=batch["actions"].to(device), action_mask=batch["action_mask"].to(device))
    images = [batch["images"][:, i].to(device) for i in range(batch["images"].shape[1])]
    tokens, token_mask = tokenize(tokenizer, list(batch["task"]), cfg.core.tokenizer_max_length, device)
    out = model(images, tokens, token_mask, **targets)
    total = sum((cfg.action_weight if k.startswith("action") else cfg.latent_weight) * v for k, v in out.items())
    stats.update({k: v.item() for k, v in out.items()}, loss=total.item())
    return total, stats


def save_checkpoint(cfg, core, optimizer, scheduler, step: int, laq_info: dict) -> Path:
    """checkpoints/<step>/{artifact, training_state/}, written into a staging folder and swapped in; then `last`."""
    final = cfg.output_dir / "checkpoints" / f"{step:08d}"
    tmp = checkpoint_staging(final)
    save_artifact(tmp / "artifact", core, mode=cfg.mode, laq=laq_info, step=step, supervision=supervision(cfg))
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step}
    save_state(
        tmp / "training_state", {**state, "rng": capture_rng()}
    )  # safetensors + JSON (so101_run_infra.resume_state)
    return publish_checkpoint(tmp, final)  # keeps this checkpoint and the one before


def claim_output_dir(cfg: TrunkTrainConfig) -> Path:
    """The checkpoint to resume from, after checking that the output folder may be used (see so101_run_infra.runs):
    a resumed run must share `model_fields` with the one it continues; a new one refuses any folder in use, naming
    what it holds."""
    last = cfg.output_dir / "checkpoints" / "last"
    if cfg.resume:
        refuse_pickled(last, "training_state.pt")  # what 0.2.0 and before wrote
    record = cfg.output_dir / "train_config.json"
    saved = json.loads(record.read_text()) if record.is_file() else None
    now = run_settings(cfg)
    claim_training_dir(
        cfg.output_dir, cfg.resume, last, "hlrp-train-trunk",
        shape_saved=saved["model"] if saved else None, shape_now=model_fields(cfg),
        saved=without_fields(saved["config"], NOT_SETTINGS) if saved else None, now=now, settings=now,
        what="core/mode/LAQ",
    )  # fmt: skip
    return last


def make_scheduler(cfg: TrunkTrainConfig, optimizer: torch.optim.Optimizer):
    """Linear warm-up from lr / warmup_steps, then constant: transformers' cosine_warmup_with_min_lr with a floor
    of 1 (its constant_with_warmup starts the warm-up at 0 instead, one step behind this trainer's schedule)."""
    from transformers import get_scheduler

    return get_scheduler(
        "cosine_warmup_with_min_lr",
        optimizer,
        num_warmup_steps=cfg.warmup_steps,
        num_training_steps=cfg.steps,
        scheduler_specific_kwargs={"min_lr_rate": 1.0},
    )


def restore_checkpoint(last: Path, core, optimizer, scheduler) -> int:
    """Load `last` into the core, optimizer, scheduler and the generators; the step it was saved at."""
    from ..artifact import load_core_weights

    load_core_weights(core, last / "artifact")
    state = load_state(last / "training_state")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if "rng" in state:
        restore_rng(state["rng"])
    else:  # written before so101_run_infra.rng
        restore_rng({"torch": state["torch_rng"], "numpy": state["numpy_rng"]})
    return state["step"]


def epoch_batches(cfg: TrunkTrainConfig, data, accelerator, step: int, per_epoch: int):
    """The batches left in the epoch of `step`. Each epoch's order is fixed by (seed, epoch), and a resumed run
    skips the batches already used (without loading them), so it sees the same batches as an uninterrupted one."""
    epoch, done = divmod(step, per_epoch)
    loader = torch.utils.data.DataLoader(
        data, batch_size=cfg.batch_size, shuffle=True, num_workers=cfg.num_workers, drop_last=True,
        generator=torch.Generator().manual_seed(cfg.seed + epoch),
    )  # fmt: skip
    return accelerator.skip_first_batches(accelerator.prepare(loader), done)


def start_core(cfg: TrunkTrainConfig, accelerator, last) -> tuple:
    """The trunk with the heads `cfg.mode` trains, its trainable parameters, optimizer and schedule, fresh or
    restored from `last` (the run resumed), prepared by `accelerator`; and the step they start at."""
    core = SharedCore(cfg.core, load_vlm(cfg.core.vlm_model_name, cfg.load_vlm_weights))
    m = cfg.mode
    core.use_heads(latent=m == "multitask", codes=m == "codes", actions=trains_actions(cfg))
    params = [p for p in core.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(cfg, optimizer)
    step = 0
    if cfg.resume:
        step = restore_checkpoint(last, core, optimizer, scheduler)
        logger.info("resuming %s at step %d", cfg.output_dir, step)
    if accelerator.is_main_process:  # the settings of the latest start: a resumed run may have changed its steps
        record = {"model": model_fields(cfg), "config": json.loads(json.dumps(draccus.encode(cfg), default=str))}
        write_json(cfg.output_dir / "train_config.json", record)
    core, optimizer = accelerator.prepare(core, optimizer)
    return core, params, optimizer, scheduler, step


def train(cfg: TrunkTrainConfig) -> dict:
    from transformers import AutoTokenizer

    out = cfg.output_dir
    if (done := finished_run(out, lambda: run_settings(cfg))) is not None:
        return {**done["result"], "history": [], "already_trained": True}
    last = claim_output_dir(cfg)
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    accelerator = make_accelerator()
    quiet_unless_main(accelerator, logger)
    device = accelerator.device
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    laq, laq_info = stage_laq(cfg, device)
    adapter = ActionAdapter(cfg.adapter)
    # every metadata check (cameras, adapter, gaps, stats, frame sizes) happens here, before any step
    data = trunk_dataset(cfg.datasets, cfg.core.chunk_size, adapter, cfg.frame_size, trains_actions(cfg))
    tokenizer = AutoTokenizer.from_pretrained(cfg.core.vlm_model_name)
    core, params, optimizer, scheduler, step = start_core(cfg, accelerator, last)
    n_params = sum(p.numel() for p in params)
    world = accelerator.num_processes
    logger.info("stage 2: %d samples from %d dataset(s), %.1fM trainable parameters, mode %s, supervision %s, "
                "%d process(es): batch %d x %d", len(data), len(cfg.datasets), n_params / 1e6, cfg.mode,
                supervision(cfg), world, cfg.batch_size, world)  # fmt: skip
    per_epoch = len(data) // (cfg.batch_size * world)  # accelerate shards each batch list across the processes
    if per_epoch == 0:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than the {len(data)} samples of the datasets")
    history: list[dict] = []
    window: list[dict] = []
    bar = tqdm(total=cfg.steps, initial=step, desc="stage 2", disable=not accelerator.is_main_process)
    core.train()
    t_window = time.perf_counter()
    while step < cfg.steps:
        for batch in epoch_batches(cfg, data, accelerator, step, per_epoch):
            total, stats = losses(core, laq, batch, cfg, tokenizer, device)
            optimizer.zero_grad(set_to_none=True)
            accelerator.backward(total)
            if cfg.grad_clip:
                accelerator.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            step += 1
            bar.update(1)
            window.append(stats)
            if step % cfg.log_freq == 0 or step == cfg.steps:
                wall = time.perf_counter() - t_window
                row = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                row.update(step=step, samples_per_s=len(window) * cfg.batch_size * world / wall,
                           label_share=sum(w["label_s"] for w in window) / wall)  # fmt: skip
                history.append(row)
                bar.set_postfix({k: f"{v:.3g}" for k, v in row.items() if k not in ("step", "label_s")})
                logger.info("step %d %s", step, json.dumps({k: round(v, 5) for k, v in row.items()}))
                window, t_window = [], time.perf_counter()
            if accelerator.is_main_process and (step % cfg.save_freq == 0 or step == cfg.steps):
                save_checkpoint(cfg, accelerator.unwrap_model(core), optimizer, scheduler, step, laq_info)
            if step >= cfg.steps:
                break
    bar.close()
    if accelerator.is_main_process:
        finish(cfg, accelerator.unwrap_model(core), laq_info, step, history)
    return {"history": history, "artifact": str(out / "artifact"), "main_process": accelerator.is_main_process}


def finish(cfg: TrunkTrainConfig, core, laq_info: dict, step: int, history: list[dict]) -> None:
    """The run's end (main process): output_dir/artifact, the training rows in metrics.jsonl, and last, the record
    that the run finished (so101_run_infra.runs.mark_finished)."""
    out = cfg.output_dir
    save_artifact(out / "artifact", core, mode=cfg.mode, laq=laq_info, step=step, supervision=supervision(cfg))
    with (out / "metrics.jsonl").open("a") as f:
        for row in history:
            f.write(json.dumps(row) + "\n")
    mark_finished(out, run_settings(cfg), f"{step} steps", step=step, artifact=str(out / "artifact"))


@parser.wrap()
def run(cfg: TrunkTrainConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logger.setLevel(logging.INFO)  # importing lerobot leaves the root logger at WARNING
    result = train(cfg)
    if result.get("already_trained"):  # said so in one line: nothing is trained or pushed again
        return
    if result["main_process"]:  # one line for the run, not one per rank
        final = result["history"][-1] if result["history"] else {}
        print(json.dumps({"final": final, "artifact": result["artifact"]}))
        if cfg.artifact.push_to_hub:
            print(f"pushed {result['artifact']} to {push_artifact(cfg, result)}")


def push_artifact(cfg: TrunkTrainConfig, result: dict) -> str:
    """Push output_dir/artifact (what the hlrp policy's --policy.stage2_artifact reads) with a model card."""
    final = result["history"][-1] if result["history"] else {}
    card = model_card(
        model_name=cfg.artifact.repo_id,
        model_type="hlrp_trunk",
        summary=f"HLRP stage 2: the SmolVLM2 shared trunk ({cfg.core.vlm_model_name}) with its latent-flow and action "
        f"heads, trained in mode `{cfg.mode}` on frozen LAQ labels, supervision `{supervision(cfg)}`; the hlrp policy "
        "starts from it (--policy.init_mode=artifact --policy.stage2_artifact=...).",
        data=[
            f"`{d.repo_id}`{f' ({d.root})' if d.root else ''}, cameras {d.cameras}, LAQ camera {d.laq_camera}"
            for d in cfg.datasets
        ]
        + ([f"LAQ labels from `{cfg.laq_path}`"] if cfg.laq_path else []),
        result={f"last window {k}": round(v, 5) if isinstance(v, float) else v for k, v in final.items()},
        hub=cfg.artifact,
        datasets=[d.repo_id for d in cfg.datasets],
        base_model=cfg.core.vlm_model_name,
        details={"Mode": cfg.mode, "Steps": cfg.steps, "Batch size": cfg.batch_size, "Learning rate": cfg.lr},
        usage=f"hf download {cfg.artifact.repo_id} --local-dir artifact && lerobot-train --policy.type=hlrp "
        "--policy.init_mode=artifact --policy.stage2_artifact=artifact ...",
    )
    return push_folder(result["artifact"], cfg.artifact, card, "Upload the HLRP stage-2 artifact and readme")


def main() -> None:
    prepare_command_line()
    run()


if __name__ == "__main__":
    main()
