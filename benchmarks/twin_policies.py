"""Every policy of the suite side by side in the twin: the same unseen cube poses, both appearances, one table.

    .venv/bin/python benchmarks/twin_policies.py --policies='[
        segvla=outputs/segvla_twin/cues_gt_s1/checkpoints/002000/pretrained_model,
        smolvla=outputs/segvla_twin/no_cues_s1/checkpoints/002000/pretrained_model,
        "segdepth=outputs/demo/train/checkpoints/last/pretrained_model|--env.cameras=[wrist]|--env.observation_height=120|--env.observation_width=160|--env.depth=true|--env.segmentation=true"]'

Each entry is `name=checkpoint`, optionally followed by `|`-separated lerobot-eval flags for that policy (such an
entry goes in double quotes: the list is parsed as YAML, where a bare `|` or `[` inside an item is an error). Without
flags the env follows the checkpoint's inputs: its cameras (`observation.images.<camera>`, 3 channels) at their size,
with depth and segmentation when it reads `<camera>_depth` / `<camera>_segmentation`.

Per policy and appearance, `lerobot-eval --env.type=so101_twin --env.task=LiftCube --seed=<seed>` on --n_episodes
episodes (the same poses for all: a seed fixes the cube poses in both appearances). Columns:

    success            successes / episodes with Wilson's 95% interval, per appearance
    mean return        lerobot-eval's avg_sum_reward (dense reward, at most 3 a step), per appearance
    chunk ms           one chunk in this process: policy.reset() then select_action on the first observation of the
                       evaluation (preprocessors included), median of --repeats after one warm-up, torch threads as
                       the process has them
    train min          the training wall time, from `train_wall_s.json` beside the run's `checkpoints/` (written by
                       examples/segvla_twin.py), else blank

The evaluations land in --output_dir as `<name>_<appearance>_<n_episodes>/` (a finished one is reused: pointing
--output_dir at `outputs/segvla_twin/eval` with the names `<arm>_s<seed>` reuses examples/segvla_twin.py's runs).
"""

import json
import os
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from lerobot.configs import parser

from so101_devtools.twin_eval import env_flags, eval_args
from so101_run_infra.cli import prepare_command_line
from so101_run_infra.stats import wilson


@dataclass
class TwinPoliciesConfig:
    # the policies, each name=checkpoint[|--env.flag=value...]; required
    policies: list[str] = field(default_factory=list)
    # the twin appearances each policy is evaluated in (--env.appearance)
    appearances: list[str] = field(default_factory=lambda: ["none", "shifted"])
    # lerobot-eval episodes per policy and appearance
    n_episodes: int = 20
    # lerobot-eval's --seed: the first episode's cube pose, the same for every policy
    seed: int = 1000
    # chunk timings per policy (after one warm-up); the table shows their median
    repeats: int = 10
    # where the evaluations go, one folder each (a finished one is reused)
    output_dir: Path = Path("outputs/twin_policies")

    def __post_init__(self):
        if not self.policies:
            raise ValueError("--policies is empty: give '[name=checkpoint,...]'")
        for entry in self.policies:
            name, sep, rest = entry.partition("=")
            path = Path(rest.split("|")[0])
            if not sep or not name:
                raise ValueError(f"--policies entry {entry!r} is not name=checkpoint[|--env.flag=value...]")
            if not (path / "config.json").is_file():
                raise FileNotFoundError(f"--policies entry {name!r}: {path / 'config.json'} does not exist")


def evaluate(cfg: TwinPoliciesConfig, name: str, checkpoint: Path, flags: list[str], appearance: str) -> dict:
    out = cfg.output_dir / f"{name}_{appearance}_{cfg.n_episodes}"  # examples/segvla_twin.py's layout: reusable
    info = out / "eval_info.json"
    if not info.is_file():
        args = eval_args(checkpoint, flags, appearance, cfg.n_episodes, 1, cfg.seed, out)
        print(f"[twin_policies] {name} ({appearance}): lerobot-eval on {cfg.n_episodes} episodes", flush=True)
        log = cfg.output_dir / f"{name}_{appearance}_{cfg.n_episodes}.log"
        with open(log, "w") as f:
            code = subprocess.run(args, stdout=f, stderr=subprocess.STDOUT, check=False).returncode
        if code:
            raise SystemExit(f"lerobot-eval failed for {name} ({appearance}), exit {code}; see {log}")
    overall = json.loads(info.read_text())["overall"]
    n = overall["n_episodes"]
    return {"rate": wilson(round(overall["pc_success"] * n / 100), n), "return": overall["avg_sum_reward"]}


