"""The twin segmenter that ships inside so101_segmenter: its folder checks out against its SHA256SUMS and loads, a
damaged file is refused in one line naming it, scripts/ship_segmenter.py writes such a folder from a so101-seg-train
run, and `so101-seg-train --model.init_from=shipped` fine-tunes from it on a 24-frame COCO export with no render or
training first, reporting mIoU on held-out frames. Fine-tuning runs on a tiny shipped folder made by the script."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_segmenter_finetune import command, write_twin_coco

from so101_segmenter import coco_masks, shipped, train
from so101_segmenter.model import EfficientViTFPN, SegmenterConfig, load_segmenter, save_segmenter

ROOT = Path(__file__).resolve().parents[1]
SIZE = (48, 64)


def ship_script():
    spec = importlib.util.spec_from_file_location("ship_segmenter", ROOT / "scripts" / "ship_segmenter.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_package_ships_a_segmenter_that_checks_out_and_loads():
    manifest = shipped.verify()
    assert manifest["version"] and set(manifest) >= {"placeholder", "miou_per_look", "architecture", "training"}
    listed = shipped.read_checksums(shipped.FOLDER)
    assert set(listed) == {"config.json", "model.safetensors", "ship.json", "README.md"}
    assert f"version {manifest['version']}" in (shipped.FOLDER / "README.md").read_text()
    assert shipped.resolve_init_from("shipped") == shipped.FOLDER
    model = load_segmenter(shipped.FOLDER, num_classes=6)
    assert model(torch.rand(1, 3, 32, 40)).shape == (1, 6, 32, 40)
    pyproject = (ROOT / "so101_segmenter" / "pyproject.toml").read_text()
    assert 'so101_segmenter = ["twin_segmenter/*"]' in pyproject, "the wheel would not carry the shipped folder"


@pytest.fixture
def copy_of_the_shipped(tmp_path) -> Path:
    folder = tmp_path / "twin_segmenter"
    shutil.copytree(shipped.FOLDER, folder)
    return folder


def test_a_corrupted_file_is_refused_in_one_line_naming_it(copy_of_the_shipped):
    folder = copy_of_the_shipped
    shipped.verify(folder)
    weights = folder / "model.safetensors"
    original = weights.read_bytes()
    data = bytearray(original)
    data[len(data) // 2] ^= 0xFF  # one flipped byte in the middle of a tensor still loads: only the checksum sees it
    weights.write_bytes(bytes(data))
    with pytest.raises(shipped.ShippedSegmenterError) as e:
        shipped.verify(folder)
    said = str(e.value)
    assert said.startswith(f"{weights} is corrupted: its sha256 is ") and "reinstall so101_segmenter" in said
    assert "\n" not in said
    weights.write_bytes(original)
    (folder / "ship.json").unlink()
    with pytest.raises(shipped.ShippedSegmenterError, match=r"ship\.json is missing from the shipped segmenter"):
        shipped.verify(folder)
    (folder / "SHA256SUMS").unlink()
    with pytest.raises(shipped.ShippedSegmenterError, match=r"SHA256SUMS is missing"):
        shipped.verify(folder)


def test_so101_seg_train_refuses_a_corrupted_shipped_segmenter(copy_of_the_shipped, tmp_path, monkeypatch):
    folder = copy_of_the_shipped
    config = folder / "config.json"
    config.write_text(config.read_text().replace('"fpn_channels"', '"fpn_channels" '))  # valid JSON, other bytes
    monkeypatch.setattr(shipped, "FOLDER", folder)
    data = tmp_path / "real_v0"
    write_twin_coco(data, frames=4)
    command(monkeypatch, coco_masks.main, f"--dataset_path={data}")
    with pytest.raises(SystemExit) as e:
        command(monkeypatch, train.main, f"--data.path={data}", "--model.init_from=shipped", "--epochs=1",
                f"--output_dir={tmp_path / 'run'}", "--data.img_height=48", "--data.img_width=64")  # fmt: skip
    assert str(e.value.code).startswith(f"error: {folder / 'config.json'} is corrupted"), e.value.code


def tiny_run(root: Path) -> Path:
    """A so101-seg-train output folder as the script reads it, with a tiny segmenter in best/ (with a depth head, as
    the shipped one has)."""
    torch.manual_seed(0)
    config = SegmenterConfig(pretrained=False, fpn_channels=8, depth_head=True)
    save_segmenter(EfficientViTFPN(config), root / "best")
    epochs = [{"epoch": 0, "val_miou": 0.41, "elapsed_s": 30.0}, {"epoch": 1, "val_miou": 0.52, "elapsed_s": 61.0}]
    (root / "metrics.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
    (root / "train_config.yaml").write_text("loss: iou\nepochs: 2\n")
    scores = {"background": 0.9, "table": 0.95, "cube": 0.7, "static_finger": 0.6, "moving_finger": None}
    (root / "eval_none.json").write_text(json.dumps({"miou": 0.79, "per_class_iou": scores, "frames": 40}))
    return root


def test_the_ship_script_writes_a_checked_folder_with_its_card(tmp_path, monkeypatch, capsys):
    run = tiny_run(tmp_path / "run")
    out = tmp_path / "twin_segmenter"
    looks = f"--looks={{none: {run / 'eval_none.json'}}}"
    argv = ["ship_segmenter.py", f"--run_dir={run}", "--version=1.2", looks, f"--output_dir={out}"]
    monkeypatch.setattr(sys, "argv", argv)
    ship_script().main()
    assert f"as version 1.2 to {out}" in capsys.readouterr().out
    manifest = shipped.verify(out)
    assert manifest["version"] == "1.2" and not manifest["placeholder"]
    assert manifest["training"] == {"epochs_run": 2, "train_time_s": 61.0, "best_val_miou": 0.52, "best_epoch": 2}
    card = (out / "README.md").read_text()
    assert "| none | 40 | 0.900 | 0.950 | 0.700 | 0.600 | n/a | **0.790** |" in card
    assert "2 epochs, 1.0 min of training; best validation mIoU 0.520 (epoch 2)." in card
    assert "loss: iou" in card and "PLACEHOLDER" not in card
    for name in ("config.json", "model.safetensors"):
        assert (out / name).read_bytes() == (run / "best" / name).read_bytes()
    monkeypatch.setattr(sys, "argv", ["ship_segmenter.py", f"--run_dir={tmp_path / 'nothing'}", "--version=1"])
    with pytest.raises(FileNotFoundError, match=r"nothing/best does not exist"):
        ship_script().main()


def test_fine_tuning_starts_from_the_shipped_segmenter_with_no_render_or_training(tmp_path, monkeypatch, capsys):
    """24 labelled frames exported as COCO, then the documented command with --model.init_from=shipped: it starts
    from the shipped weights (a learning rate of ~0 keeps them) and scores the frames it held out."""
    folder = tmp_path / "twin_segmenter"
    monkeypatch.setattr(sys, "argv", ["ship_segmenter.py", f"--run_dir={tiny_run(tmp_path / 'run')}",
                                      "--version=9", f"--output_dir={folder}"])  # fmt: skip
    ship_script().main()
    monkeypatch.setattr(shipped, "FOLDER", folder)
    data = tmp_path / "real_v0"
    write_twin_coco(data, frames=24)
    command(monkeypatch, coco_masks.main, f"--dataset_path={data}")
    out = tmp_path / "segmenter"
    command(monkeypatch, train.main, f"--data.path={data}", "--data.test_fraction=0.15", "--model.init_from=shipped",
            f"--data.img_height={SIZE[0]}", f"--data.img_width={SIZE[1]}", "--data.augment=none", "--threads=1",
            "--epochs=1", "--optim.lr=1e-9", "--optim.min_lr=0", "--grid_size=2", f"--output_dir={out}")  # fmt: skip
    said = capsys.readouterr().err
    assert f"the shipped twin segmenter, version 9: {folder}" in said
    assert f"starting from the segmenter in {folder} (fine-tuning)" in said
    # a labelling tool's export has no disparity: the classes are fine-tuned, the depth head carried along
    assert "lists no disparity targets: only the classes are fine-tuned" in said
    test = json.loads((out / "test_metrics.json").read_text())
    assert test["frames"] >= 3 and 0.0 <= test["miou"] <= 1.0 and "test_fraction=0.15" in test["dataset"]
    assert f"(--data.test_fraction=0.15 held out) ({test['frames']} frames): mIoU over classes 1-5" in said
    trained, started = load_file(out / "best" / "model.safetensors"), load_file(folder / "model.safetensors")
    torch.testing.assert_close(trained["head.weight"], started["head.weight"], atol=1e-5, rtol=0)


def test_a_missing_init_folder_names_the_flag_and_the_shipped_one(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        shipped.resolve_init_from(tmp_path / "outputs" / "seg_quality" / "run_noflip" / "best")
    said = str(e.value)
    assert said.startswith(f"--model.init_from={tmp_path}/outputs/seg_quality/run_noflip/best: no segmenter there")
    assert "--model.init_from=shipped starts from the twin segmenter that ships with so101_segmenter" in said
