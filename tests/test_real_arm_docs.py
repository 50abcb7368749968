"""The commands the README and docs/real-so101.md print for the real follower, run as printed in the twin.

Every `lerobot-rollout` that drives the follower caps each step's move and sets its rate, and each dry run shown is
its follower command with exactly the substitutions docs/real-so101.md lists (`twin_dry_run`). The README's rollout
runs so, from a checkpoint whose limits `so101-joint-limits` replaced as the README says; then docs/real-so101.md
runs top to bottom in one workspace, as a newcomer would type it: the commands the twin can stand in for run, only
their lengths cut (episodes, seconds, epochs, frames); those that need the hardware are left out, and the files they
would write (the calibration, the joint-limit lines) are written as they would write them. Paths, flags and outputs
of the page therefore cannot drift from what the commands do."""

from __future__ import annotations

import itertools
import json
import os
import re
import shlex
import sys
import time
from pathlib import Path

import docs_commands
import pytest
from test_camera_resize import save_checkpoint
from test_identify_docs import in_the_identify_flow
from test_policy_contract import CASES
from test_real_arm_rollout import write_calibration
from twin_dry_run import drives_the_follower, flag, require_safe, twin_dry_run

from so101_devtools import warm_start

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGE = ROOT / "docs" / "real-so101.md"
VENV_BIN = Path(sys.executable).parent
ROBOT_ID = "my_follower"
CALIBRATED = "calibration/robots/so_follower/my_follower.json"  # under HF_LEROBOT_HOME, where lerobot-calibrate writes
ENV_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")  # `VAR=value` before a command (the words run may be cut)
RETURN_ACTIONS = 150  # lerobot-rollout's way back to the start pose at the end: 3 s at 50 Hz, whatever --fps


def shown(page: Path) -> list[tuple[int, str, list[str]]]:
    """(line, text, words) of every command the page's ```bash blocks show."""
    return [(s.line, s.text, docs_commands.command_words(s.text)) for s in docs_commands.shown_commands(page)]


def follower_rollouts(page: Path) -> list[tuple[int, list[str]]]:
    return [(line, w) for line, _, w in shown(page) if w[0] == "lerobot-rollout" and drives_the_follower(w)]


def twin_rollouts(page: Path) -> list[list[str]]:
    return [w for _, _, w in shown(page) if w[0] == "lerobot-rollout" and flag(w, "robot.type") == "so101_twin"]


def test_every_follower_rollout_shown_caps_the_move_and_sets_the_rate():
    rollouts = follower_rollouts(README) + follower_rollouts(PAGE)
    assert len(rollouts) >= 4, rollouts
    for _, words in rollouts:
        require_safe(words)  # names the missing flag and the command


def test_the_safety_check_fails_a_command_without_its_cap_or_rate():
    ((_, words),) = follower_rollouts(README)
    for dropped in ("--robot.max_relative_target=", "--fps="):
        with pytest.raises(AssertionError, match=re.escape(dropped.rstrip("="))):
            require_safe([w for w in words if not w.startswith(dropped)])
    with pytest.raises(AssertionError, match="not a positive cap"):
        require_safe([*words, "--robot.max_relative_target=0"])


def test_each_dry_run_shown_is_its_follower_command_with_the_documented_substitutions():
    """The README shows its dry run right before its follower command, the page its section-6 pair the same way."""
    for page in (README, PAGE):
        dry_runs = [sorted(w) for w in twin_rollouts(page)]
        for line, words in follower_rollouts(page):
            if flag(words, "strategy.type") == "base" and flag(words, "rename_map") is None:
                assert sorted(twin_dry_run(words)) in dry_runs, f"{page.name}:{line}: no dry run of this command"
    substituted = twin_dry_run(
        ["lerobot-record", "--robot.type=so101_follower", "--robot.port=/dev/ttyACM0", "--robot.id=arm",
         "--robot.cameras={wrist: {type: opencv, index_or_path: 0, width: 320, height: 240, fps: 30}}",
         "--teleop.type=so101_leader", "--teleop.port=/dev/ttyACM1", "--teleop.id=lead", "--dataset.fps=15"]
    )  # fmt: skip
    assert substituted == [
        "lerobot-record", "--robot.type=so101_twin", "--robot.id=arm", "--robot.cameras=[wrist]",
        "--robot.observation_height=240", "--robot.observation_width=320", "--teleop.type=so101_twin_expert",
        "--dataset.fps=15", "--robot.fps=15",
    ]  # fmt: skip


