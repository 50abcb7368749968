"""The segmenter and Depth Anything ProcessorSteps, run on tiny random models saved to local folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from lerobot.configs import FeatureType, PipelineFeatureType, PolicyFeature
from lerobot.processor import DataProcessorPipeline, IdentityProcessorStep
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from lerobot_policy_segdepth.perception import (
    DepthAnythingStep,
    SegmenterStep,
    depth_anything_v2_small_config,
    normalize_disparity,
)
from so101_core import JOINT_NAMES

KEYS = ["observation.images.wrist", "observation.images.front"]
IDS = ["observation.wrist_segmentation_ids", "observation.front_segmentation_ids"]
DISP = ["observation.wrist_disparity", "observation.front_disparity"]


def save_tiny_depth_anything(folder: Path, seed: int = 0) -> Path:
    """Depth Anything V2's layout (DINOv2 backbone read out at 4 depths, DPT neck, relative head), 33k params."""
    from transformers import DepthAnythingForDepthEstimation

    config = depth_anything_v2_small_config(
        hidden_size=16, num_hidden_layers=4, num_attention_heads=2, mlp_ratio=2, image_size=28, out_indices=[1, 2, 3, 4]
    )
    config.reassemble_hidden_size = 16
    config.neck_hidden_sizes = [8, 8, 8, 8]
    config.fusion_hidden_size = 8
    config.head_hidden_size = 4
    config.initializer_range = 0.5  # large enough that the ReLU head is not zero almost everywhere
    torch.manual_seed(seed)
    DepthAnythingForDepthEstimation(config).save_pretrained(folder)
    return folder


def save_tiny_segmenter(folder: Path, seed: int = 0) -> Path:
    from so101_segmenter.model import EfficientViTFPN, SegmenterConfig, save_segmenter

    torch.manual_seed(seed)
    model = EfficientViTFPN(SegmenterConfig(pretrained=False, fpn_channels=8))
    # Fresh BatchNorm statistics (mean 0, var 1) leave the features nearly constant, so every pixel gets one
    # class; estimating them on random images, as a BN recalibration would, gives varied class maps.
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # cumulative average over the calibration batch
            module.reset_running_stats()
    model.train()
    with torch.no_grad():
        model(torch.rand(8, 3, 32, 32, generator=torch.Generator().manual_seed(seed)))
    return save_segmenter(model.eval(), folder)


@pytest.fixture(scope="module")
def depth_dir(tmp_path_factory) -> Path:
    return save_tiny_depth_anything(tmp_path_factory.mktemp("tiny_depth_anything"))


@pytest.fixture(scope="module")
def seg_dir(tmp_path_factory) -> Path:
    return save_tiny_segmenter(tmp_path_factory.mktemp("tiny_segmenter"))


