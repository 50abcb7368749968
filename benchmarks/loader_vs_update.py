"""Does a training recipe wait for data? lerobot-train's DataLoader alone against its policy update alone, built
exactly as `lerobot-train` builds them, one process.

    .venv/bin/python benchmarks/loader_vs_update.py --config_path=configs/segvla_twin.yaml
    .venv/bin/python benchmarks/loader_vs_update.py --policy.type=segdepth --batch_size=32 --num_workers=2 \\
        --dataset.repo_id=local/so101_twin_liftcube --dataset.root=outputs/demo/runs/<run>/dataset_segdepth \\
        --policy.stacked_frames=true
    .venv/bin/python benchmarks/loader_vs_update.py --config_path=configs/imf_twin_cnn.yaml --policy.device=cuda \\
        --num_workers=10

Every flag is lerobot-train's (`--config_path`, `--dataset.*`, `--policy.*`, `--batch_size`, `--num_workers`,
`--prefetch_factor`, ...), plus --batches, --repeats and --warmup_batches below. The build follows LeRobot 0.6.1's
`lerobot_train.train()` step by step: `cfg.validate()`, the same Accelerator (mixed precision from the policy's
dtype/use_amp, `cpu=` for a CPU device), the seed, cuDNN and TF32 settings, `make_train_eval_datasets`,
`make_policy`, `make_pre_post_processors` with the dataset's stats, `make_optimizer_and_scheduler`, the
`EpisodeAwareSampler`, the DataLoader with lerobot-train's arguments (its `_dataloader_worker_kwargs`: prefetch
factor, persistent workers, the spawn start method; pinned memory on CUDA; LeRobot's collate where the dataset has
language columns) and `accelerator.prepare`. Nothing is written or pushed: the recipe's output_dir and
push_to_hub are ignored.

Two timings, after --warmup_batches batches (the workers' start and first prefetch):

    loader      what lerobot-train counts as `data_s`: next batch from the prepared DataLoader (on the policy's
                device), uint8 cameras to float, the policy's preprocessor; --batches batches per run
    update      lerobot-train's own `update_policy` (forward, backward, clipping, optimizer and scheduler step) on
                --batches batches fetched beforehand, so no loading overlaps it

Each is the median of --repeats runs, in samples/s. The ratio loader / update is how many times faster samples
arrive than the update consumes them: below 1 the update waits for data (the target: >= 2 on a 2-core CPU for the
segvla and segdepth twin recipes, and data time <= update time on a GPU host).
"""

import os
import statistics
import time
from dataclasses import dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from lerobot.configs import parser
from lerobot.configs.default import DatasetConfig
from lerobot.configs.train import TrainPipelineConfig
from lerobot.datasets import EpisodeAwareSampler
from lerobot.datasets.factory import make_train_eval_datasets
from lerobot.optim.factory import make_optimizer_and_scheduler
from lerobot.policies import make_policy, make_pre_post_processors
from lerobot.scripts.lerobot_train import _dataloader_worker_kwargs, update_policy
from lerobot.utils.collate import lerobot_collate_fn
from lerobot.utils.import_utils import register_third_party_plugins
from lerobot.utils.logging_utils import AverageMeter, MetricsTracker
from lerobot.utils.random_utils import set_seed
from lerobot.utils.utils import cycle

from so101_run_infra.cli import prepare_command_line


@dataclass
class LoaderVsUpdateConfig(TrainPipelineConfig):
    # lerobot-train's dataset (--dataset.repo_id, --dataset.root, ...), from --config_path or the flags; required
    dataset: DatasetConfig | None = None
    # batches per timed run, of the loader and of the update
    batches: int = 10
    # timed runs of each; the table shows their median
    repeats: int = 3
    # batches delivered before the loader is timed (the workers' start, the first prefetch), and updates before the
    # update is timed
    warmup_batches: int = 2

    def __post_init__(self) -> None:
        if self.dataset is None:
            raise ValueError("--dataset.repo_id is required (or a recipe: --config_path=configs/segvla_twin.yaml)")
        if self.batches < 1 or self.repeats < 1 or self.warmup_batches < 0:
            raise ValueError("--batches and --repeats must be >= 1, --warmup_batches >= 0")


