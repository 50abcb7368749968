"""Tiny, random, offline backbones saved to local folders, for tests that must run the real loading code.

LeRobot's SmolVLA always calls AutoConfig / AutoProcessor / AutoTokenizer.from_pretrained(vlm_model_name)
(which always ask the Hub); a local folder holding a SmolVLM config plus processor and tokenizer files makes that
work with no network. The same function writes the real SmolVLM2-500M sizes for the benchmark (random weights).
"""

from __future__ import annotations

from pathlib import Path

from so101_commands.random_vlm import save_smolvlm, save_smolvlm2_500m_config  # noqa: F401  (re-exported)
from so101_run_infra.atomic import move_aside


def shared_model_dir(name: str, save) -> Path:
    """A model folder shared by every test process, written once (atomically) under the temp dir.

    Test cases list model paths at collection time and pass them to lerobot-* subprocesses, so the folder must
    exist before any fixture runs and outlive the test's tmp_path.
    """
    import shutil
    import tempfile

    folder = Path(tempfile.gettempdir()) / name
    if (folder / "config.json").is_file():
        return folder
    staging = Path(tempfile.mkdtemp(prefix=f"{name}_"))
    save(staging)
    try:
        move_aside(staging, folder)  # refuses an existing folder: the first process's stays
    except OSError:  # another process won the race; its folder is identical
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def tiny_smolvlm_dir() -> Path:
    return shared_model_dir("so101_tiny_smolvlm_v1", save_smolvlm)


def save_siglip_vision(folder: Path, image_size: int = 32, seed: int = 0, **sizes) -> Path:
    """A SigLIP vision tower (the class google/siglip2-base-patch16-256 loads as), random weights, saved like a
    Hub checkpoint. Default: tiny (32x32 input, 8x8 patches, width 32); pass the real sizes for benchmarks."""
    import torch
    from transformers import SiglipVisionConfig, SiglipVisionModel

    torch.manual_seed(seed)
    tiny = {"patch_size": 8, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}
    config = SiglipVisionConfig(image_size=image_size, **({"intermediate_size": 64} | tiny | sizes))
    SiglipVisionModel(config).save_pretrained(folder)
    return folder


def tiny_siglip_dir() -> Path:
    return shared_model_dir("so101_tiny_siglip_v1", save_siglip_vision)
