"""`so101-seg-disparity`: a teacher's disparity as the depth head's target on frames that have none, so the head can
be fine-tuned on a real arm's own frames with no labels: Depth Anything V2 (Small by default) runs once per frame,
offline, and its relative disparity is stored beside the frame (`disparity/<name>.png`, dataset_index's layout).

    so101-seg-disparity --images=data/own_frames --output_dir=data/own            # a folder of images, no masks
    so101-seg-disparity --data_path=data/real_v0                                  # a labelled export: adds targets

Then `so101-seg-train --data.path=... --model.init_from=<twin segmenter> --model.depth_head=true` distils it; frames
without masks train only the depth head, labelled ones both heads. The teacher sees the whole frame at `input_size`
on its shorter side (sides rounded to its patch size, as its image processor does), and its output is resized back.

Only frames without a target get one, and the index is saved after every batch, so a killed run is continued by
running it again. Beside index.json, `teacher_disparity.json` records the teacher's settings and the frames it made
targets for: run again with the same settings over a folder with every target made, it does nothing; a teacher of
other settings is refused before any frame is read (its targets would mix with the first teacher's) unless
`--restart=true` makes the first teacher's targets again; with `--images`, an index.json this command did not write
is refused too (`--data_path` is the way to add targets to a dataset).
"""

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from lerobot.configs import parser
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF
from tqdm import tqdm

from so101_run_infra.atomic import write_json
from so101_run_infra.cli import OutputRefused, prepare_command_line
from so101_run_infra.runs import config_differences

from .data import read_image
from .dataset_index import INDEX_NAME, DatasetIndex, FrameRecord, disparity_png

log = logging.getLogger(__name__)
DEPTH_ANYTHING_V2_SMALL = "depth-anything/Depth-Anything-V2-Small-hf"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # Depth Anything's image processor's statistics
IMAGENET_STD = (0.229, 0.224, 0.225)
TEACHER_RECORD = "teacher_disparity.json"  # beside index.json: the teacher's settings and the frames it made


@dataclass
class DisparityConfig:
    # a folder of images (png, jpg) without masks: an index.json listing them with their targets is written to
    # output_dir; give this or data_path
    images: Path | None = None
    # an existing dataset folder (index.json): targets are added to its frames that have none
    data_path: Path | None = None
    # where index.json and disparity/ go with --images (default: the images folder's parent)
    output_dir: Path | None = None
    # the teacher: a Hub id or a local folder of a transformers DepthAnythingForDepthEstimation
    depth_model: str = DEPTH_ANYTHING_V2_SMALL
    # the teacher's input, shorter side in pixels (rounded to a multiple of its patch size)
    input_size: int = 196
    # frames per teacher forward pass
    batch_size: int = 8
    # torch device; null: CUDA when present, else CPU
    device: str | None = None
    # make again the targets a teacher of other settings (--depth_model, --input_size) made here
    restart: bool = False

    def __post_init__(self) -> None:
        if (self.images is None) == (self.data_path is None):
            raise ValueError("give one of --images (a folder of frames) and --data_path (a dataset with index.json)")
        if self.input_size < 14 or self.batch_size < 1:
            raise ValueError(
                f"--input_size must be >= 14 and --batch_size >= 1, got {self.input_size}, {self.batch_size}"
            )


def load_teacher(name: str, device: str) -> torch.nn.Module:
    from transformers import DepthAnythingForDepthEstimation

    try:
        model = DepthAnythingForDepthEstimation.from_pretrained(name)
    except OSError as e:
        raise FileNotFoundError(
            f"--depth_model={name}: no Depth Anything model there (a local folder of a transformers "
            f"DepthAnythingForDepthEstimation, or a Hub id while online: `hf download {DEPTH_ANYTHING_V2_SMALL} "
            f"--local-dir FOLDER`) ({e})"
        ) from None
    return model.to(device).eval().requires_grad_(False)


def teacher_size(height: int, width: int, input_size: int, patch: int) -> tuple[int, int]:
    scale = input_size / min(height, width)
    return tuple(max(patch, round(side * scale / patch) * patch) for side in (height, width))


@torch.no_grad()
def teacher_disparity(model: torch.nn.Module, images: list[np.ndarray], input_size: int, device: str) -> list:
    """(H, W, 3) uint8 frames of one size -> their relative disparity (H, W) float64, larger is nearer."""
    height, width = images[0].shape[:2]
    size = teacher_size(height, width, input_size, model.config.patch_size)
    batch = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float().div(255.0)
    batch = TF.resize(batch, list(size), InterpolationMode.BICUBIC, antialias=True).clamp(0, 1)
    pixels = TF.normalize(batch, list(IMAGENET_MEAN), list(IMAGENET_STD)).to(device)
    disparity = model(pixel_values=pixels).predicted_depth[:, None].float().cpu()
    disparity = TF.resize(disparity, [height, width], InterpolationMode.BILINEAR, antialias=True)
    return [d[0].double().numpy() for d in disparity]


