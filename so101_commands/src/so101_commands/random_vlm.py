"""SmolVLM folders with random weights: a config, a word-level tokenizer for the twin's instructions, a processor.

No pretrained VLM can be downloaded on this project's machines, yet LeRobot's SmolVLA and HLRP's trunk load SmolVLM by
name (AutoConfig / AutoTokenizer.from_pretrained, which always ask the Hub). A local folder written here makes that
work offline: the tests use a tiny one, the twin-scale HLRP run a small one, the benchmarks SmolVLM2-500M's real
sizes.

    so101-make-random-vlm --size=twin --output_dir=outputs/hlrp/smolvlm_twin

Used by the recipes of two policies (SegVLA's SmolVLA backbone, HLRP's trunk). Needs so101_commands' `vlm` extra
(transformers).
"""

from dataclasses import dataclass
from pathlib import Path

from so101_run_infra.atomic import atomic_folder, write_json
from so101_run_infra.cli import prepare_command_line
from so101_run_infra.extras import missing_extra
from so101_run_infra.runs import made_here

from .extras import VLM

try:
    import torch  # noqa: F401  (the `vlm` extra's transformers, with torch and LeRobot, checked at import)
    import transformers  # noqa: F401
    from lerobot.configs import parser
except ModuleNotFoundError as err:  # installed without the `vlm` extra
    raise missing_extra(VLM, err) from None

# beside the model: the settings it was made with, so that a run again knows its own folder
RECORD = "random_vlm.json"

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
    weights: bool = False,
) -> Path:
    """Write a SmolVLM config, tokenizer and processor to `folder`; with `weights`, random weights too (so the
    folder loads with from_pretrained like a downloaded checkpoint). Without, SmolVLA / HLRP build it randomly.

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
    if weights:
        from transformers import AutoModel

        AutoModel.from_config(config).save_pretrained(folder)
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


# The twin-scale HLRP run's trunk: small enough to train on 2 CPU cores, two cameras at 96 px -> 16 tokens each.
TWIN_TEXT = {
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
}
TWIN_VISION = {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 3, "num_attention_heads": 4,
               "image_size": 96, "patch_size": 12}  # fmt: skip
SIZES = {
    "tiny": lambda folder: save_smolvlm(folder),
    "twin": lambda folder: save_smolvlm(folder, text=TWIN_TEXT, vision=TWIN_VISION, image_size=96, weights=True),
    "smolvlm2-500m": lambda folder: save_smolvlm2_500m_config(folder),
}


@dataclass
class RandomVLMConfig:
    # new (or empty) folder for the SmolVLM config, tokenizer, processor and weights; required. Run again over a
    # folder it made with the same settings, the command does nothing
    output_dir: Path | None = None
    # tiny (the tests), twin (the twin-scale HLRP run), smolvlm2-500m (SmolVLM2-500M's real sizes, config only)
    size: str = "twin"
    # torch's seed for the random weights
    seed: int = 0

    def __post_init__(self):
        if self.output_dir is None:
            raise ValueError("--output_dir is required: a new folder for the random SmolVLM")
        if self.size not in SIZES:
            raise ValueError(f"--size must be one of {', '.join(sorted(SIZES))}, got {self.size!r}")


def settings(cfg: RandomVLMConfig) -> dict:
    return {"size": cfg.size, "seed": cfg.seed}


@parser.wrap()
def make_random_vlm(cfg: RandomVLMConfig) -> None:
    if made_here(cfg.output_dir, RECORD, settings(cfg), "so101-make-random-vlm", "a SmolVLM"):
        print(f"{cfg.output_dir}: already made with these settings (size {cfg.size}, seed {cfg.seed}); nothing to do")
        return
    import torch

    torch.manual_seed(cfg.seed)
    with atomic_folder(cfg.output_dir) as staging:  # a killed run leaves no half model for the next to refuse
        SIZES[cfg.size](staging)
        write_json(staging / RECORD, settings(cfg))
    print(cfg.output_dir)


def main() -> None:
    prepare_command_line()
    make_random_vlm()


if __name__ == "__main__":
    main()
