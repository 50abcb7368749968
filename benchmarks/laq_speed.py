"""LAQ (HLRP stage 1) throughput in frame pairs per second: a training step and labelling (`codes_and_vectors`),
at the twin config's size and at HLRP's real size, with random weights.

    python benchmarks/laq_speed.py                                  # CPU, both sizes
    python benchmarks/laq_speed.py --device cuda --train-batch 8 64 128 --label-batch 256 1024 --amp bf16
    python benchmarks/laq_speed.py --sizes twin --repeats 7

A training step is forward + backward + AdamW step (NSVQ's noisy path, dead-code bookkeeping included); labelling
is stage 2's online call, nearest codes under no_grad. Each figure is the median over `--repeats` timed runs of
`--iters` calls, after `--warmup` untimed calls. Frames are random 3 x 240 x 320 images, so the model's resize is
timed too, as stage 2 feeds camera frames.
"""

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import draccus
import torch

from lerobot_policy_hlrp.laq import LAQ, LAQConfig
from lerobot_policy_hlrp.train_laq import LAQTrainConfig

ROOT = Path(__file__).resolve().parent.parent


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


def bench(cfg: LAQConfig, batch: int, mode: str, args, device: torch.device) -> float:
    """Frame pairs per second."""
    torch.manual_seed(0)
    model = LAQ(cfg).to(device)
    pair = torch.rand(batch, 2, cfg.channels, 240, 320, device=device)  # frames t and t+k
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(args.amp)
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

    seconds = timed(step, device, args.warmup, args.iters, args.repeats)
    return batch / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", nargs="+", default=["twin", "real"], choices=["twin", "real"])
    parser.add_argument("--train-batch", nargs="+", type=int, default=[8, 32], help="batch sizes of a training step")
    parser.add_argument("--label-batch", nargs="+", type=int, default=[32, 128], help="batch sizes of labelling")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--iters", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--amp", choices=["no", "bf16", "fp16"], default="no")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads on the CPU")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    configs = size_configs()

    print(f"device {device}, amp {args.amp}, median of {args.repeats} x {args.iters} calls, frames 3x240x320")
    print("| size | params | image/patch | codebook x dim x codes | mode | batch | pairs/s |")
    print("|---|---:|---|---|---|---:|---:|")
    for name in args.sizes:
        cfg = configs[name]
        params = sum(p.numel() for p in LAQ(cfg).parameters()) / 1e6
        shape = f"{cfg.image_size}/{cfg.patch_size}"
        codes = f"{cfg.codebook_size} x {cfg.quant_dim} x {cfg.code_seq_len}"
        for mode, batches in (("train step", args.train_batch), ("label", args.label_batch)):
            for batch in batches:
                rate = bench(cfg, batch, "train" if mode == "train step" else "label", args, device)
                print(f"| {name} | {params:.1f}M | {shape} | {codes} | {mode} | {batch} | {rate:.1f} |", flush=True)


if __name__ == "__main__":
    main()
