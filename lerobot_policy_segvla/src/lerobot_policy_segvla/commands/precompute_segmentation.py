"""`segvla-precompute`: add SegVLA's pooled Mask2Former scores, or with --segmenter_path the suite's segmenter's, to an
existing LeRobotDataset.

The upstream SegVLA notes' option A (precompute). For every camera in the feature map it stores what the online
`SegVLAAddSegmentationStep` writes, float32 (C, g, g) per frame (packed into int64 words, `pack_scores`; the policy
reads them back), computed by the same `Mask2FormerSegmenter`, so a policy trained on the new columns gets the cues
the online step gives on the same frames. The full score map (C x S/4 x S/4) is never stored: 9.8 MB per
camera-frame for 150 classes at 512^2, against 38.4 kB pooled on an 8 x 8 grid.

A front end on `so101_policy_common.precompute` (shared with `segdepth-precompute`): each batch of scores
goes to `.<output>.partial/shards/` (atomic write), so an interrupted run started again with the same arguments
skips what is done. The new dataset is written by LeRobot's `dataset_tools.modify_features` to `.<output>.tmp`,
read back, then renamed into place; the source is not touched.

    segvla-precompute --dataset.repo_id=local/twin_demo --dataset.root=data/twin_demo \\
        --feature_map='{"observation.images.front": "observation.segmentation.front",
                        "observation.images.wrist": "observation.segmentation.wrist"}' \\
        --model_path=facebook/mask2former-swin-large-ade-semantic --device=cuda --batch_size=16

With --segmenter_path=<so101-seg-train folder> the scores are the segmenter's pooled probabilities, computed by
SegVLA's own `SegmenterScoresStep`; their feature info records the segmenter's fingerprint, and a policy with
`perception_source=segmenter` and that segmenter trained on the copy reads them instead of running the segmenter
in the training process (another segmenter is refused when the pipeline is made).
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lerobot.configs import parser

from so101_policy_common.precompute import (
    SourceDatasetConfig,
    open_result,
    output_location,
    precompute_features,
)
from so101_run_infra.cli import prepare_command_line

from ..mask2former import (
    DEFAULT_FEATURE_MAP,
    DEFAULT_MODEL,
    DTYPES,
    MASK_STRIDE,
    Mask2FormerSegmenter,
    check_feature_map,
    check_segmentation_scores,
    pack_scores,
    packed_scores_length,
    score_grid,
)

logger = logging.getLogger(__name__)


def _bytes_report(num_classes: int, grid_size: int, input_size: int, cameras: int) -> dict[str, int]:
    side = input_size // MASK_STRIDE
    return {
        "stored_bytes_per_camera_frame": num_classes * grid_size * grid_size * 4,
        "stored_bytes_per_frame": cameras * num_classes * grid_size * grid_size * 4,
        "full_map_bytes_per_camera_frame": num_classes * side * side * 4,
    }


def _check_dataset(dataset, feature_map: dict[str, str]) -> None:
    features = dataset.meta.features
    for camera, key in feature_map.items():
        if camera not in features:
            cams = [k for k, f in features.items() if f["dtype"] in ("image", "video")]
            raise KeyError(f"camera '{camera}' is not in dataset {dataset.repo_id}; its cameras are {cams}")
        if features[camera]["dtype"] not in ("image", "video") or features[camera]["shape"][-1] != 3:
            raise ValueError(
                f"'{camera}' is {features[camera]['dtype']} {features[camera]['shape']}, not an RGB camera"
            )
        if key in features:
            raise ValueError(f"dataset {dataset.repo_id} already has '{key}'; pick another key or drop the column")


def write_previews(
    dataset,
    values,
    feature_map: dict[str, str],
    class_names: list[str],
    folder: Path,
    count: int,
    grid_size: int,
) -> list[Path]:
    """PNGs of `count` frames per camera: the frame | its grid's top class per cell, blended, one colour per class.

    The grid covers the image (never the padding), so it is stretched over the frame as stored. `values[key]`
    is indexed by dataset position (an array, or the stored column of the new dataset).
    """
    from torchvision.io import write_png

    folder.mkdir(parents=True, exist_ok=True)
    palette = torch.from_numpy(np.random.default_rng(0).integers(40, 256, (len(class_names), 3), dtype=np.uint8))
    written = []
    for position in np.linspace(0, len(dataset) - 1, num=min(count, len(dataset))).round().astype(int):
        frame = dataset[int(position)]
        for camera, key in feature_map.items():
            image = (frame[camera].clamp(0, 1) * 255).round().to(torch.uint8)  # (3, H, W)
            top = score_grid(torch.as_tensor(np.asarray(values[key][position])), len(class_names), grid_size)
            top = top.argmax(0)  # (g, g)
            cells = palette[top].permute(2, 0, 1)[None].float()
            overlay = torch.nn.functional.interpolate(cells, size=image.shape[-2:], mode="nearest")[0]
            blend = (0.5 * image.float() + 0.5 * overlay).round().to(torch.uint8)
            path = folder / f"{camera.rsplit('.', 1)[-1]}_frame{int(frame['index']):06d}.png"
            write_png(torch.cat([image, blend], dim=-1), str(path))
            names = [class_names[i] for i in top.flatten().unique().tolist()]
            logger.info("%s: top classes %s", path.name, names)
            written.append(path)
    return written


def scores_source(
    feature_map: dict[str, str],
    segmenter_path: str | Path | None,
    model: str,
    grid_size: int,
    input_size: int,
    device: str,
    dtype: str,
) -> tuple:
    """(pooled_scores(batch) -> one (B, C, g, g) per camera, num_classes, class_names, feature info, resume
    settings): Mask2Former's, or with `segmenter_path` the suite's segmenter's."""
    if segmenter_path is None:
        segmenter = Mask2FormerSegmenter(model, grid_size, input_size, device, dtype)
        num_classes = segmenter.num_classes
        class_names = [segmenter.id2label[i] for i in range(num_classes)]

        def pooled_scores(batch: dict) -> list[torch.Tensor]:
            return segmenter([batch[camera] for camera in feature_map])

        info = {"model": model, "grid_size": grid_size, "input_size": input_size, "class_names": class_names}
        settings = {"model": model, "grid_size": grid_size, "input_size": input_size, "dtype": dtype}
    else:  # the suite's segmenter, through the very step that computes its cues online
        from so101_core.segmentation import SEGMENTATION_CLASSES

        from ..cue_steps import SegmenterScoresStep

        num_classes = len(SEGMENTATION_CLASSES)
        class_names = [SEGMENTATION_CLASSES[i] for i in range(num_classes)]
        step = SegmenterScoresStep(
            feature_map=dict(feature_map), num_classes=num_classes, grid_size=grid_size, segmenter_path=segmenter_path
        )

        def pooled_scores(batch: dict) -> list[torch.Tensor]:
            return [step.scores(batch[camera]) for camera in feature_map]

        fingerprint = step.segmenter_fingerprint
        info = {
            "perception_source": "segmenter",
            "segmenter_path": str(segmenter_path),
            "segmenter_fingerprint": fingerprint,
            "image_size": step.image_size,
            "grid_size": grid_size,
            "class_names": class_names,
        }
        settings = {"segmenter_fingerprint": fingerprint, "grid_size": grid_size, "image_size": step.image_size}

    return pooled_scores, num_classes, class_names, info, settings


