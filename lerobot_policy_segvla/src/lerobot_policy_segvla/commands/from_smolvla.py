"""`segvla-from-smolvla`: a SmolVLA checkpoint -> a SegVLA checkpoint that acts exactly like it, with SegVLA's
processors, ready for `lerobot-train --policy.path=<it>`.

Why a command: `lerobot-train --policy.type=segvla --policy.pretrained_path=<smolvla>` loads the SmolVLA weights
into SegVLA, but LeRobot then loads the *processors* saved beside those weights, which are SmolVLA's: they lack
the step that computes the segmentation scores (ground truth or online Mask2Former), so that route only works
when the dataset already holds the scores (`segvla-precompute`). The checkpoint written here carries
SmolVLA's config and weights, the segmentation knobs given on the command line, zero-initialised cue projections
and SegVLA's own processors (with SmolVLA's normalisation stats, which lerobot-train replaces by the dataset's).

    segvla-from-smolvla --policy.path=lerobot/smolvla_base --output_dir=outputs/segvla_init \\
        --policy.perception_source=mask2former \\
        --policy.segmentation_feature_map='{"observation.images.camera1": "observation.segmentation.camera1"}' \\
        --policy.segmentation_task_classes='[plate]'
    lerobot-train --policy.path=outputs/segvla_init --dataset.repo_id=... --rename_map=...
"""

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import draccus
from lerobot.configs import parser
from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.smolvla import SmolVLAConfig
from lerobot.processor import NormalizerProcessorStep, PolicyProcessorPipeline

from so101_run_infra.atomic import atomic_folder, write_json
from so101_run_infra.checkpoints import save_policy
from so101_run_infra.cli import SettingsRefused, prepare_command_line
from so101_run_infra.runs import made_here

from ..configuration_segvla import SegVLAConfig
from ..modeling_segvla import SegVLAPolicy
from ..processor_segvla import make_segvla_pre_post_processors

PREPROCESSOR = "policy_preprocessor.json"
# what the conversion reads from the SmolVLA checkpoint: its config, weights and preprocessor (normalisation stats)
SOURCE_FILES = ["config.json", "model.safetensors", "policy_preprocessor*"]
# beside the checkpoint: what it was converted from, so that a run again knows its own output
RECORD = "segvla_from_smolvla.json"


def segvla_config(smolvla: SmolVLAConfig, overrides: list[str]) -> SegVLAConfig:
    """SmolVLA's saved fields, then the overrides (`--policy.x=v` or `--x=v`), parsed as lerobot-train would."""
    fields = draccus.encode(smolvla)
    fields.pop("type", None)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(fields, f)
    args = [arg.replace("--policy.", "--", 1) if arg.startswith("--policy.") else arg for arg in overrides]
    try:
        # draccus' default (YAML) reads the JSON file and parses the flags as lerobot-train does ("[plate]" works)
        return draccus.parse(SegVLAConfig, f.name, args=args)
    finally:
        Path(f.name).unlink()


def source_folder(smolvla_path: str) -> Path:
    """The folder the conversion reads: `smolvla_path` itself, or a Hub id's snapshot in the Hugging Face cache
    (fetched as `from_pretrained` would, only the files the conversion reads)."""
    if Path(smolvla_path).is_dir():
        return Path(smolvla_path)
    if smolvla_path.startswith((".", "/", "~")) or smolvla_path.count("/") > 1:  # a path, not a Hub id
        raise SettingsRefused(f"--policy.path={smolvla_path}: no such folder on this machine")
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(smolvla_path, allow_patterns=SOURCE_FILES))


def conversion_record(smolvla_path: str, overrides: list[str]) -> dict:
    """What a conversion is made of: the source, the sha256 of each file of it the conversion reads (a folder
    trained further under the same name, or a Hub id pushed to since, is another source) and the SegVLA flags
    given on top."""
    folder = source_folder(smolvla_path)
    digests = {}
    for path in sorted(p for pattern in SOURCE_FILES for p in folder.glob(pattern) if p.is_file()):
        with path.open("rb") as f:
            digests[path.name] = hashlib.file_digest(f, "sha256").hexdigest()
    # the flags as the user spells them, whichever of LeRobot's two forms they came in
    flags = [f"--policy.{a.removeprefix('--')}" if not a.startswith("--policy.") else a for a in overrides]
    return {"source": str(smolvla_path), "source_sha256": digests, "overrides": flags}


def convert(smolvla_path: str, output_dir: Path, overrides: list[str]) -> Path:
    output_dir = Path(output_dir)
    record = conversion_record(smolvla_path, overrides)
    if made_here(output_dir, RECORD, record, "segvla-from-smolvla", "a conversion"):
        print(f"{output_dir}: already made with these settings (SegVLA from {smolvla_path}); nothing to do")
        return output_dir
    smolvla = PreTrainedConfig.from_pretrained(smolvla_path)
    if not isinstance(smolvla, SmolVLAConfig) or isinstance(smolvla, SegVLAConfig):
        raise SettingsRefused(f"{smolvla_path} holds a '{smolvla.type}' checkpoint; expected a 'smolvla' one")
    config = segvla_config(smolvla, overrides)
    if not config.segmentation_feature_map:
        raise SettingsRefused(
            "give --policy.segmentation_feature_map (camera key -> scores key); without it SegVLA is SmolVLA"
        )
    config.pretrained_path = None  # the converted folder is the pretrained path from now on
    policy = SegVLAPolicy.from_pretrained(smolvla_path, config=config)

    try:
        saved = PolicyProcessorPipeline.from_pretrained(smolvla_path, config_filename=PREPROCESSOR)
    except (FileNotFoundError, OSError) as err:
        raise FileNotFoundError(f"{smolvla_path} has no {PREPROCESSOR} (a SmolVLA checkpoint saves one)") from err
    stats = next((s.stats for s in saved.steps if isinstance(s, NormalizerProcessorStep)), None)
    preprocessor, postprocessor = make_segvla_pre_post_processors(config, dataset_stats=stats)

    # Written beside the target and swapped into place: an interrupted run leaves no half checkpoint.
    with atomic_folder(output_dir) as staging:
        save_policy(staging, policy, preprocessor, postprocessor)
        write_json(staging / RECORD, record)
    print(f"SegVLA checkpoint written to {output_dir}; train it with lerobot-train --policy.path={output_dir}")
    return output_dir


@dataclass
class FromSmolVLAConfig:
    # --policy.path: the SmolVLA checkpoint, a Hub id or a local folder (required). Every other --policy.* flag is a
    # SegVLA config field set on top of SmolVLA's saved ones, as lerobot-train takes them, e.g.
    # --policy.perception_source=mask2former --policy.segmentation_task_classes='[plate]'
    policy: SegVLAConfig | None = None
    # new folder for the SegVLA checkpoint; required
    output_dir: Path | None = None

    @classmethod
    def __get_path_fields__(cls) -> list[str]:
        return ["policy"]


@parser.wrap()
def from_smolvla_cli(cfg: FromSmolVLAConfig) -> None:
    smolvla_path = parser.get_path_arg("policy")
    if not smolvla_path or cfg.output_dir is None:
        raise SettingsRefused(
            "give --policy.path (the SmolVLA checkpoint: a Hub id or a local folder) and --output_dir"
        )
    overrides = parser.get_yaml_overrides("policy") + (parser.get_cli_overrides("policy") or [])
    convert(smolvla_path, cfg.output_dir, overrides)


def main() -> None:
    prepare_command_line()
    from_smolvla_cli()


if __name__ == "__main__":
    main()
