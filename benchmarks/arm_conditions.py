"""Policies under the arm a user has, not the twin's ideal one: every checkpoint evaluated with the stock lerobot-eval
under each arm condition (one factor at a realistic setting, or the `unseen` arm family), the same 20 poses each.

    .venv/bin/python benchmarks/arm_conditions.py --config_path=configs/arm/conditions_segdepth_gt.yaml

`policies` entries are `row/seed=checkpoint[|--env.flag=value...]` (in double quotes in YAML when they hold `|`):
checkpoints of one row are its training seeds. Without flags the env follows the checkpoint's inputs
(so101_devtools.twin_eval.env_flags). A row's flags come after its column's, so a row may hold a `--policy.*` setting
against a column that sets it (`--policy.action_delay_steps`). `conditions` name columns of `CONDITIONS` below. Each
cell is one lerobot-eval into `<output_dir>/<row>_<seed>/<condition>/` (a finished one is reused, so an interrupted
run resumes), its log beside it, holding each episode's arm (the env logs it). `compare` pairs rows (`a-b`) for
their difference per condition: pooled over seeds with Newcombe's 95% interval, and seed by seed.

The table lands in `<output_dir>/table.md` and every figure in `<output_dir>/results.json`.
"""

import json
import os
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from lerobot.configs import parser

from so101_devtools.twin_eval import env_flags, eval_args
from so101_run_infra.atomic import write_json, write_text
from so101_run_infra.cli import prepare_command_line
from so101_run_infra.stats import newcombe, wilson

# Each factor alone at a realistic setting (docs/twin.md, "The arm"; shared ranges in arm.py's ArmRanges), then the
# family no recording or training draws from.
CONDITIONS: dict[str, list[str]] = {
    "ideal": [],
    "latency_33ms": ["--env.arm_params.latency_ms=33"],
    "latency_67ms": ["--env.arm_params.latency_ms=67"],
    "latency_100ms": ["--env.arm_params.latency_ms=100"],
    "latency_200ms": ["--env.arm_params.latency_ms=200"],
    "loop_10hz": ["--env.arm_params.control_fps=10"],
    "loop_5hz": ["--env.arm_params.control_fps=5"],
    "weak_servos": [
        "--env.arm_params.gain=[0.6]",
        "--env.arm_params.force=[0.7]",
        "--env.arm_params.gripper_force=0.7",
    ],
    "backlash_1deg": ["--env.arm_params.backlash_deg=[1.0]"],
    "calibration_2deg": ["--env.arm_params.calibration_deg=[2,-2,2,-2,2,0]"],
    "cube_heavy_slippery": ["--env.arm_params.cube_mass=2.0", "--env.arm_params.cube_friction=0.5"],
    "camera": [
        "--env.arm_params.camera_exposure_ms=10",
        "--env.arm_params.camera_gain=1.2",
        "--env.arm_params.camera_noise=3",
        "--env.arm_params.camera_jpeg_quality=60",
    ],
    "unseen_family": ["--env.arm=unseen"],
    "varied_family": ["--env.arm=varied"],
}


@dataclass
class ArmConditionsConfig:
    # the checkpoints, each row/seed=checkpoint[|--env.flag=value...]; required
    policies: list[str] = field(default_factory=list)
    # the columns, names of CONDITIONS or of more_conditions
    conditions: list[str] = field(default_factory=lambda: list(CONDITIONS)[:-1])
    # columns of this config's own, name: its --env.* flags (an arm file, a fixed arm of a family: hidden_arm:
    # ["--env.arm=unseen", "--env.arm_seed=424242"]), and --policy.* settings a user would give for that arm
    more_conditions: dict[str, list[str]] = field(default_factory=dict)
    # flags every evaluation gets (a fixed look, say: --env.appearance=unseen --env.look_seed=61)
    common_flags: list[str] = field(default_factory=list)
    # row pairs "a-b" whose difference the table gives per condition
    compare: list[str] = field(default_factory=list)
    n_episodes: int = 20  # lerobot-eval's --eval.n_episodes per cell
    seed: int = 1000  # lerobot-eval's --seed: the same cube poses in every cell
    batch_size: int = 1  # lerobot-eval's --eval.batch_size (1: one twin at a time, the fastest on 2 cores)
    # evaluations run side by side, each on one torch thread (a 2-core machine: 2)
    jobs: int = 1
    # where the cells, their logs, table.md and results.json go (a finished cell is reused)
    output_dir: Path = Path("outputs/arm_conditions")

    def __post_init__(self) -> None:
        if not self.policies:
            raise ValueError("--policies is empty: give '[row/seed=checkpoint,...]'")
        clash = sorted(set(self.more_conditions) & set(CONDITIONS))
        if clash:
            raise ValueError(f"--more_conditions names {clash}, which CONDITIONS already holds: name them otherwise")
        unknown = [c for c in self.conditions if c not in self.known_conditions]
        if unknown:
            raise ValueError(f"--conditions has unknown {unknown}; known: {list(self.known_conditions)}")
        for entry in self.policies:
            name, sep, _ = entry.partition("=")
            if not sep or "/" not in name:
                raise ValueError(f"--policies entry {entry!r} is not row/seed=checkpoint[|--env.flag=value...]")
        rows = {entry.partition("=")[0].split("/")[0] for entry in self.policies}
        for pair in self.compare:
            a, sep, b = pair.partition("-")
            if not sep or a not in rows or b not in rows:
                raise ValueError(f"--compare entry {pair!r} is not a-b with rows from --policies ({sorted(rows)})")

    @property
    def known_conditions(self) -> dict[str, list[str]]:
        return {**CONDITIONS, **self.more_conditions}


