"""SegVLA: its cue builder against hand computations, exactness against LeRobot's SmolVLA, and bad input."""

from __future__ import annotations

import collections
import shutil
from pathlib import Path
from unittest.mock import patch

import draccus
import pytest
import torch
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.configs.policies import PreTrainedConfig
from lerobot.policies.smolvla import SmolVLAConfig, SmolVLAPolicy
from torch.utils._python_dispatch import TorchDispatchMode
from transformers import AutoTokenizer, Mask2FormerConfig

from lerobot_policy_segvla import SegmentationCueBuilder, SegVLAConfig, SegVLAPolicy
from lerobot_policy_segvla.cue_steps import SegmentationScoresFromCodeStep, scores_from_ids
from lerobot_policy_segvla.mask2former import pack_scores
from lerobot_policy_segvla.modeling_segvla import content_canvas
from lerobot_policy_segvla.processor_segvla import make_segvla_pre_post_processors
from so101_devtools.tiny_models import save_smolvlm
from so101_policy_common.precompute import SourceDatasetConfig
from so101_run_infra.cli import OutputRefused, SettingsRefused

FRONT, WRIST = "observation.images.front", "observation.images.wrist"
FRONT_SCORES, WRIST_SCORES = "observation.segmentation.front", "observation.segmentation.wrist"
IMAGE_SHAPE = (3, 48, 64)  # not square: SmolVLA pads left and top, and the cues must follow
CLASSES, GRID = 6, 8


@pytest.fixture(scope="module")
def vlm_dir(tmp_path_factory):
    return save_smolvlm(tmp_path_factory.mktemp("smolvlm"))


def features() -> dict:
    return {
        FRONT: PolicyFeature(type=FeatureType.VISUAL, shape=IMAGE_SHAPE),
        WRIST: PolicyFeature(type=FeatureType.VISUAL, shape=IMAGE_SHAPE),
        "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(6,)),
    }


def common(vlm_dir) -> dict:
    return {
        "vlm_model_name": str(vlm_dir),
        "num_vlm_layers": 2,
        "resize_imgs_with_padding": (32, 32),
        "max_state_dim": 8,
        "max_action_dim": 8,
        "chunk_size": 4,
        "n_action_steps": 4,
        "num_steps": 3,
        "device": "cpu",
        "push_to_hub": False,
        "input_features": features(),
        "output_features": {"action": PolicyFeature(type=FeatureType.ACTION, shape=(6,))},
    }


def seg_config(vlm_dir, **overrides) -> SegVLAConfig:
    knobs = {
        "segmentation_feature_map": {FRONT: FRONT_SCORES},  # the wrist camera has no semantics
        "segmentation_num_classes": CLASSES,
        "segmentation_grid_size": GRID,
        "segmentation_task_class_ids": [3],
        "segmentation_geometry_class_ids": [3, 5],
        "segmentation_top_k_classes": 2,
        "segmentation_dropout_prob": 0.0,
        **overrides,
    }
    return SegVLAConfig(**{**common(vlm_dir), **knobs})


def scene_ids(batch: int, shift: int = 0) -> torch.Tensor:
    """Class-id images: table below, background above, a cube whose column moves with `shift`."""
    ids = torch.ones(batch, *IMAGE_SHAPE[1:], dtype=torch.long)
    ids[:, 24:] = 2
    ids[:, 18:30, 10 + shift : 22 + shift] = 3
    ids[:, :10, 40:] = 5
    return ids


def make_batch(vlm_dir, batch: int = 2, shift: int = 0, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(str(vlm_dir))(["pick up the red cube\n"] * batch, return_tensors="pt")
    return {
        FRONT: torch.rand(batch, *IMAGE_SHAPE, generator=gen),
        WRIST: torch.rand(batch, *IMAGE_SHAPE, generator=gen),
        "observation.state": torch.randn(batch, 6, generator=gen),
        FRONT_SCORES: scores_from_ids(scene_ids(batch, shift), CLASSES, GRID),
        "observation.language.tokens": tok["input_ids"],
        "observation.language.attention_mask": tok["attention_mask"].bool(),
        "action": torch.randn(batch, 4, 6, generator=gen),
    }


def raw_frame(seed: int = 0) -> dict:
    """One unbatched observation as a robot or env gives it to the preprocessor."""
    gen = torch.Generator().manual_seed(seed)
    return {
        FRONT: torch.rand(*IMAGE_SHAPE, generator=gen),
        WRIST: torch.rand(*IMAGE_SHAPE, generator=gen),
        "observation.state": torch.randn(6, generator=gen),
        "task": "pick up the red cube",
    }


def noise(batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 4, 8, generator=torch.Generator().manual_seed(seed))


def chunk(policy, batch: dict, seed: int = 1) -> torch.Tensor:
    policy.reset()
    return policy.predict_action_chunk(dict(batch), noise=noise(batch["observation.state"].shape[0], seed))


# ---------------------------------------------------------------------------------------------- configuration


def test_config_round_trips_through_draccus_and_cli(tmp_path, vlm_dir):
    cfg = seg_config(vlm_dir, segmentation_region_specs=[(0.0, 0.5, 0.0, 1.0), (0.5, 1.0, 0.0, 1.0)])
    cfg._save_pretrained(tmp_path)
    loaded = PreTrainedConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, SegVLAConfig) and loaded.type == "segvla"
    assert loaded.segmentation_feature_map == {FRONT: FRONT_SCORES}
    assert [tuple(r) for r in loaded.segmentation_region_specs] == [(0.0, 0.5, 0.0, 1.0), (0.5, 1.0, 0.0, 1.0)]
    assert loaded.segmentation_task_class_ids == [3] and loaded.segmentation_geometry_class_ids == [3, 5]
    parsed = draccus.parse(
        SegVLAConfig,
        args=[
            '--segmentation_feature_map={"observation.images.front": "observation.segmentation.front"}',
            "--segmentation_task_class_ids=[142]",
            "--segmentation_grid_size=16",
            "--perception_source=mask2former",
        ],
    )
    assert parsed.segmentation_feature_map == {FRONT: FRONT_SCORES}
    assert parsed.segmentation_task_class_ids == [142] and parsed.segmentation_grid_size == 16


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"segmentation_feature_map": {FRONT: "segmentation.front"}}, "must start with 'observation.'"),
        ({"segmentation_task_class_ids": [6]}, r"segmentation_task_class_ids \[6\] are outside 0..5"),
        ({"segmentation_grid_size": 6}, "cell borders of the 6x6 score grid"),
        ({"segmentation_max_tokens": 6}, "leaves 0 class slots"),
        (
            {"perception_source": "sam"},
            r"--policy\.perception_source='sam'; choose one of \['none', 'ground_truth', 'segmenter', 'mask2former'\]",
        ),
        (
            {
                "segmentation_feature_map": {
                    FRONT: FRONT_SCORES,
                    WRIST: WRIST_SCORES,
                    "observation.images.side": "observation.s",
                }
            },
            r"3 cameras x 13 geometry values \(2 segmentation_geometry_class_ids\) need"
            r" segmentation_geometry_state_dim >= 39",
        ),
    ],
)
def test_bad_config_is_refused_with_the_reason(vlm_dir, overrides, match):
    with pytest.raises(ValueError, match=match):
        seg_config(vlm_dir, **overrides)


