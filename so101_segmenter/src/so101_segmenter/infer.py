"""Segment an image, a video or a folder of images with a trained segmenter and write colour overlays.

    so101-seg-infer --segmenter_path=outputs/efficientvit_seg/best --input=frame.png
    so101-seg-infer --segmenter_path=outputs/efficientvit_seg/best --input=episode.mp4 --output_dir=outputs/seg_infer
    so101-seg-infer --segmenter_path=outputs/efficientvit_seg/best --input=data/dataset_v0/images

Images give <stem>_overlay.png and <stem>_mask.png (class ids, at the input's size); videos give
<stem>_overlay.mp4. The model runs at --img_height x --img_width (default: the size the checkpoint was trained at,
read from its metadata, else 480x640) and its prediction is resized back to each input's size.
"""

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from lerobot.configs import parser
from tqdm import tqdm

from so101_run_infra.atomic import atomic_path
from so101_run_infra.cli import prepare_command_line

from .data import read_image
from .dataset_index import atomic_save_png
from .model import WEIGHTS_NAME, EfficientViTFPN, load_segmenter
from .viz import overlay

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


def trained_size(checkpoint: str | Path) -> tuple[int, int] | None:
    """(height, width) stored by `so101-seg-train` in the weights' metadata, if any."""
    from safetensors import safe_open

    with safe_open(str(Path(checkpoint) / WEIGHTS_NAME), "pt") as f:
        size = (f.metadata() or {}).get("img_size")
    if not size:
        return None
    h, w = (int(v) for v in size.strip("[]() ").split(","))
    return h, w


@torch.no_grad()
def segment(model: EfficientViTFPN, rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W) uint8 class ids: the model runs at `size`, logits are resized back to (H, W)."""
    device = next(model.parameters()).device
    x = torch.from_numpy(rgb).to(device).permute(2, 0, 1)[None].float() / 255.0
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
    logits = model(x)
    if tuple(logits.shape[-2:]) != rgb.shape[:2]:
        logits = F.interpolate(logits, size=rgb.shape[:2], mode="bilinear", align_corners=False)
    return logits.argmax(1)[0].to(torch.uint8).cpu().numpy()


def video_frames(path: Path) -> Iterator[np.ndarray]:
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as e:
        raise ValueError(f"cannot open video {path}: {e}") from e
    with container:
        if not container.streams.video:
            raise ValueError(f"video {path} has no video stream")
        try:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as e:
            raise ValueError(f"cannot decode video {path}: {e}") from e


def video_fps(path: Path) -> float:
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"video {path} has no video stream")
            rate = container.streams.video[0].average_rate
    except av.error.FFmpegError as e:
        raise ValueError(f"cannot open video {path}: {e}") from e
    return float(rate) if rate else 30.0


def segment_video(model: EfficientViTFPN, path: Path, out: Path, size: tuple[int, int]) -> Path:
    """Overlay video written atomically with H.264 (even sizes: yuv420p halves the chroma planes)."""
    import av

    target = out / f"{path.stem}_overlay.mp4"
    frames = 0
    with atomic_path(target) as tmp, av.open(str(tmp), mode="w") as container:
        stream = None
        for rgb in tqdm(video_frames(path), desc=path.name, unit="frame"):
            blended = overlay(rgb, segment(model, rgb, size))
            blended = np.ascontiguousarray(blended[: blended.shape[0] // 2 * 2, : blended.shape[1] // 2 * 2])
            if stream is None:
                stream = container.add_stream("libx264", rate=round(video_fps(path)))
                stream.height, stream.width = blended.shape[:2]
                stream.pix_fmt = "yuv420p"
            container.mux(stream.encode(av.VideoFrame.from_ndarray(blended, format="rgb24")))
            frames += 1
        if stream is None:
            raise ValueError(f"video {path} holds no frames")
        container.mux(stream.encode())
    log.info("%s: %d frames -> %s", path, frames, target)
    return target


def segment_image(model: EfficientViTFPN, path: Path, out: Path, size: tuple[int, int]) -> list[Path]:
    rgb = read_image(path)
    ids = segment(model, rgb, size)
    paths = [out / f"{path.stem}_overlay.png", out / f"{path.stem}_mask.png"]
    atomic_save_png(paths[0], overlay(rgb, ids))
    atomic_save_png(paths[1], ids)
    return paths


def run(
    checkpoint: str | Path,
    input_path: str | Path,
    output_dir: str | Path,
    size: tuple[int, int] | None = None,
    device: str = "cpu",
) -> list[Path]:
    """Segment `input_path` (image, video or folder of images/videos); returns the files written."""
    input_path, out = Path(input_path), Path(output_dir)
    if not input_path.exists():
        raise FileNotFoundError(f"input {input_path} does not exist")
    model = load_segmenter(checkpoint, device=device)
    size = size or trained_size(checkpoint) or (480, 640)
    out.mkdir(parents=True, exist_ok=True)
    if input_path.is_dir():
        files = sorted(p for p in input_path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
        if not files:
            raise ValueError(f"folder {input_path} holds no images ({sorted(IMAGE_SUFFIXES)}) or videos")
    else:
        files = [input_path]
    written: list[Path] = []
    for f in tqdm(files, desc="inputs", unit="file", disable=len(files) == 1):
        suffix = f.suffix.lower()
        if suffix in VIDEO_SUFFIXES:
            written.append(segment_video(model, f, out, size))
        elif suffix in IMAGE_SUFFIXES:
            written.extend(segment_image(model, f, out, size))
        else:
            raise ValueError(
                f"{f}: unknown input type {suffix!r}; expected an image {sorted(IMAGE_SUFFIXES)}, "
                f"a video {sorted(VIDEO_SUFFIXES)} or a folder"
            )
    return written


@dataclass
class InferConfig:
    # a save_segmenter folder (so101-seg-train's best/); required
    segmenter_path: Path | None = None
    # an image, a video or a folder of images; required
    input: Path | None = None
    output_dir: Path = Path("outputs/seg_infer")
    # the model's input size (give both, or neither: the size the checkpoint was trained at, else 480x640)
    img_height: int | None = None
    img_width: int | None = None
    device: str = "cpu"

    def __post_init__(self):
        if self.segmenter_path is None or self.input is None:
            raise ValueError("--segmenter_path and --input are required")
        if (self.img_height is None) != (self.img_width is None):
            raise ValueError("give both --img_height and --img_width, or neither")


@parser.wrap()
def infer_cli(cfg: InferConfig) -> list[Path]:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    size = (cfg.img_height, cfg.img_width) if cfg.img_height else None
    written = run(cfg.segmenter_path, cfg.input, cfg.output_dir, size, cfg.device)
    log.info("wrote %d files to %s", len(written), cfg.output_dir)
    return written


def main() -> None:
    prepare_command_line()
    infer_cli()


if __name__ == "__main__":
    main()
