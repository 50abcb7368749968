"""The EfficientViT-B0 + FPN segmenter (so101_segmenter): model, metrics, data, COCO masks, sim frames, training,
inference. Every model is built with pretrained=False (no Hub access)."""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from pycocotools import mask as mask_utils
from run_again import mtimes, nothing_to_do

from so101_run_infra.cli import OutputRefused
from so101_run_infra.runs import RUN_FINISHED
from so101_segmenter.classes import BACKGROUND, CUBE, MOVING_FINGER, NUM_CLASSES, STATIC_FINGER, TABLE, UNLABELED
from so101_segmenter.coco_masks import generate_masks
from so101_segmenter.data import SegmentationDataset, build_transforms, stratified_split
from so101_segmenter.dataset_index import DatasetIndex, FrameRecord
from so101_segmenter.metrics import SoftIoULoss, confusion_matrix, iou_per_class, summarize
from so101_segmenter.model import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    EfficientViTFPN,
    SegmenterConfig,
    count_parameters,
    load_segmenter,
    save_segmenter,
)
from so101_segmenter.viz import PALETTE, image_grid, save_grid

BACKBONE = "efficientvit_b0.r224_in1k"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def model() -> EfficientViTFPN:
    torch.manual_seed(0)
    return EfficientViTFPN(SegmenterConfig(pretrained=False)).eval()


# ----- model ---------------------------------------------------------------------------------------------------


def test_parameter_count_matches_upstream_layout(model):
    # Reference: timm's own features_only backbone, plus the decoder counted by hand from pick-101's layout
    # (1x1 lateral conv per stage, Conv3x3+BN per level, 1x1 classifier).
    backbone = timm.create_model(BACKBONE, pretrained=False, features_only=True, out_indices=(0, 1, 2, 3))
    channels = backbone.feature_info.channels()
    assert channels == [16, 32, 64, 128]
    c, k = 64, 6
    decoder = sum(ch * c + c for ch in channels) + len(channels) * (c * c * 9 + c + 2 * c) + (c * k + k)
    assert count_parameters(model.backbone) == count_parameters(backbone) == 682_608
    assert count_parameters(model) == count_parameters(backbone) + decoder == 846_838  # "about 0.85M"


@pytest.mark.parametrize("size", [(84, 84), (480, 640), (97, 131), (33, 47)])
def test_logits_come_back_at_the_input_size(model, size):
    with torch.no_grad():
        out = model(torch.rand(2, 3, *size))
    assert out.shape == (2, NUM_CLASSES, *size)
    assert torch.isfinite(out).all()


def test_normalisation_and_head_order_match_upstream(model):
    """Reference forward written the upstream way: ImageNet normalisation outside, upsample the fused map to the
    input size, then the 1x1 classifier. Ours classifies first; both are linear, so the logits must agree."""
    cfg = timm.get_pretrained_cfg(BACKBONE)
    assert torch.allclose(model.mean.flatten(), torch.tensor(cfg.mean))
    assert torch.allclose(model.std.flatten(), torch.tensor(cfg.std))
    x = torch.rand(2, 3, 84, 84)
    with torch.no_grad():
        normed = (x - torch.tensor(cfg.mean).view(1, 3, 1, 1)) / torch.tensor(cfg.std).view(1, 3, 1, 1)
        fused = model.decoder(model.backbone(normed))
        reference = model.head(F.interpolate(fused, size=(84, 84), mode="bilinear", align_corners=False))
        ours = model(x)
    torch.testing.assert_close(ours, reference, atol=1e-4, rtol=1e-4)


def test_bad_input_is_rejected(model):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(3, 84, 84))
    with pytest.raises(TypeError, match="float"):
        model(torch.zeros(1, 3, 84, 84, dtype=torch.uint8))