# ----- running them -----------------------------------------------------------------------------------------------
def run(text: str, words: list[str], cwd: Path, timeout: int = 600) -> str:
    """A shown command's words (its own console script from this venv), with the `VAR=value` prefixes its text puts
    before it; the combined output, or an AssertionError with its tail."""
    prefix = dict(w.split("=", 1) for w in itertools.takewhile(ENV_WORD.match, shlex.split(text)))
    exe = str(VENV_BIN / words[0])
    started = time.monotonic()
    proc = warm_start.run([exe, *words[1:]], cwd=cwd, env={**os.environ, **prefix}, timeout=timeout)
    said = proc.stdout + proc.stderr
    print(f"{time.monotonic() - started:6.1f} s  {' '.join(words)[:150]}")
    assert proc.returncode == 0, f"{' '.join(words)} exited {proc.returncode}:\n{said[-6000:]}"
    return said


def dry_run_summary(said: str) -> tuple[int, float, float]:
    """(actions, fps, max_relative_target) from the twin's last line."""
    found = re.search(rf"{ROBOT_ID} SO101Twin disconnected after (\d+) actions \([\d.]+ s simulated at (\d+) fps, "
                      r"max_relative_target=([\d.]+|None)\)", said)  # fmt: skip
    assert found, said[-3000:]
    return int(found.group(1)), float(found.group(2)), float(found.group(3))


def check_dry_run(said: str, words: list[str], calibration: Path) -> None:
    """The dry run ran at the command's rate, under its cap, clipping to the arm's limits (the checklist's line)."""
    actions, fps, cap = dry_run_summary(said)
    assert fps == float(flag(words, "fps")) and cap == float(flag(words, "robot.max_relative_target")), said[-2000:]
    duration = float(flag(words, "duration"))
    policy_actions = actions - RETURN_ACTIONS * (flag(words, "return_to_initial_position") != "false")
    assert 1 <= policy_actions <= fps * duration + 2, f"{policy_actions} policy actions in {duration} s at {fps} fps"
    assert f"(from {calibration})" in said, "the clip does not name the arm's calibration: " + said[-3000:]
    assert "MJCF" not in re.findall(r"clipping joint targets to .*", said)[0]


@pytest.fixture
def workspace(tmp_path) -> Path:
    """A working folder with the arm's calibration where lerobot-calibrate writes it (HF_LEROBOT_HOME is a temporary
    folder in the tests)."""
    write_calibration(Path(os.environ["HF_LEROBOT_HOME"]) / CALIBRATED)
    (tmp_path / "work").mkdir()
    return tmp_path / "work"


@pytest.mark.slow  # ~1 min: so101-joint-limits, then 20 s of the stock lerobot-rollout in the twin
def test_the_readmes_follower_rollout_runs_in_the_twin_with_the_documented_substitutions(workspace):
    """The README's imf checkpoint (a tiny one trained on 96x128 frames, at the path its imf example trains to) gets
    the arm's limits with the README's so101-joint-limits line, then its follower command runs in the twin with only
    the page's substitutions, for the --duration it prints."""
    (case,) = [c for c in CASES if c.type == "imf"]
    save_checkpoint(case, workspace / "outputs/imf/checkpoints/last/pretrained_model")
    commands = [(text, words) for _, text, words in shown(README)]
    limits = [(t, w) for t, w in commands if w[0] == "so101-joint-limits"]
    assert len(limits) == 1, "the README's rollout must say how the checkpoint gets the arm's limits"
    said = run(*limits[0], workspace)
    assert "twin" in said.lower(), said[-2000:]  # it says the old limits were the twin's
    ((_, follower),) = follower_rollouts(README)
    assert flag(follower, "policy.path") == flag(limits[0][1], "output_dir"), "the rollout skips the limits' copy"
    dry_run = twin_dry_run(follower)
    said = run(shlex.join(dry_run), dry_run, workspace)
    check_dry_run(said, follower, Path(os.environ["HF_LEROBOT_HOME"]) / CALIBRATED)