def test_class_names_resolve_through_the_checkpoint_id2label(vlm_dir, tmp_path):
    # an ADE20K-like label map saved as a Mask2Former config: names are looked up there, not in the seed's table
    id2label = {i: f"thing{i}" for i in range(150)} | {47: "sink", 58: "screen door, screen", 142: "plate", 135: "vase"}
    Mask2FormerConfig(num_labels=150, id2label=id2label).save_pretrained(tmp_path / "m2f")
    cfg = seg_config(
        vlm_dir,
        perception_source="mask2former",
        segmentation_num_classes=150,
        segmentation_model_name=str(tmp_path / "m2f"),
        segmentation_task_class_ids=[135],
        segmentation_task_classes=["plate", "vase"],
        segmentation_geometry_classes=["screen door"],
    )
    cfg.resolve_class_names()
    assert cfg.segmentation_task_class_ids == [135, 142] and cfg.segmentation_geometry_class_ids == [3, 5, 58]
    assert cfg.segmentation_task_classes == [] and cfg.segmentation_geometry_classes == []

    twin = seg_config(vlm_dir, perception_source="ground_truth", segmentation_task_classes=["cube", "moving finger"])
    twin.resolve_class_names()
    assert twin.segmentation_task_class_ids == [3, 5]

    unknown = seg_config(vlm_dir, perception_source="ground_truth", segmentation_task_classes=["cubes"])
    with pytest.raises(KeyError, match=r"'cubes' is not in the checkpoint's id2label .*closest names: \['cube'"):
        unknown.resolve_class_names()


def test_a_camera_the_policy_lacks_is_named(vlm_dir):
    cfg = seg_config(vlm_dir, segmentation_feature_map={"observation.images.top": FRONT_SCORES})
    with pytest.raises(ValueError, match=r"cameras \['observation.images.top'\] the policy does not have"):
        SegVLAPolicy(cfg)


def test_single_channel_maps_are_not_cameras(vlm_dir):
    cfg = seg_config(vlm_dir)
    cfg.input_features[f"{FRONT}_segmentation"] = PolicyFeature(type=FeatureType.VISUAL, shape=(1, 48, 64))
    assert sorted(cfg.image_features) == [FRONT, WRIST]


# ---------------------------------------------------------------------------------------------- cue builder


def test_cue_builder_matches_a_float64_reference():
    """Patch grid == score grid, no padding: every token is a plain weighted mean we can recompute."""
    torch.manual_seed(0)
    g, dim, bsize = 8, 5, 2
    builder = SegmentationCueBuilder(
        hidden_dim=dim,
        num_classes=CLASSES,
        grid_size=g,
        max_tokens=16,
        region_specs=[(0.0, 0.5, 0.0, 0.5), (0.25, 0.75, 0.25, 0.75)],
        top_k=2,
        task_class_ids=[4],
        geometry_class_ids=[3, 5],
        geometry_dim=32,
    ).double()
    patches = torch.randn(bsize, g * g, dim, dtype=torch.float64)
    scores = torch.rand(bsize, CLASSES, g, g, dtype=torch.float64)
    scores[:, 4] = 0.0  # a task class with no pixels still gets its slot
    scores[:, 1] += 1.0  # the two largest means are classes 1 and then one of the others
    out = builder(patches, scores, (1.0, 1.0))

    assert out.tokens.shape == (bsize, 16, dim)
    torch.testing.assert_close(out.tokens[:, 0], patches.mean(1))
    grid = patches.view(bsize, g, g, dim)
    torch.testing.assert_close(out.tokens[:, 1], grid[:, :4, :4].mean((1, 2)))
    torch.testing.assert_close(out.tokens[:, 2], grid[:, 2:6, 2:6].mean((1, 2)))
    means = scores.flatten(2).mean(-1)
    means[:, 4] = -1
    for b in range(bsize):
        expected_ids = [4, *means[b].topk(2).indices.tolist()]
        assert out.class_ids[b].tolist() == expected_ids + [-1] * 10
        assert expected_ids[1] == 1
        for slot, cid in enumerate(expected_ids[1:], start=4):
            w = scores[b, cid].flatten()
            torch.testing.assert_close(out.tokens[b, slot], (w[:, None] * patches[b]).sum(0) / w.sum())
    # empty slots are the (zero-initialised, learnable) null tokens
    assert torch.equal(out.tokens[:, 6:], torch.zeros(bsize, 10, dim, dtype=torch.float64))


def test_prompt_classes_take_slots_per_sample_ahead_of_the_top_k():
    g, dim = 8, 3
    builder = SegmentationCueBuilder(dim, CLASSES, g, 10, [(0.0, 0.5, 0.0, 0.5)], 1, [3], [], 32)
    with torch.no_grad():
        builder.null_tokens.copy_(torch.arange(8 * dim, dtype=torch.float32).view(8, dim))
    patches = torch.randn(3, g * g, dim)
    scores = torch.zeros(3, CLASSES, g, g)
    scores[:, 1] = 0.6  # by mass: background, then table, then the rest
    scores[:, 2, 4:] = 0.8
    scores[:, 5, 0, :2] = 1.0  # a tiny moving finger
    scores[:, 4, 7, 7] = 0.5  # a tinier static finger
    prompt = torch.zeros(3, CLASSES)
    prompt[0, 5] = 1  # "... with the moving finger"
    prompt[1, [4, 5, 3]] = 1  # both fingers, and the cube, which already has its configured slot
    out = builder(patches, scores, (1.0, 1.0), prompt_classes=prompt)
    # slots: configured task class 3, the sample's prompt classes by mass, then the top-1 by mass; -1 empty
    assert out.class_ids.tolist() == [
        [3, 5, 1, -1, -1, -1, -1, -1],
        [3, 5, 4, 1, -1, -1, -1, -1],
        [3, 1, -1, -1, -1, -1, -1, -1],
    ]
    w = scores[0, 5].flatten()
    torch.testing.assert_close(out.tokens[0, 3], (w[:, None] * patches[0]).sum(0) / w.sum())
    # an empty slot pools nothing and is that slot's null token
    assert torch.equal(out.patch_weights[0, 5:], torch.zeros(5, g * g))
    torch.testing.assert_close(out.tokens[0, 5:], builder.null_tokens[3:])
    torch.testing.assert_close(out.tokens[2, 4:], builder.null_tokens[2:])
    # no prompt classes: exactly the configured + top-k selection
    plain = builder(patches, scores, (1.0, 1.0))
    assert plain.class_ids.tolist() == [[3, 1, -1, -1, -1, -1, -1, -1]] * 3
    torch.testing.assert_close(plain.tokens[2], out.tokens[2])