def test_save_load_round_trip_gives_identical_outputs(model, tmp_path):
    with torch.no_grad():  # move BatchNorm running stats away from their init so the test sees them saved
        model.decoder.smooth[0][1].running_mean.uniform_(-1, 1)
    save_segmenter(model, tmp_path / "ckpt", {"epoch": 3})
    assert sorted(os.listdir(tmp_path / "ckpt")) == [CONFIG_NAME, WEIGHTS_NAME]  # no temp files left behind
    config = json.loads((tmp_path / "ckpt" / CONFIG_NAME).read_text())
    assert config["architecture"] == "EfficientViTFPN" and config["num_classes"] == 6 and config["fpn_channels"] == 64
    loaded = load_segmenter(tmp_path / "ckpt")
    assert not loaded.training and loaded.config.pretrained is False
    x = torch.rand(2, 3, 84, 84)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_load_errors_name_the_problem(tmp_path):
    small = EfficientViTFPN(SegmenterConfig(pretrained=False, num_classes=4))
    save_segmenter(small, tmp_path / "four")
    with pytest.raises(ValueError, match="num_classes=4, expected 6"):
        load_segmenter(tmp_path / "four", num_classes=6)
    # a config that lies about the weights: shapes disagree, named with the file
    cfg = json.loads((tmp_path / "four" / CONFIG_NAME).read_text())
    (tmp_path / "four" / CONFIG_NAME).write_text(json.dumps({**cfg, "num_classes": 6}))
    with pytest.raises(ValueError, match=r"model\.safetensors does not match.*head\.weight"):
        load_segmenter(tmp_path / "four")
    (tmp_path / "four" / CONFIG_NAME).write_text(json.dumps({**cfg, "fpn_channels": 32}))
    with pytest.raises(ValueError, match="wrong shapes"):
        load_segmenter(tmp_path / "four")
    (tmp_path / "four" / CONFIG_NAME).write_text(json.dumps({**cfg, "architecture": "SegFormer"}))
    with pytest.raises(ValueError, match="architecture is 'SegFormer', expected 'EfficientViTFPN'"):
        load_segmenter(tmp_path / "four")
    with pytest.raises(FileNotFoundError, match=CONFIG_NAME):
        load_segmenter(tmp_path / "nowhere")
    (tmp_path / "four" / CONFIG_NAME).write_text(json.dumps(cfg))
    (tmp_path / "four" / WEIGHTS_NAME).write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="cannot read safetensors"):
        load_segmenter(tmp_path / "four")
    (tmp_path / "four" / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_NAME):
        load_segmenter(tmp_path / "four")


# ----- metrics -------------------------------------------------------------------------------------------------


def test_confusion_and_iou_against_a_hand_computed_case():
    target = torch.tensor([[1, 1, 2, 2], [3, 3, 0, 0]])
    pred = torch.tensor([[1, 2, 2, 2], [3, 1, 5, 4]])
    conf = confusion_matrix(pred, target, 6)
    assert conf.sum() == 6  # the two unlabeled pixels are ignored
    iou = iou_per_class(conf)
    # class 1: tp 1, fp 1 (a 3 predicted as 1), fn 1 -> 1/3; class 2: tp 2, fp 1 -> 2/3; class 3: tp 1, fn 1 -> 1/2
    assert iou[1].item() == pytest.approx(1 / 3) and iou[2].item() == pytest.approx(2 / 3)
    assert iou[3].item() == pytest.approx(1 / 2)
    assert torch.isnan(iou[4]) and torch.isnan(iou[5])  # absent from both: not counted
    summary = summarize(conf)
    assert summary["miou"] == pytest.approx((1 / 3 + 2 / 3 + 1 / 2) / 3)


def test_soft_iou_loss_against_float64_reference():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 5, 7, dtype=torch.float64)
    target = torch.randint(0, 6, (2, 5, 7))
    probs = logits.softmax(1).numpy()
    t = target.numpy()
    valid = t != 0
    ious = []
    for c in range(1, 6):
        p, g = probs[:, c][valid], (t[valid] == c).astype(np.float64)
        inter, union = (p * g).sum(), (p + g - p * g).sum()
        ious.append((inter + 1e-6) / (union + 1e-6))
    expected = 1.0 - np.mean(ious)
    assert SoftIoULoss(6)(logits, target).item() == pytest.approx(expected, rel=1e-9)
    perfect = F.one_hot(target, 6).permute(0, 3, 1, 2).double() * 50
    assert SoftIoULoss(6)(perfect, target).item() == pytest.approx(0.0, abs=1e-6)


# ----- data ----------------------------------------------------------------------------------------------------


