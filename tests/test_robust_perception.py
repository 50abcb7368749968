"""The segmenter's depth head, its robust augmentation, the hue band `unseen` keeps to itself, and SegDepth's
perception_source=segmenter_depth, on tiny models and tiny renders."""

from __future__ import annotations

import colorsys
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from clitools import run_cli
from PIL import Image
from run_again import mtimes
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from so101_run_infra.cli import OutputRefused
from so101_segmenter.augment import PhotometricAugment, PhotometricConfig
from so101_segmenter.classes import CUBE, TABLE, UNLABELED
from so101_segmenter.hue_band import HueBand, fold_out_of_band, fold_uint8, in_band, rgb_to_hsv
from so101_segmenter.metrics import disparity_error_255, disparity_loss, minmax_255
from so101_segmenter.model import EfficientViTFPN, SegmenterConfig, load_segmenter, save_segmenter

BAND = HueBand(0.70, 0.88, 0.3)


def colorsys_in_band(rgb: np.ndarray, band: HueBand = BAND) -> np.ndarray:
    """The reference: colorsys, pixel by pixel, in float64. rgb (..., 3) in [0, 1]."""
    flat = rgb.reshape(-1, 3).astype(np.float64)
    hsv = np.array([colorsys.rgb_to_hsv(*p) for p in flat])
    hit = (hsv[:, 1] >= band.min_saturation) & (hsv[:, 0] >= band.low) & (hsv[:, 0] < band.high)
    return hit.reshape(rgb.shape[:-1])


def test_hsv_matches_colorsys_and_the_fold_leaves_no_pixel_in_the_band():
    rgb = torch.rand(3, 40, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64).float()
    ref = np.array([colorsys.rgb_to_hsv(*p) for p in rgb.permute(1, 2, 0).reshape(-1, 3).double().numpy()])
    np.testing.assert_allclose(rgb_to_hsv(rgb).permute(1, 2, 0).reshape(-1, 3).numpy(), ref, atol=1e-5)
    inside = colorsys_in_band(rgb.permute(1, 2, 0).numpy())
    assert 0.05 < inside.mean() < 0.3  # uniform colours: about (0.18 of hues) x (0.7 saturated)
    assert torch.equal(in_band(rgb, BAND), torch.from_numpy(inside))
    folded = fold_out_of_band(rgb, BAND)
    assert not colorsys_in_band(folded.permute(1, 2, 0).numpy()).any()
    assert torch.equal(folded[:, ~torch.from_numpy(inside)], rgb[:, ~torch.from_numpy(inside)])  # others untouched
    # saturation and value are kept, the hue moved out at the nearer edge
    before, after = rgb_to_hsv(rgb)[:, torch.from_numpy(inside)], rgb_to_hsv(folded)[:, torch.from_numpy(inside)]
    torch.testing.assert_close(after[1:], before[1:], atol=1e-4, rtol=1e-4)
    lower = before[0] < (BAND.low + BAND.high) / 2
    assert (after[0][lower] < BAND.low).all() and (after[0][~lower] >= BAND.high).all()
    # uint8: rounding cannot bring a pixel back
    u8 = fold_uint8((rgb.permute(1, 2, 0).numpy() * 255).astype(np.uint8), BAND)
    assert u8.dtype == np.uint8 and not colorsys_in_band(u8 / 255.0).any()


def test_augmentation_moves_targets_with_the_image_and_hides_patches_from_the_losses():
    torch.manual_seed(0)
    image = torch.rand(3, 24, 32)
    mask = torch.full((24, 32), TABLE, dtype=torch.int64)
    mask[8:16, 10:20] = CUBE
    disparity = torch.rand(1, 24, 32) + 1.0
    config = PhotometricConfig(erase_prob=1.0, recolour_prob=1.0, same_hue_prob=1.0)
    for _ in range(10):
        out, out_mask, out_disp = PhotometricAugment(config, BAND)(image, mask, disparity)
        assert out.shape == image.shape and out.min() >= 0 and out.max() <= 1
        hidden = out_mask == UNLABELED
        assert hidden.any() and ((out_mask == mask) | hidden).all()  # only patches change the labels
        assert torch.equal(out_disp[0] == 0, hidden)  # and have no depth target
        assert not colorsys_in_band(out.permute(1, 2, 0).numpy()).any()
    assert torch.equal(mask[8, 10], torch.tensor(CUBE))  # the inputs are not changed in place


