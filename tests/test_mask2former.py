"""Mask2Former scores for SegVLA: einsum vs transformers, pooling vs float64 references, the online step, its save/load,
the offline command (resume, same cues as online), ADE20K names, and bad input.

Every model here is a tiny random Mask2Former saved to tmp_path and loaded back through the real code path.
"""

import json

import pytest
import torch
import torch.nn.functional as F
from clitools import run_cli
from lerobot.policies.common.vla_utils import resize_with_pad
from lerobot.processor import PolicyProcessorPipeline
from lerobot.processor.converters import batch_to_transition, transition_to_batch
from run_again import mtimes

from lerobot_policy_segvla import ade20k
from lerobot_policy_segvla.ade20k import ADE20K_150, PromptClassParser, class_id
from lerobot_policy_segvla.mask2former import (
    Mask2FormerSegmenter,
    SegVLAAddSegmentationStep,
    check_segmentation_scores,
    image_region,
    pack_scores,
    pool_scores,
    score_grid,
    semantic_scores,
)
from so101_core import CUBE, SEGMENTATION_CLASSES, TABLE
from so101_policy_common.precompute import SourceDatasetConfig
from so101_run_infra.cli import OutputRefused

ADE_ID2LABEL = dict(enumerate(ADE20K_150))
# HF's own ADE id2label spells one class with a trailing space and some checkpoints use WordNet synonym lists.
HF_STYLE_ID2LABEL = {**ADE_ID2LABEL, 7: "bed ", 138: "ashcan, trash can, garbage can, wastebin"}


def save_tiny_mask2former(folder, id2label=None, num_queries=8, seed=0):
    """A ~360k-parameter Mask2Former (tiny Swin backbone) plus an image processor config, as a checkpoint folder."""
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
        SwinConfig,
    )

    id2label = id2label or ADE_ID2LABEL
    swin = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 2, 2],
        window_size=4,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = Mask2FormerConfig(
        backbone_config=swin,
        num_labels=len(id2label),
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
        hidden_dim=32,
        feature_size=32,
        mask_feature_size=32,
        encoder_feedforward_dim=64,
        dim_feedforward=64,
        encoder_layers=1,
        decoder_layers=2,
        num_queries=num_queries,
        num_attention_heads=2,
        common_stride=4,
        use_pretrained_backbone=False,
    )
    torch.manual_seed(seed)
    Mask2FormerForUniversalSegmentation(config).save_pretrained(folder)
    Mask2FormerImageProcessor(image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3]).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    return str(save_tiny_mask2former(tmp_path_factory.mktemp("m2f") / "tiny"))


# ---------------------------------------------------------------- scores and pooling


def test_semantic_scores_match_transformers_post_process(tiny_model):
    from transformers import AutoImageProcessor, Mask2FormerForUniversalSegmentation

    model = Mask2FormerForUniversalSegmentation.from_pretrained(tiny_model).eval()
    processor = AutoImageProcessor.from_pretrained(tiny_model)
    torch.manual_seed(1)
    with torch.inference_mode():
        out = model(pixel_values=torch.randn(2, 3, 64, 64))
    targets = [(40, 52), (64, 64)]
    expected = processor.post_process_semantic_segmentation(out, target_sizes=targets)

    # transformers upsamples the mask logits to 384^2 before the sigmoid, then the scores to each target size
    masks = F.interpolate(out.masks_queries_logits, size=(384, 384), mode="bilinear", align_corners=False)
    scores = semantic_scores(out.class_queries_logits, masks)
    assert scores.shape == (2, 150, 384, 384)
    for i, size in enumerate(targets):
        ours = F.interpolate(scores[i : i + 1], size=size, mode="bilinear", align_corners=False)[0].argmax(0)
        assert torch.equal(ours, expected[i])

    # and the einsum itself against an explicit float64 sum over queries
    cls, msk = out.class_queries_logits.double(), out.masks_queries_logits.double()
    probs = cls.softmax(-1)[..., :-1]
    loop = sum(probs[:, q, :, None, None] * msk[:, q, None].sigmoid() for q in range(cls.shape[1]))
    torch.testing.assert_close(semantic_scores(out.class_queries_logits, out.masks_queries_logits).double(), loop)