def chunk_ms(checkpoint: Path, flags: list[str], seed: int, repeats: int) -> float:
    """Median ms of policy.reset() + select_action on a real first observation, preprocessors included."""
    import draccus
    import torch
    from lerobot.configs.policies import PreTrainedConfig
    from lerobot.envs.factory import make_env, make_env_pre_post_processors
    from lerobot.envs.utils import preprocess_observation
    from lerobot.policies.factory import make_policy, make_pre_post_processors

    from lerobot_env_so101_twin.config_env import SO101TwinEnvConfig

    env_args = ["--task=LiftCube", *[f.replace("--env.", "--") for f in flags]]
    env_cfg = draccus.parse(SO101TwinEnvConfig, args=env_args)
    policy_cfg = PreTrainedConfig.from_pretrained(checkpoint)
    policy_cfg.pretrained_path = checkpoint
    policy_cfg.device = "cpu"
    policy = make_policy(policy_cfg, env_cfg=env_cfg).eval()
    pre, _ = make_pre_post_processors(policy_cfg, pretrained_path=str(checkpoint))
    env_pre, _ = make_env_pre_post_processors(env_cfg, policy_cfg)
    envs = make_env(env_cfg, n_envs=1)
    vec = next(iter(next(iter(envs.values())).values()))
    try:
        obs, _ = vec.reset(seed=[seed])
        observation = preprocess_observation(obs)
        observation["task"] = list(vec.call("task_description"))  # as lerobot-eval's rollout does
        batch = pre(env_pre(observation))
        times = []
        with torch.inference_mode():
            for _ in range(repeats + 1):
                start = time.perf_counter()
                policy.reset()
                policy.select_action(dict(batch))
                times.append(1000 * (time.perf_counter() - start))
        return statistics.median(times[1:])
    finally:
        vec.close()


def train_minutes(checkpoint: Path) -> float | None:
    for parent in checkpoint.resolve().parents:
        timing = parent / "train_wall_s.json"
        if timing.is_file():
            return json.loads(timing.read_text())["seconds"] / 60
    return None


@parser.wrap()
def twin_policies(cfg: TwinPoliciesConfig) -> None:
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()  # the suite's policy types, as every lerobot-* command does
    os.environ.setdefault("MUJOCO_GL", "egl")
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    header = ["policy", "type"]
    header += [f"success {a}" for a in cfg.appearances] + [f"mean return {a}" for a in cfg.appearances]
    rows = []
    for entry in cfg.policies:
        name, _, rest = entry.partition("=")
        path, *extra = rest.split("|")
        checkpoint = Path(path)
        flags = extra or env_flags(checkpoint)
        results = [evaluate(cfg, name, checkpoint, flags, a) for a in cfg.appearances]
        kind = json.loads((checkpoint / "config.json").read_text())["type"]
        minutes = train_minutes(checkpoint)
        rows.append(
            [name, kind]
            + [str(r["rate"]) for r in results]
            + [f"{r['return']:.1f}" for r in results]
            + [f"{chunk_ms(checkpoint, flags, cfg.seed, cfg.repeats):.1f}", "" if minutes is None else f"{minutes:.1f}"]
        )
    header += ["chunk ms", "train min"]
    print(f"\nLiftCube, {cfg.n_episodes} episodes from --seed={cfg.seed} per cell, machine: {os.cpu_count()} CPUs")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def main() -> None:
    prepare_command_line()
    twin_policies()


if __name__ == "__main__":
    main()
