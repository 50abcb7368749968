"""Side-by-side renders of the twin: low-poly (default) vs full-detail meshes, and depth + segmentation.

Run from the repository root:

    .venv/bin/python benchmarks/render_comparison.py

Writes two images (320x240 tiles, under a title naming the scene) and prints the render time per frame of both
mesh variants:

    docs/images/twin_lowpoly_vs_full.png       rows: low-poly meshes (mesh_cell=0.004, the default) and the
                                               full-detail CAD meshes (mesh_cell=None); columns: front RGB,
                                               wrist RGB, front segmentation, wrist segmentation
    docs/images/twin_depth_segmentation.png    rows: front and wrist camera (low-poly); columns: RGB, depth
                                               (normalised per image, linear or 1/z, the metre range and the
                                               scale written on it), segmentation

The arm is posed by the scripted expert: `--steps` (default 90) control steps of seed 3 on LiftCube, which
leaves the open gripper around the cube as it starts to close.
"""

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import mujoco
import numpy as np
from lerobot.configs import parser
from PIL import Image, ImageDraw, ImageFont

from lerobot_env_so101_twin.expert import ScriptedExpert
from lerobot_env_so101_twin.render import CameraFrame
from lerobot_env_so101_twin.simulation import TwinConfig, TwinSimulation
from lerobot_env_so101_twin.visualize import SEGMENTATION_PALETTE, colorize_segmentation
from so101_core import SEGMENTATION_CLASSES
from so101_run_infra.cli import prepare_command_line

ROOT = Path(__file__).resolve().parents[1]
OUT_DIR = ROOT / "docs" / "images"
TILE = (240, 320)  # (height, width) of every camera, as TwinConfig.cameras wants it
CAMERAS = ("front", "wrist")
SEED = 3
TIMED_RENDERS = 20

# A few stops of matplotlib's viridis, so the depth map needs no matplotlib; near is yellow, far is purple.
VIRIDIS = np.array([(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)], dtype=np.float64)

LABEL_W, TITLE_H, HEADER_H, LEGEND_H, PAD = 190, 26, 28, 30, 4
INVERSE_DEPTH_RATIO = 8.0


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def colorize_depth(depth: np.ndarray, far_clip: float) -> tuple[np.ndarray, str]:
    """(H, W) metres -> (viridis image, caption with the metre range and scale); no-geometry pixels are black.

    Normalised over the pixels that hit geometry, so the far-clip value cannot flatten the whole range. A view
    whose far end is over INVERSE_DEPTH_RATIO times its near end (the front camera sees the floor 3 m away) is
    scaled in 1/z, which would otherwise squash the arm and table (0.3-0.9 m) into one colour; close views
    (the wrist camera) stay linear, where 1/z would wash out the cube against the table.
    """
    valid = depth < 0.999 * far_clip
    if not valid.any():
        return np.zeros((*depth.shape, 3), np.uint8), "no geometry"
    lo, hi = float(depth[valid].min()), float(depth[valid].max())
    if hi > INVERSE_DEPTH_RATIO * lo:
        scale, near, far, value = "1/z", 1.0 / lo, 1.0 / hi, 1.0 / np.maximum(depth, 1e-6)
    else:
        scale, near, far, value = "linear", lo, hi, depth
    t = np.clip((value - far) / (near - far if near != far else 1.0), 0.0, 1.0)  # near -> 1 -> yellow
    x = t * (len(VIRIDIS) - 1)
    i = np.minimum(x.astype(int), len(VIRIDIS) - 2)
    frac = (x - i)[..., None]
    rgb = (1.0 - frac) * VIRIDIS[i] + frac * VIRIDIS[i + 1]
    rgb[~valid] = 0.0
    return rgb.astype(np.uint8), f"{lo:.3f} m - {hi:.3f} m, {scale} scale"


