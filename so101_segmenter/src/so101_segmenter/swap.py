"""`so101-seg-swap`: a copy of a trained policy checkpoint whose preprocessor runs another segmenter.

A checkpoint's segmenter travels inside its saved preprocessor (`carried.py`), and LeRobot loads that preprocessor as
saved: `--policy.segmenter_path` on lerobot-eval's or lerobot-rollout's command line changes nothing. So a segmenter
adapted to your scene (`so101-seg-autolabel`, then `so101-seg-train --model.init_from=shipped`) goes into the
checkpoint here, in a new folder, without retraining the policy:

    so101-seg-swap --policy.path=outputs/segdepth/checkpoints/last/pretrained_model \\
        --segmenter_path=outputs/my_segmenter/best --output_dir=outputs/segdepth_my_scene

Every step that carries a segmenter (SegDepth's `so101_segmenter`, SegVLA's `segvla_segmenter_scores`) gets the new
weights and config, and records the folder and the sha256 of its weights file (`segmenter_source`); config.json's
segmenter path follows. The new segmenter must have the old one's classes, and a depth head where the policy reads
its disparity. Everything else is copied unchanged. Run again with the same arguments over its own output, it says so
and exits; over anything else it refuses.
"""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from lerobot.configs import parser

from so101_run_infra.atomic import atomic_folder, save_safetensors, write_json
from so101_run_infra.cli import prepare_command_line

from .model import WEIGHTS_NAME, load_segmenter
from .shipped import is_shipped, resolve_init_from, sha256

PREPROCESSOR = "policy_preprocessor.json"
CONFIG_PATH_KEYS = ("segmenter_path", "segmentation_segmenter_path")  # SegDepth's, SegVLA's


@dataclass
class SwapConfig:
    # the segmenter to put in: a so101-seg-train folder (<output_dir>/best) or `shipped`; required
    segmenter_path: str | None = None
    # the new checkpoint folder; --policy.path is left as it is
    output_dir: Path | None = None

    @classmethod
    def __get_path_fields__(cls) -> list[str]:
        return ["policy"]  # --policy.path=<pretrained_model folder>, LeRobot's spelling, read by the command


def segmenter_source(folder: str | Path) -> dict:
    """What a saved pipeline records of the segmenter it reads: the folder, and its weights file's sha256."""
    folder = Path(folder)
    return {"path": str(folder), "sha256": sha256(folder / WEIGHTS_NAME)}


def carried_steps(preprocessor: dict) -> list[dict]:
    """The saved pipeline's steps that carry a segmenter (their config holds `segmenter_config`)."""
    return [step for step in preprocessor["steps"] if "segmenter_config" in step.get("config", {})]


def swap_segmenter(checkpoint: Path, folder: Path, output_dir: Path) -> list[dict]:
    """Copy `checkpoint` to `output_dir` with the segmenter of `folder` in every step that carries one; returns what
    each step had (its `segmenter_source`, or its config when it recorded none)."""
    pre_path = checkpoint / PREPROCESSOR
    if not pre_path.is_file():
        raise FileNotFoundError(f"--policy.path {checkpoint} has no {PREPROCESSOR}: is it a pretrained_model folder?")
    preprocessor = json.loads(pre_path.read_text())
    steps = carried_steps(preprocessor)
    if not steps:
        names = [s.get("registry_name") for s in preprocessor["steps"]]
        raise ValueError(f"{pre_path} runs no segmenter (its steps: {names}): there is nothing to swap")
    model = load_segmenter(folder)
    new_config, source = model.config.to_dict(), segmenter_source(folder)
    previous = []
    for step in steps:
        config = step["config"]
        old = config["segmenter_config"]
        if old.get("num_classes") != new_config["num_classes"]:
            raise ValueError(f"{folder} is a segmenter of {new_config['num_classes']} classes; the checkpoint's "
                             f"{step['registry_name']} reads {old.get('num_classes')}")  # fmt: skip
        if config.get("disparity_keys") and not new_config.get("depth_head"):
            raise ValueError(
                f"{folder} has no depth head, and the checkpoint's {step['registry_name']} reads its disparity "
                "(perception_source=segmenter_depth): train it with --model.depth_head=true"
            )
        if not step.get("state_file"):
            raise ValueError(f"{pre_path}: its {step['registry_name']} keeps no state file; re-save the checkpoint")
        previous.append(config.get("segmenter_source") or {"segmenter_config": old})
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_folder(output_dir) as staging:
        shutil.copytree(checkpoint, staging, dirs_exist_ok=True)
        for step in steps:
            step["config"] |= {"segmenter_config": new_config, "segmenter_source": source}
            for key in ("checkpoint", "segmenter_path"):  # the steps' folder fields: SegDepth's, SegVLA's
                if key in step["config"]:
                    step["config"][key] = str(folder)
            save_safetensors(state, staging / step["state_file"])
        write_json(staging / PREPROCESSOR, preprocessor, indent=2)
        config_path = staging / "config.json"
        if config_path.is_file():
            policy = json.loads(config_path.read_text())
            policy |= {k: str(folder) for k in CONFIG_PATH_KEYS if policy.get(k)}
            write_json(config_path, policy, indent=4)
    return previous


def already_swapped(output_dir: Path, folder: Path) -> bool:
    """`output_dir` holds a swap to this segmenter already (run again); refuses anything else there."""
    pre_path = output_dir / PREPROCESSOR
    if not output_dir.exists():
        return False
    steps = carried_steps(json.loads(pre_path.read_text())) if pre_path.is_file() else []
    wanted = segmenter_source(folder)
    if steps and all(s["config"].get("segmenter_source") == wanted for s in steps):
        return True
    raise FileExistsError(
        f"--output_dir {output_dir} exists and is not this checkpoint with {folder}'s segmenter (sha256 "
        f"{wanted['sha256'][:12]}...): choose a new folder"
    )


@parser.wrap()
def swap_main(cfg: SwapConfig) -> None:
    checkpoint = parser.get_path_arg("policy")
    if not checkpoint or not cfg.segmenter_path or not cfg.output_dir:
        raise ValueError("so101-seg-swap needs --policy.path=<pretrained_model folder>, --segmenter_path=<folder or "
                         "shipped> and --output_dir=<new folder>")  # fmt: skip
    folder = resolve_init_from(cfg.segmenter_path) if is_shipped(cfg.segmenter_path) else Path(cfg.segmenter_path)
    if already_swapped(cfg.output_dir, folder):
        print(f"{cfg.output_dir}: already this checkpoint with {folder}'s segmenter; nothing to do")
        return
    previous = swap_segmenter(Path(checkpoint), folder, cfg.output_dir)
    source = segmenter_source(folder)
    print(f"{len(previous)} step(s) now read {folder} (sha256 {source['sha256']}); before: "
          f"{[p.get('sha256', 'unrecorded')[:12] if 'sha256' in p else 'unrecorded' for p in previous]}")  # fmt: skip
    print(f"written: {cfg.output_dir}; evaluate or roll it out with --policy.path={cfg.output_dir}")


def main() -> None:
    prepare_command_line()
    swap_main()


if __name__ == "__main__":
    main()
