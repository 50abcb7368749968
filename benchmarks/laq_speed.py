"""LAQ (HLRP stage 1) throughput in frame pairs per second: a training step and labelling (`codes_and_vectors`),
at the twin config's size and at HLRP's real size, with random weights.

    python benchmarks/laq_speed.py                                  # CPU, both sizes
    python benchmarks/laq_speed.py --device=cuda --train_batch='[8,64,128]' --label_batch='[256,1024]' --amp=bf16
    python benchmarks/laq_speed.py --sizes='[twin]' --repeats=7

A training step is forward + backward + AdamW step (NSVQ's noisy path, dead-code bookkeeping included); labelling
is stage 2's online call, nearest codes under no_grad. Each figure is the median over `--repeats` timed runs of
`--iters` calls, after `--warmup` untimed calls. Frames are random 3 x 240 x 320 images, so the model's resize is
timed too, as stage 2 feeds camera frames.
"""

import contextlib
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import draccus
import torch
from lerobot.configs import parser

from lerobot_policy_hlrp.laq import LAQ, LAQConfig
from lerobot_policy_hlrp.pretrain.laq_config import LAQTrainConfig
from so101_run_infra.cli import prepare_command_line

ROOT = Path(__file__).resolve().parent.parent
SIZES = ("twin", "real")


@dataclass
class LAQSpeedConfig:
    # the torch device
    device: str = "cpu"
    # the model sizes: twin (configs/hlrp_laq_twin.yaml) and/or real (HLRP's defaults, configs/hlrp_laq_oxe.yaml)
    sizes: list[str] = field(default_factory=lambda: list(SIZES))
    # batch sizes of a training step
    train_batch: list[int] = field(default_factory=lambda: [8, 32])
    # batch sizes of labelling
    label_batch: list[int] = field(default_factory=lambda: [32, 128])
    # timed runs per figure; each figure is their median
    repeats: int = 5
    # calls per timed run
    iters: int = 2
    # untimed calls before the timed runs
    warmup: int = 1
    # autocast dtype: no, bf16 or fp16
    amp: str = "no"
    # torch intra-op threads on the CPU (None: torch's choice)
    threads: int | None = None

    def __post_init__(self) -> None:
        unknown = sorted(set(self.sizes) - set(SIZES))
        if unknown:
            raise ValueError(f"--sizes has unknown size(s) {unknown}; the sizes are {list(SIZES)}")
        if self.amp not in ("no", "bf16", "fp16"):
            raise ValueError(f"--amp must be no, bf16 or fp16, got {self.amp!r}")


def size_configs() -> dict[str, LAQConfig]:
    """The models of configs/hlrp_laq_twin.yaml and HLRP's defaults (= configs/hlrp_laq_oxe.yaml)."""
    twin = draccus.parse(LAQTrainConfig, config_path=ROOT / "configs" / "hlrp_laq_twin.yaml", args=[]).model
    return {"twin": twin, "real": LAQConfig()}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, warmup: int, iters: int, repeats: int) -> float:
    """Median seconds per call."""
    for _ in range(warmup):
        fn()
    sync(device)
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        sync(device)
        runs.append((time.perf_counter() - start) / iters)
    return statistics.median(runs)


def pairs_per_second(cfg: LAQConfig, batch: int, mode: str, bench: LAQSpeedConfig, device: torch.device) -> float:
    """Frame pairs per second."""
    torch.manual_seed(0)
    model = LAQ(cfg).to(device)
    pair = torch.rand(batch, 2, cfg.channels, 240, 320, device=device)  # frames t and t+k
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(bench.amp)
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else contextlib.nullcontext
    if mode == "train":
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            with autocast():
                out = model(pair)
            optimizer.zero_grad(set_to_none=True)
            out.loss.backward()
            optimizer.step()

    else:
        model.eval()

        def step():
            with autocast():
                model.codes_and_vectors(pair)

    seconds = timed(step, device, bench.warmup, bench.iters, bench.repeats)
    return batch / seconds


@parser.wrap()
def benchmark(bench: LAQSpeedConfig) -> None:
    if bench.threads:
        torch.set_num_threads(bench.threads)
    device = torch.device(bench.device)
    configs = size_configs()

    print(f"device {device}, amp {bench.amp}, median of {bench.repeats} x {bench.iters} calls, frames 3x240x320")
    print("| size | params | image/patch | codebook x dim x codes | mode | batch | pairs/s |")
    print("|---|---:|---|---|---|---:|---:|")
    for name in bench.sizes:
        cfg = configs[name]
        params = sum(p.numel() for p in LAQ(cfg).parameters()) / 1e6
        shape = f"{cfg.image_size}/{cfg.patch_size}"
        codes = f"{cfg.codebook_size} x {cfg.quant_dim} x {cfg.code_seq_len}"
        for mode, batches in (("train step", bench.train_batch), ("label", bench.label_batch)):
            for batch in batches:
                rate = pairs_per_second(cfg, batch, "train" if mode == "train step" else "label", bench, device)
                print(f"| {name} | {params:.1f}M | {shape} | {codes} | {mode} | {batch} | {rate:.1f} |", flush=True)


def main() -> None:
    prepare_command_line()
    benchmark()


if __name__ == "__main__":
    main()