def test_geometry_hint_of_a_hand_placed_blob():
    g = 8
    builder = SegmentationCueBuilder(4, CLASSES, g, 16, [], 0, [], [3, 5], 32)
    scores = torch.zeros(1, CLASSES, g, g)
    scores[0, 3, 2, 6] = 1.0  # cube in row 2, column 6
    scores[0, 5, 6, 1] = 0.5  # moving finger in row 6, column 1, half covered
    geom = builder.geometry(scores)[0]
    cube = [1.0, 6.5 / g, 2.5 / g, 1 / 64]
    finger = [0.5, 1.5 / g, 6.5 / g, 0.5 / 64]
    dx, dy = finger[1] - cube[1], finger[2] - cube[2]
    dist = (dx**2 + dy**2) ** 0.5
    expected = [*cube, *finger, dx, dy, dist, dy / dist, dx / dist] + [0.0] * 19
    torch.testing.assert_close(geom, torch.tensor(expected))


def test_each_camera_geometry_has_its_own_slots(vlm_dir):
    cfg = seg_config(vlm_dir, segmentation_feature_map={FRONT: FRONT_SCORES, WRIST: WRIST_SCORES})
    policy = SegVLAPolicy(cfg).eval()
    batch = make_batch(vlm_dir, batch=1)
    batch[WRIST_SCORES] = scores_from_ids(scene_ids(1, shift=20), CLASSES, GRID)  # the cube elsewhere in the wrist view
    seen = []
    policy.model.segmentation_state_proj.register_forward_hook(lambda m, args, out: seen.append(args[0]))
    chunk(policy, batch)
    builder = policy.model.segmentation_builder
    front, wrist = builder.geometry(batch[FRONT_SCORES])[0, :13], builder.geometry(batch[WRIST_SCORES])[0, :13]
    assert builder.geometry_values == 13 and not torch.equal(front, wrist)
    torch.testing.assert_close(seen[0][0], torch.cat([front, wrist, torch.zeros(6)]))


def test_content_canvas_follows_smolvla_top_left_padding():
    maps = torch.ones(1, 1, 4, 4)
    canvas = content_canvas(maps, 8, (0.75, 1.0))  # a 3:4 image fills the bottom 6 of 8 rows
    assert canvas[0, 0, :2].sum() == 0 and torch.equal(canvas[0, 0, 2:], torch.ones(6, 8))


def test_projections_follow_the_backbone_config(vlm_dir):
    policy = SegVLAPolicy(seg_config(vlm_dir))
    vlm = policy.model.vlm_with_expert
    vision, text = vlm.config.vision_config.hidden_size, vlm.config.text_config.hidden_size
    assert (policy.model.segmentation_token_proj.in_features, policy.model.segmentation_token_proj.out_features) == (
        vision,
        text,
    )
    assert policy.model.segmentation_state_proj.in_features == 32
    assert policy.model.segmentation_context_proj.out_features == vlm.expert_hidden_size != text


# ---------------------------------------------------------------------------------------------- exactness


def test_segmentation_off_acts_exactly_like_smolvla(vlm_dir):
    torch.manual_seed(0)
    smol = SmolVLAPolicy(SmolVLAConfig(**common(vlm_dir)))
    seg = SegVLAPolicy(SegVLAConfig(**common(vlm_dir)))
    seg.load_state_dict(smol.state_dict(), strict=True)  # no extra parameters when the cues are off
    batch = make_batch(vlm_dir)
    assert torch.equal(chunk(smol, batch), chunk(seg, batch))
    smol.train(), seg.train()
    time = torch.tensor([0.3, 0.8])
    loss_smol, _ = smol.forward(dict(batch), noise=noise(), time=time)
    loss_seg, _ = seg.forward(dict(batch), noise=noise(), time=time)
    assert torch.equal(loss_smol, loss_seg)


class CountOps(TorchDispatchMode):
    """Counts the aten ops a call runs."""

    def __init__(self):
        super().__init__()
        self.ops = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops[str(func)] += 1
        return func(*args, **(kwargs or {}))


# On a GPU, `_local_scalar_dense` (.item(), bool(), float() of a tensor) waits for every queued kernel, and
# `lift_fresh` (torch.tensor of Python data) is a host-to-device copy that waits as well.
ROUND_TRIPS = ("aten._local_scalar_dense.default", "aten.lift_fresh.default")


@pytest.mark.parametrize("training", [False, True])
def test_the_cue_path_adds_no_host_device_round_trip(vlm_dir, training):
    """The cues' own reads and copies stay on the device; the scores' check is one read-back (a tolist, not
    counted here) before the VLM runs."""
    torch.manual_seed(0)
    counts = []
    for config in (SegVLAConfig(**common(vlm_dir)), seg_config(vlm_dir)):
        policy = SegVLAPolicy(config)
        batch = make_batch(vlm_dir)
        with CountOps() as mode:
            if training:
                policy.train()
                loss, _ = policy.forward(dict(batch), noise=noise())
                loss.backward()
            else:
                chunk(policy, batch)
        counts.append({op: mode.ops[op] for op in ROUND_TRIPS})
    assert counts[1]["aten._local_scalar_dense.default"] >= 1  # SmolVLA's own reads are counted: the probe works
    assert counts[1] == counts[0]


def test_init_from_a_smolvla_checkpoint_starts_exact_then_learns_the_cues(vlm_dir, tmp_path):
    torch.manual_seed(0)
    smol = SmolVLAPolicy(SmolVLAConfig(**common(vlm_dir)))
    smol.save_pretrained(tmp_path)
    seg = SegVLAPolicy.from_pretrained(tmp_path, config=seg_config(vlm_dir))
    batch, moved = make_batch(vlm_dir), make_batch(vlm_dir, shift=30)
    assert not torch.equal(batch[FRONT_SCORES], moved[FRONT_SCORES])

    # step 0: the cues are on, read and pooled, but every new projection is zero
    for name in ("segmentation_token_proj", "segmentation_state_proj", "segmentation_context_proj"):
        assert getattr(seg.model, name).weight.abs().sum() == 0
    reference = chunk(smol, batch)
    assert torch.equal(chunk(seg, batch), reference)
    assert torch.equal(chunk(seg, moved), reference)

    seg.train()
    optimizer = torch.optim.AdamW([p for p in seg.parameters() if p.requires_grad], lr=1e-3)
    for step in range(4):
        loss, _ = seg.forward(dict(batch), noise=noise(seed=10 + step))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name in ("segmentation_token_proj", "segmentation_state_proj", "segmentation_context_proj"):
        assert getattr(seg.model, name).weight.abs().sum() > 0, name
    # the policy now reads the scores: moving the cube in the segmentation alone changes the actions
    assert not torch.allclose(chunk(seg, batch), chunk(seg, moved))


