"""Tiny, random, offline backbones saved to local folders, for tests that must run the real loading code.

LeRobot's SmolVLA always calls AutoConfig / AutoProcessor / AutoTokenizer.from_pretrained(vlm_model_name)
(pitfall R7); a local folder holding a SmolVLM config plus processor and tokenizer files makes that work with
no network. The same function writes the real SmolVLM2-500M sizes for the benchmark (random weights).
"""

from __future__ import annotations

from pathlib import Path

# The words the twin's task and the tests use; everything else maps to <unk>.
_WORDS = ["pick", "up", "the", "red", "cube", "and", "lift", "it", ".", "reach", "move", "to", "a", "grasp", "place"]
_SPECIAL = {
    "fake_image_token": "<fake_token_around_image>",
    "image_token": "<image>",
    "global_image_token": "<global-img>",
    "end_of_utterance_token": "<end_of_utterance>",
}


def _tokenizer(vocab_size: int):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    base = ["<pad>", "<unk>", "<s>", "</s>", *_SPECIAL.values(), "\n"]
    vocab = {tok: i for i, tok in enumerate([*base, *_WORDS])}
    if len(vocab) > vocab_size:
        raise ValueError(f"vocab_size {vocab_size} is smaller than the {len(vocab)} tokens the tiny tokenizer needs")
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        extra_special_tokens=dict(_SPECIAL),
    )


def save_smolvlm(
    folder: Path,
    *,
    text: dict | None = None,
    vision: dict | None = None,
    scale_factor: int = 2,
    image_size: int = 32,
) -> Path:
    """Write a SmolVLM config, tokenizer and processor to `folder` (no weights: SmolVLA builds them randomly).

    Defaults are tiny; `text` / `vision` override the llama text config and the SigLIP vision config.
    """
    from transformers import SmolVLMConfig, SmolVLMImageProcessor, SmolVLMProcessor, SmolVLMVideoProcessor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = _tokenizer(vocab_size=(text or {}).get("vocab_size", 64))
    special_ids = {name: tokenizer.convert_tokens_to_ids(tok) for name, tok in _SPECIAL.items()}
    text_config = {
        "model_type": "llama",
        "vocab_size": 64,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "max_position_embeddings": 512,
        "pad_token_id": 0,
        **(text or {}),
    }
    vision_config = {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": image_size,
        "patch_size": 8,
        **(vision or {}),
    }
    config = SmolVLMConfig(
        text_config=text_config,
        vision_config=vision_config,
        scale_factor=scale_factor,
        image_token_id=special_ids["image_token"],
        pad_token_id=0,
    )
    config.save_pretrained(folder)
    image_processor = SmolVLMImageProcessor(
        size={"longest_edge": vision_config["image_size"]},
        max_image_size={"longest_edge": vision_config["image_size"]},
        do_image_splitting=False,
    )
    patches = vision_config["image_size"] // vision_config["patch_size"]
    SmolVLMProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=SmolVLMVideoProcessor(),
        image_seq_len=(patches // scale_factor) ** 2,
    ).save_pretrained(folder)
    return folder


# SmolVLM2-500M-Video-Instruct's published sizes (config.json on the Hub): SmolLM2-360M text, SigLIP-B/16 vision at 512.
SMOLVLM2_500M_TEXT = {
    "vocab_size": 49280,
    "hidden_size": 960,
    "intermediate_size": 2560,
    "num_hidden_layers": 32,
    "num_attention_heads": 15,
    "num_key_value_heads": 5,
    "head_dim": 64,
    "max_position_embeddings": 8192,
    "rope_theta": 100000.0,
    "rms_norm_eps": 1e-5,
    "tie_word_embeddings": False,
}
SMOLVLM2_500M_VISION = {
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "image_size": 512,
    "patch_size": 16,
}


def save_smolvlm2_500m_config(folder: Path) -> Path:
    """SmolVLM2-500M's architecture with the tiny tokenizer (the vocabulary size stays 49280)."""
    return save_smolvlm(folder, text=SMOLVLM2_500M_TEXT, vision=SMOLVLM2_500M_VISION, scale_factor=4, image_size=512)


def shared_model_dir(name: str, save) -> Path:
    """A model folder shared by every test process, written once (atomically) under the temp dir.

    Test cases list model paths at collection time and pass them to lerobot-* subprocesses, so the folder must
    exist before any fixture runs and outlive the test's tmp_path.
    """
    import os
    import shutil
    import tempfile

    folder = Path(tempfile.gettempdir()) / name
    if (folder / "config.json").is_file():
        return folder
    staging = Path(tempfile.mkdtemp(prefix=f"{name}_"))
    save(staging)
    try:
        os.replace(staging, folder)
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
