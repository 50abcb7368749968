"""Add a title, column headers and row labels to a PNG that is already drawn, leaving its pixels as they are.

Why it exists: the pictures the docs show should carry titles, axis labels and column headers. Their
generators now draw them, but most of the committed PNGs in docs/images/ cannot be redrawn: the runs they picture
(RL learning curves, segmenter grids, `lerobot-eval` strips, LAQ reconstructions) have left no outputs behind. This
labels such a PNG after the fact: it pads a band on top (the title, wrapped to the width, then one header per
column) and, with --rows, a band on the left (one label per row), and pastes the original below and right of them
unchanged (checked before writing). Columns are equal slices of the width right of --columns_start, rows equal
slices of the height below --rows_start. --banners redraws a label strip inside the picture (eval_strip.py's row
banners, first drawn too small to read) in this font, and only where the strip is blank paper with text on it.

    python scripts/label_figure.py --input_path=docs/images/rl_reach_seed1.png --font=dejavu \\
        --title="ReachCube from scratch, configs/rl_reach.yaml, seed 1"
    python scripts/label_figure.py --input_path=grid.png --columns='[image,ground truth,prediction]'

The calls that labelled docs/images/ are in scripts/label_docs_figures.sh. A labelled PNG carries a `label_figure`
text chunk (the labels it was given) and is refused a second time, so a repeated call cannot stack two bands.
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from lerobot.configs import parser
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from so101_run_infra.cli import prepare_command_line

MARK = "label_figure"  # the PNG text chunk a labelled file carries
MARGIN = 6  # pixels between text and a band's edges


@dataclass
class LabelFigureConfig:
    # the PNG to label; required
    input_path: Path | None = None
    # where to write the labelled PNG (default: over input_path)
    output_path: Path | None = None
    # a title above everything, wrapped to the picture's width (quoted if it holds ": ", --title='"A: b"')
    title: str | None = None
    # one header per column, left to right, over equal slices of the width right of columns_start
    columns: list[str] = field(default_factory=list)
    # pixels at the picture's left that belong to no column (a label column the picture already has)
    columns_start: int = 0
    # one label per row, top to bottom, in a band on the left, over equal slices of the height below rows_start
    rows: list[str] = field(default_factory=list)
    # pixels at the picture's top that belong to no row (a header the picture already has)
    rows_start: int = 0
    # label strips inside the picture to redraw, each "Y:TEXT" (Y: the strip's top row in pixels)
    banners: list[str] = field(default_factory=list)
    # height of each --banners strip in pixels
    banner_height: int = 18
    # "default": PIL's default font, as the PIL-drawn figures use; "dejavu": DejaVu Sans, matplotlib's font
    font: str = "default"
    # text size in pixels (title a quarter larger)
    size: int = 14
    # colour of the added bands: a PIL colour name, or #rrggbb quoted (YAML reads # as a comment): '"#f5f5f5"'
    background: str = "white"

    def __post_init__(self) -> None:
        if self.input_path is None:
            raise ValueError("--input_path is required: the PNG to label")
        if self.title is not None and not isinstance(self.title, str):  # YAML read "A: b" as a mapping
            raise ValueError(f"--title was read as {self.title!r}; quote it: --title='\"A: b\"'")
        if not isinstance(self.background, str) or not self.background:
            raise ValueError(
                f"--background was read as {self.background!r}; quote a #rrggbb: --background='\"#f5f5f5\"'"
            )
        if self.font not in ("default", "dejavu"):
            raise ValueError(f"--font must be default or dejavu, got {self.font!r}")
        if not (self.title or self.columns or self.rows or self.banners):
            raise ValueError("nothing to add: give --title, --columns, --rows or --banners")
        for banner in self.banners:
            y, sep, _ = banner.partition(":")
            if not sep or not y.strip().isdigit():
                raise ValueError(f"--banners entry {banner!r} is not Y:TEXT (Y a whole number of pixels)")


def load_font(name: str, size: int) -> ImageFont.FreeTypeFont:
    if name == "dejavu":
        try:
            from matplotlib import font_manager

            return ImageFont.truetype(font_manager.findfont("DejaVu Sans"), size)
        except (ImportError, OSError):
            return ImageFont.truetype("DejaVuSans.ttf", size)  # a system copy; OSError names it if there is none
    return ImageFont.load_default(size=size)


def wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """`text` in lines no wider than `width` pixels where its words allow (a longer word keeps its own line)."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and font.getlength(candidate) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def line_height(font: ImageFont.FreeTypeFont) -> int:
    ascent, descent = font.getmetrics()
    return ascent + descent + 2


