"""Class-id masks from COCO annotations (CVAT/SALT export), as ggand0/pick-101's `generate_seg_masks`.

    so101-seg-masks --dataset_path=data/dataset_v0 --output_dir=data/dataset_v0/masks \
        --selections=data/dataset_v0/selections.json --excluded=data/dataset_v0/excluded.json

Annotations are painted class by class, later classes over earlier ones. Default frames use
bg, table, cube, fingers (the fingers occlude the cube); frames listed in the selections file are grasps and use
bg, table, fingers, cube (the held cube is in front). Pixels no annotation covers stay 0 (unlabeled).
Categories are matched to the 6-class map by name, never by COCO id; a name outside the map is an error.
Writes <output_dir>/<stem>.png and <dataset_path>/index.json (the layout `so101-seg-train` reads).

The mask folder is written whole (staged beside it, then swapped in) with a record of the settings it was made
with: the content of the annotation, selections and exclusions files, `--require_class` and where the masks go.
Run again with the same settings and inputs, the command finds its masks and index and does nothing; a killed run
left no mask folder (or no index), so it is made again. Masks of other settings, an index.json it did not write
with these masks, or a mask folder it did not write are refused before anything is painted: the dataset has one
index, so a second set of masks would silently replace the first.
"""

import hashlib
import json
import logging
import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lerobot.configs import parser
from pycocotools import mask as mask_utils

from so101_run_infra.atomic import atomic_folder
from so101_run_infra.cli import OutputRefused, prepare_command_line
from so101_run_infra.runs import as_json, config_differences, finished_record, mark_finished

from .classes import BACKGROUND, CLASS_NAMES, CUBE, MOVING_FINGER, STATIC_FINGER, TABLE
from .dataset_index import INDEX_NAME, DatasetIndex, FrameRecord, atomic_save_png

log = logging.getLogger(__name__)

DEFAULT_ORDER = (BACKGROUND, TABLE, CUBE, STATIC_FINGER, MOVING_FINGER)
GRASP_ORDER = (BACKGROUND, TABLE, STATIC_FINGER, MOVING_FINGER, CUBE)
ANNOTATION_NAME = "instances_default.json"  # CVAT's COCO export name, as upstream reads it


def _read_json(path: Path, what: str) -> object:
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {path} does not exist")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{what} file {path} is not valid JSON: {e}") from e


def read_marks(path: str | Path | None, what: str, status: str | None = None) -> set[str]:
    """File stems marked in a SALT-style {"marks": {"<file name>": "<status>"}} file (all, or those with `status`)."""
    if path is None:
        return set()
    path = Path(path)
    data = _read_json(path, what)
    if not isinstance(data, dict) or not isinstance(data.get("marks", {}), dict):
        raise ValueError(f"{what} file {path}: expected {{'marks': {{file name: status}}}}")
    # Marks name .png while COCO names .jpg (or the reverse): match on the stem.
    return {Path(name).stem for name, mark in data.get("marks", {}).items() if status is None or mark == status}


def _class_of(name: str) -> int | None:
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    return CLASS_NAMES.index(key) if key in CLASS_NAMES else None


def decode_segmentation(segmentation: object, height: int, width: int, where: str) -> np.ndarray:
    """Polygons, uncompressed RLE or compressed RLE -> (H, W) bool, decoded with pycocotools."""
    if isinstance(segmentation, list):
        polygons = [p for p in segmentation if len(p) >= 6]  # fewer than 3 points encloses nothing
        if not polygons:
            return np.zeros((height, width), dtype=bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segmentation, dict) and "counts" in segmentation and "size" in segmentation:
        if list(segmentation["size"]) != [height, width]:
            raise ValueError(f"{where}: RLE size {segmentation['size']} differs from the image's {[height, width]}")
        counts = segmentation["counts"]
        if isinstance(counts, list):
            rle = mask_utils.frPyObjects(segmentation, height, width)
        else:
            rle = {"size": [height, width], "counts": counts.encode() if isinstance(counts, str) else counts}
    else:
        raise ValueError(f"{where}: segmentation is neither a polygon list nor an RLE dict")
    return mask_utils.decode(rle).astype(bool)


def find_image(dataset: Path, file_name: str) -> Path | None:
    for candidate in (dataset / "images" / "default" / file_name, dataset / "images" / file_name, dataset / file_name):
        if candidate.is_file():
            return candidate
    return None


