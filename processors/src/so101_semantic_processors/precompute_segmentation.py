"""`so101-precompute-segmentation`: add SegVLA's pooled Mask2Former scores to an existing LeRobotDataset.

Seed 000's option A. For every camera in the feature map it stores what the online `SegVLAAddSegmentationStep`
writes, float32 (C, g, g) per frame, computed by the same `Mask2FormerSegmenter`, so a policy trained on the new
columns gets the cues the online step gives on the same frames. The full score map (C x S/4 x S/4) is never
stored: 9.8 MB per camera-frame for 150 classes at 512^2, against 38.4 kB pooled on an 8 x 8 grid.

Work is checkpointed: each batch of scores goes to `.<output>.partial/shards/` (atomic write), so an interrupted
run started again with the same arguments skips what is done. The new dataset is written by LeRobot's
`dataset_tools.modify_features` to `.<output>.tmp`, checked, then renamed into place; the source is not touched.

    so101-precompute-segmentation --repo-id local/twin_demo --root data/twin_demo \\
        --feature-map observation.images.front=observation.segmentation.front \\
        --feature-map observation.images.wrist=observation.segmentation.wrist \\
        --model facebook/mask2former-swin-large-ade-semantic --device cuda --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from .mask2former import (
    DEFAULT_FEATURE_MAP,
    DEFAULT_MODEL,
    DTYPES,
    MASK_STRIDE,
    Mask2FormerSegmenter,
    check_feature_map,
    check_segmentation_scores,
)

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def parse_feature_map(items: list[str] | None) -> dict[str, str]:
    """`camera=key` pairs (or one JSON object) -> {camera: key}; none given -> the front/wrist default."""
    if not items:
        return dict(DEFAULT_FEATURE_MAP)
    if len(items) == 1 and items[0].lstrip().startswith("{"):
        mapping = json.loads(items[0])
    else:
        mapping = {}
        for item in items:
            camera, sep, key = item.partition("=")
            if not sep or not camera or not key:
                raise ValueError(f"--feature-map expects CAMERA_KEY=SEGMENTATION_KEY, got {item!r}")
            mapping[camera.strip()] = key.strip()
    check_feature_map(mapping)
    return mapping


def _atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
    os.replace(tmp, path)


def _bytes_report(num_classes: int, grid_size: int, input_size: int, cameras: int) -> dict[str, int]:
    side = input_size // MASK_STRIDE
    return {
        "stored_bytes_per_camera_frame": num_classes * grid_size * grid_size * 4,
        "stored_bytes_per_frame": cameras * num_classes * grid_size * grid_size * 4,
        "full_map_bytes_per_camera_frame": num_classes * side * side * 4,
    }


def _done_positions(shard_dir: Path) -> set[int]:
    done: set[int] = set()
    for shard in sorted(shard_dir.glob("shard_*.safetensors")):
        done.update(load_file(shard)["positions"].tolist())
    return done


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
    values: dict[str, np.ndarray],
    feature_map: dict[str, str],
    class_names: list[str],
    folder: Path,
    count: int,
) -> list[Path]:
    """PNGs of `count` frames per camera: the frame | its grid's top class per cell, blended, one colour per class.

    The grid covers the image (never the padding), so it is stretched over the frame as stored.
    """
    from torchvision.io import write_png

    folder.mkdir(parents=True, exist_ok=True)
    palette = torch.from_numpy(np.random.default_rng(0).integers(40, 256, (len(class_names), 3), dtype=np.uint8))
    written = []
    for position in np.linspace(0, len(dataset) - 1, num=min(count, len(dataset))).round().astype(int):
        frame = dataset[int(position)]
        for camera, key in feature_map.items():
            image = (frame[camera].clamp(0, 1) * 255).round().to(torch.uint8)  # (3, H, W)
            top = torch.from_numpy(values[key][position]).argmax(0)  # (g, g)
            cells = palette[top].permute(2, 0, 1)[None].float()
            overlay = torch.nn.functional.interpolate(cells, size=image.shape[-2:], mode="nearest")[0]
            blend = (0.5 * image.float() + 0.5 * overlay).round().to(torch.uint8)
            path = folder / f"{camera.rsplit('.', 1)[-1]}_frame{int(frame['index']):06d}.png"
            write_png(torch.cat([image, blend], dim=-1), str(path))
            names = [class_names[i] for i in top.flatten().unique().tolist()]
            logger.info("%s: top classes %s", path.name, names)
            written.append(path)
    return written


def precompute_segmentation(
    repo_id: str,
    root: str | Path | None,
    feature_map: dict[str, str],
    output_root: str | Path | None = None,
    output_repo_id: str | None = None,
    model: str = DEFAULT_MODEL,
    grid_size: int = 8,
    input_size: int = 512,
    batch_size: int = 8,
    device: str = "cpu",
    dtype: str = "float32",
    num_workers: int = 0,
    restart: bool = False,
    previews: int = 3,
) -> dict:
    """Write a copy of the dataset with pooled Mask2Former scores under `feature_map`'s keys; return a summary."""
    from lerobot.datasets.dataset_tools import modify_features
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    check_feature_map(feature_map)
    if dtype not in DTYPES:
        raise ValueError(f"--dtype must be one of {list(DTYPES)}, got {dtype!r}")
    dataset = LeRobotDataset(repo_id, root=root)
    _check_dataset(dataset, feature_map)
    source_root = Path(dataset.root)
    output_root = Path(output_root) if output_root else source_root.with_name(source_root.name + "_segmentation")
    output_repo_id = output_repo_id or f"{repo_id}_segmentation"
    if output_root.exists():
        raise FileExistsError(f"{output_root} exists; remove it or pass another --output-root")

    stage = output_root.with_name(f".{output_root.name}.partial")
    shard_dir = stage / "shards"
    if restart and stage.exists():
        shutil.rmtree(stage)
    manifest = {
        "source_repo_id": repo_id,
        "source_root": str(source_root.resolve()),
        "source_frames": len(dataset),
        "model": model,
        "grid_size": grid_size,
        "input_size": input_size,
        "dtype": dtype,
        "feature_map": feature_map,
    }
    if (stage / MANIFEST).exists():
        previous = json.loads((stage / MANIFEST).read_text())
        if previous != manifest:
            changed = sorted(k for k in manifest if previous.get(k) != manifest[k])
            raise ValueError(
                f"{stage} holds partial work made with other settings ({changed}); pass --restart to discard it"
            )
        logger.info("resuming from %s", stage)
    shard_dir.mkdir(parents=True, exist_ok=True)
    _atomic_json(stage / MANIFEST, manifest)

    segmenter = Mask2FormerSegmenter(model, grid_size, input_size, device, dtype)
    done = _done_positions(shard_dir)
    todo = [i for i in range(len(dataset)) if i not in done]
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, todo), batch_size=batch_size, shuffle=False, num_workers=num_workers
    )
    next_shard = len(list(shard_dir.glob("shard_*.safetensors")))
    start, computed = time.perf_counter(), 0
    with tqdm(total=len(dataset), initial=len(done), desc="Mask2Former", unit="frame") as progress:
        for b, batch in enumerate(loader):
            positions = todo[b * batch_size : b * batch_size + len(batch["index"])]
            pooled = segmenter([batch[camera] for camera in feature_map])
            tensors = {key: s.float().cpu().contiguous() for key, s in zip(feature_map.values(), pooled, strict=True)}
            for key, scores in tensors.items():
                check_segmentation_scores(scores, key, segmenter.num_classes, grid_size)
            tensors["positions"] = torch.tensor(positions, dtype=torch.int64)
            tensors["index"] = batch["index"].to(torch.int64)
            shard = shard_dir / f"shard_{next_shard:06d}.safetensors"
            save_file(tensors, str(shard.with_suffix(".tmp")))
            os.replace(shard.with_suffix(".tmp"), shard)
            next_shard += 1
            computed += len(positions)
            progress.update(len(positions))
    elapsed = time.perf_counter() - start

    # Gather the shards by dataset position, then key the new column on each row's global `index`.
    num_classes = segmenter.num_classes
    values = {
        key: np.full((len(dataset), num_classes, grid_size, grid_size), np.nan, np.float32)
        for key in feature_map.values()
    }
    row_of_index: dict[int, int] = {}
    for shard in sorted(shard_dir.glob("shard_*.safetensors")):
        data = load_file(shard)
        pos = data["positions"].numpy()
        for key in values:
            values[key][pos] = data[key].numpy()
        row_of_index.update(zip(data["index"].tolist(), pos.tolist(), strict=True))
    for key, array in values.items():
        check_segmentation_scores(torch.from_numpy(array), key, num_classes, grid_size)  # a lost shard shows as NaN

    class_names = [segmenter.id2label[i] for i in range(num_classes)]
    info = {"model": model, "grid_size": grid_size, "input_size": input_size, "class_names": class_names}
    add = {
        key: (
            lambda row, _ep, _frame, array=array: array[row_of_index[int(row["index"])]],
            {"dtype": "float32", "shape": [num_classes, grid_size, grid_size], "names": None, "info": info},
        )
        for key, array in values.items()
    }
    tmp = output_root.with_name(f".{output_root.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    new = modify_features(dataset, add_features=add, output_dir=tmp, repo_id=output_repo_id)
    first = new[0]
    for key in values:
        if not np.allclose(first[key].numpy(), values[key][row_of_index[int(first["index"])]]):
            raise RuntimeError(f"'{key}' read back from {tmp} differs from what was computed")
    os.replace(tmp, output_root)
    shutil.rmtree(stage)
    preview_dir = output_root.with_name(output_root.name + "_previews")
    if previews:
        write_previews(dataset, values, feature_map, class_names, preview_dir, previews)

    summary = {
        "output_root": str(output_root),
        "output_repo_id": output_repo_id,
        "frames": len(dataset),
        "frames_computed_this_run": computed,
        "compute_seconds": round(elapsed, 3),
        "frames_per_second": round(computed / elapsed, 3) if computed and elapsed > 0 else None,
        "num_classes": num_classes,
        "previews": str(preview_dir) if previews else None,
        **_bytes_report(num_classes, grid_size, input_size, len(feature_map)),
    }
    logger.info("wrote %s", json.dumps(summary))
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="so101-precompute-segmentation", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repo-id", required=True, help="source LeRobotDataset repo id")
    parser.add_argument("--root", default=None, help="source dataset folder (default: $HF_LEROBOT_HOME/repo_id)")
    parser.add_argument("--output-root", default=None, help="new dataset folder (default: <root>_segmentation)")
    parser.add_argument("--output-repo-id", default=None, help="new dataset repo id (default: <repo-id>_segmentation)")
    parser.add_argument(
        "--feature-map",
        action="append",
        help="CAMERA_KEY=SEGMENTATION_KEY, repeatable, or one JSON object (default: front and wrist)",
    )
    parser.add_argument("--model", default=DEFAULT_MODEL, help="Mask2Former checkpoint id or local folder")
    parser.add_argument("--grid-size", type=int, default=8)
    parser.add_argument("--input-size", type=int, default=512, help="SmolVLA's resize-with-pad side")
    parser.add_argument("--batch-size", type=int, default=8, help="frames per forward pass (x cameras)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES))
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers decoding frames")
    parser.add_argument("--restart", action="store_true", help="discard partial work from an earlier run")
    parser.add_argument("--previews", type=int, default=3, help="frames to draw per camera in <output>_previews/")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = precompute_segmentation(
        repo_id=args.repo_id,
        root=args.root,
        feature_map=parse_feature_map(args.feature_map),
        output_root=args.output_root,
        output_repo_id=args.output_repo_id,
        model=args.model,
        grid_size=args.grid_size,
        input_size=args.input_size,
        batch_size=args.batch_size,
        device=args.device,
        dtype=args.dtype,
        num_workers=args.num_workers,
        restart=args.restart,
        previews=args.previews,
    )
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
