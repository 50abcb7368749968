"""`so101-training-copy`: a copy of a recording holding only the cameras a training recipe reads, built once and
rebuilt when the recording changes.

Why: LeRobot 0.6.1's reader decodes **every** video column of a dataset for every training sample, whatever the
policy reads, and `DatasetConfig` cannot select columns. A twin recording with RGB, depth and segmentation of two
cameras thus costs six decodes per sample (and six per frame of a delta window): on the 2-core Zen 5 kind, in one
process, ~20 ms of CPU per sample for SegVLA's robust_twin recipe, which reads only the two RGB cameras (~4 ms
on the copy), and ~24 ms for SegDepth's, which reads the wrist depth and segmentation (~9 ms on the copy)
(docs/results.md, "Does training wait for data?"). The same edit by hand is `lerobot-edit-dataset
--operation.type=remove_feature`, without the fingerprint and with LeRobot's depth-stats slip (`_keep_stored_stats`).

What: LeRobot's own `dataset_tools.modify_features` (what `lerobot-edit-dataset --operation.type=remove_feature`
runs) writes the copy without the camera features not in `--keep`; every other column (state, action, indices,
task) stays. The kept videos and the episodes' metadata are copied byte for byte, the stats as stored, so a
sample of the copy is the stock sample of the recording without the dropped cameras, bit for bit
(`tests/test_training_copy.py`). The copy is written beside, renamed into place, and holds
`meta/training_copy.json`: the source, the cameras kept and dropped, and the source's fingerprint (the content of
its `meta/` files, the size and modification time of its data and video files).

Built once, invalidated on change: run again, the command leaves an up-to-date copy alone (it prints so and copies
nothing) and rebuilds one whose source has changed since (re-recorded, episodes added) or that kept other
cameras. A folder that is not a training copy is never overwritten.

    so101-training-copy --dataset.repo_id=local/so101_twin_liftcube_shifted \\
        --dataset.root=outputs/data/so101_twin_liftcube_shifted \\
        --keep='[observation.images.front,observation.images.wrist]'
    lerobot-train --config_path=configs/robust_twin/segvla.yaml \\
        --dataset.repo_id=local/so101_twin_liftcube_shifted_train \\
        --dataset.root=outputs/data/so101_twin_liftcube_shifted_train
"""

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from lerobot.configs import parser

from so101_policy_common.precompute import SourceDatasetConfig
from so101_run_infra.atomic import replace_folder, staging_folder, write_json
from so101_run_infra.cli import OutputRefused, prepare_command_line

logger = logging.getLogger(__name__)

MANIFEST = "meta/training_copy.json"
MADE_BY = "so101-training-copy"
SUFFIX = "_train"


@dataclass
class TrainingCopyConfig:
    dataset: SourceDatasetConfig
    # the camera features (video or image) the recipe's policy reads; every other camera feature is left out of the
    # copy, every non-camera feature is kept
    keep: list[str] = field(default_factory=list)
    # the copy's folder; default: beside the source, its folder name + "_train"
    output_dir: str | None = None
    output_repo_id: str | None = None  # default: the source's repo id + "_train"


def source_fingerprint(root: str | Path) -> str:
    """What identifies a recording's content: the bytes of its `meta/` files and the size and modification time of
    every other file (data parquet, videos, images), hashed. A re-recorded or extended recording changes it."""
    root = Path(root)
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root).as_posix()
        if relative == MANIFEST:
            continue
        digest.update(relative.encode() + b"\0")
        if relative.startswith("meta/"):
            digest.update(path.read_bytes())
        else:
            stat = path.stat()
            digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
        digest.update(b"\0")
    return digest.hexdigest()


def plan(meta, keep: list[str]) -> list[str]:
    """The camera features to drop, refusing a `keep` entry that is not one of the recording's cameras."""
    cameras = list(meta.camera_keys)
    unknown = [key for key in keep if key not in cameras]
    if unknown:
        raise KeyError(f"--keep names {unknown}, not camera features of the recording; its cameras are {cameras}")
    if not keep:
        raise ValueError(f"--keep is empty: name the cameras the recipe reads (the recording's: {cameras})")
    return [key for key in cameras if key not in keep]


