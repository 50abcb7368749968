"""The figures' labels: examples/eval_strip.py's title, column header and row banners, and scripts/label_figure.py,
which labels an already drawn PNG (docs/images/) without changing its pixels."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]


def load_script(relative: str):
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(f"figures_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def drawn_text(monkeypatch) -> list[str]:
    """Every text PIL draws from here on, in order."""
    texts, original = [], ImageDraw.ImageDraw.text

    def text(self, xy, value, *args, **kwargs):
        texts.append(value)
        return original(self, xy, value, *args, **kwargs)

    monkeypatch.setattr(ImageDraw.ImageDraw, "text", text)
    return texts


# ----- examples/eval_strip.py -----------------------------------------------------------------------------------
def write_eval_folder(folder: Path, frames: int = 10, size: tuple[int, int] = (32, 64)) -> None:
    """A lerobot-eval output folder in miniature: eval_info.json and one episode video of `frames` frames at 10 fps."""
    video = folder / "videos" / "LiftCube_0" / "eval_episode_0.mp4"
    video.parent.mkdir(parents=True)
    with av.open(str(video), mode="w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        for i in range(frames):
            image = np.full((*size, 3), 20 * i, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    info = {"per_task": [{"metrics": {"successes": [True], "max_rewards": [2.5]}}]}
    (folder / "eval_info.json").write_text(json.dumps(info))


def test_an_eval_strip_has_a_title_a_header_per_frame_and_a_banner_per_row(tmp_path, drawn_text):
    strip = load_script("examples/eval_strip.py")
    write_eval_folder(tmp_path / "run.eval")
    cfg = strip.EvalStripConfig(
        rows=[f"{tmp_path / 'run.eval'}:0:imf seed 1"], frames=3, output_path=tmp_path / "strip.png",
        title="LiftCube", cameras=["front", "wrist"],
    )  # fmt: skip
    strip.eval_strip(cfg)
    assert drawn_text[0] == "imf seed 1 | episode 0: success, best reward 2.50 | 1.0 s"  # the row's banner
    assert drawn_text[1] == "LiftCube - 3 frames spread over each episode, first to last"
    assert drawn_text[2:] == [
        "frame 1/3 (first): front | wrist", "frame 2/3: front | wrist", "frame 3/3 (last): front | wrist",
    ]  # fmt: skip
    image = np.asarray(Image.open(tmp_path / "strip.png"))
    assert image.shape == (2 * strip.LINE + 4 + strip.LINE + 32, 3 * 64, 3)  # header, banner, a row of 3 frames


# ----- scripts/label_figure.py ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def label_figure():
    return load_script("scripts/label_figure.py")


def picture(path: Path) -> np.ndarray:
    """A 60x90 RGB picture of coloured noise, a white 18-pixel label strip with grey text at its top."""
    array = np.random.default_rng(0).integers(0, 256, (60, 90, 3), dtype=np.uint8)
    array[:18] = 255
    array[5:12, 4:40] = 90
    Image.fromarray(array).save(path)
    return array


def test_labelling_pads_bands_and_leaves_the_pixels_as_they_were(tmp_path, label_figure, drawn_text):
    original = picture(tmp_path / "a.png")
    cfg = label_figure.LabelFigureConfig(
        input_path=tmp_path / "a.png", output_path=tmp_path / "b.png", title="a title",
        columns=["left", "right"], rows=["first", "second"],
    )  # fmt: skip
    label_figure.label_figure(cfg)
    assert drawn_text[:3] == ["a title", "left", "right"] and "first" in drawn_text[3] and "second" in drawn_text[4]
    out = Image.open(tmp_path / "b.png")
    labelled = np.asarray(out)
    top, left = labelled.shape[0] - 60, labelled.shape[1] - 90
    assert top > 30 and left > 20  # a title line and a header line above, the row labels on the left
    assert np.array_equal(labelled[top:, left:], original)
    for half in (slice(left, left + 45), slice(left + 45, None)):  # a header over each column
        assert (labelled[top - 16 : top, half] < 100).any()
    assert json.loads(out.text["label_figure"])["columns"] == ["left", "right"]
    with pytest.raises(ValueError, match="labelled already"):  # a second call would stack a second band
        label_figure.label_figure(label_figure.LabelFigureConfig(input_path=tmp_path / "b.png", title="again"))


def test_a_banner_is_redrawn_only_over_a_blank_label_strip(tmp_path, label_figure, drawn_text):
    original = picture(tmp_path / "a.png")
    cfg = label_figure.LabelFigureConfig(input_path=tmp_path / "a.png", banners=["0:readable: words"], size=12)
    label_figure.label_figure(cfg)
    labelled = np.asarray(Image.open(tmp_path / "a.png"))
    assert drawn_text == ["readable: words"] and labelled.shape == original.shape  # nothing to pad
    assert np.array_equal(labelled[18:], original[18:]) and not np.array_equal(labelled[:18], original[:18])
    picture(tmp_path / "c.png")
    with pytest.raises(ValueError, match="not a blank label strip"):  # rows 10-27: the strip's end, then the noise
        label_figure.label_figure(label_figure.LabelFigureConfig(input_path=tmp_path / "c.png", banners=["10:x"]))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "c.png")), original)


def test_label_figure_names_what_it_cannot_use(label_figure):
    with pytest.raises(ValueError, match="--input_path is required"):
        label_figure.LabelFigureConfig(title="t")
    with pytest.raises(ValueError, match="nothing to add"):
        label_figure.LabelFigureConfig(input_path=Path("a.png"))
    with pytest.raises(ValueError, match="quote it"):  # what LeRobot's parser makes of --title='a: b'
        label_figure.LabelFigureConfig(input_path=Path("a.png"), title={"a": "b"})
    with pytest.raises(ValueError, match="not Y:TEXT"):
        label_figure.LabelFigureConfig(input_path=Path("a.png"), banners=["top:x"])
