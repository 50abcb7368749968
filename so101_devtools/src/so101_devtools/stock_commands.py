"""The stock lerobot-* commands run from tests and benchmarks: one run from this venv, and a twin recording made
with lerobot-record."""

import os
import subprocess
import sys
from pathlib import Path

from so101_devtools import warm_start

VENV_BIN = Path(sys.executable).parent


def run_cli(args: list[str], cwd: Path, timeout: int = 600, check: bool = True) -> subprocess.CompletedProcess:
    """Run a stock lerobot-* command (or python) from this venv, started warm (`warm_start`); on failure show the
    tail of its output."""
    exe = args[0] if args[0] == sys.executable else str(VENV_BIN / args[0])
    proc = warm_start.run([exe, *args[1:]], cwd=cwd, env={**os.environ}, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n{(proc.stdout + proc.stderr)[-6000:]}")
    return proc


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
            f"--robot.observation_height={size[0]}",
            f"--robot.observation_width={size[1]}",
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
