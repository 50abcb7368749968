"""docs/real-so101.md's "perception adapted to your scene" lines, run as printed in the twin: a twin recording in one
fixed `unseen` look stands in for the user's `lerobot-record` of USER/so101_liftcube (same repo id, in LeRobot's
home, where lerobot-record writes it; with the twin's segmentation beside it, which only scores the labels), and a
tiny SegDepth checkpoint from RGB for outputs/segdepth_rgb_my_follower. Only the lengths are cut (the replayed frames'
episodes, the training's epochs). The swapped checkpoint then runs through the stock lerobot-eval in that look."""

import json
from pathlib import Path

import docs_commands
import pytest
from clitools import TASK, eval_in_twin, run_cli
from test_seg_swap import checkpoint, save_tiny_depth_segmenter
from twin_dry_run import flag

from so101_segmenter.shipped import sha256

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "real-so101.md"
NAMES = (
    "so101-seg-render",
    "so101-seg-autolabel",
    "so101-seg-train",
    "so101-seg-autolabel",
    "so101-seg-train",
    "so101-seg-swap",
)


def section_commands() -> list[list[str]]:
    """The section's commands, in the page's order: two rounds of labels and training."""
    found = []
    for shown in docs_commands.shown_commands(PAGE):
        words = docs_commands.command_words(shown.text)
        if words[0] in ("so101-seg-autolabel", "so101-seg-render", "so101-seg-swap") or (
            words[0] == "so101-seg-train" and flag(words, "config_path") == "configs/own_scene/segmenter_adapt.yaml"
        ):
            found.append(words)
    assert [w[0] for w in found] == list(NAMES), found
    return found


@pytest.mark.slow
def test_the_own_scene_lines_run_in_the_twin(tmp_path, monkeypatch):
    render, autolabel, train, autolabel_2, train_2, swap = section_commands()
    assert flag(autolabel_2, "segmenter_path") == f"{flag(train, 'output_dir')}/best"
    assert flag(train_2, "data.path") == flag(autolabel_2, "output_dir")
    assert flag(swap, "segmenter_path") == f"{flag(train_2, 'output_dir')}/best"
    # a home of its own: test_real_arm_docs records the same repo id into the worker's shared home
    home = tmp_path / "lerobot_home"
    monkeypatch.setenv("HF_LEROBOT_HOME", str(home))
    repo_id = flag(autolabel, "dataset.repo_id")
    run_cli(["so101-twin-record", "--robot.cameras=[front,wrist]", "--robot.observation_height=96",
             "--robot.observation_width=128", "--robot.appearance=unseen", "--robot.look_seed=61", "--robot.seed=11",
             "--robot.segmentation=true", f"--dataset.repo_id={repo_id}", f"--dataset.root={home / repo_id}",
             "--dataset.num_episodes=2", "--dataset.episode_time_s=5", f"--dataset.single_task={TASK}",
             "--num_workers=1"], cwd=tmp_path)  # fmt: skip
    (tmp_path / "configs" / "own_scene").mkdir(parents=True)
    config = ROOT / "configs" / "own_scene" / "segmenter_adapt.yaml"
    (tmp_path / "configs" / "own_scene" / config.name).write_text(config.read_text())
    segmenter = save_tiny_depth_segmenter(tmp_path / "tiny_segmenter", 0)
    policy = checkpoint(tmp_path / "trained", segmenter)
    (tmp_path / "outputs").mkdir()
    policy.rename(tmp_path / flag(swap, "policy.path"))

    run_cli([*render, "--episodes=2"], cwd=tmp_path)
    for labeller, trainer in ((autolabel, train), (autolabel_2, train_2)):
        said = run_cli([*labeller, "--fit.camera_frames=4"], cwd=tmp_path).stdout
        labels = tmp_path / flag(labeller, "output_dir")
        report = json.loads((labels / "autolabel_report.json").read_text())
        assert "labelled" in said and report["frames_labelled"] > 0 and report["label_iou"]["with_band"]["miou"] > 0.5
        run_cli([*trainer, "--epochs=1"], cwd=tmp_path)
    best = tmp_path / flag(train_2, "output_dir") / "best"
    assert (best / "model.safetensors").is_file()
    run_cli(swap, cwd=tmp_path)
    out = tmp_path / flag(swap, "output_dir")
    steps = json.loads((out / "policy_preprocessor.json").read_text())["steps"]
    (step,) = [s for s in steps if "segmenter_source" in s["config"]]
    assert step["config"]["segmenter_source"]["sha256"] == sha256(best / "model.safetensors")
    flags = ("--env.cameras=[wrist]", "--env.appearance=unseen", "--env.look_seed=61")
    overall = eval_in_twin(out, tmp_path / "eval", (40, 48), tmp_path, flags)
    assert overall["n_episodes"] == 1
