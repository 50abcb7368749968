"""What the benchmark scripts share: wall-clock timing that waits for CUDA, and the SmolVLM setup of the VLM ones."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from so101_devtools.tiny_models import save_smolvlm, save_smolvlm2_500m_config


def timed_ms(fn: Callable[[], object], device: str) -> float:
    """Milliseconds `fn()` takes, CUDA work included (synchronised before and after on a CUDA device)."""
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) * 1e3


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (else what platform knows): the machine kind a table names."""
    import platform

    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def smolvlm_folder(tiny: bool) -> Path:
    """A fresh folder holding a tiny SmolVLM (`tiny`) or SmolVLM2-500M's config with random weights."""
    folder = Path(tempfile.mkdtemp(prefix="smolvlm_"))
    return save_smolvlm(folder) if tiny else save_smolvlm2_500m_config(folder)


@dataclass
class SpeedBenchConfig:
    """The fields every model-speed benchmark takes; each adds its own (its batch size, say)."""

    # timed runs of each measurement (after one warm-up); the tables show their median
    repeats: int = 5
    # the torch device (default: cuda where there is one, else cpu)
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")
    # tiny models: checks the script, measures nothing
    tiny: bool = False
