"""What the benchmark scripts share: wall-clock timing that waits for CUDA, and the SmolVLM setup of the VLM ones.

Scripts run as `python benchmarks/<name>.py`, which puts this folder on sys.path: `from timing import timed_ms`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tiny_models import save_smolvlm, save_smolvlm2_500m_config


def timed_ms(fn: Callable[[], object], device: str) -> float:
    """Milliseconds `fn()` takes, CUDA work included (synchronised before and after on a CUDA device)."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3


def vlm_benchmark_args(description: str, batch: int, batch_help: str, tiny_help: str) -> argparse.Namespace:
    """The flags of the SmolVLM benchmarks: --repeats, --batch, --device and --tiny (checks the script only)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=batch, help=batch_help)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help=tiny_help)
    return parser.parse_args()


def smolvlm_folder(tiny: bool) -> Path:
    """A fresh folder holding a tiny SmolVLM (`tiny`) or SmolVLM2-500M's config with random weights."""
    folder = Path(tempfile.mkdtemp(prefix="smolvlm_"))
    return save_smolvlm(folder) if tiny else save_smolvlm2_500m_config(folder)