def test_cameras_without_semantics_keep_working(vlm_dir):
    """Only the front camera has scores; a wrist-only batch (front missing) runs as plain SmolVLA."""
    policy = SegVLAPolicy(seg_config(vlm_dir, empty_cameras=0))
    batch = make_batch(vlm_dir)
    assert chunk(policy, batch).shape == (2, 4, 6)
    wrist_only = {k: v for k, v in batch.items() if k not in (FRONT, FRONT_SCORES)}
    assert chunk(policy, wrist_only).shape == (2, 4, 6)


def test_cue_dropout_is_per_sample_and_training_only(vlm_dir):
    policy = SegVLAPolicy(seg_config(vlm_dir, segmentation_dropout_prob=0.5))
    policy.train()
    torch.manual_seed(3)
    keep = policy.model._keep_mask(4096, "cpu", torch.float32)
    assert set(keep.unique().tolist()) == {0.0, 1.0} and abs(float(keep.mean()) - 0.5) < 0.05
    policy.eval()
    assert torch.equal(policy.model._keep_mask(8, "cpu", torch.float32), torch.ones(8))


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("edit", "error", "match"),
    [
        (lambda b: b.pop(FRONT_SCORES), KeyError, "camera 'observation.images.front'"),
        (lambda b: b.update({FRONT_SCORES: b[FRONT_SCORES][:, :5]}), ValueError, r"\(B, 6, 8, 8\).*\(2, 5, 8, 8\)"),
        (lambda b: b.update({FRONT_SCORES: b[FRONT_SCORES][..., :4, :4]}), ValueError, r"got \(2, 6, 4, 4\)"),
        (lambda b: b[FRONT_SCORES].__setitem__((0, 1, 2, 3), float("nan")), ValueError, "holds NaN scores"),
        (lambda b: b[FRONT_SCORES].__isub__(0.5), ValueError, "not logits"),
    ],
)
def test_bad_scores_name_the_key_and_what_was_expected(vlm_dir, edit, error, match):
    policy = SegVLAPolicy(seg_config(vlm_dir))
    batch = make_batch(vlm_dir)
    edit(batch)
    with pytest.raises(error, match=match) as info:
        chunk(policy, batch)
    assert FRONT_SCORES in str(info.value)


def test_stored_score_layouts_act_like_the_grid(vlm_dir):
    """segvla-precompute stores scores packed (int64 words); a flat float column reads too: the policy sees the
    same (C, g, g), with or without lerobot-train's time axis."""
    policy = SegVLAPolicy(seg_config(vlm_dir))
    batch = make_batch(vlm_dir)
    expected = chunk(policy, batch)
    flat = batch[FRONT_SCORES].flatten(1)
    assert flat.shape == (2, CLASSES * GRID * GRID)
    torch.testing.assert_close(chunk(policy, batch | {FRONT_SCORES: flat}), expected, rtol=0, atol=0)
    torch.testing.assert_close(chunk(policy, batch | {FRONT_SCORES: flat[:, None]}), expected, rtol=0, atol=0)
    packed = pack_scores(batch[FRONT_SCORES])  # what segvla-precompute stores
    torch.testing.assert_close(chunk(policy, batch | {FRONT_SCORES: packed[:, None]}), expected, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"got \(2, 383\)"):
        chunk(policy, batch | {FRONT_SCORES: flat[:, :-1]})


# ---------------------------------------------------------------------------------------------- ground truth


def test_scores_from_ids_are_cell_fractions():
    ids = torch.zeros(1, 4, 6, dtype=torch.long)
    ids[0, :2, :3] = 3
    ids[0, 0, 0] = 5
    scores = scores_from_ids(ids, CLASSES, 2)
    assert scores.shape == (1, CLASSES, 2, 2)
    torch.testing.assert_close(scores.sum(1), torch.ones(1, 2, 2))
    assert scores[0, 3, 0, 0] == pytest.approx(5 / 6) and scores[0, 5, 0, 0] == pytest.approx(1 / 6)
    assert scores[0, 0, 1, 1] == 1.0


def test_ground_truth_step_decodes_the_twin_code(vlm_dir):
    from so101_core import segmentation_to_code

    ids = scene_ids(1)[0].numpy().astype("uint8")
    code_mm = torch.from_numpy(segmentation_to_code(ids)).permute(2, 0, 1)[None] * 1000.0
    step = SegmentationScoresFromCodeStep(key_map={f"{FRONT}_segmentation": FRONT_SCORES})
    out = step.observation({f"{FRONT}_segmentation": code_mm})
    torch.testing.assert_close(out[FRONT_SCORES], scores_from_ids(scene_ids(1), CLASSES, GRID))
    with pytest.raises(KeyError, match=r"observation\.images\.front_segmentation"):
        step.observation({})
    pre, _ = make_segvla_pre_post_processors(seg_config(vlm_dir, perception_source="ground_truth"))
    assert any(isinstance(s, SegmentationScoresFromCodeStep) for s in pre.steps)


def test_prompt_nouns_become_class_tokens_through_the_preprocessor(vlm_dir):
    """Seed 000's per-sample parser on the twin's classes: 'cube' in one prompt, 'finger' nowhere."""
    from lerobot_policy_segvla.cue_steps import TASK_CLASSES_KEY, SegVLATaskClassesStep
    from so101_core import segmentation_to_code

    cfg = seg_config(
        vlm_dir,
        perception_source="ground_truth",
        segmentation_task_class_ids=[],
        segmentation_classes_from_task=True,
        segmentation_task_synonyms={"block": "cube"},
    )
    cfg.input_features[f"{FRONT}_segmentation"] = PolicyFeature(type=FeatureType.VISUAL, shape=(1, *IMAGE_SHAPE[1:]))
    pre, _ = make_segvla_pre_post_processors(cfg)
    assert any(isinstance(s, SegVLATaskClassesStep) for s in pre.steps)
    code = torch.from_numpy(segmentation_to_code(scene_ids(1)[0].numpy().astype("uint8"))).permute(2, 0, 1) * 1000.0
    frames = {
        FRONT: torch.rand(2, *IMAGE_SHAPE),
        WRIST: torch.rand(2, *IMAGE_SHAPE),
        f"{FRONT}_segmentation": code.expand(2, -1, -1, -1).clone(),
        "observation.state": torch.randn(2, 6),
        "task": ["Pick up the red block.", "Wave at the camera."],
    }
    batch = pre(frames)
    assert batch[TASK_CLASSES_KEY].tolist() == [[0, 0, 0, 1, 0, 0], [0] * 6]

    policy = SegVLAPolicy(cfg)
    policy.eval()
    captured = []
    policy.model.segmentation_builder.register_forward_hook(lambda m, a, out: captured.append(out.class_ids))
    chunk(policy, batch)
    # top_k=2 by mass is table (1464 px) then background (1224); the cube comes first only where the prompt names it
    assert captured[0][:, :3].tolist() == [[3, 2, 1], [2, 1, -1]]
    with pytest.raises(KeyError, match=TASK_CLASSES_KEY):
        chunk(policy, {k: v for k, v in batch.items() if k != TASK_CLASSES_KEY})


