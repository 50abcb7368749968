"""Draw docs/images/twin_appearance.png: episode seeds 1000-1003, front and wrist cameras, `--env.appearance` none,
shifted and unseen side by side (the same cube poses in all three).

    MUJOCO_GL=egl .venv/bin/python examples/twin_appearance.py
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lerobot.configs import parser
from PIL import Image, ImageDraw, ImageFont

from lerobot_env_so101_twin.simulation import TwinConfig, TwinSimulation
from so101_run_infra.cli import prepare_command_line

TITLE_H = 26  # pixels of the title line above the column names


@dataclass
class TwinAppearanceConfig:
    # the PNG to write
    output_path: Path = Path("docs/images/twin_appearance.png")


@parser.wrap()
def twin_appearance(cfg: TwinAppearanceConfig) -> Path:
    cams = {"front": (96, 128), "wrist": (96, 128)}
    levels = ("none", "shifted", "unseen")
    twins = {level: TwinSimulation(TwinConfig(cameras=dict(cams), appearance=level)) for level in levels}
    rows = []
    for seed in range(1000, 1004):
        tiles = []
        for twin in twins.values():
            twin.reset(seed)
            frames = twin.render()
            tiles += [frames["front"].rgb, frames["wrist"].rgb]
        rows.append(np.concatenate(tiles, axis=1))
    grid = np.concatenate(rows, axis=0)
    grid = np.asarray(Image.fromarray(grid).resize((grid.shape[1] * 2, grid.shape[0] * 2), Image.NEAREST))
    header = Image.new("RGB", (grid.shape[1], 28), "white")
    draw = ImageDraw.Draw(header)
    for i, text in enumerate(f"{level}: {camera}" for level in levels for camera in ("front", "wrist")):
        draw.text((i * 256 + 8, 8), text, fill="black")
    side = Image.new("RGB", (110, grid.shape[0] + 28), "white")
    d2 = ImageDraw.Draw(side)
    for r, seed in enumerate(range(1000, 1004)):
        d2.text((6, 28 + r * 192 + 90), f"episode seed {seed}", fill="black")
    canvas = Image.new("RGB", (grid.shape[1] + 110, grid.shape[0] + 28 + TITLE_H), "white")
    (h, w) = cams["front"]
    title = f"--env.appearance none, shifted, unseen: episode seeds 1000-1003 (the same cube poses), {w}x{h} shown 2x"
    ImageDraw.Draw(canvas).text((6, 6), title, fill="black", font=ImageFont.load_default(size=14))
    canvas.paste(side, (0, TITLE_H))
    canvas.paste(header, (110, TITLE_H))
    canvas.paste(Image.fromarray(grid), (110, 28 + TITLE_H))
    canvas.save(cfg.output_path)
    return cfg.output_path


def main() -> None:
    prepare_command_line()
    twin_appearance()


if __name__ == "__main__":
    main()
