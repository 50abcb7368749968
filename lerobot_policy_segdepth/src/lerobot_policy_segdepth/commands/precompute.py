"""`segdepth-precompute`: a copy of a dataset that holds SegDepth's policy-ready observation, for fast training.

Why: LeRobot 0.6.1's dataset reader decodes every video column of a dataset for every frame of the policy's
delta window, and `DatasetConfig` cannot select columns. SegDepth with a frame stack of 3 on a twin recording
(RGB + depth + segmentation videos) thus decodes 9 video frames per sample, and `lerobot-train --policy.type=
segdepth` is bound by decoding (33-77 samples/s end to end against 412 samples/s of compute). The policy itself
only sees `observation.segdepth`, (2, S, S) per frame: class ids and disparity 0-255, a few kB.

What: this command runs **the policy's own observation steps** (`segdepth_observation_steps(config)`, the code
the preprocessor runs at inference) on batches of the source dataset's frames, and writes a new dataset with
`observation.segdepth` per frame: the uint8 (2, S, S) observation (channel 0 class ids, channel 1 disparity
0-255). The feature's `info` records what made it (camera, perception_source, image_size, num_classes, the source
dataset, the layout), and `meta/precompute.json` holds the whole manifest. The live pipeline ends by rounding to the
same uint8 grid, so the stored and the live observation are identical tensors.

Layout: by default the uint8 (2, S, S) bytes are stored as int64 words, shape (S*S/4,) (`pack_uint8`; the policy's
preprocessor unpacks them). LeRobot 0.6.1 returns array columns through Python lists converted element by element,
for every column of every row it reads (7 rows per sample with a frame stack of 3); a plain uint8 (2, 84, 84)
column made reading slower than decoding the videos (55 against 36 ms per sample measured here), the packed one
8x fewer elements (10 ms). `--pack=false` stores the plain uint8 (2, S, S) array; the policy reads both.

Frame stack: `--stack_frames=true` stores in each row the policy's whole frame stack, (T, ...) frames t-T+1..t of
the episode with its first frame repeated before its start, exactly the window LeRobot's delta indices would read.
A policy trained on it with `--policy.stacked_frames=true` asks LeRobot for no delta window, so each sample is one
row read instead of T rows of segdepth plus T of state: ~4x less loader CPU per sample on 2 cores (2.75 against
12.2 ms, `benchmarks/segdepth_train_throughput.py --threads=true`), which leaves the second core to a second torch
thread in the update (docs/results.md, "SegDepth training speed").

Raw frames: the copy drops the camera (video and image) features by default, since LeRobot would decode any video
column still in it for every sample (`--keep_videos=true` keeps them). The source dataset is never modified; its
path is in the feature's info and the manifest, so the raw frames stay at hand.

The policy takes either form: its saved preprocessor skips the observation steps when observation.segdepth is
already in the batch (training on the copy) and runs them on raw keys (lerobot-eval in the twin, the real arm);
`SegDepthConfig` accepts a dataset with observation.segdepth instead of the raw depth/segmentation keys, and
refuses one made for another image size, class count or camera before training starts.

The machinery (resumable shards, manifest, atomic rename, read-back check) is `so101_policy_common.precompute`,
shared with `segvla-precompute`. An existing output root is refused; an interrupted run
started again with the same settings resumes (other settings are refused unless `--restart=true`).

    segdepth-precompute --dataset.repo_id=local/liftcube --dataset.root=data/liftcube \\
        --output_dir=data/liftcube_segdepth --policy.image_size=84
    lerobot-train --policy.type=segdepth --dataset.repo_id=local/liftcube_segdepth \\
        --dataset.root=data/liftcube_segdepth ...
    segdepth-precompute --policy.path=CKPT --dataset.repo_id=... # the observation a trained checkpoint expects
"""

import json  # no `from __future__ import annotations`: LeRobot's parser.wrap reads the config type at runtime
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import torch
from lerobot.configs import parser
from lerobot.processor import PolicyProcessorPipeline
from lerobot.utils.feature_utils import dataset_to_policy_features

from so101_policy_common.precompute import (
    PolicyPrecomputeConfig,
    output_location,
    precompute_features,
    print_summary,
)
from so101_run_infra.cli import prepare_command_line

from ..configuration_segdepth import OBS_SEGDEPTH, SegDepthConfig
from ..observation_steps import pack_uint8, packed_length
from ..processor_segdepth import segdepth_observation_steps

logger = logging.getLogger(__name__)

MADE_BY = "segdepth-precompute"


@dataclass
class SegDepthPrecomputeConfig(PolicyPrecomputeConfig):
    command: ClassVar[str] = MADE_BY
    policy_class: ClassVar[type[SegDepthConfig]] = SegDepthConfig

    # The fields that shape the observation: --policy.camera, --policy.image_size, --policy.perception_source,
    # --policy.num_classes (and, from RGB, --policy.segmenter_path; for segmenter_depth_anything
    # --policy.depth_model, ...). `--policy.path=CKPT` takes them from a trained checkpoint instead.
    policy: SegDepthConfig = field(default_factory=lambda: SegDepthConfig(device="cpu", push_to_hub=False))
    pack: bool = True  # store the uint8 (2, S, S) bytes as int64 words (see the module docstring); false: plain uint8
    # each row holds the policy's frame stack (--policy.frame_stack frames); train with --policy.stacked_frames=true
    stack_frames: bool = False


