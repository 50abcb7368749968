"""docs/real-so101.md's "your own arm, identified" lines, run as printed in the twin: a twin recording on a known
arm (67 ms of latency, servo gain x0.7) stands in for the user's `lerobot-record` of USER/so101_liftcube (same repo
id, in LeRobot's home, where lerobot-record writes it), and the README's SegDepth for outputs/segdepth. Only the
lengths are cut (the identification's solver evaluations, the demo's episodes, steps and evaluation)."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import docs_commands
import pytest
from clitools import TASK, run_cli
from twin_dry_run import flag

from lerobot_env_so101_twin.arm import load_arm

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "real-so101.md"
PERIOD_MS = 1000.0 / 30
NAMES = ("so101-twin-identify", "python", "lerobot-eval")  # `bash scripts/demo.sh` reads as its scripts/demo.py


def in_the_identify_flow(words: list[str]) -> bool:
    """Whether a command of the page belongs to the identified-arm flow (this module runs those)."""
    return words[0] == "so101-twin-identify" or any(
        flag(words, name) is not None for name in ("env.arm_path", "record.robot.arm_path")
    )


def section_commands() -> list[list[str]]:
    found = [w for w in map(docs_commands.command_words, (s.text for s in docs_commands.shown_commands(PAGE)))
             if in_the_identify_flow(w)]  # fmt: skip
    assert tuple(w[0] for w in found) == NAMES, found
    return found


@pytest.mark.slow  # ~4 min on 2 busy cores: a short recording, identification, the demo at a tiny size, an eval
@pytest.mark.timeout(1800)
def test_the_identified_arm_lines_run_in_the_twin(tmp_path, monkeypatch):
    identify, demo, evaluate = section_commands()
    arm_file = f"{flag(identify, 'output_dir')}/arm.json"
    assert demo[1] == "scripts/demo.py" and flag(demo, "record.robot.arm_path") == arm_file
    assert flag(evaluate, "env.arm_path") == arm_file
    home = tmp_path / "lerobot_home"
    monkeypatch.setenv("HF_LEROBOT_HOME", str(home))
    repo_id = flag(identify, "dataset.repo_id")
    run_cli(["so101-twin-record", "--robot.cameras=[]", "--robot.arm_params.latency_ms=67",
             "--robot.arm_params.gain=[0.7]", "--teleop.noise_std=1.0", f"--dataset.repo_id={repo_id}",
             f"--dataset.root={home / repo_id}", "--dataset.num_episodes=4", "--dataset.episode_time_s=2",
             f"--dataset.single_task={TASK}", "--num_workers=1", "--fail_fast_episodes=0"], cwd=tmp_path)  # fmt: skip

    run_cli([*identify, "--max_nfev=2", "--search_evals=40", "--second_search_evals=20", "--holdout_every=4",
             "--latency_step_ms=33.3333"], cwd=tmp_path)  # fmt: skip
    assert abs(load_arm(str(tmp_path / arm_file)).latency_ms - 67) <= PERIOD_MS

    # the demo through its script's own interpreter line (scripts/demo.sh runs the set-up first, which the suite has)
    out = tmp_path / flag(demo, "output_dir")
    tiny = ["--record.dataset.num_episodes=1", "--record.dataset.episode_time_s=1", "--record.num_workers=1",
            "--train.steps=2", "--eval.n_episodes=1", "--policy_view=false"]  # fmt: skip
    args = [sys.executable, str(ROOT / "scripts" / "demo.py"), f"--config_path={ROOT / 'configs' / 'demo.yaml'}"]
    env = {**os.environ, "MUJOCO_GL": "egl", "HF_HUB_OFFLINE": "1"}
    # scripts/demo.sh runs from the repository, as its stages do: the page's paths are the workspace's here
    paths = [f"--{name}={tmp_path / flag(demo, name)}" for name in ("record.robot.arm_path", "output_dir")]
    done = subprocess.run([*args, *demo[2:], *paths, *tiny], capture_output=True, text=True, env=env, cwd=tmp_path,
                          timeout=1200)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    settings = json.loads((out / "demo_config.json").read_text())
    assert settings["record"]["robot"]["arm_params"]["latency_ms"] == load_arm(str(tmp_path / arm_file)).latency_ms
    identified = load_arm(str(tmp_path / arm_file)).as_dict()
    played = played_arms(next((out / "logs").glob("eval_trained*.log")).read_text())
    assert played and all(arm == identified for arm in played)  # each reset logs its arm
    assert json.loads((out / "summary.json").read_text())["results"]["trained"]["episodes"] == 1

    # the README's SegDepth, trained on the ideal arm: the tiny demo's checkpoint stands in for it
    shutil.copytree(
        out / "train" / "checkpoints" / "last" / "pretrained_model", tmp_path / flag(evaluate, "policy.path")
    )
    said = run_cli([*evaluate, "--eval.n_episodes=1", "--env.episode_length=15"], cwd=tmp_path)
    overall = json.loads((tmp_path / flag(evaluate, "output_dir") / "eval_info.json").read_text())["overall"]
    played = played_arms(said.stdout + said.stderr)
    assert overall["n_episodes"] == 1 and played and all(arm == identified for arm in played)


def played_arms(log: str) -> list[dict]:
    """The arm of each episode, as the twin's env logs it."""
    return [json.loads(m)["params"] for m in re.findall(r"so101_twin episode seed \d+: arm (\{.*\})", log)]