@pytest.mark.parametrize(("height", "width"), [(64, 80), (80, 64), (48, 48), (480, 640), (47, 91)])
def test_image_region_is_where_smolvla_resize_with_pad_puts_the_image(height, width):
    padded = resize_with_pad(torch.ones(1, 1, height, width), 128, 128, pad_value=0)[0, 0]
    top, left, h, w = image_region(height, width, 128)
    assert (top + h, left + w) == (128, 128)
    assert bool((padded[top:, left:] > 0).all())
    assert float(padded.sum()) == pytest.approx(h * w)  # nothing outside the region


def test_pooling_is_the_area_average_over_the_image_region():
    torch.manual_seed(0)
    scores = torch.rand(3, 5, 16, 16, dtype=torch.float64)
    input_size, grid = 64, 4
    regions = [(13, 0, 51, 64), (0, 7, 64, 57), (0, 0, 64, 64)]  # bins that do not fall on map cells
    pooled = pool_scores(scores, regions, input_size, grid)
    # reference: the map blown up to input pixels (each cell is 4x4 pixels), each pixel split into grid x grid
    # sub-pixels so every bin edge lands on a sub-pixel edge, then cropped and averaged exactly.
    fine = scores.repeat_interleave(4 * grid, dim=2).repeat_interleave(4 * grid, dim=3)
    for n, (top, left, h, w) in enumerate(regions):
        crop = fine[n, :, top * grid : (top + h) * grid, left * grid : (left + w) * grid]
        torch.testing.assert_close(pooled[n], F.adaptive_avg_pool2d(crop, grid))
    # unpadded and divisible: plain adaptive average pooling of the map
    torch.testing.assert_close(pooled[2], F.adaptive_avg_pool2d(scores[2], grid))


# ---------------------------------------------------------------- the online step


def _observation(batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {
        "observation.images.front": torch.rand(batch, 3, 64, 80, generator=g),
        "observation.images.wrist": torch.rand(batch, 3, 48, 48, generator=g),
        "observation.state": torch.zeros(batch, 6),
    }


def test_step_writes_pooled_scores_computed_as_specified(tiny_model):
    from transformers import Mask2FormerForUniversalSegmentation

    step = SegVLAAddSegmentationStep(model_name=tiny_model, grid_size=4, input_size=96)
    obs = _observation()
    out = step.observation(dict(obs))
    assert torch.equal(out["observation.images.front"], obs["observation.images.front"])
    assert out["observation.segmentation.front"].shape == (2, 150, 4, 4)
    assert out["observation.segmentation.wrist"].shape == (2, 150, 4, 4)

    # by hand, one camera at a time: resize-with-pad, the processor's mean/std, forward, einsum, crop and pool
    model = Mask2FormerForUniversalSegmentation.from_pretrained(tiny_model).eval()
    mean, std = torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1), torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1)
    for camera in ("front", "wrist"):
        image = obs[f"observation.images.{camera}"]
        top, left, h, w = image_region(*image.shape[-2:], 96)  # checked against resize_with_pad above
        pixels = (resize_with_pad(image, 96, 96, pad_value=0) - mean) / std
        with torch.inference_mode():
            o = model(pixel_values=pixels)
        full = semantic_scores(o.class_queries_logits, o.masks_queries_logits)  # (2, 150, 24, 24)
        fine = full.repeat_interleave(4, 2).repeat_interleave(4, 3)[..., top : top + h, left : left + w]
        # the front image's 76 rows do not split into 4 integer bins: sub-divide pixels 4x4 for the exact average
        fine = fine.repeat_interleave(4, 2).repeat_interleave(4, 3)
        expected = F.adaptive_avg_pool2d(fine, 4)
        torch.testing.assert_close(out[f"observation.segmentation.{camera}"], expected, rtol=1e-4, atol=1e-6)


def test_step_keeps_a_time_axis_and_accepts_uint8(tiny_model):
    step = SegVLAAddSegmentationStep(model_name=tiny_model, grid_size=2, input_size=64)
    obs = _observation(batch=2)
    timed = {k: v[:, None].expand(-1, 3, *v.shape[1:]) for k, v in obs.items() if "images" in k}
    out = step.observation(dict(timed))
    assert out["observation.segmentation.front"].shape == (2, 3, 150, 2, 2)
    flat = step.observation({k: v[:, 0] for k, v in timed.items()})
    torch.testing.assert_close(out["observation.segmentation.front"][:, 1], flat["observation.segmentation.front"])
    as_uint8 = {k: (v * 255).round().to(torch.uint8) for k, v in obs.items() if "images" in k}
    scores = step.observation(as_uint8)["observation.segmentation.wrist"]
    check_segmentation_scores(scores, "observation.segmentation.wrist", 150, 2)