def _scene_mask(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A toy wrist view: background above, table below, a cube and two fingers as rectangles."""
    mask = np.full((h, w), BACKGROUND, np.uint8)
    mask[h // 3 :] = TABLE
    y, x = rng.integers(h // 3, h - h // 4), rng.integers(0, w - w // 4)
    mask[y : y + h // 5, x : x + w // 5] = CUBE
    mask[h // 2 :, : w // 6] = STATIC_FINGER
    mask[h // 2 :, -w // 6 :] = MOVING_FINGER
    return mask


def write_toy_dataset(root, frames: int, size=(36, 44), seed: int = 0, episodes: bool = False) -> DatasetIndex:
    """Images whose colours are a function of the class (plus noise), so a model can learn them in seconds."""
    rng = np.random.default_rng(seed)
    index = DatasetIndex(root)
    for i in range(frames):
        mask = _scene_mask(*size, rng)
        rgb = np.clip(PALETTE[mask].astype(np.int16) + rng.integers(-20, 21, (*size, 3)), 0, 255).astype(np.uint8)
        index.write_png(f"images/f{i:03d}.png", rgb)
        index.write_png(f"masks/f{i:03d}.png", mask)
        index.add(
            [
                FrameRecord(
                    f"images/f{i:03d}.png",
                    f"masks/f{i:03d}.png",
                    grasp=i % 3 == 0,
                    episode=i // 2 if episodes else None,
                )
            ]
        )
    index.save()
    return index


def test_joint_transforms_move_image_and_mask_together(tmp_path):
    index = write_toy_dataset(tmp_path, 4, size=(40, 40))
    torch.manual_seed(0)
    ds = SegmentationDataset(index, index.records, build_transforms(40, 40, "flips"))
    for i in range(4):
        for _ in range(3):
            image, mask = ds[i]
            assert image.dtype == torch.float32 and mask.dtype == torch.int64
            # the class recovered from each pixel's colour must be the mask's class (colour noise is only +-20)
            dist = ((image.permute(1, 2, 0)[..., None, :] * 255 - torch.tensor(PALETTE[1:]).float()) ** 2).sum(-1)
            assert torch.equal(dist.argmin(-1) + 1, mask)
    full = SegmentationDataset(index, index.records, build_transforms(24, 32, "full"))
    fills = 0
    for _ in range(12):
        image, mask = full[0]
        assert image.shape == (3, 24, 32) and mask.shape == (24, 32)
        assert image.min() >= 0.0 and image.max() <= 1.0
        assert set(mask.unique().tolist()) <= set(range(NUM_CLASSES))
        fills += int((mask == UNLABELED).any())
    assert fills > 0  # rotations bring in unlabeled pixels, never a made-up class


def test_dataset_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"index\.json"):
        DatasetIndex.load(tmp_path)
    index = write_toy_dataset(tmp_path, 2)
    (tmp_path / "images" / "f000.png").write_bytes(b"garbage")
    ds = SegmentationDataset(index, index.records, build_transforms(36, 44))
    with pytest.raises(ValueError, match=r"cannot decode image .*f000\.png"):
        ds[0]
    Image.fromarray(np.full((36, 44), 9, np.uint8)).save(tmp_path / "masks" / "f001.png")
    with pytest.raises(ValueError, match=r"f001\.png holds class id 9"):
        ds[1]
    with pytest.raises(ValueError, match="no frames"):
        SegmentationDataset(index, [], build_transforms(36, 44))


def test_stratified_split_keeps_ratio_and_episodes_together():
    records = [FrameRecord(f"i{i}", f"m{i}", grasp=i < 20) for i in range(100)]
    train, val = stratified_split(records, 0.15, seed=1)
    assert len(val) == 15 and sum(r.grasp for r in val) == 3 and len(train) + len(val) == 100
    assert not {r.image for r in train} & {r.image for r in val}
    episodes = [FrameRecord(f"i{i}", f"m{i}", grasp=(i // 4) % 4 == 0, episode=i // 4) for i in range(80)]
    train, val = stratified_split(episodes, 0.2)
    assert not {r.episode for r in train} & {r.episode for r in val}
    assert any(r.grasp for r in val) and any(not r.grasp for r in val)
    with pytest.raises(ValueError, match="leaves 1 train and 0 val"):
        stratified_split(records[:1], 0.15)


# ----- COCO masks ----------------------------------------------------------------------------------------------


def _box_polygon(x0, y0, x1, y1):
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def write_tiny_coco(root, categories=None):
    """Two 20x24 frames: a cube overlapping the static finger, drawn as polygons and RLE (compressed and not)."""
    h, w = 20, 24
    (root / "images" / "default").mkdir(parents=True)
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(root / "images" / "default" / name)
    cats = categories or [
        {"id": 7, "name": "background"},
        {"id": 8, "name": "table"},
        {"id": 9, "name": "cube"},
        {"id": 10, "name": "static_finger"},
        {"id": 11, "name": "Moving Finger"},
    ]
    finger = np.zeros((h, w), np.uint8, order="F")
    finger[8:20, 4:12] = 1
    compressed = mask_utils.encode(np.asfortranarray(finger))
    compressed["counts"] = compressed["counts"].decode()
    cube_bits = np.zeros((h, w), np.uint8)
    cube_bits[6:14, 8:16] = 1
    flat = cube_bits.flatten(order="F")  # uncompressed RLE: alternating run lengths, column-major, zeros first
    changes = np.flatnonzero(np.diff(np.concatenate([[0], flat, [2]])) != 0)
    counts = np.diff(np.concatenate([[0], changes])).tolist()
    anns, next_id = [], 1
    for image_id in (1, 2, 3):
        for cat, seg in (
            (7, _box_polygon(0, 0, 24, 10)),
            (8, _box_polygon(0, 10, 24, 20)),
            (9, {"size": [h, w], "counts": counts}),
            (10, compressed),
            (11, _box_polygon(18, 8, 24, 20)),
        ):
            if image_id == 3 and cat == 10:
                continue  # no static finger: an unannotated frame, skipped as upstream does
            anns.append({"id": next_id, "image_id": image_id, "category_id": cat, "segmentation": seg})
            next_id += 1
    coco = {
        "images": [
            {"id": i, "file_name": n, "height": h, "width": w} for i, n in ((1, "a.jpg"), (2, "b.jpg"), (3, "c.jpg"))
        ],
        "annotations": anns,
        "categories": cats,
    }
    (root / "instances_default.json").write_text(json.dumps(coco))
    (root / "selections.json").write_text(json.dumps({"marks": {"b.png": "Grasping"}}))
    (root / "excluded.json").write_text(json.dumps({"marks": {"a.png": "Fine"}}))
    return cube_bits.astype(bool), finger.astype(bool)


def test_coco_masks_both_orders_polygons_and_rle(tmp_path):
    cube, finger = write_tiny_coco(tmp_path)
    index = generate_masks(tmp_path, None, tmp_path / "selections.json", tmp_path / "excluded.json")
    assert [(r.image, r.mask, r.grasp) for r in index.records] == [
        ("images/default/a.jpg", "masks/a.png", False),
        ("images/default/b.jpg", "masks/b.png", True),
    ]
    assert DatasetIndex.load(tmp_path).records == index.records
    a = np.asarray(Image.open(tmp_path / "masks" / "a.png"))
    b = np.asarray(Image.open(tmp_path / "masks" / "b.png"))
    overlap = cube & finger
    assert overlap.any()
    assert (a[overlap] == STATIC_FINGER).all()  # default order: the finger covers the cube
    assert (b[overlap] == CUBE).all()  # grasp order: the held cube is in front
    for m in (a, b):
        assert (m[cube & ~finger] == CUBE).all() and (m[finger & ~cube] == STATIC_FINGER).all()
        assert (m[:6, :4] == BACKGROUND).all() and (m[16:, 20:] == MOVING_FINGER).all()
        assert (m[19, 0] == TABLE) and set(np.unique(m)) <= set(range(1, 6))
    (tmp_path / "excluded.json").write_text(json.dumps({"marks": {"a.png": "Excluded"}}))
    # other settings: the dataset's one index.json is replaced only when asked to
    index = generate_masks(
        tmp_path, tmp_path / "out", tmp_path / "selections.json", tmp_path / "excluded.json", restart=True
    )
    assert [r.image for r in index.records] == ["images/default/b.jpg"] and index.records[0].mask == "out/b.png"
    index = generate_masks(tmp_path, require_class=None, restart=True)  # keeps the frame with no static finger too
    assert len(index.records) == 3


def test_coco_bad_input_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"instances_default\.json"):
        generate_masks(tmp_path)
    (tmp_path / "instances_default.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"instances_default\.json is not valid JSON"):
        generate_masks(tmp_path)
    (tmp_path / "instances_default.json").write_text(json.dumps({"images": []}))
    with pytest.raises(ValueError, match="needs 'images', 'annotations' and 'categories'"):
        generate_masks(tmp_path)
    (tmp_path / "instances_default.json").unlink()
    write_tiny_coco(tmp_path, categories=[{"id": 7, "name": "background"}, {"id": 8, "name": "gripper"}])
    with pytest.raises(ValueError, match=r"category 'gripper' \(id 8\) is not a class"):
        generate_masks(tmp_path)
    with pytest.raises(FileNotFoundError, match="selections file"):
        generate_masks(tmp_path, selections=tmp_path / "missing.json")


def test_coco_masks_again_do_nothing_redo_or_refuse(tmp_path, monkeypatch, capsys):
    """so101-seg-masks over its own output: killed, it is made again as a clean run makes it; finished, it is left
    alone (one line on stdout), also once so101-seg-disparity added targets to the index; other settings, an index it
    did not write with these masks, or a mask folder of other files are refused before any mask is painted."""
    from so101_segmenter import coco_masks

    def command(data: Path, *flags: str) -> None:
        monkeypatch.setattr(sys, "argv", ["so101-seg-masks", f"--dataset_path={data}",
                                          f"--selections={data / 'selections.json'}", *flags])  # fmt: skip
        coco_masks.main()

    clean, data = tmp_path / "clean", tmp_path / "data"
    for root in (clean, data):
        root.mkdir()
        write_tiny_coco(root)
        (root / "selections.json").write_text(json.dumps({"marks": {"b.png": "Grasping"}}))
    command(clean)

    real_paint, real_save = coco_masks.paint_mask, DatasetIndex.save
    monkeypatch.setattr(coco_masks, "paint_mask", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):  # killed while painting: nothing is left
        command(data)
    assert sorted(p.name for p in data.iterdir()) == ["excluded.json", "images", "instances_default.json",
                                                       "selections.json"]  # fmt: skip
    monkeypatch.setattr(coco_masks, "paint_mask", real_paint)
    monkeypatch.setattr(DatasetIndex, "save", lambda self: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):  # killed once the masks were in place, before the index
        command(data)
    assert (data / "masks" / RUN_FINISHED).is_file() and not (data / "index.json").exists()
    monkeypatch.setattr(DatasetIndex, "save", real_save)
    (data / ".masks.tmp").mkdir()  # and what a kill while painting leaves when nothing cleans up after it
    (data / ".masks.tmp" / "a.png").write_bytes(b"half")
    command(data)
    assert (data / "index.json").read_text() == (clean / "index.json").read_text()
    for name in ("a.png", "b.png", RUN_FINISHED):
        assert (data / "masks" / name).read_bytes() == (clean / "masks" / name).read_bytes(), name
    assert not (data / ".masks.tmp").exists()

    capsys.readouterr()
    with_targets = DatasetIndex.load(data)  # so101-seg-disparity --data_path adds targets to the masks' frames
    with_targets.records[0].disparity = "disparity/a.png"
    with_targets.save()

    def made() -> dict[str, int]:  # the dataset's files but the input rewritten below
        return {k: v for k, v in mtimes(data).items() if k != "selections.json"}

    before = made()
    command(data)
    assert (
        capsys.readouterr().out
        == f"{data / 'masks'}: already made with these settings (2 masks, 1 in grasp order); nothing to do\n"
    )
    with pytest.raises(
        OutputRefused,
        match=r"masks made with other settings \(require_class: saved 'static_finger', "
        r"now None\): pass --restart=true to make them again with these, or choose another --output_dir",
    ):
        command(data, "--require_class=")  # fmt: skip
    (data / "selections.json").write_text(json.dumps({"marks": {"a.png": "Grasping"}}))
    with pytest.raises(OutputRefused, match=r"\(selections: saved 'sha256:\w{16}', now 'sha256:\w{16}'\)"):
        command(data)
    with pytest.raises(
        OutputRefused,
        match=rf"{data / 'index.json'} is not the index so101-seg-masks wrote with the "
        rf"masks in {data / 'elsewhere'}: pass --restart=true to replace it",
    ):
        command(data, f"--output_dir={data / 'elsewhere'}")  # fmt: skip
    (data / "selections.json").write_text(json.dumps({"marks": {"b.png": "Grasping"}}))
    assert made() == before
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputRefused, match=f"{other} is not empty and holds no masks so101-seg-masks made"):
        command(data, f"--output_dir={other}", "--restart=true")
    assert [p.name for p in other.iterdir()] == ["notes.txt"]
    command(data, "--require_class=", "--restart=true")
    assert len(DatasetIndex.load(data).records) == 3


# ----- grids ---------------------------------------------------------------------------------------------------


def test_a_saved_grid_has_a_band_with_its_title_and_a_header_over_each_column(tmp_path):
    rows = [[np.full((12, 16, 3), (200, 40, 30), np.uint8)] * 3 for _ in range(2)]
    plain = image_grid(rows, scale=3)
    path = save_grid(tmp_path / "g.png", rows, scale=3, columns=["image", "ground truth", "prediction"], title="t")
    grid = np.asarray(Image.open(path))
    band = grid.shape[0] - plain.shape[0]
    assert grid.shape[1] == plain.shape[1] and band > 20  # a title line and a header line, above the grid
    assert np.array_equal(grid[band:], plain)  # the tiles themselves untouched
    third = grid.shape[1] // 3
    for c in range(3):  # dark text over every column
        assert (grid[:band, c * third : (c + 1) * third] < 100).any()
    assert np.array_equal(np.asarray(Image.open(save_grid(tmp_path / "p.png", rows, scale=3))), plain)


# ----- training and inference ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_train_resume_and_infer_end_to_end(tmp_path, monkeypatch):
    from so101_segmenter import infer, train

    def command(main, *flags: str) -> None:  # a console script's main() reads sys.argv, as LeRobot's parser does
        monkeypatch.setattr(sys, "argv", ["so101-seg", *flags])
        main()

    write_toy_dataset(tmp_path / "data", 24, episodes=False)
    write_toy_dataset(tmp_path / "test", 6, seed=1)
    # part of the run in a config file, the rest (and an override of the file's lr) as dotted flags
    config = tmp_path / "toy.yaml"
    config.write_text(
        f"data:\n  path: {tmp_path / 'data'}\n  img_height: 36\n  img_width: 44\n  augment: flips\n"
        f"model:\n  pretrained: false\noptim:\n  lr: 0.5\nbatch_size: 6\nthreads: 1\n"
    )
    args = [
        f"--config_path={config}",
        "--optim.lr=3e-3",
        f"--output_dir={tmp_path / 'run'}",
        f"--data.test_path={tmp_path / 'test'}",
        "--grid_size=3",
    ]
    command(train.main, *args, "--epochs=3")
    run = tmp_path / "run"
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [0, 1, 2]
    assert set(lines[0]["val_per_class_iou"]) == {
        "unlabeled",
        "background",
        "table",
        "cube",
        "static_finger",
        "moving_finger",
    }
    grid = np.asarray(Image.open(run / "val_grid.png"))
    assert grid.ndim == 3 and grid.shape[0] > grid.shape[1] / 3  # 3 rows of image | truth | prediction
    assert grid.shape[0] > (3 * (36 + 2) + 2) * 6  # and a header band above them (36x44 frames shown 6x)
    # resume: the run continues at epoch 4 with its optimizer state instead of starting over, and the cosine
    # schedule stretches to the new epoch count (it decays instead of restarting)
    command(train.main, *args, "--epochs=10")
    saved = yaml.safe_load((run / "train_config.yaml").read_text())
    assert saved["epochs"] == 10 and saved["optim"]["lr"] == 3e-3 and saved["data"]["img_width"] == 44
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == list(range(10))

    def cosine(epoch: int, epochs: int) -> float:  # CosineAnnealingLR's closed form, lr 3e-3 to 1e-6
        return 1e-6 + (3e-3 - 1e-6) * (1 + math.cos(math.pi * epoch / epochs)) / 2

    assert [x["lr"] for x in lines] == pytest.approx(
        [cosine(e, 3) for e in range(3)] + [cosine(e, 10) for e in range(3, 10)]
    )
    # colour-coded toy classes are learnt within 10 epochs (0.83 measured; BatchNorm running stats lag at first)
    assert max(x["val_miou"] for x in lines) > 0.6, lines[-1]
    test = json.loads((run / "test_metrics.json").read_text())
    assert test["frames"] == 6 and 0.0 <= test["miou"] <= 1.0
    # so101-seg-eval on the same checkpoint, frames and size reproduces the test figure
    eval_args = [f"--segmenter_path={run / 'best'}", f"--data.path={tmp_path / 'test'}", "--data.img_height=36"]
    command(train.eval_main, *eval_args, "--data.img_width=44", f"--output={tmp_path / 'eval.json'}")
    assert json.loads((tmp_path / "eval.json").read_text())["miou"] == pytest.approx(test["miou"])

    # inference on an image, a folder and a video
    src = tmp_path / "data" / "images"
    written = infer.run(run / "best", src / "f000.png", tmp_path / "inf")
    overlay_img, ids = (np.asarray(Image.open(p)) for p in written)
    assert overlay_img.shape == (36, 44, 3) and ids.shape == (36, 44) and ids.max() < NUM_CLASSES
    assert infer.trained_size(run / "best") == (36, 44)
    assert len(infer.run(run / "best", src, tmp_path / "inf_dir")) == 2 * 24
    import av

    video = tmp_path / "clip.mp4"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.height, stream.width, stream.pix_fmt = 36, 44, "yuv420p"
        for i in range(5):
            rgb = np.asarray(Image.open(src / f"f{i:03d}.png").convert("RGB"))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
        container.mux(stream.encode())
    (out_video,) = infer.run(run / "best", video, tmp_path / "inf_vid")
    with av.open(str(out_video)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 5
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match=r"broken\.mp4"):
        infer.run(run / "best", broken, tmp_path / "inf_bad")


def test_train_started_again_does_nothing_resumes_or_refuses(tmp_path, monkeypatch, capsys):
    """so101-seg-train over its own output folder: an interrupted run of these settings resumes (the command has no
    --resume flag), a finished one is left alone, one of other settings or a folder of other files is refused."""
    from so101_segmenter import train

    write_toy_dataset(tmp_path / "data", 12)

    def command(out: Path, *flags: str) -> None:
        monkeypatch.setattr(sys, "argv", [
            "so101-seg-train", f"--data.path={tmp_path / 'data'}", "--data.img_height=36", "--data.img_width=44",
            "--data.augment=none", "--model.pretrained=false", "--model.fpn_channels=8", "--batch_size=6",
            "--threads=1", "--grid_size=2", f"--output_dir={out}", *flags,
        ])  # fmt: skip
        train.main()

    run = tmp_path / "run"
    command(run, "--epochs=1")
    # as if a 2-epoch run had been killed after its first epoch (its last/ says 1 epoch, a length a resumed run may
    # change): the command run again resumes it
    (run / RUN_FINISHED).unlink()
    capsys.readouterr()
    command(run, "--epochs=2")
    assert "resuming from" in capsys.readouterr().err
    assert [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [0, 1]
    before = mtimes(run)
    command(run, "--epochs=2")
    assert capsys.readouterr().out == nothing_to_do(run, "2 epochs")
    with pytest.raises(OutputRefused, match=r"\(optim\.lr: saved 0\.0001, now 0\.001\): choose another --output_dir"):
        command(run, "--epochs=2", "--optim.lr=1e-3")
    assert mtimes(run) == before
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(OutputRefused, match=f"{other} is not empty and holds no so101-seg-train run"):
        command(other, "--epochs=1")
    assert [p.name for p in other.iterdir()] == ["notes.txt"]


def _error_chain(error: BaseException) -> str:
    """Every message of an exception and its causes (draccus wraps a __post_init__ error in a ParsingError)."""
    messages = []
    while error is not None:
        messages.append(str(error))
        error = error.__cause__
    return " | ".join(messages)


def test_train_config_file_flag_overrides_and_clear_errors():
    """configs/segmenter_train.yaml is the segmenter README's run; dotted flags win over it; bad values are named."""
    import draccus

    from so101_segmenter.configs import DataConfig, EvalConfig, TrainConfig

    config = REPO / "configs" / "segmenter_train.yaml"
    cfg = draccus.parse(TrainConfig, config, args=[])  # as parser.wrap calls it for --config_path
    # the run of the quality table: so101-seg-render's 84x84 sim frames, no flips, random backbone, 20 epochs
    assert (cfg.data.path, cfg.data.test_path) == (
        Path("outputs/seg_quality/sim_train"),
        Path("outputs/seg_quality/sim_test"),
    )
    assert (cfg.data.img_height, cfg.data.img_width, cfg.data.augment, cfg.data.val_fraction) == (84, 84, "none", 0.15)
    assert (cfg.batch_size, cfg.epochs, cfg.loss, cfg.patience, cfg.seed) == (16, 20, "iou", 20, 0)
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.min_lr) == (1e-3, 1e-4, 1e-6)
    assert cfg.model.pretrained is False and (cfg.threads, cfg.time_limit_min) == (1, 32)
    assert (cfg.output_dir, cfg.grid_size) == (Path("outputs/seg_quality/run_noflip"), 8)

    flags = ["--optim.lr=3e-4", "--data.augment=flips", "--time_limit_min=null"]
    override = draccus.parse(TrainConfig, config, args=flags)
    assert (override.optim.lr, override.data.augment, override.time_limit_min) == (3e-4, "flips", None)
    assert (override.batch_size, override.optim.min_lr, override.data.img_height) == (16, 1e-6, 84)  # from the file

    for flag, message in [
        ("--data.augment=flip", "--data.augment must be one of full, flips, none, robust, got 'flip'"),
        ("--optim.lr=fast", "Couldn't parse 'fast' into a float"),
        ("--epochs=0", "--epochs must be > 0, got 0"),
        ("--data.val_fraction=1.5", "--data.val_fraction must be in (0, 1), got 1.5"),
    ]:
        with pytest.raises(Exception) as error:
            draccus.parse(TrainConfig, config, args=[flag])
        assert message in _error_chain(error.value), (flag, _error_chain(error.value))
    with pytest.raises(Exception) as error:
        draccus.parse(TrainConfig, args=["--epochs=3"])
    assert "--data.path is required" in _error_chain(error.value)
    with pytest.raises(Exception) as error:
        draccus.parse(EvalConfig, args=["--data.path=data"])
    assert "--segmenter_path is required" in _error_chain(error.value)
    with pytest.raises(ValueError, match=r"--loss must be one of iou, ce, iou\+ce, got 'dice'"):
        TrainConfig(data=DataConfig(path=Path("data")), loss="dice")  # also when built in Python


