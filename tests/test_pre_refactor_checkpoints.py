"""Checkpoints saved before issue 29 moved the processor steps into the policy plugins still load and act the same.

`tests/fixtures/pre_refactor/` was written by `make_fixtures.py` on main at b1e03a8, when every step lived in
`so101_semantic_processors`; a saved pipeline names its steps by registry name, so the moved steps must keep them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lerobot.configs import PreTrainedConfig
from lerobot.policies.factory import make_policy
from lerobot.processor import PolicyProcessorPipeline
from lerobot.processor.converters import policy_action_to_transition, transition_to_policy_action
from lerobot.utils.import_utils import register_third_party_plugins
from safetensors.torch import load_file

from so101_devtools.tiny_models import tiny_smolvlm_dir

FIXTURES = Path(__file__).parent / "fixtures" / "pre_refactor"
PLACEHOLDER = "TINY_SMOLVLM"


def _checkpoint(name: str, tmp_path: Path) -> Path:
    """A copy of the fixture with the tiny SmolVLM's folder on this machine in place of the placeholder."""
    folder = shutil.copytree(FIXTURES / name, tmp_path / name)
    for path in folder.glob("*.json"):
        path.write_text(path.read_text().replace(PLACEHOLDER, str(tiny_smolvlm_dir())))
    return folder


def _dataset_meta(cfg) -> SimpleNamespace:
    """What `make_policy` reads from a dataset's metadata, taken from the checkpoint's own features."""
    features = {k: {"dtype": "float32", "shape": list(f.shape), "names": None} for k, f in cfg.input_features.items()}
    features["action"] = {"dtype": "float32", "shape": list(cfg.output_features["action"].shape), "names": None}
    return SimpleNamespace(features=features, stats={})


@pytest.mark.parametrize("name", ["segvla", "segdepth"])
def test_a_checkpoint_saved_before_the_move_loads_and_acts_the_same(name, tmp_path):
    register_third_party_plugins()
    folder = _checkpoint(name, tmp_path)
    cfg = PreTrainedConfig.from_pretrained(folder)
    cfg.pretrained_path = folder
    policy = make_policy(cfg, ds_meta=_dataset_meta(cfg)).eval()
    pre = PolicyProcessorPipeline.from_pretrained(folder, config_filename="policy_preprocessor.json")
    post = PolicyProcessorPipeline.from_pretrained(
        folder,
        config_filename="policy_postprocessor.json",
        to_transition=policy_action_to_transition,
        to_output=transition_to_policy_action,
    )
    expected = load_file(folder / "expected.safetensors")
    action, noise = expected.pop("action"), expected.pop("noise", None)
    batch = pre(expected | {"task": "pick up the red cube"})
    with torch.no_grad():
        got = post(policy.select_action(batch) if noise is None else policy.select_action(batch, noise=noise))
    # same machine, same code path: equal to the last bit is expected, a tolerance only covers kernel choice
    torch.testing.assert_close(got, action, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "pipeline"),
    [("segvla", "policy_preprocessor"), ("segdepth", "policy_preprocessor"), ("segdepth", "policy_postprocessor")],
)
def test_the_suite_steps_save_the_config_they_saved_before(name, pipeline, tmp_path):
    """Each of the suite's steps, loaded from a pre-refactor pipeline, saves the same config again (keys in order)."""
    register_third_party_plugins()
    folder = _checkpoint(name, tmp_path)
    saved = json.loads((folder / f"{pipeline}.json").read_text())["steps"]
    loaded = PolicyProcessorPipeline.from_pretrained(folder, config_filename=f"{pipeline}.json")
    ours = [
        (entry, step)
        for entry, step in zip(saved, loaded.steps, strict=True)
        if entry.get("registry_name", "").startswith(("so101_", "segvla_", "segdepth_"))
    ]
    assert ours, f"{name}/{pipeline} holds none of the suite's steps"
    for entry, step in ours:
        assert json.dumps(step.get_config()) == json.dumps(entry["config"]), entry["registry_name"]


@pytest.mark.parametrize(
    ("name", "old", "new", "flag"),
    [
        # SegVLA's saved the field as segmentation_source, with today's values
        ("segvla", {"segmentation_source": "ground_truth"}, "ground_truth", "segmenter"),
        # SegDepth's as source, and segmenter_depth_anything (the segmenter's ids, Depth Anything's disparity) as models
        ("segdepth", {"source": "models", "segmenter_path": "a/segmenter"}, "segmenter_depth_anything", "segmenter"),
    ],
)
def test_a_config_saved_with_the_old_perception_source_name_loads_as_perception_source(name, old, new, flag, tmp_path):
    """A config.json written before perception_source's rename loads with the new field; saved again it names only
    the new field; a flag given on top of the old config wins."""
    register_third_party_plugins()
    folder = _checkpoint(name, tmp_path)
    old_name = next(iter(old))
    saved = json.loads((folder / "config.json").read_text())
    assert old_name in saved and "perception_source" not in saved  # the fixture was written with the old name
    (folder / "config.json").write_text(json.dumps(saved | old, indent=4))

    cfg = PreTrainedConfig.from_pretrained(folder)
    assert cfg.perception_source == new and getattr(cfg, old_name) is None
    (tmp_path / "again").mkdir()
    cfg._save_pretrained(tmp_path / "again")
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again["perception_source"] == new and old_name not in again
    assert PreTrainedConfig.from_pretrained(tmp_path / "again").perception_source == new

    flagged = PreTrainedConfig.from_pretrained(folder, cli_overrides=[f"--perception_source={flag}"])
    assert flagged.perception_source == flag