def test_step_round_trips_through_a_saved_pipeline(tiny_model, tmp_path):
    from lerobot.configs import FeatureType, PipelineFeatureType, PolicyFeature

    step = SegVLAAddSegmentationStep(
        model_name=tiny_model,
        feature_map={"observation.images.front": "observation.seg.front"},
        grid_size=3,
        input_size=64,
        device="cpu",
        dtype="float32",
    )
    pipeline = PolicyProcessorPipeline(steps=[step], name="policy_preprocessor")
    pipeline.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "policy_preprocessor.json").read_text())
    assert saved["steps"][0]["registry_name"] == "segvla_add_segmentation"
    loaded = PolicyProcessorPipeline.from_pretrained(tmp_path, config_filename="policy_preprocessor.json")
    assert loaded.steps[0].get_config() == step.get_config()

    batch = {**_observation(), "action": torch.zeros(2, 6)}
    a, b = pipeline(dict(batch)), loaded(dict(batch))
    assert torch.equal(a["observation.seg.front"], b["observation.seg.front"])
    assert a["observation.seg.front"].shape == (2, 150, 3, 3)

    features = {
        PipelineFeatureType.OBSERVATION: {"observation.images.front": PolicyFeature(FeatureType.VISUAL, (3, 64, 80))}
    }
    declared = loaded.transform_features(features)[PipelineFeatureType.OBSERVATION]["observation.seg.front"]
    assert declared == PolicyFeature(FeatureType.STATE, (150, 3, 3))


def test_batch_of_cameras_gives_the_same_scores_as_one_image_at_a_time(tiny_model):
    segmenter = Mask2FormerSegmenter(tiny_model, grid_size=4, input_size=64)
    obs = _observation(batch=3)
    together = segmenter([obs["observation.images.front"], obs["observation.images.wrist"]])
    alone = segmenter([obs["observation.images.wrist"][1:2]])
    torch.testing.assert_close(together[1][1:2], alone[0], rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------- bad input


def test_bad_scores_name_the_key_and_what_was_expected():
    key = "observation.segmentation.front"
    with pytest.raises(
        ValueError, match=r"observation\.segmentation\.front.*class count.*\(\.\.\., 150, 8, 8\).*\(2, 149, 8, 8\)"
    ):
        check_segmentation_scores(torch.zeros(2, 149, 8, 8), key, 150, 8)
    with pytest.raises(ValueError, match=r"observation\.segmentation\.front.*shape.*\(2, 150, 7, 8\)"):
        check_segmentation_scores(torch.zeros(2, 150, 7, 8), key, 150, 8)
    nan = torch.zeros(2, 150, 8, 8)
    nan[1, 3, 2, 2] = float("nan")
    with pytest.raises(ValueError, match=r"observation\.segmentation\.front' holds 1 NaN"):
        check_segmentation_scores(nan, key, 150, 8)
    with pytest.raises(TypeError, match="dtype"):
        check_segmentation_scores(torch.zeros(2, 150, 8, 8, dtype=torch.int64), key, 150, 8)


def test_bad_images_and_configs_fail_before_the_model_runs(tiny_model):
    step = SegVLAAddSegmentationStep(model_name=tiny_model, input_size=64)
    obs = _observation()
    with pytest.raises(KeyError, match=r"observation\.images\.wrist.*observation\.images\.front"):
        step.observation({"observation.images.front": obs["observation.images.front"]})
    with pytest.raises(ValueError, match=r"observation\.images\.front.*\(\.\.\., 3, H, W\).*\(2, 1, 64, 80\)"):
        step.observation({**obs, "observation.images.front": torch.rand(2, 1, 64, 80)})
    with pytest.raises(ValueError, match=r"observation\.images\.wrist.*\[0, 1\]"):
        step.observation({**obs, "observation.images.wrist": obs["observation.images.wrist"] * 255})
    bad = obs["observation.images.front"].clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"observation\.images\.front' holds NaN"):
        step.observation({**obs, "observation.images.front": bad})
    with pytest.raises(ValueError, match=r"must start with 'observation\.'"):
        SegVLAAddSegmentationStep(feature_map={"observation.images.front": "seg_logits_front"})
    with pytest.raises(ValueError, match="same key"):
        SegVLAAddSegmentationStep(
            feature_map={"observation.images.a": "observation.s", "observation.images.b": "observation.s"}
        )
    with pytest.raises(ValueError, match="dtype"):
        SegVLAAddSegmentationStep(dtype="float64")