def test_same_hue_recolouring_gives_every_class_one_hue():
    torch.manual_seed(1)
    image = torch.rand(3, 16, 16) * 0.5 + 0.25
    mask = torch.zeros(16, 16, dtype=torch.int64) + TABLE
    mask[:8] = CUBE
    config = PhotometricConfig(
        recolour_prob=1.0, same_hue_prob=1.0, grayscale_prob=0, cast_prob=0, blur_prob=0, erase_prob=0,
        brightness=(1, 1), contrast=(1, 1), gamma=(1, 1), noise_std=(0, 0),
    )  # fmt: skip
    out, _, _ = PhotometricAugment(config)(image, mask)
    hue = rgb_to_hsv(out)[0]
    gap = (hue[mask == CUBE].median() - hue[mask == TABLE].median()).abs()
    assert min(gap, 1 - gap) <= 0.061  # the shared hue, +-0.03 per class


def test_disparity_loss_ignores_scale_and_shift_but_not_order():
    target = torch.rand(2, 1, 10, 12, generator=torch.Generator().manual_seed(0)) + 1.0
    assert disparity_loss(3.0 * target + 5.0, target) < 1e-5
    assert disparity_loss(-target, target) > 1.0  # far and near swapped
    noisy = target + 0.1 * torch.rand_like(target)
    hidden = target.clone()
    hidden[:, :, :5] = 0  # no target there: whatever is predicted there does not count
    wild = noisy.clone()
    wild[:, :, :5] = 100.0
    torch.testing.assert_close(disparity_loss(wild, hidden), disparity_loss(noisy[:, :, 5:], target[:, :, 5:]))
    assert disparity_loss(target, torch.zeros_like(target)) == 0  # no target anywhere: no loss, no NaN
    # the error SegDepth would see: both min-max normalised to 0-255 per frame
    assert disparity_error_255(2 * target + 1, target).abs().max() < 1e-3
    m = minmax_255(target)
    assert m.amin(dim=(1, 2, 3)).abs().max() < 1e-4 and (m.amax(dim=(1, 2, 3)) - 255).abs().max() < 1e-3