def test_online_mask2former_scores_drive_the_policy_end_to_end(vlm_dir, tmp_path):
    """Raw frame -> SegVLA's preprocessor (a tiny ADE20K Mask2Former saved locally) -> select_action."""
    from test_mask2former import save_tiny_mask2former

    m2f = save_tiny_mask2former(tmp_path / "m2f")
    cfg = seg_config(
        vlm_dir,
        perception_source="mask2former",
        segmentation_model_name=str(m2f),
        segmentation_num_classes=150,
        segmentation_task_class_ids=[142],  # ADE20K "plate" (pitfall R1)
        segmentation_geometry_class_ids=[142, 15],
    )
    policy = SegVLAPolicy(cfg)
    pre, post = make_segvla_pre_post_processors(cfg)
    frame = raw_frame()
    batch = pre(dict(frame))
    assert batch[FRONT_SCORES].shape == (1, 150, GRID, GRID) and (batch[FRONT_SCORES] >= 0).all()
    policy.reset()
    action = post(policy.select_action(batch, noise=noise(1)))
    assert action.shape == (1, 6) and torch.isfinite(action).all()


# ---------------------------------------------------------------------------------------------- from SmolVLA


def test_conversion_keeps_every_smolvla_field_and_refuses_what_is_not_smolvla(vlm_dir, tmp_path):
    import dataclasses

    from lerobot_policy_segvla.commands.from_smolvla import convert, segvla_config

    smol = SmolVLAConfig(**common(vlm_dir), optimizer_eps=1e-8)
    seg = segvla_config(smol, [f'--policy.segmentation_feature_map={{"{FRONT}": "{FRONT_SCORES}"}}', "--num_steps=5"])
    changed = {f.name for f in dataclasses.fields(SmolVLAConfig) if getattr(smol, f.name) != getattr(seg, f.name)}
    assert changed == {"num_steps"} and seg.num_steps == 5 and seg.segmentation_feature_map == {FRONT: FRONT_SCORES}

    SmolVLAPolicy(smol).save_pretrained(tmp_path / "smol")
    with pytest.raises(ValueError, match="segmentation_feature_map"):
        convert(str(tmp_path / "smol"), tmp_path / "out", [])
    assert not (tmp_path / "out").exists()
    (tmp_path / "seg").mkdir()
    seg_config(vlm_dir)._save_pretrained(tmp_path / "seg")
    with pytest.raises(ValueError, match="holds a 'segvla' checkpoint; expected a 'smolvla' one"):
        convert(str(tmp_path / "seg"), tmp_path / "out", [])


def test_a_conversion_is_known_by_every_source_file_it_reads(tmp_path, monkeypatch):
    """The source's weights, config and preprocessor (its normalisation stats) each make another conversion; a file
    the conversion does not read does not. A Hub id is fingerprinted by its cached snapshot's files."""
    from lerobot_policy_segvla.commands import from_smolvla

    source = tmp_path / "smolvla"
    source.mkdir()
    for name in (
        "config.json",
        "model.safetensors",
        "policy_preprocessor.json",
        "policy_preprocessor_step_0.safetensors",
    ):
        (source / name).write_text(name)
    flags = ["--policy.segmentation_task_classes=[cube]"]
    first = from_smolvla.conversion_record(str(source), flags)
    assert sorted(first["source_sha256"]) == sorted(p.name for p in source.iterdir())
    (source / "train_config.json").write_text("{}")
    assert from_smolvla.conversion_record(str(source), flags) == first
    for name in first["source_sha256"]:
        (source / name).write_text(name + " trained further")
        now = from_smolvla.conversion_record(str(source), flags)
        assert {k for k in now["source_sha256"] if now["source_sha256"][k] != first["source_sha256"][k]} == {name}
        (source / name).write_text(name)

    fetched = []
    monkeypatch.setattr("huggingface_hub.snapshot_download", lambda repo_id, **kw: fetched.append(kw) or str(source))
    hub = from_smolvla.conversion_record("lerobot/smolvla_base", flags)
    assert hub == {**first, "source": "lerobot/smolvla_base"}
    assert fetched == [{"allow_patterns": from_smolvla.SOURCE_FILES}]
    with pytest.raises(SettingsRefused, match=f"--policy.path={tmp_path / 'gone'}: no such folder on this machine"):
        from_smolvla.conversion_record(str(tmp_path / "gone"), flags)


def run_again_finished_killed_and_over_other_settings(command: list[str], source: Path, out: Path, tmp_path: Path):
    """segvla-from-smolvla run again: over its own conversion nothing is done; another source's weights, other
    flags or a folder it did not write are refused in one line; a run killed while writing leaves nothing, and
    the same command then converts whole."""
    from clitools import run_cli
    from run_again import mtimes

    from lerobot_policy_segvla.commands import from_smolvla

    before = mtimes(out)
    again = run_cli(command, cwd=tmp_path)
    said = f"{out}: already made with these settings (SegVLA from {source}); nothing to do"
    assert again.stdout.strip().endswith(said), again.stdout[-2000:]
    assert mtimes(out) == before
    other = run_cli([*command[:-1], "--policy.segmentation_task_classes=[table]"], cwd=tmp_path, check=False)
    assert other.returncode != 0 and "Traceback" not in other.stderr, other.stderr[-3000:]
    assert f"{out} holds a conversion made with other settings (overrides[" in other.stderr
    assert "saved '--policy.segmentation_task_classes=[cube]', now '--policy.segmentation_task_classes=[table]'" in (
        other.stderr
    )
    assert "choose another --output_dir, or remove that folder to make it again" in other.stderr
    assert mtimes(out) == before
    overrides = [a for a in command if a.startswith("--policy.") and not a.startswith("--policy.path")]
    changed = tmp_path / "retrained"
    shutil.copytree(source, changed)
    (changed / "model.safetensors").write_bytes((changed / "model.safetensors").read_bytes() + b" ")
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(OutputRefused, match=r"other settings \(source: saved .*source_sha256.model.safetensors: saved"):
        from_smolvla.convert(str(changed), out, overrides)
    (tmp_path / "elsewhere" / "notes.txt").write_text("mine")
    with pytest.raises(OutputRefused, match="holds nothing segvla-from-smolvla wrote"):
        from_smolvla.convert(str(source), tmp_path / "elsewhere", overrides)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    killed_out = tmp_path / "killed"
    with patch.object(from_smolvla, "save_policy", killed), pytest.raises(KeyboardInterrupt):
        from_smolvla.convert(str(source), killed_out, overrides)
    assert not killed_out.exists() and not list(tmp_path.glob(".killed*"))
    from_smolvla.convert(str(source), killed_out, overrides)
    for name in ("model.safetensors", "config.json", "policy_preprocessor.json", from_smolvla.RECORD):
        assert (killed_out / name).read_bytes() == (out / name).read_bytes(), name


