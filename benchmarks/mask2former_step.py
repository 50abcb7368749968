"""Latency of SegVLAAddSegmentationStep per camera, and frames per second of segvla-precompute.

Run from the repository root:

    .venv/bin/python benchmarks/mask2former_step.py                      # Swin-Large ADE and Swin-Tiny, 3 repeats
    .venv/bin/python benchmarks/mask2former_step.py --models='[swin-tiny]' --repeats=5 --cameras='[1,2]' --device=cuda
    .venv/bin/python benchmarks/mask2former_step.py --offline_models='[swin-tiny,swin-large]' --offline_frames=16

No weights can be downloaded here, so both checkpoints are written by hand with random weights: the
architecture of `facebook/mask2former-swin-large-ade-semantic` (Swin-L, window 12, 100 queries, 150 ADE classes)
and the same head on a Swin-Tiny backbone, saved to a temp folder and loaded back through the step, as a real
checkpoint would be. Random weights cost what trained ones do.

Step table (both checkpoints in this process, one after the other):
    checkpoint      backbone and parameter count
    cameras         images in one forward pass (batch 1 per camera)
    ms/camera       median wall time of step.observation() over --repeats, divided by the camera count; a
                    480x640 RGB frame resize-with-padded to --input_size (512, SmolVLA's) as the model input
    min-max         fastest and slowest repeat, ms per camera

Offline rows: segvla-precompute (the library function the command calls) on a synthetic 2-camera
LeRobotDataset of --offline_frames 480x640 video frames; frames/s counts dataset frames (each = 2 camera images)
over the compute loop (decode + model + shard writes), not the start-up or the final dataset copy.
"""

import logging
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from lerobot.configs import parser

from so101_devtools.random_mask2former import BACKBONES, save_random_checkpoint
from so101_run_infra.cli import prepare_command_line

CAMERA_HW = (480, 640)


def time_step(folder: Path, cameras: int, repeats: int, input_size: int, device: str, dtype: str) -> list[float]:
    from lerobot_policy_segvla.mask2former import SegVLAAddSegmentationStep

    names = ["front", "wrist", "top", "side"][:cameras]
    step = SegVLAAddSegmentationStep(
        model_name=str(folder),
        feature_map={f"observation.images.{n}": f"observation.segmentation.{n}" for n in names},
        input_size=input_size,
        device=device,
        dtype=dtype,
    )
    g = torch.Generator().manual_seed(0)
    obs = {f"observation.images.{n}": torch.rand(1, 3, *CAMERA_HW, generator=g).to(device) for n in names}
    step.observation(dict(obs))  # load + warm-up
    times = []
    for _ in range(repeats):
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        step.observation(dict(obs))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000 / cameras)
    return times


def make_dataset(root: Path, frames: int) -> None:
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    camera = {"dtype": "video", "shape": (*CAMERA_HW, 3), "names": ["height", "width", "channels"]}
    features = {
        "observation.images.front": camera,
        "observation.images.wrist": camera,
        "observation.state": {"dtype": "float32", "shape": (6,), "names": None},
        "action": {"dtype": "float32", "shape": (6,), "names": None},
    }
    ds = LeRobotDataset.create("local/m2f_bench", fps=30, features=features, root=root, use_videos=True)
    yy, xx = np.mgrid[0 : CAMERA_HW[0], 0 : CAMERA_HW[1]]
    for t in range(frames):
        image = np.stack([(xx + 8 * t) % 256, (yy + 4 * t) % 256, (xx + yy) % 256], axis=-1).astype(np.uint8)
        ds.add_frame(
            {
                "observation.images.front": image,
                "observation.images.wrist": image[::-1].copy(),
                "observation.state": np.zeros(6, np.float32),
                "action": np.zeros(6, np.float32),
                "task": "pick up the cube",
            }
        )
    ds.save_episode()
    ds.finalize()


