"""Per-frame latency of SegVLA's cue sources, one process, the same frames: the suite's segmenter against Mask2Former.

    .venv/bin/python benchmarks/segvla_cue_sources.py        # both sources, 2 cameras, 96x128 and 480x640
    .venv/bin/python benchmarks/segvla_cue_sources.py --sizes 480x640 --repeats 5 --mask2former swin-tiny

Rows: each source's preprocessor step (`--policy.segmentation_source=...`) on one observation of --cameras RGB frames
(batch 1 per camera), the time per camera frame: median (min-max) of --repeats calls after one warm-up. The sources
alternate within each repeat, so load from other processes hits both alike.

    segmenter     SegmenterScoresStep: EfficientViT-B0 + FPN, 6 classes, at the frame's own size, softmax pooled to 8x8
    mask2former   SegVLAAddSegmentationStep: Mask2Former (random weights, the architecture of
                  facebook/mask2former-swin-large-ade-semantic, or Swin-Tiny), frames resized with padding to 512

Random weights cost what trained ones do; no checkpoint can be downloaded here (benchmarks/mask2former_step.py).
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mask2former_step import save_random_checkpoint


def steps(folder: Path, cameras: list[str], mask2former: Path):
    from lerobot_policy_segvla.mask2former import SegVLAAddSegmentationStep
    from lerobot_policy_segvla.processor_segvla import SegmenterScoresStep
    from so101_segmenter.model import EfficientViTFPN, SegmenterConfig, save_segmenter

    save_segmenter(EfficientViTFPN(SegmenterConfig(pretrained=False)).eval(), folder / "segmenter")
    feature_map = {f"observation.images.{c}": f"observation.segmentation.{c}" for c in cameras}
    return {
        "segmenter": SegmenterScoresStep(feature_map=feature_map, segmenter_path=str(folder / "segmenter")),
        "mask2former": SegVLAAddSegmentationStep(model_name=str(mask2former), feature_map=feature_map),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["96x128", "480x640"], help="camera frame sizes, HxW")
    parser.add_argument("--cameras", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mask2former", choices=["swin-large", "swin-tiny"], default="swin-large")
    args = parser.parse_args()
    names = ["front", "wrist", "top", "side"][: args.cameras]
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        save_random_checkpoint(folder / "m2f", args.mask2former)
        sources = steps(folder, names, folder / "m2f")
        print("| source | frame | cameras | ms per camera frame, median (min-max) |\n|---|---|---:|---|")
        for size in args.sizes:
            height, width = (int(v) for v in size.split("x"))
            gen = torch.Generator().manual_seed(0)
            obs = {f"observation.images.{n}": torch.rand(1, 3, height, width, generator=gen) for n in names}
            times = {name: [] for name in sources}
            for step in sources.values():
                step.observation(dict(obs))  # warm-up (and Mask2Former's lazy load)
            for _ in range(args.repeats):
                for name, step in sources.items():
                    start = time.perf_counter()
                    step.observation(dict(obs))
                    times[name].append((time.perf_counter() - start) * 1000 / len(names))
            for name, values in times.items():
                label = f"{name} ({args.mask2former})" if name == "mask2former" else name
                spread = f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"
                print(f"| {label} | {size} | {len(names)} | {spread} |")


if __name__ == "__main__":
    main()