@dataclass
class PrecomputeSegmentationConfig:
    dataset: SourceDatasetConfig
    # camera key -> scores key, as JSON: '{"observation.images.front": "observation.segmentation.front"}';
    # None: the front and wrist cameras
    feature_map: dict[str, str] | None = None
    output_dir: str | None = None  # the new dataset's folder; default: <source root>_segmentation
    output_repo_id: str | None = None  # default: <repo_id>_segmentation
    model_path: str = DEFAULT_MODEL  # Mask2Former checkpoint: a Hub id or a local folder
    grid_size: int = 8
    input_size: int = 512  # SmolVLA's resize-with-pad side
    batch_size: int = 8  # frames per forward pass (x cameras)
    device: str | None = None  # None: cuda if available, else cpu
    dtype: str = "float32"
    num_workers: int = 0  # DataLoader workers decoding frames
    restart: bool = False  # discard partial work from an earlier run
    previews: int = 3  # frames to draw per camera in <output>_previews/
    # a so101-seg-train checkpoint folder: store the suite's segmenter's cues (what SegVLA's
    # perception_source=segmenter computes online; a policy trained on the copy reads them instead) rather than
    # Mask2Former's; --model_path, --input_size, --device and --dtype are then unused
    segmenter_path: str | None = None

    def __post_init__(self):
        if self.feature_map is None:
            self.feature_map = dict(DEFAULT_FEATURE_MAP)
        check_feature_map(self.feature_map)