def accelerator_for(cfg: TrainPipelineConfig):
    """The Accelerator lerobot-train makes when none is given (its mixed precision from the policy's settings)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    active = cfg.trainable_config
    mixed_precision = {"bfloat16": "bf16", "float16": "fp16", "float32": "no"}.get(getattr(active, "dtype", None))
    if not hasattr(active, "dtype") and getattr(active, "use_amp", False):
        autocast_dtype = torch.get_autocast_dtype(torch.device(active.device).type)
        mixed_precision = {torch.bfloat16: "bf16", torch.float16: "fp16"}[autocast_dtype]
    return Accelerator(
        step_scheduler_with_optimizer=False,
        mixed_precision=mixed_precision,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
        cpu=active.device == "cpu",
    )


def processors_for(cfg: TrainPipelineConfig, policy, dataset, device):
    """lerobot-train's preprocessor: fresh with the dataset's stats, or a checkpoint's with its overrides."""
    pretrained = cfg.policy.pretrained_path
    kwargs: dict = {"dataset_stats": dataset.meta.stats}
    if pretrained is not None:
        kwargs["preprocessor_overrides"] = {
            "device_processor": {"device": device.type},
            "normalizer_processor": {
                "stats": dataset.meta.stats,
                "features": {**policy.config.input_features, **policy.config.output_features},
                "norm_map": policy.config.normalization_mapping,
            },
            "rename_observations_processor": {"rename_map": cfg.rename_map},
        }
        kwargs["postprocessor_overrides"] = {
            "unnormalizer_processor": {
                "stats": dataset.meta.stats,
                "features": policy.config.output_features,
                "norm_map": policy.config.normalization_mapping,
            },
        }
    return make_pre_post_processors(
        policy_cfg=cfg.policy,
        pretrained_path=pretrained,
        pretrained_revision=getattr(cfg.policy, "pretrained_revision", None),
        **kwargs,
    )


def batch_size_of(batch: dict, default: int) -> int:
    action = batch.get("action")
    return int(action.shape[0]) if isinstance(action, torch.Tensor) else default