@pytest.mark.slow
def test_converted_smolvla_acts_like_it_and_trains_with_the_segmentation_step(vlm_dir, gt_dataset, tmp_path):
    """`segvla-from-smolvla` then `lerobot-train --policy.path`: SegVLA's processors, SmolVLA's actions at step 0."""
    import json

    from clitools import run_cli, short_train_flags
    from conftest import GT_SIZE
    from lerobot.datasets import LeRobotDataset, LeRobotDatasetMetadata
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    meta = LeRobotDatasetMetadata("local/twin_demo", root=gt_dataset)
    tiny = {k: v for k, v in common(vlm_dir).items() if k not in ("input_features", "output_features")}
    # the cameras only: plain SmolVLA would also take the twin's 1-channel depth/segmentation maps as cameras
    smol_cfg = SmolVLAConfig(
        **tiny,
        input_features={key: PolicyFeature(type=FeatureType.VISUAL, shape=(3, *GT_SIZE)) for key in (FRONT, WRIST)}
        | {"observation.state": PolicyFeature(type=FeatureType.STATE, shape=(6,))},
    )
    smol = make_policy(smol_cfg, ds_meta=meta)
    smol_pre, smol_post = make_pre_post_processors(smol_cfg, dataset_stats=meta.stats)
    smol_dir = tmp_path / "smolvla"
    for part in (smol, smol_pre, smol_post):
        part.save_pretrained(smol_dir)

    converted = tmp_path / "segvla_init"
    feature_map = {
        "observation.images.front": "observation.segmentation.front",
        "observation.images.wrist": "observation.segmentation.wrist",
    }
    convert = [
        "segvla-from-smolvla",
        f"--policy.path={smol_dir}",
        f"--output_dir={converted}",
        f"--policy.segmentation_feature_map={json.dumps(feature_map)}",
        "--policy.perception_source=ground_truth",
        "--policy.segmentation_num_classes=6",
        "--policy.segmentation_task_classes=[cube]",
    ]
    run_cli(convert, cwd=tmp_path)
    saved = json.loads((converted / "config.json").read_text())
    assert saved["type"] == "segvla" and saved["segmentation_task_class_ids"] == [3]
    steps = [s["registry_name"] for s in json.loads((converted / "policy_preprocessor.json").read_text())["steps"]]
    assert "so101_segmentation_scores_from_code" in steps
    run_again_finished_killed_and_over_other_settings(convert, smol_dir, converted, tmp_path)

    # step 0: the converted checkpoint acts exactly like the SmolVLA it came from
    cfg = PreTrainedConfig.from_pretrained(converted)
    seg = SegVLAPolicy.from_pretrained(converted, config=cfg)
    seg_pre, seg_post = make_pre_post_processors(cfg, pretrained_path=str(converted))
    item = LeRobotDataset("local/twin_demo", root=gt_dataset)[7]
    frame = {**{k: v for k, v in item.items() if k.startswith("observation.")}, "task": item["task"]}
    smol.eval(), seg.eval()
    seg_batch = seg_pre(dict(frame))
    assert seg_batch["observation.segmentation.front"].shape == (1, 6, 8, 8)
    a = smol_post(chunk(smol, smol_pre(dict(frame))))
    b = seg_post(chunk(seg, seg_batch))
    # ... but for the clip into the arm's joint limits every suite policy's postprocessor ends with
    limits = torch.as_tensor(cfg.resolved_joint_limits(), dtype=a.dtype)
    assert torch.equal(torch.maximum(torch.minimum(a, limits[:, 1]), limits[:, 0]), b)

    # and LeRobot fine-tunes it with the segmentation step in place
    run_cli(
        [
            "lerobot-train",
            f"--policy.path={converted}",
            f"--dataset.root={gt_dataset}",
            "--dataset.repo_id=local/twin_demo",
            *short_train_flags(tmp_path / "train", steps=2),
        ],
        cwd=tmp_path,
    )
    trained = tmp_path / "train/checkpoints/last/pretrained_model"
    steps = [s["registry_name"] for s in json.loads((trained / "policy_preprocessor.json").read_text())["steps"]]
    assert "so101_segmentation_scores_from_code" in steps


# ---------------------------------------------------------------------------------------------- segmenter cues


def save_segmenter_checkpoint(folder, num_classes: int = CLASSES, seed: int = 0):
    from so101_segmenter.model import EfficientViTFPN, SegmenterConfig, save_segmenter

    torch.manual_seed(seed)
    model = EfficientViTFPN(SegmenterConfig(num_classes=num_classes, pretrained=False, fpn_channels=16)).eval()
    save_segmenter(model, folder, metadata={"img_size": "[48, 64]"})
    return model


def test_segmenter_cues_are_pooled_probabilities_and_travel_inside_the_checkpoint(vlm_dir, tmp_path):
    import shutil

    from lerobot.policies.factory import make_pre_post_processors

    from lerobot_policy_segvla.cue_steps import SegmenterScoresStep

    model = save_segmenter_checkpoint(tmp_path / "segmenter")
    cfg = seg_config(
        vlm_dir,
        perception_source="segmenter",
        segmentation_segmenter_path=str(tmp_path / "segmenter"),
        segmentation_feature_map={FRONT: FRONT_SCORES, WRIST: WRIST_SCORES},
    )
    pre, post = make_pre_post_processors(cfg, dataset_stats=None)
    (step,) = [s for s in pre.steps if isinstance(s, SegmenterScoresStep)]
    assert step.image_size == [48, 64]  # the size the segmenter was trained at, from its metadata
    frame = raw_frame()
    batch = pre(dict(frame))
    with torch.no_grad():  # the reference: the segmenter's softmax, averaged over each 6 x 8 pixel cell by hand
        probs = model(frame[FRONT][None]).softmax(1).double()
    expected = probs.unflatten(2, (GRID, 6)).unflatten(4, (GRID, 8)).mean(dim=(3, 5))
    torch.testing.assert_close(batch[FRONT_SCORES].double(), expected, atol=1e-6, rtol=1e-5)
    assert batch[WRIST_SCORES].shape == (1, CLASSES, GRID, GRID)
    torch.testing.assert_close(batch[FRONT_SCORES].sum(1), torch.ones(1, GRID, GRID))

    policy = SegVLAPolicy(cfg)
    policy.train()  # training reads the same scores: they must not be inference tensors
    loss, _ = policy.forward({**batch, "action": torch.randn(1, 4, 6)})
    loss.backward()
    assert policy.model.segmentation_token_proj.weight.grad is not None
    saved = tmp_path / "checkpoint"
    for part in (policy, pre, post):
        part.save_pretrained(saved)
    shutil.rmtree(tmp_path / "segmenter")  # the checkpoint must not need the folder it was trained from
    moved = shutil.copytree(saved, tmp_path / "elsewhere")
    shutil.rmtree(saved)
    loaded_cfg = PreTrainedConfig.from_pretrained(moved)
    pre2, _ = make_pre_post_processors(loaded_cfg, pretrained_path=str(moved))
    torch.testing.assert_close(pre2(dict(frame))[FRONT_SCORES], batch[FRONT_SCORES])