def index_coco(coco: dict, ann_path: Path) -> tuple[dict[int, int], dict[int, dict], dict[int, list[dict]]]:
    """A COCO annotation's category id -> segmenter class, image id -> image entry, and image id -> its annotations;
    refuses a category that is no class of the segmenter and an annotation naming an unknown id."""
    category_class: dict[int, int] = {}
    for cat in coco["categories"]:
        cls = _class_of(str(cat.get("name", "")))
        if cls is None or cls == 0:
            raise ValueError(
                f"COCO annotation file {ann_path}: category {cat.get('name')!r} (id {cat.get('id')}) is not a class "
                f"of the segmenter; expected one of {list(CLASS_NAMES[1:])}"
            )
        category_class[cat["id"]] = cls
    images = {img["id"]: img for img in coco["images"]}
    by_image: dict[int, list[dict]] = defaultdict(list)
    for ann in coco["annotations"]:
        if ann.get("category_id") not in category_class:
            raise ValueError(
                f"COCO annotation file {ann_path}: annotation {ann.get('id')} names category id "
                f"{ann.get('category_id')}, which 'categories' does not list"
            )
        if ann.get("image_id") not in images:
            raise ValueError(
                f"COCO annotation file {ann_path}: annotation {ann.get('id')} names unknown image id "
                f"{ann.get('image_id')}"
            )
        by_image[ann["image_id"]].append(ann)
    return category_class, images, by_image


def paint_mask(
    anns: list[dict], category_class: dict, size: tuple[int, int], is_grasp: bool, ann_path: Path, file_name: str
) -> np.ndarray:
    """One image's class mask from its annotations, painted class by class in its frame kind's order (a grasped
    cube over the fingers: GRASP_ORDER, else DEFAULT_ORDER); a decoding error names the file and annotation."""
    height, width = size
    mask = np.zeros((height, width), dtype=np.uint8)
    for cls in GRASP_ORDER if is_grasp else DEFAULT_ORDER:
        for ann in anns:
            if category_class[ann["category_id"]] == cls:
                where = f"{ann_path} annotation {ann.get('id')} ({file_name})"
                mask[decode_segmentation(ann["segmentation"], height, width, where)] = cls
    return mask


def file_digest(path: Path | None) -> str | None:
    """What an input file is known again by: its content (a re-export changes it, a move does not)."""
    return None if path is None else "sha256:" + hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def listed_frames(index: DatasetIndex) -> list[list]:
    """What the masks run put in an index: image, mask and grasp per frame (a disparity target added later by
    so101-seg-disparity leaves the frames the masks' own)."""
    return [[r.image, r.mask, r.grasp] for r in index.records]


def already_made(dataset: Path, out: Path, settings: dict, restart: bool) -> DatasetIndex | None:
    """The dataset's index when `out` and index.json were made with these settings (after saying so in one line),
    or None once they may be written: new, the remains of a killed run, or (`restart`) made with other settings. A
    mask folder this command did not write is always refused."""
    index_path = dataset / INDEX_NAME
    record = finished_record(out) if out.is_dir() else None
    if record is None and out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise OutputRefused(f"{out} is not empty and holds no masks so101-seg-masks made: choose another --output_dir")
    if record is not None:
        differences = config_differences(record["settings"], as_json(settings))
        if differences and not restart:
            raise OutputRefused(
                f"{out} holds masks made with other settings ({'; '.join(differences)}): pass --restart=true to make "
                "them again with these, or choose another --output_dir"
            )
        if differences:
            return None
        if index_path.is_file() and listed_frames(DatasetIndex.load(dataset)) == record["result"]["frames"]:
            print(f"{out}: already made with these settings ({record['summary']}); nothing to do")
            return DatasetIndex.load(dataset)
    if index_path.is_file() and not restart:
        raise OutputRefused(
            f"{index_path} is not the index so101-seg-masks wrote with the masks in {out}: pass --restart=true to "
            "replace it"
        )
    return None


