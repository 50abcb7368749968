"""Ship a trained twin segmenter inside the so101_segmenter package, as the one `so101-seg-train
--model.init_from=shipped` fine-tunes from: its weights, a model card, and the checksums every load verifies.

    python scripts/ship_segmenter.py --run_dir=outputs/segmenter_twin --version=1.0 \\
        --looks='{none: outputs/segmenter_twin/eval_none.json, shifted: outputs/segmenter_twin/eval_shifted.json}'

`--run_dir` is a so101-seg-train output folder: its best/ is shipped; its train_config.yaml (the recipe) and
metrics.jsonl (epochs, training time, best validation mIoU) and, if there, test_metrics.json go into the card.
`--looks` names, per look of the twin, a JSON with `miou` and `per_class_iou` (`so101-seg-eval --output=FILE`, or a
run's test_metrics.json). The folder written (default: the package's `twin_segmenter/`, which the wheels carry) holds
config.json, model.safetensors, ship.json, README.md and SHA256SUMS; commit it, then rebuild the wheels.
"""

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lerobot.configs import parser

from so101_run_infra.cli import prepare_command_line
from so101_segmenter.classes import CLASS_NAMES
from so101_segmenter.model import load_config
from so101_segmenter.shipped import CHECKSUMS, FOLDER, SHIPPED, read_checksums, verify, write_artifact


@dataclass
class ShipConfig:
    # a so101-seg-train output folder (best/, train_config.yaml, metrics.jsonl); required
    run_dir: Path | None = None
    # the version the card and every fine-tuning log name, e.g. 1.0; required
    version: str | None = None
    # look of the twin -> JSON with `miou` and `per_class_iou` (so101-seg-eval --output, test_metrics.json)
    looks: dict[str, Path] = field(default_factory=dict)
    # weights that only stand in until a trained segmenter ships: the card and every fine-tuning log say so
    placeholder: bool = False
    # a sentence for the card's recipe: what the run's files do not say (the data's render commands, ...)
    notes: str = ""
    # where the shipped folder goes: the package's own by default
    output_dir: Path = FOLDER

    def __post_init__(self) -> None:
        if self.run_dir is None or not self.version:
            raise ValueError("--run_dir (a so101-seg-train output folder) and --version are required")

    def check_files(self) -> None:
        if not (self.run_dir / "best").is_dir():
            raise FileNotFoundError(f"--run_dir={self.run_dir}: {self.run_dir / 'best'} does not exist (expected a "
                                    f"so101-seg-train output folder)")  # fmt: skip
        for look, path in self.looks.items():
            if not Path(path).is_file():
                raise FileNotFoundError(f"--looks: {path} (look {look!r}) does not exist")


def _scores(path: Path, look: str) -> dict:
    data = json.loads(Path(path).read_text())
    if not isinstance(data.get("miou"), float) or not isinstance(data.get("per_class_iou"), dict):
        raise ValueError(f"--looks: {path} (look {look!r}) has no 'miou' and 'per_class_iou' (expected the JSON of "
                         f"so101-seg-eval --output or a run's test_metrics.json)")  # fmt: skip
    keep = ("miou", "per_class_iou", "frames", "dataset")
    return {key: data[key] for key in keep if key in data}