def _packed_spec(info: dict, num_classes: int, grid_size: int) -> dict:
    """The stored feature of one camera's scores. Packed (see pack_scores): the policy's preprocessor and model read
    them back as float32 (C, g, g)."""
    layout = {
        "layout": f"float32 ({num_classes}, {grid_size}, {grid_size}) scores as little-endian int64 words (pack_scores)"
    }
    words = packed_scores_length(num_classes, grid_size)
    return {"dtype": "int64", "shape": [words], "names": None, "info": {**info, **layout}}


def precompute_segmentation(cfg: PrecomputeSegmentationConfig) -> dict:
    """Write a copy of `cfg.dataset` with pooled Mask2Former scores (or, with `cfg.segmenter_path`, the suite's
    segmenter's pooled probabilities) under `cfg.feature_map`'s keys; return a summary."""
    feature_map, grid_size, segmenter_path = cfg.feature_map, cfg.grid_size, cfg.segmenter_path
    check_feature_map(feature_map)
    if cfg.dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {list(DTYPES)}, got {cfg.dtype!r}")
    dataset = cfg.dataset.open()
    _check_dataset(dataset, feature_map)
    output_root, output_repo_id = output_location(dataset, cfg.output_dir, cfg.output_repo_id, "_segmentation")

    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    pooled_scores, num_classes, class_names, info, settings = scores_source(
        feature_map, segmenter_path, cfg.model_path, grid_size, cfg.input_size, device, cfg.dtype
    )

    def compute(batch: dict) -> dict[str, torch.Tensor]:
        pooled = pooled_scores(batch)
        scores = {key: s.float().cpu().contiguous() for key, s in zip(feature_map.values(), pooled, strict=True)}
        for key, value in scores.items():
            check_segmentation_scores(value, key, num_classes, grid_size)
        return {key: pack_scores(value) for key, value in scores.items()}

    spec = _packed_spec(info, num_classes, grid_size)
    summary = precompute_features(
        dataset,
        compute,
        {key: spec for key in feature_map.values()},
        output_root,
        output_repo_id,
        {**settings, "feature_map": feature_map},
        batch_size=cfg.batch_size,
        num_workers=cfg.num_workers,
        restart=cfg.restart,
        desc="Mask2Former" if segmenter_path is None else "segmenter",
    )
    if summary.get("already_made"):  # its previews were drawn when it was made
        return summary
    preview_dir = output_root.with_name(output_root.name + "_previews")
    if cfg.previews:
        stored = open_result(summary).hf_dataset
        columns = {key: _StoredColumn(stored, key) for key in feature_map.values()}
        write_previews(dataset, columns, feature_map, class_names, preview_dir, cfg.previews, grid_size)

    summary = {
        **summary,
        "num_classes": num_classes,
        "previews": str(preview_dir) if cfg.previews else None,
        **_bytes_report(num_classes, grid_size, cfg.input_size, len(feature_map)),
    }
    if segmenter_path is not None:  # Mask2Former's full map at input_size: not what the segmenter makes
        summary.pop("full_map_bytes_per_camera_frame")
    logger.info("wrote %s", json.dumps(summary))
    return summary


class _StoredColumn:
    """A column of a dataset's parquet data, indexed by position (for previews)."""

    def __init__(self, hf_dataset, key: str):
        self.hf_dataset, self.key = hf_dataset, key

    def __getitem__(self, position: int):
        return self.hf_dataset[int(position)][self.key]


@parser.wrap()
def precompute_segmentation_cli(cfg: PrecomputeSegmentationConfig) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = precompute_segmentation(cfg)
    if not summary.get("already_made"):  # over a copy already made, its one line said it all
        print(json.dumps(summary, indent=2))
    return summary


def main() -> None:
    prepare_command_line()
    precompute_segmentation_cli()


if __name__ == "__main__":
    main()