@pytest.mark.slow
def test_precomputed_segmenter_cues_are_read_in_training_and_equal_the_online_ones(gt_dataset, vlm_dir, tmp_path):
    """segvla-precompute --segmenter_path stores what the online step computes; training reads it back without
    running the segmenter; another segmenter's scores are refused when the pipeline is made."""
    from lerobot.datasets.lerobot_dataset import LeRobotDataset
    from lerobot.policies.factory import make_pre_post_processors

    from lerobot_policy_segvla.commands import precompute_segmentation as pre
    from lerobot_policy_segvla.cue_steps import SegmenterScoresStep

    save_segmenter_checkpoint(tmp_path / "segmenter")
    feature_map = {FRONT: FRONT_SCORES, WRIST: WRIST_SCORES}
    cfg = pre.PrecomputeSegmentationConfig(
        dataset=SourceDatasetConfig(repo_id="local/twin_demo", root=gt_dataset),
        feature_map=feature_map,
        output_dir=tmp_path / "cues",
        output_repo_id="local/twin_demo_cues",
        grid_size=GRID,
        batch_size=5,
        previews=0,
        segmenter_path=tmp_path / "segmenter",
    )
    summary = pre.precompute_segmentation(cfg)
    assert summary["stored_bytes_per_frame"] == 2 * CLASSES * GRID * GRID * 4
    # packed into int64 words: LeRobot reads an array column element by element through Python lists
    spec = LeRobotDataset("local/twin_demo_cues", root=tmp_path / "cues").meta.features[FRONT_SCORES]
    assert (spec["dtype"], spec["shape"]) == ("int64", (CLASSES * GRID * GRID // 2,))
    source = LeRobotDataset("local/twin_demo", root=gt_dataset)
    stored = LeRobotDataset("local/twin_demo_cues", root=tmp_path / "cues")
    info = stored.meta.features[FRONT_SCORES]["info"]
    assert info["perception_source"] == "segmenter" and len(info["segmenter_fingerprint"]) == 16

    height, width = source.meta.features[FRONT]["shape"][:2]
    cameras = {key: PolicyFeature(type=FeatureType.VISUAL, shape=(3, height, width)) for key in (FRONT, WRIST)}
    inputs = {**cameras, "observation.state": PolicyFeature(type=FeatureType.STATE, shape=(6,))}

    def preprocessor(meta, segmenter: str = "segmenter"):
        cfg = seg_config(
            vlm_dir,
            input_features=dict(inputs),
            perception_source="segmenter",
            segmentation_segmenter_path=str(tmp_path / segmenter),
            segmentation_feature_map=feature_map,
        )
        cfg.set_dataset_feature_metadata(meta.features)  # what LeRobot's make_policy does with the dataset's
        pre_steps, _ = make_pre_post_processors(cfg, dataset_stats=None)
        (step,) = [s for s in pre_steps.steps if isinstance(s, SegmenterScoresStep)]
        return pre_steps, step

    online, online_step = preprocessor(source.meta)
    reading, reading_step = preprocessor(stored.meta)
    assert online_step.stored_scores_fingerprint is None
    assert reading_step.stored_scores_fingerprint == info["segmenter_fingerprint"]

    def no_segmenter(images):
        raise AssertionError("the segmenter ran on a batch whose scores are stored")

    reading_step.probabilities = no_segmenter
    indices = [0, 3, len(source) - 1]
    tokens = {"task": ["pick up the red cube"] * len(indices)}
    for dataset, steps in ((source, online), (stored, reading)):
        batch = torch.utils.data.default_collate([dataset[i] for i in indices])
        steps.raw = {k: v for k, v in batch.items() if k.startswith("observation.")} | tokens
        steps.batch = steps(dict(steps.raw))
    for key in feature_map.values():
        assert reading.batch[key].shape == (len(indices), CLASSES, GRID, GRID)
        torch.testing.assert_close(reading.batch[key], online.batch[key], rtol=1e-5, atol=1e-6, msg=key)
    # lerobot-train's batches give the stored columns a time axis of 1; they pass as they are (the policy takes both)
    timed = reading(reading.raw | {key: reading.raw[key][:, None] for key in feature_map.values()})
    torch.testing.assert_close(timed[FRONT_SCORES][:, -1], reading.batch[FRONT_SCORES])
    bad = r"stored scores 'observation\.segmentation\.front' are \(3, 10\); expected.*int64 \(\.\.\., 192\)"
    with pytest.raises(ValueError, match=bad):
        reading(reading.raw | {FRONT_SCORES: reading.raw[FRONT_SCORES][..., :10]})

    save_segmenter_checkpoint(tmp_path / "other", seed=1)
    with pytest.raises(ValueError, match=r"observation\.segmentation\.front.*were computed by segmenter"):
        preprocessor(stored.meta, "other")


def test_segmenter_source_bad_input_names_both_values(vlm_dir, tmp_path):
    save_segmenter_checkpoint(tmp_path / "five", num_classes=5)
    cfg = seg_config(vlm_dir, perception_source="segmenter", segmentation_segmenter_path=str(tmp_path / "five"))
    with pytest.raises(ValueError, match=r"checkpoint has num_classes=5, expected 6"):
        make_segvla_pre_post_processors(cfg)
    with pytest.raises(ValueError, match=r"needs --policy\.segmentation_segmenter_path"):
        make_segvla_pre_post_processors(seg_config(vlm_dir, perception_source="segmenter"))
    with pytest.raises(ValueError, match=r"gives the twin's 6 classes; segmentation_num_classes is 150"):
        seg_config(vlm_dir, perception_source="segmenter", segmentation_num_classes=150)


def test_ground_truth_cues_need_the_segmentation_inputs(vlm_dir):
    cfg = seg_config(vlm_dir, perception_source="ground_truth")
    SegVLAPolicy(cfg)  # the input the preprocessor reads is listed, as a checkpoint converted from SmolVLA lacks it
    assert cfg.input_features[f"{FRONT}_segmentation"].shape == (1, *IMAGE_SHAPE[1:])
    pre, _ = make_segvla_pre_post_processors(cfg)
    frame = {FRONT: torch.rand(*IMAGE_SHAPE), WRIST: torch.rand(*IMAGE_SHAPE), "observation.state": torch.zeros(6)}
    # refused by the camera check at the preprocessor's start, before any cue step runs
    with pytest.raises(ValueError, match=r"missing \['observation\.images\.front_segmentation'\]\. These are the"):
        pre({**frame, "task": "pick up the red cube"})


# ---------------------------------------------------------------------------------------------- look robustness


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"rgb_dropout_prob": 1.0}, r"rgb_dropout_prob must be in \[0, 1\), got 1.0"),
        ({"rgb_dropout_prob": -0.1}, "rgb_dropout_prob"),
        ({"segmentation_image": "overlay"}, r"segmentation_image must be one of \('none', 'beside', 'instead'\)"),
        ({"segmentation_image": "beside", "perception_source": "mask2former"}, "segmentation_image='beside'"),
        ({"segmentation_image": "instead", "segmentation_feature_map": {}}, "segmentation_image='instead'"),
        ({"rgb_dropout_prob": 0.5, "segmentation_feature_map": {}}, "segmentation_feature_map is empty"),
    ],
)
def test_bad_look_options_are_refused_with_the_field(vlm_dir, overrides, match):
    with pytest.raises(ValueError, match=match):
        seg_config(vlm_dir, **{"perception_source": "ground_truth", **overrides})