def offline_fps(folder: Path, dataset: Path, out: Path, batch_size: int, input_size: int, device: str, dtype: str):
    from lerobot_policy_segvla.commands.precompute_segmentation import (
        PrecomputeSegmentationConfig,
        precompute_segmentation,
    )
    from so101_policy_common.precompute import SourceDatasetConfig

    cfg = PrecomputeSegmentationConfig(
        dataset=SourceDatasetConfig(repo_id="local/m2f_bench", root=dataset),
        feature_map={
            "observation.images.front": "observation.segmentation.front",
            "observation.images.wrist": "observation.segmentation.wrist",
        },
        output_dir=out,
        model_path=str(folder),
        input_size=input_size,
        batch_size=batch_size,
        device=device,
        dtype=dtype,
    )
    return precompute_segmentation(cfg)


@dataclass
class Mask2FormerStepConfig:
    # the checkpoints of the step table (swin-large: facebook/mask2former-swin-large-ade-semantic's architecture)
    models: list[str] = field(default_factory=lambda: list(BACKBONES))
    # timed calls per row; the table shows their median
    repeats: int = 3
    # camera counts per forward pass, one row each
    cameras: list[int] = field(default_factory=lambda: [1])
    # the model's square input side (SmolVLA's 512)
    input_size: int = 512
    # the torch device (default: cuda where there is one, else cpu)
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")
    # the model's dtype (a torch dtype name)
    dtype: str = "float32"
    # frames of the offline rows' synthetic dataset (0 skips the offline rows)
    offline_frames: int = 4
    # batch size of the offline rows
    offline_batch_size: int = 2
    # checkpoints for the offline rows
    offline_models: list[str] = field(default_factory=lambda: ["swin-tiny"])

    def __post_init__(self) -> None:
        unknown = sorted((set(self.models) | set(self.offline_models)) - set(BACKBONES))
        if unknown:
            raise ValueError(
                f"--models/--offline_models name unknown checkpoint(s) {unknown}; known: {list(BACKBONES)}"
            )


@parser.wrap()
def benchmark(cfg: Mask2FormerStepConfig) -> None:
    logging.basicConfig(level=logging.WARNING)

    rows, offline = [], []
    with tempfile.TemporaryDirectory(prefix="m2f_bench_") as tmp:
        tmp = Path(tmp)
        if cfg.offline_frames:
            make_dataset(tmp / "dataset", cfg.offline_frames)
        for name in cfg.models:
            folder = tmp / name
            params = save_random_checkpoint(folder, name)
            label = f"{name} ({params / 1e6:.1f}M)"
            for cameras in cfg.cameras:
                times = time_step(folder, cameras, cfg.repeats, cfg.input_size, cfg.device, cfg.dtype)
                rows.append((label, cameras, statistics.median(times), min(times), max(times)))
                print(f"  {label}: {cameras} camera(s): {statistics.median(times):.0f} ms/camera", flush=True)
            if cfg.offline_frames and name in cfg.offline_models:
                s = offline_fps(folder, tmp / "dataset", tmp / f"out_{name}", cfg.offline_batch_size,
                                cfg.input_size, cfg.device, cfg.dtype)  # fmt: skip
                offline.append((label, s))

    torch_threads = torch.get_num_threads()
    print(
        f"\nSegVLAAddSegmentationStep, {CAMERA_HW[0]}x{CAMERA_HW[1]} frames -> {cfg.input_size}^2 input, batch 1 per "
        f"camera, device {cfg.device} ({platform.processor() or platform.machine()}, {torch_threads} torch threads), "
        f"{cfg.dtype}, median of {cfg.repeats}"
    )
    print(f"{'checkpoint':<22} {'cameras':>7} {'ms/camera':>10} {'min-max':>16}")
    for label, cameras, med, lo, hi in rows:
        print(f"{label:<22} {cameras:>7} {med:>10.0f} {f'{lo:.0f}-{hi:.0f}':>16}")
    if offline:
        frames, batch = cfg.offline_frames, cfg.offline_batch_size
        print(f"\nsegvla-precompute, {frames} frames x 2 cameras, batch {batch}")
        print(f"{'checkpoint':<22} {'frames/s':>9} {'stored B/frame':>15} {'full map B/camera-frame':>24}")
        for label, s in offline:
            print(
                f"{label:<22} {s['frames_per_second']:>9.3f} {s['stored_bytes_per_frame']:>15,} "
                f"{s['full_map_bytes_per_camera_frame']:>24,}"
            )


def main() -> None:
    prepare_command_line()
    benchmark()


if __name__ == "__main__":
    main()