def evaluate(cfg: ArmConditionsConfig, name: str, checkpoint: Path, flags: list[str], condition: str) -> dict:
    row, seed = name.split("/")
    out = cfg.output_dir / f"{row}_{seed}" / condition
    info = out / "eval_info.json"
    if not info.is_file():
        # the row's own flags last: a policy's setting (--policy.action_delay_steps=0, say) holds in every column
        args = eval_args(checkpoint, cfg.common_flags + cfg.known_conditions[condition] + flags, "none", cfg.n_episodes,
                         cfg.batch_size, cfg.seed, out)  # fmt: skip
        if any(f.startswith("--env.appearance=") for f in cfg.common_flags):
            args = [a for a in args if a != "--env.appearance=none"]
        log = out.with_suffix(".log")
        log.parent.mkdir(parents=True, exist_ok=True)
        print(f"[arm_conditions] {name} under {condition}: lerobot-eval on {cfg.n_episodes} episodes", flush=True)
        start = time.perf_counter()
        env = {**os.environ, **({"OMP_NUM_THREADS": "1"} if cfg.jobs > 1 else {})}
        with open(log, "w") as f:
            f.write(" ".join(args) + "\n")
            f.flush()
            code = subprocess.run(args, stdout=f, stderr=subprocess.STDOUT, check=False, env=env).returncode
        if code:
            raise SystemExit(f"lerobot-eval failed for {name} under {condition}, exit {code}; see {log}")
        print(f"[arm_conditions]     {time.perf_counter() - start:.0f} s", flush=True)
    overall = json.loads(info.read_text())["overall"]
    n = overall["n_episodes"]
    return {"successes": round(overall["pc_success"] * n / 100), "episodes": n, "return": overall["avg_sum_reward"]}


def table(cfg: ArmConditionsConfig, results: dict[str, dict[str, dict[str, dict]]]) -> str:
    lines = [f"LiftCube, {cfg.n_episodes} poses from --seed={cfg.seed} per cell; success seed by seed, then pooled "
             "(Wilson 95%)", ""]  # fmt: skip
    header = ["row", *cfg.conditions]
    lines += ["| " + " | ".join(header) + " |", "|---" + "|---:" * len(cfg.conditions) + "|"]
    for row, seeds in results.items():
        cells = []
        for c in cfg.conditions:
            per_seed = [seeds[s][c] for s in sorted(seeds)]
            pooled = wilson(sum(r["successes"] for r in per_seed), sum(r["episodes"] for r in per_seed))
            cells.append(", ".join(str(r["successes"]) for r in per_seed) + f" ; {pooled}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    for pair in cfg.compare:
        a, _, b = pair.partition("-")
        lines += ["", f"{a} minus {b}: pooled (Newcombe 95%); seed by seed (successes of 20)", ""]
        lines += ["| condition | pooled difference | seed by seed |", "|---|---|---|"]
        for c in cfg.conditions:
            ra, rb = results[a], results[b]
            pa = wilson(sum(ra[s][c]["successes"] for s in ra), sum(ra[s][c]["episodes"] for s in ra))
            pb = wilson(sum(rb[s][c]["successes"] for s in rb), sum(rb[s][c]["episodes"] for s in rb))
            seeds = sorted(set(ra) & set(rb))
            by_seed = ", ".join(f"{s}: {ra[s][c]['successes'] - rb[s][c]['successes']:+d}" for s in seeds)
            lines.append(f"| {c} | {newcombe(pa, pb)} | {by_seed} |")
    return "\n".join(lines) + "\n"


@parser.wrap()
def arm_conditions(cfg: ArmConditionsConfig) -> None:
    from lerobot.utils.import_utils import register_third_party_plugins

    register_third_party_plugins()
    os.environ.setdefault("MUJOCO_GL", "egl")
    for entry in cfg.policies:  # every checkpoint there before the first evaluation
        name, _, rest = entry.partition("=")
        if not (Path(rest.split("|")[0]) / "config.json").is_file():
            raise FileNotFoundError(f"--policies entry {name!r}: {Path(rest.split('|')[0]) / 'config.json'} is missing")
    cfg.output_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, dict[str, dict]]] = {}
    # condition by condition across the checkpoints, so a partial run already fills whole columns
    cells = []
    for condition in cfg.conditions:
        for entry in cfg.policies:
            name, _, rest = entry.partition("=")
            path, *extra = rest.split("|")
            cells.append((name, Path(path), extra or env_flags(Path(path)), condition))
    with ThreadPoolExecutor(max_workers=cfg.jobs) as pool:
        done = pool.map(lambda c: evaluate(cfg, *c), cells)
        for (name, _, _, condition), cell in zip(cells, done, strict=True):
            row, seed = name.split("/")
            results.setdefault(row, {}).setdefault(seed, {})[condition] = cell
    write_json(cfg.output_dir / "results.json", {"conditions": {c: cfg.known_conditions[c] for c in cfg.conditions},
                                                   "common_flags": cfg.common_flags, "results": results})  # fmt: skip
    text = table(cfg, results)
    write_text(cfg.output_dir / "table.md", text)
    print("\n" + text)


def main() -> None:
    prepare_command_line()
    arm_conditions()


if __name__ == "__main__":
    main()