@parser.wrap()
def benchmark(cfg: LoaderVsUpdateConfig) -> dict:
    recipe = parser.parse_arg("config_path") or f"--policy.type={getattr(cfg.policy, 'type', '?')}"
    cfg.output_dir = None  # nothing is written; a recipe's existing output_dir must not stop the benchmark
    if cfg.policy is not None and hasattr(cfg.policy, "push_to_hub"):
        cfg.policy.push_to_hub = False  # nor pushed
    cfg.validate()
    accelerator = accelerator_for(cfg)
    if cfg.seed is not None:
        set_seed(cfg.seed, accelerator=accelerator)
    device = accelerator.device
    torch.backends.cudnn.deterministic = cfg.cudnn_deterministic
    torch.backends.cudnn.benchmark = not cfg.cudnn_deterministic
    torch.backends.cuda.matmul.allow_tf32 = True

    dataset, _ = make_train_eval_datasets(cfg)
    policy = make_policy(cfg=cfg.policy, ds_meta=dataset.meta, rename_map=cfg.rename_map)
    preprocessor, _ = processors_for(cfg, policy, dataset, device)
    optimizer, lr_scheduler = make_optimizer_and_scheduler(cfg, policy)
    sampler = EpisodeAwareSampler(
        dataset.meta.episodes["dataset_from_index"],
        dataset.meta.episodes["dataset_to_index"],
        episode_indices_to_use=dataset.episodes,
        drop_n_last_frames=getattr(cfg.policy, "drop_n_last_frames", 0),
        shuffle=True,
        seed=cfg.seed if cfg.seed is not None else 0,
        absolute_to_relative_idx=dataset.absolute_to_relative_idx,
    )
    dataloader = torch.utils.data.DataLoader(
        dataset,
        num_workers=cfg.num_workers,
        batch_size=cfg.batch_size,
        shuffle=False,
        sampler=sampler,
        pin_memory=device.type == "cuda",
        drop_last=False,
        collate_fn=lerobot_collate_fn if dataset.meta.has_language_columns else None,
        **_dataloader_worker_kwargs(cfg),
    )
    policy, optimizer, dataloader, lr_scheduler = accelerator.prepare(policy, optimizer, dataloader, lr_scheduler)
    policy.train()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    batches = cycle(dataloader)

    def deliver() -> dict:  # what lerobot-train's loop times as data_s
        batch = next(batches)
        for key in dataset.meta.camera_keys:
            if key in batch and batch[key].dtype == torch.uint8:
                batch[key] = batch[key].to(dtype=torch.float32) / 255.0
        return preprocessor(batch)

    start = time.perf_counter()
    for _ in range(cfg.warmup_batches):
        deliver()
    sync()
    startup_s = time.perf_counter() - start
    loader_rates, fetched = [], []
    for _ in range(cfg.repeats):
        start = time.perf_counter()
        fetched = [deliver() for _ in range(cfg.batches)]
        sync()
        samples = sum(batch_size_of(b, cfg.batch_size) for b in fetched)
        loader_rates.append(samples / (time.perf_counter() - start))

    metrics = {
        "loss": AverageMeter("loss", ":.3f"),
        "grad_norm": AverageMeter("grdn", ":.3f"),
        "lr": AverageMeter("lr", ":0.1e"),
        "update_s": AverageMeter("updt_s", ":.3f"),
        "dataloading_s": AverageMeter("data_s", ":.3f"),
    }
    tracker = MetricsTracker(cfg.batch_size, dataset.num_frames, dataset.num_episodes, metrics, accelerator=accelerator)

    def update(batch: dict) -> None:
        update_policy(
            tracker,
            policy,
            dict(batch),  # a policy may add keys to the batch it is given
            optimizer,
            cfg.optimizer.grad_clip_norm,
            accelerator=accelerator,
            lr_scheduler=lr_scheduler,
        )

    for i in range(cfg.warmup_batches):
        update(fetched[i % len(fetched)])
    update_rates = []
    samples = sum(batch_size_of(b, cfg.batch_size) for b in fetched)
    for _ in range(cfg.repeats):
        sync()
        start = time.perf_counter()
        for batch in fetched:
            update(batch)
        sync()
        update_rates.append(samples / (time.perf_counter() - start))

    loader, upd = statistics.median(loader_rates), statistics.median(update_rates)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(
        f"\n### DataLoader against the update: {recipe} ({cfg.policy.type}), {name}, batch {cfg.batch_size}, "
        f"{cfg.num_workers} workers, median of {cfg.repeats} runs of {cfg.batches} batches"
    )
    print("| what | samples/s | ms per batch |")
    print("|---|---|---|")
    for what, rate in (
        ("loader (data_s: next batch, uint8 to float, preprocessor)", loader),
        ("update (update_policy on fetched batches)", upd),
    ):
        print(f"| {what} | {rate:.1f} | {cfg.batch_size / rate * 1e3:.1f} |")
    print(f"| ratio loader / update (>= 2 asked on 2 cores) | {loader / upd:.2f} | |")
    print(f"\nloader start-up ({cfg.warmup_batches} batches, the workers' start included): {startup_s:.1f} s")
    return {"loader_samples_s": loader, "update_samples_s": upd, "ratio": loader / upd, "startup_s": startup_s}


def main() -> None:
    register_third_party_plugins()
    prepare_command_line()
    benchmark()


if __name__ == "__main__":
    main()
