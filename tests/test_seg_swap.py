"""`so101-seg-swap`: a trained SegDepth checkpoint given another segmenter (one adapted to a user's scene) without
retraining: the copy's preprocessor computes exactly what the new segmenter computes, records which it reads with
its sha256, and loads where neither segmenter folder exists; refusals name what is wrong; a re-run says so."""

import json
import shutil
from pathlib import Path

import torch
from clitools import run_cli
from lerobot.processor import PolicyProcessorPipeline
from test_perception import frames, save_tiny_segmenter
from tiny_segdepth import WRIST, save_checkpoint, tiny_config

from lerobot_policy_segdepth.perception import SegmenterStep
from so101_segmenter.model import EfficientViTFPN, SegmenterConfig, load_segmenter, save_segmenter
from so101_segmenter.shipped import sha256

KEY = WRIST


def save_tiny_depth_segmenter(folder: Path, seed: int) -> Path:
    torch.manual_seed(seed)
    model = EfficientViTFPN(SegmenterConfig(pretrained=False, fpn_channels=8, depth_head=True))
    return save_segmenter(model.eval(), folder)


def rgb_checkpoint(root: Path, **perception) -> Path:
    """A tiny segdepth checkpoint from RGB alone, saved as lerobot-train saves it; `perception`: its
    perception_source and models."""
    cfg = tiny_config((40, 48), rgb=True, ground_truth=False, segmenter_input_size=32, **perception)
    return save_checkpoint(cfg, root / "pretrained_model", state_std=50.0)


def checkpoint(root: Path, segmenter: Path) -> Path:
    """A tiny segdepth checkpoint from RGB alone (perception_source=segmenter_depth)."""
    return rgb_checkpoint(root, perception_source="segmenter_depth", segmenter_path=str(segmenter))


def segmenter_of(folder: Path) -> SegmenterStep:
    pre = PolicyProcessorPipeline.from_pretrained(folder, config_filename="policy_preprocessor.json")
    (step,) = [s for s in pre.steps if isinstance(s, SegmenterStep)]
    return step


def swap(policy: Path, segmenter: Path, out: Path, check: bool = True):
    return run_cli(["so101-seg-swap", f"--policy.path={policy}", f"--segmenter_path={segmenter}",
                    f"--output_dir={out}"], cwd=out.parent, check=check)  # fmt: skip


def test_the_copy_computes_what_the_new_segmenter_computes_and_records_it(tmp_path):
    old, new = (save_tiny_depth_segmenter(tmp_path / name, seed) for name, seed in (("old", 0), ("adapted", 1)))
    policy = checkpoint(tmp_path / "run", old)
    assert segmenter_of(policy).segmenter_source == {"path": str(old), "sha256": sha256(old / "model.safetensors")}
    out = tmp_path / "swapped"
    said = swap(policy, new, out).stdout
    assert "1 step(s) now read" in said
    kept = {p.name: p.read_bytes() for p in policy.iterdir()}
    shutil.rmtree(old)
    moved = shutil.move(str(new), tmp_path / "gone")  # the copy carries the weights: no folder needed
    step = segmenter_of(out)
    assert step.segmenter_source == {"path": str(new), "sha256": sha256(Path(moved) / "model.safetensors")}
    rgb = frames(2)
    observed = step({"observation": {KEY: rgb}})["observation"]
    reference = SegmenterStep(image_keys=[KEY], output_keys=step.output_keys, disparity_keys=step.disparity_keys,
                              output_size=step.output_size, input_size=32, checkpoint=str(moved))  # fmt: skip
    expected = reference({"observation": {KEY: rgb}})["observation"]
    for key in (*step.output_keys, *step.disparity_keys):
        torch.testing.assert_close(observed[key], expected[key])
    assert json.loads((out / "config.json").read_text())["segmenter_path"] == str(new)
    # the policy's weights and the postprocessor are copied unchanged; the original is left as it was
    for name in ("model.safetensors", "policy_postprocessor.json"):
        assert (out / name).read_bytes() == kept[name]
    assert {p.name: p.read_bytes() for p in policy.iterdir()} == kept
    shutil.move(moved, new)
    assert "already this checkpoint" in swap(policy, new, out).stdout


def test_refusals(tmp_path):
    with_depth = save_tiny_depth_segmenter(tmp_path / "old", 0)
    policy = checkpoint(tmp_path / "run", with_depth)
    no_depth = save_tiny_segmenter(tmp_path / "no_depth")
    refused = swap(policy, no_depth, tmp_path / "a", check=False)
    assert refused.returncode != 0 and "has no depth head" in refused.stderr and not (tmp_path / "a").exists()
    other = save_segmenter(EfficientViTFPN(SegmenterConfig(pretrained=False, fpn_channels=8, num_classes=5,
                                                           depth_head=True)), tmp_path / "five")  # fmt: skip
    refused = swap(policy, other, tmp_path / "b", check=False)
    assert refused.returncode != 0 and "5 classes" in refused.stderr
    (tmp_path / "taken").mkdir()
    refused = swap(policy, with_depth, tmp_path / "taken", check=False)
    assert refused.returncode != 0 and "choose a new folder" in refused.stderr
    assert load_segmenter(with_depth).has_depth  # nothing it read was changed
