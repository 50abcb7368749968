"""What the segmenter and its depth head make of each look: for frames of the twin's `none`, `shifted` and `unseen`
looks (so101-seg-render --appearance=...), one row per frame of RGB | predicted classes | predicted disparity |
true classes | true disparity, on the 96x96 centre square of the wrist camera, as SegDepth's
perception_source=segmenter_depth sees it (classes at 84x84; disparity min-max normalised per frame, near = white).

    python examples/perception_looks.py --segmenter_path=outputs/perception/run/best \
        --data_dir=outputs/perception --output_path=docs/images/perception_looks.png
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from lerobot.configs import parser
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from so101_run_infra.cli import prepare_command_line
from so101_segmenter.data import read_disparity, read_image, read_mask
from so101_segmenter.dataset_index import DatasetIndex
from so101_segmenter.metrics import minmax_255
from so101_segmenter.model import load_segmenter
from so101_segmenter.viz import colorize, save_grid

OUT = 84


@dataclass
class PerceptionLooksConfig:
    # a so101-seg-train checkpoint with a depth head; required
    segmenter_path: Path | None = None
    # holds test_<look>/ folders rendered by so101-seg-render --appearance=<look>
    data_dir: Path = Path("outputs/perception")
    # the looks drawn, one block of rows each, top to bottom
    looks: list[str] = field(default_factory=lambda: ["none", "shifted", "unseen"])
    # rows per look, spread over the look's frames
    frames_per_look: int = 3
    # the camera whose frames are drawn (SegDepth's is the wrist)
    camera: str = "wrist"
    # the segmenter's input side (SegDepth's segmenter_input_size)
    input_size: int = 96
    # the PNG written
    output_path: Path = Path("docs/images/perception_looks.png")

    def __post_init__(self):
        if self.segmenter_path is None:
            raise ValueError("--segmenter_path is required: a so101-seg-train checkpoint with a depth head")


def centre_square(x: torch.Tensor) -> torch.Tensor:
    side = min(x.shape[-2:])
    return TF.center_crop(x, [side, side])


def grey(disparity_255: torch.Tensor) -> np.ndarray:
    return np.repeat(disparity_255.round().clamp(0, 255).to(torch.uint8).numpy()[..., None], 3, axis=-1)


@parser.wrap()
def perception_looks(cfg: PerceptionLooksConfig) -> Path:
    model = load_segmenter(cfg.segmenter_path, depth_head=True)
    rows = []
    for look in cfg.looks:
        index = DatasetIndex.load(cfg.data_dir / f"test_{look}")
        records = [r for r in index.records if r.camera == cfg.camera]
        if not records:
            raise ValueError(f"{index.path} has no frames of camera {cfg.camera!r}")
        for i in np.linspace(0, len(records) - 1, cfg.frames_per_look).round().astype(int):
            r = records[int(i)]
            rgb = centre_square(torch.from_numpy(read_image(index.root / r.image)).permute(2, 0, 1).float() / 255)
            model_in = TF.resize(rgb[None], [cfg.input_size] * 2, InterpolationMode.BICUBIC, antialias=True).clamp(0, 1)
            with torch.no_grad():
                logits, disparity = model.forward_with_disparity(model_in)
            ids = torch.nn.functional.interpolate(logits, size=(OUT, OUT), mode="bilinear").argmax(1)[0]
            predicted = TF.resize(minmax_255(disparity), [OUT, OUT], InterpolationMode.BILINEAR, antialias=True)[0, 0]
            mask = centre_square(torch.from_numpy(read_mask(index.root / r.mask))[None])
            true_ids = TF.resize(mask, [OUT, OUT], InterpolationMode.NEAREST)[0]
            target = centre_square(torch.from_numpy(read_disparity(index.root / r.disparity))[None, None])
            true = TF.resize(minmax_255(target), [OUT, OUT], InterpolationMode.BILINEAR, antialias=True)[0, 0]
            shown = TF.resize(rgb, [OUT, OUT], InterpolationMode.BICUBIC, antialias=True).clamp(0, 1)
            rgb8 = (shown.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            rows.append([rgb8, colorize(ids.numpy()), grey(predicted), colorize(true_ids.numpy()), grey(true)])
    title = (
        f"{cfg.segmenter_path}: the wrist camera's centre square, {cfg.frames_per_look} frames per look "
        f"({', '.join(cfg.looks)}, top to bottom)"
    )
    columns = ["RGB", "predicted classes", "predicted disparity", "true classes", "true disparity"]
    path = save_grid(cfg.output_path, rows, scale=3, columns=columns, title=title)
    print(path)
    return path


def main() -> None:
    prepare_command_line()
    perception_looks()


if __name__ == "__main__":
    main()
