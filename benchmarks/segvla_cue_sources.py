"""Per-frame latency of SegVLA's cue sources, one process, the same frames: the suite's segmenter against Mask2Former.

    .venv/bin/python benchmarks/segvla_cue_sources.py        # both sources, 2 cameras, 96x128 and 480x640
    .venv/bin/python benchmarks/segvla_cue_sources.py --sizes='[480x640]' --repeats=5 --mask2former=swin-tiny

Rows: each source's preprocessor step (`--policy.perception_source=...`) on one observation of --cameras RGB frames
(batch 1 per camera), the time per camera frame: median (min-max) of --repeats calls after one warm-up. The sources
alternate within each repeat, so load from other processes hits both alike.

    segmenter     SegmenterScoresStep: EfficientViT-B0 + FPN, 6 classes, at the frame's own size, softmax pooled to 8x8
    mask2former   SegVLAAddSegmentationStep: Mask2Former (random weights, the architecture of
                  facebook/mask2former-swin-large-ade-semantic, or Swin-Tiny), frames resized with padding to 512

Random weights cost what trained ones do; no checkpoint can be downloaded here (so101_devtools.random_mask2former).
"""

import platform
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from lerobot.configs import parser

from so101_devtools.random_mask2former import save_random_checkpoint
from so101_run_infra.cli import prepare_command_line


def steps(folder: Path, cameras: list[str], mask2former: Path):
    from lerobot_policy_segvla.cue_steps import SegmenterScoresStep
    from lerobot_policy_segvla.mask2former import SegVLAAddSegmentationStep
    from so101_segmenter.model import EfficientViTFPN, SegmenterConfig, save_segmenter

    save_segmenter(EfficientViTFPN(SegmenterConfig(pretrained=False)).eval(), folder / "segmenter")
    feature_map = {f"observation.images.{c}": f"observation.segmentation.{c}" for c in cameras}
    return {
        "segmenter": SegmenterScoresStep(feature_map=feature_map, segmenter_path=str(folder / "segmenter")),
        "mask2former": SegVLAAddSegmentationStep(model_name=str(mask2former), feature_map=feature_map),
    }


@dataclass
class CueSourcesConfig:
    # camera frame sizes, HxW, one row pair each
    sizes: list[str] = field(default_factory=lambda: ["96x128", "480x640"])
    # cameras per observation (front, wrist, top, side: the first N)
    cameras: int = 2
    # timed calls per source and size (after one warm-up); the table shows their median
    repeats: int = 3
    # Mask2Former's backbone: swin-large (facebook/mask2former-swin-large-ade-semantic's) or swin-tiny
    mask2former: str = "swin-large"

    def __post_init__(self) -> None:
        if self.mask2former not in ("swin-large", "swin-tiny"):
            raise ValueError(f"--mask2former must be swin-large or swin-tiny, got {self.mask2former!r}")
        if not 1 <= self.cameras <= 4:
            raise ValueError(f"--cameras must be 1 to 4, got {self.cameras}")


@parser.wrap()
def benchmark(cfg: CueSourcesConfig) -> None:
    names = ["front", "wrist", "top", "side"][: cfg.cameras]
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        save_random_checkpoint(folder / "m2f", cfg.mask2former)
        sources = steps(folder, names, folder / "m2f")
        print("| source | frame | cameras | ms per camera frame, median (min-max) |\n|---|---|---:|---|")
        for size in cfg.sizes:
            height, width = (int(v) for v in size.split("x"))
            gen = torch.Generator().manual_seed(0)
            obs = {f"observation.images.{n}": torch.rand(1, 3, height, width, generator=gen) for n in names}
            times = {name: [] for name in sources}
            for step in sources.values():
                step.observation(dict(obs))  # warm-up (and Mask2Former's lazy load)
            for _ in range(cfg.repeats):
                for name, step in sources.items():
                    start = time.perf_counter()
                    step.observation(dict(obs))
                    times[name].append((time.perf_counter() - start) * 1000 / len(names))
            for name, values in times.items():
                label = f"{name} ({cfg.mask2former})" if name == "mask2former" else name
                spread = f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"
                print(f"| {label} | {size} | {len(names)} | {spread} |")


def main() -> None:
    prepare_command_line()
    benchmark()


if __name__ == "__main__":
    main()
