"""Checkpoints that travel: a checkpoint folder holds everything it needs to run (the segmenter's weights inside its
saved preprocessor), models it cannot hold are named by Hub id and checked when the policy is made, and each
policy's checkpoint, copied elsewhere with its original (and the segmenter folder it was trained with) deleted,
still runs through lerobot-eval."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch
from lerobot.processor import DataProcessorPipeline
from test_perception import IDS, KEYS, frames, save_tiny_depth_anything, save_tiny_segmenter
from test_seg_swap import rgb_checkpoint
from tiny_segdepth import save_checkpoint, tiny_config

from lerobot_policy_segdepth import SegDepthPolicy
from lerobot_policy_segdepth.perception import DepthAnythingStep, SegmenterStep
from so101_policy_common.pretrained import PretrainedModelMissingError, check_saved_pipeline

NOT_CACHED = "so101-tests/not-a-cached-model"  # a Hub id no cache here holds (HF_HUB_OFFLINE=1 in conftest)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """No network here: the Hub client's offline switch, read at import, set as HF_HUB_OFFLINE=1 would have set it."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def depth_dir(tmp_path_factory) -> Path:
    return save_tiny_depth_anything(tmp_path_factory.mktemp("depth"))


def models_checkpoint(root: Path, depth_dir: Path) -> Path:
    """A tiny segdepth checkpoint with perception_source=segmenter_depth_anything; the segmenter folder it was made
    from is deleted."""
    out = rgb_checkpoint(
        root,
        perception_source="segmenter_depth_anything",
        segmenter_path=str(save_tiny_segmenter(root / "segmenter")),
        depth_model=str(depth_dir),
        depth_input_size=28,
    )
    shutil.rmtree(root / "segmenter")
    return out


def step_entry(folder: Path, registry_name: str) -> dict:
    steps = json.loads((folder / "policy_preprocessor.json").read_text())["steps"]
    (entry,) = [s for s in steps if s.get("registry_name") == registry_name]
    return entry


def rewrite_step(folder: Path, registry_name: str, **config) -> None:
    path = folder / "policy_preprocessor.json"
    data = json.loads(path.read_text())
    for entry in data["steps"]:
        if entry.get("registry_name") == registry_name:
            entry["config"].update(config)
    path.write_text(json.dumps(data))


# ----- the segmenter inside the pipeline ----------------------------------------------------------------------------
def test_the_segmenter_travels_inside_the_saved_pipeline_and_acts_the_same(tmp_path):
    seg_dir = save_tiny_segmenter(tmp_path / "segmenter")
    step = SegmenterStep(image_keys=KEYS[:1], output_keys=IDS[:1], input_size=32, checkpoint=str(seg_dir))
    rgb = frames(2)
    expected = step({"observation": {KEYS[0]: rgb}})["observation"][IDS[0]]
    DataProcessorPipeline(steps=[step], name="pre").save_pretrained(tmp_path / "saved")
    shutil.rmtree(seg_dir)
    moved = shutil.copytree(tmp_path / "saved", tmp_path / "moved")
    shutil.rmtree(tmp_path / "saved")
    (entry,) = json.loads((moved / "pre.json").read_text())["steps"]
    assert entry["config"]["segmenter_config"]["num_classes"] == 6 and (moved / entry["state_file"]).is_file()
    loaded = DataProcessorPipeline.from_pretrained(moved, config_filename="pre.json")
    assert loaded.steps[0]._model is not None  # loaded with the pipeline, not at the first frame
    torch.testing.assert_close(loaded({KEYS[0]: rgb})[IDS[0]], expected)