def frames(*lead: int, height: int = 48, width: int = 64, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(*lead, 3, 6, 8, generator=g)  # smooth images so models and resizes see structure
    return TF.resize(base.reshape(-1, 3, 6, 8), [height, width], antialias=True).reshape(*lead, 3, height, width)


def reference_disparity(model, rgb: torch.Tensor, input_size: int, output_size: int) -> torch.Tensor:
    """pick-101's recipe written out directly: crop, ImageNet-normalise, model, float64 min-max to 0-255, resize."""
    side = min(rgb.shape[-2:])
    top, left = (rgb.shape[-2] - side) // 2, (rgb.shape[-1] - side) // 2
    crop = rgb[..., top : top + side, left : left + side]
    crop = TF.resize(crop, [input_size, input_size], InterpolationMode.BICUBIC, antialias=True).clamp(0, 1)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        d = model(pixel_values=(crop - mean) / std).predicted_depth.double()  # (N, h, w)
    lo = d.flatten(1).min(1).values.view(-1, 1, 1)
    hi = d.flatten(1).max(1).values.view(-1, 1, 1)
    scaled = ((d - lo) / (hi - lo) * 255.0).float()[:, None]
    return TF.resize(scaled, [output_size, output_size], InterpolationMode.BILINEAR, antialias=True)


def test_depth_step_equals_a_direct_model_call_plus_normalisation(depth_dir):
    from transformers import DepthAnythingForDepthEstimation

    step = DepthAnythingStep(
        image_keys=KEYS, output_keys=DISP, input_size=28, output_size=20, model_name_or_path=str(depth_dir)
    )
    wrist, front = frames(2, seed=1), frames(2, seed=2)
    out = step({"observation": {KEYS[0]: wrist, KEYS[1]: front}})["observation"]
    model = DepthAnythingForDepthEstimation.from_pretrained(depth_dir).eval()
    for key, rgb in zip(DISP, (wrist, front), strict=True):
        assert out[key].shape == (2, 1, 20, 20)
        torch.testing.assert_close(out[key], reference_disparity(model, rgb, 28, 20), rtol=1e-4, atol=1e-3)
        assert out[key].unique().numel() > 10, "the tiny model must give a non-trivial disparity map"
        # near = 255: before the resize the per-frame extremes are exactly 0 and 255
    full = DepthAnythingStep(
        image_keys=KEYS[:1], output_keys=DISP[:1], input_size=28, model_name_or_path=str(depth_dir)
    )
    raw = full({"observation": {KEYS[0]: wrist}})["observation"][DISP[0]]
    assert raw.shape == (2, 1, 48, 48)


def test_segmenter_step_equals_argmax_of_the_model(seg_dir):
    from so101_segmenter.model import load_segmenter

    step = SegmenterStep(image_keys=KEYS, output_keys=IDS, input_size=32, output_size=32, checkpoint=str(seg_dir))
    wrist, front = frames(3, seed=3), frames(3, seed=4)
    out = step({"observation": {KEYS[0]: wrist, KEYS[1]: front}})["observation"]
    model = load_segmenter(seg_dir)
    for key, rgb in zip(IDS, (wrist, front), strict=True):
        crop = TF.resize(rgb[..., 8:56], [32, 32], InterpolationMode.BICUBIC, antialias=True).clamp(0, 1)
        with torch.no_grad():
            expected = model(crop).argmax(1, keepdim=True).float()
        assert out[key].dtype == torch.float32 and out[key].shape == (3, 1, 32, 32)
        assert torch.equal(out[key], expected)
        assert out[key].unique().numel() >= 2
        assert out[key].min() >= 0 and out[key].max() <= 5


def test_both_cameras_and_training_history_share_one_forward_pass(seg_dir, depth_dir, monkeypatch):
    """(B, T, 3, H, W) frames of two cameras go through the model in a single call, each frame unchanged."""
    seg = SegmenterStep(image_keys=KEYS, output_keys=IDS, input_size=32, output_size=16, checkpoint=str(seg_dir))
    depth = DepthAnythingStep(
        image_keys=KEYS, output_keys=DISP, input_size=28, output_size=16, model_name_or_path=str(depth_dir)
    )
    wrist, front = frames(2, 3, seed=5), frames(2, 3, seed=6)
    for step, outputs in ((seg, IDS), (depth, DISP)):
        calls: list[int] = []
        model = step.model
        original = model.forward
        monkeypatch.setattr(
            model, "forward", lambda *a, _o=original, _calls=calls, **k: _calls.append(1) or _o(*a, **k)
        )
        batched = step({"observation": {KEYS[0]: wrist, KEYS[1]: front}})["observation"]
        assert len(calls) == 1
        assert batched[outputs[0]].shape == (2, 3, 1, 16, 16)
        one = type(step)(**{**step.get_config(), "image_keys": KEYS[1:], "output_keys": outputs[1:]})
        one._model = model
        single = one({"observation": {KEYS[1]: front[1, 2]}})["observation"][outputs[1]]
        torch.testing.assert_close(
            batched[outputs[1]][1, 2], single[0] if single.ndim == 4 else single, atol=1e-3, rtol=1e-4
        )


def test_cameras_of_different_sizes_still_share_the_forward_pass(seg_dir, monkeypatch):
    step = SegmenterStep(image_keys=KEYS, output_keys=IDS, input_size=32, output_size=16, checkpoint=str(seg_dir))
    calls: list[int] = []
    model = step.model
    original = model.forward
    monkeypatch.setattr(model, "forward", lambda *a, **k: calls.append(a[0].shape[0]) or original(*a, **k))
    wrist, front = frames(2, seed=9), frames(2, height=60, width=80, seed=10)
    out = step({"observation": {KEYS[0]: wrist, KEYS[1]: front}})["observation"]
    assert calls == [4]
    assert out[IDS[0]].shape == out[IDS[1]].shape == (2, 1, 16, 16)


def test_uint8_and_float_rgb_agree(seg_dir):
    step = SegmenterStep(image_keys=KEYS[:1], output_keys=IDS[:1], input_size=32, checkpoint=str(seg_dir))
    rgb8 = (frames(1) * 255).round().to(torch.uint8)
    a = step({"observation": {KEYS[0]: rgb8}})["observation"][IDS[0]]
    b = step({"observation": {KEYS[0]: rgb8.float() / 255}})["observation"][IDS[0]]
    assert torch.equal(a, b)


def test_models_load_when_built_stay_in_eval_and_outputs_carry_no_autograd(seg_dir, depth_dir):
    seg = SegmenterStep(image_keys=KEYS[:1], output_keys=IDS[:1], input_size=32, checkpoint=str(seg_dir))
    depth = DepthAnythingStep(
        image_keys=KEYS[:1], output_keys=DISP[:1], input_size=28, model_name_or_path=str(depth_dir)
    )
    # loaded by the constructor, not at the first frame (which, on the arm, comes after the robot connected)
    assert seg._model is not None and depth._model is not None
    rgb = frames(1).requires_grad_(True)
    for step, key in ((seg, IDS[0]), (depth, DISP[0])):
        out = step({"observation": {KEYS[0]: rgb}})["observation"][key]
        assert not step.model.training
        assert not any(p.requires_grad for p in step.model.parameters())
        assert not out.requires_grad
        assert not out.is_inference(), "outputs must be usable in a later autograd graph (training)"
        out.float().mul(torch.ones(1, requires_grad=True)).sum().backward()  # would raise on an inference tensor


def test_steps_round_trip_through_a_saved_pipeline(tmp_path, seg_dir, depth_dir):
    steps = [
        SegmenterStep(image_keys=KEYS, output_keys=IDS, input_size=32, output_size=16, checkpoint=str(seg_dir)),
        DepthAnythingStep(
            image_keys=KEYS, output_keys=DISP, input_size=28, output_size=16, model_name_or_path=str(depth_dir)
        ),
        IdentityProcessorStep(),
    ]
    pipe = DataProcessorPipeline(steps=steps, name="perception")
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = DataProcessorPipeline.from_pretrained(tmp_path / "pipe", config_filename="perception.json")
    assert [s.get_config() for s in loaded.steps[:2]] == [s.get_config() for s in steps[:2]]
    # both loaded with the pipeline: the segmenter from its state file, Depth Anything by its name
    assert loaded.steps[0]._model is not None and loaded.steps[1]._model is not None
    obs = {KEYS[0]: frames(1, seed=7), KEYS[1]: frames(1, seed=8)}
    a, b = pipe(dict(obs)), loaded(dict(obs))  # the default converters take a flat batch dict
    for key in IDS + DISP:
        assert torch.equal(a[key], b[key])


def test_transform_features_reports_the_output_shapes(seg_dir, depth_dir):
    features = {PipelineFeatureType.OBSERVATION: {KEYS[0]: PolicyFeature(FeatureType.VISUAL, (3, 480, 640))}}
    seg = SegmenterStep(
        image_keys=KEYS[:1], output_keys=IDS[:1], input_size=96, output_size=84, checkpoint=str(seg_dir)
    )
    literal = DepthAnythingStep(
        image_keys=KEYS[:1], output_keys=DISP[:1], crop_square=False, model_name_or_path=str(depth_dir)
    )
    obs = literal.transform_features(seg.transform_features(features))[PipelineFeatureType.OBSERVATION]
    assert obs[IDS[0]].shape == (1, 84, 84) and obs[DISP[0]].shape == (1, 480, 640)


def test_normalize_disparity_edge_cases():
    flat = torch.full((2, 1, 4, 4), 3.0)
    assert torch.equal(normalize_disparity(flat), torch.zeros_like(flat))  # all-equal: zeros, no division by 0
    d = torch.tensor([[[[0.0, 1.0], [2.0, 4.0]]]])
    torch.testing.assert_close(normalize_disparity(d), torch.tensor([[[[0.0, 63.75], [127.5, 255.0]]]]))
    with pytest.raises(ValueError, match="negative disparity"):
        normalize_disparity(-d)
    with pytest.raises(ValueError, match="NaN"):
        normalize_disparity(torch.full((1, 1, 2, 2), float("nan")))


def test_bad_input_is_named(seg_dir, depth_dir, tmp_path):
    seg = SegmenterStep(image_keys=KEYS[:1], output_keys=IDS[:1], checkpoint=str(seg_dir))
    with pytest.raises(KeyError, match=r"observation\.images\.wrist"):
        seg({"observation": {KEYS[1]: frames(1)}})
    with pytest.raises(ValueError, match=r"observation\.images\.wrist.*\(\.\.\., 3, H, W\)"):
        seg({"observation": {KEYS[0]: torch.rand(1, 1, 8, 8)}})
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        seg({"observation": {KEYS[0]: frames(1) * 255}})
    with pytest.raises(ValueError, match="multiple of the model's patch size 14"):
        DepthAnythingStep(
            image_keys=KEYS[:1], output_keys=DISP[:1], input_size=30, model_name_or_path=str(depth_dir)
        ).observation({KEYS[0]: frames(1)})
    with pytest.raises(FileNotFoundError, match="segmenter"):
        SegmenterStep(image_keys=KEYS[:1], output_keys=IDS[:1], checkpoint=str(tmp_path / "missing")).observation(
            {KEYS[0]: frames(1)}
        )
    with pytest.raises(ValueError, match="checkpoint"):
        SegmenterStep(image_keys=KEYS[:1], output_keys=IDS[:1])
    with pytest.raises(ValueError, match="equal length"):
        SegmenterStep(image_keys=KEYS, output_keys=IDS[:1], checkpoint=str(seg_dir))


# ----- SegDepth: one checkpoint, two sources -----------------------------------------------------------------------
@pytest.mark.slow
def test_one_segdepth_checkpoint_runs_on_ground_truth_and_on_the_models(gt_dataset, tmp_path, seg_dir, depth_dir):
    from lerobot.configs import PreTrainedConfig
    from lerobot.datasets import LeRobotDataset, LeRobotDatasetMetadata
    from lerobot.policies import get_policy_class
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    from lerobot_policy_segdepth import SegDepthConfig
    from lerobot_policy_segdepth.processor_segdepth import with_perception_source

    meta = LeRobotDatasetMetadata("local/twin_demo", root=gt_dataset)
    tiny = {"image_size": 32, "feature_dim": 8, "hidden_dim": 16, "encoder_channels": 8}
    cfg = SegDepthConfig(device="cpu", push_to_hub=False, **tiny)  # trained on the twin's ground truth
    trained = make_policy(cfg, ds_meta=meta)
    fresh_pre, _ = make_pre_post_processors(cfg, dataset_stats=meta.stats)
    ckpt = tmp_path / "pretrained_model"
    trained.save_pretrained(ckpt)
    for pipeline in make_pre_post_processors(cfg, dataset_stats=meta.stats):
        pipeline.save_pretrained(ckpt)

    loaded = PreTrainedConfig.from_pretrained(ckpt)
    loaded.pretrained_path = ckpt
    policy = get_policy_class("segdepth").from_pretrained(ckpt).eval()
    gt_pre, gt_post = make_pre_post_processors(loaded, pretrained_path=str(ckpt))
    m_pre, m_post = make_pre_post_processors(loaded, pretrained_path=str(ckpt))
    models_cfg = with_perception_source(
        m_pre,
        loaded,
        perception_source="segmenter_depth_anything",
        segmenter_path=str(seg_dir),
        depth_model=str(depth_dir),
        segmenter_input_size=32,
        depth_input_size=28,
    )
    assert models_cfg.perception_source == "segmenter_depth_anything" and loaded.perception_source == "ground_truth"
    assert any(isinstance(s, SegmenterStep) for s in m_pre.steps)
    assert not any(isinstance(s, (SegmenterStep, DepthAnythingStep)) for s in gt_pre.steps)

    ds = LeRobotDataset("local/twin_demo", root=gt_dataset)
    item = {k: v for k, v in ds[10].items() if k.startswith(("observation.", "action"))} | {"task": ds[10]["task"]}
    gt_obs, m_obs = gt_pre(dict(item)), m_pre(dict(item))
    # the ground-truth path of the reloaded checkpoint is what training built
    assert torch.equal(gt_obs["observation.segdepth"], fresh_pre(dict(item))["observation.segdepth"])
    # the model path computed ids and disparity from the RGB camera, with the models' own outputs
    rgb = item["observation.images.wrist"][None]
    seg = SegmenterStep(
        image_keys=KEYS[:1], output_keys=IDS[:1], input_size=32, output_size=32, checkpoint=str(seg_dir)
    )
    expected_ids = seg({"observation": {KEYS[0]: rgb}})["observation"][IDS[0]]
    assert m_obs["observation.segdepth"].shape == gt_obs["observation.segdepth"].shape == (1, 2, 32, 32)
    assert torch.equal(m_obs["observation.segdepth"][:, :1], expected_ids)
    disparity = m_obs["observation.segdepth"][:, 1]
    assert disparity.min() >= 0 and disparity.max() <= 255 and disparity.max() > 200
    assert not torch.equal(m_obs["observation.segdepth"], gt_obs["observation.segdepth"])

    actions = []
    for pre_obs, post in ((gt_obs, gt_post), (m_obs, m_post)):
        policy.reset()
        actions.append(post(policy.select_action(pre_obs)))
    for action in actions:
        assert action.shape == (1, 6) and torch.isfinite(action).all()
        state = item["observation.state"]
        assert ((action[0] - state).abs() <= torch.tensor(loaded.action_scale) + 1e-4).all()

    # the sim2real check runs the same comparison from the command line and reports it
    from clitools import run_cli

    out = tmp_path / "sim2real"
    proc = run_cli(
        [
            "segdepth-sim2real-check",
            f"--policy.path={ckpt}",
            f"--dataset.root={gt_dataset}",
            f"--segmenter_path={seg_dir}",
            f"--depth_model={depth_dir}",
            "--segmenter_input_size=32",
            "--depth_input_size=28",
            "--dataset.episodes=[1]",
            "--max_frames=4",
            f"--output_dir={out}",
            f"--export_dir={tmp_path / 'for_the_real_arm'}",
        ],
        cwd=tmp_path,
    )
    report = json.loads((out / "sim2real_report.json").read_text())
    assert report["frames"] == 4 and set(report["action_abs_diff_mean"]) == set(JOINT_NAMES)
    assert 0.0 <= report["segmentation_pixel_agreement"] <= 1.0 and report["disparity_mae_0_255"] > 0
    assert all(
        0 <= v <= 2 * s for v, s in zip(report["action_abs_diff_max"].values(), loaded.action_scale, strict=True)
    )
    assert "gripper" in proc.stdout and (out / "first_frame.png").stat().st_size > 0

    # the exported checkpoint is the models path as a plain --policy.path checkpoint
    exported = PreTrainedConfig.from_pretrained(tmp_path / "for_the_real_arm")
    assert exported.perception_source == "segmenter_depth_anything" and exported.segmenter_path == str(seg_dir)
    exported.pretrained_path = tmp_path / "for_the_real_arm"
    e_pre, _ = make_pre_post_processors(exported, pretrained_path=str(tmp_path / "for_the_real_arm"))
    assert torch.equal(e_pre(dict(item))["observation.segdepth"], m_obs["observation.segdepth"])


def test_each_perception_source_builds_exactly_the_step_types_its_record_names(tmp_path, seg_dir, depth_dir):
    """The types a saved preprocessor's perception block is found by (OBSERVATION_STEP_TYPES) come from the records:
    each source builds steps of exactly the types its record names, and the block's types are their union and the
    stack, so a new source's steps are found without a list kept by hand."""
    from lerobot_policy_segdepth import SegDepthConfig
    from lerobot_policy_segdepth.observation_steps import StackChannelsStep
    from lerobot_policy_segdepth.perception_sources import PERCEPTION_SOURCES
    from lerobot_policy_segdepth.processor_segdepth import OBSERVATION_STEP_TYPES, segdepth_observation_steps
    from so101_segmenter.model import EfficientViTFPN, SegmenterConfig, save_segmenter

    with_head = save_segmenter(
        EfficientViTFPN(SegmenterConfig(pretrained=False, fpn_channels=8, depth_head=True)).eval(), tmp_path / "head"
    )
    paths = {"segmenter_depth": with_head, "segmenter": seg_dir, "segmenter_depth_anything": seg_dir}
    for name, record in PERCEPTION_SOURCES.items():
        extra = {"segmenter_path": str(paths[name])} if name in paths else {}
        if name == "segmenter_depth_anything":
            extra["depth_model"] = str(depth_dir)
        config = SegDepthConfig(device="cpu", push_to_hub=False, perception_source=name, image_size=32, **extra)
        *built, stack = segdepth_observation_steps(config)
        assert isinstance(stack, StackChannelsStep)
        assert [type(step) for step in built] == list(record.step_types()), name
    union = {kind for record in PERCEPTION_SOURCES.values() for kind in record.step_types()}
    assert set(OBSERVATION_STEP_TYPES) == union | {StackChannelsStep} and len(OBSERVATION_STEP_TYPES) == len(union) + 1
