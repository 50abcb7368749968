"""SegDepth on a precomputed copy (`segdepth-precompute`): the same tensors as the raw dataset, bad input, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from clitools import eval_in_twin, run_cli, short_train_flags
from conftest import GT_SIZE
from lerobot.configs import FeatureType, PolicyFeature
from lerobot.datasets import LeRobotDataset, LeRobotDatasetMetadata
from lerobot.datasets.factory import resolve_delta_timestamps
from lerobot.policies.factory import make_policy, make_pre_post_processors
from lerobot.processor import PolicyProcessorPipeline
from lerobot.utils.import_utils import register_third_party_plugins

from lerobot_policy_segdepth import SegDepthConfig, SegDepthPolicy
from lerobot_policy_segdepth.commands import precompute as segdepth_precompute
from lerobot_policy_segdepth.commands.precompute import SegDepthPrecomputeConfig, precompute_segdepth
from lerobot_policy_segdepth.observation_steps import StackChannelsStep, pack_uint8, packed_length, unpack_uint8
from so101_policy_common.precompute import SourceDatasetConfig, print_summary
from so101_run_infra.cli import OutputRefused

register_third_party_plugins()

SEGDEPTH = "observation.segdepth"
TINY = {"image_size": 32, "feature_dim": 8, "hidden_dim": 16, "encoder_channels": 8}
REPO = "local/twin_demo"


def config(**overrides) -> SegDepthConfig:
    return SegDepthConfig(device="cpu", push_to_hub=False, **{**TINY, **overrides})


def precompute(gt_dataset, output_root, **fields) -> dict:
    policy = config(**fields.pop("policy", {}))
    cfg = SegDepthPrecomputeConfig(
        dataset=SourceDatasetConfig(repo_id=REPO, root=str(gt_dataset)),
        policy=policy,
        output_dir=str(output_root),
        output_repo_id="local/twin_demo_segdepth",
        **fields,
    )
    return precompute_segdepth(cfg)


@pytest.fixture(scope="module")
def precomputed(gt_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("precomputed") / "segdepth"
    precompute(gt_dataset, root, batch_size=64)
    return root


@pytest.fixture(scope="module")
def stacked(gt_dataset, tmp_path_factory):
    """The copy with each row holding its frame stack (segdepth-precompute --stack_frames=true)."""
    root = tmp_path_factory.mktemp("stacked") / "segdepth"
    precompute(gt_dataset, root, batch_size=16, stack_frames=True)  # batches smaller than episodes: windows span them
    return root


def stacked_batch(ds: LeRobotDataset, indices: list[int]) -> dict:
    items = [ds[i] for i in indices]
    batch = {k: torch.stack([it[k] for it in items]) for k, v in items[0].items() if isinstance(v, torch.Tensor)}
    batch["task"] = [it["task"] for it in items]
    return batch


def test_the_copy_holds_the_uint8_observation_and_no_video(gt_dataset, precomputed):
    copy = LeRobotDatasetMetadata("local/twin_demo_segdepth", root=precomputed)
    feature = copy.features[SEGDEPTH]
    # the uint8 (2, 32, 32) observation's bytes as int64 words (LeRobot reads array columns element by element)
    assert feature["dtype"] == "int64" and tuple(feature["shape"]) == (packed_length(2, 32),) == (256,)
    info = feature["info"]
    assert {k: info[k] for k in ("camera", "perception_source", "image_size", "num_classes")} == {
        "camera": "wrist",
        "perception_source": "ground_truth",
        "image_size": 32,
        "num_classes": 6,
    }
    assert info["source_root"] == str(gt_dataset.resolve())
    assert info["raw_features"]["observation.images.wrist_depth"] == [1, *GT_SIZE]
    assert copy.video_keys == [] and copy.camera_keys == []
    manifest = json.loads((precomputed / "meta" / "precompute.json").read_text())
    assert (
        manifest["source_root"] == str(gt_dataset.resolve())
        and "observation.images.front" in manifest["removed_features"]
    )
    assert not (precomputed.parent / ".segdepth.partial").exists()
    # the source is only read
    assert SEGDEPTH not in LeRobotDatasetMetadata(REPO, root=gt_dataset).features
    row = LeRobotDataset("local/twin_demo_segdepth", root=precomputed)[0][SEGDEPTH]
    assert row.dtype == torch.int64 and row.shape == (256,)
    ids, disparity = unpack_uint8(row, channels=2)
    assert ids.max() < 6 and disparity.max() > 0


def test_raw_and_precomputed_datasets_give_identical_training_tensors(gt_dataset, precomputed):
    """One preprocessor (made for the copy, as lerobot-train makes it), stacked batches of 3 frames."""
    copy_meta = LeRobotDatasetMetadata("local/twin_demo_segdepth", root=precomputed)
    cfg = config()
    policy = make_policy(cfg, ds_meta=copy_meta)  # validate_features accepts observation.segdepth ...
    # ... and declares the raw keys the saved preprocessor runs on at inference, as a raw-trained checkpoint does
    raw_cfg = config()
    make_policy(raw_cfg, ds_meta=LeRobotDatasetMetadata(REPO, root=gt_dataset))
    keys = ("observation.state", "observation.images.wrist_depth", "observation.images.wrist_segmentation")
    assert cfg.input_features == {k: raw_cfg.input_features[k] for k in keys}
    assert cfg.input_features["observation.images.wrist_depth"] == PolicyFeature(FeatureType.VISUAL, (1, *GT_SIZE))
    pre, _ = make_pre_post_processors(cfg, dataset_stats=copy_meta.stats)

    raw_meta = LeRobotDatasetMetadata(REPO, root=gt_dataset)
    raw = LeRobotDataset(REPO, root=gt_dataset, delta_timestamps=resolve_delta_timestamps(cfg, raw_meta))
    delta = resolve_delta_timestamps(cfg, copy_meta)
    copy = LeRobotDataset("local/twin_demo_segdepth", root=precomputed, delta_timestamps=delta)
    start = int(copy_meta.episodes["dataset_from_index"][1])
    indices = [0, 1, 2, 40, start, start + 1, len(copy) - 1]  # episode starts: padded with the first frame
    from_raw = pre(stacked_batch(raw, indices))
    from_copy = pre(stacked_batch(copy, indices))
    assert from_raw[SEGDEPTH].shape == (len(indices), 3, 2, 32, 32)
    assert from_copy[SEGDEPTH].dtype == from_raw[SEGDEPTH].dtype == torch.float32
    assert torch.equal(from_raw[SEGDEPTH], from_copy[SEGDEPTH])
    for key in ("observation.state", "action"):
        assert torch.equal(from_raw[key], from_copy[key]), key
    assert torch.equal(from_raw[SEGDEPTH][0, 0], from_raw[SEGDEPTH][0, 2])  # frame 0: three copies
    # disparity is on the uint8 grid on the live path too, and not constant
    disparity = from_raw[SEGDEPTH][:, :, 1]
    assert torch.equal(disparity, disparity.round()) and disparity.unique().numel() > 50
    # the policy trains on the copy's batch
    loss, _ = policy.forward(from_copy)
    loss.backward()

    # inference on raw keys (lerobot-eval, the real arm) gives what the copy stores for that frame
    single = LeRobotDataset(REPO, root=gt_dataset)[40]
    frame = {k: v for k, v in single.items() if k.startswith("observation.")} | {"task": single["task"]}
    stored = LeRobotDataset("local/twin_demo_segdepth", root=precomputed)[40][SEGDEPTH]
    assert torch.equal(pre(frame)[SEGDEPTH][0], unpack_uint8(stored, 2).float())


def test_a_stacked_copy_gives_the_delta_window_in_one_row(gt_dataset, precomputed, stacked):
    """--stack_frames: row t holds frames t-2..t (episode starts padded like LeRobot's delta window), and a policy
    with stacked_frames asks LeRobot for no window yet gets the same training tensors as on the per-frame copy."""
    meta = LeRobotDatasetMetadata("local/twin_demo_segdepth", root=stacked)
    feature = meta.features[SEGDEPTH]
    assert feature["dtype"] == "int64" and tuple(feature["shape"]) == (3, 256)
    assert feature["info"]["frame_stack"] == 3 and feature["info"]["layout"].startswith("3 frames, oldest first")
    cfg = config(stacked_frames=True)
    make_policy(cfg, ds_meta=meta)
    assert resolve_delta_timestamps(cfg, meta) is None  # one row per sample
    pre, _ = make_pre_post_processors(cfg, dataset_stats=meta.stats)

    per_frame_cfg = config()
    per_frame_meta = LeRobotDatasetMetadata("local/twin_demo_segdepth", root=precomputed)
    make_policy(per_frame_cfg, ds_meta=per_frame_meta)
    assert cfg.input_features == per_frame_cfg.input_features  # the checkpoints declare the same raw keys
    per_frame_pre, _ = make_pre_post_processors(per_frame_cfg, dataset_stats=per_frame_meta.stats)
    windows = LeRobotDataset(
        "local/twin_demo_segdepth",
        root=precomputed,
        delta_timestamps=resolve_delta_timestamps(per_frame_cfg, per_frame_meta),
    )
    rows = LeRobotDataset("local/twin_demo_segdepth", root=stacked)
    start = int(meta.episodes["dataset_from_index"][1])
    indices = [0, 1, 2, 17, 40, start - 1, start, start + 1, len(rows) - 1]
    expected = per_frame_pre(stacked_batch(windows, indices))
    got = pre(stacked_batch(rows, indices))
    assert got[SEGDEPTH].shape == (len(indices), 3, 2, 32, 32)
    assert torch.equal(got[SEGDEPTH], expected[SEGDEPTH])
    assert torch.equal(got["observation.state"], expected["observation.state"][:, -1])  # the policy's newest state
    assert torch.equal(got["action"], expected["action"])
    assert torch.equal(got[SEGDEPTH][0, 0], got[SEGDEPTH][0, 2]) and not torch.equal(
        got[SEGDEPTH][3, 0], got[SEGDEPTH][3, 2]
    )
    policy = SegDepthPolicy(cfg)
    loss, _ = policy.forward(got)
    loss.backward()


def test_the_frame_layout_of_a_copy_must_match_the_policy(gt_dataset, precomputed, stacked):
    stacked_meta = LeRobotDatasetMetadata("local/twin_demo_segdepth", root=stacked)
    with pytest.raises(ValueError, match=r"holds 3 frames per row.*--policy\.stacked_frames=true"):
        make_policy(config(), ds_meta=stacked_meta)
    with pytest.raises(ValueError, match=r"stacks of 3 frames.*--policy\.frame_stack=2.*--policy\.frame_stack=3"):
        make_policy(config(stacked_frames=True, frame_stack=2), ds_meta=stacked_meta)
    per_frame_meta = LeRobotDatasetMetadata("local/twin_demo_segdepth", root=precomputed)
    with pytest.raises(ValueError, match=r"one frame per row.*--stack_frames=true.*--policy\.stacked_frames=false"):
        make_policy(config(stacked_frames=True), ds_meta=per_frame_meta)
    with pytest.raises(ValueError, match=r"stacked_frames=true trains on a copy.*no 'observation\.segdepth'"):
        make_policy(config(stacked_frames=True), ds_meta=LeRobotDatasetMetadata(REPO, root=gt_dataset))


def test_a_stacked_copy_can_hold_plain_uint8_frames(gt_dataset, stacked, tmp_path):
    root = tmp_path / "plain"
    precompute(gt_dataset, root, batch_size=64, stack_frames=True, pack=False)
    meta = LeRobotDatasetMetadata("local/twin_demo_segdepth", root=root)
    assert meta.features[SEGDEPTH]["dtype"] == "uint8" and tuple(meta.features[SEGDEPTH]["shape"]) == (3, 2, 32, 32)
    make_policy(config(stacked_frames=True), ds_meta=meta)
    plain = LeRobotDataset("local/twin_demo_segdepth", root=root)
    packed = LeRobotDataset("local/twin_demo_segdepth", root=stacked)
    for i in (0, 1, 30):
        assert torch.equal(plain[i][SEGDEPTH].to(torch.uint8), unpack_uint8(packed[i][SEGDEPTH], 2))


def test_a_copy_made_for_another_config_is_refused_before_training(precomputed):
    meta = LeRobotDatasetMetadata("local/twin_demo_segdepth", root=precomputed)
    with pytest.raises(ValueError, match=r"observation\.segdepth.*int64 \[256\].*image_size=32.*image_size=40"):
        make_policy(config(image_size=40), ds_meta=meta)
    with pytest.raises(ValueError, match=r"num_classes=6.*expects.*num_classes=8.*--policy\.num_classes=8"):
        make_policy(config(num_classes=8), ds_meta=meta)
    with pytest.raises(ValueError, match=r"camera=wrist.*--policy\.camera=front"):
        make_policy(config(camera="front"), ds_meta=meta)
    # without the dataset's info (a policy built from features alone) the shape still is checked
    features = {
        SEGDEPTH: PolicyFeature(FeatureType.STATE, (2, 64, 64)),
        "observation.state": PolicyFeature(FeatureType.STATE, (6,)),
    }
    with pytest.raises(ValueError, match=r"observation\.segdepth.*\[2, 64, 64\].*image_size=32 expects \(2, 32, 32\)"):
        SegDepthPolicy(config(input_features=features, output_features={}))
    # class ids beyond the config's count are named at the first batch
    features = {
        SEGDEPTH: PolicyFeature(FeatureType.VISUAL, (2, 32, 32)),
        "observation.state": PolicyFeature(FeatureType.STATE, (6,)),
    }
    policy = SegDepthPolicy(config(input_features=features))
    bad = torch.zeros(1, 3, 2, 32, 32)
    bad[0, 0, 0, 1, 1] = 6
    with pytest.raises(ValueError, match=r"observation\.segdepth.*\[0, 5\].*num_classes=6"):
        policy.forward({SEGDEPTH: bad, "observation.state": torch.zeros(1, 3, 6), "action": torch.zeros(1, 6)})


def test_precompute_over_its_finished_copy_does_nothing_and_refuses_others(gt_dataset, precomputed, tmp_path, capsys):
    """Run again as it was: the copy is there, made with these settings, so it says so and computes nothing.
    Another setting, or a folder it did not write: refused, naming the folder, the setting and the flag."""
    before = sorted((p.relative_to(precomputed), p.stat().st_mtime_ns) for p in precomputed.rglob("*"))
    summary = precompute(gt_dataset, precomputed, batch_size=7)  # the batch size does not change the values
    assert summary["already_made"] and summary["frames_computed_this_run"] == 0
    print_summary(summary, "segdepth", "--policy.camera=wrist")  # the command's closing words: none over its copy
    said = f"{precomputed}: already made with these settings ({summary['frames']} frames); nothing to do\n"
    assert capsys.readouterr().out == said
    assert sorted((p.relative_to(precomputed), p.stat().st_mtime_ns) for p in precomputed.rglob("*")) == before
    with pytest.raises(OutputRefused, match=r"made with other settings \(.*image_size.*--output_dir"):
        precompute(gt_dataset, precomputed, policy={"image_size": 24})
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(OutputRefused, match=r"is not a copy this command finished.*another --output_dir"):
        precompute(gt_dataset, stranger)
    assert [p.name for p in stranger.iterdir()] == ["notes.txt"] and not (tmp_path / ".stranger.partial").exists()


def test_precompute_killed_resumes(gt_dataset, precomputed, tmp_path, monkeypatch):

    out = tmp_path / "again"
    real, calls = segdepth_precompute.uint8_observation, []

    def interrupted_after_two_batches(segdepth, cfg):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(len(segdepth))
        return real(segdepth, cfg)

    monkeypatch.setattr(segdepth_precompute, "uint8_observation", interrupted_after_two_batches)
    with pytest.raises(KeyboardInterrupt):
        precompute(gt_dataset, out, batch_size=16, keep_videos=True, pack=False)
    assert len(list((tmp_path / ".again.partial" / "shards").glob("shard_*.safetensors"))) == 2
    assert not out.exists()
    with pytest.raises(ValueError, match=r"other settings \(\['observation', 'observation_steps'\]\).*--restart"):
        precompute(gt_dataset, out, batch_size=16, keep_videos=True, pack=False, policy={"image_size": 24})

    monkeypatch.setattr(segdepth_precompute, "uint8_observation", real)
    summary = precompute(gt_dataset, out, batch_size=40, keep_videos=True, pack=False)  # batch size may change
    total = LeRobotDatasetMetadata(REPO, root=gt_dataset).total_frames
    assert summary["frames_computed_this_run"] == total - 32 and summary["removed_features"] == []
    assert not (tmp_path / ".again.partial").exists()
    resumed = LeRobotDataset("local/twin_demo_segdepth", root=out)
    first = LeRobotDataset("local/twin_demo_segdepth", root=precomputed)
    assert resumed.meta.features[SEGDEPTH]["dtype"] == "uint8"  # --pack=false: the plain array
    plain, packed = torch.stack(list(resumed.hf_dataset[SEGDEPTH])), torch.stack(list(first.hf_dataset[SEGDEPTH]))
    assert plain.shape == (total, 2, 32, 32)
    assert torch.equal(plain.to(torch.uint8), unpack_uint8(packed, 2)), "a resumed run stores what one run stores"
    # --keep_videos=true kept the cameras; a policy still trains on the stored observation beside them
    assert "observation.images.wrist_depth" in resumed.meta.video_keys
    make_policy(config(), ds_meta=resumed.meta)


def test_live_steps_quantize_and_skip_a_precomputed_observation():
    parts = {"a": torch.tensor([[[[1.0, 2.0]]]]), "b": torch.tensor([[[[12.4, 255.6]]]])}
    step = StackChannelsStep(keys=["a", "b"], output_key=SEGDEPTH, quantize=True, skip_if_present=SEGDEPTH)
    out = step.observation(dict(parts))
    assert out[SEGDEPTH].tolist() == [[[[1.0, 2.0]], [[12.0, 255.0]]]]
    stored = torch.tensor([[[[3, 4]], [[12, 255]]]], dtype=torch.uint8)
    out = step.observation({SEGDEPTH: stored})
    assert out[SEGDEPTH].dtype == torch.float32 and torch.equal(out[SEGDEPTH], stored.float())
    square = torch.randint(0, 256, (1, 2, 4, 4), dtype=torch.uint8)
    out = step.observation({SEGDEPTH: pack_uint8(square)})
    assert out[SEGDEPTH].dtype == torch.float32 and torch.equal(out[SEGDEPTH], square.float())
    unquantized = StackChannelsStep(keys=["a", "b"], output_key=SEGDEPTH).observation(dict(parts))
    assert unquantized[SEGDEPTH][0, 1, 0, 0] == pytest.approx(12.4)
    for side in (5, 32, 84):  # odd sides are zero-padded to whole words
        image = torch.randint(0, 256, (4, 3, 2, side, side), dtype=torch.uint8)
        packed = pack_uint8(image)
        assert packed.shape == (4, 3, packed_length(2, side)) and torch.equal(unpack_uint8(packed, 2), image)


def test_a_preprocessor_saved_before_skip_and_quantize_still_loads(gt_dataset, tmp_path):
    meta = LeRobotDatasetMetadata(REPO, root=gt_dataset)
    cfg = config()
    make_policy(cfg, ds_meta=meta)
    pre, _ = make_pre_post_processors(cfg, dataset_stats=meta.stats)
    pre.save_pretrained(tmp_path)
    path = tmp_path / "policy_preprocessor.json"
    saved = json.loads(path.read_text())
    for step in saved["steps"]:
        for key in ("skip_if_present", "quantize"):
            step.get("config", {}).pop(key, None)
    path.write_text(json.dumps(saved))
    old = PolicyProcessorPipeline.from_pretrained(tmp_path, config_filename="policy_preprocessor.json")
    stack = next(s for s in old.steps if isinstance(s, StackChannelsStep))
    assert stack.quantize is False and stack.skip_if_present is None
    item = LeRobotDataset(REPO, root=gt_dataset)[40]
    frame = {k: v for k, v in item.items() if k.startswith("observation.")} | {"task": item["task"]}
    disparity = old(dict(frame))[SEGDEPTH][:, 1]
    assert not torch.equal(disparity, disparity.round())  # the old float disparity: the old behaviour
    torch.testing.assert_close(disparity.round(), pre(dict(frame))[SEGDEPTH][:, 1])


@pytest.mark.slow
@pytest.mark.parametrize("stacked", [False, True], ids=["per_frame", "stacked"])
def test_lerobot_train_on_the_precomputed_copy_and_eval_in_the_twin(gt_dataset, tmp_path, stacked):
    copy = tmp_path / "copy"
    tiny = [f"--policy.{k}={v}" for k, v in TINY.items()] + [f"--policy.stacked_frames={str(stacked).lower()}"]
    run_cli(
        [
            "segdepth-precompute",
            f"--dataset.repo_id={REPO}",
            f"--dataset.root={gt_dataset}",
            f"--output_dir={copy}",
            "--output_repo_id=local/twin_demo_segdepth",
            "--policy.image_size=32",
            f"--stack_frames={str(stacked).lower()}",
        ],
        cwd=tmp_path,
    )
    run_cli(
        [
            "lerobot-train",
            "--policy.type=segdepth",
            *tiny,
            "--dataset.repo_id=local/twin_demo_segdepth",
            f"--dataset.root={copy}",
            *short_train_flags(tmp_path / "train", steps=3, batch_size=8),
        ],
        cwd=tmp_path,
    )
    ckpt = tmp_path / "train" / "checkpoints" / "last" / "pretrained_model"
    saved = json.loads((ckpt / "config.json").read_text())
    assert SEGDEPTH not in saved["input_features"] and "observation.images.wrist_depth" in saved["input_features"]
    flags = ("--env.depth=true", "--env.segmentation=true", "--eval.use_async_envs=false")
    overall = eval_in_twin(ckpt, tmp_path / "eval", GT_SIZE, tmp_path, flags=flags)
    assert overall["n_episodes"] == 1 and np.isfinite(overall["avg_sum_reward"])