# ----- docs/real-so101.md, top to bottom --------------------------------------------------------------------------
NEEDS_THE_ARM = {"lerobot-find-port", "lerobot-calibrate", "lerobot-find-cameras", "lerobot-find-joint-limits"}
TWIN_CAMERAS = {"front", "wrist"}
# the own-scene flow, and its so101-seg-train (by its config)
OWN_SCENE = {"so101-seg-autolabel", "so101-seg-swap", "so101-seg-render"}


def skip_reason(words: list[str]) -> str | None:
    """Why the twin cannot stand in for a command of the page, or None when it runs."""
    if in_the_identify_flow(words):
        return "identifies an arm from demonstrations: tests/test_identify_docs.py runs these lines on a twin recording"
    if words[0] in ("bash", "pip"):
        return "installs: tests/test_dependencies.py builds the wheels and resolves and installs these lines"
    if words[0] in NEEDS_THE_ARM:
        return "needs the arm, its leader or its cameras; its files are written as it writes them"
    if flag(words, "camera.type") is not None:
        return "a live camera alone, with no robot the twin could stand in for"
    if flag(words, "config_path") == "configs/segvla_twin.yaml":
        return "SegVLA's twin recipe: examples/segvla_twin.py and tests/test_segvla.py train it"
    if words[0] in OWN_SCENE or flag(words, "config_path") == "configs/own_scene/segmenter_adapt.yaml":
        return "labels a recording with grasps: tests/test_own_scene_docs.py runs these lines on a twin recording"
    if words[0] == "so101-policy-server" or words[:3] == ["python", "-m", "lerobot.async_inference.robot_client"]:
        return "a policy server and its robot client run until stopped: tests/test_async_inference.py runs both"
    if flag(words, "inference.type") == "rtc":
        return "real-time chunking of a SegVLA checkpoint: tests/test_rtc.py runs it on the twin robot"
    if drives_the_follower(words) and flag(words, "robot.cameras") is not None:
        cameras = flag(twin_dry_run(words), "robot.cameras").strip("[]").split(",")
        if not set(cameras) <= TWIN_CAMERAS:
            return f"cameras {cameras} under other names: the twin's are {sorted(TWIN_CAMERAS)}"
    return None


def cut(words: list[str], tiny_depth_model: Path) -> list[str]:
    """The command with only its lengths cut (and no sound or Hub push, which a test machine has not)."""
    name = words[0]
    extra: list[str] = []
    if name == "so101-twin-record":
        extra = ["--dataset.num_episodes=2", "--dataset.episode_time_s=2", "--num_workers=1"]
    elif name == "lerobot-train":
        extra = ["--steps=2", "--save_freq=2", "--batch_size=2", "--num_workers=0", "--wandb.enable=false"]
    elif name == "so101-seg-train":
        extra = ["--epochs=1"]
    elif name == "so101-camera-align" and flag(words, "poses_only") != "true" and flag(words, "frames") is None:
        extra = ["--frames=1"]
    elif name == "so101-twin-excite":
        # no camera (it records joints), every part of the motion shorter; the twin keeps its own time, and the
        # question before the arm moves is answered
        extra = ["--robot.cameras=[]", "--hold_s=0.2", "--chirp_s=1", "--multisine_s=2", "--amplitude=[8,8,8,8,8,8]",
                 "--pace=false", "--yes=true"]  # fmt: skip
    elif name == "segdepth-sim2real-check":
        # Depth Anything V2's weights cannot be downloaded here; 20 frames are enough to compare the two paths
        extra = [f"--depth_model={tiny_depth_model}", "--max_frames=20"]
    elif name in ("lerobot-rollout", "lerobot-record"):
        extra = ["--play_sounds=false"]
        if flag(words, "duration") is not None:
            extra.append("--duration=3")
        if flag(words, "dataset.num_episodes") is not None:
            extra += ["--dataset.num_episodes=1", "--dataset.episode_time_s=2", "--dataset.reset_time_s=0"]
        if flag(words, "dataset.repo_id") is not None:
            extra.append("--dataset.push_to_hub=false")
    return [*words, *extra]


