"""CPU latency and throughput of the EfficientViT-B0 + FPN segmenter at 84x84 and 640x480.

Run from the repository root:

    .venv/bin/python benchmarks/segmenter_speed.py                       # 7 repeats, torch's default threads
    .venv/bin/python benchmarks/segmenter_speed.py --repeats=5 --threads=1

The model is built with pretrained=False (speed does not depend on the weights) and run in eval mode under
torch.inference_mode(), on float RGB in [0, 1] as `EfficientViTFPN.forward` takes it. One repeat times --iters
forward passes after --warmup untimed ones.

Rows: input size (height x width) x batch size (1 = per-frame latency; larger = throughput) x head order.
The peer, run in the same process on the same inputs, is the upstream decoder order (pick-101's
`train_efficientvit_seg.py`): upsample the 64-channel fused map to the input size, then the 1x1 classifier.
Ours classifies at stride 4 and upsamples the 6-channel logits; the two give the same logits (a test checks it).

Columns:
    ms/frame (median)   median over repeats of (time for one repeat) / (iters x batch)
    min-max             fastest and slowest repeat, ms/frame
    frames/s            1000 / median ms/frame
    vs upstream         the upstream order's median ms/frame divided by ours (>1: ours is faster)
"""

import platform
import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from lerobot.configs import parser

from so101_run_infra.cli import prepare_command_line
from so101_segmenter.model import EfficientViTFPN, SegmenterConfig, count_parameters

SIZES = {"84x84": (84, 84), "640x480": (480, 640)}


def upstream_forward(model: EfficientViTFPN, images: torch.Tensor) -> torch.Tensor:
    """The same weights, with upstream's order: upsample the fused 64-channel map, then classify."""
    fused = model.decoder(model.backbone((images - model.mean) / model.std))
    return model.head(F.interpolate(fused, size=images.shape[-2:], mode="bilinear", align_corners=False))


def time_forward(fn, images: torch.Tensor, warmup: int, iters: int, repeats: int) -> list[float]:
    """ms per frame for each repeat."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn(images)
        out = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(iters):
                fn(images)
            out.append(1000 * (time.perf_counter() - start) / (iters * images.shape[0]))
    return out


@dataclass
class SegmenterSpeedConfig:
    # timed repeats per row; the table shows their median, fastest and slowest
    repeats: int = 7
    # untimed forward passes before each row's repeats
    warmup: int = 3
    # torch intra-op threads (None: torch's choice)
    threads: int | None = None
    # throughput batch at 84x84
    batch_84: int = 32
    # throughput batch at 640x480
    batch_640: int = 4


@parser.wrap()
def benchmark(cfg: SegmenterSpeedConfig) -> None:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(0)
    model = EfficientViTFPN(SegmenterConfig(pretrained=False)).eval()
    print(
        f"EfficientViT-B0 + FPN, {count_parameters(model):,} parameters | torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads | {platform.processor() or platform.machine()} | repeats {cfg.repeats}"
    )
    header = (
        f"{'input':>8} {'batch':>5} {'head order':>11} {'ms/frame (median)':>18} {'min-max':>15} "
        f"{'frames/s':>9} {'vs upstream':>11}"
    )
    print(header)
    print("-" * len(header))
    for name, (h, w) in SIZES.items():
        big = cfg.batch_84 if h <= 84 else cfg.batch_640
        for batch in (1, big):
            images = torch.rand(batch, 3, h, w)
            # frames per repeat: fewer where a frame is long, so a repeat stays around a second
            iters = max(1, round((100 if h <= 84 else 8) / batch))
            results = {
                "ours": time_forward(model, images, cfg.warmup, iters, cfg.repeats),
                "upstream": time_forward(lambda x: upstream_forward(model, x), images, cfg.warmup, iters, cfg.repeats),
            }
            ours = statistics.median(results["ours"])
            for order, values in results.items():
                med = statistics.median(values)
                ratio = f"{statistics.median(results['upstream']) / ours:.2f}x" if order == "ours" else "-"
                print(
                    f"{name:>8} {batch:>5} {order:>11} {med:>18.2f} {min(values):>7.2f}-{max(values):<7.2f} "
                    f"{1000 / med:>9.1f} {ratio:>11}"
                )


def main() -> None:
    prepare_command_line()
    benchmark()


if __name__ == "__main__":
    main()