def observation_info(config: SegDepthConfig, dataset) -> dict:
    """The stored feature's `info`: what made it (checked by SegDepthConfig against the training config) and the
    raw features the preprocessor reads at inference, (C, H, W), which a policy trained on the copy declares."""
    raw = dataset_to_policy_features(dataset.meta.features)
    keys = config.image_keys
    info = {
        "made_by": MADE_BY,
        "channels": ["class_ids", "disparity_0_255"],
        "camera": config.camera,
        "perception_source": config.perception_source,
        "image_size": config.image_size,
        "num_classes": config.num_classes,
        "source_repo_id": dataset.repo_id,
        "source_root": str(Path(dataset.root).resolve()),
        "raw_features": {key: list(raw[key].shape) for key in keys},
    }
    # the models' settings, as JSON holds them (a segmenter_path given as a Path is written as its text)
    for name in config.perception_record.recorded_fields:
        value = getattr(config, name)
        info[name] = value if isinstance(value, int | str) else str(value)
    return info


def _check_source(dataset, config: SegDepthConfig) -> None:
    features = dataset.meta.features
    if OBS_SEGDEPTH in features:
        raise ValueError(f"dataset {dataset.repo_id} already holds '{OBS_SEGDEPTH}': train on it directly")
    needed = config.image_keys
    missing = [key for key in needed if key not in features]
    if missing:
        cams = sorted(k for k, f in features.items() if f["dtype"] in ("image", "video"))
        raise KeyError(
            f"segdepth-precompute (perception_source={config.perception_source}, camera={config.camera}) needs "
            f"{missing} in dataset {dataset.repo_id}; its camera features are {cams}"
        )


def uint8_observation(segdepth: torch.Tensor, config: SegDepthConfig) -> torch.Tensor:
    """The steps' float (B, 2, S, S) -> uint8, refusing anything the uint8 grid or the class count cannot hold."""
    s = config.image_size
    if segdepth.ndim != 4 or tuple(segdepth.shape[1:]) != (2, s, s):
        raise ValueError(
            f"the observation steps gave '{OBS_SEGDEPTH}' {tuple(segdepth.shape)}, expected (B, 2, {s}, {s})"
        )
    if not torch.isfinite(segdepth).all() or (segdepth != segdepth.round()).any():
        raise ValueError(f"'{OBS_SEGDEPTH}' holds non-integer values: the last step must quantize")
    ids = segdepth[:, 0]
    if ids.min() < 0 or ids.max() >= config.num_classes:
        raise ValueError(
            f"class ids in '{OBS_SEGDEPTH}' span [{int(ids.min())}, {int(ids.max())}], beyond --policy.num_classes="
            f"{config.num_classes}"
        )
    if segdepth.min() < 0 or segdepth.max() > 255:
        raise ValueError(f"'{OBS_SEGDEPTH}' spans [{float(segdepth.min())}, {float(segdepth.max())}], not 0-255")
    return segdepth.to(torch.uint8)


def precompute_segdepth(cfg: SegDepthPrecomputeConfig) -> dict:
    """Write the copy described by `cfg`; return a summary of the run."""
    config = cfg.policy
    dataset = cfg.dataset.open()
    _check_source(dataset, config)
    output_root, output_repo_id = output_location(dataset, cfg.output_dir, cfg.output_repo_id, "_segdepth")

    steps = PolicyProcessorPipeline(steps=segdepth_observation_steps(config), name="segdepth_precompute")

    def compute(batch: dict) -> dict[str, torch.Tensor]:
        observation = {k: v for k, v in batch.items() if k.startswith("observation.")}
        segdepth = uint8_observation(steps(observation)[OBS_SEGDEPTH], config)
        return {OBS_SEGDEPTH: pack_uint8(segdepth) if cfg.pack else segdepth}

    s = config.image_size
    info = observation_info(config, dataset)
    if cfg.pack:
        info["layout"] = f"uint8 (2, {s}, {s}) packed into little-endian int64 words (pack_uint8)"
        spec = {"dtype": "int64", "shape": [packed_length(2, s)], "names": None, "info": info}
    else:
        info["layout"] = f"uint8 (2, {s}, {s})"
        spec = {"dtype": "uint8", "shape": [2, s, s], "names": ["channel", "height", "width"], "info": info}
    history = {}
    if cfg.stack_frames:
        t = config.frame_stack
        info["frame_stack"] = t
        info["layout"] = f"{t} frames, oldest first, each {info['layout']}"
        spec["shape"] = [t, *spec["shape"]]
        spec["names"] = None
        history = {OBS_SEGDEPTH: t}
    removed = [] if cfg.keep_videos else list(dataset.meta.camera_keys)
    settings = {
        "made_by": MADE_BY,
        "observation": {k: v for k, v in info.items() if k not in ("made_by", "channels")},
        "observation_steps": [
            {"step": type(step).__name__, **step.get_config()} for step in segdepth_observation_steps(config)
        ],
    }
    summary = precompute_features(
        dataset,
        compute,
        {OBS_SEGDEPTH: spec},
        output_root,
        output_repo_id,
        settings,
        remove_features=removed,
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        restart=cfg.restart,
        desc="segdepth",
        read_keys=config.image_keys,
        history=history,
    )
    summary["stored_bytes_per_frame"] = 2 * s * s * history.get(OBS_SEGDEPTH, 1)
    logger.info("wrote %s", json.dumps(summary))
    return summary


@parser.wrap()
def precompute_main(cfg: SegDepthPrecomputeConfig) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = precompute_segdepth(cfg)
    flags = f"--policy.camera={cfg.policy.camera} --policy.image_size={cfg.policy.image_size} "
    flags += f"--policy.num_classes={cfg.policy.num_classes}"
    if cfg.stack_frames:
        flags += f" --policy.frame_stack={cfg.policy.frame_stack} --policy.stacked_frames=true"
    print_summary(summary, "segdepth", flags)
    return summary


def main() -> None:
    prepare_command_line(plugins=True)
    precompute_main()


if __name__ == "__main__":
    main()
