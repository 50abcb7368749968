"""CPU cost of SegDepth's real-camera perception: Depth Anything V2 Small and the whole ids + disparity step.

Run from the repository root:

    .venv/bin/python benchmarks/perception_pipeline.py                   # 5 timed repeats, 640x480 frames
    .venv/bin/python benchmarks/perception_pipeline.py --repeats=3 --depth_input_size=252

Both models have their real architecture with random weights (no download): Depth-Anything-V2-Small-hf's
config written from its model card (DINOv2-S/14, neck [48, 96, 192, 384], fusion 64, relative head; 24.8M
parameters) and the EfficientViT-B0 + FPN segmenter (0.85M). Each is saved to a temporary folder and loaded
through the ProcessorSteps, as a checkpoint would be. Frames are 640x480 RGB renders of the twin's front and
wrist cameras at several arm poses; every configuration runs on the same frames in this one process.

Rows (median over --repeats, after one untimed warm-up call; "per frame" = one camera image):
    Depth Anything V2-S @ N      the model step alone (centre crop, resize to N x N, forward, per-frame
                                 min-max) on 1 camera and on both cameras batched (throughput = frames/s)
    pick-101 (full frame)        pick-101's pipeline: both models on the whole 640x480 frame (Depth Anything
                                 at the nearest multiple of 14, 476x644), normalise, then centre-crop 480x480
                                 and resize to 84x84 (ids NEAREST, disparity bilinear)
    suite (crop first)           the suite's SegDepth perception_source=segmenter_depth_anything steps: centre
                                 crop, segmenter at --segmenter_input_size, Depth Anything at
                                 --depth_input_size, both resized to 84x84; the same (2, 84, 84) observation
                                 per camera

The last lines compare the suite's and the literal pipeline's (2, 84, 84) outputs on the same frames. With
random weights these numbers only show that both produce the same kind of observation; how close they are
with the trained models is what `segdepth-sim2real-check` measures.
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

from lerobot_policy_segdepth.observation_steps import CenterCropSquareStep, ResizeStep, StackChannelsStep
from lerobot_policy_segdepth.perception import (
    DepthAnythingStep,
    SegmenterStep,
    depth_anything_v2_small_config,
)
from so101_run_infra.cli import prepare_command_line

CAMERAS = ("wrist", "front")
OUT = 84


def render_frames(n_poses: int) -> dict[str, torch.Tensor]:
    """(n_poses, 3, 480, 640) float RGB in [0, 1] per camera, the arm moving between poses."""
    from lerobot_env_so101_twin.env import SO101TwinEnv

    env = SO101TwinEnv(cameras=CAMERAS, camera_height=480, camera_width=640)
    obs, _ = env.reset(seed=0)
    frames = {cam: [] for cam in CAMERAS}
    for t in range(n_poses):
        for cam in CAMERAS:
            frames[cam].append(torch.from_numpy(obs["pixels"][cam].copy()).permute(2, 0, 1).float() / 255.0)
        target = obs["agent_pos"] + np.array([6.0, -6.0, 6.0, 4.0, 0.0, -10.0]) * (1 if t % 2 else -1)
        obs, *_ = env.step(target.astype(np.float32))
    env.close()
    return {cam: torch.stack(v) for cam, v in frames.items()}


def save_models(folder: Path, frames: torch.Tensor) -> tuple[Path, Path]:
    from transformers import DepthAnythingForDepthEstimation

    from so101_segmenter.model import EfficientViTFPN, SegmenterConfig, save_segmenter

    torch.manual_seed(0)
    depth = DepthAnythingForDepthEstimation(depth_anything_v2_small_config())
    depth.save_pretrained(folder / "depth_anything_v2_small")
    segmenter = EfficientViTFPN(SegmenterConfig(pretrained=False))
    # Fresh BatchNorm statistics make a random segmenter give one class everywhere; estimating them on the
    # frames (a BN recalibration) gives varied class maps, so the output comparison below is not trivially equal.
    for module in segmenter.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
            module.reset_running_stats()
    with torch.no_grad():
        segmenter.train()(frames)
    save_segmenter(segmenter.eval(), folder / "segmenter")
    return folder / "depth_anything_v2_small", folder / "segmenter"


def keys(cameras) -> tuple[list[str], list[str], list[str]]:
    rgb = [f"observation.images.{c}" for c in cameras]
    return rgb, [f"observation.{c}_segmentation_ids" for c in cameras], [f"observation.{c}_disparity" for c in cameras]


def suite_steps(cameras, seg_dir: Path, depth_dir: Path, seg_in: int, depth_in: int) -> list:
    rgb, ids, disp = keys(cameras)
    common = {"image_keys": rgb, "output_size": OUT}
    return [
        SegmenterStep(**common, output_keys=ids, input_size=seg_in, checkpoint=str(seg_dir)),
        DepthAnythingStep(**common, output_keys=disp, input_size=depth_in, model_name_or_path=str(depth_dir)),
        *[
            StackChannelsStep(keys=[i, d], output_key=f"observation.{c}_segdepth")
            for c, i, d in zip(cameras, ids, disp, strict=True)
        ],
    ]


def literal_steps(cameras, seg_dir: Path, depth_dir: Path) -> list:
    rgb, ids, disp = keys(cameras)
    full = {"image_keys": rgb, "crop_square": False, "input_size": None, "output_size": None}
    return [
        SegmenterStep(**full, output_keys=ids, checkpoint=str(seg_dir)),
        DepthAnythingStep(**full, output_keys=disp, model_name_or_path=str(depth_dir)),
        CenterCropSquareStep(keys=[*ids, *disp]),
        ResizeStep(size=OUT, nearest_keys=ids, linear_keys=disp),
        *[
            StackChannelsStep(keys=[i, d], output_key=f"observation.{c}_segdepth")
            for c, i, d in zip(cameras, ids, disp, strict=True)
        ],
    ]


def run(steps: list, frames: dict[str, torch.Tensor], cameras, pose: int) -> dict:
    obs = {f"observation.images.{c}": frames[c][pose : pose + 1] for c in cameras}
    for step in steps:
        obs = step.observation(obs)
    return obs


def time_steps(steps: list, frames, cameras, repeats: int) -> list[float]:
    n_poses = next(iter(frames.values())).shape[0]
    run(steps, frames, cameras, 0)  # warm-up: loads the models, first-call allocations
    times = []
    for r in range(repeats):
        start = time.perf_counter()
        run(steps, frames, cameras, r % n_poses)
        times.append(time.perf_counter() - start)
    return times


@dataclass
class PerceptionPipelineConfig:
    # timed calls per row (after one untimed warm-up); the table shows their median
    repeats: int = 5
    # the suite rows' segmenter input side
    segmenter_input_size: int = 168
    # the suite rows' Depth Anything input side (a multiple of 14)
    depth_input_size: int = 196
    # torch.set_num_threads (None: torch's default); on a shared, oversubscribed machine 1 gives steadier numbers
    threads: int | None = None


@parser.wrap()
def benchmark(cfg: PerceptionPipelineConfig) -> None:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)

    frames = render_frames(max(cfg.repeats, 2))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        depth_dir, seg_dir = save_models(Path(tmp), torch.cat(list(frames.values())))
        for size in (cfg.depth_input_size, None):
            label = f"Depth Anything V2-S @ {size}x{size}" if size else "Depth Anything V2-S @ 476x644 (full)"
            for cams in (CAMERAS[:1], CAMERAS):
                rgb, _, disp = keys(cams)
                step = DepthAnythingStep(
                    image_keys=rgb,
                    output_keys=disp,
                    crop_square=size is not None,
                    input_size=size,
                    output_size=OUT if size else None,
                    model_name_or_path=str(depth_dir),
                )
                rows.append((label, len(cams), time_steps([step], frames, cams, cfg.repeats)))
        configs = {
            "pick-101 (full frame)": lambda cams: literal_steps(cams, seg_dir, depth_dir),
            f"suite (crop, seg {cfg.segmenter_input_size}, depth {cfg.depth_input_size})": lambda cams: suite_steps(
                cams, seg_dir, depth_dir, cfg.segmenter_input_size, cfg.depth_input_size
            ),
        }
        outputs = {}
        for name, build in configs.items():
            for cams in (CAMERAS[:1], CAMERAS):
                steps = build(cams)
                rows.append((name, len(cams), time_steps(steps, frames, cams, cfg.repeats)))
            outputs[name] = [run(steps, frames, CAMERAS, p) for p in range(frames["wrist"].shape[0])]

    print(
        f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; frames 640x480 RGB; {cfg.repeats} timed repeats (median)"
    )
    print(f"{'pipeline':<48} {'cams':>4} {'ms/call':>9} {'ms/frame':>9} {'frames/s':>9} {'min-max ms':>15}")
    medians = {}
    for name, n_cams, times in rows:
        med = statistics.median(times)
        medians[(name, n_cams)] = med
        spread = f"{min(times) * 1e3:.0f}-{max(times) * 1e3:.0f}"
        print(f"{name:<48} {n_cams:>4} {med * 1e3:>9.1f} {med * 1e3 / n_cams:>9.1f} {n_cams / med:>9.2f} {spread:>15}")
    literal, suite = list(configs)
    for n_cams in (1, 2):
        ratio = medians[(literal, n_cams)] / medians[(suite, n_cams)]
        print(f"suite vs pick-101, {n_cams} camera(s): {ratio:.1f}x faster")

    shapes, agreement, mae = set(), [], []
    for lit, ours in zip(outputs[literal], outputs[suite], strict=True):
        for cam in CAMERAS:
            a, b = lit[f"observation.{cam}_segdepth"], ours[f"observation.{cam}_segdepth"]
            shapes.add((tuple(a.shape), tuple(b.shape)))
            agreement.append(float((a[:, 0] == b[:, 0]).float().mean()))
            mae.append(float((a[:, 1] - b[:, 1]).abs().mean()))
    print(f"output shapes (literal, suite): {sorted(shapes)}")
    print(
        f"suite vs literal on the same frames (random weights): ids agree on {np.mean(agreement):.1%} of pixels, "
        f"disparity MAE {np.mean(mae):.1f} / 255"
    )


def main() -> None:
    prepare_command_line()
    benchmark()


if __name__ == "__main__":
    main()
