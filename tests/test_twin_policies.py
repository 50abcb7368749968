"""benchmarks/twin_policies.py's --policies: the documented spelling, per-policy flags included, parses into the
entries it names (a `|` or `[` inside a bare YAML list item is a parse error, hence the quotes in its docstring)."""

import json

import draccus
import pytest
from clitools import load_script

from so101_devtools.twin_eval import env_flags

TwinPoliciesConfig = load_script("benchmarks/twin_policies.py", "twin_policies").TwinPoliciesConfig


def test_an_entry_with_env_flags_parses_when_quoted(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    flags = "|--env.cameras=[front,wrist]|--env.depth=true"
    cfg = draccus.parse(TwinPoliciesConfig, args=[f'--policies=[a={tmp_path / "a"},"b={tmp_path / "b"}{flags}"]'])
    assert cfg.policies == [f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}{flags}"]


RGB, MAP = {"type": "VISUAL", "shape": [3, 96, 128]}, {"type": "VISUAL", "shape": [1, 96, 128]}


@pytest.mark.parametrize(
    "features, flags",
    [
        ({"front": RGB, "wrist": RGB}, ["[front,wrist]", "false", "false"]),
        ({"wrist_depth": MAP, "wrist_segmentation": MAP}, ["[wrist]", "true", "true"]),  # segdepth on ground truth
        ({"wrist": RGB, "wrist_depth": MAP}, ["[wrist]", "true", "false"]),  # segdepth through the segmenter
    ],
)
def test_env_flags_render_every_camera_a_checkpoint_reads(tmp_path, features, flags):
    inputs = {"observation.state": {"type": "STATE", "shape": [6]}}
    inputs |= {f"observation.images.{k}": v for k, v in features.items()}
    (tmp_path / "config.json").write_text(json.dumps({"input_features": inputs}))
    cameras, depth, segmentation = flags
    assert env_flags(tmp_path) == [
        f"--env.cameras={cameras}",
        "--env.observation_height=96",
        "--env.observation_width=128",
        f"--env.depth={depth}",
        f"--env.segmentation={segmentation}",
    ]
