"""Success rate of the twin's experts over seeded episodes (physics only, cameras off), clean and under noise.

Run from the repository root:

    .venv/bin/python benchmarks/expert_success.py                        # LiftCube, seeds 0..49, every expert
    .venv/bin/python benchmarks/expert_success.py --noise_std='[0,0.5,1.0]'  # DART-style actuation noise, degrees
    .venv/bin/python benchmarks/expert_success.py --task=ReachCube --episodes=20
    .venv/bin/python benchmarks/expert_success.py --experts='[reactive]' --noise_std='[1.0]' --arm=varied
    .venv/bin/python benchmarks/expert_success.py --experts='[reactive]' --noise_std='[1.0]' --arm_params.latency_ms=25
    .venv/bin/python benchmarks/expert_success.py --experts='[reactive]' --arm_path=outputs/my_arm/arm.json
    .venv/bin/python benchmarks/expert_success.py --arm=unseen --episode_s=10 --at_loop_rate=true
    .venv/bin/python benchmarks/expert_success.py --arm=unseen --episode_s=10 --clearance_mm=3 --first_seed=100

Episode i uses seed `--first_seed` + i (cube pose, noise and a family's arm), so a failing seed reproduces with
`rollout_expert(twin, seed, kind=..., noise_std=...)`. An episode lasts at most `--episode_s` (8 s) of simulated
time and, as in the gym env, ends at its first success.

Columns of the table:
    expert             "reactive" (closed loop, the teleoperator's default), "scripted" (time-indexed plan) or
                       "predictive" (reactive, stepping from its last target under latency)
    noise std          Ornstein-Uhlenbeck actuation noise added to every command (follower units, tau 0.3 s)
    successes          episodes that reached success / episodes run
    success rate %     successes / episodes
    median s to success  simulated seconds from reset to the first success, over the successful episodes
    ms per episode     mean wall-clock time of one episode (reset + expert + physics)
    failing seeds      the seeds of the failed episodes
"""

import time
from dataclasses import dataclass, field

import numpy as np
from lerobot.configs import parser
from tqdm import tqdm

from lerobot_env_so101_twin.arm import ArmParams, ArmRanges, read_arm_path, validate_arm
from lerobot_env_so101_twin.expert import EXPERTS, rollout_expert, validate_clearance
from lerobot_env_so101_twin.simulation import TwinConfig, TwinSimulation
from so101_core import TASKS
from so101_run_infra.cli import prepare_command_line


@dataclass
class ExpertSuccessConfig:
    # episodes per expert and noise level, seeds first_seed..first_seed+N-1
    episodes: int = 50
    # the twin task
    task: str = "LiftCube"
    # the experts to run: reactive (closed loop) and/or scripted (time-indexed plan)
    experts: list[str] = field(default_factory=lambda: list(EXPERTS))
    # Ornstein-Uhlenbeck actuation noise levels, degrees (follower units)
    noise_std: list[float] = field(default_factory=lambda: [0.0, 1.0])
    # the arm the twin plays (arm.py): none (arm_params, the ideal arm by default), varied, unseen
    arm: str = "none"
    # one fixed arm with --arm=none, e.g. --arm_params.latency_ms=25
    arm_params: ArmParams = field(default_factory=ArmParams)
    # one drawn arm of the family for every episode (a user's arm), as --env.arm_seed
    arm_seed: int | None = None
    # an arm file (so101-twin-identify's arm.json: an identified arm), played as arm_params
    arm_path: str | None = None
    # the most simulated seconds an episode may take (a recording's --dataset.episode_time_s)
    episode_s: float = 8.0
    # act only on the arm's loop periods (its control_fps), the target held between, as a policy in lerobot-eval;
    # false: every period, as the expert records
    at_loop_rate: bool = False
    # the fixed finger's clearance off the cube's face during the descent, mm (the teleoperator's clearance_mm);
    # None: the descent onto the cube's centre
    clearance_mm: float | None = None
    # episode i uses seed first_seed + i: tune on one range, report on another
    first_seed: int = 0

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"--episodes must be at least 1, got {self.episodes}")
        if self.episode_s <= 0:
            raise ValueError(f"--episode_s must be positive, got {self.episode_s}")
        if self.task not in TASKS:
            raise ValueError(f"--task must be one of {list(TASKS)}, got {self.task!r}")
        self.arm_params, self.arm_path = read_arm_path(self.arm_path, self.arm, self.arm_params, "")
        validate_arm(self.arm, self.arm_params, ArmRanges(), self.arm_seed, 30)
        unknown = sorted(set(self.experts) - set(EXPERTS))
        if unknown:
            raise ValueError(f"--experts has unknown expert(s) {unknown}; the experts are {list(EXPERTS)}")
        for kind in self.experts:
            validate_clearance(self.clearance_mm, kind, "--clearance_mm")


def evaluate(
    twin: TwinSimulation,
    kind: str,
    noise_std: float,
    episodes: int,
    episode_s: float = 8.0,
    at_loop_rate: bool = False,
    clearance_mm: float | None = None,
    first_seed: int = 0,
) -> dict:
    failures, seconds, durations = [], [], []
    seeds = range(first_seed, first_seed + episodes)
    for seed in tqdm(seeds, desc=f"{kind} noise {noise_std}", unit="ep", leave=False):
        start = time.perf_counter()
        max_steps = round(episode_s * twin.config.fps)
        success, steps = rollout_expert(twin, seed, max_steps, kind, noise_std, at_loop_rate, clearance_mm)
        durations.append(time.perf_counter() - start)
        if success:
            seconds.append(steps / twin.config.fps)
        else:
            failures.append(seed)
    return {"failures": failures, "seconds": seconds, "durations": durations}


@parser.wrap()
def benchmark(cfg: ExpertSuccessConfig) -> None:
    twin = TwinSimulation(
        TwinConfig(task=cfg.task, cameras={}, arm=cfg.arm, arm_params=cfg.arm_params, arm_seed=cfg.arm_seed), seed=0
    )
    rows = [
        f"arm: {cfg.arm}"
        + ("" if cfg.arm != "none" or cfg.arm_params.is_ideal else f" {cfg.arm_params}")
        + (", the expert at the arm's loop rate" if cfg.at_loop_rate else "")
        + (f", clearance {cfg.clearance_mm:g} mm" if cfg.clearance_mm is not None else "")
        + (f", seeds {cfg.first_seed}..{cfg.first_seed + cfg.episodes - 1}" if cfg.first_seed else ""),
        "",
        "| task | expert | noise std | successes | success rate % | median s to success | ms per episode "
        "| failing seeds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    try:
        for kind in cfg.experts:
            for std in cfg.noise_std:
                r = evaluate(
                    twin, kind, std, cfg.episodes, cfg.episode_s, cfg.at_loop_rate, cfg.clearance_mm, cfg.first_seed
                )
                ok = cfg.episodes - len(r["failures"])
                median_s = f"{np.median(r['seconds']):.2f}" if r["seconds"] else "-"
                failing = ", ".join(map(str, r["failures"])) or "none"
                rows.append(
                    f"| {cfg.task} | {kind} | {std:g} | {ok}/{cfg.episodes} | {100.0 * ok / cfg.episodes:.1f} | "
                    f"{median_s} | {1000 * np.mean(r['durations']):.0f} | {failing} |"
                )
    finally:
        twin.close()
    print("\n".join(rows))


def main() -> None:
    prepare_command_line()
    benchmark()


if __name__ == "__main__":
    main()
