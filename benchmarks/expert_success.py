"""Success rate of the twin's scripted expert over seeded episodes (physics only, cameras off).

Run from the repository root:

    .venv/bin/python benchmarks/expert_success.py                      # LiftCube, seeds 0..49
    .venv/bin/python benchmarks/expert_success.py --task ReachCube --episodes 20

Episode i uses seed i, so a failing seed reproduces with `rollout_expert(twin, seed)`. Each episode is
`rollout_expert`'s default length (8 s of simulated time at the twin's fps); success is read at the last step.

Columns of the table:
    task               the twin's task
    episodes           episodes run (seeds 0..episodes-1)
    successes          episodes that ended in success
    success rate %     successes / episodes
    mean episode s     mean wall-clock time of one episode (reset + expert planning + physics)
    failing seeds      the seeds of the failed episodes
"""

from __future__ import annotations

import argparse
import time

from tqdm import tqdm

from lerobot_env_so101_twin.constants import TASKS
from lerobot_env_so101_twin.expert import rollout_expert
from lerobot_env_so101_twin.twin import SO101Twin, TwinConfig


def evaluate(task: str, episodes: int) -> tuple[list[int], list[float]]:
    """Run the expert on seeds 0..episodes-1; returns (failing seeds, wall seconds per episode)."""
    twin = SO101Twin(TwinConfig(task=task, cameras={}), seed=0)
    failures, durations = [], []
    try:
        progress = tqdm(range(episodes), desc=f"{task} expert", unit="ep")
        for seed in progress:
            start = time.perf_counter()
            success, _ = rollout_expert(twin, seed)
            durations.append(time.perf_counter() - start)
            if not success:
                failures.append(seed)
            progress.set_postfix(failures=len(failures))
    finally:
        twin.close()
    return failures, durations


def format_table(task: str, episodes: int, failures: list[int], durations: list[float]) -> str:
    successes = episodes - len(failures)
    mean_s = sum(durations) / len(durations)
    failing = ", ".join(map(str, failures)) or "none"
    return "\n".join(
        [
            "| task | episodes | successes | success rate % | mean episode s | failing seeds |",
            "|---|---|---|---|---|---|",
            f"| {task} | {episodes} | {successes} | {100.0 * successes / episodes:.1f} | {mean_s:.3f} | {failing} |",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=50, help="episodes, seeds 0..N-1 (default 50)")
    parser.add_argument("--task", default="LiftCube", choices=TASKS, help="twin task (default LiftCube)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be at least 1")
    failures, durations = evaluate(args.task, args.episodes)
    print(format_table(args.task, args.episodes, failures, durations))


if __name__ == "__main__":
    main()
