"""A re-run of the demo never loses work: with the same settings it continues the run (finished stages kept, an
interrupted one's leftovers renamed, not deleted); with other settings, or in a folder it did not make, it writes a
new run folder. The stages are stand-ins that write what the real commands write (their own tests run them); one
slow test runs the real demo at a tiny size twice."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from so101_devtools import demo

ROOT = Path(__file__).resolve().parent.parent

TINY = ("--record.dataset.num_episodes=1", "--train.steps=2", "--eval.n_episodes=1")


def _flag(args: list[str], name: str) -> Path:
    return Path(next(a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")))


class FakeStages:
    """so101-twin-record and the stage commands, writing into the folders the real ones write; `fail` names a
    stage that dies after writing part of its output, as an interrupted command would."""

    def __init__(self, monkeypatch, fail: str | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail
        monkeypatch.setattr(demo, "record", self.record)
        monkeypatch.setattr(demo, "run_logged", self.run_logged)

    def record(self, cfg) -> dict:
        self.calls.append("record")
        Path(cfg.dataset.root, "meta").mkdir(parents=True)
        Path(cfg.dataset.root, "meta", "info.json").write_text("{}")
        done = {"frames": 150, "record_seconds": 1.0, "real_time_factor": 5.0, "expert_success": "1/1"}
        return done | {"total_seconds": 2.0, "episodes": 1}

    def run_logged(self, args: list[str], log: Path, desc: str, **_) -> float:
        command = Path(args[1] if args[0] == sys.executable else args[0]).name
        stage = {"segdepth-precompute": "precompute", "lerobot-train": "train", "lerobot-eval": "eval"}
        stage = stage.get(command, "policy_view")
        self.calls.append(stage)
        log.write_text(f"{stage} log\n")
        out = _flag(args, "output_dir")
        if stage == "train":
            (out / "checkpoints" / "last" / "pretrained_model").mkdir(parents=True)
        elif stage == "eval":
            out.mkdir(parents=True)
            (out / "eval_info.json").write_text(json.dumps({"overall": {"n_episodes": 1, "pc_success": 100.0,
                                                                        "avg_sum_reward": 3.0}}))  # fmt: skip
        elif stage == "policy_view":
            (out / "policy_view.mp4").write_bytes(b"video")
        else:
            out.mkdir(parents=True)
            (out / "part").write_text(stage)
        if stage == self.fail:
            raise SystemExit(f"[demo] {desc} failed")
        return 10.0


def run_demo(monkeypatch, *args: str) -> dict:
    monkeypatch.setattr(sys, "argv", ["demo.py", *TINY, *args])
    return demo.demo(demo.config_from_command_line())


def snapshot(folder: Path) -> dict[str, tuple[int, bytes | None]]:
    """Every path under `folder` with its inode and (for files) content: what 'nothing changed' compares."""
    return {
        str(p.relative_to(folder)): (p.stat().st_ino, p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def test_a_finished_run_is_kept_whole_by_a_rerun(monkeypatch, tmp_path):
    out = tmp_path / "demo"
    stages = FakeStages(monkeypatch)
    first = run_demo(monkeypatch, f"--output_dir={out}")
    assert stages.calls == ["record", "precompute", "train", "eval", "policy_view"]
    before = snapshot(out)
    stages.calls.clear()
    assert run_demo(monkeypatch, f"--output_dir={out}") == first
    assert stages.calls == [] and snapshot(out) == before, "a re-run with the same settings changed the run"


def test_an_interrupted_run_resumes_keeping_what_the_failed_attempt_left(monkeypatch, tmp_path):
    out = tmp_path / "demo"
    FakeStages(monkeypatch, fail="train")
    with pytest.raises(SystemExit, match="train failed"):
        run_demo(monkeypatch, f"--output_dir={out}")
    dataset = snapshot(out / "dataset")
    stages = FakeStages(monkeypatch)
    run_demo(monkeypatch, f"--output_dir={out}")
    assert stages.calls == ["train", "eval", "policy_view"], "finished stages were run again"
    assert snapshot(out / "dataset") == dataset
    assert (out / "train.incomplete" / "checkpoints" / "last" / "pretrained_model").is_dir()
    assert (out / "logs" / "train.log").read_text() == (out / "logs" / "train.2.log").read_text() == "train log\n"
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("train")) == ["train", "train.incomplete"]


@pytest.mark.parametrize("why", ["other settings", "foreign files", "resume off"])
def test_a_rerun_that_cannot_continue_writes_a_new_run_folder(monkeypatch, tmp_path, capsys, why):
    out = tmp_path / "demo"
    FakeStages(monkeypatch)
    if why == "foreign files":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    else:
        run_demo(monkeypatch, f"--output_dir={out}")
    before = snapshot(out)
    args = {"other settings": ["--train.steps=3"], "foreign files": [], "resume off": ["--resume=false"]}[why]
    stages = FakeStages(monkeypatch)
    run_demo(monkeypatch, f"--output_dir={out}", *args)
    assert stages.calls == ["record", "precompute", "train", "eval", "policy_view"]
    assert snapshot(out) == before, f"{out} was changed"
    assert (tmp_path / "demo-2" / "summary.json").is_file()
    printed = capsys.readouterr().out
    assert f"this run writes to {out}-2 and leaves {out} as it is" in printed
    if why == "other settings":
        assert "train.steps: saved 2, now 3" in printed


@pytest.mark.slow  # ~3 min on 2 busy cores: the real record, precompute, train and eval at a tiny size, twice
def test_the_real_demo_at_a_tiny_size_resumes_without_redoing_anything(tmp_path):
    out = tmp_path / "demo"
    args = [sys.executable, str(ROOT / "scripts" / "demo.py"), *TINY, f"--output_dir={out}"]
    args += ["--record.dataset.episode_time_s=1", "--record.num_workers=1", "--policy_view=false"]
    env = {**os.environ, "MUJOCO_GL": "egl", "HF_HUB_OFFLINE": "1", "HF_LEROBOT_HOME": str(tmp_path / "home")}
    first = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    before = snapshot(out)
    assert {"stages/record.json", "stages/train.json", "stages/eval_trained.json", "summary.json"} <= set(before)
    again = subprocess.run(args, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert again.stdout.count("done in an earlier attempt") == 4 and snapshot(out) == before


def test_the_progress_bar_never_passes_the_total_on_lerobots_rounded_steps(tmp_path, capsys):
    # lerobot-train logs step 2600 as "step:3K"; the bar must stop at its total, not show 3000/2600
    script = (
        "import time\n"
        "for step in ('1K', '3K'):\n"
        "    print(f'INFO step:{step} smpl:32K loss:0.5 ', flush=True)\n"
        "    time.sleep(0.3)  # past tqdm's refresh interval, so every position is drawn\n"
    )
    demo.run_logged([sys.executable, "-c", script], tmp_path / "log", "train", 2600, r"step:(\S+) ")
    bar = capsys.readouterr().err.replace("\r", "\n").splitlines()
    assert any("2600/2600" in line for line in bar) and not any("3000" in line for line in bar)


def test_the_progress_bar_reads_a_rounded_step_as_the_least_it_can_be(tmp_path, capsys):
    # "2K" is any step from 1500 to 2499: the bar shows 1500 until the checkpoint line gives the exact 1950
    script = (
        "import time\n"
        "lines = ('step:900 loss:0.5 ', 'step:2K loss:0.4 ', 'Checkpoint policy after step 1950', 'step:2K ')\n"
        "for line in lines:\n"
        "    print(f'INFO {line}', flush=True)\n"
        "    time.sleep(0.3)\n"
        "raise SystemExit(1)  # a failed run: the bar is not completed to its total\n"
    )
    with pytest.raises(SystemExit, match="exit 1"):
        demo.run_logged([sys.executable, "-c", script], tmp_path / "log", "train", 2600, r"step:(\S+) ")
    positions = [int(m) for m in re.findall(r"(\d+)/2600", capsys.readouterr().err)]
    assert positions[-1] == 1950 and 1500 in positions and max(positions) == 1950


@pytest.mark.parametrize(
    "args",
    [
        ["--record.robot.arm=varied"],
        ["--record.robot.arm=unseen", "--record.robot.arm_seed=5", "--record.robot.arm_ranges.latency_ms=[0,40]"],
        ["--record.robot.arm_params.latency_ms=67", "--record.robot.arm_params.backlash_deg=[1.0]",
         "--record.robot.arm_params.control_fps=10", "--record.robot.arm_params.gain=[0.8,0.9,1,1,1.1,1.2]"],
        ["--record.robot.arm_path=ARM"],  # written after the config is read: passed on as a path
        ["--record.robot.arm_path=ARM", "written"],  # there when the config is read: the arm itself
    ],
)  # fmt: skip
def test_the_evaluation_plays_the_arm_the_recording_played(tmp_path, args):
    """lerobot-eval's env config, parsed from the demo's evaluation flags, plays the recording's arm: the same level,
    seed and ranges, the same fixed arm; the ideal arm adds no flag."""
    import draccus

    from lerobot_env_so101_twin import SO101TwinEnvConfig
    from lerobot_env_so101_twin.arm import ArmParams

    arm_file = tmp_path / "arm.json"
    identified = ArmParams(latency_ms=90.0, calibration_deg=[1.0, -2.0, 0.5, 0.0, 0.0, 3.0], force=[0.8])
    if "written" in args:
        arm_file.write_text(json.dumps(identified.as_dict()))
    args = [a.replace("ARM", str(arm_file)) for a in args if a != "written"]
    config = ROOT / "configs" / "demo.yaml"
    parse = draccus.parse
    assert demo.arm_flags(parse(demo.DemoConfig, config_path=config, args=[]).record.robot) == []
    robot = parse(demo.DemoConfig, config_path=config, args=args).record.robot
    flags = demo.eval_args(parse(demo.DemoConfig, config_path=config, args=args), 1, tmp_path / "eval")
    arm_flags = [f.removeprefix("--env.") for f in flags if f.startswith("--env.arm")]
    assert arm_flags, flags
    arm_file.write_text(json.dumps(identified.as_dict()))  # what so101-twin-identify writes meanwhile
    env = parse(SO101TwinEnvConfig, args=[f"--{f}" for f in arm_flags])
    for name in ("arm", "arm_seed", "arm_ranges"):
        assert getattr(env, name) == getattr(robot, name), name
    assert env.played_arm().as_dict() == robot.played_arm().as_dict()