def _training(run_dir: Path) -> dict:
    """Epochs run, training time and best validation mIoU, from the run's metrics.jsonl."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return {}
    epochs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not epochs:
        return {}
    best = max(epochs, key=lambda e: e["val_miou"])
    return {"epochs_run": len(epochs), "train_time_s": epochs[-1].get("elapsed_s"), "best_val_miou": best["val_miou"],
            "best_epoch": best["epoch"] + 1}  # fmt: skip


def manifest(cfg: ShipConfig) -> dict:
    looks = {look: _scores(path, look) for look, path in cfg.looks.items()}
    test = cfg.run_dir / "test_metrics.json"
    if test.is_file() and "test" not in looks:
        looks["test"] = _scores(test, "test")
    recipe = cfg.run_dir / "train_config.yaml"
    return {
        "version": cfg.version,
        "placeholder": cfg.placeholder,
        "source": str(cfg.run_dir),
        "notes": cfg.notes,
        "architecture": load_config(cfg.run_dir / "best").to_dict(),
        "training": _training(cfg.run_dir),
        "recipe": recipe.read_text() if recipe.is_file() else None,
        "miou_per_look": looks,
    }


def model_card(info: dict) -> str:
    """The README.md of the shipped folder: what it is, how to fine-tune from it, its recipe and mIoU per look."""
    classes = [name for i, name in enumerate(CLASS_NAMES) if i]
    lines = [f"# The twin segmenter shipped with so101_segmenter, version {info['version']}", ""]
    if info["placeholder"]:
        lines += ["**PLACEHOLDER: these weights only stand in until a trained twin segmenter ships. They are not a",
                  "working segmenter; do not judge fine-tuning by them.**", ""]  # fmt: skip
    arch = info["architecture"]
    lines += [
        f"EfficientViT ({arch['backbone']}) + FPN ({arch['fpn_channels']} channels), {arch['num_classes']} classes: "
        f"0 unlabelled, {', '.join(f'{i} {n}' for i, n in enumerate(classes, start=1))}; mIoU is over classes 1-5.",
        "",
        "Fine-tune it on labelled frames of your arm (no render or training first):",
        "",
        "```bash",
        f"so101-seg-train --data.path=data/real_v0 --data.test_fraction=0.15 --model.init_from={SHIPPED} "
        "--output_dir=outputs/segmenter",
        "```",
        "",
        f"Every load checks these files against `{CHECKSUMS}` (`sha256sum -c {CHECKSUMS}` does the same by hand).",
        "",
        "## mIoU per look",
        "",
    ]
    looks = info["miou_per_look"]
    if looks:
        lines += [f"| look | frames | {' | '.join(classes)} | mIoU (1-5) |", "|---" * (len(classes) + 3) + "|"]
        for look, s in looks.items():
            iou = [s["per_class_iou"].get(name) for name in classes]
            cells = " | ".join("n/a" if v is None else f"{v:.3f}" for v in iou)
            lines.append(f"| {look} | {s.get('frames', '')} | {cells} | **{s['miou']:.3f}** |")
    else:
        lines.append("Not measured.")
    training = info["training"]
    lines += ["", "## Recipe", "", f"From `{info['source']}`." + (f" {info['notes']}" if info["notes"] else "")]
    if training:
        minutes = f", {training['train_time_s'] / 60:.1f} min of training" if training.get("train_time_s") else ""
        lines.append(f"{training['epochs_run']} epochs{minutes}; best validation mIoU {training['best_val_miou']:.3f} "
                     f"(epoch {training['best_epoch']}).")  # fmt: skip
    if info["recipe"]:
        lines += ["", "```yaml", info["recipe"].rstrip(), "```"]
    return "\n".join(lines) + "\n"


@parser.wrap()
def ship(cfg: ShipConfig) -> Path:
    cfg.check_files()
    info = manifest(cfg)
    out = write_artifact(cfg.run_dir / "best", cfg.output_dir, info, model_card(info))
    verify(out)
    digest = read_checksums(out)["model.safetensors"]
    looks = ", ".join(f"{look} {s['miou']:.3f}" for look, s in info["miou_per_look"].items()) or "no looks scored"
    print(f"shipped {cfg.run_dir / 'best'} as version {cfg.version}{' (placeholder)' if cfg.placeholder else ''} "
          f"to {out}: model.safetensors sha256 {digest[:16]}..., mIoU {looks}")  # fmt: skip
    return out


def main() -> None:
    prepare_command_line()
    ship()


if __name__ == "__main__":
    sys.exit(main())