def read_coco(ann_path: Path) -> tuple[dict[int, int], dict[int, dict], dict[int, list[dict]]]:
    """A COCO annotation file, checked and indexed (`index_coco`)."""
    coco = _read_json(ann_path, "COCO annotation")
    if not isinstance(coco, dict) or any(
        not isinstance(coco.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise ValueError(f"COCO annotation file {ann_path}: needs 'images', 'annotations' and 'categories' lists")
    return index_coco(coco, ann_path)


def generate_masks(
    dataset_path: str | Path,
    output_dir: str | Path | None = None,
    selections: str | Path | None = None,
    excluded: str | Path | None = None,
    annotations: str | Path | None = None,
    require_class: str | None = "static_finger",
    restart: bool = False,
) -> DatasetIndex:
    """Write one mask per annotated, non-excluded image and the dataset's index.json; returns the index.

    `require_class`: frames without an annotation of this class are skipped (upstream keeps only frames where the
    static finger, always in view of the wrist camera, was labelled: the others were never annotated). Masks and an
    index made with these settings are left as they are; `restart` replaces ones made with other settings.
    """
    dataset = Path(dataset_path)
    out = Path(output_dir) if output_dir else dataset / "masks"
    ann_path = Path(annotations) if annotations else dataset / ANNOTATION_NAME
    grasp = read_marks(selections, "selections")
    skip = read_marks(excluded, "exclusions", status="Excluded")
    category_class, images, by_image = read_coco(ann_path)
    required = _class_of(require_class) if require_class else None
    if require_class and required is None:
        raise ValueError(f"require_class {require_class!r} is not one of {list(CLASS_NAMES)}")
    settings = {
        "annotations": file_digest(ann_path), "selections": file_digest(selections),
        "excluded": file_digest(excluded), "require_class": require_class, "masks": os.path.relpath(out, dataset),
    }  # fmt: skip
    if (made := already_made(dataset, out, settings, restart)) is not None:
        return made
    index = DatasetIndex(dataset)
    skipped = defaultdict(int)
    with atomic_folder(out) as staging:  # a killed run leaves no mask folder: the next one starts clean
        for image_id, anns in sorted(by_image.items()):
            info = images[image_id]
            file_name, height, width = info["file_name"], int(info["height"]), int(info["width"])
            stem = Path(file_name).stem
            if stem in skip:
                skipped["excluded"] += 1
                continue
            if required is not None and not any(category_class[a["category_id"]] == required for a in anns):
                skipped[f"no {require_class}"] += 1
                continue
            image = find_image(dataset, file_name)
            if image is None:
                raise FileNotFoundError(
                    f"image {file_name!r} of {ann_path} is in none of {dataset}/images/default, {dataset}/images, "
                    f"{dataset}"
                )
            is_grasp = stem in grasp
            mask = paint_mask(anns, category_class, (height, width), is_grasp, ann_path, file_name)
            atomic_save_png(staging / f"{stem}.png", mask)
            relative = os.path.relpath(out / f"{stem}.png", dataset)
            index.add([FrameRecord(image=os.path.relpath(image, dataset), mask=relative, grasp=is_grasp)])
        if not index.records:
            raise ValueError(f"{ann_path}: no frame left to write (skipped: {dict(skipped)})")
        n_grasp = sum(r.grasp for r in index.records)
        mark_finished(
            staging, settings, f"{len(index.records)} masks, {n_grasp} in grasp order", frames=listed_frames(index)
        )
    index.save()
    log.info("wrote %d masks to %s: %d default order, %d grasp order; skipped %s; index %s", len(index.records), out,
             len(index.records) - n_grasp, n_grasp, dict(skipped) or "none", index.path)  # fmt: skip
    return index


@dataclass
class CocoMasksConfig:
    # folder with instances_default.json (CVAT's COCO export) and images/; required
    dataset_path: Path | None = None
    # mask folder; None: <dataset_path>/masks
    output_dir: Path | None = None
    # SALT marks file listing the grasping frames
    selections: Path | None = None
    # SALT marks file; frames marked 'Excluded' are skipped
    excluded: Path | None = None
    # COCO file; None: <dataset_path>/instances_default.json
    annotations: Path | None = None
    # skip frames without this class ('' keeps all)
    require_class: str = "static_finger"
    # replace the masks and index.json of an earlier run with other settings (a mask folder of files this command
    # did not write is still refused)
    restart: bool = False

    def __post_init__(self):
        if self.dataset_path is None:
            raise ValueError("--dataset_path is required: a folder with instances_default.json and images/")


@parser.wrap()
def masks_cli(cfg: CocoMasksConfig) -> DatasetIndex:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    return generate_masks(
        cfg.dataset_path,
        cfg.output_dir,
        cfg.selections,
        cfg.excluded,
        cfg.annotations,
        cfg.require_class or None,
        cfg.restart,
    )


def main() -> None:
    prepare_command_line()
    masks_cli()


if __name__ == "__main__":
    main()
