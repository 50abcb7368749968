"""Success rate of the twin's experts over seeded episodes (physics only, cameras off), clean and under noise.

Run from the repository root:

    .venv/bin/python benchmarks/expert_success.py                        # LiftCube, seeds 0..49, both experts
    .venv/bin/python benchmarks/expert_success.py --noise-std 0 0.5 1.0  # DART-style actuation noise, degrees
    .venv/bin/python benchmarks/expert_success.py --task ReachCube --episodes 20

Episode i uses seed i (cube pose and noise), so a failing seed reproduces with
`rollout_expert(twin, seed, kind=..., noise_std=...)`. An episode lasts at most 8 s of simulated time and, as in
the gym env, ends at its first success.

Columns of the table:
    expert             "reactive" (closed loop, the teleoperator's default) or "scripted" (time-indexed plan)
    noise std          Ornstein-Uhlenbeck actuation noise added to every command (follower units, tau 0.3 s)
    successes          episodes that reached success / episodes run
    success rate %     successes / episodes
    median s to success  simulated seconds from reset to the first success, over the successful episodes
    ms per episode     mean wall-clock time of one episode (reset + expert + physics)
    failing seeds      the seeds of the failed episodes
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm import tqdm

from lerobot_env_so101_twin.expert import EXPERTS, rollout_expert
from lerobot_env_so101_twin.twin import SO101Twin, TwinConfig
from so101_core import TASKS


def evaluate(twin: SO101Twin, kind: str, noise_std: float, episodes: int) -> dict:
    failures, seconds, durations = [], [], []
    for seed in tqdm(range(episodes), desc=f"{kind} noise {noise_std}", unit="ep", leave=False):
        start = time.perf_counter()
        success, steps = rollout_expert(twin, seed, kind=kind, noise_std=noise_std)
        durations.append(time.perf_counter() - start)
        if success:
            seconds.append(steps / twin.config.fps)
        else:
            failures.append(seed)
    return {"failures": failures, "seconds": seconds, "durations": durations}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=50, help="episodes, seeds 0..N-1 (default 50)")
    parser.add_argument("--task", default="LiftCube", choices=TASKS, help="twin task (default LiftCube)")
    parser.add_argument("--experts", nargs="+", default=list(EXPERTS), choices=list(EXPERTS))
    parser.add_argument("--noise-std", nargs="+", type=float, default=[0.0, 1.0], help="actuation noise levels")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error("--episodes must be at least 1")
    twin = SO101Twin(TwinConfig(task=args.task, cameras={}), seed=0)
    rows = [
        "| task | expert | noise std | successes | success rate % | median s to success | ms per episode "
        "| failing seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    try:
        for kind in args.experts:
            for std in args.noise_std:
                r = evaluate(twin, kind, std, args.episodes)
                ok = args.episodes - len(r["failures"])
                median_s = f"{np.median(r['seconds']):.2f}" if r["seconds"] else "-"
                failing = ", ".join(map(str, r["failures"])) or "none"
                rows.append(
                    f"| {args.task} | {kind} | {std:g} | {ok}/{args.episodes} | {100.0 * ok / args.episodes:.1f} | "
                    f"{median_s} | {1000 * np.mean(r['durations']):.0f} | {failing} |"
                )
    finally:
        twin.close()
    print("\n".join(rows))


if __name__ == "__main__":
    main()