def pose_twins(twins: list[TwinSimulation], steps: int) -> None:
    """Drive the first twin with the expert, then copy its state into the others.

    The variants' collision meshes differ too, so simulating each would give slightly different poses; copying
    the state makes every row show exactly the same arm configuration.
    """
    lead = twins[0]
    lead.reset(SEED)
    expert = ScriptedExpert(lead)
    for _ in range(steps):
        lead.apply_action(expert.action())
        lead.step()
    for twin in twins[1:]:
        twin.reset(SEED)
        twin.data.qpos[:] = lead.data.qpos
        twin.data.qvel[:] = lead.data.qvel
        twin.data.ctrl[:] = lead.data.ctrl
        mujoco.mj_forward(twin.model, twin.data)


def time_render(twin: TwinSimulation) -> dict[str, float]:
    """Median ms per render() call (both cameras), with every output the twin was built for and RGB only."""
    out = {}
    with_extras = (twin.config.depth, twin.config.segmentation)
    for label, flags in (("rgb+depth+seg", with_extras), ("rgb", (False, False))):
        # render() reads these flags on every call, so toggling them times RGB alone on the same GL context.
        twin.config.depth, twin.config.segmentation = flags
        twin.render()  # not timed: the first call after a mode change can pay for a state change
        samples = []
        for _ in range(TIMED_RENDERS):
            start = time.perf_counter()
            twin.render()
            samples.append(1000.0 * (time.perf_counter() - start))
        out[label] = statistics.median(samples)
    twin.config.depth, twin.config.segmentation = with_extras
    return out


def _text(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, size: int = 14, box: bool = False) -> None:
    font = _font(size)
    if box:  # a dark box keeps the text readable on any image
        left, top, right, bottom = draw.multiline_textbbox(xy, text, font=font)
        draw.rectangle((left - 3, top - 2, right + 3, bottom + 3), fill=(0, 0, 0))
    draw.multiline_text(xy, text, fill=(255, 255, 255) if box else (20, 20, 20), font=font)


def grid(
    rows: list[tuple[str, list[np.ndarray]]], columns: list[str], legend: bool, title: str
) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """Tiles in a labelled grid: a title, a header of column names, a label column, an optional palette legend."""
    h, w = TILE
    n_cols = len(columns)
    width = LABEL_W + n_cols * (w + PAD)
    height = TITLE_H + HEADER_H + len(rows) * (h + PAD) + (LEGEND_H if legend else 0)
    canvas = Image.new("RGB", (width, height), (245, 245, 245))
    draw = ImageDraw.Draw(canvas)
    _text(draw, (8, 6), title, size=16)
    for c, name in enumerate(columns):
        _text(draw, (LABEL_W + c * (w + PAD) + 6, TITLE_H + 6), name, size=16)
    for r, (label, tiles) in enumerate(rows):
        y = TITLE_H + HEADER_H + r * (h + PAD)
        _text(draw, (8, y + 8), label, size=14)
        for c, tile in enumerate(tiles):
            canvas.paste(Image.fromarray(tile), (LABEL_W + c * (w + PAD), y))
    if legend:
        x, y = 8, height - LEGEND_H + 6
        for class_id, name in SEGMENTATION_CLASSES.items():
            draw.rectangle(
                (x, y, x + 16, y + 16), fill=tuple(int(v) for v in SEGMENTATION_PALETTE[class_id]), outline=(0, 0, 0)
            )
            _text(draw, (x + 22, y), f"{class_id} {name}", size=14)
            x += 30 + int(draw.textlength(f"{class_id} {name}", font=_font(14)))
    return canvas, draw


