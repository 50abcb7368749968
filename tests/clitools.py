"""Running the stock lerobot-* commands from tests."""

import json
import os
import subprocess
import sys
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def run_cli(args: list[str], cwd: Path, timeout: int = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run a stock lerobot-* command (or python) from the test venv; on failure show the tail of its output."""
    exe = args[0] if args[0] == sys.executable else str(VENV_BIN / args[0])
    proc = subprocess.run(
        [exe, *args[1:]], cwd=cwd, capture_output=True, text=True, timeout=timeout, env={**os.environ}
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-6000:]}")
    return proc


def short_train_flags(output_dir: Path, steps: int, batch_size: int = 2) -> list[str]:
    """The stock lerobot-train's flags for a short run on the CPU from a test: no loader workers, a checkpoint at the
    end (checkpoints/last), a log line per step, no W&B, no Hub; the run in `output_dir`."""
    return [
        f"--batch_size={batch_size}",
        "--num_workers=0",
        f"--steps={steps}",
        f"--save_freq={steps}",
        "--log_freq=1",
        "--wandb.enable=false",
        "--policy.device=cpu",
        "--policy.push_to_hub=false",
        f"--output_dir={output_dir}",
    ]


TASK = "Pick up the red cube and lift it."


def record_twin_dataset(
    root: Path, episodes: int, seconds: float, size: tuple[int, int], ground_truth: bool, cameras: str = "[front,wrist]"
) -> Path:
    """Record expert demonstrations of LiftCube in the twin with the stock lerobot-record."""
    flag = str(ground_truth).lower()
    run_cli(
        [
            "lerobot-record",
            "--robot.type=so101_twin",
            f"--robot.cameras={cameras}",
            f"--robot.camera_height={size[0]}",
            f"--robot.camera_width={size[1]}",
            f"--robot.depth={flag}",
            f"--robot.segmentation={flag}",
            "--teleop.type=so101_twin_expert",
            "--dataset.repo_id=local/twin_demo",
            f"--dataset.root={root}",
            f"--dataset.num_episodes={episodes}",
            f"--dataset.episode_time_s={seconds}",
            "--dataset.reset_time_s=0",
            f"--dataset.single_task={TASK}",
            "--dataset.push_to_hub=false",
            "--play_sounds=false",
        ],
        cwd=root.parent,
    )
    return root


def eval_in_twin(
    policy_path: Path,
    out: Path,
    size: tuple[int, int],
    cwd: Path,
    flags: tuple[str, ...] = (),
    task: str = "LiftCube",
    episode_length: int = 15,
    episodes: int = 1,
) -> dict:
    """The stock lerobot-eval of a checkpoint in the twin (`flags` added); the `overall` entry of its eval_info.json."""
    run_cli(
        [
            "lerobot-eval",
            f"--policy.path={policy_path}",
            "--env.type=so101_twin",
            f"--env.task={task}",
            f"--env.observation_height={size[0]}",
            f"--env.observation_width={size[1]}",
            *flags,
            f"--env.episode_length={episode_length}",
            f"--eval.n_episodes={episodes}",
            f"--eval.batch_size={episodes}",
            "--policy.device=cpu",
            f"--output_dir={out}",
        ],
        cwd=cwd,
    )
    return json.loads((out / "eval_info.json").read_text())["overall"]


def rollout_in_twin(policy_path: Path, size: tuple[int, int], cwd: Path, flags: tuple[str, ...] = ()) -> None:
    """One second of the stock lerobot-rollout of a checkpoint on the twin robot, which must finish and disconnect."""
    proc = run_cli(
        [
            "lerobot-rollout",
            "--strategy.type=base",
            f"--policy.path={policy_path}",
            "--robot.type=so101_twin",
            *flags,
            f"--robot.camera_height={size[0]}",
            f"--robot.camera_width={size[1]}",
            "--robot.max_relative_target=20",
            f"--task={TASK}",
            "--duration=1",
            "--fps=30",
            "--device=cpu",
            "--return_to_initial_position=false",
        ],
        cwd=cwd,
    )
    log = proc.stdout + proc.stderr
    assert "Rollout finished" in log and "twin SO101Twin disconnected" in log


def load_example(name: str):
    """examples/<name>.py as a module (the examples import the demo's helpers from scripts/)."""
    import importlib.util

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(f"{name}_example", root / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(root / "scripts"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(root / "scripts"))
    return module