def test_a_pipeline_saved_before_the_segmenter_travelled_still_loads_from_its_path(tmp_path):
    seg_dir = save_tiny_segmenter(tmp_path / "segmenter")
    step = SegmenterStep(image_keys=KEYS[:1], output_keys=IDS[:1], input_size=32, checkpoint=str(seg_dir))
    rgb = frames(1)
    expected = step({"observation": {KEYS[0]: rgb}})["observation"][IDS[0]]
    old = {k: v for k, v in step.get_config().items() if k != "segmenter_config"}  # what such a pipeline saved
    (tmp_path / "old").mkdir()
    (tmp_path / "old/pre.json").write_text(
        json.dumps({"name": "pre", "steps": [{"registry_name": "so101_segmenter", "config": old}]})
    )
    loaded = DataProcessorPipeline.from_pretrained(tmp_path / "old", config_filename="pre.json")
    torch.testing.assert_close(loaded({KEYS[0]: rgb})[IDS[0]], expected)
    loaded.save_pretrained(tmp_path / "resaved")  # saved again, it carries the weights
    shutil.rmtree(seg_dir)
    again = DataProcessorPipeline.from_pretrained(tmp_path / "resaved", config_filename="pre.json")
    torch.testing.assert_close(again({KEYS[0]: rgb})[IDS[0]], expected)
    # the old pipeline, its folder gone: the check a policy runs names the folder and the fix
    with pytest.raises(FileNotFoundError, match=r"saved before the segmenter travelled.*'.*segmenter'.*export_dir"):
        check_saved_pipeline(tmp_path / "old", "pre.json")
    with pytest.raises(ValueError, match=r"no segmenter config: .*segmenter/config\.json does not exist"):
        DataProcessorPipeline.from_pretrained(tmp_path / "old", config_filename="pre.json")


# ----- models named by Hub id ---------------------------------------------------------------------------------------
def test_a_depth_model_that_is_not_cached_fails_when_the_step_is_built_naming_it():
    with pytest.raises(PretrainedModelMissingError) as error:
        DepthAnythingStep(image_keys=KEYS[:1], output_keys=["d"], input_size=28, model_name_or_path=NOT_CACHED)
    message = str(error.value)
    assert f"'{NOT_CACHED}'" in message and f"hf download {NOT_CACHED}" in message and "HF_HUB_OFFLINE" in message
    assert "--policy.depth_model" in message


def test_the_policy_checks_its_processors_models_before_its_weights_load(tmp_path, depth_dir, monkeypatch):
    ckpt = models_checkpoint(tmp_path / "a", depth_dir)
    loads = []
    original = SegDepthPolicy.__init__
    monkeypatch.setattr(SegDepthPolicy, "__init__", lambda self, *a, **k: loads.append(1) or original(self, *a, **k))
    SegDepthPolicy.from_pretrained(ckpt)  # everything it needs is inside it (and the depth folder)
    assert loads == [1]

    no_depth = shutil.copytree(ckpt, tmp_path / "no_depth")
    rewrite_step(no_depth, "so101_depth_anything", model_name_or_path=NOT_CACHED)
    with pytest.raises(PretrainedModelMissingError, match=rf"'{NOT_CACHED}'.*hf download {NOT_CACHED}"):
        SegDepthPolicy.from_pretrained(no_depth)

    no_state = shutil.copytree(ckpt, tmp_path / "no_state")
    (no_state / step_entry(no_state, "so101_segmenter")["state_file"]).unlink()
    with pytest.raises(FileNotFoundError, match=r"keeps the segmenter's weights in .*so101_segmenter\.safetensors"):
        SegDepthPolicy.from_pretrained(no_state)
    assert loads == [1], "a checkpoint that cannot run loaded its weights anyway"


def test_sim2real_export_carries_the_segmenter(tmp_path, depth_dir):
    from lerobot_policy_segdepth.commands.sim2real_check import export_models_checkpoint

    # what perception_source=segmenter_depth_anything reads, trained on the twin's ground truth
    gt = save_checkpoint(tiny_config((40, 48), rgb=True), tmp_path / "gt")
    seg_dir = save_tiny_segmenter(tmp_path / "segmenter")
    out = export_models_checkpoint(
        gt, tmp_path / "export", segmenter_path=str(seg_dir), depth_model=str(depth_dir), depth_input_size=28
    )
    shutil.rmtree(seg_dir)
    saved = json.loads((out / "policy_preprocessor.json").read_text())["steps"]
    states = sorted(p.name for p in out.glob("policy_preprocessor*.safetensors"))
    assert states == sorted(entry["state_file"] for entry in saved if "state_file" in entry)  # no stale files
    assert any("so101_segmenter" in name for name in states)
    check_saved_pipeline(out)
    policy = SegDepthPolicy.from_pretrained(out)
    assert policy.config.perception_source == "segmenter_depth_anything"