def blank_strip(strip: np.ndarray) -> bool:
    """True for a label strip: every pixel row mostly white paper, and nothing coloured (text is grey on white)."""
    rgb = strip[..., :3].astype(int)
    white = (rgb.min(-1) >= 235).mean(1)
    return bool(white.min() >= 0.6 and (rgb.max(-1) - rgb.min(-1)).max() <= 40)


def redraw_banners(picture: Image.Image, banners: list[str], height: int, font: ImageFont.FreeTypeFont) -> None:
    for banner in banners:
        y, _, text = banner.partition(":")
        top = int(y)
        strip = np.asarray(picture)[top : top + height]
        if top + height > picture.height or not blank_strip(strip):
            raise ValueError(f"rows {top}-{top + height - 1} are not a blank label strip; refusing to draw over them")
        draw = ImageDraw.Draw(picture)
        draw.rectangle((0, top, picture.width - 1, top + height - 1), fill="white")
        offset = (height - line_height(font)) // 2 + 1
        draw.text((4, top + offset), text.strip(), fill="black", font=font)


def label(picture: Image.Image, cfg: LabelFigureConfig) -> Image.Image:
    """The picture inside a new canvas with the title and column headers above it and the row labels on its left."""
    font, title_font = load_font(cfg.font, cfg.size), load_font(cfg.font, round(cfg.size * 1.25))
    if cfg.banners:
        picture = picture.copy()
        redraw_banners(picture, cfg.banners, cfg.banner_height, font)
    left = 0
    if cfg.rows:
        left = max(int(font.getlength(line)) for r in cfg.rows for line in r.split("\n")) + 2 * MARGIN
    width = left + picture.width
    title_lines = wrap(cfg.title, title_font, width - 2 * MARGIN) if cfg.title else []
    column_w = (picture.width - cfg.columns_start) / max(len(cfg.columns), 1)
    headers = [wrap(c, font, int(column_w) - 2 * MARGIN) for c in cfg.columns]
    title_h = len(title_lines) * line_height(title_font) + (MARGIN if title_lines else 0)
    header_h = max((len(h) for h in headers), default=0) * line_height(font)
    top = MARGIN + title_h + header_h + (MARGIN // 2 if headers else 0) if title_lines or headers else 0

    canvas = Image.new(picture.mode, (width, top + picture.height), cfg.background)
    canvas.paste(picture, (left, top))
    draw = ImageDraw.Draw(canvas)
    y = MARGIN
    for line in title_lines:
        draw.text((MARGIN, y), line, fill="black", font=title_font)
        y += line_height(title_font)
    y = MARGIN + title_h
    for c, lines in enumerate(headers):
        x = left + cfg.columns_start + round(c * column_w) + MARGIN
        for i, line in enumerate(lines):
            draw.text((x, y + i * line_height(font)), line, fill="black", font=font)
    row_h = (picture.height - cfg.rows_start) / max(len(cfg.rows), 1)
    for r, text in enumerate(cfg.rows):
        y = top + cfg.rows_start + round((r + 0.5) * row_h) - len(text.split("\n")) * line_height(font) // 2
        draw.multiline_text((MARGIN, y), text, fill="black", font=font, spacing=2)
    placed = np.asarray(canvas)[top:, left:]
    if not np.array_equal(placed, np.asarray(picture)):  # the picture's own pixels, untouched
        raise AssertionError("the labelled canvas changed the picture's pixels")
    return canvas


@parser.wrap()
def label_figure(cfg: LabelFigureConfig) -> Path:
    source = Image.open(cfg.input_path)
    chunks = dict(getattr(source, "text", {}))
    if MARK in chunks:
        raise ValueError(
            f"{cfg.input_path} was labelled already ({MARK}: {chunks[MARK]}); start from the unlabelled PNG"
        )
    labelled = label(source.convert(source.mode if source.mode in ("RGB", "RGBA") else "RGB"), cfg)
    info = PngImagePlugin.PngInfo()
    for key, value in chunks.items():
        info.add_text(key, value)
    given = {k: v for k, v in asdict(cfg).items() if k in ("title", "columns", "rows", "banners") and v}
    info.add_text(MARK, json.dumps(given))
    out = cfg.output_path or cfg.input_path
    out.parent.mkdir(parents=True, exist_ok=True)
    labelled.save(out, pnginfo=info)
    print(f"wrote {out} ({source.width}x{source.height} -> {labelled.width}x{labelled.height})")
    return out


def main() -> None:
    prepare_command_line()
    label_figure()


if __name__ == "__main__":
    main()
