"""CPU cost per frame of SegDepth's perception from RGB, on the same frames in one process: the segmenter with its
depth head (perception_source=segmenter_depth), today's perception_source=segmenter_depth_anything step (segmenter +
Depth Anything V2 Small), and Depth Anything V2 Small alone at 196x196, each at 1 and 2 torch threads.

Run from the repository root:

    .venv/bin/python benchmarks/rgb_perception.py                                          # random weights
    .venv/bin/python benchmarks/rgb_perception.py --segmenter_path=outputs/perception/run/best --repeats=30

Frames are the twin's wrist camera at the comparison recording's size (96x128, the policy's input: the 96x96
centre square, resized to 84x84), at several arm poses. Depth Anything V2 Small has its real architecture
(Depth-Anything-V2-Small-hf's config, 24.8M parameters) with random weights, which cost the same as trained ones; the
segmenter is the trained one when --segmenter_path is given, else the same architecture with random weights. Each
step is built as a checkpoint builds it and called on one frame (one camera, batch 1), as a policy runs at control
rate. Rows: median of --repeats calls after one untimed warm-up, with the min-max.
"""

import platform
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lerobot.configs import parser

from lerobot_policy_segdepth.perception import DepthAnythingStep, SegmenterStep, depth_anything_v2_small_config
from so101_run_infra.cli import prepare_command_line

RGB, IDS, DISP = "observation.images.wrist", "observation.wrist_segmentation_ids", "observation.wrist_disparity"
OUT = 84


def render_frames(poses: int, height: int, width: int) -> torch.Tensor:
    """(poses, 3, height, width) float RGB in [0, 1] of the wrist camera, the arm moving between poses."""
    from lerobot_env_so101_twin.env import SO101TwinEnv

    env = SO101TwinEnv(cameras=("wrist",), camera_height=height, camera_width=width)
    obs, _ = env.reset(seed=0)
    frames = []
    for t in range(poses):
        frames.append(torch.from_numpy(obs["pixels"]["wrist"].copy()).permute(2, 0, 1).float() / 255.0)
        target = obs["agent_pos"] + np.array([6.0, -6.0, 6.0, 4.0, 0.0, -10.0]) * (1 if t % 2 else -1)
        obs, *_ = env.step(target.astype(np.float32))
    env.close()
    return torch.stack(frames)


def random_models(folder: Path) -> tuple[Path, Path]:
    from transformers import DepthAnythingForDepthEstimation

    from so101_segmenter.model import EfficientViTFPN, SegmenterConfig, save_segmenter

    torch.manual_seed(0)
    DepthAnythingForDepthEstimation(depth_anything_v2_small_config()).save_pretrained(folder / "depth_anything")
    save_segmenter(EfficientViTFPN(SegmenterConfig(pretrained=False, depth_head=True)).eval(), folder / "segmenter")
    return folder / "depth_anything", folder / "segmenter"


def time_step(steps: list, frames: torch.Tensor, repeats: int) -> list[float]:
    def call(i: int) -> None:
        obs = {RGB: frames[i % len(frames)][None]}
        for step in steps:
            obs = step.observation(obs)

    call(0)  # warm-up: first-call allocations
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        call(r + 1)
        times.append(time.perf_counter() - start)
    return times


@dataclass
class RGBPerceptionConfig:
    # timed calls per row (after one untimed warm-up); the table shows their median
    repeats: int = 20
    # a trained so101-seg-train checkpoint with a depth head; null: random weights of the same architecture
    segmenter_path: Path | None = None
    # the frames' height: the comparison recording's wrist camera
    height: int = 96
    # the frames' width
    width: int = 128
    # perception_source=segmenter_depth's segmenter input side (the 96x96 centre square at its own scale)
    segmenter_input_size: int = 96
    # perception_source=segmenter_depth_anything's segmenter input side: segdepth's default
    models_segmenter_input_size: int = 168
    # Depth Anything's input side (a multiple of 14): segdepth's default
    depth_input_size: int = 196


@parser.wrap()
def benchmark(cfg: RGBPerceptionConfig) -> None:
    frames = render_frames(8, cfg.height, cfg.width)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        depth_dir, random_seg = random_models(Path(tmp))
        seg_dir = cfg.segmenter_path or random_seg
        common = {"image_keys": [RGB], "output_keys": [IDS], "output_size": OUT, "device": "cpu"}
        depth = {"image_keys": [RGB], "output_keys": [DISP], "output_size": OUT, "device": "cpu"}
        builds = {
            f"segmenter + depth head @ {cfg.segmenter_input_size} (perception_source=segmenter_depth)": lambda: [
                SegmenterStep(
                    **common, disparity_keys=[DISP], input_size=cfg.segmenter_input_size, checkpoint=str(seg_dir)
                )
            ],
            f"segmenter @ {cfg.models_segmenter_input_size} + Depth Anything V2-S @ {cfg.depth_input_size} "
            "(perception_source=segmenter_depth_anything)": lambda: [
                SegmenterStep(**common, input_size=cfg.models_segmenter_input_size, checkpoint=str(seg_dir)),
                DepthAnythingStep(**depth, input_size=cfg.depth_input_size, model_name_or_path=str(depth_dir)),
            ],
            f"Depth Anything V2-S @ {cfg.depth_input_size} alone": lambda: [
                DepthAnythingStep(**depth, input_size=cfg.depth_input_size, model_name_or_path=str(depth_dir))
            ],
        }
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for name, build in builds.items():
                rows.append((name, threads, time_step(build(), frames, cfg.repeats)))

    weights = f"trained segmenter {cfg.segmenter_path}" if cfg.segmenter_path else "random segmenter weights"
    print(
        f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}; wrist frames "
        f"{cfg.height}x{cfg.width} RGB, one frame per call, output (2, {OUT}, {OUT}); {weights}; "
        f"{cfg.repeats} timed repeats (median)"
    )
    print("| step | threads | ms/frame (median) | min-max ms | x the segmenter + depth head |")
    print("|---|---:|---:|---:|---:|")
    medians = {(name, threads): statistics.median(times) for name, threads, times in rows}
    fast = next(iter(dict.fromkeys(name for name, _, _ in rows)))
    for name, threads, times in rows:
        med = medians[(name, threads)]
        ratio = med / medians[(fast, threads)]
        print(
            f"| {name} | {threads} | {med * 1e3:.1f} | {min(times) * 1e3:.1f}-{max(times) * 1e3:.1f} | {ratio:.1f}x |"
        )


def main() -> None:
    prepare_command_line()
    benchmark()


if __name__ == "__main__":
    main()