def read_manifest(output_root: Path) -> dict | None:
    path = output_root / MANIFEST
    return json.loads(path.read_text()) if path.is_file() else None


def make_training_copy(cfg: TrainingCopyConfig) -> dict:
    """Write (or leave, when up to date) the copy `cfg` describes; return its manifest plus `status`: `built`,
    `rebuilt` (the source or the cameras changed) or `up_to_date`."""
    meta = cfg.dataset.metadata()
    source_root = Path(meta.root)
    drop = plan(meta, cfg.keep)
    output_root = Path(cfg.output_dir) if cfg.output_dir else source_root.with_name(source_root.name + SUFFIX)
    if output_root.resolve() == source_root.resolve():
        raise ValueError(f"--output_dir is the recording itself ({source_root})")
    manifest = {
        "made_by": MADE_BY,
        "source_repo_id": meta.repo_id,
        "source_root": str(source_root.resolve()),
        "source_fingerprint": source_fingerprint(source_root),
        "kept_cameras": sorted(cfg.keep),
        "dropped_cameras": drop,
        "repo_id": cfg.output_repo_id or f"{meta.repo_id}{SUFFIX}",
    }
    status = "built"
    if output_root.exists():
        existing = read_manifest(output_root)
        if existing is None or existing.get("made_by") != MADE_BY:
            raise OutputRefused(f"{output_root} exists and is not a {MADE_BY} copy: remove it or pass --output_dir")
        if existing == manifest:
            logger.info("%s is up to date with %s", output_root, source_root)
            return {**manifest, "status": "up_to_date", "root": str(output_root)}
        status = "rebuilt"
        changed = sorted(k for k in manifest if existing.get(k) != manifest[k])
        logger.info("%s is out of date (%s changed): rebuilding", output_root, ", ".join(changed))
    _write_copy(cfg, drop, output_root, manifest)
    return {**manifest, "status": status, "root": str(output_root)}


def _write_copy(cfg: TrainingCopyConfig, drop: list[str], output_root: Path, manifest: dict) -> None:
    from lerobot.datasets.dataset_tools import modify_features

    dataset = cfg.dataset.open()
    staging = staging_folder(output_root, create=False)  # LeRobotDatasetMetadata.create makes the folder itself
    if drop:
        modify_features(dataset, remove_features=drop, output_dir=staging, repo_id=manifest["repo_id"])
        _keep_stored_stats(dataset.root, staging, drop)
    else:  # nothing to drop: LeRobot's tool refuses an empty edit; the copy is then the recording's files
        import shutil

        shutil.copytree(dataset.root, staging)
    if source_fingerprint(dataset.root) != manifest["source_fingerprint"]:
        raise RuntimeError(f"{dataset.root} changed while it was being copied; run the command again")
    write_json(staging / MANIFEST, manifest)
    replace_folder(staging, output_root)


def _keep_stored_stats(source_root: Path, staging: Path, drop: list[str]) -> None:
    """The recording's stats as stored, without the dropped cameras. LeRobot 0.6.1's `modify_features` writes the
    source's stats as loaded, and loading rescales depth stats to the read unit (m -> mm) in place, so its copy
    would hold depth stats 1000x too large, rescaled again on every load."""
    from lerobot.datasets.io_utils import load_stats, write_stats

    stats = load_stats(Path(source_root))
    if stats is not None:
        write_stats({key: value for key, value in stats.items() if key not in drop}, staging)


@parser.wrap()
def training_copy_main(cfg: TrainingCopyConfig) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    result = make_training_copy(cfg)
    print(
        f"{result['status']}: {result['root']} (repo_id {result['repo_id']}), cameras {result['kept_cameras']}"
        f" of {cfg.dataset.root}; train with --dataset.repo_id={result['repo_id']} --dataset.root={result['root']}"
    )
    return result


def main() -> None:
    prepare_command_line()
    training_copy_main()


if __name__ == "__main__":
    main()