def teacher_settings(cfg: DisparityConfig) -> dict:
    """What the targets depend on: the teacher (a local folder by its full path) and its input size."""
    local = Path(cfg.depth_model)
    return {"depth_model": str(local.resolve()) if local.is_dir() else cfg.depth_model, "input_size": cfg.input_size}


def claim_teacher(root: Path, cfg: DisparityConfig) -> dict:
    """The teacher record this run continues in `root` (`settings`, `frames` the teacher made targets for, and with
    --restart `redo`: the frames whose targets are to be made again). Refused before any work: a teacher of other
    settings that made targets here, and with --images an index.json of a dataset this command did not write."""
    settings = teacher_settings(cfg)
    path = root / TEACHER_RECORD
    if not path.is_file():
        if cfg.images is not None and (root / INDEX_NAME).is_file():
            raise OutputRefused(
                f"{root} holds an index.json so101-seg-disparity did not write: pass --data_path={root} to add "
                "targets to that dataset, or choose another --output_dir"
            )
        return {"settings": settings, "frames": []}
    record = json.loads(path.read_text())
    differences = config_differences(record["settings"], settings)
    if not differences or not record["frames"]:
        return {"settings": settings, "frames": record["frames"] if not differences else []}
    if not cfg.restart:
        another = "choose another --output_dir, or " if cfg.images is not None else ""
        raise OutputRefused(
            f"{root} holds disparity targets a teacher made with other settings ({'; '.join(differences)}): "
            f"{another}pass --restart=true to make them again with these"
        )
    return {"settings": settings, "frames": [], "redo": record["frames"]}


def open_index(cfg: DisparityConfig) -> DatasetIndex:
    """The dataset to add targets to: --data_path's, or --images' index (created, or extended by new images)."""
    if cfg.data_path is not None:
        return DatasetIndex.load(cfg.data_path)
    root = Path(cfg.output_dir or Path(cfg.images).parent)
    index = DatasetIndex.open_or_create(root)
    listed = {r.image for r in index.records}
    for path in sorted(p for p in Path(cfg.images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        relative = str(Path(path).resolve().relative_to(root.resolve(), walk_up=True))
        if relative not in listed:
            index.add([FrameRecord(image=relative, mask="")])
    if not index.records:
        raise FileNotFoundError(f"--images={cfg.images} holds no {'/'.join(IMAGE_SUFFIXES)} files")
    return index


def add_disparity(cfg: DisparityConfig) -> DatasetIndex:
    device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if cfg.images is not None and not Path(cfg.images).is_dir():
        raise FileNotFoundError(f"--images={cfg.images} is not a folder")
    root = Path(cfg.data_path) if cfg.data_path is not None else Path(cfg.output_dir or Path(cfg.images).parent)
    teacher = claim_teacher(root, cfg)
    index = open_index(cfg)
    redo = set(teacher.pop("redo", []))
    for record in index.records:
        if record.image in redo:
            record.disparity = None
    todo = [r for r in index.records if not r.disparity]
    if not todo:
        made = f"{len(index.records)} frames with a target, {len(teacher['frames'])} of them the teacher's"
        said = "already made with these settings" if teacher["frames"] else "every frame has a target already"
        print(f"{index.root}: {said} ({made}); nothing to do")
        return index
    log.info("%s: %d of %d frames need a teacher's disparity", index.root, len(todo), len(index.records))
    if redo:  # a target is forgotten before its teacher is: a kill leaves it to be made again, never misattributed
        index.save()
    write_json(root / TEACHER_RECORD, teacher)
    model = load_teacher(cfg.depth_model, device)
    by_size: dict[tuple[int, ...], list[tuple[FrameRecord, np.ndarray]]] = {}
    for record in todo:
        image = read_image(index.root / record.image)
        by_size.setdefault(image.shape, []).append((record, image))
    bar = tqdm(total=len(todo), desc="teacher disparity", unit="frame")
    for group in by_size.values():
        for start in range(0, len(group), cfg.batch_size):
            chunk = group[start : start + cfg.batch_size]
            for (record, _), disparity in zip(
                chunk, teacher_disparity(model, [im for _, im in chunk], cfg.input_size, device), strict=True
            ):
                relative = f"disparity/{Path(record.image).stem}.png"
                index.write_png(relative, disparity_png(disparity))
                record.disparity = relative
            # the teacher's record names a frame before the index gives it a target: one never goes unattributed
            teacher["frames"] = sorted(set(teacher["frames"]) | {record.image for record, _ in chunk})
            write_json(root / TEACHER_RECORD, teacher)
            index.save()  # after every batch: an interrupted run keeps what it made
            bar.update(len(chunk))
    bar.close()
    return index


@parser.wrap()
def disparity_cli(cfg: DisparityConfig) -> DatasetIndex:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", force=True)
    index = add_disparity(cfg)
    log.info("%s: %d frames with a disparity target", index.path, sum(bool(r.disparity) for r in index.records))
    return index


def main() -> None:
    """so101-seg-disparity: a teacher's (Depth Anything V2's) disparity as the depth head's target."""
    prepare_command_line()
    disparity_cli()


if __name__ == "__main__":
    main()
