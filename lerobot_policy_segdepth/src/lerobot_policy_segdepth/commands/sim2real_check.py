"""`segdepth-sim2real-check`: how far do the policy's actions move when perception comes from the models?

One SegDepth checkpoint, the same recorded twin frames, two preprocessors: the simulator's ground truth
(`perception_source=ground_truth`) and the EfficientViT segmenter + Depth Anything V2 on the RGB camera
(`perception_source=segmenter_depth_anything`).
Both paths see the same joint state, so any difference in the joint targets is due to perception alone.

    segdepth-sim2real-check --policy.path=outputs/segdepth/checkpoints/last/pretrained_model \
        --dataset.root=data/twin_gt --segmenter_path=outputs/segmenter/best --output_dir=outputs/sim2real

Prints per-joint action differences (follower units: degrees, gripper 0-100), the segmentation agreement and
the disparity error on the policy's SxS observation, writes them to `<output_dir>/sim2real_report.json` and a
side-by-side picture of the first frame (ground truth | models, ids and disparity) to `first_frame.png`.
"""

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from lerobot.configs import parser
from tqdm import tqdm

from so101_core import JOINT_NAMES, colorize_segmentation
from so101_run_infra.atomic import atomic_folder, write_text, write_with
from so101_run_infra.checkpoint_ref import CheckpointRef
from so101_run_infra.cli import prepare_command_line
from so101_run_infra.dataset_ref import DatasetRef

from ..configuration_segdepth import OBS_SEGDEPTH
from ..perception_sources import PERCEPTION_SOURCES

logger = logging.getLogger(__name__)
# The two perception sources compared, ground truth first ("segmenter" is a twin-side mix of both, not compared here).
MODELS = "segmenter_depth_anything"
COMPARED = ("ground_truth", MODELS)


def _load(policy_path: Path, device: str, perception_source: str, overrides: dict):
    from lerobot.configs import PreTrainedConfig
    from lerobot.policies import get_policy_class, make_pre_post_processors

    from ..processor_segdepth import with_perception_source

    config = PreTrainedConfig.from_pretrained(policy_path)
    config.pretrained_path = policy_path
    config.device = device
    policy = get_policy_class("segdepth").from_pretrained(policy_path, config=config).eval()
    pre, post = make_pre_post_processors(config, pretrained_path=str(policy_path))
    # the model overrides (segmenter_path, depth_model, ...) are for the side that runs models
    models = {} if PERCEPTION_SOURCES[perception_source].ground_truth else overrides
    with_perception_source(pre, config, perception_source=perception_source, **models)
    return policy, pre, post


def export_models_checkpoint(policy_path: Path, output_dir: Path, **model_overrides) -> Path:
    """Copy a SegDepth checkpoint to `output_dir` with perception_source="segmenter_depth_anything": same weights,
    normaliser and action pair, the preprocessor's observation steps swapped for the two models, config.json updated
    to match.
    The result is what `lerobot-rollout --policy.path=<output_dir>` on the real arm needs: the segmenter's weights
    are inside it (the preprocessor's so101_segmenter state file), Depth Anything is named by its Hub id or folder.
    Written to a temporary sibling folder first and moved into place, so an interrupted export leaves nothing
    half-made.
    """
    import shutil

    from lerobot.configs import PreTrainedConfig
    from lerobot.policies import make_pre_post_processors

    from ..processor_segdepth import with_perception_source

    output_dir = Path(output_dir)
    if output_dir.exists():
        raise FileExistsError(f"--export_dir {output_dir} exists; choose a new folder")
    config = PreTrainedConfig.from_pretrained(policy_path)
    config.pretrained_path = policy_path
    pre, _ = make_pre_post_processors(config, pretrained_path=str(policy_path))
    overrides = {k: v for k, v in model_overrides.items() if v is not None}
    models_config = with_perception_source(pre, config, perception_source=MODELS, **overrides)
    with atomic_folder(output_dir, create=False) as tmp:
        shutil.copytree(policy_path, tmp)
        # the old preprocessor's state files are named by step index, which the swap changes: none may linger
        for stale in tmp.glob("policy_preprocessor*.safetensors"):
            stale.unlink()
        models_config.pretrained_path = None
        models_config._save_pretrained(tmp)
        pre.save_pretrained(tmp)
    return output_dir


def _frame(dataset, index: int) -> dict:
    item = dataset[index]
    out = {k: v for k, v in item.items() if k.startswith("observation.")}
    out["task"] = item["task"]
    return out