def lowpoly_vs_full(frames: dict[str, dict[str, CameraFrame]], labels: dict[str, str], path: Path, scene: str) -> None:
    rows = [
        (
            labels[variant],
            [frames[variant][cam].rgb for cam in CAMERAS]
            + [colorize_segmentation(frames[variant][cam].segmentation) for cam in CAMERAS],
        )
        for variant in frames
    ]
    columns = ["front RGB", "wrist RGB", "front segmentation", "wrist segmentation"]
    title = f"The twin's low-poly (default) and full-detail meshes, {TILE[1]}x{TILE[0]} cameras, {scene}"
    canvas, _ = grid(rows, columns, legend=True, title=title)
    canvas.save(path)


def depth_segmentation(frames: dict[str, CameraFrame], far_clip: float, path: Path, scene: str) -> None:
    rows, captions = [], []
    for cam in CAMERAS:
        depth_rgb, caption = colorize_depth(frames[cam].depth, far_clip)
        captions.append(caption)
        rows.append(
            (
                f"{cam} camera\n{TILE[1]}x{TILE[0]}",
                [frames[cam].rgb, depth_rgb, colorize_segmentation(frames[cam].segmentation)],
            )
        )
    title = f"What one step of the low-poly twin gives per camera: RGB, metric depth, 6-class segmentation ({scene})"
    columns = ["RGB", "depth (near yellow, far purple)", "segmentation"]
    canvas, draw = grid(rows, columns, legend=True, title=title)
    h, w = TILE
    for r, caption in enumerate(captions):
        _text(draw, (LABEL_W + w + PAD + 6, TITLE_H + HEADER_H + r * (h + PAD) + 6), caption, box=True)
    canvas.save(path)


@dataclass
class RenderComparisonConfig:
    # scripted-expert control steps (seed 3, LiftCube) before the snapshot: 90 leaves the open gripper at the cube
    steps: int = 90


@parser.wrap()
def render_comparison(cfg: RenderComparisonConfig) -> None:

    cameras = dict.fromkeys(CAMERAS, TILE)
    variants = {"low-poly": 0.004, "full-detail": None}
    twins = {
        name: TwinSimulation(TwinConfig(cameras=cameras, depth=True, segmentation=True, mesh_cell=cell), seed=SEED)
        for name, cell in variants.items()
    }
    try:
        pose_twins(list(twins.values()), cfg.steps)
        frames, labels = {}, {}
        for name, twin in twins.items():
            frames[name] = twin.render()
            ms = time_render(twin)
            cell = variants[name]
            labels[name] = (
                f"{name}\nmesh_cell={cell}\n{twin.model.nmeshface:,} mesh faces\n"
                f"render, per camera frame:\n  RGB {ms['rgb'] / len(CAMERAS):.1f} ms\n"
                f"  +depth+seg {ms['rgb+depth+seg'] / len(CAMERAS):.1f} ms"
            )
            print(
                f"{name:12s} ({twin.model.nmeshface:>7,} mesh faces): render() of both {TILE[1]}x{TILE[0]} cameras "
                f"{ms['rgb']:.1f} ms RGB ({ms['rgb'] / len(CAMERAS):.1f} ms per frame), "
                f"{ms['rgb+depth+seg']:.1f} ms RGB+depth+seg ({ms['rgb+depth+seg'] / len(CAMERAS):.1f} ms per frame); "
                f"median of {TIMED_RENDERS}"
            )
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        scene = f"LiftCube seed {SEED} after {cfg.steps} scripted-expert steps"
        lowpoly_vs_full(frames, labels, OUT_DIR / "twin_lowpoly_vs_full.png", scene)
        model = twins["low-poly"].model
        far_clip = model.vis.map.zfar * model.stat.extent  # the renderer's far plane: depth of "no geometry"
        depth_segmentation(frames["low-poly"], far_clip, OUT_DIR / "twin_depth_segmentation.png", scene)
    finally:
        for twin in twins.values():
            twin.close()
    print(f"wrote {OUT_DIR / 'twin_lowpoly_vs_full.png'} and {OUT_DIR / 'twin_depth_segmentation.png'}")


def main() -> None:
    prepare_command_line()
    render_comparison()


if __name__ == "__main__":
    main()
