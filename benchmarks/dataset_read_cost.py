"""CPU time LeRobot's reader spends per training sample, per dataset layout: what each DataLoader worker pays.

Run from the repository root, one dataset per entry (the same frames stored differently are the peers):

    .venv/bin/python benchmarks/dataset_read_cost.py --action_window=20 \
        --roots='[outputs/data/so101_twin_liftcube_shifted_train_front_wrist,outputs/data/<its segvla-precompute copy>]'

Each sample is `LeRobotDataset.__getitem__` as lerobot-train calls it: the frame's row, its video frames, and the
action window (`--action_window` frames of `action` at the dataset's fps, as a policy's chunk asks). One torch thread
and no workers, so the figure is the CPU one worker spends (`time.process_time`; decoding threads included). The
datasets are read in turn within each repeat, on the same random positions, so a load elsewhere on the machine
falls on all of them alike.

Columns:
    ms/sample (median)   CPU milliseconds per sample, median over repeats
    min-max              fastest and slowest repeat
    wall ms              wall-clock milliseconds per sample, median
    vs first             this row's median over the first row's
"""

import os
import random
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch
from lerobot.configs import parser
from lerobot.datasets.lerobot_dataset import LeRobotDataset

from so101_run_infra.cli import prepare_command_line


@dataclass
class DatasetReadCostConfig:
    # dataset folders (LeRobot v3 layout); the repo id given to LeRobot is local/<folder name>
    roots: list[str] = field(default_factory=list)
    # frames of `action` per sample (a policy's chunk_size); 0: the frame's row only
    action_window: int = 20
    # samples per repeat, from random positions shared by every dataset
    samples: int = 100
    # timed passes over the same samples; the table shows their median
    repeats: int = 5
    # untimed samples per dataset first (decoders opened, caches filled)
    warmup: int = 5
    # seed of the sample positions, so two runs read the same frames
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.roots:
            raise ValueError("--roots needs at least one dataset folder, e.g. --roots='[outputs/data/my_dataset]'")
        missing = [root for root in self.roots if not (Path(root) / "meta" / "info.json").is_file()]
        if missing:
            raise FileNotFoundError(f"--roots: no LeRobot dataset (meta/info.json) in {missing}")
        if self.samples < 1 or self.repeats < 1 or self.action_window < 0:
            raise ValueError("--samples and --repeats must be >= 1, --action_window >= 0")


def open_dataset(root: str, action_window: int) -> LeRobotDataset:
    meta = LeRobotDataset(f"local/{Path(root).name}", root=root, episodes=[0]).meta
    window = {"action": [i / meta.fps for i in range(action_window)]} if action_window else None
    return LeRobotDataset(f"local/{Path(root).name}", root=root, delta_timestamps=window)


def stored_columns(dataset: LeRobotDataset) -> str:
    """The non-video array columns a sample reads besides state and action: what differs between layouts."""
    skip = {"action", "observation.state", "timestamp", "frame_index", "episode_index", "index", "task_index"}
    cols = [
        f"{key.removeprefix('observation.')} {spec['dtype']}{list(spec['shape'])}"
        for key, spec in dataset.meta.features.items()
        if key not in skip and spec["dtype"] not in ("video", "image")
    ]
    return ", ".join(cols) or "-"


@parser.wrap()
def benchmark(cfg: DatasetReadCostConfig) -> None:
    torch.set_num_threads(1)
    datasets = [open_dataset(root, cfg.action_window) for root in cfg.roots]
    frames = min(len(d) for d in datasets)
    rng = random.Random(cfg.seed)
    for dataset in datasets:
        for _ in range(cfg.warmup):
            dataset[rng.randrange(frames)]
    cpu: list[list[float]] = [[] for _ in datasets]
    wall: list[list[float]] = [[] for _ in datasets]
    for _ in range(cfg.repeats):
        positions = [rng.randrange(frames) for _ in range(cfg.samples)]
        for i, dataset in enumerate(datasets):
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            for position in positions:
                dataset[position]
            cpu[i].append(1000 * (time.process_time() - start_cpu) / cfg.samples)
            wall[i].append(1000 * (time.perf_counter() - start_wall) / cfg.samples)
    print(
        f"LeRobotDataset.__getitem__, action window {cfg.action_window}, {cfg.samples} samples x {cfg.repeats}"
        f" repeats, 1 torch thread | torch {torch.__version__}"
    )
    header = (
        f"{'dataset':<52} {'other columns':<58} {'ms/sample (median)':>18} {'min-max':>13} {'wall ms':>8}"
        f" {'vs first':>8}"
    )
    print(header)
    print("-" * len(header))
    first = statistics.median(cpu[0])
    for root, dataset, times, walls in zip(cfg.roots, datasets, cpu, wall, strict=True):
        med = statistics.median(times)
        print(
            f"{Path(root).name:<52} {stored_columns(dataset):<58} {med:>18.2f} {min(times):>6.2f}-{max(times):<6.2f} "
            f"{statistics.median(walls):>8.2f} {med / first:>7.2f}x"
        )


def main() -> None:
    prepare_command_line()
    benchmark()


if __name__ == "__main__":
    main()