def test_look_options_off_by_default_keep_smolvla_exact(vlm_dir):
    cfg = SegVLAConfig(**common(vlm_dir))
    assert cfg.segmentation_image == "none" and cfg.rgb_dropout_prob == 0.0
    assert list(cfg.image_features) == [FRONT, WRIST]  # nothing drawn, nothing added


def test_class_colour_image_is_the_palette_for_labels():
    from lerobot_policy_segvla.cue_steps import class_colour_image
    from so101_core import SEGMENTATION_PALETTE

    ids = scene_ids(1)
    one_hot = torch.nn.functional.one_hot(ids, CLASSES).movedim(-1, -3).double()
    image = class_colour_image(one_hot)
    expected = torch.from_numpy(SEGMENTATION_PALETTE[ids[0].numpy()]).permute(2, 0, 1).double() / 255.0
    torch.testing.assert_close(image[0], expected)
    half = class_colour_image(torch.full((1, CLASSES, 2, 2), 1.0 / CLASSES, dtype=torch.float64))
    torch.testing.assert_close(half[0, :, 0, 0], torch.from_numpy(SEGMENTATION_PALETTE.mean(0)).double() / 255.0)


@pytest.mark.parametrize("mode", ["beside", "instead"])
def test_segmentation_image_reaches_siglip_from_ground_truth(vlm_dir, mode):
    from so101_core import SEGMENTATION_PALETTE, segmentation_to_code

    cfg = seg_config(vlm_dir, perception_source="ground_truth", segmentation_image=mode)
    policy = SegVLAPolicy(cfg)
    drawn = f"{FRONT}_segmentation_rgb" if mode == "beside" else FRONT
    assert list(cfg.image_features) == ([FRONT, WRIST, drawn] if mode == "beside" else [FRONT, WRIST])
    assert drawn not in cfg.input_features or mode == "instead"  # no env or robot gives it
    pre, _ = make_segvla_pre_post_processors(cfg)
    ids = scene_ids(1)[0]
    code = torch.from_numpy(segmentation_to_code(ids.numpy().astype("uint8"))).permute(2, 0, 1) * 1000.0
    frame = {**raw_frame(), f"{FRONT}_segmentation": code}
    batch = pre(frame)
    expected = torch.from_numpy(SEGMENTATION_PALETTE[ids.numpy()]).permute(2, 0, 1).float() / 255.0
    torch.testing.assert_close(batch[drawn][0], expected)
    if mode == "beside":
        torch.testing.assert_close(batch[FRONT][0], frame[FRONT])  # the camera itself is untouched
    # the policy reads it as an image: changing the drawn picture alone changes the actions
    policy.eval()
    moved = dict(batch)
    moved[drawn] = batch[drawn].flip(-1)
    assert not torch.allclose(chunk(policy, batch), chunk(policy, moved))


def test_segmenter_draws_its_probabilities_at_the_camera_size(vlm_dir, tmp_path):
    from lerobot_policy_segvla.cue_steps import SegmenterScoresStep, class_colour_image

    model = save_segmenter_checkpoint(tmp_path / "segmenter")
    step = SegmenterScoresStep(
        feature_map={FRONT: FRONT_SCORES},
        image_map={FRONT: f"{FRONT}_segmentation_rgb"},
        segmenter_path=str(tmp_path / "segmenter"),
    )
    frame = raw_frame()
    out = step.observation({FRONT: frame[FRONT][None]})
    with torch.no_grad():
        expected = class_colour_image(model(frame[FRONT][None]).softmax(1))
    assert out[f"{FRONT}_segmentation_rgb"].shape == (1, *IMAGE_SHAPE)
    torch.testing.assert_close(out[f"{FRONT}_segmentation_rgb"], expected)
    torch.testing.assert_close(out[FRONT], frame[FRONT][None])


def test_rgb_dropout_greys_whole_cued_cameras_per_sample_in_training_only(vlm_dir):
    cued = {FRONT: FRONT_SCORES, WRIST: WRIST_SCORES}
    cfg = seg_config(
        vlm_dir,
        perception_source="ground_truth",
        segmentation_image="beside",
        rgb_dropout_prob=0.5,
        segmentation_feature_map=cued,
        segmentation_geometry_state_dim=26,
    )
    policy = SegVLAPolicy(cfg)
    batch = make_batch(vlm_dir, batch=64)
    batch[WRIST_SCORES] = batch[FRONT_SCORES]
    for camera in cued:
        batch[f"{camera}_segmentation_rgb"] = torch.rand(64, *IMAGE_SHAPE)
    policy.train()
    torch.manual_seed(0)
    images, _ = policy.prepare_images(batch)
    assert len(images) == 4
    for image in images[:2]:  # the cued RGB cameras: each sample all grey (0 in SigLIP's [-1, 1]) or untouched
        grey = (image == 0).flatten(1).all(1)
        assert 16 < int(grey.sum()) < 48
    assert not any((image == 0).flatten(1).all(1).any() for image in images[2:])  # drawn images are never dropped
    only_front = SegVLAPolicy(seg_config(vlm_dir, rgb_dropout_prob=0.5)).train()  # the wrist camera has no cues
    images, _ = only_front.prepare_images(make_batch(vlm_dir, batch=64))
    assert (images[0] == 0).flatten(1).all(1).any() and not (images[1] == 0).flatten(1).all(1).any()
    policy.eval()
    images, _ = policy.prepare_images(batch)
    assert not any((image == 0).flatten(1).all(1).any() for image in images)
