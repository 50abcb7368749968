"""Running the stock lerobot-* commands from tests, and loading an example or benchmark script as a module."""

import json
import re
import sys
from pathlib import Path

from so101_devtools.stock_commands import TASK, VENV_BIN, record_twin_dataset, run_cli  # noqa: F401  (re-exported)


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


def rollout_in_twin(
    policy_path: Path, size: tuple[int, int], cwd: Path, flags: tuple[str, ...] = (), duration: float = 1
) -> int:
    """`duration` seconds of the stock lerobot-rollout of a checkpoint on the twin robot, which must finish and
    disconnect; the number of actions the twin executed."""
    proc = run_cli(
        [
            "lerobot-rollout",
            "--strategy.type=base",
            f"--policy.path={policy_path}",
            "--robot.type=so101_twin",
            *flags,
            f"--robot.observation_height={size[0]}",
            f"--robot.observation_width={size[1]}",
            "--robot.max_relative_target=20",
            f"--task={TASK}",
            f"--duration={duration}",
            "--fps=30",
            "--device=cpu",
            "--return_to_initial_position=false",
        ],
        cwd=cwd,
    )
    log = proc.stdout + proc.stderr
    assert "Rollout finished" in log and "twin SO101Twin disconnected" in log
    return int(re.search(r"twin SO101Twin disconnected after (\d+) actions", log).group(1))


def load_script(path: str, name: str):
    """The script at `path` (from the repository root) as the module `name`: examples and benchmarks are files to
    run, not packages to import. Registered in sys.modules, where draccus looks for its config's source."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parents[1] / path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_example(name: str):
    """examples/<name>.py as a module."""
    return load_script(f"examples/{name}.py", f"{name}_example")