def test_semantic_scores_rejects_mismatched_logits():
    with pytest.raises(ValueError, match="disagree"):
        semantic_scores(torch.zeros(2, 8, 151), torch.zeros(2, 7, 16, 16))
    with pytest.raises(ValueError, match=r"\(B, Q, C\+1\)"):
        semantic_scores(torch.zeros(8, 151), torch.zeros(2, 8, 16, 16))


# ---------------------------------------------------------------- ADE20K names


def test_ade_ids_by_name_fix_the_seed():
    # the upstream SegVLA notes say bowl=58, plate=47
    assert ADE20K_150[58] == "screen door" and ADE20K_150[47] == "sink"
    assert class_id("plate", HF_STYLE_ID2LABEL) == 142
    assert class_id("Bed", HF_STYLE_ID2LABEL) == 7  # HF spells it 'bed '
    assert class_id("trash can", HF_STYLE_ID2LABEL) == 138  # an alias in a synonym-list label
    assert class_id("coffee_table", HF_STYLE_ID2LABEL) == 64


def test_unknown_class_lists_the_closest_names():
    with pytest.raises(
        KeyError,
        match=r"'bowl' is not in the checkpoint's id2label \(150 classes\).*closest names: \['towel', 'bottle', 'box'",
    ):
        class_id("bowl", ADE_ID2LABEL)
    with pytest.raises(KeyError, match="no name is close"):
        class_id("xylophone", ADE_ID2LABEL)


def test_prompt_parser_maps_nouns_per_sample():
    parse = PromptClassParser(HF_STYLE_ID2LABEL)
    ids = {name: class_id(name, ADE_ID2LABEL) for name in ("box", "plate", "glass", "coffee table", "table", "ashcan")}
    assert parse("Pick up the red cube and lift it.") == [ids["box"]]
    assert parse("Put the cups in the bowl on the coffee table") == [ids["glass"], ids["plate"], ids["coffee table"]]
    assert parse("Move the plates from the table to the trash can, step 2") == [
        ids["plate"],
        ids["table"],
        ids["ashcan"],
    ]
    assert parse("wave hello") == []
    assert parse.batch(["a box", "two boxes"]) == [[ids["box"]], [ids["box"]]]


def test_parser_synonyms_must_exist_in_the_checkpoint():
    small = {0: "background", 1: "cube", 2: "table"}
    with pytest.raises(KeyError, match=r"'plate' is not in the checkpoint's id2label \(3 classes\)"):
        PromptClassParser(small)
    parse = PromptClassParser(small, synonyms={"block": "cube"})
    assert parse("stack the block on the cube near the table") == [1, 2]


def test_default_synonyms_all_resolve_in_ade20k():
    for word, target in ade20k.DEFAULT_SYNONYMS.items():
        assert class_id(target, ADE_ID2LABEL) in range(150), word