# ----- simulator frames ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_sim_frames_render_randomised_exact_masks_and_resume(tmp_path):
    from so101_twin_data.sim_frames import RandomizationConfig, render_dataset

    index = render_dataset(tmp_path / "sim", episodes=2, frames_per_episode=3, height=32, width=40, seed=5)
    assert len(index.records) == 2 * 3 * 2  # episodes x frames x cameras
    assert {r.episode for r in index.records} == {5, 6} and {r.camera for r in index.records} == {"wrist", "front"}
    assert DatasetIndex.load(tmp_path / "sim").records == index.records
    table_colours, classes = [], set()
    for r in index.records:
        rgb = np.asarray(Image.open(tmp_path / "sim" / r.image))
        mask = np.asarray(Image.open(tmp_path / "sim" / r.mask))
        assert rgb.shape == (32, 40, 3) and mask.shape == (32, 40) and mask.dtype == np.uint8
        classes |= set(np.unique(mask).tolist())
        if (mask == TABLE).sum() > 50:
            table_colours.append(rgb[mask == TABLE].mean(axis=0))
    assert classes <= set(range(1, 6)) and {BACKGROUND, TABLE} <= classes  # the renderer never leaves holes
    assert np.std(table_colours, axis=0).max() > 10  # the table's look changes from frame to frame
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "sim" / "images").iterdir()}
    index = render_dataset(tmp_path / "sim", episodes=3, frames_per_episode=3, height=32, width=40, seed=5)
    assert len(index.records) == 3 * 3 * 2 and {r.episode for r in index.records} == {5, 6, 7}
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "sim" / "images").iterdir()}
    assert all(after[name] == t for name, t in before.items())  # resumed: the first two episodes were not redone
    # the same command again: nothing to do; other settings, or a folder it did not write: refused, nothing rendered
    again = render_dataset(tmp_path / "sim", episodes=3, frames_per_episode=3, height=32, width=40, seed=5)
    assert again.records == index.records
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "sim" / "images").iterdir()} == after
    with pytest.raises(OutputRefused, match=r"rendered with other settings \(height: saved 32, now 48\)"):
        render_dataset(tmp_path / "sim", episodes=4, frames_per_episode=3, height=48, width=40, seed=5)
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "index.json").write_text("{}")
    with pytest.raises(OutputRefused, match="so101-seg-render did not write"):
        render_dataset(tmp_path / "labels", episodes=1, frames_per_episode=1, height=32, width=40)
    assert len(DatasetIndex.load(tmp_path / "sim").records) == 3 * 3 * 2

    from lerobot_env_so101_twin.simulation import TwinConfig, TwinSimulation

    twin = TwinSimulation(
        TwinConfig(cameras={}, appearance="shifted", appearance_ranges=RandomizationConfig().scene_ranges())
    )
    randomizer = twin.appearance
    randomizer.restore()
    rgba, cam = twin.model.geom_rgba.copy(), twin.model.cam_pos.copy()
    twin.redraw_appearance(np.random.default_rng(0))
    assert not np.array_equal(twin.model.geom_rgba, rgba)
    randomizer.restore()
    assert np.array_equal(twin.model.geom_rgba, rgba) and np.array_equal(twin.model.cam_pos, cam)
