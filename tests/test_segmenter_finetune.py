"""A segmenter for the user's own images: labelled frames as a COCO export (here twin frames with their exact masks,
written as pycocotools RLE, as a labelling tool exports them), `so101-seg-masks`, then `so101-seg-train
--model.init_from=<a segmenter>` fine-tuning it with a held-out test share (`--data.test_fraction`), and the run
folder holding the files docs/perception.md names."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from safetensors.torch import load_file

from lerobot_env_so101_twin.commands.camera_align import pose_arm
from lerobot_env_so101_twin.simulation import REST_POSE, TwinConfig, TwinSimulation
from so101_segmenter import coco_masks, train
from so101_segmenter.classes import CLASS_NAMES
from so101_segmenter.data import read_mask
from so101_segmenter.model import EfficientViTFPN, SegmenterConfig, save_segmenter

SIZE = (48, 64)  # (height, width)
FRAMES = 12


def write_twin_coco(root: Path, frames: int = FRAMES) -> list[np.ndarray]:
    """Wrist-camera frames of the twin in varied poses and scenes: images/, and instances_default.json with one RLE
    annotation per class and frame (category ids unlike the class ids: the names are what counts). Returns the
    exact class masks, in order."""
    twin = TwinSimulation(TwinConfig(cameras={"wrist": SIZE}, segmentation=True))
    rng = np.random.default_rng(0)
    images, annotations, masks = [], [], []
    categories = [{"id": 10 + i, "name": name, "supercategory": ""} for i, name in enumerate(CLASS_NAMES) if i]
    try:
        for i in range(frames):
            twin.reset(seed=i)
            pose_arm(
                twin, twin.data, REST_POSE + np.r_[rng.normal(0, 20, 5), rng.uniform(0, 60)] * [1, 0.3, 0.3, 1, 1, 1]
            )
            frame = twin.render()["wrist"]
            name = f"frame_{i:03d}.png"
            (root / "images").mkdir(parents=True, exist_ok=True)
            Image.fromarray(frame.rgb).save(root / "images" / name)
            images.append({"id": i + 1, "file_name": name, "height": SIZE[0], "width": SIZE[1]})
            for cls in np.unique(frame.segmentation):
                rle = mask_utils.encode(np.asfortranarray(frame.segmentation == cls).astype(np.uint8))
                rle["counts"] = rle["counts"].decode()
                annotations.append({
                    "id": len(annotations) + 1, "image_id": i + 1, "category_id": 10 + int(cls), "iscrowd": 0,
                    "segmentation": rle, "area": float(mask_utils.area(rle)), "bbox": mask_utils.toBbox(rle).tolist(),
                })  # fmt: skip
            masks.append(frame.segmentation.copy())
    finally:
        twin.close()
    coco = {"images": images, "annotations": annotations, "categories": categories}
    (root / "instances_default.json").write_text(json.dumps(coco))
    return masks


def command(monkeypatch, main, *flags: str) -> None:
    """A console script's main(), reading sys.argv as LeRobot's parser does."""
    monkeypatch.setattr(sys, "argv", ["so101-seg", *flags])
    main()


def test_fine_tuning_a_segmenter_on_labelled_frames_reports_held_out_miou(tmp_path, monkeypatch, capsys):
    data = tmp_path / "real_v0"
    truth = write_twin_coco(data)
    command(monkeypatch, coco_masks.main, f"--dataset_path={data}")
    index = json.loads((data / "index.json").read_text())["frames"]
    assert len(index) == FRAMES  # the static finger is in every wrist frame, so none is skipped
    for record, mask in zip(index, truth, strict=True):
        np.testing.assert_array_equal(read_mask(data / record["mask"]), mask)  # RLE round trip, exact

    start = tmp_path / "twin_segmenter"
    torch.manual_seed(0)
    save_segmenter(EfficientViTFPN(SegmenterConfig(pretrained=False, fpn_channels=8)), start)  # a tiny checkpoint
    run = tmp_path / "segmenter"
    flags = [
        f"--data.path={data}", "--data.test_fraction=0.25", "--data.val_fraction=0.25", f"--model.init_from={start}",
        f"--data.img_height={SIZE[0]}", f"--data.img_width={SIZE[1]}", "--data.augment=none", "--batch_size=4",
        "--threads=1", "--grid_size=2", f"--output_dir={run}",
    ]  # fmt: skip
    # with a learning rate of ~0 the trained weights are the starting checkpoint's: the run started from it
    command(monkeypatch, train.main, *flags, "--epochs=1", "--optim.lr=1e-9", "--optim.min_lr=0")
    said = capsys.readouterr().err  # the command's log, shown although LeRobot's import set up logging first
    assert f"starting from the segmenter in {start}" in said
    assert "--data.test_fraction=0.25 held out) (3 frames): mIoU over classes 1-5" in said

    for name in ("best/config.json", "best/model.safetensors", "last/model.safetensors", "metrics.jsonl",
                 "val_grid.png", "train_config.yaml", "test_metrics.json"):  # fmt: skip
        assert (run / name).is_file(), f"{name} is missing from the run folder"
    assert json.loads((run / "best" / "config.json").read_text())["fpn_channels"] == 8
    trained, started = load_file(run / "best" / "model.safetensors"), load_file(start / "model.safetensors")
    parameters = {
        name for name, _ in EfficientViTFPN(SegmenterConfig(pretrained=False, fpn_channels=8)).named_parameters()
    }
    for name in parameters:  # BatchNorm's running statistics move with every forward pass in training mode
        torch.testing.assert_close(trained[name], started[name], atol=1e-5, rtol=0)

    test = json.loads((run / "test_metrics.json").read_text())
    assert test["frames"] == 3 and 0.0 <= test["miou"] <= 1.0  # 25% of 12 frames, never trained or validated on
    assert "test_fraction=0.25" in test["dataset"] and test["checkpoint"] == str(run / "best")
    val = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert len(val) == 1 and 0.0 <= val[0]["val_miou"] <= 1.0


def test_the_held_out_frames_are_disjoint_and_the_same_whatever_the_seed(tmp_path):
    from so101_segmenter.dataset_index import FrameRecord

    records = [FrameRecord(image=f"i{i}.png", mask=f"m{i}.png", grasp=i % 4 == 0) for i in range(40)]
    kept, held = train._hold_out_test(records, 0.2)
    assert len(held) == 8 and not {r.image for r in kept} & {r.image for r in held}
    assert sum(r.grasp for r in held) == 2  # the grasp share is kept
    assert train._hold_out_test(records, 0.2)[1] == held
    assert train._hold_out_test(records, 0.0) == (records, [])


def test_bad_fine_tuning_flags_are_named(tmp_path, monkeypatch):
    from so101_segmenter.configs import DataConfig

    with pytest.raises(ValueError, match=r"--data\.test_fraction and --data\.test_path"):
        DataConfig(path=tmp_path, test_path=tmp_path, test_fraction=0.2)
    with pytest.raises(ValueError, match=r"--data.test_fraction must be in \[0, 1\)"):
        DataConfig(path=tmp_path, test_fraction=1.0)
    data = tmp_path / "real_v0"
    write_twin_coco(data, frames=4)
    command(monkeypatch, coco_masks.main, f"--dataset_path={data}")
    missing = tmp_path / "no_segmenter"
    with pytest.raises(FileNotFoundError, match="no_segmenter"):
        command(monkeypatch, train.main, f"--data.path={data}", f"--model.init_from={missing}", "--epochs=1",
                f"--output_dir={tmp_path / 'run'}", "--data.img_height=48", "--data.img_width=64")  # fmt: skip