def readme_prerequisites() -> list[tuple[str, list[str]]]:
    """The README's first example, which the page starts from: the twin recording with ground truth and the segdepth
    trained on it (outputs/segdepth)."""
    first = {("so101-twin-record", "dataset.root", "data/liftcube"),
             ("lerobot-train", "output_dir", "outputs/segdepth")}  # fmt: skip
    wanted = [(text, words) for _, text, words in shown(README)
              if any(words[0] == name and flag(words, key) == value for name, key, value in first)]  # fmt: skip
    assert len(wanted) == 2, wanted
    return wanted


def shown_limit_lines(page: Path) -> str:
    """The `max_pos`/`min_pos` lines the page shows for my_follower_limits.txt."""
    blocks = re.findall(r"```text\n(.*?)```", page.read_text(), re.DOTALL)
    (lines,) = [b for b in blocks if "max_pos = [" in b]
    return lines


@pytest.mark.slow  # ~4 min idle: a short recording and training, then 12 of the page's commands, each its own process
@pytest.mark.timeout(1800)  # 14 processes that each start LeRobot: on 2 cores shared with a training, past 900 s
def test_real_so101_page_runs_top_to_bottom_in_the_twin(workspace, tmp_path):
    from test_perception import save_tiny_depth_anything
    from test_segmenter_finetune import write_twin_coco

    home = Path(os.environ["HF_LEROBOT_HOME"])
    depth_model = save_tiny_depth_anything(tmp_path / "depth_anything")
    for text, words in readme_prerequisites():
        run(text, cut(words, depth_model), workspace)
    write_twin_coco(workspace / "data" / "real_v0", frames=24)  # what a labelling tool exports (section 5)
    (workspace / "my_follower_limits.txt").write_text(shown_limit_lines(PAGE))  # what lerobot-find-joint-limits prints

    ran, skipped, said = [], {}, {}
    for line, text, words in shown(PAGE):
        reason = skip_reason(words)
        if reason is not None:
            skipped[f"{line}: {' '.join(words[:2])}"] = reason
            continue
        argv = cut(twin_dry_run(words) if drives_the_follower(words) else words, depth_model)
        said[line] = run(text, argv, workspace)
        ran.append((line, argv))

    # a command added to the page is classified here on purpose: run, or left out with its reason
    assert (len(ran), len(skipped)) == (13, 25), ([line for line, _ in ran], skipped)
    by_name = {}
    for line, argv in ran:
        by_name.setdefault(argv[0], []).append((argv, said[line]))
    # the excitation, planned within the twin's limits, recorded one episode per part for so101-twin-identify
    report = json.loads((workspace / "data/so101_excitation/meta/so101_twin_excite_report.json").read_text())
    assert report["episodes"][0] == "approach" and report["frames"] > 0
    # the camera aid wrote its frame; the segmenter fine-tuned from the shipped one and scored its held-out frames
    assert (workspace / "outputs/camera_align/wrist.png").is_file()
    ((_, seg_log),) = [(a, s) for a, s in by_name["so101-seg-train"]]
    assert "the shipped twin segmenter, version" in seg_log and "mIoU over classes 1-5" in seg_log, seg_log[-3000:]
    assert 0.0 <= json.loads((workspace / "outputs/segmenter/test_metrics.json").read_text())["miou"] <= 1.0
    # the limits' copies, the export from RGB carrying its segmenter
    for folder in ("segdepth_my_follower", "segdepth_my_follower_narrow", "segdepth_rgb_my_follower"):
        assert (workspace / "outputs" / folder / "config.json").is_file(), folder
    assert list((workspace / "outputs/segdepth_rgb_my_follower").glob("*so101_segmenter*.safetensors"))
    # every rollout ran at its rate, under its cap, clipping to the arm's calibrated limits
    rollouts = [(a, s) for a, s in by_name["lerobot-rollout"]]
    assert len(rollouts) == 3, [a for a, _ in rollouts]
    for argv, log in rollouts:
        if flag(argv, "strategy.type") == "base":
            check_dry_run(log, argv, home / CALIBRATED)
    assert list(home.glob("USER/rollout_so101_segdepth*/meta/info.json")), "the episodic rollout recorded nothing"
    assert (home / "USER/so101_liftcube/meta/info.json").is_file(), "lerobot-record recorded nothing"