def _tiny_depth_segmenter(folder: Path, depth_head: bool = True, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    model = EfficientViTFPN(SegmenterConfig(pretrained=False, fpn_channels=8, depth_head=depth_head))
    for module in model.modules():  # BN statistics from random images, so class maps and disparity vary
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None
            module.reset_running_stats()
    model.train()
    with torch.no_grad():
        model.forward_with_disparity(torch.rand(8, 3, 32, 32)) if depth_head else model(torch.rand(8, 3, 32, 32))
    return save_segmenter(model.eval(), folder)


def test_depth_head_round_trips_and_a_headless_segmenter_is_refused_by_name(tmp_path):
    folder = _tiny_depth_segmenter(tmp_path / "with_head")
    model = load_segmenter(folder, depth_head=True)
    logits, disparity = model.forward_with_disparity(torch.rand(2, 3, 30, 40))
    assert logits.shape == (2, 6, 30, 40) and disparity.shape == (2, 1, 30, 40)
    ones = torch.ones(1, 3, 30, 40)
    torch.testing.assert_close(model(ones), model.forward_with_disparity(ones)[0])
    headless = _tiny_depth_segmenter(tmp_path / "headless", depth_head=False)
    with pytest.raises(ValueError, match=rf"{headless}.*no depth head"):
        load_segmenter(headless, depth_head=True)
    with pytest.raises(ValueError, match="no depth head"):
        load_segmenter(headless).forward_with_disparity(torch.rand(1, 3, 16, 16))


def test_segmenter_depth_step_is_one_forward_pass_of_the_model(tmp_path, monkeypatch):
    from lerobot_policy_segdepth.perception import SegmenterStep

    folder = _tiny_depth_segmenter(tmp_path / "seg")
    step = SegmenterStep(
        image_keys=["observation.images.wrist"], output_keys=["ids"], disparity_keys=["disp"],
        input_size=32, output_size=20, checkpoint=str(folder),
    )  # fmt: skip
    rgb = TF.resize(torch.rand(3, 3, 6, 8, generator=torch.Generator().manual_seed(2)), [48, 64], antialias=True)
    calls = []
    original = type(step.model).forward_with_disparity
    monkeypatch.setattr(type(step.model), "forward_with_disparity", lambda m, x: calls.append(1) or original(m, x))
    out = step({"observation": {"observation.images.wrist": rgb}})["observation"]
    assert len(calls) == 1
    # reference: crop the centre square, resize, model, float64 min-max to 0-255 at the model's size, resize
    crop = TF.resize(rgb[..., 8:56], [32, 32], InterpolationMode.BICUBIC, antialias=True).clamp(0, 1)
    model = load_segmenter(folder)
    with torch.no_grad():
        logits, disparity = model.forward_with_disparity(crop)
    ids = torch.nn.functional.interpolate(logits, size=(20, 20), mode="bilinear", align_corners=False).argmax(1)
    d = disparity.double()
    lo, hi = d.amin(dim=(1, 2, 3), keepdim=True), d.amax(dim=(1, 2, 3), keepdim=True)
    expected = TF.resize(((d - lo) / (hi - lo) * 255).float(), [20, 20], InterpolationMode.BILINEAR, antialias=True)
    assert out["ids"].shape == out["disp"].shape == (3, 1, 20, 20)
    assert torch.equal(out["ids"][:, 0], ids.float())
    torch.testing.assert_close(out["disp"], expected, atol=1e-3, rtol=1e-4)
    assert out["disp"].unique().numel() > 20
    headless = _tiny_depth_segmenter(tmp_path / "headless", depth_head=False)
    with pytest.raises(ValueError, match=rf"{headless} has no depth head"):
        SegmenterStep(
            image_keys=["observation.images.wrist"], output_keys=["ids"], disparity_keys=["disp"],
            checkpoint=str(headless),
        )  # fmt: skip


def test_segdepth_source_segmenter_depth_reads_rgb_alone(tmp_path):
    from lerobot.configs import FeatureType, PolicyFeature

    from lerobot_policy_segdepth.configuration_segdepth import OBS_SEGDEPTH, SegDepthConfig
    from lerobot_policy_segdepth.processor_segdepth import segdepth_observation_steps

    folder = _tiny_depth_segmenter(tmp_path / "seg")
    features = {
        "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(6,)),
        "observation.images.wrist": PolicyFeature(type=FeatureType.VISUAL, shape=(3, 96, 128)),
    }
    config = SegDepthConfig(
        perception_source="segmenter_depth",
        segmenter_path=str(folder),
        segmenter_input_size=32,
        input_features=features,
    )
    config.validate_features()
    assert config.image_keys == ["observation.images.wrist"]
    obs = {"observation.images.wrist": torch.rand(2, 3, 96, 128)}
    for step in segdepth_observation_steps(config):
        obs = step({"observation": obs})["observation"]
    assert obs[OBS_SEGDEPTH].shape == (2, 2, 84, 84)
    assert obs[OBS_SEGDEPTH][:, 1].amax() == 255 and obs[OBS_SEGDEPTH][:, 1].amin() == 0
    with pytest.raises(ValueError, match=r"segmenter_depth needs --policy\.segmenter_path"):
        SegDepthConfig(perception_source="segmenter_depth")
    headless = _tiny_depth_segmenter(tmp_path / "headless", depth_head=False)
    bad = SegDepthConfig(perception_source="segmenter_depth", segmenter_path=str(headless), input_features=features)
    with pytest.raises(ValueError, match=rf"{headless} has no depth head"):
        segdepth_observation_steps(bad)
    # a folder of the wrong kind: Depth Anything's, named with what was expected, before any step is built
    from test_perception import save_tiny_depth_anything

    teacher = save_tiny_depth_anything(tmp_path / "depth_anything")
    wrong = SegDepthConfig(perception_source="segmenter_depth", segmenter_path=str(teacher), input_features=features)
    with pytest.raises(ValueError, match=rf"{teacher}/config.json: a transformers 'depth_anything' model, not a"):
        segdepth_observation_steps(wrong)


def _render(folder: Path, episodes: int = 2, **kwargs):
    from so101_twin_data.sim_frames import render_dataset

    return render_dataset(folder, episodes=episodes, frames_per_episode=2, height=32, width=40, **kwargs)


@pytest.mark.slow
def test_no_training_pixel_has_the_unseen_hue_and_unseen_renders_do(tmp_path):
    """What `unseen` keeps to itself stays out of the segmenter's training pixels, rendered and augmented."""
    from so101_segmenter.data import SegmentationDataset, build_transforms

    index = _render(tmp_path / "train", episodes=3, seed=11)
    for record in index.records:
        rgb = np.asarray(Image.open(index.root / record.image)) / 255.0
        assert not colorsys_in_band(rgb).any(), record.image
        disparity = np.asarray(Image.open(index.root / record.disparity))
        assert disparity.dtype == np.uint16 and disparity.max() == 65535 and disparity.min() == 0
    torch.manual_seed(0)
    heavy = PhotometricConfig(recolour_prob=1.0, cast_prob=1.0, erase_prob=1.0)
    dataset = SegmentationDataset(
        index, index.records, build_transforms(32, 40, "robust"), photometric=PhotometricAugment(heavy, BAND),
        disparity=True,
    )  # fmt: skip
    for _ in range(3):  # each pass draws new augmentations
        for i in range(len(dataset)):
            image, _, _ = dataset[i]
            assert not colorsys_in_band(image.permute(1, 2, 0).numpy()).any()
    unseen = _render(tmp_path / "unseen", episodes=1, seed=11, appearance="unseen")
    shares = [colorsys_in_band(np.asarray(Image.open(unseen.root / r.image)) / 255.0).mean() for r in unseen.records]
    assert max(shares) > 0.3  # the check can fail: unseen's own frames are mostly of that hue


@pytest.mark.slow
def test_train_a_depth_head_then_distil_a_teacher_on_unlabelled_frames(tmp_path):
    """so101-seg-train with a depth head on twin renders, then so101-seg-disparity (a random-config Depth Anything as
    the teacher) on frames without masks, and a fine-tune from the first run on them; the stock commands."""
    from test_perception import save_tiny_depth_anything

    _render(tmp_path / "sim", episodes=4, seed=0)
    common = ["--data.img_height=32", "--data.img_width=40", "--batch_size=4", "--threads=1"]
    common += ["--data.val_fraction=0.25"]
    run_cli(
        ["so101-seg-train", f"--data.path={tmp_path / 'sim'}", f"--data.test_path={tmp_path / 'sim'}",
         "--data.augment=robust", "--data.excluded_hue_band=[0.70,0.88,0.3]", "--model.pretrained=false",
         "--model.depth_head=true", "--model.fpn_channels=8", "--loss=iou+ce", "--class_weights=[0,1,1,3,1,1]",
         "--epochs=2", f"--output_dir={tmp_path / 'run'}", *common],
        cwd=tmp_path,
    )  # fmt: skip
    test = json.loads((tmp_path / "run" / "test_metrics.json").read_text())
    assert 0 <= test["disparity_error_255"] <= 255 and 0 <= test["miou"] <= 1
    assert (tmp_path / "run" / "val_grid.png").is_file()
    assert load_segmenter(tmp_path / "run" / "best", depth_head=True).has_depth

    # a user's own frames: images only, no masks
    frames = tmp_path / "own"
    (frames / "images").mkdir(parents=True)
    for i, record in enumerate(_images(tmp_path / "sim")[:6]):
        Image.open(tmp_path / "sim" / record).save(frames / "images" / f"f{i}.png")
    teacher = save_tiny_depth_anything(tmp_path / "teacher")
    done = run_cli(
        ["so101-seg-disparity", f"--images={frames / 'images'}", f"--output_dir={frames}",
         f"--depth_model={teacher}", "--input_size=28"],
        cwd=tmp_path,
    )  # fmt: skip
    index = json.loads((frames / "index.json").read_text())
    assert len(index["frames"]) == 6 and all(f["mask"] == "" and f["disparity"] for f in index["frames"]), done.stdout
    run_cli(
        ["so101-seg-train", f"--data.path={frames}", "--data.augment=robust",
         f"--model.init_from={tmp_path / 'run' / 'best'}", "--model.depth_head=true", "--epochs=1",
         "--data.val_fraction=0.34", f"--output_dir={tmp_path / 'tuned'}", "--data.img_height=32",
         "--data.img_width=40", "--batch_size=2", "--threads=1"],
        cwd=tmp_path,
    )  # fmt: skip
    metrics = [json.loads(line) for line in (tmp_path / "tuned" / "metrics.jsonl").read_text().splitlines()]
    assert "val_disparity_error_255" in metrics[-1]


def test_disparity_run_again_resumes_does_nothing_or_refuses(tmp_path, monkeypatch, capsys):
    """so101-seg-disparity over its own output: killed, it continues to what a clean run makes; finished, it does
    nothing (one line on stdout); another teacher's settings are refused unless --restart=true, and with --images an
    index.json it did not write is refused; --data_path over frames that all have targets does nothing."""
    from test_perception import save_tiny_depth_anything

    from so101_segmenter import teacher as teacher_module
    from so101_segmenter.dataset_index import DatasetIndex, FrameRecord

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).save(images / f"f{i}.png")
    depth_model = save_tiny_depth_anything(tmp_path / "teacher")

    def command(*flags: str) -> None:
        monkeypatch.setattr(sys, "argv", ["so101-seg-disparity", f"--depth_model={depth_model}", "--input_size=28",
                                          "--batch_size=2", "--device=cpu", *flags])  # fmt: skip
        teacher_module.main()

    clean, own = tmp_path / "clean", tmp_path / "own"
    command(f"--images={images}", f"--output_dir={clean}")
    real, batches = teacher_module.teacher_disparity, []

    def killed_in_the_second_batch(*args):
        batches.append(1)
        if len(batches) == 2:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(teacher_module, "teacher_disparity", killed_in_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        command(f"--images={images}", f"--output_dir={own}")
    monkeypatch.setattr(teacher_module, "teacher_disparity", real)
    assert sum(bool(r.disparity) for r in DatasetIndex.load(own).records) == 2
    command(f"--images={images}", f"--output_dir={own}")
    for name in ["index.json", teacher_module.TEACHER_RECORD, *(f"disparity/f{i}.png" for i in range(5))]:
        assert (own / name).read_bytes() == (clean / name).read_bytes(), name

    capsys.readouterr()
    before = mtimes(own)
    command(f"--images={images}", f"--output_dir={own}")
    said = "already made with these settings (5 frames with a target, 5 of them the teacher's); nothing to do"
    assert capsys.readouterr().out == f"{own}: {said}\n"
    with pytest.raises(
        OutputRefused,
        match=rf"{own} holds disparity targets a teacher made with other settings "
        r"\(input_size: saved 28, now 42\): choose another --output_dir, or pass --restart=true",
    ):
        command(f"--images={images}", f"--output_dir={own}", "--input_size=42")  # fmt: skip
    assert mtimes(own) == before
    command(f"--images={images}", f"--output_dir={own}", "--input_size=42", "--restart=true")
    record = json.loads((own / teacher_module.TEACHER_RECORD).read_text())
    assert record["settings"]["input_size"] == 42 and len(record["frames"]) == 5
    assert all((own / f"disparity/f{i}.png").stat().st_mtime_ns > before[f"disparity/f{i}.png"] for i in range(5))

    labelled = tmp_path / "labelled"  # a dataset whose frames all have targets already (the twin's)
    records = [FrameRecord(image=f"../images/f{i}.png", mask="", disparity=f"disparity/f{i}.png") for i in range(5)]
    DatasetIndex(labelled, records).save()
    before = mtimes(labelled)
    with pytest.raises(
        OutputRefused,
        match=rf"{labelled} holds an index.json so101-seg-disparity did not write: "
        rf"pass --data_path={labelled} to add targets to that dataset, or choose another --output_dir",
    ):
        command(f"--images={images}", f"--output_dir={labelled}")  # fmt: skip
    capsys.readouterr()
    command(f"--data_path={labelled}")
    said = "every frame has a target already (5 frames with a target, 0 of them the teacher's); nothing to do"
    assert capsys.readouterr().out == f"{labelled}: {said}\n" and mtimes(labelled) == before


def _images(root: Path) -> list[str]:
    return [f["image"] for f in json.loads((root / "index.json").read_text())["frames"]]