@pytest.mark.parametrize("classes", [5, 3])  # 3 x 3 x 3 = 27 scores: odd, padded with one zero
def test_packed_scores_read_back_bit_for_bit(classes):
    grid = torch.rand(2, 7, classes, 3, 3)
    grid[0, 0, 0, 0, 0] = 1e-30  # tiny and exact values survive: the bytes are kept, not the value
    packed = pack_scores(grid)
    assert packed.dtype == torch.int64 and packed.shape == (2, 7, -(-classes * 9 // 2))
    assert torch.equal(score_grid(packed, classes, 3), grid)
    assert torch.equal(score_grid(grid.flatten(-3), classes, 3), grid)  # a flat float column reads too
    assert score_grid(grid, classes, 3) is grid
    odd = torch.rand(2, 11)
    assert score_grid(odd, classes, 3) is odd  # left to the callers' shape checks, which name the key


# ---------------------------------------------------------------- offline command


@pytest.mark.slow
def test_precompute_resumes_and_stores_what_the_online_step_gives(gt_dataset, tiny_model, tmp_path, monkeypatch):
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    from lerobot_policy_segvla.commands import precompute_segmentation as pre

    feature_map = {
        "observation.images.front": "observation.segmentation.front",
        "observation.images.wrist": "observation.segmentation.wrist",
    }
    settings = dict(
        dataset=SourceDatasetConfig(repo_id="local/twin_demo", root=gt_dataset),
        feature_map=feature_map,
        output_dir=tmp_path / "with_seg",
        output_repo_id="local/twin_demo_seg",
        model_path=tiny_model,
        grid_size=4,
        input_size=64,
        batch_size=32,
    )
    total = LeRobotDataset("local/twin_demo", root=gt_dataset).meta.total_frames
    real_call, calls = pre.Mask2FormerSegmenter.__call__, []

    def interrupted_after_two_batches(self, images):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(len(images[0]))
        return real_call(self, images)

    monkeypatch.setattr(pre.Mask2FormerSegmenter, "__call__", interrupted_after_two_batches)
    with pytest.raises(KeyboardInterrupt):
        pre.precompute_segmentation(pre.PrecomputeSegmentationConfig(**settings))
    stage = tmp_path / ".with_seg.partial"
    assert len(list((stage / "shards").glob("shard_*.safetensors"))) == 2
    assert not (tmp_path / "with_seg").exists()

    # the installed command over that partial work with other settings: refused in one line, no traceback
    command = [
        "segvla-precompute",
        "--dataset.repo_id=local/twin_demo",
        f"--dataset.root={gt_dataset}",
        f"--feature_map={json.dumps(feature_map)}",
        f"--output_dir={tmp_path / 'with_seg'}",
        "--output_repo_id=local/twin_demo_seg",
        f"--model_path={tiny_model}",
        "--grid_size=4",
        "--input_size=64",
        "--batch_size=32",
    ]
    refused = run_cli([*command, "--grid_size=2"], cwd=tmp_path, check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr[-3000:]
    assert f"segvla-precompute: {stage} holds partial work made with other settings (['grid_size']): grid_size: " in (
        refused.stderr
    )
    assert "saved 4, now 2; pass --restart=true to discard it, or another --output_dir" in refused.stderr

    monkeypatch.setattr(pre.Mask2FormerSegmenter, "__call__", real_call)
    # batch size may change on resume
    summary = pre.precompute_segmentation(pre.PrecomputeSegmentationConfig(**{**settings, "batch_size": 48}))
    assert summary["frames_computed_this_run"] == total - 64
    assert summary["stored_bytes_per_frame"] == 2 * 150 * 4 * 4 * 4
    assert summary["full_map_bytes_per_camera_frame"] == 150 * 16 * 16 * 4
    assert not stage.exists() and (tmp_path / "with_seg").is_dir()
    assert len(list((tmp_path / "with_seg_previews").glob("*_frame*.png"))) == 3 * 2  # default: 3 frames x 2 cameras

    new = LeRobotDataset("local/twin_demo_seg", root=tmp_path / "with_seg")
    assert new.meta.features["observation.segmentation.front"]["shape"] == (150 * 4 * 4 // 2,)  # packed: read fast
    assert new.meta.features["observation.segmentation.front"]["dtype"] == "int64"
    assert new.meta.features["observation.segmentation.front"]["info"]["class_names"][142] == "plate"
    assert "observation.segmentation.front" not in LeRobotDataset("local/twin_demo", root=gt_dataset).meta.features

    # a training batch from the stored columns survives LeRobot's batch converter with the cues the online step
    # computes from the same frames' images
    step = SegVLAAddSegmentationStep(model_name=tiny_model, feature_map=feature_map, grid_size=4, input_size=64)
    loader = torch.utils.data.DataLoader(new, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    for i, batch in zip(range(2), loader, strict=False):
        stored = transition_to_batch(batch_to_transition(batch))
        online = step.observation({k: v for k, v in batch.items() if k.startswith("observation.images.")})
        for key in feature_map.values():
            grid = score_grid(stored[key], 150, 4)
            torch.testing.assert_close(grid, online[key], rtol=1e-4, atol=1e-6, msg=f"batch {i} {key}")

    # the command run again as it was: one line, nothing computed, nothing rewritten (previews neither); with other
    # settings: refused in one line, no traceback; a folder it did not write: refused
    out, previews = tmp_path / "with_seg", tmp_path / "with_seg_previews"
    before = mtimes(out), mtimes(previews)
    again = run_cli(command, cwd=tmp_path)
    assert again.stdout == f"{out}: already made with these settings ({total} frames); nothing to do\n", again.stdout
    assert (mtimes(out), mtimes(previews)) == before
    other = run_cli([*command, "--grid_size=2"], cwd=tmp_path, check=False)
    assert other.returncode == 1 and "Traceback" not in other.stderr, other.stderr[-3000:]
    assert f"segvla-precompute: {out} is a copy made with other settings (" in other.stderr
    assert "grid_size: saved 4, now 2" in other.stderr and "pass another --output_dir" in other.stderr
    assert (mtimes(out), mtimes(previews)) == before
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(OutputRefused, match=r"is not a copy this command finished.*another --output_dir"):
        pre.precompute_segmentation(pre.PrecomputeSegmentationConfig(**{**settings, "output_dir": stranger}))
    assert mtimes(out) == before[0] and [p.name for p in stranger.iterdir()] == ["notes.txt"]


def test_feature_map_on_the_command_line():
    import draccus

    from lerobot_policy_segvla.commands.precompute_segmentation import PrecomputeSegmentationConfig

    def parse(*flags: str) -> PrecomputeSegmentationConfig:
        return draccus.parse(PrecomputeSegmentationConfig, args=["--dataset.repo_id=local/x", *flags])

    assert parse('--feature_map={"observation.images.wrist": "observation.seg.w"}').feature_map == {
        "observation.images.wrist": "observation.seg.w"
    }
    assert parse().feature_map == {
        "observation.images.front": "observation.segmentation.front",
        "observation.images.wrist": "observation.segmentation.wrist",
    }
    with pytest.raises(draccus.utils.ParsingError):
        parse("--feature_map={}")


def test_task_classes_step_marks_the_prompt_nouns_per_sample(tiny_model, tmp_path):
    from lerobot.processor import TransitionKey, create_transition

    from lerobot_policy_segvla.cue_steps import SegVLATaskClassesStep

    step = SegVLATaskClassesStep(model_name=tiny_model, synonyms={"puck": "ball"})
    transition = create_transition(
        observation={"observation.state": torch.zeros(2, 6)},
        complementary_data={"task": ["Pick up the red cube.", "Push the puck onto the plate"]},
    )
    mask = step(transition)[TransitionKey.OBSERVATION]["observation.segmentation.task_classes"]
    assert mask.shape == (2, 150)
    assert mask[0].nonzero().flatten().tolist() == [ADE20K_150.index("box")]
    assert mask[1].nonzero().flatten().tolist() == sorted([ADE20K_150.index("ball"), ADE20K_150.index("plate")])

    pipeline = PolicyProcessorPipeline(steps=[step], name="policy_preprocessor")
    pipeline.save_pretrained(tmp_path)
    loaded = PolicyProcessorPipeline.from_pretrained(tmp_path, config_filename="policy_preprocessor.json")
    assert loaded.steps[0].get_config() == step.get_config()
    with pytest.raises(KeyError, match="task prompt"):
        step(create_transition(observation={"observation.state": torch.zeros(1, 6)}))

    # the twin's ground-truth classes: its own map, only the given synonyms (the ADE table names other classes)
    twin_classes = {str(k): v for k, v in SEGMENTATION_CLASSES.items()}
    twin = SegVLATaskClassesStep(id2label=twin_classes, synonyms={"block": "cube"})
    transition = create_transition(
        observation={"observation.state": torch.zeros(3, 6)},
        complementary_data={"task": ["Pick up the red cube.", "Put the block on the table", "wave"]},
    )
    mask = twin(transition)[TransitionKey.OBSERVATION]["observation.segmentation.task_classes"]
    assert mask.shape == (3, len(SEGMENTATION_CLASSES))
    assert [row.nonzero().flatten().tolist() for row in mask] == [[CUBE], [TABLE, CUBE], []]
    pipeline = PolicyProcessorPipeline(steps=[twin], name="policy_preprocessor")
    pipeline.save_pretrained(tmp_path / "twin")
    loaded = PolicyProcessorPipeline.from_pretrained(tmp_path / "twin", config_filename="policy_preprocessor.json")
    assert torch.equal(
        loaded.steps[0](transition)[TransitionKey.OBSERVATION]["observation.segmentation.task_classes"], mask
    )