def compare(
    policy_path: Path,
    data: "Sim2RealDatasetConfig",
    max_frames: int | None = None,
    device: str = "cpu",
    **model_overrides,
) -> tuple[dict, dict]:
    """Run both sources over the chosen episodes' frames of `data`; returns (report, first-frame observations per
    source)."""
    overrides = {k: v for k, v in model_overrides.items() if v is not None}
    runs = {source: _load(policy_path, device, source, overrides) for source in COMPARED}
    dataset_root, episodes = data.root, data.episodes
    dataset = data.open()
    bounds = dataset.meta.episodes
    chosen = episodes if episodes is not None else list(range(dataset.meta.total_episodes))
    indices: list[tuple[bool, int]] = []
    for ep in chosen:
        start, stop = int(bounds["dataset_from_index"][ep]), int(bounds["dataset_to_index"][ep])
        indices += [(i == start, i) for i in range(start, stop)]
    indices = indices[:max_frames] if max_frames else indices
    if not indices:
        raise ValueError(f"{dataset_root}: no frames selected (episodes={episodes}, max_frames={max_frames})")

    diffs, agreement, disparity_error = [], [], []
    first: dict[str, torch.Tensor] = {}
    for episode_start, index in tqdm(indices, desc="sim2real frames", unit="frame"):
        frame = _frame(dataset, index)
        actions, observations = {}, {}
        for source, (policy, pre, post) in runs.items():
            if episode_start:
                policy.reset()
            with torch.inference_mode():
                obs = pre(dict(frame))
                actions[source] = post(policy.select_action(obs))[0].double()
            observations[source] = obs[OBS_SEGDEPTH][0].cpu()
        diffs.append((actions[MODELS] - actions["ground_truth"]).numpy())
        gt, mo = observations["ground_truth"], observations[MODELS]
        agreement.append(float((gt[0] == mo[0]).float().mean()))
        disparity_error.append(float((gt[1] - mo[1]).abs().mean()))
        first = first or observations

    diffs = np.abs(np.stack(diffs))  # (N, 6)
    names = list(JOINT_NAMES)
    report = {
        "policy_path": str(policy_path),
        "dataset_root": str(dataset_root),
        "frames": len(indices),
        "action_abs_diff_mean": dict(zip(names, diffs.mean(0).round(4).tolist(), strict=True)),
        "action_abs_diff_max": dict(zip(names, diffs.max(0).round(4).tolist(), strict=True)),
        "action_abs_diff_mean_all": round(float(diffs.mean()), 4),
        "segmentation_pixel_agreement": round(float(np.mean(agreement)), 4),
        "disparity_mae_0_255": round(float(np.mean(disparity_error)), 3),
        "models": {k: str(v) for k, v in overrides.items()},
    }
    return report, first


def first_frame_picture(first: dict[str, torch.Tensor], scale: int = 4) -> np.ndarray:
    """ids | disparity, ground truth on top and models below, each scaled up `scale` times (nearest)."""
    rows = []
    for source in COMPARED:
        ids = colorize_segmentation(first[source][0].round().long().numpy())
        disparity = np.repeat(first[source][1].clamp(0, 255).round().byte().numpy()[..., None], 3, axis=-1)
        rows.append(np.concatenate([ids, disparity], axis=1))
    picture = np.concatenate(rows, axis=0)
    return picture.repeat(scale, axis=0).repeat(scale, axis=1)


@dataclass
class Sim2RealDatasetConfig(DatasetRef):
    """A twin dataset with RGB + ground truth: --dataset.root is required."""

    # the twin dataset's repo id
    repo_id: str = "local/twin_demo"
    # only these episodes, e.g. '[0,3]'; None: all
    episodes: list[int] | None = None


@dataclass
class Sim2RealCheckConfig:
    # the segdepth checkpoint (--policy.path: its pretrained_model folder); required
    policy: CheckpointRef = field(default_factory=CheckpointRef)
    dataset: Sim2RealDatasetConfig = field(default_factory=Sim2RealDatasetConfig)
    # compare at most this many frames; None: all of the chosen episodes
    max_frames: int | None = None
    # the segmenter (a save_segmenter folder); None: the checkpoint's own, if it has one
    segmenter_path: str | None = None
    # Depth Anything V2: Hub id or folder; None: the checkpoint's own
    depth_model: str | None = None
    segmenter_input_size: int | None = None
    depth_input_size: int | None = None
    device: str = "cpu"
    # where sim2real_report.json and first_frame.png go; None: print only
    output_dir: Path | None = None
    # also write a copy of the checkpoint with perception_source=segmenter_depth_anything here, for lerobot-rollout
    # on the real arm
    export_dir: Path | None = None


@parser.wrap()
def check_cli(cfg: Sim2RealCheckConfig) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    cfg.policy.require()
    if cfg.dataset.root is None or not Path(cfg.dataset.root).is_dir():
        raise NotADirectoryError(f"--dataset.root {cfg.dataset.root} is not a folder")
    models = {
        "segmenter_path": cfg.segmenter_path,
        "depth_model": cfg.depth_model,
        "segmenter_input_size": cfg.segmenter_input_size,
        "depth_input_size": cfg.depth_input_size,
    }
    report, first = compare(
        cfg.policy.path,
        cfg.dataset,
        max_frames=cfg.max_frames,
        device=cfg.device,
        **models,
    )
    print(f"sim2real check: {report['frames']} frames, same state, ground truth vs models perception")
    print(f"{'joint':<14} {'mean |da|':>10} {'max |da|':>10}")
    for joint, mean in report["action_abs_diff_mean"].items():
        print(f"{joint:<14} {mean:>10.3f} {report['action_abs_diff_max'][joint]:>10.3f}")
    print(f"segmentation pixel agreement {report['segmentation_pixel_agreement']:.3f}")
    print(f"disparity MAE (0-255)         {report['disparity_mae_0_255']:.2f}")
    if cfg.output_dir is not None:
        cfg.output_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(report, indent=2) + "\n"
        write_text(cfg.output_dir / "sim2real_report.json", text)
        from PIL import Image

        picture = Image.fromarray(first_frame_picture(first))
        write_with(cfg.output_dir / "first_frame.png", lambda p: picture.save(p, format="PNG"))
        print(f"wrote {cfg.output_dir / 'sim2real_report.json'} and first_frame.png")
    if cfg.export_dir is not None:
        export_models_checkpoint(cfg.policy.path, cfg.export_dir, **models)
        print(
            f"wrote {cfg.export_dir}: the checkpoint with perception_source={MODELS}, for lerobot-rollout --policy.path"
        )


def main() -> None:
    prepare_command_line()
    check_cli()


if __name__ == "__main__":
    main()