# ----- each policy's checkpoint, copied and its original deleted, through lerobot-eval ------------------------------
def travel_cases() -> list:
    from test_policy_contract import CASES

    by_type = {case.type: case for case in CASES}
    segvla_tiny = {**by_type["segvla"].tiny, "perception_source": "segmenter"}
    segdepth_models = {
        **by_type["segdepth"].tiny,
        "perception_source": "segmenter_depth_anything",
        "segmenter_input_size": 32,
        "depth_input_size": 28,
    }
    return [
        pytest.param(by_type["segdepth"], id="segdepth"),
        pytest.param(dataclasses.replace(by_type["segdepth"], tiny=segdepth_models), id="segdepth_models"),
        pytest.param(dataclasses.replace(by_type["segvla"], tiny=segvla_tiny), id="segvla_segmenter"),
        pytest.param(by_type["imf"], id="imf"),
        pytest.param(by_type["hlrp"], id="hlrp"),
    ]


@pytest.mark.slow
@pytest.mark.parametrize("case", travel_cases())
def test_a_copied_checkpoint_runs_through_lerobot_eval_with_its_original_deleted(case, gt_dataset, tmp_path, depth_dir):
    from clitools import eval_in_twin
    from conftest import GT_SIZE
    from test_policy_contract import policy_and_processors

    tiny = dict(case.tiny)
    segmenter = tmp_path / "segmenter"
    if tiny.get("perception_source") == "segmenter_depth_anything":
        tiny.update(segmenter_path=str(save_tiny_segmenter(segmenter)), depth_model=str(depth_dir))
    if tiny.get("perception_source") == "segmenter":
        tiny["segmentation_segmenter_path"] = str(save_tiny_segmenter(segmenter))
    _, _, policy, pre, post = policy_and_processors(dataclasses.replace(case, tiny=tiny), gt_dataset)
    original = tmp_path / "trained" / "pretrained_model"
    for part in (policy, pre, post):
        part.save_pretrained(original)
    copy = shutil.copytree(original, tmp_path / "elsewhere" / "pretrained_model")
    shutil.rmtree(tmp_path / "trained")
    shutil.rmtree(segmenter, ignore_errors=True)
    overall = eval_in_twin(copy, tmp_path / "eval", GT_SIZE, tmp_path, flags=case.env_flags)
    assert overall["n_episodes"] == 1 and 0.0 <= overall["pc_success"] <= 100.0


def test_lerobot_rollout_refuses_a_checkpoint_missing_a_model_before_the_robot_is_made(
    tmp_path, depth_dir, monkeypatch
):
    """lerobot-rollout loads the policy (step 1), makes and connects the robot (step 3) and only then builds the
    processors (step 6): the policy's from_pretrained must find the missing model, so no bus is ever opened."""
    import lerobot.robots.so_follower.so_follower as so_follower
    from test_real_arm_rollout import FakeFeetechBus, run_rollout

    FakeFeetechBus.instances.clear()
    monkeypatch.setattr(so_follower, "FeetechMotorsBus", FakeFeetechBus)
    ckpt = models_checkpoint(tmp_path / "a", depth_dir)
    rewrite_step(ckpt, "so101_depth_anything", model_name_or_path=NOT_CACHED)
    with pytest.raises(PretrainedModelMissingError, match=rf"'{NOT_CACHED}'.*hf download {NOT_CACHED}"):
        run_rollout(monkeypatch, ckpt, tmp_path / "no_frames.npy")
    assert FakeFeetechBus.instances == [], "the robot was made (and its bus opened) before the check"
